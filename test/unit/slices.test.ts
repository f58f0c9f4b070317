// inSlices (src/util/slices.ts): every item once, in order, with a turn of the event loop whenever a slice
// has run its time; stops after a turn once asked to. Time and turns are injected.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { inSlices } from '../../src/util/slices.js';

/** A clock that advances `step` ms each time it is read, and a turn that records after which item it came. */
function rig(step: number) {
  let t = 0;
  const seen: number[] = [];
  const turnsAfter: number[] = [];
  return {
    seen,
    turnsAfter,
    now: () => (t += step),
    yieldTurn: async () => {
      turnsAfter.push(seen.length);
    },
  };
}

describe('inSlices', () => {
  it('sees every item once, in order, and takes no turn while the slice has time left', async () => {
    const r = rig(0);
    const items = Array.from({ length: 1000 }, (_, i) => i);
    expect(await inSlices(items, (i) => r.seen.push(i), () => false, { sliceMs: 8, now: r.now, yieldTurn: r.yieldTurn })).toBe(true);
    expect(r.seen).toEqual(items);
    expect(r.turnsAfter).toEqual([]);
  });

  it('takes a turn once a slice has run sliceMs, looking at the clock every checkEvery items', async () => {
    const r = rig(5); // 5 ms per look: the second look of a slice finds it over 8 ms
    const items = Array.from({ length: 100 }, (_, i) => i);
    await inSlices(items, (i) => r.seen.push(i), () => false, { sliceMs: 8, checkEvery: 10, now: r.now, yieldTurn: r.yieldTurn });
    expect(r.seen).toEqual(items);
    // The n-th item is looked before when n is a multiple of 10. The slice started at the clock's first
    // read (5); the look before the 10th item reads 10 (5 ms: no turn), the one before the 20th 15 (10 ms:
    // a turn after 19 items, the slice starts again at 20), and so on.
    expect(r.turnsAfter).toEqual([19, 39, 59, 79, 99]);
  });

  it('sliceMs 0: a turn before every checkEvery-th item', async () => {
    const r = rig(0);
    await inSlices([1, 2, 3, 4, 5, 6, 7], (i) => r.seen.push(i), () => false, { sliceMs: 0, checkEvery: 3, now: r.now, yieldTurn: r.yieldTurn });
    expect(r.seen).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(r.turnsAfter).toEqual([2, 5]);
  });

  it('stops after a turn once stop() says so: false, and fn is not called again', async () => {
    const r = rig(0);
    let stopped = false;
    const done = await inSlices(
      Array.from({ length: 10 }, (_, i) => i),
      (i) => {
        r.seen.push(i);
        if (i === 4) stopped = true; // asked during a slice: the slice's items go on until the next turn
      },
      () => stopped,
      { sliceMs: 0, checkEvery: 2, now: r.now, yieldTurn: r.yieldTurn },
    );
    expect(done).toBe(false);
    expect(r.seen).toEqual([0, 1, 2, 3, 4]);
  });

  it('a throw in fn rejects, with no item after it seen', async () => {
    const r = rig(0);
    const walk = inSlices([1, 2, 3], (i) => {
      if (i === 2) throw new Error('bad item');
      r.seen.push(i);
    }, () => false, { now: r.now, yieldTurn: r.yieldTurn });
    await expect(walk).rejects.toThrow('bad item');
    expect(r.seen).toEqual([1]);
  });

  it('property: any items, slice and clock step — every item once in order; a turn only at a multiple of checkEvery', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer(), { maxLength: 300 }), fc.integer({ min: 0, max: 20 }), fc.integer({ min: 1, max: 50 }), fc.integer({ min: 0, max: 10 }), async (items, sliceMs, checkEvery, step) => {
        const r = rig(step);
        expect(await inSlices(items, (i) => r.seen.push(i), () => false, { sliceMs, checkEvery, now: r.now, yieldTurn: r.yieldTurn })).toBe(true);
        expect(r.seen).toEqual(items);
        for (const after of r.turnsAfter) expect((after + 1) % checkEvery).toBe(0);
        // A turn needs a slice's time: with a clock that does not move and a slice of time, none.
        if (step === 0 && sliceMs > 0) expect(r.turnsAfter).toEqual([]);
      }),
    );
  });

  it('the real event loop gets its turn: a callback queued before the walk runs between two slices', async () => {
    let ran = false;
    setImmediate(() => (ran = true));
    const ranBefore: boolean[] = [];
    await inSlices([0, 1, 2, 3], () => ranBefore.push(ran), () => false, { sliceMs: 0, checkEvery: 2 });
    expect(ranBefore).toEqual([false, true, true, true]);
  });
});
