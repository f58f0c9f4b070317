// Permits: never more than `size` runs at once; a permit comes back when its run settles, also when it throws.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Permits } from '../../src/util/permits.js';

describe('Permits', () => {
  it('refuses a run beyond its size (without running it) and takes runs again once one settles, also by throwing', async () => {
    const p = new Permits(2);
    const gates: (() => void)[] = [];
    const gated = (): Promise<string> => new Promise((r) => gates.push(() => r('done')));
    const a = p.with(gated);
    const b = p.with(async () => {
      throw new Error('boom');
    });
    await expect(b).rejects.toThrow('boom');
    const c = p.with(gated);
    expect(p.inUse).toBe(2);
    let ran = false;
    expect(await p.with(async () => (ran = true))).toBeUndefined();
    expect(ran).toBe(false);
    gates.shift()?.();
    expect(await a).toBe('done');
    expect(await p.with(async () => 7)).toBe(7);
    gates.shift()?.();
    expect(await c).toBe('done');
    expect(p.inUse).toBe(0);
  });

  it('property: in any interleaving of starts and ends, never more than size in use, and a start is refused only when all are', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.array(fc.boolean(), { maxLength: 60 }), async (size, ops) => {
        const p = new Permits(size);
        const open: (() => void)[] = [];
        const settled: Promise<unknown>[] = [];
        for (const start of ops) {
          if (start) {
            const before = p.inUse;
            let release = (): void => {};
            const run = p.with(() => new Promise<void>((r) => (release = r)));
            if (before === size) expect(await run).toBeUndefined();
            else {
              open.push(release);
              settled.push(run);
            }
          } else if (open.length > 0) {
            open.shift()?.();
            await settled.shift();
          }
          expect(p.inUse).toBeLessThanOrEqual(size);
          expect(p.inUse).toBe(open.length);
        }
      }),
      { seed: 7, numRuns: 200 },
    );
  });

  it('needs at least one permit', () => {
    expect(() => new Permits(0)).toThrow(RangeError);
  });
});
