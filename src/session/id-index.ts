// A hash index from the 16 session-id bytes to a row of the session table (rows.ts), looked up straight
// from a packet buffer at an offset: no hex string, no view, no allocation per lookup (the per-datagram
// path's one table access). Pure data structure: no I/O, no clock; the hash key is injected. It never
// decides anything: a lookup compares all 16 bytes, so the key only changes where rows sit, never what is
// found.
//
// Open addressing with linear probing, backward-shift deletion (no tombstones), doubled at 5/8 load.
// A slot is only `row + 1` (4 bytes, 0 = empty) and a 2-byte tag; the id words are the rows' own column
// (16 bytes per row), which a probe compares. Session ids are chosen by clients, so the hash is keyed with
// secret random words (each id word gets its own secret multiplier) to keep clients from aiming ids at one
// probe run; how many ids a client can insert at all is bounded by admission. The same probe answers a
// lookup by id text (getByHex reads the words from the 32 hex characters, so the table needs no second
// index by text), and `at(slot)` lets the table walk every row (a node's sessions). The tag is the
// caller's (the table: its owner's number), moved with the row, so that a walk for one owner skips the
// others' rows unread (`tagAt`). Nothing of the tags is on the per-datagram path (`get`). Pages in id
// order (the admin API's session list) scan the rows' id column itself (SessionRows.smallest).

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
export function hexWords(id: string, out: Int32Array): boolean {
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

/** Where the index reads each row's id words (4r .. 4r+3). Read through every time: it may be replaced. */
export interface RowIds {
  ids: Int32Array;
}

export class IdIndex {
  readonly #rows: RowIds;
  /** Slot i's row + 1, 0 where empty. */
  #slots: Int32Array;
  /**
   * Slot i's tag, the caller's (the table: a number per owner, 0 for none), moved with the row: a walk
   * skips the rows of other tags without reading them.
   */
  #tags: Uint16Array;
  #mask: number;
  #size = 0;
  readonly #k: Int32Array;
  /** getByHex's four decoded words (it keeps nothing between calls). */
  readonly #hexScratch = new Int32Array(4);

  constructor(key: Uint32Array, rows: RowIds, capacity = MIN_CAPACITY) {
    if (key.length < ID_INDEX_KEY_WORDS) throw new RangeError(`IdIndex key must have ${ID_INDEX_KEY_WORDS} words`);
    this.#k = idHashKey(key);
    this.#rows = rows;
    let cap = MIN_CAPACITY;
    while (cap < capacity) cap *= 2;
    this.#slots = new Int32Array(cap);
    this.#tags = new Uint16Array(cap);
    this.#mask = cap - 1;
  }

  get size(): number {
    return this.#size;
  }
  get capacity(): number {
    return this.#mask + 1;
  }

  /** The row whose id is `buf[offset .. offset + 16)`, -1 for none. The caller checked that the bytes exist. */
  get(buf: Uint8Array, offset: number): number {
    return this.find(word(buf, offset), word(buf, offset + 4), word(buf, offset + 8), word(buf, offset + 12));
  }

  /**
   * The row whose id bytes `id` spells as 32 hex characters (either case; the caller compares the text
   * if the case matters), -1 for none and for any other text. No allocation: the words are read from
   * the text.
   */
  getByHex(id: string): number {
    const w = this.#hexScratch;
    if (!hexWords(id, w)) return -1;
    return this.find(w[0]!, w[1]!, w[2]!, w[3]!);
  }

  /**
   * The row in slot `i` (0 ≤ i < capacity), or -1 for an empty slot: for walks over every row (see
   * SessionTable.walkOwner for how rows move between slots while a walk is under way).
   */
  at(i: number): number {
    return (this.#slots[i] ?? 0) - 1;
  }

  /** The tag of slot `i` (meaningful only where `at(i)` is a row). */
  tagAt(i: number): number {
    return this.#tags[i] ?? 0;
  }

  /** Gives `row` (indexed) the tag `tag` (0–65535); false when it is not indexed. */
  retag(row: number, tag: number): boolean {
    const i = this.#slotOf(row);
    if (i < 0) return false;
    this.#tags[i] = tag;
    return true;
  }

  /**
   * Adds `row` (its id words already in the rows' column) with the tag `tag` (0–65535); false (and nothing
   * changes) when a row with the same id is indexed already.
   */
  add(row: number, tag = 0): boolean {
    const words = this.#rows.ids;
    const j = row << 2;
    const w0 = words[j]!;
    const w1 = words[j + 1]!;
    const w2 = words[j + 2]!;
    const w3 = words[j + 3]!;
    if (this.find(w0, w1, w2, w3) !== -1) return false;
    if ((this.#size + 1) * 8 > this.capacity * 5) this.#grow();
    this.#place(row, w0, w1, w2, w3, tag);
    this.#size++;
    return true;
  }

  /** Removes exactly `row`; false when it is not indexed. */
  delete(row: number): boolean {
    const slots = this.#slots;
    const words = this.#rows.ids;
    const tags = this.#tags;
    const mask = this.#mask;
    const i = this.#slotOf(row);
    if (i < 0) return false;
    // Backward shift: pull later members of the run into the hole so every probe run stays unbroken.
    let hole = i;
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const r = slots[j]! - 1;
      if (r < 0) break;
      const q = r << 2;
      const home = this.#hash(words[q]!, words[q + 1]!, words[q + 2]!, words[q + 3]!) & mask;
      // r may move into the hole unless its home lies cyclically within (hole, j].
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        slots[hole] = r + 1;
        tags[hole] = tags[j]!;
        hole = j;
      }
    }
    slots[hole] = 0;
    this.#size--;
    return true;
  }

  /** The slot of exactly `row`, -1 when it is not indexed. */
  #slotOf(row: number): number {
    const slots = this.#slots;
    const mask = this.#mask;
    const words = this.#rows.ids;
    const j = row << 2;
    for (let i = this.#hash(words[j]!, words[j + 1]!, words[j + 2]!, words[j + 3]!) & mask; ; i = (i + 1) & mask) {
      const r = slots[i]! - 1;
      if (r < 0) return -1;
      if (r === row) return i;
    }
  }

  /** The row whose id words are w0..w3, -1 for none: one probe run. */
  find(w0: number, w1: number, w2: number, w3: number): number {
    const slots = this.#slots;
    const words = this.#rows.ids;
    const mask = this.#mask;
    for (let i = this.#hash(w0, w1, w2, w3) & mask; ; i = (i + 1) & mask) {
      const r = slots[i]! - 1;
      if (r < 0) return -1;
      const j = r << 2;
      if (words[j] === w0 && words[j + 1] === w1 && words[j + 2] === w2 && words[j + 3] === w3) return r;
    }
  }

  #place(row: number, w0: number, w1: number, w2: number, w3: number, tag: number): void {
    const slots = this.#slots;
    const mask = this.#mask;
    let i = this.#hash(w0, w1, w2, w3) & mask;
    while (slots[i] !== 0) i = (i + 1) & mask;
    slots[i] = row + 1;
    this.#tags[i] = tag;
  }

  #grow(): void {
    const oldSlots = this.#slots;
    const oldTags = this.#tags;
    const cap = oldSlots.length * 2;
    this.#slots = new Int32Array(cap);
    this.#tags = new Uint16Array(cap);
    this.#mask = cap - 1;
    const words = this.#rows.ids;
    for (let i = 0; i < oldSlots.length; i++) {
      const r = oldSlots[i]! - 1;
      if (r < 0) continue;
      const j = r << 2;
      this.#place(r, words[j]!, words[j + 1]!, words[j + 2]!, words[j + 3]!, oldTags[i]!);
    }
  }

  /** Keyed 32-bit hash of the four id words. */
  #hash(w0: number, w1: number, w2: number, w3: number): number {
    return hashIdWords(this.#k, w0, w1, w2, w3);
  }
}
