// The per-packet decision and the session transitions: given the session table, the ring snapshot and
// the limits, what happens to a datagram from a client or a node, and how a planned transition is
// applied once the store has accepted it. Pure: time comes in as `now` (ms); it returns effects as data
// (forward / hold / admit / reject / relay / bind / drop) and never touches a socket, a clock, the store,
// a logger or a metric.
import { checkJv1, decodeBind, decodeRevoke, JV1_HEADER_LEN, sessionIdHex } from '../codec/jv1.js';
import { sameTransport, transportKey } from '../codec/ip.js';
import { PacketType, RejectReason, type Transport } from '../codec/types.js';
import { PP2_FLAG } from '../codec/ppv2.js';
import type { Ring } from '../ring/ring.js';
import { LifecycleEvent, SessionState, transition } from '../session/lifecycle.js';
import { type Candidate, newSessionRecord, type SessionRecord, SessionTable } from '../session/table.js';
import { KeyedTokenBuckets } from '../util/token-bucket.js';
import type { DatagramCodec } from '../codec/codec.js';
import { FenceState } from '../store/fence.js';
import { sameLife } from '../store/store.js';
import {
  type ClientOutcome,
  type CoreLimits,
  DropReason,
  type ExpiredNote,
  type Forward,
  type NodeOutcome,
  type PlanRefusal,
  type Planned,
  type RejectOrDrop,
  type SessionReplyOutcome,
  sameProtocol,
  TCP_LISTENER,
  type TcpOutcome,
  type TransitionNote,
  Verdict,
} from './outcomes.js';

// What the core decides, as data: importers of the core get it from here too.
export * from './outcomes.js';

const REJECT_NAMES: Record<number, string> = Object.fromEntries(Object.entries(RejectReason).map(([k, v]) => [v, k.toLowerCase()]));


/** Whether packets of existing sessions may go to this node now (not failed). */
export type OwnerAvailable = (nodeId: string) => boolean;

const MAX_CANDIDATES = 8;
/** `release` of a session holding nothing. */
const NO_FORWARDS: readonly Forward[] = Object.freeze([]);
/**
 * How long a jump candidate (a transport that sent packets of a session without being bound) is kept after
 * its last packet, by default (CoreLimits.candidateTtlMs): long enough for its owner's BIND, or a racing
 * one's REJECT, to find it. Without a bound, the old path's packets still in flight after a jump left a
 * candidate that kept its session's record pinned in memory (record.ts: out-of-line state) for the
 * session's whole life. Forgotten once past it: at the session's next packet from its bound transport,
 * its next candidate, or (a TCP-bound session, whose bytes never come here) the TCP front's sweep.
 */
export const CANDIDATE_TTL_MS = 30_000;

/** Sequence numbers a director's base moves up per millisecond of wall clock (sequenceBase). */
export const SEQ_PER_MS = 1024;

/**
 * Where a director started at wall-clock `wallMs` numbers the sessions it did not admit (CoreLimits.seqBase).
 * A node tells the directors' counters of a session apart by the PROXY v2 destination (DESIGN §3), so a
 * director restarted on the same address must not number a session it served before from 1 again at the
 * same version: `(version, seq)` would repeat. The run before it sent fewer than SEQ_PER_MS datagrams of any
 * one session per millisecond it lived (about a million a second for a single session, sustained), so every
 * number it used is below this run's base — while this start's wall clock, less the earlier one's, is more
 * than 1 ms per SEQ_PER_MS datagrams that run sent of one session (a clock stepped back by nearly the time
 * between the starts, or one not set, breaks it; docs/cluster.md). Safe integers until the year 2248.
 */
export function sequenceBase(wallMs: number): number {
  const base = Math.floor(wallMs) * SEQ_PER_MS;
  if (!Number.isSafeInteger(base + 2 ** 40) || base < 0) throw new RangeError(`no sequence base for wall clock ${wallMs}`);
  return base;
}
/** Never send an unbound transport more than this many times the bytes it sent us. */
export const UNBOUND_REPLY_FACTOR = 3;
const REJECT_LEN = 21;
/** Where a JV1 packet's 16-byte session id starts. */
const JV1_ID_AT = 4;

export class DirectorCore {
  readonly table: SessionTable;
  /** Sessions found expired when a packet arrived (strict TTL); the shell drains and audits them. */
  readonly expiredOnArrival: ExpiredNote[] = [];
  #ring: Ring;
  #draining = false;
  readonly #candidateTtlMs: number;
  readonly #limits: CoreLimits;
  readonly #admission: KeyedTokenBuckets;
  readonly #rejects: KeyedTokenBuckets;
  readonly #ownerAvailable: OwnerAvailable;
  readonly #codecs: readonly (DatagramCodec | null)[];
  #fence: () => FenceState = () => FenceState.OK;
  #following: () => boolean = () => true;
  /** The configured listener an index belongs to (a host address's listener on a wildcard one: see setListenerBase). */
  #listenerBase: (listener: number) => number = (listener) => listener;
  /** Codecs whose data packets carry no id: client transport → the session pinned to it. */
  readonly #pins = new Map<string, SessionRecord>();
  /** Sessions whose client restarted (a new session id from their pinned transport): the shell ends them. */
  readonly restarted: SessionRecord[] = [];
  /** The last `decideClient` decision (overwritten by the next one). */
  readonly clientVerdict = new Verdict();
  /** The last `decideNode` decision (overwritten by the next one). */
  readonly nodeVerdict = new Verdict();

  /**
   * `codecs[i]`: how listener i reads session ids; absent or JV1 → the JV1 path. Other codecs cannot be
   * answered with a JV1 REJECT (their clients would not understand it): their refusals are drops.
   */
  constructor(limits: CoreLimits, ring: Ring, ownerAvailable: OwnerAvailable = () => true, codecs: readonly (DatagramCodec | null)[] = []) {
    this.#codecs = codecs;
    this.#limits = limits;
    this.table = new SessionTable({ max: limits.sessionMax, idleTtlMs: limits.idleTtlMs, tombstoneMs: limits.tombstoneMs, ...(limits.recordCache !== undefined ? { records: limits.recordCache } : {}), ...(limits.reserveRows !== undefined ? { reserve: limits.reserveRows } : {}), ...(limits.seqBase !== undefined ? { seqBase: limits.seqBase } : {}) });
    this.#ring = ring;
    this.#admission = new KeyedTokenBuckets(limits.admissionRate, limits.admissionBurst);
    this.#rejects = new KeyedTokenBuckets(limits.rejectRate, limits.rejectBurst);
    this.#ownerAvailable = ownerAvailable;
    this.#candidateTtlMs = limits.candidateTtlMs ?? CANDIDATE_TTL_MS;
  }

  /**
   * The self-fence (a shared store's lease): 'near' refuses admissions (REJECT STORE_UNAVAILABLE),
   * 'expired' stops forwarding anything. A store that cannot be lost keeps it 'ok'.
   */
  setFence(fn: () => FenceState): void {
    this.#fence = fn;
  }

  /**
   * Whether this director follows the shared store's changes now (a store of one director always does).
   * While it does not, a packet of a session it does not know is dropped (`store_not_following`) rather
   * than answered REJECT UNKNOWN_SESSION: another director may have admitted the session meanwhile, and a
   * REJECT would make its client give it up.
   */
  setFollowing(fn: () => boolean): void {
    this.#following = fn;
  }

  /**
   * The shell's listeners of host addresses on a wildcard listener (UdpDirector: the address each datagram
   * was sent to) share that listener's socket: `base` names it for each listener index.
   */
  setListenerBase(base: (listener: number) => number): void {
    this.#listenerBase = base;
  }

  /** Swaps the ring snapshot used for new sessions. Existing sessions keep their owner (invariant 3). */
  setRing(ring: Ring): void {
    this.#ring = ring;
  }
  get ring(): Ring {
    return this.#ring;
  }

  /** Whether clients of UDP listener `listener` speak JV1, so that a REJECT means something to them (OpenVPN and offset clients get none). */
  speaksJv1(listener: number): boolean {
    const codec = this.#codecs[listener];
    return codec === undefined || codec === null || codec.name === 'jv1';
  }

  /** From now on new sessions get REJECT DIRECTOR_DRAINING; existing ones are served. */
  setDraining(on: boolean): void {
    this.#draining = on;
  }
  get draining(): boolean {
    return this.#draining;
  }

  /** A datagram from a client transport arriving on listener `listener`, decided as a fresh outcome object. */
  onClient(msg: Buffer, src: Transport, srcKey: string, listener: number, now: number): ClientOutcome {
    return this.decideClient(msg, src.address, src.port, src.family, listener, now, src, srcKey).toClientOutcome();
  }

  /**
   * The per-datagram path: the same decision as `onClient`, written into `clientVerdict` (returned) with
   * no allocation for a datagram of a live session from its bound transport. The client transport comes
   * as its parts (as a socket reports them); the Transport object and its key are only built when the
   * decision keeps them (a new session, a jump candidate, a REJECT), unless the caller has them already.
   */
  decideClient(msg: Buffer, address: string, port: number, family: 4 | 6, listener: number, now: number, src: Transport | null = null, srcKey: string | null = null): Verdict {
    const v = this.clientVerdict;
    if (this.#fence() === FenceState.EXPIRED) return v.drop(DropReason.FENCED);
    const codec = this.#codecs[listener];
    if (codec !== undefined && codec !== null && codec.name !== 'jv1') {
      const t = src ?? { family, address, port };
      return v.set(this.#onClientCodec(codec, msg, t, srcKey ?? transportKey(t), listener, now));
    }
    const c = checkJv1(msg);
    if (c !== 'ok') return c === 'not-mine' ? v.drop(DropReason.NOT_JV1) : v.drop(DropReason.MALFORMED, c);
    const type = msg[3] as PacketType;
    if (type !== PacketType.HELLO && type !== PacketType.DATA && type !== PacketType.CLOSE) return v.drop(DropReason.CLIENT_FORBIDDEN_TYPE);
    let rec = this.table.getByIdBytes(msg, JV1_ID_AT);
    if (rec !== undefined && this.#idle(rec, now)) {
      // Strict TTL: a session idle past its deadline is over even if the sweep has not run yet.
      this.expiredOnArrival.push({ session: rec, transition: this.#end(rec, LifecycleEvent.EXPIRE, 'idle_ttl', now) });
      rec = undefined;
    }
    if (rec === undefined) {
      const t = src ?? { family, address, port };
      const idView = msg.subarray(JV1_ID_AT, JV1_ID_AT + 16);
      const id = sessionIdHex(idView);
      if (this.table.tombstoneUntil(id, now) !== undefined) return v.set(this.#reject(RejectReason.SESSION_TERMINATED, idView, t, msg.length, now));
      if (type !== PacketType.HELLO) return this.#following() ? v.set(this.#reject(RejectReason.UNKNOWN_SESSION, idView, t, msg.length, now)) : v.drop(DropReason.NOT_FOLLOWING);
      return v.set(this.#admit(id, idView, msg, msg.length, t, listener, now));
    }
    const bound = rec.transport;
    if (rec.listener !== listener && bound.port === port && bound.address === address && rec.listener === this.#listenerBase(listener)) {
      // Its transport, on the wildcard listener the session was read back with (the store keeps no
      // listener: a restart, another director's session), now through the listener of the address its
      // client sends to: the same socket, so the same transport — its replies leave from that address.
      rec.listener = listener;
    }
    if (bound.port !== port || bound.address !== address || rec.listener !== listener) {
      // A jump candidate: the owner validates it and answers BIND; nothing changes here until then.
      // (The bound transport's key is its text form, so comparing the parts is comparing the keys. The
      // listener counts too: a datagram from the ip:port of a TCP-bound session, or to another listener,
      // is not from the bound transport — a CLOSE from it must not end the session.)
      if (rec.pending !== null || rec.state !== SessionState.ATTACHED) return v.drop(DropReason.FROZEN_UNBOUND);
      if (!this.#ownerAvailable(rec.owner)) return v.drop(DropReason.OWNER_UNAVAILABLE);
      const t = src ?? { family, address, port };
      this.#noteCandidate(rec, t, srcKey ?? transportKey(t), listener, msg.length, now);
      return this.#forwardInto(v, rec, msg, t, listener, PP2_FLAG.UNBOUND_SOURCE, null, rec.version);
    }
    this.table.touch(rec, now);
    if (rec.candidates !== null) this.forgetStaleCandidates(rec, now);
    if (rec.pending !== null || rec.state === SessionState.FROZEN) return v.set(this.#hold(rec, msg));
    if (!this.#ownerAvailable(rec.owner)) return v.drop(DropReason.OWNER_UNAVAILABLE);
    if (type === PacketType.CLOSE) {
      const version = rec.version;
      const t = this.#end(rec, LifecycleEvent.CLOSE, 'client_close', now);
      return this.#forwardInto(v, rec, msg, rec.transport, rec.listener, 0, t, version);
    }
    return this.#forwardInto(v, rec, msg, rec.transport, rec.listener, 0, null, rec.version);
  }

  /**
   * A TCP connection presented its JV1 header (`type`, `sessionId`) after `bytes` bytes. A HELLO of a new
   * session is admitted like a UDP one (no packet is held: the stream waits); any connection for a live
   * session is a reattach candidate (every connection has a new source port) that the owner must BIND.
   */
  onTcpPreamble(type: PacketType, sessionId: Uint8Array, src: Transport, srcKey: string, bytes: number, now: number): TcpOutcome {
    if (this.#fence() === FenceState.EXPIRED) return { kind: 'drop', reason: DropReason.FENCED };
    if (type !== PacketType.HELLO && type !== PacketType.DATA && type !== PacketType.CLOSE) {
      return { kind: 'drop', reason: DropReason.CLIENT_FORBIDDEN_TYPE };
    }
    const id = sessionIdHex(sessionId);
    let rec = this.table.get(id);
    if (rec !== undefined && this.#idle(rec, now)) {
      this.expiredOnArrival.push({ session: rec, transition: this.#end(rec, LifecycleEvent.EXPIRE, 'idle_ttl', now) });
      rec = undefined;
    }
    if (rec === undefined) {
      if (this.table.tombstoneUntil(id, now) !== undefined) return this.#reject(RejectReason.SESSION_TERMINATED, sessionId, src, bytes, now);
      if (type !== PacketType.HELLO) return this.#following() ? this.#reject(RejectReason.UNKNOWN_SESSION, sessionId, src, bytes, now) : { kind: 'drop', reason: DropReason.NOT_FOLLOWING };
      const out = this.#admit(id, sessionId, null, bytes, src, TCP_LISTENER, now);
      if (out.kind === 'admit') return { kind: 'admit', session: out.session, seq: out.session.nextSeq++ };
      return out.kind === 'reject' || out.kind === 'drop' ? out : { kind: 'drop', reason: DropReason.MALFORMED };
    }
    if (rec.pending !== null || rec.state !== SessionState.ATTACHED) return { kind: 'drop', reason: DropReason.FROZEN_UNBOUND };
    if (!this.#ownerAvailable(rec.owner)) return { kind: 'drop', reason: DropReason.OWNER_UNAVAILABLE };
    this.#noteCandidate(rec, src, srcKey, TCP_LISTENER, bytes, now);
    return { kind: 'reattach', session: rec, seq: rec.nextSeq++, version: rec.version };
  }

  /** A datagram on a listener whose codec is not JV1 (OpenVPN, offset): same table, ring and rules. */
  #onClientCodec(codec: DatagramCodec, msg: Buffer, src: Transport, srcKey: string, listener: number, now: number): ClientOutcome {
    const v = codec.classify(msg);
    switch (v.kind) {
      case 'not-mine':
        return { kind: 'drop', reason: DropReason.NOT_MINE };
      case 'malformed':
        return { kind: 'drop', reason: DropReason.MALFORMED, detail: v.reason };
      case 'forbidden':
        return { kind: 'drop', reason: DropReason.CLIENT_FORBIDDEN_TYPE };
      case 'pinned': {
        const rec = this.#pins.get(srcKey);
        if (rec === undefined || !this.table.holds(rec) || !sameTransport(rec.transport, src)) return { kind: 'drop', reason: DropReason.UNPINNED };
        if (this.#idle(rec, now)) {
          this.expiredOnArrival.push({ session: rec, transition: this.#end(rec, LifecycleEvent.EXPIRE, 'idle_ttl', now) });
          return { kind: 'drop', reason: DropReason.UNPINNED };
        }
        return this.#bound(rec, msg, false, now);
      }
      case 'open':
      case 'session': {
        // By the id bytes, as a JV1 datagram: the id text is made only for a session not held.
        let rec = this.table.getByIdBytes(v.sessionId, 0);
        if (rec !== undefined && this.#idle(rec, now)) {
          this.expiredOnArrival.push({ session: rec, transition: this.#end(rec, LifecycleEvent.EXPIRE, 'idle_ttl', now) });
          rec = undefined;
        }
        if (rec === undefined) {
          const id = sessionIdHex(v.sessionId);
          if (this.table.tombstoneUntil(id, now) !== undefined) return this.#unanswered(RejectReason.SESSION_TERMINATED);
          if (v.kind !== 'open') return this.#following() ? this.#unanswered(RejectReason.UNKNOWN_SESSION) : { kind: 'drop', reason: DropReason.NOT_FOLLOWING };
          const out = this.#admit(id, v.sessionId, msg, msg.length, src, listener, now);
          if (out.kind === 'reject') return this.#unanswered(out.reason);
          // Only a protocol whose data packets carry no id pins transports (OpenVPN); with fixed-position
          // ids (offset) one transport may carry many sessions.
          if (out.kind === 'admit' && codec.name === 'openvpn') {
            // A new session id from a transport pinned to another live session: that client restarted.
            const old = this.#pins.get(srcKey);
            if (old !== undefined && old !== out.session && this.table.holds(old) && sameTransport(old.transport, src)) this.restarted.push(old);
            this.#pins.set(srcKey, out.session);
          }
          return out;
        }
        if (!sameTransport(rec.transport, src)) {
          // Another transport naming a live session: forwarded for the backend to judge (its own
          // authentication), never bound here (a backend behind `none` cannot BIND).
          if (rec.pending !== null || rec.state !== SessionState.ATTACHED) return { kind: 'drop', reason: DropReason.FROZEN_UNBOUND };
          if (!this.#ownerAvailable(rec.owner)) return { kind: 'drop', reason: DropReason.OWNER_UNAVAILABLE };
          return this.#forward(rec, msg, src, listener, PP2_FLAG.UNBOUND_SOURCE, null);
        }
        return this.#bound(rec, msg, v.kind === 'session' && v.close, now);
      }
    }
  }

  /**
   * CLOSE or not, for a held packet of `rec`: the JV1 type byte, or what the listener's codec says (the
   * fourth byte of an OpenVPN packet is part of its session id, not a type).
   */
  #heldType(rec: SessionRecord, msg: Buffer): PacketType {
    const codec = this.#codecs[rec.listener];
    if (codec === undefined || codec === null || codec.name === 'jv1') return msg[3] as PacketType;
    const v = codec.classify(msg);
    return v.kind === 'session' && v.close ? PacketType.CLOSE : PacketType.DATA;
  }

  /** A packet from the session's bound transport (any codec): hold while busy, else forward. */
  #bound(rec: SessionRecord, msg: Buffer, close: boolean, now: number): ClientOutcome {
    this.table.touch(rec, now);
    if (rec.pending !== null || rec.state === SessionState.FROZEN) return this.#hold(rec, msg);
    if (!this.#ownerAvailable(rec.owner)) return { kind: 'drop', reason: DropReason.OWNER_UNAVAILABLE };
    return this.#forwardBound(rec, msg, close ? PacketType.CLOSE : PacketType.DATA, 0, now);
  }

  /** A refusal on a listener whose clients do not speak JV1: counted, never answered. */
  #unanswered(reason: RejectReason): ClientOutcome {
    return { kind: 'drop', reason: DropReason.UNANSWERED, detail: REJECT_NAMES[reason] ?? String(reason) };
  }

  /**
   * A reply on a session's own upstream socket (transparent forwarding). Relayed as it is when it comes
   * from the current owner; a JV1 CLOSE from the owner ends the session.
   */
  onSessionReply(rec: SessionRecord, nodeId: string, msg: Uint8Array, now: number): SessionReplyOutcome {
    if (this.#fence() === FenceState.EXPIRED) return { kind: 'drop', reason: DropReason.FENCED };
    if (!this.table.holds(rec) || this.#idle(rec, now)) return { kind: 'drop', reason: DropReason.NODE_UNKNOWN_SESSION };
    if (rec.owner !== nodeId) return { kind: 'drop', reason: rec.formerOwner === nodeId ? DropReason.NODE_FORMER_OWNER : DropReason.NODE_NOT_OWNER };
    const codec = this.#codecs[rec.listener];
    if (codec === undefined || codec === null || codec.name === 'jv1') {
      if (checkJv1(msg) === 'ok') {
        const type = msg[3];
        if (type === PacketType.REJECT || type === PacketType.BIND || type === PacketType.REVOKE) {
          return { kind: 'drop', reason: DropReason.NODE_FORBIDDEN_TYPE };
        }
        // `rec` is live in the table (checked above), so the index finds it exactly when the ids match.
        if (this.table.getByIdBytes(msg, JV1_ID_AT) !== rec) return { kind: 'drop', reason: DropReason.NODE_NOT_OWNER };
        if (type === PacketType.CLOSE) return { kind: 'relay', session: rec, transition: this.#nodeClose(rec, nodeId, now) };
      }
    }
    return { kind: 'relay', session: rec, transition: null };
  }

  /** A datagram from node `nodeId` (the shell matched its source to that node's address), as a fresh outcome object. */
  onNode(nodeId: string, msg: Uint8Array, now: number): NodeOutcome {
    return this.decideNode(nodeId, msg, now).toNodeOutcome();
  }

  /**
   * The per-datagram path: the same decision as `onNode`, written into `nodeVerdict` (returned) with no
   * allocation for a reply of a live session from its owner.
   */
  decideNode(nodeId: string, msg: Uint8Array, now: number): Verdict {
    const v = this.nodeVerdict;
    if (this.#fence() === FenceState.EXPIRED) return v.drop(DropReason.FENCED);
    const c = checkJv1(msg);
    if (c !== 'ok') return c === 'not-mine' ? v.drop(DropReason.NOT_JV1) : v.drop(DropReason.MALFORMED, c);
    const type = msg[3] as PacketType;
    if (type === PacketType.REJECT) return v.drop(DropReason.NODE_FORBIDDEN_TYPE);
    if (type === PacketType.REVOKE) {
      const version = decodeRevoke(msg.subarray(JV1_HEADER_LEN));
      if (version === undefined) return v.drop(DropReason.MALFORMED, 'bad_payload');
      return v.set({ kind: 'revoke-ack', session: sessionIdHex(msg.subarray(JV1_ID_AT, JV1_HEADER_LEN)), version });
    }
    const rec = this.table.getByIdBytes(msg, JV1_ID_AT);
    if (rec === undefined || this.#idle(rec, now)) return v.drop(DropReason.NODE_UNKNOWN_SESSION);
    if (rec.owner !== nodeId) {
      if (rec.formerOwner === nodeId) return v.drop(DropReason.NODE_FORMER_OWNER);
      v.drop(DropReason.NODE_NOT_OWNER, rec.id);
      v.dropSession = rec.id;
      v.security = type === PacketType.BIND ? 'bind_from_non_owner' : 'reply_from_non_owner';
      return v;
    }
    if (type === PacketType.BIND) return v.set(this.#onBind(rec, msg.subarray(JV1_HEADER_LEN)));
    if (rec.pending === LifecycleEvent.REATTACH) {
      // "Replies the node sends after its BIND go to the new transport": wait for the CAS to decide. Its
      // CLOSE too, in its place after them: the session ends once they are relayed (Ownership's
      // #endIfClosed). Relayed at once instead, it reached the transport being left, and the session
      // ended before the replies held ahead of it could go anywhere.
      rec.heldReplies ??= [];
      if (this.#roomFor(rec.heldReplies, msg.length)) {
        rec.heldReplies.push(Buffer.from(msg)); // a copy: the shell may reuse the datagram's memory
        if (type === PacketType.CLOSE) rec.closedBy ??= nodeId;
        v.kind = 'held-reply';
        v.session = rec;
        return v;
      }
      if (type !== PacketType.CLOSE) return v.drop(DropReason.HOLD_OVERFLOW);
      // A CLOSE with no room left: relayed now, its end deferred (below), as with any transition in flight.
    }
    v.kind = 'relay';
    v.session = rec;
    v.transition = type === PacketType.CLOSE ? this.#nodeClose(rec, nodeId, now) : null;
    return v;
  }

  /**
   * The owner `nodeId` ended the session (a CLOSE from it, relayed to the client): its end now, or — with a
   * transition in flight, whose store write must not be contradicted meanwhile — null, and closeDeferred
   * ends it once that transition settles.
   */
  #nodeClose(rec: SessionRecord, nodeId: string, now: number): TransitionNote | null {
    if (rec.pending === null) return this.#end(rec, LifecycleEvent.CLOSE, 'node_close', now);
    rec.closedBy = nodeId;
    return null;
  }

  /**
   * The end of a session whose owner sent CLOSE while a transition was in flight (closedBy), once no
   * transition is: its note, with the node that closed it; null when there is none to end now.
   */
  closeDeferred(rec: SessionRecord, now: number): { note: TransitionNote; node: string } | null {
    const node = rec.closedBy;
    if (node === null || rec.pending !== null) return null;
    rec.closedBy = null;
    if (!this.table.holds(rec)) return null;
    return { note: this.#end(rec, LifecycleEvent.CLOSE, 'node_close', now), node };
  }

  /**
   * Plans a transition of `rec`: checks the lifecycle table and the expected version, and marks the
   * session busy until `commit` or `abort`. Nothing else changes until the store has accepted it.
   */
  plan(
    rec: SessionRecord,
    event: LifecycleEvent,
    opts: { cause: string; expectVersion?: bigint; toOwner?: string; bind?: Candidate },
  ): Planned | PlanRefusal {
    if (!this.table.holds(rec)) return 'gone';
    if (rec.pending !== null) return 'busy';
    const expect = opts.expectVersion ?? rec.version;
    const t = transition(rec.state, rec.version, event, expect);
    if (!t.ok) return t.reason;
    rec.pending = event;
    if (opts.bind !== undefined) opts.bind.binding = true;
    return {
      session: rec,
      event,
      cause: opts.cause,
      fromVersion: rec.version,
      toVersion: t.version,
      toState: t.state,
      fromOwner: rec.owner,
      toOwner: opts.toOwner ?? rec.owner,
      bind: opts.bind ?? null,
    };
  }

  /**
   * A change another director made in the store, mirrored here and never published back (HAProxy's
   * touch_remote). Older or equal versions are ignored (our own writes, or news we already have).
   * `transport` is the record's client transport parsed by the shell, with the listener to reply through.
   */
  applyRemote(
    r: {
      id: string;
      owner: string;
      version: bigint;
      /** The store's life of the id (StoredSession.incarnation); the caller ended a held one of another life first. */
      incarnation: number;
      state: SessionState;
      transport: { t: Transport; key: string; listener: number } | null;
      /** The record's idle expiry, on this director's monotonic clock. */
      expiresAt: number;
    },
    now: number,
  ): { kind: 'ignored' } | { kind: 'not_held' } | { kind: 'refreshed'; session: SessionRecord } | { kind: 'created' | 'updated'; session: SessionRecord; note: TransitionNote } | { kind: 'ended'; session: SessionRecord; note: TransitionNote } {
    const local = this.table.get(r.id);
    if (local !== undefined && local.version > r.version) return { kind: 'ignored' };
    if (local !== undefined && local.version === r.version) {
      // Our own write coming back, or another director's expiry refresh: only the expiry can be news.
      return this.#learnExpiry(local, r.expiresAt) ? { kind: 'refreshed', session: local } : { kind: 'ignored' };
    }
    const note = (rec: SessionRecord | undefined, event: LifecycleEvent): TransitionNote => ({
      event,
      cause: 'remote',
      fromVersion: rec?.version ?? null,
      toVersion: r.version,
      fromOwner: rec?.owner ?? null,
      toOwner: r.state === SessionState.TERMINATED ? null : r.owner,
    });
    if (r.state === SessionState.TERMINATED) {
      if (local === undefined) return { kind: 'ignored' };
      const n = note(local, LifecycleEvent.TERMINATE);
      local.version = r.version;
      local.state = SessionState.TERMINATED;
      this.table.remove(local, now);
      this.#unpin(local);
      return { kind: 'ended', session: local, note: n };
    }
    if (local === undefined) {
      // Old news of a life of the id that ended here (its tombstone stands): a write the store took before
      // this director's end — another director's refresh, the watch's copy of our own — or the store's
      // record while our delete is on its way. Taken, it would bring the session back (its tombstone gone,
      // packets forwarded again, its counter started anew). A version past the one it ended at is a
      // transition another director wrote first (our delete loses to it: the session lives on), and a
      // new life admitted elsewhere is news: both are taken as any other session.
      const ended = this.table.tombstone(r.id, now);
      if (ended !== undefined && sameLife(ended.life, r.incarnation) && r.version < ended.version) return { kind: 'ignored' };
      // A session this table cannot hold (full, or a transport text it cannot read): this director's view
      // of the cluster lacks it from now on (drains through it ask the store before they complete).
      if (r.transport === null || this.table.full) return { kind: 'not_held' };
      const rec = newSessionRecord({
        id: r.id,
        owner: r.owner,
        version: r.version,
        incarnation: r.incarnation,
        state: r.state,
        transport: r.transport.t,
        listener: r.transport.listener,
        now,
        idleTtlMs: this.table.idleTtlMs,
      });
      rec.servedHere = false;
      // Numbered above anything a run of a director on this address before this one can have sent.
      rec.nextSeq = (this.#limits.seqBase ?? 0) + 1;
      rec.storeExpiresAt = r.expiresAt;
      rec.expiresAt = r.expiresAt + this.#graceMs;
      this.table.insert(rec);
      return { kind: 'created', session: rec, note: note(undefined, LifecycleEvent.ADMIT) };
    }
    const event =
      r.owner !== local.owner ? LifecycleEvent.TRANSFER : r.state !== local.state ? (r.state === SessionState.FROZEN ? LifecycleEvent.FREEZE : LifecycleEvent.RESUME) : LifecycleEvent.REATTACH;
    const n = note(local, event);
    if (r.owner !== local.owner) {
      local.formerOwner = local.owner;
      this.table.setOwner(local, r.owner);
    }
    local.version = r.version;
    local.state = r.state;
    // Another transport, or the same ip:port over the other protocol (a jump between a TCP connection and
    // datagrams). The listener of a datagram transport read from the store is a guess by address family:
    // a session served here on another listener of that family keeps its own.
    if (r.transport !== null && (!sameTransport(r.transport.t, local.transport) || !sameProtocol(r.transport.listener, local.listener))) {
      local.transport = r.transport.t;
      local.listener = r.transport.listener;
      local.shellCache = undefined;
      // Another director bound the client's new transport: that director serves it now (until a packet
      // of it comes here again).
      this.table.notServedHere(local);
    }
    // Fresh news of the session, but not its traffic: the expiry moves only as far as the store's.
    this.#learnExpiry(local, r.expiresAt);
    return { kind: 'updated', session: local, note: n };
  }

  /** The store holds `storeExpiresAt` for `rec`: this director's deadline follows it. True if it moved. */
  #learnExpiry(rec: SessionRecord, storeExpiresAt: number): boolean {
    if (storeExpiresAt <= rec.storeExpiresAt) return false;
    rec.storeExpiresAt = storeExpiresAt;
    const deadline = storeExpiresAt + (rec.servedHere ? 0 : this.#graceMs);
    if (deadline > rec.expiresAt) rec.expiresAt = deadline;
    return true;
  }

  get #graceMs(): number {
    return this.#limits.sharedExpiryGraceMs ?? 0;
  }

  /** Ends a session another director deleted from the store (no version of its own to check). */
  removeRemote(id: string, now: number): SessionRecord | null {
    const local = this.table.get(id);
    if (local === undefined || local.pending !== null) return null;
    local.state = SessionState.TERMINATED;
    this.table.remove(local, now);
    this.#unpin(local);
    return local;
  }

  /** Client transports pinned to a session (OpenVPN listeners): one per live session at most. */
  get pinCount(): number {
    return this.#pins.size;
  }

  /** Forgets the pin of `rec`'s transport to it (an ended session of a protocol that pins: OpenVPN). */
  #unpin(rec: SessionRecord): void {
    if (this.#pins.size === 0) return; // nothing pinned (JV1 never pins): no key to make
    const key = rec.transportKey;
    if (this.#pins.get(key) === rec) this.#pins.delete(key);
  }

  /** Applies a planned transition the store accepted. */
  commit(p: Planned, now: number): TransitionNote {
    const rec = p.session;
    rec.pending = null;
    if (p.bind !== null) p.bind.binding = false;
    rec.version = p.toVersion;
    rec.state = p.toState;
    if (p.toOwner !== rec.owner) {
      rec.formerOwner = rec.owner;
      this.table.setOwner(rec, p.toOwner);
    }
    if (p.bind !== null) {
      rec.transport = p.bind.transport;
      rec.listener = p.bind.listener;
      // Other candidates stay known, so that a racing BIND for one of them can still be answered; with
      // none left the record holds none (out-of-line state keeps a record in the table's cache).
      rec.candidates?.delete(p.bind.key);
      if (rec.candidates?.size === 0) rec.candidates = null;
      rec.shellCache = undefined;
      this.table.touch(rec, now);
    }
    if (p.toState === SessionState.TERMINATED) {
      this.table.remove(rec, now);
      this.#unpin(rec);
    }
    return { event: p.event, cause: p.cause, fromVersion: p.fromVersion, toVersion: p.toVersion, fromOwner: p.fromOwner, toOwner: p.toOwner };
  }

  /** The store refused or could not be reached: nothing changes (fail closed). */
  abort(p: Planned): void {
    p.session.pending = null;
    if (p.bind !== null) p.bind.binding = false;
  }

  /** The store accepted a new session: it is live; its held packets (the HELLO first) go to the owner. */
  admitted(rec: SessionRecord, now: number): { note: TransitionNote; forwards: readonly Forward[] } {
    rec.pending = null;
    const note: TransitionNote = { event: LifecycleEvent.ADMIT, cause: 'hello', fromVersion: null, toVersion: rec.version, fromOwner: null, toOwner: rec.owner };
    return { note, forwards: this.release(rec, now, false) };
  }

  /**
   * The store refused a new session (`conflict`: the id exists elsewhere or is terminated;
   * `unavailable`): it is removed without a trace and the HELLO is answered with `reason`.
   */
  admissionFailed(rec: SessionRecord, reason: RejectReason, now: number): ClientOutcome {
    const hello = rec.held?.[0];
    rec.held = null;
    rec.pending = null;
    this.table.discard(rec);
    this.#unpin(rec); // an OpenVPN client's transport was pinned to it when admitted
    if (hello === undefined) return { kind: 'drop', reason: DropReason.REJECT_TOO_SMALL };
    return this.#reject(reason, rec.idBytes, rec.transport, hello.length, now);
  }

  /**
   * The packets held for `rec` (from its bound transport), in order, as forwards to the current owner.
   * `replayed` marks them REPLAYED (held during a freeze). A held CLOSE ends the session.
   */
  release(rec: SessionRecord, now: number, replayed: boolean): readonly Forward[] {
    const held = rec.held;
    const from = rec.heldFrom;
    rec.held = null;
    rec.heldFrom = null;
    if (held === null) return NO_FORWARDS; // most calls (every step of a drain): no array made
    // Held from a transport that is no longer the bound one (a reattach, or another director's write,
    // bound another meanwhile): they go on as that transport's, unbound — its CLOSE does not end the
    // session bound elsewhere now, and the owner does not take its bytes for the new transport's.
    const unbound = from !== null && (from.listener !== rec.listener || !sameTransport(from.transport, rec.transport)) ? from : null;
    const out: Forward[] = [];
    for (let i = 0; i < held.length; i++) {
      if (rec.state !== SessionState.ATTACHED || !this.table.holds(rec)) {
        // Not sendable (still frozen, or a held CLOSE ended the session): keep the rest held, for a
        // later release or for `discardHeld`, which counts them — never lose them silently.
        rec.held = held.slice(i);
        rec.heldFrom = from;
        break;
      }
      const msg = held[i] as Buffer;
      const flags = replayed ? PP2_FLAG.REPLAYED : 0;
      if (unbound !== null) out.push(this.#forward(rec, msg, unbound.transport, unbound.listener, flags | PP2_FLAG.UNBOUND_SOURCE, null));
      else out.push(this.#forwardBound(rec, msg, this.#heldType(rec, msg), flags, now));
    }
    return out;
  }

  /** Replies held during a reattach, to be sent to the session's (now decided) transport. */
  takeHeldReplies(rec: SessionRecord): Buffer[] {
    const r = rec.heldReplies ?? [];
    rec.heldReplies = null;
    return r;
  }

  /** Packets held for `rec` that will never be sent (the session ended while frozen). */
  discardHeld(rec: SessionRecord): number {
    const n = rec.held?.length ?? 0;
    rec.held = null;
    rec.heldFrom = null;
    return n;
  }

  /** Ends a live session at once (terminate by an operator, a policy): version + 1, tombstone. */
  terminate(rec: SessionRecord, cause: string, now: number): TransitionNote | PlanRefusal {
    if (!this.table.holds(rec)) return 'gone';
    if (rec.pending !== null) return 'busy';
    return this.#end(rec, LifecycleEvent.TERMINATE, cause, now);
  }

  /**
   * Whether a session is idle past its deadline and may expire: not while a transition is in flight.
   * The deadline is this director's own (its traffic) for a session it serves, and the store's expiry
   * plus a grace for one it only mirrors (a shared store: the serving director refreshes the store's
   * expiry while the session has traffic), so that a session whose director died still expires.
   */
  #idle(rec: SessionRecord, now: number): boolean {
    return rec.expiresAt <= now && rec.pending === null && rec.storeExpiresAt <= now;
  }

  /**
   * Idle sessions (at most `limit`), not yet ended: the caller ends each in the store first (a delete on
   * its version, so that it expires once in a cluster) and then here (`plan`/`commit` EXPIRE).
   */
  dueIdle(now: number, limit = 10_000): SessionRecord[] {
    return this.table.dueForExpiry(now, limit).filter((rec) => this.#idle(rec, now));
  }

  /** Ends idle sessions here at once (at most `limit` per call); `dueIdle` is the store-first way. */
  sweep(now: number, limit = 10_000): ExpiredNote[] {
    return this.dueIdle(now, limit).map((rec) => ({ session: rec, transition: this.#end(rec, LifecycleEvent.EXPIRE, 'idle_ttl', now) }));
  }

  sweepLimiters(now: number): void {
    this.#admission.sweep(now);
    this.#rejects.sweep(now);
  }

  /** Charges a REJECT to an unbound transport against its 3× budget; false when it would exceed it. */
  chargeCandidate(c: Candidate, bytes: number): boolean {
    if (c.bytesOut + bytes > UNBOUND_REPLY_FACTOR * c.bytesIn) return false;
    c.bytesOut += bytes;
    return true;
  }

  #onBind(rec: SessionRecord, payload: Uint8Array): NodeOutcome {
    const b = decodeBind(payload);
    if (b === undefined) return { kind: 'drop', reason: DropReason.MALFORMED, detail: 'bad_payload' };
    const key = transportKey(b.transport);
    const cand = rec.candidates?.get(key);
    // The bound transport again is a no-op — unless the candidate of that ip:port is the other protocol
    // (datagrams from the ip:port of the session's TCP connection, or the reverse): that is a jump.
    if (key === rec.transportKey && (cand === undefined || sameProtocol(cand.listener, rec.listener))) {
      return { kind: 'drop', reason: DropReason.BIND_NOOP };
    }
    // We only ever answer transports that sent us packets of this session (no reflection).
    if (cand === undefined) return { kind: 'drop', reason: DropReason.BIND_UNKNOWN_TRANSPORT, session: rec.id, security: 'bind_unknown_transport' };
    if (b.version > rec.version) return { kind: 'drop', reason: DropReason.BIND_BAD_VERSION, session: rec.id, security: 'bind_future_version' };
    if (b.version < rec.version) return { kind: 'conflict', session: rec, candidate: cand };
    if (rec.pending !== null || rec.state !== SessionState.ATTACHED) {
      // Another transition (a racing reattach, a freeze) is in flight: this BIND names a version that
      // is about to be superseded, so it loses deterministically.
      // The BIND of the very transport being bound (the node answered two of its packets) is a duplicate,
      // not a rival: it must not draw a REJECT to the socket that is about to win.
      if (rec.pending === LifecycleEvent.REATTACH && cand.binding !== true) return { kind: 'conflict', session: rec, candidate: cand };
      return { kind: 'drop', reason: DropReason.BIND_BUSY };
    }
    return { kind: 'bind', session: rec, candidate: cand, version: b.version };
  }

  #noteCandidate(rec: SessionRecord, src: Transport, key: string, listener: number, len: number, now: number): void {
    if (rec.candidates !== null) this.forgetStaleCandidates(rec, now);
    rec.candidates ??= new Map();
    let c = rec.candidates.get(key);
    if (c === undefined) {
      if (rec.candidates.size >= MAX_CANDIDATES) {
        // The oldest that is not being bound (its reattach CAS in flight needs it); none: the oldest.
        let victim: string | undefined;
        for (const o of rec.candidates.values()) {
          if (o.binding !== true) {
            victim = o.key;
            break;
          }
        }
        rec.candidates.delete(victim ?? (rec.candidates.keys().next().value as string));
      }
      c = { transport: src, key, listener, bytesIn: 0, bytesOut: 0, seenAt: now };
      rec.candidates.set(key, c);
    }
    c.listener = listener;
    c.bytesIn += len;
    c.seenAt = now;
  }

  /**
   * Forgets `rec`'s candidates that sent nothing for the candidate TTL (CoreLimits.candidateTtlMs), but one
   * being bound (its reattach CAS in flight); the record holds none once none is left. Called per bound
   * datagram and new candidate here, and by the TCP front for the sessions bound to its connections.
   */
  forgetStaleCandidates(rec: SessionRecord, now: number): void {
    const cands = rec.candidates;
    if (cands === null) return;
    const ttl = this.#candidateTtlMs;
    // Over the values, not the entries: destructuring [key, c] made an array per entry, on the
    // per-datagram path of a session that jumped within the TTL.
    for (const c of cands.values()) if (c.binding !== true && now - c.seenAt > ttl) cands.delete(c.key);
    if (cands.size === 0) rec.candidates = null;
  }

  #forwardBound(rec: SessionRecord, msg: Buffer, type: PacketType, flags: number, now: number): Forward {
    if (type === PacketType.CLOSE) {
      const version = rec.version;
      const t = this.#end(rec, LifecycleEvent.CLOSE, 'client_close', now);
      return this.#forward(rec, msg, rec.transport, rec.listener, flags, t, version);
    }
    return this.#forward(rec, msg, rec.transport, rec.listener, flags, null);
  }

  #forwardInto(v: Verdict, rec: SessionRecord, msg: Buffer, src: Transport, listener: number, flags: number, t: TransitionNote | null, version: bigint): Verdict {
    v.kind = 'forward';
    v.session = rec;
    v.flags = flags;
    v.seq = rec.nextSeq++;
    v.version = version;
    v.node = rec.owner;
    v.msg = msg;
    v.src = src;
    v.listener = listener;
    v.transition = t;
    return v;
  }

  #forward(rec: SessionRecord, msg: Buffer, src: Transport, listener: number, flags: number, t: TransitionNote | null, version = rec.version): Forward {
    return { kind: 'forward', session: rec, flags, seq: rec.nextSeq++, version, node: rec.owner, msg, src, listener, transition: t };
  }

  #hold(rec: SessionRecord, msg: Buffer): ClientOutcome {
    if (rec.held === null || rec.held.length === 0) rec.heldFrom = { transport: rec.transport, listener: rec.listener };
    rec.held ??= [];
    if (!this.#roomFor(rec.held, msg.length)) return { kind: 'drop', reason: DropReason.HOLD_OVERFLOW };
    rec.held.push(Buffer.from(msg)); // a copy: the shell may reuse the datagram's memory
    return { kind: 'hold', session: rec };
  }

  /** Whether one more packet of `len` bytes may join `held` (session.hold_max_packets and hold_max_bytes). */
  #roomFor(held: readonly Buffer[], len: number): boolean {
    if (held.length >= this.#limits.holdMax) return false;
    const maxBytes = this.#limits.holdMaxBytes;
    if (maxBytes === undefined) return true;
    let bytes = len;
    for (let i = 0; i < held.length; i++) bytes += (held[i] as Buffer).length;
    return bytes <= maxBytes;
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
    this.#unpin(rec);
    return { event, cause, fromVersion: from, toVersion: rec.version, fromOwner: rec.owner, toOwner: null };
  }

  #admit(id: string, idView: Uint8Array, msg: Buffer | null, len: number, src: Transport, listener: number, now: number): ClientOutcome {
    if (this.#draining) return this.#reject(RejectReason.DIRECTOR_DRAINING, idView, src, len, now);
    if (this.#fence() !== FenceState.OK) return this.#reject(RejectReason.STORE_UNAVAILABLE, idView, src, len, now);
    if (!this.#admission.take(src.address, now)) return this.#reject(RejectReason.RATE_LIMITED, idView, src, len, now);
    if (this.table.full) return this.#reject(RejectReason.NO_CAPACITY, idView, src, len, now);
    const owner = this.#ring.pick(idView);
    if (owner === undefined) return this.#reject(RejectReason.NO_HEALTHY_NODE, idView, src, len, now);
    const t = transition(null, null, LifecycleEvent.ADMIT, null);
    if (!t.ok) throw new Error('unreachable: admit is always valid from no session');
    const rec = newSessionRecord({
      id,
      owner,
      version: t.version,
      state: t.state,
      transport: src,
      listener,
      now,
      idleTtlMs: this.table.idleTtlMs,
    });
    rec.pending = LifecycleEvent.ADMIT;
    rec.held = msg === null ? null : [Buffer.from(msg)]; // a copy, as in #hold
    this.table.insert(rec);
    return { kind: 'admit', session: rec };
  }

  #reject(reason: RejectReason, sessionId: Uint8Array, src: Transport, len: number, now: number): RejectOrDrop {
    // A REJECT is the 20-byte header plus one reason byte: never answer a smaller packet.
    if (len < REJECT_LEN) return { kind: 'drop', reason: DropReason.REJECT_TOO_SMALL };
    if (!this.#rejects.take(src.address, now)) return { kind: 'drop', reason: DropReason.REJECT_RATE_LIMITED };
    return { kind: 'reject', reason, sessionId };
  }
}
