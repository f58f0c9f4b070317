// The per-packet decision: given the session table, the ring snapshot and the limits, what happens to a
// datagram from a client or from a node. Pure: time comes in as `now` (ms); it returns effects as data
// (forward / reject / relay / drop) and never touches a socket, a clock, a logger or a metric.
import { decodeJv1, sessionIdHex } from '../codec/jv1.js';
import { PacketType, RejectReason, type Transport } from '../codec/types.js';
import type { Ring } from '../ring/ring.js';
import { LifecycleEvent, SessionState, transition } from '../session/lifecycle.js';
import { type SessionRecord, SessionTable } from '../session/table.js';
import { KeyedTokenBuckets } from '../util/token-bucket.js';
import { PP2_FLAG } from '../codec/ppv2.js';

export interface CoreLimits {
  readonly sessionMax: number;
  readonly idleTtlMs: number;
  readonly tombstoneMs: number;
  readonly admissionRate: number;
  readonly admissionBurst: number;
  readonly rejectRate: number;
  readonly rejectBurst: number;
}

/** Why a datagram was dropped; each has its own counter. */
export const DropReason = {
  NOT_JV1: 'not_jv1',
  MALFORMED: 'malformed',
  CLIENT_FORBIDDEN_TYPE: 'client_forbidden_type',
  REJECT_RATE_LIMITED: 'reject_rate_limited',
  REJECT_TOO_SMALL: 'reject_too_small',
  OWNER_UNAVAILABLE: 'owner_unavailable',
  // Node side.
  NODE_UNKNOWN_SESSION: 'node_unknown_session',
  NODE_NOT_OWNER: 'node_not_owner',
  NODE_FORBIDDEN_TYPE: 'node_forbidden_type',
  NODE_UNSUPPORTED_TYPE: 'node_unsupported_type',
} as const;
export type DropReason = (typeof DropReason)[keyof typeof DropReason];

/** An ownership transition that happened while deciding; the shell audits it. */
export interface TransitionNote {
  readonly event: LifecycleEvent;
  readonly cause: string;
  readonly fromVersion: bigint | null;
  readonly toVersion: bigint;
  readonly fromOwner: string | null;
  readonly toOwner: string | null;
}

export type ClientOutcome =
  | {
      readonly kind: 'forward';
      readonly session: SessionRecord;
      /** PROXY v2 flags (UNBOUND_SOURCE for a packet from a transport that is not bound). */
      readonly flags: number;
      readonly seq: number;
      /** The version the packet is forwarded under (a CLOSE goes under the version it ended). */
      readonly version: bigint;
      /** Set when this packet admitted or ended the session. */
      readonly transition: TransitionNote | null;
    }
  | { readonly kind: 'reject'; readonly reason: RejectReason; readonly sessionId: Uint8Array; readonly transition: TransitionNote | null; readonly session: SessionRecord | null }
  | { readonly kind: 'drop'; readonly reason: DropReason; readonly detail?: string; readonly transition?: TransitionNote | null; readonly session?: SessionRecord | null };

export type NodeOutcome =
  | { readonly kind: 'relay'; readonly session: SessionRecord; readonly transition: TransitionNote | null }
  | { readonly kind: 'drop'; readonly reason: DropReason; readonly detail?: string };

export interface ExpiredNote {
  readonly session: SessionRecord;
  readonly transition: TransitionNote;
}

/** Which nodes can take packets right now (active and not failed); new sessions use the ring. */
export type OwnerAvailable = (nodeId: string) => boolean;

export class DirectorCore {
  readonly table: SessionTable;
  /** Sessions found expired when a packet arrived (strict TTL); the shell drains and audits them. */
  readonly expiredOnArrival: ExpiredNote[] = [];
  #ring: Ring;
  #draining = false;
  readonly #admission: KeyedTokenBuckets;
  readonly #rejects: KeyedTokenBuckets;
  readonly #ownerAvailable: OwnerAvailable;

  constructor(limits: CoreLimits, ring: Ring, ownerAvailable: OwnerAvailable = () => true) {
    this.table = new SessionTable({ max: limits.sessionMax, idleTtlMs: limits.idleTtlMs, tombstoneMs: limits.tombstoneMs });
    this.#ring = ring;
    this.#admission = new KeyedTokenBuckets(limits.admissionRate, limits.admissionBurst);
    this.#rejects = new KeyedTokenBuckets(limits.rejectRate, limits.rejectBurst);
    this.#ownerAvailable = ownerAvailable;
  }

  /** Swaps the ring snapshot used for new sessions. Existing sessions keep their owner (invariant 3). */
  setRing(ring: Ring): void {
    this.#ring = ring;
  }
  get ring(): Ring {
    return this.#ring;
  }

  /** From now on new sessions get REJECT DIRECTOR_DRAINING; existing ones are served. */
  setDraining(on: boolean): void {
    this.#draining = on;
  }
  get draining(): boolean {
    return this.#draining;
  }

  /** A datagram from a client transport arriving on listener `listener`. */
  onClient(buf: Uint8Array, src: Transport, srcKey: string, listener: number, now: number): ClientOutcome {
    const d = decodeJv1(buf);
    if (d.kind === 'not-mine') return { kind: 'drop', reason: DropReason.NOT_JV1 };
    if (d.kind === 'malformed') return { kind: 'drop', reason: DropReason.MALFORMED, detail: d.reason };
    const pkt = d.value;
    const type = pkt.type;
    if (type !== PacketType.HELLO && type !== PacketType.DATA && type !== PacketType.CLOSE) {
      return { kind: 'drop', reason: DropReason.CLIENT_FORBIDDEN_TYPE };
    }
    const id = sessionIdHex(pkt.sessionId);
    let rec = this.table.get(id);
    if (rec !== undefined && rec.expiresAt <= now) {
      // Strict TTL: a session idle past its deadline is over even if the sweep has not run yet.
      this.expiredOnArrival.push({ session: rec, transition: this.#end(rec, LifecycleEvent.EXPIRE, 'idle_ttl', now) });
      rec = undefined;
    }
    if (rec === undefined) {
      if (this.table.tombstoneUntil(id, now) !== undefined) {
        return this.#reject(RejectReason.SESSION_TERMINATED, pkt.sessionId, src, buf.length, now, null, null);
      }
      if (type !== PacketType.HELLO) {
        return this.#reject(RejectReason.UNKNOWN_SESSION, pkt.sessionId, src, buf.length, now, null, null);
      }
      return this.#admit(id, pkt.sessionId, src, srcKey, listener, buf.length, now);
    }

    const bound = rec.transportKey === srcKey;
    if (!this.#ownerAvailable(rec.owner)) {
      return { kind: 'drop', reason: DropReason.OWNER_UNAVAILABLE, session: rec };
    }
    const seq = rec.nextSeq++;
    if (!bound) {
      // A jump candidate: the owner validates it and answers BIND; nothing changes here until then.
      return { kind: 'forward', session: rec, flags: PP2_FLAG.UNBOUND_SOURCE, seq, version: rec.version, transition: null };
    }
    this.table.touch(rec, now);
    const version = rec.version;
    if (type === PacketType.CLOSE) {
      const t = this.#end(rec, LifecycleEvent.CLOSE, 'client_close', now);
      return { kind: 'forward', session: rec, flags: 0, seq, version, transition: t };
    }
    return { kind: 'forward', session: rec, flags: 0, seq, version, transition: null };
  }

  /** A datagram from node `nodeId` (already matched to that node's address by the shell). */
  onNode(nodeId: string, buf: Uint8Array, now: number): NodeOutcome {
    const d = decodeJv1(buf);
    if (d.kind === 'not-mine') return { kind: 'drop', reason: DropReason.NOT_JV1 };
    if (d.kind === 'malformed') return { kind: 'drop', reason: DropReason.MALFORMED, detail: d.reason };
    const type = d.value.type;
    if (type === PacketType.REJECT) return { kind: 'drop', reason: DropReason.NODE_FORBIDDEN_TYPE };
    if (type === PacketType.BIND || type === PacketType.REVOKE) {
      return { kind: 'drop', reason: DropReason.NODE_UNSUPPORTED_TYPE };
    }
    const rec = this.table.get(sessionIdHex(d.value.sessionId));
    if (rec === undefined || rec.expiresAt <= now) return { kind: 'drop', reason: DropReason.NODE_UNKNOWN_SESSION };
    if (rec.owner !== nodeId) return { kind: 'drop', reason: DropReason.NODE_NOT_OWNER, detail: rec.id };
    if (type === PacketType.CLOSE) {
      const t = this.#end(rec, LifecycleEvent.CLOSE, 'node_close', now);
      return { kind: 'relay', session: rec, transition: t };
    }
    return { kind: 'relay', session: rec, transition: null };
  }

  /** Expires idle sessions (at most `limit` per call) and forgets refilled rate-limit buckets. */
  sweep(now: number, limit = 10_000): ExpiredNote[] {
    const out: ExpiredNote[] = [];
    for (const rec of this.table.dueForExpiry(now, limit)) {
      out.push({ session: rec, transition: this.#end(rec, LifecycleEvent.EXPIRE, 'idle_ttl', now) });
    }
    return out;
  }

  sweepLimiters(now: number): void {
    this.#admission.sweep(now);
    this.#rejects.sweep(now);
  }

  /** Ends a session (close, expire, terminate): version + 1, TERMINATED, removed, tombstoned. */
  #end(rec: SessionRecord, event: LifecycleEvent, cause: string, now: number): TransitionNote {
    const from = rec.version;
    const t = transition(rec.state, rec.version, event, rec.version);
    // ATTACHED and FROZEN both allow close/expire/terminate; a TERMINATED record is never in the table.
    if (t.ok) {
      rec.state = t.state;
      rec.version = t.version;
    } else {
      rec.state = SessionState.TERMINATED;
    }
    this.table.remove(rec, now);
    return { event, cause, fromVersion: from, toVersion: rec.version, fromOwner: rec.owner, toOwner: null };
  }

  #admit(id: string, idView: Uint8Array, src: Transport, srcKey: string, listener: number, len: number, now: number): ClientOutcome {
    if (this.#draining) return this.#reject(RejectReason.DIRECTOR_DRAINING, idView, src, len, now, null, null);
    if (!this.#admission.take(src.address, now)) return this.#reject(RejectReason.RATE_LIMITED, idView, src, len, now, null, null);
    if (this.table.full) return this.#reject(RejectReason.NO_CAPACITY, idView, src, len, now, null, null);
    const owner = this.#ring.pick(idView);
    if (owner === undefined) return this.#reject(RejectReason.NO_HEALTHY_NODE, idView, src, len, now, null, null);
    const t = transition(null, null, LifecycleEvent.ADMIT, null);
    if (!t.ok) throw new Error('unreachable: admit is always valid from no session');
    const rec: SessionRecord = {
      id,
      idBytes: Uint8Array.from(idView),
      owner,
      version: t.version,
      state: t.state,
      transport: src,
      transportKey: srcKey,
      listener,
      nextSeq: 1,
      createdAt: now,
      lastSeen: now,
      expiresAt: now + this.table.idleTtlMs,
      shellCache: undefined,
    };
    this.table.insert(rec);
    const seq = rec.nextSeq++;
    return {
      kind: 'forward',
      session: rec,
      flags: 0,
      seq,
      version: rec.version,
      transition: { event: LifecycleEvent.ADMIT, cause: 'hello', fromVersion: null, toVersion: t.version, fromOwner: null, toOwner: owner },
    };
  }

  #reject(
    reason: RejectReason,
    sessionId: Uint8Array,
    src: Transport,
    len: number,
    now: number,
    t: TransitionNote | null,
    session: SessionRecord | null,
  ): ClientOutcome {
    // A REJECT is the 20-byte header plus one reason byte: never answer a smaller packet.
    if (len < 21) return { kind: 'drop', reason: DropReason.REJECT_TOO_SMALL, transition: t, session };
    if (!this.#rejects.take(src.address, now)) return { kind: 'drop', reason: DropReason.REJECT_RATE_LIMITED, transition: t, session };
    return { kind: 'reject', reason, sessionId, transition: t, session };
  }
}
