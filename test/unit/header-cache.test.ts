// HeaderCacheSlots: at most `capacity` records hold an entry, the recently used ones keep theirs
// (second chance), released and dropped entries free their slots, and nothing else is ever touched.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HeaderCacheSlots, type SlotEntry } from '../../src/director/header-cache.js';

interface Entry extends SlotEntry {
  readonly owner: number;
}
interface Rec {
  readonly n: number;
  shellCache: unknown;
}

const entry = (owner: number): Entry => ({ slot: -1, used: false, owner });
const holding = (recs: readonly Rec[]): Rec[] => recs.filter((r) => r.shellCache !== undefined);

describe('HeaderCacheSlots', () => {
  it('refuses a capacity that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) expect(() => new HeaderCacheSlots(bad)).toThrow(/header cache capacity must be an integer ≥ 1/);
  });

  it('gives entries until full, then takes back the one not used since the hand passed', () => {
    const slots = new HeaderCacheSlots<Entry>(3);
    const recs: Rec[] = [0, 1, 2, 3].map((n) => ({ n, shellCache: undefined }));
    for (const r of recs.slice(0, 3)) slots.give(r, entry(r.n));
    expect(slots.size).toBe(3);
    expect(holding(recs).map((r) => r.n)).toEqual([0, 1, 2]);
    // Every entry was just used: the hand clears all three, then takes the first it meets again (rec 0).
    slots.give(recs[3] as Rec, entry(3));
    expect(holding(recs).map((r) => r.n)).toEqual([1, 2, 3]);
    expect(slots.evicted).toBe(1);
    // Rec 2 is used again; 1 is not: the next new entry takes rec 1's slot and leaves 2's.
    (recs[2]?.shellCache as Entry).used = true;
    const r4: Rec = { n: 4, shellCache: undefined };
    slots.give(r4, entry(4));
    expect(holding([...recs, r4]).map((r) => r.n)).toEqual([2, 3, 4]);
    expect(slots.evicted).toBe(2);
    expect(slots.size).toBe(3);
  });

  it('a record given a second entry keeps its slot; a released one frees it without an eviction', () => {
    const slots = new HeaderCacheSlots<Entry>(2);
    const a: Rec = { n: 0, shellCache: undefined };
    const b: Rec = { n: 1, shellCache: undefined };
    slots.give(a, entry(0));
    const first = (a.shellCache as Entry).slot;
    slots.give(a, entry(10));
    expect((a.shellCache as Entry).slot).toBe(first);
    expect((a.shellCache as Entry).owner).toBe(10);
    expect(slots.size).toBe(1);
    slots.give(b, entry(1));
    slots.release(a);
    expect(a.shellCache).toBeUndefined();
    expect(slots.size).toBe(1);
    const c: Rec = { n: 2, shellCache: undefined };
    slots.give(c, entry(2));
    expect(b.shellCache).toBeDefined();
    expect(slots.evicted).toBe(0);
    // Releasing a record that holds nothing of ours changes nothing.
    const stranger: Rec = { n: 3, shellCache: { slot: 0, used: true } };
    slots.release(stranger);
    expect(stranger.shellCache).toBeDefined();
    expect(slots.size).toBe(2);
  });

  it('a slot whose record dropped its entry is reused without taking another record’s', () => {
    const slots = new HeaderCacheSlots<Entry>(2);
    const a: Rec = { n: 0, shellCache: undefined };
    const b: Rec = { n: 1, shellCache: undefined };
    slots.give(a, entry(0));
    slots.give(b, entry(1));
    a.shellCache = undefined; // as the core does when the session's transport changes
    const c: Rec = { n: 2, shellCache: undefined };
    slots.give(c, entry(2));
    expect(b.shellCache).toBeDefined();
    expect(c.shellCache).toBeDefined();
    expect(slots.evicted).toBe(0);
  });

  it('property: under any sequence, at most capacity records hold entries, each in the slot it names, and a used entry survives the next give', () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant('give' as const), r: fc.nat(15) }),
      fc.record({ k: fc.constant('use' as const), r: fc.nat(15) }),
      fc.record({ k: fc.constant('release' as const), r: fc.nat(15) }),
      fc.record({ k: fc.constant('drop' as const), r: fc.nat(15) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(op, { maxLength: 200 }), (cap, ops) => {
        const slots = new HeaderCacheSlots<Entry>(cap);
        const recs: Rec[] = Array.from({ length: 16 }, (_, n) => ({ n, shellCache: undefined }));
        let evicted = 0;
        for (const o of ops) {
          const r = recs[o.r] as Rec;
          if (o.k === 'give') {
            const before = holding(recs);
            // Entries used since the hand last passed them survive this give unless every holder was used.
            const usedOthers = before.filter((x) => x !== r && (x.shellCache as Entry).used);
            slots.give(r, entry(r.n));
            expect((r.shellCache as Entry).owner).toBe(r.n);
            const lost = before.filter((x) => x.shellCache === undefined);
            expect(lost.length).toBeLessThanOrEqual(1);
            evicted += lost.length;
            if (usedOthers.length < before.length - (before.includes(r) ? 1 : 0)) for (const x of usedOthers) expect(x.shellCache).toBeDefined();
          } else if (o.k === 'use') {
            if (r.shellCache !== undefined) (r.shellCache as Entry).used = true;
          } else if (o.k === 'release') slots.release(r);
          else r.shellCache = undefined;
          const held = holding(recs);
          expect(held.length).toBeLessThanOrEqual(cap);
          expect(new Set(held.map((x) => (x.shellCache as Entry).slot)).size).toBe(held.length);
          for (const x of held) expect((x.shellCache as Entry).slot).toBeLessThan(cap);
          expect(slots.evicted).toBe(evicted);
        }
      }),
    );
  });
});
