// SessionColumns, how the in-process store holds its records: a model check against a Map of frozen
// records (random set / delete / get / ownedBy with few ids, owners and names, so slots and names are
// reused, and enough churn that the columns compact), records that do not fit the columns kept whole,
// Names' reference counting, and exactness: every field reads back exactly as written (the same string
// text, Object.is for numbers) for any id, transport, version and expiry — ids and transports held as
// numbers, as text, and almost-canonical ones, and lives past a u32 (kept whole) — across set /
// compare-and-swap / delete / compaction.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SessionColumns } from '../../src/store/columns.js';
import { Names } from '../../src/util/names.js';
import { freezeRecord, type StoredSession } from '../../src/store/store.js';
import { canonicalTransport, nearCanonicalTransport } from '../helpers/transport-text.js';

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

  it('a new name takes the lowest number free (after a burst of names the few left fit a u16 column again)', () => {
    const n = new Names();
    const nums = Array.from({ length: 10 }, (_, i) => n.ref(`n-${i}`));
    expect(nums).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (const i of [9, 2, 5]) n.unref(i);
    expect(['x', 'y', 'z', 'w'].map((s) => n.ref(s))).toEqual([2, 5, 9, 10]);
  });
});

describe('SessionColumns', () => {
  it('hands out frozen copies equal to what was set, a new object each time', () => {
    const c = new SessionColumns();
    const r = freezeRecord({ id: sid(1), owner: 'node-a', version: 2n ** 64n - 1n, state: 'FROZEN', transport: null, director: 'd', expiresAt: 1.5, incarnation: 2 ** 32 - 1 });
    c.set(r);
    const got = c.get(sid(1));
    expect(got).toEqual(r);
    expect(got).not.toBe(c.get(sid(1)));
    expect(Object.isFrozen(got)).toBe(true);
    expect(c.get(sid(2))).toBeUndefined();
  });

  it.each([0, 2000, 5000, Number.NaN])('compacts when most slots are free, keeping every record and its owner (%d slots reserved)', (reserve) => {
    const c = new SessionColumns(undefined, reserve);
    const all = Array.from({ length: 3000 }, (_, i) =>
      freezeRecord({ id: sid(i), owner: `node-${i % 7}`, version: BigInt(i + 1), state: 'ATTACHED', transport: i % 2 === 0 ? null : `192.0.2.1:${i}`, director: 'd', expiresAt: i / 3, incarnation: i }),
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
    const odd = freezeRecord({ id: sid(1), owner: 'node-a', version: 1n, state: 'ATTACHED', transport: undefined, director: 7, expiresAt: '?', incarnation: 3 } as unknown as StoredSession);
    c.set(odd);
    expect(c.get(sid(1))).toBe(odd);
    expect(c.ownedBy('node-a')).toEqual([odd]);
    expect(c.versionAt(c.slotOf(sid(1)))).toBe(1n);
    expect(c.incarnationAt(c.slotOf(sid(1)))).toBe(3);
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
      incarnation: fc.oneof(fc.nat(1000), fc.integer({ min: 2 ** 32 - 3, max: 2 ** 32 + 3 }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
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
      // With or without slots reserved (a director's embedded store reserves session.max): the same answers.
      fc.property(fc.array(op, { maxLength: 60 }), fc.constantFrom(0, 700, 4000), (ops, reserve) => {
        const c = new SessionColumns(undefined, reserve);
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
              // As MemoryStore's compare-and-swap: the compare, then the write handing back the record it replaced.
              const before = model.get(r.id) as StoredSession;
              expect(c.versionIs(slot, before.version)).toBe(true);
              expect(c.versionIs(slot, before.version + 1n)).toBe(false);
              expect(c.versionIs(slot, before.version + 2n ** 32n)).toBe(false);
              const prev = c.swapAt(slot, r, before.version);
              expect(prev).toEqual(before);
              expect(Object.isFrozen(prev)).toBe(true);
              model.set(r.id, r);
            }
          } else if (o.t === 'del') {
            expect(c.delete(sid(o.k))).toBe(model.delete(sid(o.k)));
          } else {
            for (let i = o.from; i < o.from + o.n; i++) {
              const r = freezeRecord({ id: sid(100 + i), owner: OWNERS[i % 3] as string, version: 1n, state: 'ATTACHED', transport: null, director: 'bulk', expiresAt: i, incarnation: i });
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

  it('keeps records of many distinct owners and directors (more than a u16 numbers) exactly', () => {
    const c = new SessionColumns();
    const n = 70_000;
    const rec = (i: number): StoredSession =>
      freezeRecord({ id: sid(i), owner: `owner-${i}`, version: BigInt(i + 1), state: 'ATTACHED', transport: `10.0.${(i >>> 8) & 255}.${i & 255}:${i & 0xffff}`, director: `dir-${i}`, expiresAt: i + 0.5, incarnation: 2 ** 40 + i });
    for (let i = 0; i < n; i++) c.set(rec(i));
    for (const i of [0, 1, 65_534, 65_535, 65_536, n - 1]) {
      expect(c.get(sid(i))).toEqual(rec(i));
      expect(c.ownedBy(`owner-${i}`)).toEqual([rec(i)]);
    }
    for (let i = 0; i < n; i += 2) c.delete(sid(i));
    for (let i = 0; i < n; i += 2) c.set(rec(i));
    for (let i = 0; i < n; i += 997) expect(c.get(sid(i))).toEqual(rec(i));
    expect(c.size).toBe(n);
  });

  it('exactness: any id, transport, version and expiry reads back as written, through CAS churn and compaction', () => {
    const hex32 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b).toString('hex'));
    const idArb = fc.oneof(
      { weight: 4, arbitrary: hex32 },
      { weight: 1, arbitrary: hex32.map((h) => h.toUpperCase()) },
      { weight: 1, arbitrary: fc.tuple(hex32, fc.nat(31)).map(([h, i]) => h.slice(0, i) + h[i]!.toUpperCase() + h.slice(i + 1)) },
      { weight: 1, arbitrary: fc.tuple(hex32, fc.nat(31)).map(([h, i]) => h.slice(0, i) + String.fromCharCode(h.charCodeAt(i) + 128) + h.slice(i + 1)) },
      { weight: 1, arbitrary: fc.tuple(hex32, fc.integer({ min: 1, max: 40 })).map(([h, n]) => (h + h).slice(0, n)) },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }) },
    );
    const transportArb = fc.oneof(
      { weight: 4, arbitrary: canonicalTransport },
      { weight: 4, arbitrary: nearCanonicalTransport },
      { weight: 1, arbitrary: fc.constantFrom('', '1.2.3.4:080', '[::FFFF:1.2.3.4]:1', '[::ffff:1.2.3.4]:1', '[0:0:0:0:0:0:0:1]:1', '[::1%lo]:1', '1.2.3.4') },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
      { weight: 2, arbitrary: fc.constant(null) },
    );
    const versionArb = fc.oneof(fc.bigInt({ min: 1n, max: 5n }), fc.bigInt({ min: 2n ** 32n - 3n, max: 2n ** 32n + 3n }), fc.bigInt({ min: 1n, max: 2n ** 64n - 1n }));
    const expiryArb = fc.oneof(fc.double(), fc.integer({ min: 0, max: 2 ** 42 }), fc.constantFrom(-0, 0, Number.MAX_VALUE, Number.MIN_VALUE, NaN, Infinity));
    const fields = fc.record({
      owner: fc.oneof(fc.constantFrom('node-0', 'node-1', ''), fc.string({ maxLength: 8 })),
      state: fc.oneof(fc.constantFrom('ATTACHED', 'FROZEN'), fc.string({ maxLength: 6 })).map((x) => x as StoredSession['state']),
      transport: transportArb,
      // Now and then a field of another type: the record is kept whole.
      director: fc.oneof({ weight: 9, arbitrary: fc.constantFrom('dir-1', 'dir-2') }, { weight: 1, arbitrary: fc.constant(7 as unknown as string) }),
      expiresAt: expiryArb,
      version: versionArb,
      incarnation: fc.oneof(fc.nat(1000), fc.integer({ min: 2 ** 32 - 3, max: 2 ** 32 + 3 }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
    });
    type Fields = Omit<StoredSession, 'id'>;
    type Op =
      | { t: 'set'; k: number; f: Fields }
      | { t: 'rep'; k: number; f: Fields }
      /** A compare-and-swap as MemoryStore makes it: read the record, write it back with another owner and version (the same transport text, or a copy of it). */
      | { t: 'cas'; k: number; owner: string; copy: boolean; swap: boolean }
      | { t: 'del'; k: number }
      | { t: 'bulk'; n: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ t: fc.constant('set' as const), k: fc.nat(11), f: fields }) },
      { weight: 3, arbitrary: fc.record({ t: fc.constant('rep' as const), k: fc.nat(11), f: fields }) },
      { weight: 4, arbitrary: fc.record({ t: fc.constant('cas' as const), k: fc.nat(11), owner: fc.constantFrom('node-0', 'node-1', 'node-2'), copy: fc.boolean(), swap: fc.boolean() }) },
      { weight: 3, arbitrary: fc.record({ t: fc.constant('del' as const), k: fc.nat(11) }) },
      // Enough sessions come and go that the columns compact (more than 1024 slots, a quarter live).
      { weight: 1, arbitrary: fc.record({ t: fc.constant('bulk' as const), n: fc.integer({ min: 1100, max: 1500 }) }) },
    );
    /** Every field exactly: strings by text, numbers by Object.is (NaN, -0), versions by value. */
    const same = (got: StoredSession | undefined, want: StoredSession | undefined): void => {
      if (want === undefined) return void expect(got).toBeUndefined();
      expect(got).toBeDefined();
      const g = got as StoredSession;
      expect(Object.isFrozen(g)).toBe(true);
      expect(Object.keys(g).sort()).toEqual(Object.keys(want).sort());
      for (const k of Object.keys(want) as (keyof StoredSession)[]) {
        if (!Object.is(g[k], want[k])) expect({ field: k, value: g[k] }).toEqual({ field: k, value: want[k] });
      }
    };
    fc.assert(
      fc.property(fc.uniqueArray(idArb, { minLength: 12, maxLength: 12 }), fc.array(op, { maxLength: 40 }), (pool, ops) => {
        const c = new SessionColumns();
        const model = new Map<string, StoredSession>();
        const check = (id: string): void => {
          same(c.get(id), model.get(id));
          expect(c.has(id)).toBe(model.has(id));
          const slot = c.slotOf(id);
          expect(slot !== -1).toBe(model.has(id));
          if (slot !== -1) {
            expect(c.versionAt(slot)).toBe((model.get(id) as StoredSession).version);
            expect(c.incarnationAt(slot)).toBe((model.get(id) as StoredSession).incarnation);
            same(c.recordAt(id, slot), model.get(id));
          }
        };
        for (const o of ops) {
          if (o.t === 'set' || o.t === 'rep') {
            const id = pool[o.k] as string;
            const r = freezeRecord({ id, ...o.f });
            if (o.t === 'set') {
              c.set(r);
              model.set(id, r);
            } else {
              const slot = c.slotOf(id);
              if (slot !== -1) {
                // Any other transport, kind or version: the record replaced is handed back exactly.
                same(c.swapAt(slot, r, (model.get(id) as StoredSession).version), model.get(id));
                model.set(id, r);
              }
            }
          } else if (o.t === 'cas') {
            const id = pool[o.k] as string;
            const slot = c.slotOf(id);
            if (slot === -1) continue;
            const prev = c.recordAt(id, slot);
            const transport = o.copy && typeof prev.transport === 'string' ? (' ' + prev.transport).slice(1) : prev.transport;
            const version = prev.version === 2n ** 64n - 1n ? 1n : prev.version + 1n;
            const r = freezeRecord({ ...prev, owner: o.owner, version, transport });
            if (o.swap) {
              // The record replaced, exactly (its transport text kept by the write, or another one).
              expect(c.versionIs(slot, prev.version)).toBe(true);
              same(c.swapAt(slot, r, prev.version), model.get(id));
            } else c.replaceAt(slot, r);
            model.set(id, r);
          } else if (o.t === 'del') {
            const id = pool[o.k] as string;
            expect(c.delete(id)).toBe(model.delete(id));
          } else {
            const bulk = Array.from({ length: o.n }, (_, i) => `b${i}`.padStart(32, 'f'));
            for (const [i, id] of bulk.entries()) {
              const r = freezeRecord({ id, owner: 'node-2', version: BigInt(i + 1), state: 'ATTACHED', transport: i % 3 === 0 ? `[2001:db8::${i.toString(16)}]:${i}` : `192.0.2.${i & 255}:${i}`, director: 'bulk', expiresAt: i, incarnation: i });
              c.set(r);
              model.set(id, r);
            }
            for (const id of bulk) expect(c.delete(id)).toBe(model.delete(id));
          }
          expect(c.size).toBe(model.size);
          for (const id of pool) check(id);
        }
        for (const owner of new Set([...[...model.values()].map((r) => r.owner), 'node-0', 'nobody'])) {
          const got = c.ownedBy(owner).sort(byId);
          const want = [...model.values()].filter((r) => r.owner === owner).sort(byId);
          expect(got.length).toBe(want.length);
          got.forEach((r, i) => same(r, want[i]));
        }
      }),
      { numRuns: 150 },
    );
  });
});
