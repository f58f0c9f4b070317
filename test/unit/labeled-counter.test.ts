// LabeledCounter: a cell taken once and counted with `cell.n++` (the per-datagram way) shows in get, total
// and the values snapshot exactly like inc(); initial labels are present at 0.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { LabeledCounter } from '../../src/obs/stats.js';

describe('LabeledCounter', () => {
  it('initial labels are present at 0; inc and cells count the same label', () => {
    const c = new LabeledCounter(['a', 'b']);
    expect([...c.values]).toEqual([
      ['a', 0],
      ['b', 0],
    ]);
    const a = c.cell('a');
    a.n++;
    a.n++;
    c.inc('a');
    c.inc('c', 5);
    expect(c.cell('a')).toBe(a);
    expect(c.get('a')).toBe(3);
    expect(c.get('c')).toBe(5);
    expect(c.get('nope')).toBe(0);
    expect(c.total()).toBe(8);
    expect(Object.fromEntries(c.values)).toEqual({ a: 3, b: 0, c: 5 });
  });

  it('values is a snapshot: later counts do not change it', () => {
    const c = new LabeledCounter();
    const cell = c.cell('x');
    cell.n = 1;
    const snap = c.values;
    cell.n = 2;
    expect(snap.get('x')).toBe(1);
    expect(c.values.get('x')).toBe(2);
  });

  it('any mix of cell counts and inc() adds up per label', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom('p', 'q', 'r'), fc.boolean(), fc.nat(10))), (ops) => {
        const c = new LabeledCounter();
        const want = new Map<string, number>();
        for (const [label, viaCell, by] of ops) {
          if (viaCell) c.cell(label).n += by;
          else c.inc(label, by);
          want.set(label, (want.get(label) ?? 0) + by);
        }
        expect(Object.fromEntries(c.values)).toEqual(Object.fromEntries(want));
        expect(c.total()).toBe([...want.values()].reduce((a, b) => a + b, 0));
      }),
    );
  });
});
