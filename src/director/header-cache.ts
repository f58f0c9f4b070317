// Which sessions keep their PROXY v2 header ready (issue 7: memory per session). The shell caches a
// session's whole header on the record (`shellCache`: ~300 bytes with its buffer) so that a datagram
// costs a copy, not a build; with a million mostly idle sessions that cache alone was a third of the
// director's memory. Here at most `capacity` sessions hold one: the recently active ones, chosen by
// CLOCK (second chance): a cache used since the hand last passed it is skipped once, an unused one is
// taken back. Pure data structure: no clock, no I/O; it never decides routing, and a session whose
// cache was taken back only builds its header again on its next datagram.

/** What a cache entry carries for the slots: where it sits, and whether it was used since the hand passed. */
export interface SlotEntry {
  /** The slot the entry was given; only HeaderCacheSlots writes it. */
  slot: number;
  /** Set by the user on every use; cleared by the hand. */
  used: boolean;
}

/** A record that can hold one cache entry (a SessionRecord's `shellCache`). */
export interface CacheHolder {
  shellCache: unknown;
}

export class HeaderCacheSlots<E extends SlotEntry> {
  readonly #holders: (CacheHolder | null)[];
  #hand = 0;
  #held = 0;
  #evicted = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`header cache capacity must be an integer ≥ 1, got ${capacity}`);
    this.#holders = new Array<CacheHolder | null>(capacity).fill(null);
  }

  /** Slots that hold a record now (some of their entries may have been dropped by the record since). */
  get size(): number {
    return this.#held;
  }

  /** Entries taken back from a record to make room for another (a counter: never goes down). */
  get evicted(): number {
    return this.#evicted;
  }

  /**
   * Gives `entry` to `rec` (`rec.shellCache = entry`): in the slot of the entry it holds now, if that
   * is one of ours, else in a free slot or one taken back from the least recently used holder.
   */
  give(rec: CacheHolder, entry: E): void {
    const now = this.#entryOf(rec);
    const slot = now !== null ? now.slot : this.#take();
    this.#holders[slot] = rec;
    entry.slot = slot;
    entry.used = true;
    rec.shellCache = entry;
  }

  /** Forgets `rec`'s entry (its session ended): the slot is free and the record holds nothing. */
  release(rec: CacheHolder): void {
    const e = this.#entryOf(rec);
    if (e === null) return;
    this.#holders[e.slot] = null;
    this.#held--;
    rec.shellCache = undefined;
  }

  /** `rec`'s entry if it holds one of ours (in the slot the entry names), else null. */
  #entryOf(rec: CacheHolder): E | null {
    const e = rec.shellCache as E | undefined;
    if (e === undefined || e === null || typeof e.slot !== 'number') return null;
    return this.#holders[e.slot] === rec ? e : null;
  }

  /**
   * A slot for a new entry: the first one under the hand that is free, whose holder dropped its entry,
   * or whose entry was not used since the hand last passed (its entry is taken back). At most two turns.
   */
  #take(): number {
    const holders = this.#holders;
    const n = holders.length;
    for (let i = 0; i < 2 * n + 1; i++) {
      const slot = this.#hand;
      this.#hand = slot + 1 === n ? 0 : slot + 1;
      const h = holders[slot];
      if (h === null || h === undefined) {
        this.#held++;
        return slot;
      }
      const e = h.shellCache as E | undefined;
      if (e === undefined || e === null || e.slot !== slot) return slot; // the holder dropped it (or holds another slot's)
      if (e.used) {
        e.used = false;
        continue;
      }
      h.shellCache = undefined;
      this.#evicted++;
      return slot;
    }
    // Unreachable: the first turn clears every used bit, so the second finds an unused entry.
    throw new Error('header cache: no slot found in two turns');
  }
}
