// Ends a fixed list of sessions a slice at a time (store.partition_policy `terminate`: every session there
// was when the store came back after the fence expired; a stop with the in-process store: every session
// still there at the drain's deadline). Pure bookkeeping: the caller says how item i ends and schedules
// the slices; time comes from the clock it is given.
import type { Clock } from '../util/clock.js';

/** Sessions ended between two looks at the clock. */
const CHECK_EVERY = 64;

export class SliceEnder {
  readonly #count: number;
  readonly #end: (i: number) => void;
  readonly #clock: Clock;
  readonly #sliceMs: number;
  #next = 0;

  /** Items 0 .. count - 1, each handed to `end` once, in order. */
  constructor(count: number, end: (i: number) => void, clock: Clock, sliceMs: number) {
    this.#count = count;
    this.#end = end;
    this.#clock = clock;
    this.#sliceMs = sliceMs;
  }

  get total(): number {
    return this.#count;
  }
  /** Items not handed to `end` yet. */
  get left(): number {
    return this.#count - this.#next;
  }

  /**
   * Hands items to `end`, in order, each once, until `sliceMs` has passed (looked at every CHECK_EVERY
   * items) or none is left; true once none is left.
   */
  slice(): boolean {
    const until = this.#clock.now() + this.#sliceMs;
    while (this.#next < this.#count) {
      this.#end(this.#next++);
      if (this.#next % CHECK_EVERY === 0 && this.#clock.now() >= until) break;
    }
    return this.#next >= this.#count;
  }
}
