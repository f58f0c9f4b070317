// The one contract every OwnershipStore implementation must pass (memory now, etcd later), tested only
// through the interface. Watch events are awaited (an etcd watch delivers them after the write
// resolves); "no event" is proved with a marker write: events arrive in commit order, so once the
// marker's event is in, anything a failed write had emitted would already be there too.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { sameLife, type OwnershipStore, type StoreEvent, type StoredSession } from '../../src/store/store.js';
import type { SessionState } from '../../src/session/lifecycle.js';
import { waitFor } from '../helpers/wait.js';

export interface StoreUnderTest {
  readonly store: OwnershipStore;
  cleanup(): Promise<void>;
  /** Fault injection: while on, the store must answer `unavailable` to every call and change nothing. */
  readonly makeUnavailable?: (on: boolean) => Promise<void>;
}

/**
 * Builds a fresh, empty store — or one that already holds `seed` (records at any version ≥ 1, written
 * behind the interface's back), which is the only way to reach versions beyond 2^53 in a test.
 */
export type MakeStore = (seed?: readonly StoredSession[]) => Promise<StoreUnderTest>;

export interface ContractOptions {
  /** Runs of the model-based property (each run builds a store). Default 100. */
  readonly numRuns?: number;
  /** How long to wait for watch events. Default 5000 ms. */
  readonly eventTimeoutMs?: number;
}

const FC_SEED = 20240611;
const BIG = 2n ** 53n;
const U64_MAX = 2n ** 64n - 1n;

/** A valid session id (32 lowercase hex, never all zero) from a small number. */
export function sid(n: number): string {
  return (n + 1).toString(16).padStart(32, '0');
}

export function rec(id: string, version: bigint, over: Partial<Omit<StoredSession, 'id' | 'version'>> = {}): StoredSession {
  return {
    id,
    owner: 'node-a',
    version,
    state: 'ATTACHED',
    transport: '192.0.2.10:40000',
    director: 'dir-1',
    expiresAt: 1_700_000_000_000,
    incarnation: 0,
    ...over,
  };
}

/** The next version of `r`, with some fields changed. */
function bump(r: StoredSession, over: Partial<Omit<StoredSession, 'id' | 'version'>> = {}): StoredSession {
  return { ...r, ...over, version: r.version + 1n };
}

function byId(a: StoredSession, b: StoredSession): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Collects the events of one subscription. */
function recorder(store: OwnershipStore): { events: StoreEvent[]; stop(): void } {
  const events: StoreEvent[] = [];
  const stop = store.watch((ev) => events.push(ev));
  return { events, stop };
}

export function storeContract(name: string, makeStore: MakeStore, opts: ContractOptions = {}): void {
  const numRuns = opts.numRuns ?? 100;
  const eventTimeoutMs = opts.eventTimeoutMs ?? 5000;

  /** Runs `body` on a fresh store and always cleans up. */
  async function withStore(body: (h: StoreUnderTest) => Promise<void>, seed?: readonly StoredSession[]): Promise<void> {
    const h = await makeStore(seed);
    try {
      await body(h);
    } finally {
      await h.cleanup();
    }
  }

  async function eventsUntil(events: StoreEvent[], n: number): Promise<StoreEvent[]> {
    await waitFor(`${n} watch events (have ${events.length})`, () => events.length >= n, { timeoutMs: eventTimeoutMs, intervalMs: 5 });
    return events;
  }

  /** Creates `r` (which must not exist); the record the store holds. */
  async function created(store: OwnershipStore, r: StoredSession): Promise<StoredSession> {
    const res = await store.create(r);
    if (!res.ok) throw new Error(`create(${r.id}) failed: ${res.reason}`);
    return res.record;
  }

  async function getRecord(store: OwnershipStore, id: string): Promise<StoredSession | null> {
    const r = await store.get(id);
    if (!r.ok) throw new Error(`get(${id}) unavailable: ${r.message}`);
    return r.record;
  }

  async function list(store: OwnershipStore, owner: string): Promise<StoredSession[]> {
    const r = await store.listByOwner(owner);
    if (!r.ok) throw new Error(`listByOwner(${owner}) unavailable: ${r.message}`);
    return r.records;
  }

  describe(`OwnershipStore contract: ${name}`, () => {
    it('create then get round-trips every field; a missing id reads as null', async () => {
      await withStore(async ({ store }) => {
        const r = rec(sid(1), 1n, { transport: null, state: 'FROZEN', expiresAt: 1_234_567 });
        const res = await store.create(r);
        expect(res).toEqual({ ok: true, record: r });
        expect(await store.get(sid(1))).toEqual({ ok: true, record: res.ok ? res.record : null });
        expect(await store.get(sid(2))).toEqual({ ok: true, record: null });
      });
    });

    it('the store keeps its own copy: mutating the argument or a returned record changes nothing', async () => {
      await withStore(async ({ store }) => {
        const r = { ...rec(sid(1), 1n) } as { -readonly [K in keyof StoredSession]: StoredSession[K] };
        const res = await store.create(r);
        r.owner = 'mallory';
        r.version = 99n;
        if (res.ok) {
          try {
            (res.record as { owner: string }).owner = 'mallory';
          } catch {
            // a frozen record refuses the write — also fine
          }
        }
        const got = await store.get(sid(1));
        if (got.ok && got.record !== null) {
          try {
            (got.record as { version: bigint }).version = 42n;
          } catch {
            // frozen
          }
        }
        expect(await getRecord(store, sid(1))).toEqual(rec(sid(1), 1n));
        expect(await list(store, 'node-a')).toEqual([rec(sid(1), 1n)]);
        expect(await list(store, 'mallory')).toEqual([]);
      });
    });

    it('create of an existing id is a conflict carrying the current record, and stores nothing', async () => {
      await withStore(async ({ store }) => {
        const first = await created(store, rec(sid(1), 1n, { owner: 'node-a' }));
        const second = rec(sid(1), 1n, { owner: 'node-b' });
        expect(await store.create(second)).toEqual({ ok: false, reason: 'conflict', current: first });
        expect(await getRecord(store, sid(1))).toEqual(first);
        expect(await list(store, 'node-b')).toEqual([]);
      });
    });

    it('update with the expected version succeeds and the version goes up by one', async () => {
      await withStore(async ({ store }) => {
        const v1 = await created(store, rec(sid(1), 1n));
        const v2 = bump(v1, { state: 'FROZEN' });
        expect(await store.update(v2, 1n)).toEqual({ ok: true, record: v2 });
        const v3 = bump(v2, { owner: 'node-b' });
        expect(await store.update(v3, 2n)).toEqual({ ok: true, record: v3 });
        expect(await getRecord(store, sid(1))).toEqual(v3);
        expect(v3.version).toBe(3n);
      });
    });

    it('update with a stale expected version is a conflict and changes nothing', async () => {
      await withStore(async ({ store }) => {
        const v1 = await created(store, rec(sid(1), 1n));
        const v2 = bump(v1);
        await store.update(v2, 1n);
        // A second writer that still believes version 1.
        const stale = bump(v1, { owner: 'node-z' });
        expect(await store.update(stale, 1n)).toEqual({ ok: false, reason: 'conflict', current: v2 });
        // One that is ahead of the store.
        const ahead = rec(sid(1), 4n, { owner: 'node-z', incarnation: v1.incarnation });
        expect(await store.update(ahead, 3n)).toEqual({ ok: false, reason: 'conflict', current: v2 });
        expect(await getRecord(store, sid(1))).toEqual(v2);
        expect(await list(store, 'node-z')).toEqual([]);
      });
    });

    it('update of a missing record is a conflict with current null, and creates nothing', async () => {
      await withStore(async ({ store }) => {
        expect(await store.update(rec(sid(7), 2n), 1n)).toEqual({ ok: false, reason: 'conflict', current: null });
        expect(await getRecord(store, sid(7))).toBeNull();
      });
    });

    it('racing updates on the same expected version: exactly one wins, the others conflict with the winner', async () => {
      await withStore(async ({ store }) => {
        const v1 = await created(store, rec(sid(1), 1n));
        const N = 8;
        const attempts = Array.from({ length: N }, (_, i) => bump(v1, { owner: `node-${i}`, director: `dir-${i}` }));
        const results = await Promise.all(attempts.map((r) => store.update(r, 1n)));
        const winners = results.flatMap((r, i) => (r.ok ? [i] : []));
        expect(winners).toHaveLength(1);
        const winner = attempts[winners[0] as number] as StoredSession;
        for (const r of results) {
          if (r.ok) expect(r.record).toEqual(winner);
          else expect(r).toEqual({ ok: false, reason: 'conflict', current: winner });
        }
        expect(await getRecord(store, sid(1))).toEqual(winner);
        for (let i = 0; i < N; i++) {
          expect(await list(store, `node-${i}`)).toEqual(attempts[i] === winner ? [winner] : []);
        }
      });
    });

    it('racing creates of one id: exactly one wins', async () => {
      await withStore(async ({ store }) => {
        const attempts = Array.from({ length: 8 }, (_, i) => rec(sid(3), 1n, { owner: `node-${i}` }));
        const results = await Promise.all(attempts.map((r) => store.create(r)));
        const oks = results.filter((r) => r.ok);
        expect(oks).toHaveLength(1);
        const stored = await getRecord(store, sid(3));
        expect(oks[0]).toEqual({ ok: true, record: stored });
        for (const r of results) if (!r.ok) expect(r).toEqual({ ok: false, reason: 'conflict', current: stored });
      });
    });

    it('delete needs the stored version; it returns the deleted record, and the id may be created again', async () => {
      await withStore(async ({ store }) => {
        const v1 = await created(store, rec(sid(1), 1n, { incarnation: 5 }));
        const v2 = bump(v1, { state: 'TERMINATED', transport: null });
        await store.update(v2, 1n);
        const life = v1.incarnation;
        expect(await store.delete(sid(1), 1n, life)).toEqual({ ok: false, reason: 'conflict', current: v2 });
        expect(await store.delete(sid(1), 3n, life)).toEqual({ ok: false, reason: 'conflict', current: v2 });
        expect(await store.delete(sid(1), 2n, life + 1)).toEqual({ ok: false, reason: 'conflict', current: v2 }); // another life
        expect(await getRecord(store, sid(1))).toEqual(v2);
        expect(await store.delete(sid(1), 2n, life)).toEqual({ ok: true, record: v2 });
        expect(await getRecord(store, sid(1))).toBeNull();
        expect(await list(store, 'node-a')).toEqual([]);
        expect(await store.delete(sid(1), 2n, life)).toEqual({ ok: false, reason: 'conflict', current: null });
        expect(await store.delete(sid(9), 1n, 0)).toEqual({ ok: false, reason: 'conflict', current: null });
        const again = rec(sid(1), 1n, { owner: 'node-b', incarnation: life + 1 });
        expect(await store.create(again)).toEqual({ ok: true, record: again });
      });
    });

    it('a write meant for an ended life of an id never lands on the id admitted anew (at version 1 again)', async () => {
      await withStore(async ({ store }) => {
        const old = await created(store, rec(sid(1), 1n, { owner: 'node-a', incarnation: 11 }));
        expect((await store.delete(sid(1), 1n, old.incarnation)).ok).toBe(true);
        const now = await created(store, rec(sid(1), 1n, { owner: 'node-b', director: 'dir-2', incarnation: 12 }));
        // Late writes of a director that still holds the old session: same id, same version, old life.
        expect(await store.update(bump(old, { owner: 'node-c' }), 1n)).toEqual({ ok: false, reason: 'conflict', current: now });
        expect(await store.updateMany([{ record: bump(old, { owner: 'node-c' }), expectVersion: 1n }])).toEqual([{ ok: false, reason: 'conflict', current: now }]);
        expect(await store.refresh(sid(1), 1n, now.expiresAt + 60_000, 'dir-1', old.incarnation)).toEqual({ ok: false, reason: 'conflict', current: now });
        expect(await store.delete(sid(1), 1n, old.incarnation)).toEqual({ ok: false, reason: 'conflict', current: now });
        expect(await getRecord(store, sid(1))).toEqual(now);
        // Its own life's writes go through.
        const next = bump(now, { state: 'FROZEN' });
        expect(await store.update(next, 1n)).toEqual({ ok: true, record: next });
      });
    });

    it('life 0 is a life not known (a record of a director from before lives were kept): any write may name it, and a write naming it lands on any life', async () => {
      await withStore(async ({ store }) => {
        const legacy = await created(store, rec(sid(1), 1n, { incarnation: 0 }));
        const next = bump(legacy, { owner: 'node-b', incarnation: 9 });
        expect(await store.update(next, 1n)).toEqual({ ok: true, record: next });
        const known = bump(next, { incarnation: 0, state: 'FROZEN' });
        expect(await store.update(known, 2n)).toEqual({ ok: true, record: known });
        expect((await store.delete(sid(1), 3n, 4)).ok).toBe(true);
      });
    });

    it('refresh moves the expiry later on the expected version only, keeps the version, and is a put event', async () => {
      await withStore(async ({ store }) => {
        const v1 = await created(store, rec(sid(1), 1n, { incarnation: 5 }));
        const life = v1.incarnation;
        const r = recorder(store);
        try {
          const later = { ...v1, expiresAt: v1.expiresAt + 30_000, director: 'dir-2' };
          expect(await store.refresh(sid(1), 1n, later.expiresAt, 'dir-2', life)).toEqual({ ok: true, record: later });
          expect(await getRecord(store, sid(1))).toEqual(later);
          // Not later: nothing written, ok with what is stored.
          expect(await store.refresh(sid(1), 1n, v1.expiresAt, 'dir-3', life)).toEqual({ ok: true, record: later });
          // The wrong version or life, or no record: a conflict carrying what is there.
          expect(await store.refresh(sid(1), 2n, later.expiresAt + 1, 'dir-3', life)).toEqual({ ok: false, reason: 'conflict', current: later });
          expect(await store.refresh(sid(1), 1n, later.expiresAt + 1, 'dir-3', life + 1)).toEqual({ ok: false, reason: 'conflict', current: later });
          expect(await store.refresh(sid(4), 1n, later.expiresAt + 1, 'dir-3', 0)).toEqual({ ok: false, reason: 'conflict', current: null });
          expect(await getRecord(store, sid(4))).toBeNull();
          // A transition after a refresh still needs version 1 and goes to 2.
          const v2 = bump(later, { owner: 'node-b' });
          expect(await store.update(v2, 1n)).toEqual({ ok: true, record: v2 });
          await waitFor('the events', () => r.events.length >= 2, { timeoutMs: eventTimeoutMs, intervalMs: 5 });
          expect(r.events).toEqual([
            { kind: 'put', record: later, prev: v1 },
            { kind: 'put', record: v2, prev: later },
          ]);
          await expect(store.refresh(sid(1), 2n, Number.NaN, 'dir-3', life)).rejects.toThrow(TypeError);
        } finally {
          r.stop();
        }
      });
    });

    it('listByOwner follows owner changes and returns records in id order', async () => {
      await withStore(async ({ store }) => {
        const a: StoredSession[] = [];
        for (const n of [5, 1, 9, 3]) a.push(await created(store, rec(sid(n), 1n, { owner: 'node-a' })));
        const b = await created(store, rec(sid(7), 1n, { owner: 'node-b' }));
        expect(await list(store, 'node-a')).toEqual([...a].sort(byId));
        expect(await list(store, 'node-b')).toEqual([b]);
        expect(await list(store, 'node-c')).toEqual([]);

        // sid(9) moves a → b.
        const moved = bump(a[2] as StoredSession, { owner: 'node-b' });
        expect((await store.update(moved, 1n)).ok).toBe(true);
        expect((await list(store, 'node-a')).map((r) => r.id)).toEqual([sid(1), sid(3), sid(5)]);
        expect(await list(store, 'node-b')).toEqual([b, moved].sort(byId));

        // An update that keeps the owner keeps it listed once, with the new record.
        const frozen = bump(a[1] as StoredSession, { state: 'FROZEN' });
        expect((await store.update(frozen, 1n)).ok).toBe(true);
        const listA = await list(store, 'node-a');
        expect(listA.map((r) => r.id)).toEqual([sid(1), sid(3), sid(5)]);
        expect(listA[0]).toEqual(frozen);

        // A failed move leaves both lists alone.
        expect((await store.update(bump(bump(a[0] as StoredSession), { owner: 'node-b' }), 2n)).ok).toBe(false);
        expect((await list(store, 'node-a')).map((r) => r.id)).toEqual([sid(1), sid(3), sid(5)]);

        // Deletes leave the index.
        expect((await store.delete(sid(7), 1n, b.incarnation)).ok).toBe(true);
        expect(await list(store, 'node-b')).toEqual([moved]);
        expect((await store.delete(sid(9), 2n, moved.incarnation)).ok).toBe(true);
        expect(await list(store, 'node-b')).toEqual([]);
      });
    });

    it('updateMany: a result per write, in order; a failed compare is a conflict and the others apply, each a put event', async () => {
      await withStore(async ({ store }) => {
        const a1 = await created(store, rec(sid(1), 1n));
        const b1 = await created(store, rec(sid(2), 1n));
        const c1 = await created(store, rec(sid(3), 1n));
        const b2 = bump(b1);
        expect((await store.update(b2, 1n)).ok).toBe(true);
        const { events, stop } = recorder(store);
        const a2 = bump(a1, { state: 'FROZEN' });
        const c2 = bump(c1, { owner: 'node-b' });
        const res = await store.updateMany([
          { record: a2, expectVersion: 1n },
          { record: bump(b1, { owner: 'node-z' }), expectVersion: 1n }, // stale: b is at 2
          { record: rec(sid(9), 2n), expectVersion: 1n }, // missing
          { record: c2, expectVersion: 1n },
        ]);
        expect(res).toEqual([
          { ok: true, record: a2 },
          { ok: false, reason: 'conflict', current: b2 },
          { ok: false, reason: 'conflict', current: null },
          { ok: true, record: c2 },
        ]);
        expect(await getRecord(store, sid(1))).toEqual(a2);
        expect(await getRecord(store, sid(2))).toEqual(b2);
        expect(await getRecord(store, sid(9))).toBeNull();
        expect(await getRecord(store, sid(3))).toEqual(c2);
        expect(await list(store, 'node-z')).toEqual([]);
        expect(await store.updateMany([])).toEqual([]);
        const marker = await created(store, rec(sid(99), 1n, { owner: 'marker' }));
        await eventsUntil(events, 3);
        expect(events).toEqual([
          { kind: 'put', record: a2, prev: a1 },
          { kind: 'put', record: c2, prev: c1 },
          { kind: 'put', record: marker, prev: null },
        ]);
        stop();
      });
    });

    it('updateMany of 300 sessions (more than one etcd transaction) with stale ones among them', async () => {
      await withStore(async ({ store }) => {
        const N = 300;
        const v1: StoredSession[] = [];
        for (let i = 0; i < N; i++) v1.push(await created(store, rec(sid(i), 1n, { owner: 'node-a' })));
        // Sessions moved on behind the batch's back: one in each chunk of 128, and the very last one.
        const moved = new Set([5, 130, 200, 299]);
        for (const i of moved) expect((await store.update(bump(v1[i] as StoredSession, { owner: 'node-x' }), 1n)).ok).toBe(true);
        const writes = v1.map((r) => ({ record: bump(r, { owner: 'node-b', state: 'FROZEN' as const }), expectVersion: 1n }));
        const res = await store.updateMany(writes);
        res.forEach((r, i) => {
          if (moved.has(i)) expect(r).toEqual({ ok: false, reason: 'conflict', current: bump(v1[i] as StoredSession, { owner: 'node-x' }) });
          else expect(r).toEqual({ ok: true, record: writes[i]?.record });
        });
        expect((await list(store, 'node-b')).length).toBe(N - moved.size);
        expect((await list(store, 'node-x')).map((r) => r.id)).toEqual([...moved].map((i) => sid(i)).sort());
        expect(await list(store, 'node-a')).toEqual([]);
      });
    });

    it('updateMany racing single updates of the same sessions: each session has exactly one winner', async () => {
      await withStore(async ({ store }) => {
        const N = 20;
        const v1: StoredSession[] = [];
        for (let i = 0; i < N; i++) v1.push(await created(store, rec(sid(i), 1n)));
        const batch = v1.map((r) => ({ record: bump(r, { owner: 'node-batch' }), expectVersion: 1n }));
        const singles = v1.filter((_, i) => i % 2 === 0).map((r) => bump(r, { owner: 'node-single' }));
        const [many, ...one] = await Promise.all([store.updateMany(batch), ...singles.map((r) => store.update(r, 1n))]);
        for (let i = 0; i < N; i++) {
          const stored = await getRecord(store, sid(i));
          const b = (many as readonly { ok: boolean }[])[i];
          const s = i % 2 === 0 ? one[i / 2] : undefined;
          // Exactly one write of the session applied, and the store holds it.
          expect([b?.ok, s?.ok].filter((x) => x === true)).toHaveLength(1);
          expect(stored?.version).toBe(2n);
          expect(stored?.owner).toBe(b?.ok === true ? 'node-batch' : 'node-single');
          if (b?.ok !== true) expect(b).toEqual({ ok: false, reason: 'conflict', current: stored });
        }
      });
    });

    it('updateMany refuses, as a TypeError and before writing anything, a session written twice or a version that skips', async () => {
      await withStore(async ({ store }) => {
        const v1 = await created(store, rec(sid(1), 1n));
        const w1 = await created(store, rec(sid(2), 1n));
        await expect(store.updateMany([{ record: bump(w1), expectVersion: 1n }, { record: bump(v1), expectVersion: 1n }, { record: bump(v1, { owner: 'node-b' }), expectVersion: 1n }])).rejects.toThrow(TypeError);
        await expect(store.updateMany([{ record: bump(w1), expectVersion: 1n }, { record: rec(sid(1), 3n), expectVersion: 1n }])).rejects.toThrow(/expectVersion \+ 1/);
        expect(await getRecord(store, sid(1))).toEqual(v1);
        expect(await getRecord(store, sid(2))).toEqual(w1);
      });
    });

    it('watch sees put/delete events with prev, in commit order, and nothing for failed writes', async () => {
      await withStore(async ({ store }) => {
        const { events, stop } = recorder(store);
        const v1 = await created(store, rec(sid(1), 1n));
        const v2 = bump(v1, { state: 'FROZEN' });
        const v3 = bump(v2, { owner: 'node-b' });
        const life = v1.incarnation;
        expect((await store.create(rec(sid(1), 1n, { owner: 'node-x' }))).ok).toBe(false); // failed create
        expect((await store.update(v2, 1n)).ok).toBe(true);
        expect((await store.update(bump(v1, { owner: 'node-x' }), 1n)).ok).toBe(false); // stale update
        expect((await store.delete(sid(1), 1n, life)).ok).toBe(false); // stale delete
        expect((await store.update(rec(sid(5), 2n), 1n)).ok).toBe(false); // update of a missing record
        const other = await created(store, rec(sid(2), 1n, { owner: 'node-c' }));
        expect((await store.update(v3, 2n)).ok).toBe(true);
        expect((await store.delete(sid(1), 3n, life)).ok).toBe(true);
        expect((await store.delete(sid(1), 3n, life)).ok).toBe(false); // already gone
        const marker = await created(store, rec(sid(99), 1n, { owner: 'marker' }));
        const expected: StoreEvent[] = [
          { kind: 'put', record: v1, prev: null },
          { kind: 'put', record: v2, prev: v1 },
          { kind: 'put', record: other, prev: null },
          { kind: 'put', record: v3, prev: v2 },
          { kind: 'delete', id: sid(1), prev: v3 },
          { kind: 'put', record: marker, prev: null },
        ];
        await eventsUntil(events, expected.length);
        expect(events).toEqual(expected);
        stop();
      });
    });

    it('every subscriber sees the same events in the same order; unsubscribe stops them', async () => {
      await withStore(async ({ store }) => {
        const a = recorder(store);
        const b = recorder(store);
        const v1 = await created(store, rec(sid(1), 1n));
        await eventsUntil(a.events, 1);
        await eventsUntil(b.events, 1);
        a.stop();
        a.stop(); // idempotent
        const v2 = bump(v1);
        await store.update(v2, 1n);
        await store.delete(sid(1), 2n, v1.incarnation);
        const marker = await created(store, rec(sid(99), 1n, { owner: 'marker' }));
        await eventsUntil(b.events, 4);
        expect(b.events).toEqual([
          { kind: 'put', record: v1, prev: null },
          { kind: 'put', record: v2, prev: v1 },
          { kind: 'delete', id: sid(1), prev: v2 },
          { kind: 'put', record: marker, prev: null },
        ]);
        expect(a.events).toEqual([{ kind: 'put', record: v1, prev: null }]);
        b.stop();
      });
    });

    it('versions beyond 2^53 (up to 2^64-1) round-trip exactly', async () => {
      const seedBig = rec(sid(1), BIG + 1n, { owner: 'node-big' });
      const seedTop = rec(sid(2), U64_MAX - 1n, { owner: 'node-big' });
      await withStore(
        async ({ store }) => {
          const { events, stop } = recorder(store);
          // Seeded behind the interface: each with the incarnation its store gives such a record.
          const big = (await getRecord(store, sid(1))) as StoredSession;
          const top = (await getRecord(store, sid(2))) as StoredSession;
          expect(big).toEqual(seedBig);
          expect(top).toEqual(seedTop);
          expect(await list(store, 'node-big')).toEqual([big, top]);
          // 2^53 and 2^53+1 are the same JavaScript number: a store that compares numbers would accept this.
          expect(await store.update(rec(sid(1), BIG + 1n, { owner: 'node-x', incarnation: big.incarnation }), BIG)).toEqual({ ok: false, reason: 'conflict', current: big });
          const next = bump(big, { owner: 'node-x' });
          expect(await store.update(next, BIG + 1n)).toEqual({ ok: true, record: next });
          expect((await getRecord(store, sid(1)))?.version).toBe(BIG + 2n);
          expect(await store.delete(sid(1), BIG + 3n, big.incarnation)).toEqual({ ok: false, reason: 'conflict', current: next });
          const last = bump(top);
          expect(await store.update(last, U64_MAX - 1n)).toEqual({ ok: true, record: last });
          expect((await getRecord(store, sid(2)))?.version).toBe(U64_MAX);
          expect(await store.delete(sid(2), U64_MAX, top.incarnation)).toEqual({ ok: true, record: last });
          await eventsUntil(events, 3);
          expect(events).toEqual([
            { kind: 'put', record: next, prev: big },
            { kind: 'put', record: last, prev: top },
            { kind: 'delete', id: sid(2), prev: last },
          ]);
          stop();
        },
        [seedBig, seedTop],
      );
    });

    it('while unavailable every call answers unavailable and nothing changes', async (ctx) => {
      let supported = true;
      await withStore(async ({ store, makeUnavailable }) => {
        if (makeUnavailable === undefined) {
          supported = false;
          return;
        }
        const v1 = await created(store, rec(sid(1), 1n, { owner: 'node-a' }));
        const v2 = bump(v1, { state: 'FROZEN' });
        expect((await store.update(v2, 1n)).ok).toBe(true);
        const { events, stop } = recorder(store);

        await makeUnavailable(true);
        const answers = [
          await store.get(sid(1)),
          await store.listByOwner('node-a'),
          await store.create(rec(sid(2), 1n)),
          await store.create(rec(sid(1), 1n)),
          await store.update(bump(v2, { owner: 'node-b' }), 2n),
          await store.update(bump(v1), 1n),
          await store.delete(sid(1), 2n, v1.incarnation),
          await store.delete(sid(3), 1n, 0),
          ...(await store.updateMany([
            { record: bump(v2, { owner: 'node-b' }), expectVersion: 2n },
            { record: rec(sid(4), 2n), expectVersion: 1n },
          ])),
        ];
        for (const a of answers) {
          expect(a).toMatchObject({ ok: false, reason: 'unavailable' });
          expect(typeof (a as { message: unknown }).message).toBe('string');
        }
        await makeUnavailable(false);

        expect(await getRecord(store, sid(1))).toEqual(v2);
        expect(await getRecord(store, sid(2))).toBeNull();
        expect(await list(store, 'node-a')).toEqual([v2]);
        expect(await list(store, 'node-b')).toEqual([]);
        const marker = await created(store, rec(sid(99), 1n, { owner: 'marker' }));
        await eventsUntil(events, 1);
        expect(events).toEqual([{ kind: 'put', record: marker, prev: null }]);
        stop();
      });
      if (!supported) ctx.skip();
    });

    it('matches a Map model over random create/update/delete with sometimes-stale versions', async () => {
      const STATES: readonly SessionState[] = ['ATTACHED', 'FROZEN', 'TERMINATED'];
      const KEYS = 4;
      const OWNERS = ['node-0', 'node-1', 'node-2'] as const;
      const fields = fc.record({
        owner: fc.constantFrom(...OWNERS),
        state: fc.constantFrom(...STATES),
        transport: fc.constantFrom(null, '192.0.2.1:1000', '[2001:db8::1]:443'),
        expiresAt: fc.integer({ min: 0, max: 2 ** 40 }),
      });
      // Mostly right, sometimes stale or ahead.
      const delta = fc.constantFrom(0n, 0n, 0n, -1n, 1n, -2n, 5n);
      // The life a write names: mostly the current one, sometimes an ended one (ABA) or one never given.
      const life = fc.constantFrom('now' as const, 'now' as const, 'now' as const, 'ended' as const, 'never' as const);
      const op = fc.oneof(
        fc.record({ t: fc.constant('create' as const), k: fc.nat(KEYS - 1), f: fields, i: fc.nat(3) }),
        fc.record({ t: fc.constant('update' as const), k: fc.nat(KEYS - 1), f: fields, d: delta, l: life }),
        fc.record({ t: fc.constant('delete' as const), k: fc.nat(KEYS - 1), d: delta, l: life }),
        fc.record({ t: fc.constant('get' as const), k: fc.nat(KEYS - 1) }),
        fc.record({ t: fc.constant('list' as const), owner: fc.constantFrom(...OWNERS) }),
        fc.record({
          t: fc.constant('updateMany' as const),
          w: fc.uniqueArray(fc.record({ k: fc.nat(KEYS - 1), f: fields, d: delta, l: life }), { selector: (x) => x.k, maxLength: KEYS }),
        }),
      );

      await fc.assert(
        fc.asyncProperty(fc.array(op, { maxLength: 40 }), async (ops) => {
          await withStore(async ({ store }) => {
            const model = new Map<string, StoredSession>();
            const expectedEvents: StoreEvent[] = [];
            /** Each id's last ended life. */
            const ended = new Map<string, number>();
            /** The life a write names: the current one, mostly; sometimes the id's ended one (a write meant for it), or one never given. */
            const lifeOf = (id: string, l: 'now' | 'ended' | 'never'): number =>
              l === 'ended' ? (ended.get(id) ?? (model.get(id)?.incarnation ?? 0) + 1_000_000) : l === 'never' ? 9_999_999 : (model.get(id)?.incarnation ?? 0);
            const { events, stop } = recorder(store);
            const expectOf = (cur: StoredSession | undefined, d: bigint): bigint => {
              const e = (cur?.version ?? 1n) + d;
              return e < 1n ? 1n : e;
            };
            for (const o of ops) {
              if (o.t === 'get') {
                expect(await store.get(sid(o.k))).toEqual({ ok: true, record: model.get(sid(o.k)) ?? null });
              } else if (o.t === 'list') {
                const want = [...model.values()].filter((r) => r.owner === o.owner).sort(byId);
                expect(await list(store, o.owner)).toEqual(want);
              } else if (o.t === 'create') {
                const id = sid(o.k);
                const r = rec(id, 1n, { ...o.f, director: 'dir-model', incarnation: o.i });
                const cur = model.get(id);
                const res = await store.create(r);
                if (cur === undefined) {
                  expect(res).toEqual({ ok: true, record: r });
                  model.set(id, r);
                  expectedEvents.push({ kind: 'put', record: r, prev: null });
                } else {
                  expect(res).toEqual({ ok: false, reason: 'conflict', current: cur });
                }
              } else if (o.t === 'updateMany') {
                // Each write as the `update` it stands for, in order, with its own result.
                const writes = o.w.map((x) => {
                  const id = sid(x.k);
                  const ev = expectOf(model.get(id), x.d);
                  return { record: rec(id, ev + 1n, { ...x.f, director: 'dir-model', incarnation: lifeOf(id, x.l) }), expectVersion: ev };
                });
                const res = await store.updateMany(writes);
                expect(res).toHaveLength(writes.length);
                writes.forEach((w, i) => {
                  const cur = model.get(w.record.id);
                  if (cur !== undefined && cur.version === w.expectVersion && sameLife(cur.incarnation, w.record.incarnation)) {
                    expect(res[i]).toEqual({ ok: true, record: w.record });
                    model.set(w.record.id, w.record);
                    expectedEvents.push({ kind: 'put', record: w.record, prev: cur });
                  } else {
                    expect(res[i]).toEqual({ ok: false, reason: 'conflict', current: cur ?? null });
                  }
                });
              } else if (o.t === 'update') {
                const id = sid(o.k);
                const cur = model.get(id);
                const ev = expectOf(cur, o.d);
                const r = rec(id, ev + 1n, { ...o.f, director: 'dir-model', incarnation: lifeOf(id, o.l) });
                const res = await store.update(r, ev);
                if (cur !== undefined && cur.version === ev && sameLife(cur.incarnation, r.incarnation)) {
                  expect(res).toEqual({ ok: true, record: r });
                  model.set(id, r);
                  expectedEvents.push({ kind: 'put', record: r, prev: cur });
                } else {
                  expect(res).toEqual({ ok: false, reason: 'conflict', current: cur ?? null });
                }
              } else {
                const id = sid(o.k);
                const cur = model.get(id);
                const ev = expectOf(cur, o.d);
                const life = lifeOf(id, o.l);
                const res = await store.delete(id, ev, life);
                if (cur !== undefined && cur.version === ev && sameLife(cur.incarnation, life)) {
                  expect(res).toEqual({ ok: true, record: cur });
                  model.delete(id);
                  ended.set(id, cur.incarnation);
                  expectedEvents.push({ kind: 'delete', id, prev: cur });
                } else {
                  expect(res).toEqual({ ok: false, reason: 'conflict', current: cur ?? null });
                }
              }
            }
            // The whole state, then the event log (a marker proves no extra event is still on its way).
            for (let k = 0; k < KEYS; k++) expect(await getRecord(store, sid(k))).toEqual(model.get(sid(k)) ?? null);
            for (const owner of OWNERS) {
              expect(await list(store, owner)).toEqual([...model.values()].filter((r) => r.owner === owner).sort(byId));
            }
            const marker = await created(store, rec(sid(999), 1n, { owner: 'marker' }));
            expectedEvents.push({ kind: 'put', record: marker, prev: null });
            await eventsUntil(events, expectedEvents.length);
            expect(events).toEqual(expectedEvents);
            stop();
          });
        }),
        { numRuns, seed: FC_SEED },
      );
    });
  });
}
