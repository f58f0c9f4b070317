// SliceEnder: a fixed list ended a slice at a time (partition_policy terminate after the store came back, a
// stop with the in-process store): each item once, in order, and a slice gives the loop back once its time
// is up.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SliceEnder } from '../../src/director/ender.js';
import { systemClock } from '../../src/util/clock.js';

/** A clock that moves `step` ms each time it is read. */
function ticking(step: number): typeof systemClock {
  let t = 0;
  return { ...systemClock, now: () => (t += step) };
}

describe('SliceEnder', () => {
  it('hands every item to end once, in order, over several slices when time runs out', () => {
    const ended: number[] = [];
    const items = Array.from({ length: 1000 }, (_, i) => i);
    const e = new SliceEnder(items.length, (i) => ended.push(items[i]!), ticking(1), 5);
    expect(e.total).toBe(1000);
    const lefts: number[] = [];
    let slices = 0;
    while (!e.slice()) {
      slices++;
      lefts.push(e.left);
      expect(slices).toBeLessThan(1000);
    }
    expect(ended).toEqual(items);
    expect(e.left).toBe(0);
    expect(slices).toBeGreaterThan(1); // the clock ran out before the list did
    for (let k = 1; k < lefts.length; k++) expect(lefts[k]!).toBeLessThan(lefts[k - 1]!);
    expect(e.slice()).toBe(true); // done stays done, nothing ended twice
    expect(ended).toHaveLength(1000);
  });

  it('a clock that does not move: one slice ends everything; an empty list is done at once', () => {
    let n = 0;
    const frozen = { ...systemClock, now: () => 0 };
    expect(new SliceEnder(500, () => n++, frozen, 5).slice()).toBe(true);
    expect(n).toBe(500);
    expect(new SliceEnder(0, () => n++, frozen, 5).slice()).toBe(true);
    expect(n).toBe(500);
  });

  it('property: any list, any pace: each item exactly once, in order', () => {
    fc.assert(
      fc.property(fc.array(fc.integer(), { maxLength: 700 }), fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 20 }), (items, step, sliceMs) => {
        const ended: number[] = [];
        const e = new SliceEnder(items.length, (i) => ended.push(items[i]!), ticking(step), sliceMs);
        for (let k = 0; k <= items.length + 1 && !e.slice(); k++);
        expect(ended).toEqual(items);
      }),
    );
  });
});
