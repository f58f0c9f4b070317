// A session as the director keeps it (SessionRecord) and the one way to make one (newSessionRecord).
// Pure data: no I/O, no clock (time comes in as `now`); it never decides a transition (lifecycle.ts does)
// and never indexes itself (table.ts does).
//
// Memory (issue 7): a record is a view of a row of the session table's columns (rows.ts) while the table
// holds it; the table keeps a bounded cache of records for the sessions in use and makes one anew for any
// other (one record per row at a time: see SessionTable). A record that no table holds (new, or removed)
// keeps its fields in an object of its own. The fields most sessions leave null live out of line (Cold);
// a record holding any of them stays in the table's cache. The id bytes and the transport's text are made
// when read.
import type { Transport } from '../codec/types.js';
import type { SessionState } from './lifecycle.js';
import { transportKey } from '../codec/ip.js';
import { idBytesFromHex, idBytesInto } from './id-index.js';
import { PINNED, type RowFields, type SessionRows } from './rows.js';

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
  /** The record's place in its table's expiry heap, -1 when no table holds it. */
  readonly expirySlot: number;
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
  /** When it last sent a packet of the session (monotonic ms): forgotten the candidate TTL after (CoreLimits.candidateTtlMs, core.ts). */
  seenAt: number;
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

/** A new record with the bookkeeping fields empty, held by no table. RangeError if `id` is not 32 hex characters. */
export function newSessionRecord(f: NewSessionFields): SessionRecord {
  idBytesInto(f.id, CHECKED); // validates: a malformed id fails here, not at the first read of idBytes
  return new Session(f.id, null, -1, {
    owner: f.owner,
    version: f.version,
    incarnation: f.incarnation ?? 0,
    state: f.state,
    transport: f.transport,
    listener: f.listener,
    nextSeq: 1,
    lastSeen: f.now,
    expiresAt: f.now + f.idleTtlMs,
    servedHere: true,
    storeExpiresAt: f.now + f.idleTtlMs,
    formerOwner: null,
  });
}

/** Where newSessionRecord's check decodes an id (the bytes are not kept). */
const CHECKED = new Uint8Array(16);

/**
 * The fields most sessions leave null most of the time (an admission or a transition in flight, a jump,
 * a transfer): one object, made on the first non-null write and dropped when all are null again.
 */
class Cold {
  pending: string | null = null;
  held: Buffer[] | null = null;
  heldFrom: HeldFrom | null = null;
  candidates: Map<string, Candidate> | null = null;
  heldReplies: Buffer[] | null = null;
  closedBy: string | null = null;
}

/**
 * The record: a view of row `#row` of `#rows` while a table holds it, its own fields (`#own`) otherwise.
 * Only the table moves it between the two (the functions below).
 */
class Session implements SessionRecord {
  readonly id: string;
  shellCache: unknown = undefined;
  #rows: SessionRows | null;
  #row: number;
  #own: RowFields | null;
  #cold: Cold | null = null;
  /**
   * The transport last read or written while in a row (a record is its row's only writer, so this stays
   * what the row says); null until the first read of a record made for a row.
   */
  #t: Transport | null = null;
  /** The version last read or written while in a row, as the transport (so no bigint is made per read). */
  #v: bigint | null = null;

  constructor(id: string, rows: SessionRows | null, row: number, own: RowFields | null) {
    this.id = id;
    this.#rows = rows;
    this.#row = row;
    this.#own = own;
  }

  /** Into row `row` of `rows` (which holds this record's fields already). */
  static attach(s: Session, rows: SessionRows, row: number): void {
    s.#rows = rows;
    s.#row = row;
    s.#t = s.#own!.transport;
    s.#v = s.#own!.version;
    s.#own = null;
  }

  /** Out of its row, keeping the row's fields (before the table frees the row). */
  static detach(s: Session): void {
    const rows = s.#rows;
    if (rows === null) return;
    const own = rows.fields(s.#row);
    if (s.#t !== null) own.transport = s.#t;
    s.#own = own;
    s.#rows = null;
    s.#row = -1;
    s.#t = null;
    s.#v = null;
  }

  static own(s: Session): RowFields | null {
    return s.#own;
  }
  static rowsOf(s: Session): SessionRows | null {
    return s.#rows;
  }
  static rowOf(s: Session): number {
    return s.#row;
  }
  static pinned(s: Session): boolean {
    return s.#cold !== null;
  }

  get idBytes(): Uint8Array {
    return idBytesFromHex(this.id);
  }

  get transportKey(): string {
    return transportKey(this.transport);
  }

  get expirySlot(): number {
    const r = this.#rows;
    return r === null ? -1 : r.heapPos[this.#row]!;
  }

  get owner(): string {
    const r = this.#rows;
    return r === null ? this.#own!.owner : r.ownerOf(this.#row);
  }
  set owner(v: string) {
    const r = this.#rows;
    if (r === null) this.#own!.owner = v;
    else r.setOwner(this.#row, v);
  }

  get version(): bigint {
    const r = this.#rows;
    if (r === null) return this.#own!.version;
    this.#v ??= r.versionOf(this.#row);
    return this.#v;
  }
  set version(v: bigint) {
    const r = this.#rows;
    if (r === null) this.#own!.version = v;
    else {
      r.setVersion(this.#row, v);
      this.#v = v;
    }
  }

  get incarnation(): number {
    const r = this.#rows;
    return r === null ? this.#own!.incarnation : r.incarnationOf(this.#row);
  }
  set incarnation(v: number) {
    const r = this.#rows;
    if (r === null) this.#own!.incarnation = v;
    else r.setIncarnation(this.#row, v);
  }

  get state(): SessionState {
    const r = this.#rows;
    return r === null ? this.#own!.state : r.stateOf(this.#row);
  }
  set state(v: SessionState) {
    const r = this.#rows;
    if (r === null) this.#own!.state = v;
    else r.setState(this.#row, v);
  }

  /**
   * The transport: in a row, the object last written or read (so a caller may compare it by identity),
   * made from the columns at the first read of a new record.
   */
  get transport(): Transport {
    const r = this.#rows;
    if (r === null) return this.#own!.transport;
    if (this.#t !== null) return this.#t;
    this.#t = r.transportOf(this.#row);
    return this.#t;
  }
  set transport(v: Transport) {
    const r = this.#rows;
    if (r === null) {
      this.#own!.transport = v;
      return;
    }
    r.setTransport(this.#row, v);
    this.#t = v;
  }

  get listener(): number {
    const r = this.#rows;
    return r === null ? this.#own!.listener : r.listenerOf(this.#row);
  }
  set listener(v: number) {
    const r = this.#rows;
    if (r === null) this.#own!.listener = v;
    else r.setListener(this.#row, v);
  }

  get nextSeq(): number {
    const r = this.#rows;
    return r === null ? this.#own!.nextSeq : r.seqOf(this.#row);
  }
  set nextSeq(v: number) {
    const r = this.#rows;
    if (r === null) this.#own!.nextSeq = v;
    else r.setSeq(this.#row, v);
  }

  get lastSeen(): number {
    const r = this.#rows;
    return r === null ? this.#own!.lastSeen : r.lastSeen[this.#row]!;
  }
  set lastSeen(v: number) {
    const r = this.#rows;
    if (r === null) this.#own!.lastSeen = v;
    else r.lastSeen[this.#row] = v;
  }

  get expiresAt(): number {
    const r = this.#rows;
    return r === null ? this.#own!.expiresAt : r.expiresAt[this.#row]!;
  }
  set expiresAt(v: number) {
    const r = this.#rows;
    if (r === null) this.#own!.expiresAt = v;
    else r.expiresAt[this.#row] = v;
  }

  get servedHere(): boolean {
    const r = this.#rows;
    return r === null ? this.#own!.servedHere : r.servedOf(this.#row);
  }
  set servedHere(v: boolean) {
    const r = this.#rows;
    if (r === null) this.#own!.servedHere = v;
    else r.setServed(this.#row, v);
  }

  get storeExpiresAt(): number {
    const r = this.#rows;
    return r === null ? this.#own!.storeExpiresAt : r.storeExpiresAt[this.#row]!;
  }
  set storeExpiresAt(v: number) {
    const r = this.#rows;
    if (r === null) this.#own!.storeExpiresAt = v;
    else r.storeExpiresAt[this.#row] = v;
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
    const r = this.#rows;
    return r === null ? this.#own!.formerOwner : r.formerOwnerOf(this.#row);
  }
  set formerOwner(v: string | null) {
    const r = this.#rows;
    if (r === null) this.#own!.formerOwner = v;
    else r.setFormerOwner(this.#row, v);
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
    if (this.#cold === null && v !== null) {
      this.#cold = new Cold();
      const r = this.#rows;
      if (r !== null && r.cacheSlot[this.#row] === -1) r.onPinned?.(this.#row); // out of the cache: it must stay now
    }
    return this.#cold;
  }

  /** Drops the Cold object once every field in it is null. */
  #trim(c: Cold): void {
    if (c.pending === null && c.held === null && c.heldFrom === null && c.candidates === null && c.heldReplies === null && c.closedBy === null) {
      this.#cold = null;
      const r = this.#rows;
      if (r !== null && r.cacheSlot[this.#row] === PINNED) r.onUnpinned?.(this.#row);
    }
  }
}

/** `rec` as the table's record class (TypeError for a record newSessionRecord did not make). */
function session(rec: SessionRecord): Session {
  if (!(rec instanceof Session)) throw new TypeError('a session table holds only records made by newSessionRecord');
  return rec;
}

// For the session table only (table.ts): moving records in and out of its rows.

/** The fields of a record no table holds (null while one does). TypeError for a record of another kind. */
export function ownFields(rec: SessionRecord): RowFields | null {
  return Session.own(session(rec));
}
/** Makes `rec` the view of `row` of `rows`, which holds its fields now. */
export function attachRecord(rec: SessionRecord, rows: SessionRows, row: number): void {
  Session.attach(session(rec), rows, row);
}
/** Gives `rec` its row's fields as its own: no table holds it any more. */
export function detachRecord(rec: SessionRecord): void {
  Session.detach(session(rec));
}
/** A record for row `row` of `rows` (whose id text is `id`), for a row that has none. */
export function recordForRow(rows: SessionRows, row: number, id: string): SessionRecord {
  return new Session(id, rows, row, null);
}
/** The rows `rec` is a view of (null: none), and its row. */
export function rowsOfRecord(rec: SessionRecord): SessionRows | null {
  return rec instanceof Session ? Session.rowsOf(rec) : null;
}
export function rowOfRecord(rec: SessionRecord): number {
  return rec instanceof Session ? Session.rowOf(rec) : -1;
}
/** Whether `rec` holds anything out of line (a transition, held packets, candidates...): it must stay cached. */
export function recordPinned(rec: SessionRecord): boolean {
  return Session.pinned(rec as Session);
}
