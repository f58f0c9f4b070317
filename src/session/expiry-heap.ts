// The session table's expiry order: a binary min-heap of items by deadline, where each item records its
// own position (`expirySlot`), so it is in the heap at most once and can be taken out in O(log n) when the
// table removes it. Pure data structure: no clock, no I/O; it orders deadlines and never decides expiry.
//
// Memory (issue 7): one deadline (8 bytes, in a Float64Array) and one item reference per entry, instead
// of an entry object with a boxed deadline plus a WeakMap entry that named the current one (≈100 bytes).

export interface HeapItem {
  /** Where the item sits in the heap that holds it, or -1 when in none. Only the heap writes it. */
  expirySlot: number;
}

const MIN_CAPACITY = 16;

export class ExpiryHeap<T extends HeapItem> {
  #items: T[] = [];
  #deadlines = new Float64Array(MIN_CAPACITY);

  get size(): number {
    return this.#items.length;
  }

  /** The item with the earliest deadline, if any. */
  peek(): T | undefined {
    return this.#items[0];
  }

  /** The earliest deadline (Infinity when empty). */
  peekDeadline(): number {
    return this.#items.length === 0 ? Infinity : this.#deadlines[0]!;
  }

  /** Whether `item` is in this heap (its own slot says where: no search). */
  has(item: T): boolean {
    const i = item.expirySlot;
    return i >= 0 && this.#items[i] === item;
  }

  /** Adds `item` with `deadline`; false (and nothing changes) when it is in a heap already. */
  push(item: T, deadline: number): boolean {
    if (item.expirySlot !== -1) return false;
    const i = this.#items.length;
    if (i === this.#deadlines.length) this.#resize(i * 2);
    this.#items.push(item);
    this.#deadlines[i] = deadline;
    item.expirySlot = i;
    this.#up(i);
    return true;
  }

  /** Gives the earliest item a new deadline (its place is corrected). */
  retop(deadline: number): void {
    if (this.#items.length === 0) return;
    this.#deadlines[0] = deadline;
    this.#down(0);
  }

  /** Takes `item` out; false when it is not in this heap. */
  remove(item: T): boolean {
    const items = this.#items;
    const i = item.expirySlot;
    if (i < 0 || items[i] !== item) return false;
    const last = items.length - 1;
    const moved = items.pop() as T;
    item.expirySlot = -1;
    if (i !== last) {
      items[i] = moved;
      this.#deadlines[i] = this.#deadlines[last]!;
      moved.expirySlot = i;
      this.#down(i);
      this.#up(moved.expirySlot);
    }
    if (this.#deadlines.length > MIN_CAPACITY && items.length * 4 < this.#deadlines.length) this.#resize(this.#deadlines.length / 2);
    return true;
  }

  #up(i: number): void {
    const items = this.#items;
    const d = this.#deadlines;
    const item = items[i] as T;
    const key = d[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (d[p]! <= key) break;
      items[i] = items[p] as T;
      d[i] = d[p]!;
      (items[i] as T).expirySlot = i;
      i = p;
    }
    items[i] = item;
    d[i] = key;
    item.expirySlot = i;
  }

  #down(i: number): void {
    const items = this.#items;
    const d = this.#deadlines;
    const n = items.length;
    const item = items[i] as T;
    const key = d[i]!;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && d[c + 1]! < d[c]!) c++;
      if (d[c]! >= key) break;
      items[i] = items[c] as T;
      d[i] = d[c]!;
      (items[i] as T).expirySlot = i;
      i = c;
    }
    items[i] = item;
    d[i] = key;
    item.expirySlot = i;
  }

  #resize(capacity: number): void {
    const d = new Float64Array(Math.max(MIN_CAPACITY, capacity));
    d.set(this.#deadlines.subarray(0, this.#items.length));
    this.#deadlines = d;
  }
}
