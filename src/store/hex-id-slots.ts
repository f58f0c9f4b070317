// Session ids of 32 lowercase hex characters (every id the director writes: sessionIdHex) → the slot a
// store keeps the session in, without the id text: the 16 id bytes live in a typed slab indexed by slot,
// and an open-addressing table of slot numbers finds them (issue 7: memory per session). Pure data
// structure: no I/O, no clock; the hash key is injected. It never decides anything: a lookup compares all
// 16 bytes, so the key only changes where ids sit, never what is found. Any other id text is the caller's
// to keep (NOT_HEX), so what is read back is always exactly the text that was written.
//
// As session/id-index.ts: linear probing, backward-shift deletion (no tombstones), doubled at 5/8 load,
// and a hash keyed with secret random words (ids are chosen by clients, who must not aim them at one
// probe run). Unlike it, a table entry is only `slot + 1` (4 bytes, 0 = empty) and the id words sit in the
// slab beside the caller's other per-slot columns (16 bytes per slot), so the table costs ≈ 7–13 bytes per
// id instead of 20 / load.

import { hashIdWords, ID_INDEX_KEY_WORDS, idHashKey } from '../session/id-index.js';

/** `lookup`: the id is not 32 lowercase hex characters (keep it elsewhere, as text). */
export const NOT_HEX = -2;
/** `lookup`: a hex id that is not held. */
export const ABSENT = -1;
/** Words of hash key `HexIdSlots` needs (the same key shape and hash as the session table's id index). */
export const HEX_ID_KEY_WORDS = ID_INDEX_KEY_WORDS;
const MIN_TABLE = 16;

/** A key for `HexIdSlots` from a source of randomness (default: crypto.getRandomValues; tests pass fixed words). */
export function hexIdKey(random: (out: Uint32Array) => Uint32Array = (out) => globalThis.crypto.getRandomValues(out)): Uint32Array {
  return random(new Uint32Array(HEX_ID_KEY_WORDS));
}

/** Character code → 0..15 for 0-9 and a-f (lower case only: upper case would not read back the same), else -1. */
const HEX = (() => {
  const t = new Int8Array(128).fill(-1);
  for (let i = 0; i < 10; i++) t[48 + i] = i;
  for (let i = 0; i < 6; i++) t[97 + i] = 10 + i;
  return t;
})();

export class HexIdSlots {
  /** slot + 1 per entry, 0 where empty. */
  #table: Int32Array;
  #mask: number;
  #size = 0;
  /** Slot s's id at 4s .. 4s+3, each word eight hex characters read as a big-endian u32. */
  #words: Int32Array;
  readonly #k: Int32Array;
  /** The id words of the last `lookup`, and the empty entry it stopped at (-1 after anything else). */
  #w0 = 0;
  #w1 = 0;
  #w2 = 0;
  #w3 = 0;
  #hole = -1;
  /**
   * The last id looked up and the answer (with #hole and #w0..#w3 still as that lookup left them), until
   * the table changes: a store's write looks its id up twice (the compare, then the write).
   */
  #lastId: string | null = null;
  #lastAnswer = ABSENT;
  #lastHole = -1;
  /** Formats ids in `idAt`. */
  readonly #scratch = Buffer.alloc(16);

  /** Room for ids in slots 0 .. `slots - 1`, and a table sized for `ids` of them. */
  constructor(key: Uint32Array, slots: number, ids = 0) {
    if (key.length < HEX_ID_KEY_WORDS) throw new RangeError(`HexIdSlots key must have ${HEX_ID_KEY_WORDS} words`);
    this.#k = idHashKey(key);
    let cap = MIN_TABLE;
    while (cap * 5 < ids * 8) cap *= 2;
    this.#table = new Int32Array(cap);
    this.#mask = cap - 1;
    this.#words = new Int32Array(slots * 4);
  }

  /** Ids held. */
  get size(): number {
    return this.#size;
  }

  /**
   * The slot of `id`, ABSENT, or NOT_HEX when `id` is not 32 lowercase hex characters. An ABSENT answer
   * can be followed by `addLooked` (nothing else in between) to hold that id.
   */
  lookup(id: string): number {
    if (id === this.#lastId) {
      this.#hole = this.#lastHole;
      return this.#lastAnswer;
    }
    this.#hole = -1;
    if (id.length !== 32) return NOT_HEX;
    const hex = HEX;
    let high = 0; // every character code or'ed: over 127 for one outside ASCII
    let bad = 0; // negative for a character that is not a lowercase hex digit
    let w0 = 0;
    let w1 = 0;
    let w2 = 0;
    let w3 = 0;
    for (let i = 0; i < 8; i++) {
      const a = id.charCodeAt(i);
      const b = id.charCodeAt(i + 8);
      const c = id.charCodeAt(i + 16);
      const d = id.charCodeAt(i + 24);
      high |= a | b | c | d;
      const va = hex[a & 127]!;
      const vb = hex[b & 127]!;
      const vc = hex[c & 127]!;
      const vd = hex[d & 127]!;
      bad |= va | vb | vc | vd;
      w0 = (w0 << 4) | va;
      w1 = (w1 << 4) | vb;
      w2 = (w2 << 4) | vc;
      w3 = (w3 << 4) | vd;
    }
    if (bad < 0 || high > 127) return NOT_HEX;
    this.#w0 = w0;
    this.#w1 = w1;
    this.#w2 = w2;
    this.#w3 = w3;
    const table = this.#table;
    const words = this.#words;
    const mask = this.#mask;
    for (let i = this.#hash(w0, w1, w2, w3) & mask; ; i = (i + 1) & mask) {
      const e = table[i]!;
      if (e === 0) {
        this.#hole = i;
        return this.#remember(id, ABSENT, i);
      }
      const j = (e - 1) << 2;
      if (words[j] === w0 && words[j + 1] === w1 && words[j + 2] === w2 && words[j + 3] === w3) return this.#remember(id, e - 1, -1);
    }
  }

  #remember(id: string, answer: number, hole: number): number {
    this.#lastId = id;
    this.#lastAnswer = answer;
    this.#lastHole = hole;
    return answer;
  }

  /**
   * Holds the id of the last `lookup` (which answered ABSENT) in `slot` (within the slots there is room
   * for). Throws if that lookup was not the last call: a programming error.
   */
  addLooked(slot: number): void {
    let hole = this.#hole;
    if (hole === -1) throw new Error('HexIdSlots.addLooked: not right after a lookup that answered ABSENT');
    this.#hole = -1;
    this.#lastId = null;
    const j = slot << 2;
    if (j + 4 > this.#words.length) throw new RangeError(`HexIdSlots: no room for slot ${slot}`);
    this.#words[j] = this.#w0;
    this.#words[j + 1] = this.#w1;
    this.#words[j + 2] = this.#w2;
    this.#words[j + 3] = this.#w3;
    if ((this.#size + 1) * 8 > this.#table.length * 5) {
      this.#grow();
      hole = this.#emptyFor(slot);
    }
    this.#table[hole] = slot + 1;
    this.#size++;
  }

  /** Forgets the id held in `slot` (which must hold one). */
  remove(slot: number): void {
    this.#hole = -1;
    this.#lastId = null;
    const table = this.#table;
    const words = this.#words;
    const mask = this.#mask;
    const q = slot << 2;
    let i = this.#hash(words[q]!, words[q + 1]!, words[q + 2]!, words[q + 3]!) & mask;
    for (; ; i = (i + 1) & mask) {
      const e = table[i]!;
      if (e === 0) throw new Error(`HexIdSlots.remove: slot ${slot} holds no id`);
      if (e === slot + 1) break;
    }
    // Backward shift: pull later members of the run into the hole so every probe run stays unbroken.
    let hole = i;
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const e = table[j]!;
      if (e === 0) break;
      const p = (e - 1) << 2;
      const home = this.#hash(words[p]!, words[p + 1]!, words[p + 2]!, words[p + 3]!) & mask;
      // e may move into the hole unless its home lies cyclically within (hole, j].
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        table[hole] = e;
        hole = j;
      }
    }
    table[hole] = 0;
    this.#size--;
  }

  /** The id held in `slot` as its 32 lowercase hex characters (a new flat string). */
  idAt(slot: number): string {
    const b = this.#scratch;
    const w = this.#words;
    const j = slot << 2;
    b.writeUInt32BE(w[j]! >>> 0, 0);
    b.writeUInt32BE(w[j + 1]! >>> 0, 4);
    b.writeUInt32BE(w[j + 2]! >>> 0, 8);
    b.writeUInt32BE(w[j + 3]! >>> 0, 12);
    return b.toString('hex');
  }

  /** Room for ids in slots 0 .. `slots - 1` (never less than there is). */
  growSlots(slots: number): void {
    if (slots * 4 <= this.#words.length) return;
    const words = new Int32Array(slots * 4);
    words.set(this.#words);
    this.#words = words;
  }

  /** Holds the id of this index's slot `from` in `to`'s slot `slotTo` (compaction; `to` must not hold that id). */
  copyInto(to: HexIdSlots, from: number, slotTo: number): void {
    this.#hole = -1;
    const w = this.#words;
    const j = from << 2;
    to.#w0 = w[j]!;
    to.#w1 = w[j + 1]!;
    to.#w2 = w[j + 2]!;
    to.#w3 = w[j + 3]!;
    to.#hole = to.#emptyFor(-1);
    to.addLooked(slotTo);
  }

  /** The first empty entry of the probe run of the id words in #w0..#w3 (or of `slot`'s, where held). */
  #emptyFor(slot: number): number {
    let w0 = this.#w0;
    let w1 = this.#w1;
    let w2 = this.#w2;
    let w3 = this.#w3;
    if (slot !== -1) {
      const j = slot << 2;
      w0 = this.#words[j]!;
      w1 = this.#words[j + 1]!;
      w2 = this.#words[j + 2]!;
      w3 = this.#words[j + 3]!;
    }
    const table = this.#table;
    const mask = this.#mask;
    let i = this.#hash(w0, w1, w2, w3) & mask;
    while (table[i] !== 0) i = (i + 1) & mask;
    return i;
  }

  #grow(): void {
    const old = this.#table;
    const cap = old.length * 2;
    this.#table = new Int32Array(cap);
    this.#mask = cap - 1;
    for (let i = 0; i < old.length; i++) {
      const e = old[i]!;
      if (e !== 0) this.#table[this.#emptyFor(e - 1)] = e;
    }
  }

  /** Keyed 32-bit hash of the four id words (the session table's id index's hash). */
  #hash(w0: number, w1: number, w2: number, w3: number): number {
    return hashIdWords(this.#k, w0, w1, w2, w3);
  }
}
