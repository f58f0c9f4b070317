// Long synchronous work cut into slices, with a turn of the event loop between them: timers (the store
// lease's keepalives among them) and sockets run while, say, a listing of a million sessions is applied.
// The slicing itself is pure: time comes from `now`, the turn from `yieldTurn`; the defaults are the
// monotonic clock and setImmediate.
import { performance } from 'node:perf_hooks';

/** How long a slice runs at most (ms) by default before the event loop gets a turn. */
export const DEFAULT_SLICE_MS = 8;

export interface SliceOptions {
  /** A slice runs at most this long (ms) before a turn; 0: a turn after every `checkEvery` items. */
  readonly sliceMs?: number;
  /** How many items between two looks at the clock (the first look after this many). */
  readonly checkEvery?: number;
  readonly now?: () => number;
  readonly yieldTurn?: () => Promise<void>;
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Calls `fn` on every item of `items` in order, giving the event loop a turn whenever the current slice has
 * run `sliceMs`. Stops early, without calling `fn` again, once `stop()` says so after a turn (e.g. the store
 * was closed meanwhile): false then, true when every item was seen. `fn` runs synchronously; a throw
 * ends the walk (the promise rejects).
 */
export async function inSlices<T>(items: Iterable<T>, fn: (item: T) => void, stop: () => boolean, opts: SliceOptions = {}): Promise<boolean> {
  const sliceMs = opts.sliceMs ?? DEFAULT_SLICE_MS;
  const checkEvery = Math.max(1, opts.checkEvery ?? 256);
  const now = opts.now ?? (() => performance.now());
  const yieldTurn = opts.yieldTurn ?? nextTurn;
  let started = now();
  let n = 0;
  for (const item of items) {
    if (++n % checkEvery === 0 && now() - started >= sliceMs) {
      await yieldTurn();
      if (stop()) return false;
      started = now();
    }
    fn(item);
  }
  return true;
}
