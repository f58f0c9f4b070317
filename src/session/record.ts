// A session as the director keeps it (SessionRecord) and the one way to make one (newSessionRecord).
// Pure data: no I/O, no clock (time comes in as `now`); it never decides a transition (lifecycle.ts does)
// and never indexes itself (table.ts does).
//
// Memory (issue 7), per record: the id is kept once, as text, and `idBytes` is decoded from it on each
// read (no reader is per datagram), so no session holds a typed array of its own; the transport's text
// form (`transportKey`) is made from the transport when read, not kept; the fields most sessions leave
// null live out of line (Cold); version 1 is shared.
import type { Transport } from '../codec/types.js';
import type { SessionState } from './lifecycle.js';
import { transportKey } from '../codec/ip.js';
import { idBytesFromHex, idBytesInto } from './id-index.js';

export interface SessionRecord {
  /** 32 lowercase hex characters. */
  readonly id: string;
  /**
   * The 16 id bytes: a fresh array decoded from `id` on every read (records built by newSessionRecord),
   * so a reader may keep or change it. Read it once per use, not per byte.
   */
  readonly idBytes: Uint8Array;
  owner: string;
  version: bigint;
  /**
   * Which life of the id this session is in the store (StoredSession.incarnation): every write of it
   * names this one, so that none lands on a session of the same id admitted anew after it ended. Drawn by
   * Ownership.admit for a new session (0 until then); 0 also for one read from a record written before
   * lives were kept.
   */
  incarnation: number;
  state: SessionState;
  /** The bound client transport; replies go here. */
  transport: Transport;
  /**
   * The bound transport's text form (transportKey(transport)): a string made on every read, so compare
   * transports by their parts on a per-datagram path.
   */
  readonly transportKey: string;
  /** Index of the director listener the bound transport talks to. */
  listener: number;
  /** Next PROXY v2 sequence number (starts at 1, never restarts). */
  nextSeq: number;
  lastSeen: number;
  /** Absolute idle deadline: lastSeen + idle TTL. */
  expiresAt: number;
  /** Owned by the shell (e.g. a pre-encoded PROXY v2 prefix); the table never reads it. */
  shellCache: unknown;
  /** The transition whose store write is in flight (one at a time per session), or null. */
  pending: string | null;
  /** Packets from the bound transport held while a transition is in flight or the session is frozen. */
  held: Buffer[] | null;
  /**
   * The bound transport (and listener) the packets in `held` came from, set with the first of them: a
   * reattach or another director's write may bind another one before they are released.
   */
  heldFrom: HeldFrom | null;
  /** Transports that sent packets for this session without being bound (jump candidates), bounded. */
  candidates: Map<string, Candidate> | null;
  /** The owner before the last transfer: its late replies are expected, not a security event. */
  formerOwner: string | null;
  /** Node replies that arrived while a reattach was being CASed: they go to the transport that wins. */
  heldReplies: Buffer[] | null;
  /**
   * The owner that sent CLOSE while a transition of the session was in flight (relayed to the client at
   * once): the session ends as soon as that transition settles. Null otherwise.
   */
  closedBy: string | null;
  /**
   * Whether this director serves the session (admitted it, or saw its client's traffic). A session only
   * mirrored from another director's writes expires here by the store's expiry (plus a grace), not by
   * this director's idle deadline.
   */
  servedHere: boolean;
  /**
   * The idle expiry the store holds, as far as this director knows (monotonic ms). The director that
   * serves the session refreshes it in coarse steps; every other director expires the session by it.
   */
  storeExpiresAt: number;
  /** Owned by the table: the record's place in its expiry heap, -1 when in none. Nothing else touches it. */
  expirySlot: number;
}

/** Where packets held for a session came from. */
export interface HeldFrom {
  readonly transport: Transport;
  readonly listener: number;
}

/** A client transport that sent packets of a session without being bound to it. */
export interface Candidate {
  readonly transport: Transport;
  readonly key: string;
  listener: number;
  /** Bytes received from it and sent to it (only REJECTs), so that we never send it more than 3×. */
  bytesIn: number;
  bytesOut: number;
  /** Set while a reattach CAS binds this transport (a second BIND for it is a duplicate, not a rival). */
  binding?: boolean;
}

export interface NewSessionFields {
  /** 32 hex characters (lower case, as sessionIdHex writes them); the id bytes are decoded from it. */
  id: string;
  owner: string;
  version: bigint;
  /** The session's life (StoredSession.incarnation): a mirrored or loaded session's; 0, the default, for a new one until admitted. */
  incarnation?: number;
  state: SessionState;
  transport: Transport;
  listener: number;
  now: number;
  idleTtlMs: number;
}

/** A new record with the bookkeeping fields empty. RangeError if `id` is not 32 hex characters. */
export function newSessionRecord(f: NewSessionFields): SessionRecord {
  idBytesInto(f.id, CHECKED); // validates: a malformed id fails here, not at the first read of idBytes
  return new Session(f);
}

/** Where newSessionRecord's check decodes an id (the bytes are not kept). */
const CHECKED = new Uint8Array(16);

/** Every new session's first version: one shared bigint (bigints compare by value, never by identity). */
const VERSION_1 = 1n;

/**
 * The fields most sessions leave null most of the time (an admission or a transition in flight, a jump,
 * a transfer): one object, made on the first non-null write and dropped when all are null again.
 */
class Cold {
  pending: string | null = null;
  held: Buffer[] | null = null;
  heldFrom: HeldFrom | null = null;
  candidates: Map<string, Candidate> | null = null;
  formerOwner: string | null = null;
  heldReplies: Buffer[] | null = null;
  closedBy: string | null = null;
}

/** The record newSessionRecord builds: plain fields, the rare ones out of line, the id bytes as a getter. */
class Session implements SessionRecord {
  readonly id: string;
  owner: string;
  version: bigint;
  incarnation: number;
  state: SessionState;
  transport: Transport;
  listener: number;
  nextSeq = 1;
  lastSeen: number;
  expiresAt: number;
  shellCache: unknown = undefined;
  servedHere = true;
  storeExpiresAt: number;
  expirySlot = -1;
  #cold: Cold | null = null;

  constructor(f: NewSessionFields) {
    this.id = f.id;
    this.owner = f.owner;
    this.version = f.version === VERSION_1 ? VERSION_1 : f.version;
    this.incarnation = f.incarnation ?? 0;
    this.state = f.state;
    this.transport = f.transport;
    this.listener = f.listener;
    this.lastSeen = f.now;
    this.expiresAt = f.now + f.idleTtlMs;
    this.storeExpiresAt = f.now + f.idleTtlMs;
  }

  get idBytes(): Uint8Array {
    return idBytesFromHex(this.id);
  }

  get transportKey(): string {
    return transportKey(this.transport);
  }

  get pending(): string | null {
    return this.#getCold('pending');
  }
  set pending(v: string | null) {
    this.#setCold('pending', v);
  }

  get held(): Buffer[] | null {
    return this.#getCold('held');
  }
  set held(v: Buffer[] | null) {
    this.#setCold('held', v);
  }

  get heldFrom(): HeldFrom | null {
    return this.#getCold('heldFrom');
  }
  set heldFrom(v: HeldFrom | null) {
    this.#setCold('heldFrom', v);
  }

  get candidates(): Map<string, Candidate> | null {
    return this.#getCold('candidates');
  }
  set candidates(v: Map<string, Candidate> | null) {
    this.#setCold('candidates', v);
  }

  get formerOwner(): string | null {
    return this.#getCold('formerOwner');
  }
  set formerOwner(v: string | null) {
    this.#setCold('formerOwner', v);
  }

  get closedBy(): string | null {
    return this.#getCold('closedBy');
  }
  set closedBy(v: string | null) {
    this.#setCold('closedBy', v);
  }

  get heldReplies(): Buffer[] | null {
    return this.#getCold('heldReplies');
  }
  set heldReplies(v: Buffer[] | null) {
    this.#setCold('heldReplies', v);
  }

  #getCold<K extends keyof Cold>(k: K): Cold[K] | null {
    return this.#cold === null ? null : this.#cold[k];
  }

  /** Writes a cold field: the Cold object is made for a non-null value and dropped once all are null. */
  #setCold<K extends keyof Cold>(k: K, v: Cold[K]): void {
    const c = this.#coldFor(v);
    if (c === null) return;
    c[k] = v;
    if (v === null) this.#trim(c);
  }

  /** Where a cold field is written: the Cold object, made now for a non-null value; null for a null into none. */
  #coldFor(v: unknown): Cold | null {
    if (this.#cold === null && v !== null) this.#cold = new Cold();
    return this.#cold;
  }

  /** Drops the Cold object once every field in it is null. */
  #trim(c: Cold): void {
    if (c.pending === null && c.held === null && c.heldFrom === null && c.candidates === null && c.formerOwner === null && c.heldReplies === null && c.closedBy === null) this.#cold = null;
  }
}
