// SessionColumns, how the in-process store holds its records: a model check against a Map of frozen
// records (random set / delete / get / ownedBy with few ids, owners and names, so slots and names are
// reused, and enough churn that the columns compact), records that do not fit the columns kept whole,
// and Names' reference counting.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Names, SessionColumns } from '../../src/store/columns.js';
import { freezeRecord, type StoredSession } from '../../src/store/store.js';

const sid = (n: number): string => (n + 1).toString(16).padStart(32, '0');
const byId = (a: StoredSession, b: StoredSession): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

describe('Names', () => {
  it('numbers each distinct string once and forgets it at its last reference', () => {
    const n = new Names();
    const a = n.ref('node-a');
    expect(n.ref('node-a')).toBe(a);
    const b = n.ref('node-b');
    expect(b).not.toBe(a);
    expect(n.str(a)).toBe('node-a');
    expect(n.size).toBe(2);
    n.unref(a);
    expect(n.find('node-a')).toBe(a);
    n.unref(a);
    expect(n.find('node-a')).toBeUndefined();
    expect(n.size).toBe(1);
    const c = n.ref('node-c'); // reuses a's number
    expect(c).toBe(a);
    expect(n.str(c)).toBe('node-c');
    expect(n.str(b)).toBe('node-b');
  });
});

describe('SessionColumns', () => {
  it('hands out frozen copies equal to what was set, a new object each time', () => {
    const c = new SessionColumns();
    const r = freezeRecord({ id: sid(1), owner: 'node-a', version: 2n ** 64n - 1n, state: 'FROZEN', transport: null, director: 'd', expiresAt: 1.5 });
    c.set(r);
    const got = c.get(sid(1));
    expect(got).toEqual(r);
    expect(got).not.toBe(c.get(sid(1)));
    expect(Object.isFrozen(got)).toBe(true);
    expect(c.get(sid(2))).toBeUndefined();
  });

  it('compacts when most slots are free, keeping every record and its owner', () => {
    const c = new SessionColumns();
    const all = Array.from({ length: 3000 }, (_, i) =>
      freezeRecord({ id: sid(i), owner: `node-${i % 7}`, version: BigInt(i + 1), state: 'ATTACHED', transport: i % 2 === 0 ? null : `192.0.2.1:${i}`, director: 'd', expiresAt: i / 3 }),
    );
    for (const r of all) c.set(r);
    const kept = all.filter((_, i) => i % 50 === 7);
    for (const r of all) if (!kept.includes(r)) expect(c.delete(r.id)).toBe(true);
    expect(c.size).toBe(kept.length);
    for (const r of kept) expect(c.get(r.id)).toEqual(r);
    expect(c.ownedBy('node-0').sort(byId)).toEqual(kept.filter((r) => r.owner === 'node-0'));
    // Slots are handed out again after the compaction.
    for (const r of all.slice(0, 100)) c.set(r);
    for (const r of [...kept, ...all.slice(0, 100)]) expect(c.get(r.id)).toEqual(r);
  });

  it('keeps a record whose fields do not fit the columns whole', () => {
    const c = new SessionColumns();
    const odd = freezeRecord({ id: sid(1), owner: 'node-a', version: 1n, state: 'ATTACHED', transport: undefined, director: 7, expiresAt: '?' } as unknown as StoredSession);
    c.set(odd);
    expect(c.get(sid(1))).toBe(odd);
    expect(c.ownedBy('node-a')).toEqual([odd]);
    expect(c.versionAt(c.slotOf(sid(1)))).toBe(1n);
    expect(c.recordAt(sid(1), c.slotOf(sid(1)))).toBe(odd);
    const plain = freezeRecord({ ...odd, version: 2n, transport: '192.0.2.1:1', director: 'd', expiresAt: 5 });
    c.replaceAt(c.slotOf(sid(1)), plain);
    expect(c.get(sid(1))).toEqual(plain);
    expect(c.versionAt(c.slotOf(sid(1)))).toBe(2n);
    c.set(plain);
    expect(c.get(sid(1))).toEqual(plain);
    c.set(odd);
    expect(c.delete(sid(1))).toBe(true);
    expect(c.size).toBe(0);
  });

  it('model: random set / delete / get / ownedBy agree with a Map, through slot reuse and compaction', () => {
    const OWNERS = ['node-0', 'node-1', 'node-2', ''] as const;
    const fields = fc.record({
      owner: fc.constantFrom(...OWNERS),
      state: fc.constantFrom('ATTACHED', 'FROZEN', 'TERMINATED'),
      transport: fc.constantFrom(null, '192.0.2.1:1000', '[2001:db8::1]:443'),
      director: fc.constantFrom('dir-1', 'dir-2'),
      expiresAt: fc.oneof(fc.integer({ min: 0, max: 2 ** 40 }), fc.double({ noNaN: true })),
      version: fc.bigInt({ min: 1n, max: 2n ** 64n - 1n }),
    });
    type Op =
      | { t: 'set'; k: number; f: Omit<StoredSession, 'id'> }
      | { t: 'rep'; k: number; f: Omit<StoredSession, 'id'> }
      | { t: 'del'; k: number }
      | { t: 'bulk'; from: number; n: number; del: boolean };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ t: fc.constant('set' as const), k: fc.nat(20), f: fields }) },
      // A compare-and-swap's write: through the slot found by one lookup (only where the id is held).
      { weight: 3, arbitrary: fc.record({ t: fc.constant('rep' as const), k: fc.nat(20), f: fields }) },
      { weight: 4, arbitrary: fc.record({ t: fc.constant('del' as const), k: fc.nat(20) }) },
      // Many sessions at once, then (sometimes) gone again: the columns grow, then compact.
      { weight: 1, arbitrary: fc.record({ t: fc.constant('bulk' as const), from: fc.nat(3000), n: fc.integer({ min: 1, max: 1200 }), del: fc.boolean() }) },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const c = new SessionColumns();
        const model = new Map<string, StoredSession>();
        for (const o of ops) {
          if (o.t === 'set') {
            const r = freezeRecord({ id: sid(o.k), ...o.f });
            c.set(r);
            model.set(r.id, r);
          } else if (o.t === 'rep') {
            const r = freezeRecord({ id: sid(o.k), ...o.f });
            const slot = c.slotOf(r.id);
            if (slot !== -1) {
              c.replaceAt(slot, r);
              model.set(r.id, r);
            }
          } else if (o.t === 'del') {
            expect(c.delete(sid(o.k))).toBe(model.delete(sid(o.k)));
          } else {
            for (let i = o.from; i < o.from + o.n; i++) {
              const r = freezeRecord({ id: sid(100 + i), owner: OWNERS[i % 3] as string, version: 1n, state: 'ATTACHED', transport: null, director: 'bulk', expiresAt: i });
              c.set(r);
              model.set(r.id, r);
            }
            if (o.del) for (let i = o.from; i < o.from + o.n; i++) expect(c.delete(sid(100 + i))).toBe(model.delete(sid(100 + i)));
          }
          expect(c.size).toBe(model.size);
          for (let k = 0; k <= 20; k++) {
            expect(c.has(sid(k))).toBe(model.has(sid(k)));
            expect(c.get(sid(k))).toEqual(model.get(sid(k)));
            const slot = c.slotOf(sid(k));
            expect(slot !== -1).toBe(model.has(sid(k)));
            if (slot !== -1) {
              expect(c.versionAt(slot)).toBe(model.get(sid(k))?.version);
              expect(c.recordAt(sid(k), slot)).toEqual(model.get(sid(k)));
            }
          }
        }
        for (const owner of [...OWNERS, 'nobody']) {
          expect(c.ownedBy(owner).sort(byId)).toEqual([...model.values()].filter((r) => r.owner === owner).sort(byId));
        }
        for (const r of model.values()) expect(c.get(r.id)).toEqual(r);
      }),
      { numRuns: 100 },
    );
  });
});
