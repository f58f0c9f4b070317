// Time for the shell: a monotonic clock for deadlines and a wall clock for what people read. Only the
// shell reads clocks; pure modules get `now` passed in.
import { performance } from 'node:perf_hooks';

export interface Clock {
  /** Monotonic milliseconds (deadlines, TTLs, rates). */
  now(): number;
  /** Wall-clock milliseconds since the epoch. */
  wall(): number;
  /** The wall-clock time of a monotonic instant. */
  toWall(mono: number): number;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wall: () => Date.now(),
  toWall: (mono) => performance.timeOrigin + mono,
};
