// Ends a fixed list of sessions a slice at a time (store.partition_policy `terminate`: every session there
// was when the store came back after the fence expired). Pure bookkeeping: the caller says how one session
// ends and schedules the slices; time comes from the clock it is given.
import type { Clock } from '../util/clock.js';

/** Sessions ended between two looks at the clock. */
const CHECK_EVERY = 64;

export class SliceEnder<T> {
  readonly #items: readonly T[];
  readonly #end: (item: T) => void;
  readonly #clock: Clock;
  readonly #sliceMs: number;
  #next = 0;

  constructor(items: readonly T[], end: (item: T) => void, clock: Clock, sliceMs: number) {
    this.#items = items;
    this.#end = end;
    this.#clock = clock;
    this.#sliceMs = sliceMs;
  }

  get total(): number {
    return this.#items.length;
  }
  /** Items not handed to `end` yet. */
  get left(): number {
    return this.#items.length - this.#next;
  }

  /**
   * Hands items to `end`, in order, each once, until `sliceMs` has passed (looked at every CHECK_EVERY
   * items) or none is left; true once none is left.
   */
  slice(): boolean {
    const until = this.#clock.now() + this.#sliceMs;
    const items = this.#items;
    while (this.#next < items.length) {
      this.#end(items[this.#next++] as T);
      if (this.#next % CHECK_EVERY === 0 && this.#clock.now() >= until) break;
    }
    return this.#next >= items.length;
  }
}
