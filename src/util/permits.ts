// A fixed number of permits for work that may not run more than so many times at once (e.g. the admin
// API's drain dry runs). Pure: a counter, no queue (a caller without a permit is refused, not delayed).

export class Permits {
  #free: number;

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`permits: expected an integer ≥ 1, got ${size}`);
    this.#free = size;
  }

  /** Permits in use. */
  get inUse(): number {
    return this.size - this.#free;
  }

  /** Runs `fn` with a permit, given back when it settles; undefined (and `fn` not run) when none is free. */
  async with<T>(fn: () => Promise<T>): Promise<T | undefined> {
    if (this.#free === 0) return undefined;
    this.#free--;
    try {
      return await fn();
    } finally {
      this.#free++;
    }
  }
}
