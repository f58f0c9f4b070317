// The session table's storage (issue 7: memory per session): every live session is one row of typed
// columns — no JavaScript object per session. A row holds what the director keeps of a session between
// its datagrams, in 73 bytes: the 16 id bytes; owner and former owner (interned names, 2 bytes each);
// version, life, PROXY v2 sequence (4 each); the client transport (an IPv4 address and port as numbers,
// 6); the listener (2); the three deadlines (8 each); a flags byte (state, transport kind, whether it is
// served here, whether the embedded store reads the row as its record: RowStoreHooks); its places in the
// expiry heap and the record cache (4 each). What is rare stays out of the columns, in maps by row: an id
// text that is not lower case, a version, life or sequence number that is not below 2^32 - 1, a transport
// that is not a canonical IPv4 one, a listener outside an i16, a name numbered past a u16 (more than 65,534
// owner names at once). Records (record.ts) are views of a row, made when a caller asks for one.
//
// Pure data: no I/O, no clock, no decisions. Rows are reused (a free list). The columns are made for
// `reserve` rows up front (the director reserves session.max): memory the kernel hands out only as rows are
// first written (a zeroed allocation this large is mapped, not touched), and columns that never move — no
// copy of every column while traffic waits, and no freed old columns left as holes in the C heap, which
// cost more resident memory per session than the rows' own slack. Past the reservation (or without one)
// they grow by half (not doubling: less slack per session), and never shrink.
import TinyQueue from 'tinyqueue';
import type { Transport } from '../codec/types.js';
import { SessionState } from './lifecycle.js';
import { Names } from '../util/names.js';
import { reservedCapacity } from '../util/reserve.js';
import { formatV4Address, formatV4Transport, parseV4Address } from '../store/transport-text.js';
import { transportKey } from '../codec/ip.js';

const MIN_ROWS = 16;

/** The states a row's state byte numbers (their index in this list). */
const STATES: readonly SessionState[] = Object.values(SessionState);
const STATE_NUM = new Map<string, number>(STATES.map((s, i) => [s, i]));

/** `cacheSlot` of a row whose record holds out-of-line state: the table keeps it in a map by row. */
export const PINNED = -2;

/** A u32 column's mark for a number kept in the row's overflow map instead (2^32 - 1). */
const WIDE = 0xffff_ffff;
const WIDE_N = 0xffff_ffffn;

/** `formerOwner` of a row that has none. */
const NO_NAME = 0xffff;
/** An owner or former owner column's mark for a name numbered past the u16 marks: its number is in a map by row. */
const WIDE_NAME = 0xfffe;
/** The listener column's mark for a listener outside the other i16 values: it is in #wideListeners. */
const WIDE_LISTENER = -0x8000;

/**
 * The flags byte of a row (`flags`): the state's number in the low bits, whether the transport is other than
 * a canonical IPv4 one (in `#otherTransports`, not the address and port columns), and whether the session
 * is served here.
 */
const STATE_BITS = 0x07;
const T_OTHER = 0x08;
const SERVED = 0x10;
/** The sequence column counts from `seqBase` (a mirrored session's counter, see Rows.seqBase), not from 0. */
const SEQ_BASED = 0x20;
/** The in-process store reads this row as its record of the session (`storeHooks`, store/table-records.ts). */
const IN_STORE = 0x40;
if (STATES.length > STATE_BITS + 1) throw new Error('session states do not fit the flags byte');

/** The fields a row holds (what a record detached from any table keeps in an object instead). */
export interface RowFields {
  owner: string;
  version: bigint;
  incarnation: number;
  state: SessionState;
  transport: Transport;
  listener: number;
  nextSeq: number;
  lastSeen: number;
  expiresAt: number;
  servedHere: boolean;
  storeExpiresAt: number;
  formerOwner: string | null;
}

/**
 * What the in-process store that reads its records from these rows (store/table-records.ts) is told about a
 * row it reads (`inStore`): before a field it reads changes (owner, version, life, state, transport,
 * listener), after that change, and before the row is freed. So the store keeps what it holds whatever the
 * table does to its rows.
 */
export interface RowStoreHooks {
  before(row: number): void;
  after(row: number): void;
  released(row: number): void;
}

export class SessionRows {
  /** Rows the columns hold (used or free). */
  #capacity: number;
  /** Rows ever handed out: those at or above it are unused and on no free list. */
  #top = 0;
  readonly #free: number[] = [];
  #live = 0;

  // The columns. Read them through this object every time (growth replaces them).
  /** Row r's id at 4r .. 4r+3: the little-endian words of its 16 bytes (as id-index.ts reads them). */
  ids: Int32Array;
  /** The owner's name number when it is below WIDE_NAME; WIDE_NAME: in #wideOwners. Read it through ownerOf. */
  owner: Uint16Array;
  /** The state, the transport's kind and whether the session is served here (see STATE_BITS). */
  flags: Uint8Array;
  /** The version when it is below 2^32 - 1; WIDE: in #bigVersions. */
  version: Uint32Array;
  /** The life (StoredSession.incarnation) when it is an integer below 2^32 - 1; WIDE: in #wideIncarnations. */
  incarnation: Uint32Array;
  tAddr: Uint32Array;
  tPort: Uint16Array;
  /** The listener when it fits an i16 (and is not WIDE_LISTENER); WIDE_LISTENER: in #wideListeners. */
  listener: Int16Array;
  /** The next PROXY v2 sequence number when it is below 2^32 - 1; WIDE: in #wideSeqs. */
  nextSeq: Uint32Array;
  lastSeen: Float64Array;
  expiresAt: Float64Array;
  storeExpiresAt: Float64Array;
  /** The owner before the last transfer, as an owner name's number (WIDE_NAME: in #wideFormer); NO_NAME for none. */
  formerOwner: Uint16Array;
  /** The row's place in the table's expiry heap, -1 in none. */
  heapPos: Int32Array;
  /** The row's place in the table's record cache, -1 in none, PINNED in its map of records that must stay. */
  cacheSlot: Int32Array;

  readonly names = new Names();
  /** The in-process store reading rows it marked `inStore` (see RowStoreHooks); null: none. */
  storeHooks: RowStoreHooks | null = null;
  /**
   * Where the sequence numbers of sessions this director did not admit start (DirectorCore's `seqBase`):
   * numbers from it up are kept as their distance from it, with the row's SEQ_BASED flag, so that they fit
   * the u32 column as a session's first numbers do. 0: every number is kept as it is.
   */
  seqBase = 0;
  /**
   * Told when the record of a row that is out of the table's record cache starts holding out-of-line
   * state (record.ts): the table takes it back into the cache, where such records stay.
   */
  onPinned: ((row: number) => void) | null = null;
  /** Told when the record of a PINNED row holds no out-of-line state any more: it goes back to the cache. */
  onUnpinned: ((row: number) => void) | null = null;
  readonly #bigVersions = new Map<number, bigint>();
  readonly #wideIncarnations = new Map<number, number>();
  readonly #wideSeqs = new Map<number, number>();
  readonly #otherTransports = new Map<number, Transport>();
  /** Owner and former-owner name numbers that a u16 column cannot hold (more than 65,534 names at once). */
  readonly #wideOwners = new Map<number, number>();
  readonly #wideFormer = new Map<number, number>();
  readonly #wideListeners = new Map<number, number>();
  /** Where idText writes a row's id bytes to format them. */
  readonly #idScratch = Buffer.alloc(16);
  /** Id texts that are not what the words format to (upper-case hex from outside). */
  readonly #idTexts = new Map<number, string>();

  /**
   * `reserve`: rows to make the columns for now (at most MAX_RESERVED): their memory is resident only
   * once rows are written. A row's heap and cache places are set when it is handed out, not before.
   */
  constructor(reserve = 0) {
    const cap = reservedCapacity(reserve, MIN_ROWS);
    this.#capacity = cap;
    this.ids = new Int32Array(cap * 4);
    this.owner = new Uint16Array(cap);
    this.flags = new Uint8Array(cap);
    this.version = new Uint32Array(cap);
    this.incarnation = new Uint32Array(cap);
    this.tAddr = new Uint32Array(cap);
    this.tPort = new Uint16Array(cap);
    this.listener = new Int16Array(cap);
    this.nextSeq = new Uint32Array(cap);
    this.lastSeen = new Float64Array(cap);
    this.expiresAt = new Float64Array(cap);
    this.storeExpiresAt = new Float64Array(cap);
    this.formerOwner = new Uint16Array(cap);
    this.heapPos = new Int32Array(cap);
    this.cacheSlot = new Int32Array(cap);
  }

  get live(): number {
    return this.#live;
  }

  /** Entries in the maps by row that hold what the columns cannot (a freed row leaves none behind). */
  get overflowEntries(): number {
    return this.#bigVersions.size + this.#wideIncarnations.size + this.#wideSeqs.size + this.#otherTransports.size + this.#idTexts.size + this.#wideOwners.size + this.#wideFormer.size + this.#wideListeners.size;
  }

  /** Rows the columns have room for now. */
  get capacity(): number {
    return this.#capacity;
  }

  /** A row for a new session, filled from `f` with the id words `w` (and its text, when it is not lower-case hex). */
  alloc(w: Int32Array, idText: string | null, f: RowFields): number {
    let row = this.#free.pop();
    if (row === undefined) {
      if (this.#top === this.#capacity) this.#grow();
      row = this.#top++;
    }
    this.#live++;
    const j = row << 2;
    this.ids[j] = w[0]!;
    this.ids[j + 1] = w[1]!;
    this.ids[j + 2] = w[2]!;
    this.ids[j + 3] = w[3]!;
    if (idText !== null) this.#idTexts.set(row, idText);
    // First: a reused row's flags are the last session's until here (never IN_STORE: release saw to it).
    this.flags[row] = f.servedHere ? SERVED : 0;
    setName(this.owner, this.#wideOwners, row, this.names.ref(f.owner));
    this.setVersion(row, f.version);
    this.setIncarnation(row, f.incarnation);
    this.setState(row, f.state);
    this.setTransport(row, f.transport);
    this.setListener(row, f.listener);
    this.setSeq(row, f.nextSeq);
    this.lastSeen[row] = f.lastSeen;
    this.expiresAt[row] = f.expiresAt;
    this.storeExpiresAt[row] = f.storeExpiresAt;
    setName(this.formerOwner, this.#wideFormer, row, f.formerOwner === null ? -1 : this.names.ref(f.formerOwner));
    this.heapPos[row] = -1;
    this.cacheSlot[row] = -1;
    return row;
  }

  /** Frees `row` (the table took it out of every index first). */
  release(row: number): void {
    if ((this.flags[row]! & IN_STORE) !== 0) this.storeHooks!.released(row);
    this.names.unref(nameOf(this.owner, this.#wideOwners, row));
    this.#wideOwners.delete(row);
    this.setFormerOwner(row, null);
    this.#wideListeners.delete(row);
    this.#bigVersions.delete(row);
    this.#wideIncarnations.delete(row);
    this.#wideSeqs.delete(row);
    this.#otherTransports.delete(row);
    this.#idTexts.delete(row);
    this.heapPos[row] = -1;
    this.cacheSlot[row] = -1;
    this.#free.push(row);
    this.#live--;
  }

  /** Row `row`'s fields, as a detached record keeps them. */
  fields(row: number): RowFields {
    return {
      owner: this.ownerOf(row),
      version: this.versionOf(row),
      incarnation: this.incarnationOf(row),
      state: this.stateOf(row),
      transport: this.transportOf(row),
      listener: this.listenerOf(row),
      nextSeq: this.seqOf(row),
      lastSeen: this.lastSeen[row]!,
      expiresAt: this.expiresAt[row]!,
      servedHere: this.servedOf(row),
      storeExpiresAt: this.storeExpiresAt[row]!,
      formerOwner: this.formerOwnerOf(row),
    };
  }

  /** The id text of `row`: the one given when it is not lower-case hex, else formatted from the words. */
  idText(row: number): string {
    const t = this.#idTexts.get(row);
    if (t !== undefined) return t;
    // One flat string from Buffer's encoder: concatenating four words' texts left a rope of seven strings
    // (~190 bytes kept, against 48) and took ~18 times as long.
    this.idBytesInto(row, this.#idScratch);
    return this.#idScratch.toString('hex');
  }

  /** Writes row `row`'s 16 id bytes into `out` at `at` (16 bytes from there). */
  idBytesInto(row: number, out: Uint8Array, at = 0): void {
    const j = row << 2;
    for (let k = 0; k < 4; k++) {
      const w = this.ids[j + k]!;
      const o = at + 4 * k;
      out[o] = w & 0xff;
      out[o + 1] = (w >>> 8) & 0xff;
      out[o + 2] = (w >>> 16) & 0xff;
      out[o + 3] = w >>> 24;
    }
  }

  ownerOf(row: number): string {
    return this.names.str(nameOf(this.owner, this.#wideOwners, row));
  }

  /** Row `row`'s owner's name number (as `names` numbers it). */
  ownerNumOf(row: number): number {
    return nameOf(this.owner, this.#wideOwners, row);
  }

  setOwner(row: number, owner: string): void {
    const old = nameOf(this.owner, this.#wideOwners, row);
    if (this.names.str(old) === owner) return;
    const h = this.#hooksOf(row);
    h?.before(row);
    setName(this.owner, this.#wideOwners, row, this.names.ref(owner));
    this.names.unref(old);
    h?.after(row);
  }

  formerOwnerOf(row: number): string | null {
    const n = nameOf(this.formerOwner, this.#wideFormer, row);
    return n < 0 ? null : this.names.str(n);
  }

  setFormerOwner(row: number, owner: string | null): void {
    const old = nameOf(this.formerOwner, this.#wideFormer, row);
    setName(this.formerOwner, this.#wideFormer, row, owner === null ? -1 : this.names.ref(owner));
    if (old >= 0) this.names.unref(old);
  }

  /** Per datagram: one compare on the way from the column. */
  listenerOf(row: number): number {
    const l = this.listener[row]!;
    return l !== WIDE_LISTENER ? l : (this.#wideListeners.get(row) as number);
  }

  setListener(row: number, v: number): void {
    if (this.listenerOf(row) === v) return;
    const h = this.#hooksOf(row);
    h?.before(row);
    if (v === (v << 16) >> 16 && v !== WIDE_LISTENER) {
      if (this.listener[row] === WIDE_LISTENER) this.#wideListeners.delete(row);
      this.listener[row] = v;
    } else {
      this.listener[row] = WIDE_LISTENER;
      this.#wideListeners.set(row, v);
    }
    h?.after(row);
  }

  stateOf(row: number): SessionState {
    return STATES[this.flags[row]! & STATE_BITS]!;
  }

  setState(row: number, s: SessionState): void {
    const n = STATE_NUM.get(s);
    if (n === undefined) throw new TypeError(`not a session state: ${String(s)}`);
    if ((this.flags[row]! & STATE_BITS) === n) return;
    const h = this.#hooksOf(row);
    h?.before(row);
    this.flags[row] = (this.flags[row]! & ~STATE_BITS) | n;
    h?.after(row);
  }

  /** Whether the session of `row` is served here (RowFields.servedHere). */
  servedOf(row: number): boolean {
    return (this.flags[row]! & SERVED) !== 0;
  }

  setServed(row: number, v: boolean): void {
    this.flags[row] = v ? this.flags[row]! | SERVED : this.flags[row]! & ~SERVED;
  }

  versionOf(row: number): bigint {
    const n = this.version[row]!;
    return n !== WIDE ? BigInt(n) : (this.#bigVersions.get(row) as bigint);
  }

  /** Whether row `row`'s version is `v`, with no bigint made for one in the column (a compare-and-swap's compare). */
  versionIs(row: number, v: bigint): boolean {
    const n = this.version[row]!;
    // Number(v) is exact up to 2^53 and at least 2^32 for any v at or over WIDE: never equal to a u32 then.
    return n !== WIDE ? n === Number(v) : this.#bigVersions.get(row) === v;
  }

  setVersion(row: number, v: bigint): void {
    const h = this.#hooksOf(row);
    if (h !== null) {
      if (this.versionIs(row, v)) return;
      h.before(row);
    }
    if (v >= 0n && v < WIDE_N) {
      if (this.version[row] === WIDE) this.#bigVersions.delete(row);
      this.version[row] = Number(v);
    } else {
      this.version[row] = WIDE;
      this.#bigVersions.set(row, v);
    }
    h?.after(row);
  }

  incarnationOf(row: number): number {
    return wideOf(this.incarnation, this.#wideIncarnations, row);
  }

  setIncarnation(row: number, v: number): void {
    const h = this.#hooksOf(row);
    if (h !== null) {
      if (this.incarnationOf(row) === v) return;
      h.before(row);
    }
    setWide(this.incarnation, this.#wideIncarnations, row, v);
    h?.after(row);
  }

  seqOf(row: number): number {
    const n = wideOf(this.nextSeq, this.#wideSeqs, row);
    return (this.flags[row]! & SEQ_BASED) === 0 ? n : n + this.seqBase;
  }

  /** Per datagram (`nextSeq++`): two compares on the way to the column. */
  setSeq(row: number, v: number): void {
    const f = this.flags[row]!;
    const base = this.seqBase;
    if (base > 0 && v >= base) {
      if ((f & SEQ_BASED) === 0) this.flags[row] = f | SEQ_BASED;
      setWide(this.nextSeq, this.#wideSeqs, row, v - base);
    } else {
      if ((f & SEQ_BASED) !== 0) this.flags[row] = f & ~SEQ_BASED;
      setWide(this.nextSeq, this.#wideSeqs, row, v);
    }
  }

  /** A new transport object for a canonical IPv4 row; the one given for any other. */
  transportOf(row: number): Transport {
    if ((this.flags[row]! & T_OTHER) === 0) return { family: 4, address: formatV4Address(this.tAddr[row]!), port: this.tPort[row]! };
    return this.#otherTransports.get(row) as Transport;
  }

  /** Whether row `row`'s transport is a canonical IPv4 one, in the address and port columns (`tAddr`, `tPort`). */
  isV4(row: number): boolean {
    return (this.flags[row]! & T_OTHER) === 0;
  }

  /** Row `row`'s transport as its ip:port text (codec/ip.ts transportKey), with no object made for a canonical IPv4 one. */
  transportKeyOf(row: number): string {
    if (this.isV4(row)) return formatV4Transport(this.tAddr[row]!, this.tPort[row]!);
    return transportKey(this.#otherTransports.get(row) as Transport);
  }

  setTransport(row: number, t: Transport): void {
    const h = this.#hooksOf(row);
    h?.before(row);
    this.#setTransport(row, t);
    h?.after(row);
  }

  #setTransport(row: number, t: Transport): void {
    const w = t.family === 4 && Number.isInteger(t.port) && t.port >= 0 && t.port <= 0xffff ? parseV4Address(t.address) : -1;
    if (w >= 0) {
      this.flags[row] = this.flags[row]! & ~T_OTHER;
      this.tAddr[row] = w;
      this.tPort[row] = t.port;
      this.#otherTransports.delete(row);
    } else {
      this.flags[row] = this.flags[row]! | T_OTHER;
      this.#otherTransports.set(row, t);
    }
  }

  /** Whether the in-process store reads row `row` as its record (see RowStoreHooks). */
  inStore(row: number): boolean {
    return (this.flags[row]! & IN_STORE) !== 0;
  }

  /** Marks row `row` as read (or no longer read) by the in-process store: only store/table-records.ts does. */
  setInStore(row: number, on: boolean): void {
    this.flags[row] = on ? this.flags[row]! | IN_STORE : this.flags[row]! & ~IN_STORE;
  }

  /** Whether row `row`'s id text is other than its words' lower-case hex (kept as given: see idText). */
  hasOwnIdText(row: number): boolean {
    return this.#idTexts.has(row);
  }

  /** Rows ever handed out: every live row is below it. */
  get top(): number {
    return this.#top;
  }

  #hooksOf(row: number): RowStoreHooks | null {
    return (this.flags[row]! & IN_STORE) !== 0 ? this.storeHooks : null;
  }

  /**
   * Up to `limit` live rows (a row is live while it is in the expiry heap: heapPos ≥ 0) whose ids are the
   * smallest above `after` (16 bytes, or null for no bound) in byte order, of `owner` when given, in that
   * order. One pass over the id column in row order (memory order: no probe of the index per row), where a
   * row's owner is read only when its id would enter the page found so far.
   * O(rows + candidates · log limit).
   */
  smallest(limit: number, after: Uint8Array | null, owner: string | null): number[] {
    if (limit <= 0) return [];
    if (after !== null && after.length !== 16) throw new RangeError('session id must be 16 bytes');
    const ownerNum = owner === null ? -1 : (this.names.find(owner) ?? -2);
    if (ownerNum === -2) return [];
    const a0 = after === null ? -1 : beWord(after, 0);
    const a1 = after === null ? 0 : beWord(after, 4);
    const a2 = after === null ? 0 : beWord(after, 8);
    const a3 = after === null ? 0 : beWord(after, 12);
    // A max-heap of the best so far: its top is the largest id kept, the one a better id replaces.
    const best = new TinyQueue<Ranked>([], (x, y) => compareWords(y.k0, y.k1, y.k2, y.k3, x.k0, x.k1, x.k2, x.k3));
    let top0 = Infinity; // the top's first word once `limit` are kept (a cheap first test per row)
    const words = this.ids;
    const live = this.heapPos;
    for (let r = 0; r < this.#top; r++) {
      const j = r << 2;
      const k0 = bswap(words[j]!);
      if (k0 < a0 || k0 > top0 || live[r]! < 0) continue;
      const k1 = bswap(words[j + 1]!);
      const k2 = bswap(words[j + 2]!);
      const k3 = bswap(words[j + 3]!);
      if (after !== null && compareWords(k0, k1, k2, k3, a0, a1, a2, a3) <= 0) continue;
      if (best.length === limit) {
        const t = best.peek() as Ranked;
        if (compareWords(k0, k1, k2, k3, t.k0, t.k1, t.k2, t.k3) >= 0) continue;
      }
      if (ownerNum >= 0 && this.ownerNumOf(r) !== ownerNum) continue;
      if (best.length === limit) best.pop();
      best.push({ k0, k1, k2, k3, row: r });
      if (best.length === limit) top0 = (best.peek() as Ranked).k0;
    }
    const out: number[] = new Array<number>(best.length);
    for (let n = best.length - 1; n >= 0; n--) out[n] = (best.pop() as Ranked).row;
    return out;
  }

  #grow(): void {
    const cap = this.#capacity + (this.#capacity >> 1);
    this.ids = grown(this.ids, cap * 4);
    this.owner = grown(this.owner, cap);
    this.flags = grown(this.flags, cap);
    this.version = grown(this.version, cap);
    this.incarnation = grown(this.incarnation, cap);
    this.tAddr = grown(this.tAddr, cap);
    this.tPort = grown(this.tPort, cap);
    this.listener = grown(this.listener, cap);
    this.nextSeq = grown(this.nextSeq, cap);
    this.lastSeen = grown(this.lastSeen, cap);
    this.expiresAt = grown(this.expiresAt, cap);
    this.storeExpiresAt = grown(this.storeExpiresAt, cap);
    this.formerOwner = grown(this.formerOwner, cap);
    this.heapPos = grown(this.heapPos, cap);
    this.cacheSlot = grown(this.cacheSlot, cap);
    this.#capacity = cap;
  }
}

type Column = Int32Array | Uint32Array | Int16Array | Uint16Array | Uint8Array | Float64Array;

function grown<T extends Column>(a: T, length: number): T {
  const b = new (a.constructor as new (n: number) => T)(length);
  b.set(a);
  return b;
}

/** Row `row`'s number in a u32 column, or in its map when the column says WIDE. */
function wideOf(col: Uint32Array, wide: Map<number, number>, row: number): number {
  const n = col[row]!;
  return n !== WIDE ? n : (wide.get(row) as number);
}

/** Writes `v` into the column when it is an integer below WIDE, else into the map (the column saying WIDE). */
function setWide(col: Uint32Array, wide: Map<number, number>, row: number, v: number): void {
  if (v >>> 0 === v && v !== WIDE) {
    if (col[row] === WIDE) wide.delete(row);
    col[row] = v;
  } else {
    col[row] = WIDE;
    wide.set(row, v);
  }
}

/** Row `row`'s name number in a u16 name column (-1 for NO_NAME), or in its map when the column says WIDE_NAME. */
function nameOf(col: Uint16Array, wide: Map<number, number>, row: number): number {
  const n = col[row]!;
  return n < WIDE_NAME ? n : n === NO_NAME ? -1 : (wide.get(row) as number);
}

/** Writes name number `n` (-1: none, NO_NAME) into the column when it is below WIDE_NAME, else into the map. */
function setName(col: Uint16Array, wide: Map<number, number>, row: number, n: number): void {
  if (n < WIDE_NAME) {
    if (col[row] === WIDE_NAME) wide.delete(row);
    col[row] = n < 0 ? NO_NAME : n;
  } else {
    col[row] = WIDE_NAME;
    wide.set(row, n);
  }
}

/** A row kept by `smallest`, with its id as four unsigned big-endian words (byte order). */
interface Ranked {
  readonly k0: number;
  readonly k1: number;
  readonly k2: number;
  readonly k3: number;
  readonly row: number;
}

/** The unsigned big-endian 32-bit word at `b[o]`. */
function beWord(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/** A little-endian id word (as the id column holds it) as the unsigned big-endian word of the same bytes. */
function bswap(w: number): number {
  return ((w << 24) | ((w & 0xff00) << 8) | ((w >>> 8) & 0xff00) | (w >>> 24)) >>> 0;
}

/** Compares two ids given as unsigned big-endian words: negative, 0 or positive as a is below, equal or above b. */
function compareWords(a0: number, a1: number, a2: number, a3: number, b0: number, b1: number, b2: number, b3: number): number {
  return a0 !== b0 ? a0 - b0 : a1 !== b1 ? a1 - b1 : a2 !== b2 ? a2 - b2 : a3 - b3;
}
