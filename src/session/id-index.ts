// A hash index from the 16 session-id bytes to a record, looked up straight from a packet buffer at an
// offset: no hex string, no view, no allocation per lookup (the per-datagram path's one table access).
// Pure data structure: no I/O, no clock; the hash key is injected. It never decides anything: a lookup
// compares all 16 bytes, so the key only changes where records sit, never what is found.
//
// Open addressing with linear probing, backward-shift deletion (no tombstones), doubled at 5/8 load.
// Each slot keeps the id as four 32-bit words in one Int32Array beside the record array, so a probe
// compares words in place and touches the record only when it is the one (a lookup costs about one cache
// line instead of a chase through record → id bytes → their buffer). Session ids are chosen by clients,
// so the hash is keyed with secret random words (each id word gets its own secret multiplier) to keep
// clients from aiming ids at one probe run; how many ids a client can insert at all is bounded by admission.
// The same probe answers a lookup by id text (getByHex reads the words from the 32 hex characters, so the
// table needs no second index by text), and `at(slot)` lets the table walk every record (a node's sessions).
// Each slot also carries a 2-byte tag the caller gives (the table: its owner's number), moved with the
// record, so that a walk for one owner skips the others' records unread (`tagAt`); `smallest` makes a page
// in id order from the words alone (the admin API's session list).
// Nothing of the tags or of `smallest` is on the per-datagram path (`get`).

import TinyQueue from 'tinyqueue';

export interface HasIdBytes {
  /** Exactly 16 bytes, never changed while the record is indexed. */
  readonly idBytes: Uint8Array;
  /**
   * The same id as 32 hex characters, when the record keeps it as text: the index then reads the id words
   * from the text (no bytes decoded, nothing allocated); `idBytes` only for a record without one.
   */
  readonly id?: string;
}

export const ID_LEN = 16;
/** Words of hash key the index needs. */
export const ID_INDEX_KEY_WORDS = 8;
const MIN_CAPACITY = 16;

/** A key for `IdIndex` from a source of randomness (default: crypto.getRandomValues; tests pass fixed words). */
export function idIndexKey(random: (out: Uint32Array) => Uint32Array = (out) => globalThis.crypto.getRandomValues(out)): Uint32Array {
  return random(new Uint32Array(ID_INDEX_KEY_WORDS));
}

/**
 * The 16 bytes of a session id from its 32 hex characters (either case), as a fresh array: records keep
 * only the text and decode the bytes when asked (see SessionRecord.idBytes). RangeError if malformed.
 */
export function idBytesFromHex(id: string): Uint8Array {
  return idBytesInto(id, new Uint8Array(ID_LEN));
}

/**
 * idBytesFromHex into `out` (at least 16 bytes; returned): for a caller that needs the bytes only for the
 * call at hand (a ring pick), into an array it keeps for that, so that nothing is allocated per id.
 */
export function idBytesInto(id: string, out: Uint8Array): Uint8Array {
  if (id.length !== ID_LEN * 2) throw new RangeError(`session id must be ${ID_LEN * 2} hex characters`);
  for (let i = 0; i < ID_LEN; i++) {
    const hi = hexValue(id.charCodeAt(2 * i));
    const lo = hexValue(id.charCodeAt(2 * i + 1));
    if ((hi | lo) < 0) throw new RangeError('session id must be hex');
    out[i] = (hi << 4) | lo;
  }
  return out;
}

/** Whether `id` is 32 lowercase hex characters: the text sessionIdHex writes, whose order is the bytes' order. */
export function isLowerHexId(id: string): boolean {
  if (id.length !== ID_LEN * 2) return false;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

/**
 * Writes the four little-endian id words (what `word` reads from the decoded bytes) of the id that `id`
 * spells in hex (32 characters, either case) into `out`; false for any other text (`out` then means nothing).
 * One pass over the characters, no allocation.
 */
function hexWords(id: string, out: Int32Array): boolean {
  if (id.length !== ID_LEN * 2) return false;
  let bad = 0;
  for (let w = 0; w < 4; w++) {
    let x = 0;
    for (let k = 0; k < 4; k++) {
      const o = w * 8 + k * 2;
      const b = (hexValue(id.charCodeAt(o)) << 4) | hexValue(id.charCodeAt(o + 1)); // negative for a bad digit
      bad |= b;
      x |= (b & 0xff) << (k * 8);
    }
    out[w] = x;
  }
  return bad >= 0;
}

/** 0-15 for a hex digit's character code, -1 for anything else. */
function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48; // 0-9
  const l = c | 0x20; // ASCII lower case
  return l >= 97 && l <= 102 ? l - 87 : -1; // a-f
}

/** The little-endian 32-bit word at `b[o]` (as a signed int32). */
function word(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24);
}

function mixWord(w: number, m: number): number {
  const x = Math.imul(w, m);
  return Math.imul(x ^ (x >>> 16), 0x7feb352d);
}

/**
 * The hash key as `hashIdWords` reads it, from ID_INDEX_KEY_WORDS random words (RangeError if fewer):
 * words 0-3 are xored into the id words; 4-7 are multipliers, made odd (invertible mod 2^32).
 */
export function idHashKey(key: Uint32Array): Int32Array {
  if (key.length < ID_INDEX_KEY_WORDS) throw new RangeError(`id hash key must have ${ID_INDEX_KEY_WORDS} words`);
  return Int32Array.from(key.subarray(0, ID_INDEX_KEY_WORDS), (x, i) => (i < 4 ? x : x | 1));
}

/** Keyed 32-bit hash of the four id words (`k` from idHashKey): this index's and the store's id table's. */
export function hashIdWords(k: Int32Array, w0: number, w1: number, w2: number, w3: number): number {
  let h = mixWord(w0 ^ k[0]!, k[4]!);
  h = Math.imul(h ^ mixWord(w1 ^ k[1]!, k[5]!), 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 15) ^ mixWord(w2 ^ k[2]!, k[6]!), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ mixWord(w3 ^ k[3]!, k[7]!), 0xc2b2ae35);
  return h ^ (h >>> 16);
}

export class IdIndex<T extends HasIdBytes> {
  #recs: (T | null)[];
  /** Slot i's id words at 4i .. 4i+3 (meaningful only where #recs[i] is not null). */
  #words: Int32Array;
  /**
   * Slot i's tag, the caller's (the table: a number per owner, 0 for none), moved with the record: a walk
   * skips the records of other tags without reading them.
   */
  #tags: Uint16Array;
  #mask: number;
  #size = 0;
  readonly #k: Int32Array;
  /** getByHex's four decoded words (it keeps nothing between calls). */
  readonly #hexScratch = new Int32Array(4);
  /** #idWords' four words of a record's id (add, delete, retag: nothing kept between calls). */
  readonly #recScratch = new Int32Array(4);

  constructor(key: Uint32Array, capacity = MIN_CAPACITY) {
    if (key.length < ID_INDEX_KEY_WORDS) throw new RangeError(`IdIndex key must have ${ID_INDEX_KEY_WORDS} words`);
    this.#k = idHashKey(key);
    let cap = MIN_CAPACITY;
    while (cap < capacity) cap *= 2;
    this.#recs = new Array<T | null>(cap).fill(null);
    this.#words = new Int32Array(cap * 4);
    this.#tags = new Uint16Array(cap);
    this.#mask = cap - 1;
  }

  get size(): number {
    return this.#size;
  }
  get capacity(): number {
    return this.#mask + 1;
  }

  /** The record whose id is `buf[offset .. offset + 16)`, if any. The caller checked that the bytes exist. */
  get(buf: Uint8Array, offset: number): T | undefined {
    return this.#find(word(buf, offset), word(buf, offset + 4), word(buf, offset + 8), word(buf, offset + 12));
  }

  /**
   * The record whose id bytes `id` spells as 32 hex characters (either case; the caller compares the text
   * if the case matters), if any; undefined for any other text. No allocation: the words are read from
   * the text.
   */
  getByHex(id: string): T | undefined {
    const w = this.#hexScratch;
    if (!hexWords(id, w)) return undefined;
    return this.#find(w[0]!, w[1]!, w[2]!, w[3]!);
  }

  /**
   * The record in slot `i` (0 ≤ i < capacity), or null for an empty slot: for walks over every record
   * (see SessionTable.walkOwner for how records move between slots while a walk is under way).
   */
  at(i: number): T | null {
    return this.#recs[i] ?? null;
  }

  /** The tag of slot `i` (meaningful only where `at(i)` is a record). */
  tagAt(i: number): number {
    return this.#tags[i] ?? 0;
  }

  /** Gives `rec` (indexed) the tag `tag` (0–65535); false when it is not indexed. */
  retag(rec: T, tag: number): boolean {
    const i = this.#slotOf(rec);
    if (i < 0) return false;
    this.#tags[i] = tag;
    return true;
  }

  /** Every record once, in slot order. The index must not change while this runs. */
  *values(): IterableIterator<T> {
    const recs = this.#recs;
    for (let i = 0; i < recs.length; i++) {
      const r = recs[i];
      if (r !== null && r !== undefined) yield r;
    }
  }

  /**
   * Up to `limit` records whose ids are the smallest above `after` (16 bytes, or null for no bound) in
   * byte order, among those `keep` accepts (null: all), in that order. One pass over the slots that
   * compares the id words in place: a record itself is read (by `keep`) only when its id would enter the
   * result found so far, about limit · ln(size / limit) times for random ids. The index must not change
   * while this runs. O(capacity + candidates · log limit). `tag`: only slots of that tag or of tag 0 (a
   * slot of another tag is skipped unread; `keep` still decides).
   */
  smallest(limit: number, after: Uint8Array | null, keep: ((rec: T) => boolean) | null, tag: number | null = null): T[] {
    if (limit <= 0) return [];
    if (after !== null && after.length !== ID_LEN) throw new RangeError(`session id must be ${ID_LEN} bytes`);
    const a0 = after === null ? -1 : beWord(after, 0);
    const a1 = after === null ? 0 : beWord(after, 4);
    const a2 = after === null ? 0 : beWord(after, 8);
    const a3 = after === null ? 0 : beWord(after, 12);
    // A max-heap of the best so far: its top is the largest id kept, the one a better id replaces.
    const best = new TinyQueue<Ranked<T>>([], (x, y) => compareWords(y.k0, y.k1, y.k2, y.k3, x.k0, x.k1, x.k2, x.k3));
    let top0 = Infinity; // the top's first word once `limit` are kept (a cheap first test per slot)
    const recs = this.#recs;
    const words = this.#words;
    const tags = this.#tags;
    for (let i = 0; i < recs.length; i++) {
      const r = recs[i];
      if (r === null || r === undefined) continue;
      if (tag !== null && tags[i] !== tag && tags[i] !== 0) continue;
      const j = i << 2;
      const k0 = bswap(words[j]!);
      if (k0 < a0 || k0 > top0) continue;
      const k1 = bswap(words[j + 1]!);
      const k2 = bswap(words[j + 2]!);
      const k3 = bswap(words[j + 3]!);
      if (after !== null && compareWords(k0, k1, k2, k3, a0, a1, a2, a3) <= 0) continue;
      if (best.length === limit) {
        const t = best.peek() as Ranked<T>;
        if (compareWords(k0, k1, k2, k3, t.k0, t.k1, t.k2, t.k3) >= 0) continue;
      }
      if (keep !== null && !keep(r)) continue;
      if (best.length === limit) best.pop();
      best.push({ k0, k1, k2, k3, rec: r });
      if (best.length === limit) top0 = (best.peek() as Ranked<T>).k0;
    }
    const out: T[] = new Array<T>(best.length);
    for (let n = best.length - 1; n >= 0; n--) out[n] = (best.pop() as Ranked<T>).rec;
    return out;
  }

  /**
   * Adds `rec` with the tag `tag` (0–65535); false (and nothing changes) when a record with the same id
   * bytes is indexed already.
   */
  add(rec: T, tag = 0): boolean {
    const w = this.#idWords(rec);
    const w0 = w[0]!;
    const w1 = w[1]!;
    const w2 = w[2]!;
    const w3 = w[3]!;
    if (this.#find(w0, w1, w2, w3) !== undefined) return false;
    if ((this.#size + 1) * 8 > this.capacity * 5) this.#grow();
    this.#place(rec, w0, w1, w2, w3, tag);
    this.#size++;
    return true;
  }

  /**
   * The four id words of `rec` (in #recScratch, valid until the next call): read from its hex text when it
   * has one, else from its 16 bytes (RangeError for any other length).
   */
  #idWords(rec: T): Int32Array {
    const w = this.#recScratch;
    if (rec.id !== undefined && hexWords(rec.id, w)) return w;
    const b = rec.idBytes;
    if (b.length !== ID_LEN) throw new RangeError(`session id must be ${ID_LEN} bytes`);
    w[0] = word(b, 0);
    w[1] = word(b, 4);
    w[2] = word(b, 8);
    w[3] = word(b, 12);
    return w;
  }

  /** Removes exactly `rec` (not another record with its id); false when it is not indexed. */
  delete(rec: T): boolean {
    const recs = this.#recs;
    const words = this.#words;
    const tags = this.#tags;
    const mask = this.#mask;
    const i = this.#slotOf(rec);
    if (i < 0) return false;
    // Backward shift: pull later members of the run into the hole so every probe run stays unbroken.
    let hole = i;
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const r = recs[j];
      if (r === null || r === undefined) break;
      const q = j << 2;
      const home = this.#hash(words[q]!, words[q + 1]!, words[q + 2]!, words[q + 3]!) & mask;
      // r may move into the hole unless its home lies cyclically within (hole, j].
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        recs[hole] = r;
        words.copyWithin(hole << 2, q, q + 4);
        tags[hole] = tags[j]!;
        hole = j;
      }
    }
    recs[hole] = null;
    this.#size--;
    return true;
  }

  /** The slot of exactly `rec` (not another record with its id), -1 when it is not indexed. */
  #slotOf(rec: T): number {
    const recs = this.#recs;
    const mask = this.#mask;
    const w = this.#idWords(rec);
    for (let i = this.#hash(w[0]!, w[1]!, w[2]!, w[3]!) & mask; ; i = (i + 1) & mask) {
      const r = recs[i];
      if (r === null || r === undefined) return -1;
      if (r === rec) return i;
    }
  }

  /** The record whose id words are w0..w3, if any: one probe run. */
  #find(w0: number, w1: number, w2: number, w3: number): T | undefined {
    const recs = this.#recs;
    const words = this.#words;
    const mask = this.#mask;
    for (let i = this.#hash(w0, w1, w2, w3) & mask; ; i = (i + 1) & mask) {
      const r = recs[i];
      if (r === null || r === undefined) return undefined;
      const j = i << 2;
      if (words[j] === w0 && words[j + 1] === w1 && words[j + 2] === w2 && words[j + 3] === w3) return r;
    }
  }

  #place(rec: T, w0: number, w1: number, w2: number, w3: number, tag: number): void {
    const recs = this.#recs;
    const mask = this.#mask;
    let i = this.#hash(w0, w1, w2, w3) & mask;
    while (recs[i] !== null) i = (i + 1) & mask;
    recs[i] = rec;
    this.#tags[i] = tag;
    const j = i << 2;
    this.#words[j] = w0;
    this.#words[j + 1] = w1;
    this.#words[j + 2] = w2;
    this.#words[j + 3] = w3;
  }

  #grow(): void {
    const oldRecs = this.#recs;
    const oldWords = this.#words;
    const oldTags = this.#tags;
    const cap = oldRecs.length * 2;
    this.#recs = new Array<T | null>(cap).fill(null);
    this.#words = new Int32Array(cap * 4);
    this.#tags = new Uint16Array(cap);
    this.#mask = cap - 1;
    for (let i = 0; i < oldRecs.length; i++) {
      const r = oldRecs[i];
      if (r === null || r === undefined) continue;
      const j = i << 2;
      this.#place(r, oldWords[j]!, oldWords[j + 1]!, oldWords[j + 2]!, oldWords[j + 3]!, oldTags[i]!);
    }
  }

  /** Keyed 32-bit hash of the four id words. */
  #hash(w0: number, w1: number, w2: number, w3: number): number {
    return hashIdWords(this.#k, w0, w1, w2, w3);
  }
}

/** A record kept by `smallest`, with its id as four unsigned big-endian words (byte order). */
interface Ranked<T> {
  readonly k0: number;
  readonly k1: number;
  readonly k2: number;
  readonly k3: number;
  readonly rec: T;
}

/** The unsigned big-endian 32-bit word at `b[o]`. */
function beWord(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/** A little-endian id word (as `word` reads it) as the unsigned big-endian word of the same bytes. */
function bswap(w: number): number {
  return ((w << 24) | ((w & 0xff00) << 8) | ((w >>> 8) & 0xff00) | (w >>> 24)) >>> 0;
}

/** Compares two ids given as unsigned big-endian words: negative, 0 or positive as a is below, equal or above b. */
function compareWords(a0: number, a1: number, a2: number, a3: number, b0: number, b1: number, b2: number, b3: number): number {
  return a0 !== b0 ? a0 - b0 : a1 !== b1 ? a1 - b1 : a2 !== b2 ? a2 - b2 : a3 - b3;
}
