// Per-key token buckets (per source IP) with a bounded key count. Pure: time is passed in as `now`
// (milliseconds); it never reads a clock and never grows past `maxKeys` entries.

interface Bucket {
  tokens: number;
  last: number;
}

export class KeyedTokenBuckets {
  readonly #perMs: number;
  readonly #burst: number;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, Bucket>();
  #evicted = 0;

  constructor(ratePerSecond: number, burst: number, maxKeys = 65_536) {
    this.#perMs = ratePerSecond / 1000;
    this.#burst = burst;
    this.#maxKeys = maxKeys;
  }

  /** Takes one token for `key`; false when the key is out of tokens. */
  take(key: string, now: number): boolean {
    let b = this.#buckets.get(key);
    if (b === undefined) {
      if (this.#buckets.size >= this.#maxKeys) this.#evictOldest();
      b = { tokens: this.#burst, last: now };
      this.#buckets.set(key, b);
    } else if (now > b.last) {
      b.tokens = Math.min(this.#burst, b.tokens + (now - b.last) * this.#perMs);
      b.last = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Forgets buckets that have refilled completely (they behave exactly like a new bucket). */
  sweep(now: number): void {
    const fullAfterMs = this.#burst / this.#perMs;
    for (const [k, b] of this.#buckets) {
      if (now - b.last >= fullAfterMs) this.#buckets.delete(k);
    }
  }

  get size(): number {
    return this.#buckets.size;
  }

  /** How many buckets were evicted early because the key space was full. */
  get evicted(): number {
    return this.#evicted;
  }

  // The oldest-inserted keys go first (the periodic sweep removes refilled ones before that), a 64th of
  // the table at a time: a Map iterator walks over the entries deleted at its front until V8 compacts
  // it, so evicting one key per new key would cost O(deleted) each time.
  #evictOldest(): void {
    let n = Math.max(1, this.#maxKeys >> 6);
    for (const k of this.#buckets.keys()) {
      this.#buckets.delete(k);
      this.#evicted++;
      if (--n === 0) break;
    }
  }
}
