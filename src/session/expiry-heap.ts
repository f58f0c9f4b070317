// The session table's expiry order: a binary min-heap of rows (session-table row numbers) by deadline,
// where each row's position is kept in a column of the rows (`heapPos`), so a row is in the heap at most
// once and can be taken out in O(log n) when the table removes it. Pure data structure: no clock, no I/O;
// it orders deadlines and never decides expiry.
//
// Memory (issue 7): a 4-byte row number and an 8-byte deadline per entry in two typed arrays, plus the
// 4-byte position column: no object and no reference per entry.
import { reservedCapacity } from '../util/reserve.js';

/** Where the heap keeps each row's position (-1: in none). Read through every time: it may be replaced. */
export interface HeapPositions {
  heapPos: Int32Array;
}

const MIN_CAPACITY = 16;

export class ExpiryHeap {
  readonly #pos: HeapPositions;
  /** Entries made room for up front: the heap never shrinks below them. */
  readonly #reserve: number;
  #rows: Int32Array;
  #deadlines: Float64Array;
  #size = 0;

  /**
   * `reserve`: entries to make room for now (the table passes the rows it reserved): like the rows'
   * columns, resident only as entries are written, and never moved or shrunk below it.
   */
  constructor(positions: HeapPositions, reserve = 0) {
    this.#pos = positions;
    this.#reserve = reservedCapacity(reserve, MIN_CAPACITY, Infinity);
    this.#rows = new Int32Array(this.#reserve);
    this.#deadlines = new Float64Array(this.#reserve);
  }

  get size(): number {
    return this.#size;
  }

  /** Entries the heap has room for now (never below its reserve). */
  get capacity(): number {
    return this.#rows.length;
  }

  /** The row with the earliest deadline, -1 when empty. */
  peek(): number {
    return this.#size === 0 ? -1 : this.#rows[0]!;
  }

  /** The earliest deadline, Infinity when empty. */
  peekDeadline(): number {
    return this.#size === 0 ? Infinity : this.#deadlines[0]!;
  }

  has(row: number): boolean {
    const i = this.#pos.heapPos[row] ?? -1;
    return i >= 0 && i < this.#size && this.#rows[i] === row;
  }

  /** Adds `row` (false, and nothing changes, when it is in a heap already). */
  push(row: number, deadline: number): boolean {
    if (this.#pos.heapPos[row] !== -1) return false;
    const i = this.#size;
    if (i === this.#rows.length) this.#resize(i * 2);
    this.#size++;
    this.#rows[i] = row;
    this.#deadlines[i] = deadline;
    this.#up(i, row, deadline);
    return true;
  }

  /** Gives the top row a new deadline (it moves down to its place). */
  retop(deadline: number): void {
    if (this.#size === 0) return;
    this.#down(0, this.#rows[0]!, deadline);
  }

  /** Takes `row` out (false when it is not in this heap); its position becomes -1. */
  remove(row: number): boolean {
    if (!this.has(row)) return false;
    const pos = this.#pos.heapPos;
    const i = pos[row]!;
    const last = --this.#size;
    pos[row] = -1;
    if (i !== last) {
      const moved = this.#rows[last]!;
      const d = this.#deadlines[last]!;
      this.#down(i, moved, d);
      const at = this.#pos.heapPos[moved]!;
      this.#up(at, moved, d);
    }
    if (this.#rows.length > this.#reserve && this.#size * 4 < this.#rows.length) this.#resize(this.#rows.length / 2);
    return true;
  }

  /** Puts `row` (deadline `key`) at `i` or above, moving larger parents down. */
  #up(i: number, row: number, key: number): void {
    const rows = this.#rows;
    const d = this.#deadlines;
    const pos = this.#pos.heapPos;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (d[p]! <= key) break;
      rows[i] = rows[p]!;
      d[i] = d[p]!;
      pos[rows[i]!] = i;
      i = p;
    }
    rows[i] = row;
    d[i] = key;
    pos[row] = i;
  }

  /** Puts `row` (deadline `key`) at `i` or below, moving smaller children up. */
  #down(i: number, row: number, key: number): void {
    const rows = this.#rows;
    const d = this.#deadlines;
    const pos = this.#pos.heapPos;
    const n = this.#size;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && d[c + 1]! < d[c]!) c++;
      if (d[c]! >= key) break;
      rows[i] = rows[c]!;
      d[i] = d[c]!;
      pos[rows[i]!] = i;
      i = c;
    }
    rows[i] = row;
    d[i] = key;
    pos[row] = i;
  }

  #resize(capacity: number): void {
    const cap = Math.max(this.#reserve, capacity);
    const r = new Int32Array(cap);
    r.set(this.#rows.subarray(0, this.#size));
    const d = new Float64Array(cap);
    d.set(this.#deadlines.subarray(0, this.#size));
    this.#rows = r;
    this.#deadlines = d;
  }
}
