// What the core decides, as data: the verdict of one datagram (Verdict, reused per datagram so that
// the per-packet path allocates nothing) and the outcome, transition and refusal types the shell acts
// on. No decision is taken here: core.ts decides, the shell (director.ts, tcp-front.ts) acts.
import { PacketType, RejectReason, type Transport } from '../codec/types.js';
import type { LifecycleEvent, SessionState } from '../session/lifecycle.js';
import type { Candidate, SessionRecord } from '../session/table.js';

export interface CoreLimits {
  readonly sessionMax: number;
  readonly idleTtlMs: number;
  readonly tombstoneMs: number;
  readonly admissionRate: number;
  readonly admissionBurst: number;
  readonly rejectRate: number;
  readonly rejectBurst: number;
  /** Packets held per session while a transition is in flight or it is frozen. */
  readonly holdMax: number;
  /** Bytes those held packets may take per session (session.hold_max_bytes); unbounded when absent. */
  readonly holdMaxBytes?: number;
  /**
   * A session this director only mirrors (another director serves it) expires here this long after the
   * store's expiry, so that the serving director's refresh, in flight or a clock step away, wins.
   */
  readonly sharedExpiryGraceMs?: number;
  /**
   * Session records the table keeps ready for the sessions in use (SessionTable's `records`): the shell
   * gives session.header_cache, the sessions that keep their PROXY v2 header on their record.
   */
  readonly recordCache?: number;
  /** Rows the session table reserves up front (SessionTable's `reserve`): the shell gives session.max. */
  readonly reserveRows?: number;
  /**
   * How long a jump candidate is kept after its last packet (CANDIDATE_TTL_MS when absent): the shell gives
   * at least the TCP reattach's connect and BIND timeouts, which a TCP candidate waits through.
   */
  readonly candidateTtlMs?: number;
  /**
   * Where this director's counter of a session it did not admit starts (a session another director
   * admitted, or this director before a restart: read from the shared store): `sequenceBase` of the wall
   * clock when the director started, above any number an earlier run of a director on its address can have
   * sent. 0 (absent): such counters start at 1, as a session's own does.
   */
  readonly seqBase?: number;
}

/** Why a datagram was dropped; each has its own counter. */
export const DropReason = {
  NOT_JV1: 'not_jv1',
  /** Not this listener's protocol (a non-JV1 codec said "not mine"). */
  NOT_MINE: 'not_mine',
  /** A data packet (no session id) from a transport no session is pinned to. */
  UNPINNED: 'unpinned',
  /** A refusal (unknown, terminated, rate limited…) on a listener whose clients cannot read a REJECT. */
  UNANSWERED: 'unanswered',
  MALFORMED: 'malformed',
  CLIENT_FORBIDDEN_TYPE: 'client_forbidden_type',
  REJECT_RATE_LIMITED: 'reject_rate_limited',
  REJECT_TOO_SMALL: 'reject_too_small',
  OWNER_UNAVAILABLE: 'owner_unavailable',
  /** Past the self-fence deadline of the store lease: nothing is forwarded. */
  FENCED: 'fenced',
  /**
   * A packet of a session this director does not know while it is not following the shared store (it
   * lists the store again after a watch gap): the session may live elsewhere, so no UNKNOWN_SESSION.
   */
  NOT_FOLLOWING: 'store_not_following',
  HOLD_OVERFLOW: 'hold_overflow',
  FROZEN_UNBOUND: 'frozen_unbound',
  /**
   * Transparent forwarding: the session has no upstream socket, because the kernel had no local port
   * free or handed out only ports held toward its node (backend.port_quarantine_s).
   */
  NO_UPSTREAM_PORT: 'no_upstream_port',
  // Node side.
  NODE_UNKNOWN_SESSION: 'node_unknown_session',
  NODE_NOT_OWNER: 'node_not_owner',
  NODE_FORMER_OWNER: 'node_former_owner',
  NODE_FORBIDDEN_TYPE: 'node_forbidden_type',
  BIND_NOOP: 'bind_noop',
  BIND_UNKNOWN_TRANSPORT: 'bind_unknown_transport',
  BIND_BUSY: 'bind_busy',
  BIND_BAD_VERSION: 'bind_bad_version',
  REVOKE_ACK: 'revoke_ack',
} as const;
export type DropReason = (typeof DropReason)[keyof typeof DropReason];

/** An ownership transition that happened; the shell audits it. */
export interface TransitionNote {
  readonly event: LifecycleEvent;
  readonly cause: string;
  readonly fromVersion: bigint | null;
  readonly toVersion: bigint;
  readonly fromOwner: string | null;
  readonly toOwner: string | null;
}

export interface Forward {
  readonly kind: 'forward';
  readonly session: SessionRecord;
  /** PROXY v2 flags: UNBOUND_SOURCE for a jump candidate, REPLAYED for a packet held during a freeze. */
  readonly flags: number;
  readonly seq: number;
  /** The version the packet is forwarded under (a CLOSE goes under the version it ended). */
  readonly version: bigint;
  /** The node it goes to (the owner when it was decided). */
  readonly node: string;
  readonly msg: Buffer;
  /** The client transport it came from (the PROXY v2 source). */
  readonly src: Transport;
  readonly listener: number;
  /** Set when this packet ended the session. */
  readonly transition: TransitionNote | null;
}

export type ClientOutcome =
  | Forward
  /** A new session: the shell creates it in the store, then calls `admitted`. The HELLO is held. */
  | { readonly kind: 'admit'; readonly session: SessionRecord }
  | { readonly kind: 'hold'; readonly session: SessionRecord }
  | { readonly kind: 'reject'; readonly reason: RejectReason; readonly sessionId: Uint8Array }
  | { readonly kind: 'drop'; readonly reason: DropReason; readonly detail?: string };

export type NodeOutcome =
  | { readonly kind: 'relay'; readonly session: SessionRecord; readonly transition: TransitionNote | null }
  /** The owner confirmed a jump candidate: the shell CASes the binding (plan → store → commit). */
  | { readonly kind: 'bind'; readonly session: SessionRecord; readonly candidate: Candidate; readonly version: bigint }
  /** A BIND naming an old version for a transport that is not bound: REJECT OWNERSHIP_CONFLICT to it. */
  | { readonly kind: 'conflict'; readonly session: SessionRecord; readonly candidate: Candidate }
  | { readonly kind: 'revoke-ack'; readonly session: string; readonly version: bigint }
  /** A reply held until a reattach in flight is decided (then sent to the winning transport). */
  | { readonly kind: 'held-reply'; readonly session: SessionRecord }
  | { readonly kind: 'drop'; readonly reason: DropReason; readonly detail?: string; readonly security?: string; readonly session?: string };

/** The listener index of a TCP-bound session (it has no UDP listener to reply through). */
export const TCP_LISTENER = -1;

/** Whether two listener indexes are of one protocol (both TCP, or both datagram listeners). */
export function sameProtocol(a: number, b: number): boolean {
  return (a === TCP_LISTENER) === (b === TCP_LISTENER);
}

export type VerdictKind = ClientOutcome['kind'] | NodeOutcome['kind'];

/**
 * The decision about one datagram, written in place by `decideClient` / `decideNode` so that the
 * per-datagram path allocates nothing: the same effects as a ClientOutcome / NodeOutcome, as the fields of
 * one object per core that the next decision overwrites. Read it at once; never keep it (copy what must
 * outlive the call). `onClient` / `onNode` return the same decisions as fresh outcome objects.
 * Which fields mean something depends on `kind`, as in the outcome types:
 *   forward: session flags seq version node msg src listener transition · relay: session transition
 *   admit, hold, held-reply: session · reject: reject sessionId · drop: reason detail security dropSession
 *   bind: session candidate version · conflict: session candidate · revoke-ack: revoked version
 */
export class Verdict {
  kind: VerdictKind = 'drop';
  session: SessionRecord | null = null;
  flags = 0;
  seq = 0;
  version = 0n;
  node = '';
  msg: Buffer | null = null;
  src: Transport | null = null;
  listener = 0;
  transition: TransitionNote | null = null;
  reject: RejectReason = RejectReason.UNKNOWN_SESSION;
  sessionId: Uint8Array | null = null;
  reason: DropReason = DropReason.NOT_JV1;
  detail: string | undefined = undefined;
  security: string | undefined = undefined;
  dropSession: string | undefined = undefined;
  candidate: Candidate | null = null;
  revoked = '';

  drop(reason: DropReason, detail?: string): this {
    this.kind = 'drop';
    this.reason = reason;
    this.detail = detail;
    this.security = undefined;
    this.dropSession = undefined;
    return this;
  }

  /** Copies an outcome object (the paths that are not per-datagram build objects and land here). */
  set(o: ClientOutcome | NodeOutcome): this {
    this.kind = o.kind;
    switch (o.kind) {
      case 'forward':
        this.session = o.session;
        this.flags = o.flags;
        this.seq = o.seq;
        this.version = o.version;
        this.node = o.node;
        this.msg = o.msg;
        this.src = o.src;
        this.listener = o.listener;
        this.transition = o.transition;
        break;
      case 'relay':
        this.session = o.session;
        this.transition = o.transition;
        break;
      case 'admit':
      case 'hold':
      case 'held-reply':
        this.session = o.session;
        break;
      case 'reject':
        this.reject = o.reason;
        this.sessionId = o.sessionId;
        break;
      case 'drop':
        this.reason = o.reason;
        this.detail = o.detail;
        this.security = 'security' in o ? o.security : undefined;
        this.dropSession = 'session' in o ? o.session : undefined;
        break;
      case 'bind':
        this.session = o.session;
        this.candidate = o.candidate;
        this.version = o.version;
        break;
      case 'conflict':
        this.session = o.session;
        this.candidate = o.candidate;
        break;
      case 'revoke-ack':
        this.revoked = o.session;
        this.version = o.version;
        break;
    }
    return this;
  }

  /** The decision as a fresh client outcome object. */
  toClientOutcome(): ClientOutcome {
    switch (this.kind) {
      case 'forward':
        return {
          kind: 'forward',
          session: this.session as SessionRecord,
          flags: this.flags,
          seq: this.seq,
          version: this.version,
          node: this.node,
          msg: this.msg as Buffer,
          src: this.src as Transport,
          listener: this.listener,
          transition: this.transition,
        };
      case 'admit':
      case 'hold':
        return { kind: this.kind, session: this.session as SessionRecord };
      case 'reject':
        return { kind: 'reject', reason: this.reject, sessionId: this.sessionId as Uint8Array };
      case 'drop':
        return this.detail === undefined ? { kind: 'drop', reason: this.reason } : { kind: 'drop', reason: this.reason, detail: this.detail };
      default:
        throw new Error(`not a client decision: ${this.kind}`);
    }
  }

  /** The decision as a fresh node outcome object. */
  toNodeOutcome(): NodeOutcome {
    switch (this.kind) {
      case 'relay':
        return { kind: 'relay', session: this.session as SessionRecord, transition: this.transition };
      case 'bind':
        return { kind: 'bind', session: this.session as SessionRecord, candidate: this.candidate as Candidate, version: this.version };
      case 'conflict':
        return { kind: 'conflict', session: this.session as SessionRecord, candidate: this.candidate as Candidate };
      case 'revoke-ack':
        return { kind: 'revoke-ack', session: this.revoked, version: this.version };
      case 'held-reply':
        return { kind: 'held-reply', session: this.session as SessionRecord };
      case 'drop': {
        const o: { kind: 'drop'; reason: DropReason; detail?: string; security?: string; session?: string } = { kind: 'drop', reason: this.reason };
        if (this.detail !== undefined) o.detail = this.detail;
        if (this.dropSession !== undefined) o.session = this.dropSession;
        if (this.security !== undefined) o.security = this.security;
        return o;
      }
      default:
        throw new Error(`not a node decision: ${this.kind}`);
    }
  }
}

export type RejectOrDrop =
  | { readonly kind: 'reject'; readonly reason: RejectReason; readonly sessionId: Uint8Array }
  | { readonly kind: 'drop'; readonly reason: DropReason; readonly detail?: string };

export type TcpOutcome =
  /** A new session: the shell creates it in the store, then connects to the owner. */
  | { readonly kind: 'admit'; readonly session: SessionRecord; readonly seq: number }
  /** A live session: connect to the owner flagged UNBOUND_SOURCE and wait for its BIND. */
  | { readonly kind: 'reattach'; readonly session: SessionRecord; readonly seq: number; readonly version: bigint }
  | { readonly kind: 'reject'; readonly reason: RejectReason; readonly sessionId: Uint8Array }
  | { readonly kind: 'drop'; readonly reason: DropReason; readonly detail?: string };

export type SessionReplyOutcome =
  | { readonly kind: 'relay'; readonly session: SessionRecord; readonly transition: TransitionNote | null }
  | { readonly kind: 'drop'; readonly reason: DropReason };

export interface ExpiredNote {
  readonly session: SessionRecord;
  readonly transition: TransitionNote;
}

/** A transition the core agreed to; the shell writes it to the store, then commits or aborts it. */
export interface Planned {
  readonly session: SessionRecord;
  readonly event: LifecycleEvent;
  readonly cause: string;
  readonly fromVersion: bigint;
  readonly toVersion: bigint;
  readonly toState: SessionState;
  readonly fromOwner: string;
  readonly toOwner: string;
  /** The new binding, for a reattach. */
  readonly bind: Candidate | null;
}

export type PlanRefusal = 'stale_version' | 'invalid_transition' | 'busy' | 'gone';
