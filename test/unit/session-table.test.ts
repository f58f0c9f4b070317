// The bounded session table with a manual clock: insert/get/cap, the owner index, tombstones and their
// bound, strict idle expiry (checked against a naive model that scans a Map), and list() pagination.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { newSessionRecord, SessionTable, type SessionRecord, type TableLimits } from '../../src/session/table.js';

const TTL = 1000;

function idOf(n: number): string {
  return n.toString(16).padStart(32, '0');
}

function rec(n: number, now: number, owner = 'node-a', ttl = TTL, servedHere = true): SessionRecord {
  const r = newSessionRecord({ id: idOf(n), owner, version: 1n, state: 'ATTACHED', transport: { family: 4, address: '192.0.2.1', port: 1000 + (n % 60000) }, listener: 0, now, idleTtlMs: ttl });
  r.servedHere = servedHere;
  return r;
}

function table(over: Partial<TableLimits> = {}): SessionTable {
  return new SessionTable({ max: 100, idleTtlMs: TTL, tombstoneMs: 500, ...over });
}

const ids = (rs: readonly SessionRecord[]): string[] => rs.map((r) => r.id);

/** `owner`'s records, by one whole pass of the table's walk (the table does not change meanwhile). */
function owned(t: SessionTable, owner: string): SessionRecord[] {
  const w = t.walkOwner(owner);
  const out: SessionRecord[] = [];
  const budget = { slots: Infinity };
  for (let r = w.next(budget); r !== undefined; r = w.next(budget)) out.push(r);
  expect(w.done).toBe(true);
  return out;
}
const ownedIds = (t: SessionTable, owner: string): Set<string> => new Set(ids(owned(t, owner)));

describe('SessionTable: insert / get / cap', () => {
  it('inserts and gets by id', () => {
    const t = table();
    const r = rec(1, 0);
    expect(t.insert(r)).toBe(true);
    expect(t.get(r.id)).toBe(r);
    expect(t.get(idOf(2))).toBeUndefined();
    expect(t.size).toBe(1);
    expect([...t.values()]).toEqual([r]);
    expect(t.idleTtlMs).toBe(TTL);
  });

  it('refuses a duplicate id', () => {
    const t = table();
    expect(t.insert(rec(1, 0))).toBe(true);
    const dup = rec(1, 5);
    expect(t.insert(dup)).toBe(false);
    expect(t.get(idOf(1))).not.toBe(dup);
    expect(t.size).toBe(1);
  });

  it('is full at max and refuses inserts until a record is removed', () => {
    const t = table({ max: 3 });
    for (let i = 1; i <= 3; i++) {
      expect(t.full).toBe(false);
      expect(t.insert(rec(i, 0))).toBe(true);
    }
    expect(t.full).toBe(true);
    expect(t.insert(rec(4, 0))).toBe(false);
    expect(t.size).toBe(3);
    t.remove(t.get(idOf(2))!, 0);
    expect(t.full).toBe(false);
    expect(t.insert(rec(4, 0))).toBe(true);
    expect(t.size).toBe(3);
  });
});

describe('SessionTable: one table per record', () => {
  it('refuses a record that is live in another table, and takes it once that one removed it', () => {
    const t1 = table();
    const t2 = table();
    const r = rec(1, 0);
    expect(t1.insert(r)).toBe(true);
    expect(t2.insert(r)).toBe(false);
    expect([t1.holds(r), t2.holds(r)]).toEqual([true, false]);
    t1.discard(r);
    expect(r.expirySlot).toBe(-1);
    expect(t2.insert(r)).toBe(true);
    expect(t2.dueForExpiry(TTL)).toEqual([r]);
    expect(t1.dueForExpiry(TTL)).toEqual([]);
  });
});

describe('SessionTable: holds (liveness without the id map)', () => {
  it('is get(rec.id) === rec: true while live here, false in another table, after remove or discard, and for a look-alike', () => {
    const t1 = table();
    const t2 = table();
    const a = rec(1, 0);
    const b = rec(2, 0);
    expect(t1.holds(a)).toBe(false);
    t1.insert(a);
    t1.insert(b);
    expect(t1.holds(a)).toBe(true);
    expect(t2.holds(a)).toBe(false);
    expect(t1.holds(rec(1, 0))).toBe(false); // the same id, another record
    t1.remove(a, 0);
    expect(t1.holds(a)).toBe(false);
    expect(t1.holds(b)).toBe(true); // b may have moved in the heap when a left
    t1.discard(b);
    expect(t1.holds(b)).toBe(false);
    t2.insert(a);
    expect(t2.holds(a)).toBe(true);
  });

  it('property: holds(r) agrees with get(r.id) === r through random inserts, removes and expiry sweeps', () => {
    type Op = { t: 'ins' | 'rem' | 'dis'; k: number } | { t: 'sweep'; now: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ t: fc.constantFrom('ins' as const, 'rem' as const, 'dis' as const), k: fc.nat(31) }),
      fc.record({ t: fc.constant('sweep' as const), now: fc.nat(3 * TTL) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const t = table();
        // Two records per id: a second record with the same id is never held while the first is.
        const recs = Array.from({ length: 32 }, (_, i) => rec(i % 16, i % 7));
        for (const o of ops) {
          if (o.t === 'sweep') for (const r of t.dueForExpiry(o.now)) t.remove(r, o.now);
          else {
            const r = recs[o.k] as SessionRecord;
            if (o.t === 'ins') t.insert(r);
            else if (o.t === 'rem') t.remove(r, 0);
            else t.discard(r);
          }
          for (const r of recs) expect(t.holds(r)).toBe(t.get(r.id) === r);
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('SessionTable: servedCount (the sessions a stopping director waits for)', () => {
  it('counts the live records served here: inserted served or not, touched, served elsewhere, removed', () => {
    const t = table();
    const a = rec(1, 0);
    const b = rec(2, 0, 'node-a', TTL, false); // mirrored from another director
    const c = rec(3, 0);
    t.insert(a);
    t.insert(b);
    t.insert(c);
    expect(t.servedCount).toBe(2);
    t.touch(b, 1); // its client's traffic came here
    expect([t.servedCount, b.servedHere]).toEqual([3, true]);
    t.touch(b, 2); // again: nothing to count
    expect(t.servedCount).toBe(3);
    t.notServedHere(a); // another director bound its client's new transport
    t.notServedHere(a);
    expect([t.servedCount, a.servedHere]).toEqual([2, false]);
    t.remove(c, 3);
    t.discard(b);
    expect(t.servedCount).toBe(0);
    t.remove(a, 4); // not served here: nothing to take off
    expect([t.servedCount, t.size]).toEqual([0, 0]);
    // A record not live here changes no count.
    const d = rec(4, 0, 'node-a', TTL, false);
    t.touch(d, 5);
    t.notServedHere(d);
    expect(t.servedCount).toBe(0);
  });

  it('property: servedCount is the number of live records with servedHere, through random steps', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom('insert', 'touch', 'elsewhere', 'remove'), fc.integer({ min: 1, max: 8 }), fc.boolean()), { maxLength: 60 }), (steps) => {
        const t = table();
        const recs = new Map<number, SessionRecord>();
        for (const [op, n, served] of steps) {
          const r = recs.get(n) ?? rec(n, 0, 'node-a', TTL, served);
          recs.set(n, r);
          if (op === 'insert') t.insert(r);
          else if (op === 'touch') t.touch(r, 1);
          else if (op === 'elsewhere') t.notServedHere(r);
          else {
            t.remove(r, 1);
            recs.delete(n);
          }
          expect(t.servedCount).toBe([...t.values()].filter((x) => x.servedHere).length);
        }
      }),
    );
  });
});

describe('SessionTable: snapshot (the sessions a stop or a partition ends, as ids and lives)', () => {
  it('holds the sessions its filter accepts; each is found while it lives in the same life, not once ended or admitted anew', () => {
    const t = table();
    const recs = [1, 2, 3, 4, 5].map((n) => rec(n, 0, 'node-a', TTL, n !== 2));
    recs.forEach((r, i) => {
      r.incarnation = 100 + i;
      t.insert(r);
    });
    const all = t.snapshot();
    expect(all.count).toBe(5);
    const served = t.snapshot((servedHere) => servedHere);
    expect(served.count).toBe(4);
    const found = (snap: typeof all): string[] => Array.from({ length: snap.count }, (_, i) => t.snapshotted(snap, i)?.id ?? '-');
    expect(found(served).sort()).toEqual([1, 3, 4, 5].map(idOf));
    expect(new Set(found(all))).toEqual(new Set(recs.map((r) => r.id)));
    expect(Array.from({ length: all.count }, (_, i) => all.lives[i]).sort()).toEqual([100, 101, 102, 103, 104]);
    // Ended: not found. Admitted anew (another life of the same id): not found either.
    t.remove(recs[0]!, 1);
    t.remove(recs[2]!, 1);
    const again = rec(3, 1);
    again.incarnation = 999;
    t.insert(again);
    expect(found(served).sort()).toEqual(['-', '-', idOf(4), idOf(5)]);
    // Found by the id bytes: an id text that is not lower case is found too, and keeps its text.
    const upper = newSessionRecord({ id: 'AB'.repeat(16), owner: 'node-a', version: 1n, state: 'ATTACHED', transport: { family: 4, address: '192.0.2.9', port: 9 }, listener: 0, now: 0, idleTtlMs: TTL });
    t.insert(upper);
    const withUpper = t.snapshot();
    expect(found(withUpper)).toContain('AB'.repeat(16));
    expect(t.snapshot(() => false).count).toBe(0);
    expect(table().snapshot().count).toBe(0);
  });
});

describe('SessionTable: owner index', () => {
  it('counts and lists ids by owner', () => {
    const t = table();
    t.insert(rec(1, 0, 'a'));
    t.insert(rec(2, 0, 'a'));
    t.insert(rec(3, 0, 'b'));
    expect(t.countByOwner('a')).toBe(2);
    expect(t.countByOwner('b')).toBe(1);
    expect(t.countByOwner('zz')).toBe(0);
    expect([...ownedIds(t, 'a')].sort()).toEqual([idOf(1), idOf(2)]);
    expect([...ownedIds(t, 'zz')]).toEqual([]);
    expect(t.ownerCounts()).toEqual(
      new Map([
        ['a', 2],
        ['b', 1],
      ]),
    );
  });

  it('setOwner moves the record between index entries', () => {
    const t = table();
    const r = rec(1, 0, 'a');
    t.insert(r);
    t.insert(rec(2, 0, 'a'));
    t.setOwner(r, 'b');
    expect(r.owner).toBe('b');
    expect(t.countByOwner('a')).toBe(1);
    expect(t.countByOwner('b')).toBe(1);
    expect([...ownedIds(t, 'b')]).toEqual([r.id]);
    expect(ownedIds(t, 'a').has(r.id)).toBe(false);
    t.setOwner(r, 'b'); // no-op
    expect(t.countByOwner('b')).toBe(1);
    t.setOwner(t.get(idOf(2))!, 'b');
    expect(t.countByOwner('a')).toBe(0);
    expect(t.ownerCounts()).toEqual(new Map([['b', 2]]));
  });

  it('remove takes the record out of its owner index', () => {
    const t = table();
    const r = rec(1, 0, 'a');
    t.insert(r);
    t.setOwner(r, 'b');
    t.remove(r, 0);
    expect(t.countByOwner('a')).toBe(0);
    expect(t.countByOwner('b')).toBe(0);
    expect(t.ownerCounts().size).toBe(0);
  });
});

describe('SessionTable: remove and tombstones', () => {
  it('remove leaves a tombstone until now + tombstoneMs (exclusive)', () => {
    const t = table({ tombstoneMs: 500 });
    const r = rec(1, 0);
    t.insert(r);
    t.remove(r, 100);
    expect(t.get(r.id)).toBeUndefined();
    expect(t.size).toBe(0);
    expect(t.tombstoneUntil(r.id, 100)).toBe(600);
    expect(t.tombstoneUntil(r.id, 599)).toBe(600);
    expect(t.tombstoneUntil(r.id, 600)).toBeUndefined();
    expect(t.tombstoneCount).toBe(1);
    t.dueForExpiry(599);
    expect(t.tombstoneCount).toBe(1);
    t.dueForExpiry(600); // the sweep forgets old tombstones
    expect(t.tombstoneCount).toBe(0);
  });

  it('leaves no tombstone when tombstoneMs = 0', () => {
    const t = table({ tombstoneMs: 0 });
    const r = rec(1, 0);
    t.insert(r);
    t.remove(r, 100);
    expect(t.tombstoneUntil(r.id, 100)).toBeUndefined();
    expect(t.tombstoneCount).toBe(0);
  });

  it('removing a record that is not the live one changes nothing', () => {
    const t = table();
    const r = rec(1, 0);
    t.insert(r);
    t.remove(rec(1, 0), 0); // same id, other object
    expect(t.get(r.id)).toBe(r);
    t.remove(r, 0);
    t.remove(r, 10); // twice
    expect(t.tombstoneUntil(r.id, 10)).toBe(500);
    expect(t.tombstoneCount).toBe(1);
  });

  it('insert of a tombstoned id clears the tombstone', () => {
    const t = table();
    const r = rec(1, 0);
    t.insert(r);
    t.remove(r, 0);
    expect(t.insert(rec(1, 10))).toBe(true);
    expect(t.tombstoneUntil(r.id, 10)).toBeUndefined();
    expect(t.tombstoneCount).toBe(0);
  });

  it('a re-used id tombstoned again does not hold back the sweep of other tombstones', () => {
    const t = table({ tombstoneMs: 500 });
    t.insert(rec(1, 0));
    t.remove(t.get(idOf(1))!, 0); // id 1 tombstoned until 500
    t.insert(rec(2, 0));
    t.remove(t.get(idOf(2))!, 100); // id 2 until 600
    // id 1's tombstone ran out but was not swept yet; it is admitted again and closed again.
    expect(t.tombstoneUntil(idOf(1), 550)).toBeUndefined();
    t.insert(rec(1, 550));
    t.remove(t.get(idOf(1))!, 560); // id 1 until 1060
    t.dueForExpiry(700); // id 2's tombstone is over
    expect(t.tombstoneUntil(idOf(2), 700)).toBeUndefined();
    expect(t.tombstoneUntil(idOf(1), 700)).toBe(1060);
    expect(t.tombstoneCount).toBe(1);
    t.dueForExpiry(1060);
    expect(t.tombstoneCount).toBe(0);
  });

  it('tombstones are bounded by max: the oldest are evicted and counted', () => {
    const t = table({ max: 4, tombstoneMs: 1_000_000 });
    for (let i = 1; i <= 50; i++) {
      const r = rec(i, i);
      expect(t.insert(r)).toBe(true);
      t.remove(r, i);
      expect(t.tombstoneCount).toBeLessThanOrEqual(4);
    }
    expect(t.tombstoneCount).toBe(4);
    expect(t.tombstonesEvicted).toBe(46);
    for (let i = 47; i <= 50; i++) expect(t.tombstoneUntil(idOf(i), 50)).toBe(i + 1_000_000);
    expect(t.tombstoneUntil(idOf(46), 50)).toBeUndefined();
  });

  it('the tombstone bound holds under a long churn (FIFO compaction)', () => {
    const t = table({ max: 8, tombstoneMs: 100 });
    for (let i = 1; i <= 5000; i++) {
      const r = rec(i, i);
      t.insert(r);
      t.remove(r, i);
      if (i % 7 === 0) t.dueForExpiry(i);
      expect(t.tombstoneCount).toBeLessThanOrEqual(8);
    }
    expect(t.tombstoneUntil(idOf(5000), 5000)).toBe(5100);
  });
});

describe('SessionTable: dueForExpiry (strict idle expiry)', () => {
  it('returns exactly the records with expiresAt ≤ now, without removing them', () => {
    const t = table();
    const a = rec(1, 0); // expires at 1000
    const b = rec(2, 500); // 1500
    t.insert(a);
    t.insert(b);
    expect(t.dueForExpiry(999)).toEqual([]);
    expect(ids(t.dueForExpiry(1000))).toEqual([a.id]);
    expect(t.get(a.id)).toBe(a);
  });

  it('a touched session keeps living', () => {
    const t = table();
    const a = rec(1, 0);
    t.insert(a);
    t.touch(a, 900);
    expect(a.lastSeen).toBe(900);
    expect(a.expiresAt).toBe(1900);
    expect(t.dueForExpiry(1000)).toEqual([]);
    expect(t.dueForExpiry(1899)).toEqual([]);
    expect(ids(t.dueForExpiry(1900))).toEqual([a.id]);
  });

  it('respects the limit and finds the rest on the next call', () => {
    const t = table();
    for (let i = 1; i <= 10; i++) t.insert(rec(i, i));
    const first = t.dueForExpiry(5000, 4);
    expect(first).toHaveLength(4);
    for (const r of first) t.remove(r, 5000);
    const second = t.dueForExpiry(5000, 4);
    expect(second).toHaveLength(4);
    for (const r of second) t.remove(r, 5000);
    const third = t.dueForExpiry(5000);
    expect(third).toHaveLength(2);
    const all = new Set([...ids(first), ...ids(second), ...ids(third)]);
    expect(all.size).toBe(10);
  });

  it('a due record the caller does not remove is returned again later', () => {
    const t = table();
    const a = rec(1, 0);
    t.insert(a);
    expect(ids(t.dueForExpiry(1000))).toEqual([a.id]);
    // Kept (e.g. its expire transition failed): it is not lost, it comes back within one idle TTL.
    let again: SessionRecord[] = [];
    for (let now = 1000; now <= 1000 + TTL && again.length === 0; now += 50) again = t.dueForExpiry(now);
    expect(ids(again)).toEqual([a.id]);
  });

  it('skips removed and replaced records', () => {
    const t = table({ tombstoneMs: 0 });
    const a = rec(1, 0);
    t.insert(a);
    t.remove(a, 10);
    const a2 = rec(1, 600); // same id, new record, expires at 1600
    t.insert(a2);
    expect(t.dueForExpiry(1000)).toEqual([]);
    expect(t.dueForExpiry(1600)).toEqual([a2]);
  });

  it('a record removed and inserted again is returned once', () => {
    const t = table({ tombstoneMs: 0 });
    const a = rec(1, 0);
    t.insert(a);
    t.remove(a, 10);
    t.insert(a); // the same object back (e.g. a rolled-back removal)
    expect(t.dueForExpiry(1000)).toEqual([a]);
  });

  it('model: random insert / touch / advance / sweep+remove agree with a full scan', () => {
    type Op =
      | { op: 'insert'; n: number }
      | { op: 'touch'; n: number }
      | { op: 'advance'; ms: number }
      | { op: 'sweep'; limit: number | undefined };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ op: fc.constant('insert' as const), n: fc.integer({ min: 1, max: 30 }) }),
      fc.record({ op: fc.constant('touch' as const), n: fc.integer({ min: 1, max: 30 }) }),
      fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 700 }) }),
      fc.record({ op: fc.constant('sweep' as const), limit: fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined }) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1500 }), fc.array(opArb, { maxLength: 150 }), (ttl, ops) => {
        const t = new SessionTable({ max: 1000, idleTtlMs: ttl, tombstoneMs: 300 });
        const model = new Map<string, number>(); // id → expiresAt
        const tombs = new Map<string, number>(); // id → until
        let now = 0;
        for (const o of ops) {
          switch (o.op) {
            case 'insert': {
              const id = idOf(o.n);
              const ok = t.insert(rec(o.n, now, 'a', ttl));
              expect(ok).toBe(!model.has(id));
              if (ok) {
                model.set(id, now + ttl);
                tombs.delete(id);
              }
              break;
            }
            case 'touch': {
              const r = t.get(idOf(o.n));
              expect(r !== undefined).toBe(model.has(idOf(o.n)));
              if (r !== undefined) {
                t.touch(r, now);
                model.set(r.id, now + ttl);
              }
              break;
            }
            case 'advance':
              now += o.ms;
              break;
            case 'sweep': {
              const due = t.dueForExpiry(now, o.limit);
              const expected = [...model].filter(([, exp]) => exp <= now).map(([id]) => id);
              const got = ids(due);
              expect(new Set(got).size).toBe(got.length); // no duplicates
              for (const id of got) expect(expected).toContain(id);
              expect(got.length).toBe(Math.min(o.limit ?? Infinity, expected.length));
              for (const r of due) {
                expect(r.expiresAt).toBeLessThanOrEqual(now);
                t.remove(r, now);
                model.delete(r.id);
                tombs.set(r.id, now + 300);
              }
              break;
            }
          }
          expect(t.size).toBe(model.size);
          for (const [id, until] of tombs) {
            expect(t.tombstoneUntil(id, now)).toBe(until > now ? until : undefined);
          }
        }
        // A final unlimited sweep finds every idle record.
        const final = ids(t.dueForExpiry(now)).sort();
        expect(final).toEqual([...model].filter(([, exp]) => exp <= now).map(([id]) => id).sort());
      }),
      { numRuns: 300 },
    );
  });
});

describe('SessionTable: list() pagination', () => {
  function walk(t: SessionTable, limit: number, owner?: string, between?: (page: number) => void): string[] {
    const out: string[] = [];
    let after: string | undefined;
    for (let page = 0; page < 10_000; page++) {
      const q = { limit, ...(owner !== undefined ? { owner } : {}), ...(after !== undefined ? { after } : {}) };
      const { items, more } = t.list(q);
      expect(items.length).toBeLessThanOrEqual(limit);
      const pageIds = ids(items);
      expect(pageIds).toEqual([...pageIds].sort()); // id order within a page
      if (after !== undefined) for (const id of pageIds) expect(id > after).toBe(true);
      out.push(...pageIds);
      if (!more) return out;
      expect(items).toHaveLength(limit);
      after = pageIds[pageIds.length - 1];
      between?.(page);
    }
    throw new Error('pagination did not end');
  }

  it('an empty table lists nothing', () => {
    expect(table().list({ limit: 10 })).toEqual({ items: [], more: false });
  });

  it('pages in id order, no duplicates, no gaps', () => {
    const t = table({ max: 1000 });
    const ns = [17, 3, 250, 9, 1, 77, 4, 300, 12, 5, 6, 999, 2];
    for (const n of ns) t.insert(rec(n, 0));
    const all = ns.map(idOf).sort();
    for (const limit of [1, 2, 3, 5, 13, 14, 100]) {
      expect(walk(t, limit)).toEqual(all);
    }
    // Exactly `limit` items left: `more` is false on that page.
    const page = t.list({ limit: 13 });
    expect(page.more).toBe(false);
    expect(page.items).toHaveLength(13);
    expect(t.list({ limit: 12 }).more).toBe(true);
  });

  it('filters by owner', () => {
    const t = table({ max: 1000 });
    for (let i = 1; i <= 40; i++) t.insert(rec(i, 0, i % 3 === 0 ? 'b' : 'a'));
    const bIds = Array.from({ length: 40 }, (_, i) => i + 1)
      .filter((i) => i % 3 === 0)
      .map(idOf)
      .sort();
    expect(walk(t, 4, 'b')).toEqual(bIds);
    expect(walk(t, 7, 'a')).toHaveLength(40 - bIds.length);
    expect(walk(t, 5, 'nobody')).toEqual([]);
    for (const r of t.list({ limit: 100, owner: 'b' }).items) expect(r.owner).toBe('b');
  });

  it('stays stable when records are removed (and added below the cursor) between pages', () => {
    const t = table({ max: 1000 });
    for (let i = 1; i <= 30; i++) t.insert(rec(i * 10, 0));
    const seen = walk(t, 4, undefined, (page) => {
      // Remove one record ahead of the cursor and one behind it; add one behind it.
      const ahead = t.get(idOf((page * 4 + 6) * 10));
      if (ahead !== undefined) t.remove(ahead, 0);
      const behind = t.get(idOf((page * 4 + 1) * 10));
      if (behind !== undefined) t.remove(behind, 0);
      t.insert(rec(page * 40 + 1, 0)); // below the cursor: not listed in this walk
    });
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual([...seen].sort());
    // Every record that stayed in the table from start to end, and is above the first page, was seen.
    const survivors = Array.from({ length: 30 }, (_, i) => idOf((i + 1) * 10)).filter((id) => t.get(id) !== undefined);
    for (const id of survivors) expect(seen).toContain(id);
  });

  it('property: a page is the model\'s page (filter, sort by id text, slice) for random ids, cursors and owners, upper-case ids included', () => {
    const hex = (bytes: number[]): string => Buffer.from(bytes).toString('hex');
    const id16 = fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 16, maxLength: 16 });
    fc.assert(
      fc.property(
        fc.array(fc.record({ b: id16, owner: fc.constantFrom('a', 'b', 'c'), upper: fc.boolean() }), { maxLength: 60 }),
        fc.integer({ min: 1, max: 12 }),
        fc.option(fc.constantFrom('a', 'b', 'zz'), { nil: undefined }),
        fc.oneof(fc.constant(undefined), id16.map(hex), fc.nat(59), fc.string({ maxLength: 34 }), fc.constantFrom('8', 'g', 'F'.repeat(32), '')),
        fc.boolean(),
        (specs, limit, owner, cursor, anyUpper) => {
          const t = new SessionTable({ max: 1000, idleTtlMs: TTL, tombstoneMs: 0, idKey: KEY });
          const live: SessionRecord[] = [];
          for (const [i, sp] of specs.entries()) {
            const text = anyUpper && sp.upper && i % 2 === 0 ? hex(sp.b).toUpperCase() : hex(sp.b);
            const r = recText(text, sp.owner);
            if (t.insert(r)) live.push(r);
          }
          // A cursor that is an id in the table (by index), a random id, any text.
          const after = typeof cursor === 'number' ? live[cursor % Math.max(1, live.length)]?.id : cursor;
          const q = { limit, ...(owner !== undefined ? { owner } : {}), ...(after !== undefined ? { after } : {}) };
          const want = live
            .filter((r) => (owner === undefined || r.owner === owner) && (after === undefined || r.id > after))
            .sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
          const page = t.list(q);
          expect(ids(page.items)).toEqual(ids(want.slice(0, limit)));
          expect(page.more).toBe(want.length > limit);
          for (const [k, r] of page.items.entries()) expect(r).toBe(want[k]);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('an id text that is not lower case leaves the fast page (byte order) for the text order, and back once it is gone', () => {
    const t = table({ idKey: KEY });
    const lo = recText('0a'.repeat(16)); // text order: digits < upper case < lower case
    const up = recText('0B'.repeat(16));
    const mid = recText('0c'.repeat(16));
    for (const r of [lo, up, mid]) t.insert(r);
    expect(ids(t.list({ limit: 10 }).items)).toEqual([up.id, lo.id, mid.id]); // '0B…' < '0a…' as text
    expect(ids(t.list({ limit: 10, after: up.id }).items)).toEqual([lo.id, mid.id]);
    t.remove(up, 0);
    expect(ids(t.list({ limit: 10 }).items)).toEqual([lo.id, mid.id]);
    t.insert(recText('0b'.repeat(16)));
    expect(ids(t.list({ limit: 2 }).items)).toEqual([lo.id, '0b'.repeat(16)]);
  });

  it('property: a walk with random removals between pages is ordered, duplicate-free and gap-free', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 500 }), { maxLength: 80 }),
        fc.integer({ min: 1, max: 9 }),
        fc.array(fc.integer({ min: 1, max: 500 }), { maxLength: 40 }),
        fc.option(fc.constantFrom('a', 'b'), { nil: undefined }),
        (ns, limit, removals, owner) => {
          const t = new SessionTable({ max: 1000, idleTtlMs: TTL, tombstoneMs: 0 });
          for (const n of ns) t.insert(rec(n, 0, n % 2 === 0 ? 'a' : 'b'));
          let k = 0;
          const removed = new Set<string>();
          const seen = walk(t, limit, owner, () => {
            for (let j = 0; j < 2 && k < removals.length; j++, k++) {
              const r = t.get(idOf(removals[k]!));
              if (r !== undefined) {
                t.remove(r, 0);
                removed.add(r.id);
              }
            }
          });
          expect(new Set(seen).size).toBe(seen.length);
          expect(seen).toEqual([...seen].sort());
          const expectedStayed = ns
            .map((n) => rec(n, 0, n % 2 === 0 ? 'a' : 'b'))
            .filter((r) => owner === undefined || r.owner === owner)
            .map((r) => r.id)
            .filter((id) => !removed.has(id));
          for (const id of expectedStayed) expect(seen).toContain(id);
          for (const id of seen) if (owner !== undefined) expect(t.get(id)?.owner ?? owner).toBe(owner);
        },
      ),
    );
  });
});

// -------------------------------------------------------------------------------- one index by id, owner counts
/** A record whose id text is `text` (any case of hex), with `idBytes` decoded from it. */
function recText(text: string, owner = 'a'): SessionRecord {
  return newSessionRecord({ id: text, owner, version: 1n, state: 'ATTACHED', transport: { family: 4, address: '192.0.2.1', port: 1000 }, listener: 0, now: 0, idleTtlMs: TTL });
}

/** A fixed key: the same slots on every run, so a failing case replays. */
const KEY = Uint32Array.from({ length: 8 }, (_, i) => Math.imul(0x9e3779b9, i + 1) >>> 0);

describe('SessionTable: get by id text (no map by text: the text is decoded and the id index probed)', () => {
  it('finds a record only by its own text: another case of the same hex is not its id', () => {
    const t = table();
    const lower = recText('00ab'.repeat(8));
    const upper = recText('00CD'.repeat(8));
    expect(t.insert(lower)).toBe(true);
    expect(t.insert(upper)).toBe(true);
    expect(t.get('00ab'.repeat(8))).toBe(lower);
    expect(t.get('00AB'.repeat(8))).toBeUndefined();
    expect(t.get('00CD'.repeat(8))).toBe(upper);
    expect(t.get('00cd'.repeat(8))).toBeUndefined();
    expect(t.get('00Cd'.repeat(8))).toBeUndefined();
    // The same bytes under another text form are never a second record.
    expect(t.insert(recText('00AB'.repeat(8)))).toBe(false);
    expect(t.insert(recText('00cd'.repeat(8)))).toBe(false);
    expect(t.size).toBe(2);
  });

  it('any text that is not 32 hex characters finds nothing (never a throw)', () => {
    const t = table();
    const r = rec(1, 0);
    t.insert(r);
    for (const bad of ['', r.id.slice(1), `${r.id}0`, `${r.id.slice(0, 31)}g`, `x${r.id.slice(1)}`, ' '.repeat(32), `${r.id.slice(0, 16)}-${r.id.slice(17)}`]) {
      expect(t.get(bad)).toBeUndefined();
    }
    expect(t.get(r.id)).toBe(r);
  });

  it('setOwner of a record that is not live here changes the record only: no count', () => {
    const t = table();
    const r = rec(1, 0, 'a');
    t.setOwner(r, 'b');
    expect(r.owner).toBe('b');
    expect(t.countByOwner('b')).toBe(0);
    expect(t.ownerCounts().size).toBe(0);
    t.insert(r);
    expect(t.countByOwner('b')).toBe(1);
    t.remove(r, 0);
    t.setOwner(r, 'c');
    expect(t.ownerCounts().size).toBe(0);
  });

  it('model: get / values / size / countByOwner / ownerCounts / walkOwner / list agree with a Map through insert, remove, discard, setOwner and sweeps', () => {
    const OWNERS = ['a', 'b', 'c'] as const;
    type Op =
      | { t: 'ins' | 'twin'; k: number; o: number }
      | { t: 'rem' | 'dis'; k: number }
      | { t: 'own'; k: number; o: number }
      | { t: 'sweep'; now: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ t: fc.constantFrom('ins' as const, 'twin' as const), k: fc.nat(23), o: fc.nat(2) }),
      fc.record({ t: fc.constantFrom('rem' as const, 'dis' as const), k: fc.nat(23) }),
      fc.record({ t: fc.constant('own' as const), k: fc.nat(23), o: fc.nat(2) }),
      fc.record({ t: fc.constant('sweep' as const), now: fc.nat(3 * TTL) }),
    );
    // Ids that differ in a few bytes only, in a table of at most 16 slots at first: runs collide and wrap.
    const lowerOf = (k: number): string => `${(k * 37).toString(16).padStart(4, '0')}${'a1'.repeat(14)}`;
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), (ops) => {
        const t = new SessionTable({ max: 20, idleTtlMs: TTL, tombstoneMs: 100, idKey: KEY });
        // Per id: its record under lower-case text and a twin (the same bytes, upper-case text).
        const recs = Array.from({ length: 24 }, (_, k) => [recText(lowerOf(k)), recText(lowerOf(k).toUpperCase())] as const);
        const model = new Map<string, SessionRecord>();
        for (const o of ops) {
          if (o.t === 'sweep') {
            for (const r of t.dueForExpiry(o.now)) {
              t.remove(r, o.now);
              model.delete(r.id);
            }
            continue;
          }
          const r = recs[o.k]![o.t === 'twin' ? 1 : 0];
          const live = [...model.values()].find((x) => x.id.toLowerCase() === r.id.toLowerCase());
          switch (o.t) {
            case 'ins':
            case 'twin': {
              if (!t.holds(r)) r.owner = OWNERS[o.o]!; // (a live record's owner changes only by setOwner)
              const ok = t.insert(r);
              expect(ok).toBe(live === undefined && model.size < 20);
              if (ok) model.set(r.id, r);
              break;
            }
            case 'rem':
              t.remove(r, 0);
              if (live === r) model.delete(r.id);
              break;
            case 'dis':
              t.discard(r);
              if (live === r) model.delete(r.id);
              break;
            case 'own':
              t.setOwner(r, OWNERS[o.o]!);
              break;
          }
          expect(t.size).toBe(model.size);
          for (const [lo, up] of recs) {
            expect(t.get(lo.id)).toBe(model.get(lo.id));
            expect(t.get(up.id)).toBe(model.get(up.id));
          }
          expect(new Set(t.values())).toEqual(new Set(model.values()));
          expect([...t.values()]).toHaveLength(model.size);
          const counts = new Map<string, number>();
          for (const x of model.values()) counts.set(x.owner, (counts.get(x.owner) ?? 0) + 1);
          expect(t.ownerCounts()).toEqual(counts);
          for (const owner of OWNERS) {
            const mine = [...model.values()].filter((x) => x.owner === owner);
            expect(t.countByOwner(owner)).toBe(mine.length);
            expect(ownedIds(t, owner)).toEqual(new Set(mine.map((x) => x.id)));
            expect(new Set(owned(t, owner))).toEqual(new Set(mine));
            expect(owned(t, owner)).toHaveLength(mine.length);
            expect(ids(t.list({ owner, limit: 100 }).items)).toEqual(mine.map((x) => x.id).sort());
          }
          expect(ids(t.list({ limit: 100 }).items)).toEqual([...model.keys()].sort());
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('SessionTable.walkOwner (the owner index is a count plus a walk over the id index)', () => {
  /** Sixteen-byte ids drawn at random, as lower-case text. */
  const idsArb = (max: number) => fc.uniqueArray(fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b).toString('hex')), { minLength: 1, maxLength: max });

  it('a pass looks at each slot once, takes one slot of the budget per slot looked at, and meets each record of the owner once', () => {
    const t = new SessionTable({ max: 100, idleTtlMs: TTL, tombstoneMs: 0, idKey: KEY });
    for (let i = 1; i <= 40; i++) t.insert(rec(i, 0, i % 4 === 0 ? 'b' : 'a'));
    const w = t.walkOwner('b');
    expect(w.owner).toBe('b');
    const met: SessionRecord[] = [];
    let looked = 0;
    const slotsOfAPass = (owner: string): number => {
      const budget = { slots: 1_000_000 };
      const x = t.walkOwner(owner);
      while (!x.done) x.next(budget);
      return 1_000_000 - budget.slots;
    };
    for (;;) {
      const budget = { slots: 3 };
      const r = w.next(budget);
      looked += 3 - budget.slots;
      expect(budget.slots).toBeGreaterThanOrEqual(0);
      if (r !== undefined) met.push(r);
      else if (budget.slots > 0) break; // the pass ended before the budget ran out
      if (w.done) break;
    }
    expect(w.done).toBe(true);
    // Every slot once, whatever the owner: the index's capacity (40 records fill at most 5/8 of it).
    expect(looked).toBe(slotsOfAPass('nobody'));
    expect(looked).toBe(slotsOfAPass('a'));
    expect(looked).toBeGreaterThanOrEqual(64);
    expect(ids(met).sort()).toEqual([...t.values()].filter((r) => r.owner === 'b').map((r) => r.id).sort());
    expect(met).toHaveLength(10);
    expect(w.next({ slots: 100 })).toBeUndefined(); // done stays done
    // A budget of 0 looks at nothing.
    const w2 = t.walkOwner('a');
    const none = { slots: 0 };
    expect(w2.next(none)).toBeUndefined();
    expect(w2.done).toBe(false);
    // An owner with no records: the pass still ends (after every slot).
    const w3 = t.walkOwner('nobody');
    expect(w3.next({ slots: 1000 })).toBeUndefined();
    expect(w3.done).toBe(true);
  });

  it('property: over two passes with removals and owner changes (no inserts) under it, every record that stays with the owner is met, and only live records of the owner are', () => {
    fc.assert(
      fc.property(idsArb(60), fc.array(fc.nat(2), { minLength: 60, maxLength: 60 }), fc.array(fc.record({ k: fc.nat(59), own: fc.boolean() }), { maxLength: 60 }), fc.integer({ min: 1, max: 7 }), (texts, owners, changes, slots) => {
        const t = new SessionTable({ max: 100, idleTtlMs: TTL, tombstoneMs: 0, idKey: KEY });
        const rs = texts.map((id, i) => recText(id, ['a', 'b', 'c'][owners[i]!]!));
        for (const r of rs) expect(t.insert(r)).toBe(true);
        const stayed = new Set(rs.filter((r) => r.owner === 'a'));
        const met = new Set<SessionRecord>();
        let c = 0;
        for (let pass = 0; pass < 2; pass++) {
          const w = t.walkOwner('a');
          while (!w.done) {
            const r = w.next({ slots });
            if (r !== undefined) {
              expect(r.owner).toBe('a');
              expect(t.holds(r)).toBe(true);
              met.add(r);
            }
            // One change per call: a removal (records of the probe run shift back) or a move away from 'a'.
            const ch = changes[c++];
            const x = ch === undefined ? undefined : rs[ch.k % rs.length];
            if (ch !== undefined && x !== undefined && t.holds(x)) {
              if (ch.own) t.setOwner(x, x.owner === 'a' ? 'b' : 'a');
              else t.remove(x, 0);
              stayed.delete(x); // neither a removed record nor one that changed owner is one that stayed
            }
          }
        }
        for (const r of stayed) expect(met.has(r)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('property: a drain-like loop (take what the walk meets, move it away; start a new pass while the owner has records) ends with none left, through inserts that grow the index, removals and moves under it', () => {
    type Churn = { t: 'ins'; own: 'a' | 'b' } | { t: 'rem'; k: number } | { t: 'back'; k: number };
    const churn: fc.Arbitrary<Churn> = fc.oneof(
      fc.record({ t: fc.constant('ins' as const), own: fc.constantFrom('a' as const, 'b' as const) }),
      fc.record({ t: fc.constant('rem' as const), k: fc.nat(500) }),
      fc.record({ t: fc.constant('back' as const), k: fc.nat(500) }),
    );
    fc.assert(
      fc.property(idsArb(300), fc.nat(40), fc.array(churn, { maxLength: 200 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 3 }), (texts, initial, ops, slots, take) => {
        const t = new SessionTable({ max: 1000, idleTtlMs: TTL, tombstoneMs: 0, idKey: KEY });
        let next = 0;
        const all: SessionRecord[] = [];
        const add = (owner: string): void => {
          if (next >= texts.length) return;
          const r = recText(texts[next++]!, owner);
          expect(t.insert(r)).toBe(true);
          all.push(r);
        };
        for (let i = 0; i < Math.min(initial, texts.length); i++) add(i % 2 === 0 ? 'a' : 'b');
        let walk: ReturnType<SessionTable['walkOwner']> | null = null;
        let c = 0;
        let calls = 0;
        while (t.countByOwner('a') > 0 || c < ops.length) {
          calls++;
          expect(calls).toBeLessThan(100_000); // never loops for ever
          walk ??= t.walkOwner('a');
          for (let i = 0; i < take; i++) {
            const r = walk.next({ slots });
            if (r !== undefined) t.setOwner(r, 'b'); // moved off the owner
            else if (walk.done) {
              walk = null; // a new pass next time round (the caller restarts while countByOwner > 0)
              break;
            }
          }
          const o = ops[c++];
          if (o === undefined) continue;
          if (o.t === 'ins') add(o.own);
          else {
            const x = all[o.k % Math.max(1, all.length)];
            if (x === undefined || !t.holds(x)) continue;
            if (o.t === 'rem') t.remove(x, 0);
            else t.setOwner(x, 'a'); // a session comes (back) to the owner while the walk runs
          }
        }
        expect(t.countByOwner('a')).toBe(0);
        for (const r of all) if (t.holds(r)) expect(r.owner).toBe('b');
      }),
      { numRuns: 200 },
    );
  });
});

// -------------------------------------------------------------------------------- rows and the record cache
/** A full garbage collection (V8's gc, exposed at run time for this file). */
setFlagsFromString('--expose-gc');
const fullGc = runInNewContext('gc') as () => void;

/** Lets a turn of the event loop pass (a WeakRef made in a turn holds its target until the turn ends), then collects. */
async function collect(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setImmediate(r));
    fullGc();
  }
}

describe('SessionTable: sessions as rows, records as views (issue 7)', () => {
  it('a record that left the cache is still the record of its session while it is held', () => {
    const t = table({ records: 2 });
    const recs = Array.from({ length: 20 }, (_, i) => rec(i + 1, 0));
    for (const r of recs) expect(t.insert(r)).toBe(true);
    for (const r of recs) {
      expect(t.get(r.id)).toBe(r);
      expect(t.getByIdBytes(Buffer.from(r.id, 'hex'), 0)).toBe(r);
      expect(t.holds(r)).toBe(true);
    }
    // A write through a record that left the cache is the session's.
    recs[0]!.owner = 'node-b';
    recs[0]!.lastSeen = 123.5;
    for (const r of recs.slice(1)) t.get(r.id);
    expect(t.get(recs[0]!.id)!.owner).toBe('node-b');
    expect(t.get(recs[0]!.id)!.lastSeen).toBe(123.5);
  });

  it('a row read back by a new record has every field as it was written, rare forms included', async () => {
    const t = table({ records: 1 });
    const big = 2n ** 60n + 3n;
    const fill = (): void => {
      const a = rec(1, 0, 'node-x');
      t.insert(a);
      a.version = 7n;
      a.incarnation = 2 ** 40 + 1;
      a.state = 'FROZEN';
      a.transport = { family: 4, address: '10.1.2.3', port: 4242 };
      a.listener = 3;
      a.nextSeq = 99;
      a.lastSeen = 10.25;
      a.expiresAt = 1010.25;
      a.storeExpiresAt = 2000.5;
      a.servedHere = false;
      a.formerOwner = 'node-w';
      const b = recText('00000000000000000000000000ABCDEF', 'node-y');
      t.insert(b);
      b.version = big;
      b.transport = { family: 6, address: '2001:db8::1', port: 7 };
      const c = rec(3, 0);
      t.insert(c);
      c.transport = { family: 4, address: '010.1.2.3', port: 1 }; // not canonical: kept as given
    };
    fill();
    for (let i = 10; i < 20; i++) t.insert(rec(i, 0)); // the three leave the cache
    await collect();
    const a = t.get(idOf(1))!;
    const b0 = t.get('00000000000000000000000000ABCDEF')!;
    expect([a.owner, a.version, a.incarnation, a.state, a.transport, a.listener, a.nextSeq, a.lastSeen, a.expiresAt, a.storeExpiresAt, a.servedHere, a.formerOwner, b0.formerOwner]).toEqual(['node-x', 7n, 2 ** 40 + 1, 'FROZEN', { family: 4, address: '10.1.2.3', port: 4242 }, 3, 99, 10.25, 1010.25, 2000.5, false, 'node-w', null]);
    expect(a.transport).toBe(a.transport); // one object while the row says the same
    const b = t.get('00000000000000000000000000ABCDEF')!;
    expect(b.id).toBe('00000000000000000000000000ABCDEF');
    expect(t.get('00000000000000000000000000abcdef')).toBeUndefined();
    expect([b.owner, b.version, b.transport]).toEqual(['node-y', big, { family: 6, address: '2001:db8::1', port: 7 }]);
    expect(t.get(idOf(3))!.transport.address).toBe('010.1.2.3');
    expect(t.countByOwner('node-x')).toBe(1);
  });

  it('a record holding out-of-line state keeps it when nothing else holds the record', async () => {
    const t = table({ records: 1 });
    const held = Buffer.from('held');
    ((): void => {
      const a = rec(1, 0);
      t.insert(a);
      a.pending = 'transfer';
      a.held = [held];
      const b = rec(2, 0);
      t.insert(b);
      t.insert(rec(3, 0)); // b leaves the cache (a cannot)...
      b.heldReplies = [held]; // ...and takes it back with its first out-of-line field
      b.formerOwner = 'node-old'; // a column, like the fields a row holds
    })();
    for (let i = 10; i < 20; i++) t.insert(rec(i, 0));
    await collect();
    const a = t.get(idOf(1))!;
    expect([a.pending, a.held]).toEqual(['transfer', [held]]);
    expect([t.get(idOf(2))!.heldReplies, t.get(idOf(2))!.formerOwner]).toEqual([[held], 'node-old']);
  });

  it('removal leaves the record its fields and frees the row for another session', () => {
    const t = table({ records: 4 });
    const a = rec(1, 0, 'node-a');
    t.insert(a);
    a.version = 5n;
    a.nextSeq = 17;
    t.remove(a, 0);
    expect([t.holds(a), a.expirySlot, a.owner, a.version, a.nextSeq, a.id]).toEqual([false, -1, 'node-a', 5n, 17, idOf(1)]);
    const b = rec(2, 0, 'node-b');
    t.insert(b); // takes a's row
    a.owner = 'node-z'; // a removed record's write is its own
    expect([b.owner, b.version, b.nextSeq, t.countByOwner('node-b'), t.countByOwner('node-z')]).toEqual(['node-b', 1n, 1, 1, 0]);
    // The tombstone is the caller's to check: the id is free, so the record goes back in, as it was left.
    expect(t.insert(a)).toBe(true);
    expect([t.get(idOf(1)), a.owner, a.version, t.countByOwner('node-z')]).toEqual([a, 'node-z', 5n, 1]);
  });

  it('refuses a record no newSessionRecord made (a TypeError: a programming error)', () => {
    expect(() => table().insert({ ...rec(2, 0) })).toThrow(TypeError);
  });
});

describe('SessionTable: the record cache when every record in it holds out-of-line state', () => {
  it('keeps every record holding out-of-line state, past its size, and loses none of that state', () => {
    const t = table({ max: 5000, records: 8 });
    const recs: SessionRecord[] = [];
    for (let i = 1; i <= 4000; i++) {
      const r = rec(i, 0);
      expect(t.insert(r)).toBe(true);
      r.pending = 'transfer'; // pinned: in flight
      recs.push(r);
    }
    for (const r of recs) expect(t.get(r.id)).toBe(r);
    for (const r of recs) r.pending = null;
    for (let i = 5001; i <= 5500; i++) t.get(idOf(i)); // absent ids: nothing made
    expect(recs.every((r) => t.holds(r) && r.pending === null)).toBe(true);
  });
});

describe('SessionTable walks that make no record for what they skip', () => {
  it('nextWhere returns exactly the sessions whose numbers `want` accepts; nextId gives every id of the owner once per pass, with a number per session', () => {
    const t = table({ max: 500, records: 4 });
    const served = new Set<string>();
    for (let i = 1; i <= 300; i++) {
      const r = rec(i, i, i % 2 === 0 ? 'a' : 'b', TTL, i % 3 !== 0);
      t.insert(r);
      r.storeExpiresAt = i % 5 === 0 ? r.expiresAt + 1 : r.expiresAt - 1;
      if (i % 3 !== 0 && i % 5 !== 0) served.add(r.id);
    }
    const w = t.walkAll();
    const got: string[] = [];
    const budget = { slots: Infinity };
    for (let r = w.nextWhere(budget, (s, e, se) => s && e > se); r !== undefined; r = w.nextWhere(budget, (s, e, se) => s && e > se)) got.push(r.id);
    expect(w.done).toBe(true);
    expect(new Set(got)).toEqual(served);
    expect(got.length).toBe(served.size);

    const ow = t.walkOwner('a');
    const id = new Uint8Array(16);
    const met = new Map<number, string>();
    for (let n = ow.nextId(budget, id); n !== -1; n = ow.nextId(budget, id)) {
      const text = Buffer.from(id).toString('hex');
      expect(t.get(text)?.owner).toBe('a');
      expect(met.has(n)).toBe(false);
      met.set(n, text);
    }
    expect(met.size).toBe(150);
    expect(new Set(met.values()).size).toBe(150);
    // A budget that runs out returns -1 with the pass not done; the walk goes on where it stopped.
    const w2 = t.walkOwner('b');
    let count = 0;
    while (!w2.done) for (let n = w2.nextId({ slots: 7 }, id); n !== -1; n = w2.nextId({ slots: 7 }, id)) count++;
    expect(count).toBe(150);
  });
});

describe('SessionTable: records holding out-of-line state are kept apart from the cache', () => {
  it('a cache full of pinned records still takes every other session in, and gives them back to its bound once unpinned', async () => {
    const t = table({ max: 10_000, records: 8 });
    const refs: WeakRef<SessionRecord>[] = [];
    const held = Buffer.from('x');
    ((): void => {
      const pinned: SessionRecord[] = [];
      for (let i = 1; i <= 2000; i++) {
        const r = rec(i, 0);
        t.insert(r);
        r.held = [held];
        pinned.push(r);
        refs.push(new WeakRef(r));
      }
      // Sessions that hold nothing: each lookup takes a cache slot (the pinned ones leave the ring as the hand meets them).
      for (let i = 5001; i <= 7000; i++) t.insert(rec(i, 0));
      for (let i = 5001; i <= 7000; i++) expect(t.get(idOf(i))!.id).toBe(idOf(i));
      for (const r of pinned) expect(t.get(r.id)).toBe(r);
      for (const r of pinned) r.held = null; // back to the cache, which lets go of all but its 8
    })();
    for (let i = 5001; i <= 7000; i++) t.get(idOf(i));
    await collect();
    const alive = refs.filter((w) => w.deref() !== undefined).length;
    expect(alive).toBeLessThanOrEqual(8);
    for (let i = 1; i <= 2000; i++) expect(t.get(idOf(i))!.held).toBeNull();
  });

  it('a pinned record that a removal takes out is forgotten by the table (no record left behind for its row)', () => {
    const t = table({ records: 2 });
    const a = rec(1, 0);
    t.insert(a);
    a.pending = 'freeze';
    t.insert(rec(2, 0));
    t.insert(rec(3, 0));
    t.insert(rec(4, 0)); // the hand has met a: it is kept apart
    t.remove(a, 0);
    a.pending = null; // a removed record: no table to tell
    const b = rec(5, 0);
    expect(t.insert(b)).toBe(true); // may take a's row
    expect(t.get(idOf(5))).toBe(b);
    expect(t.get(idOf(1))).toBeUndefined();
    b.pending = 'freeze';
    b.pending = null;
    expect(t.get(idOf(5))).toBe(b);
  });
});
