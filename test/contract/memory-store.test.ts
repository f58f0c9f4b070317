// The store contract over MemoryStore, plus what only the in-process store promises: synchronous
// watch delivery, TypeErrors for programming errors, listeners that throw, close and fault injection.
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/store/memory.js';
import type { StoreEvent, StoredSession } from '../../src/store/store.js';
import { rec, sid, storeContract } from './store-contract.js';

storeContract('memory', async (seed) => {
  const store = new MemoryStore(seed === undefined ? {} : { records: seed });
  return {
    store,
    cleanup: () => store.close(),
    makeUnavailable: async (on) => store.setUnavailable(on),
  };
});

describe('MemoryStore', () => {
  it('delivers watch events synchronously, before the write resolves', async () => {
    const store = new MemoryStore();
    const events: StoreEvent[] = [];
    store.watch((ev) => events.push(ev));
    const p = store.create(rec(sid(1), 1n));
    const v1 = rec(sid(1), 1n);
    expect(events).toEqual([{ kind: 'put', record: v1, prev: null }]);
    expect(await p).toEqual({ ok: true, record: v1 });
    const v2 = { ...v1, version: 2n };
    let seenBeforeResolve = false;
    await store.update(v2, 1n).then(() => {
      seenBeforeResolve = events.length === 2;
    });
    expect(seenBeforeResolve).toBe(true);
  });

  it('throws a TypeError for a version that breaks the rules, and changes nothing', async () => {
    const store = new MemoryStore();
    const events: StoreEvent[] = [];
    store.watch((ev) => events.push(ev));
    await expect(store.create(rec(sid(1), 2n))).rejects.toThrow(TypeError);
    await expect(store.create(rec(sid(1), 0n))).rejects.toThrow(TypeError);
    const res = await store.create(rec(sid(1), 1n));
    const v1 = res.ok ? res.record : rec(sid(1), 1n);
    await expect(store.update(rec(sid(1), 3n), 1n)).rejects.toThrow(/expectVersion \+ 1/);
    await expect(store.update(rec(sid(1), 1n), 1n)).rejects.toThrow(TypeError);
    await expect(store.update(rec(sid(1), 2n), 1 as unknown as bigint)).rejects.toThrow(TypeError);
    await expect(store.update(rec(sid(1), 2 as unknown as bigint), 1n)).rejects.toThrow(TypeError);
    await expect(store.delete(sid(1), 1 as unknown as bigint, v1.incarnation)).rejects.toThrow(TypeError);
    await expect(store.delete(sid(1), 1n, -1)).rejects.toThrow(/incarnation/);
    await expect(store.delete(sid(1), 1n, undefined as unknown as number)).rejects.toThrow(/incarnation/);
    // The "+1" rule is checked before the version match: a wrong step on a missing record is still a TypeError.
    await expect(store.update(rec(sid(2), 5n), 1n)).rejects.toThrow(TypeError);
    // Past u64 (the wire's limit) is a programming error too.
    const top = rec(sid(3), 2n ** 64n - 1n);
    const seeded = new MemoryStore({ records: [top] });
    await expect(seeded.update({ ...top, version: 2n ** 64n }, 2n ** 64n - 1n)).rejects.toThrow(/2\^64-1/);
    expect(await seeded.get(sid(3))).toEqual({ ok: true, record: top });
    expect(await store.get(sid(1))).toEqual({ ok: true, record: v1 });
    expect(events).toHaveLength(1);
  });

  it('keeps frozen records', async () => {
    const store = new MemoryStore();
    const res = await store.create(rec(sid(1), 1n));
    expect(res.ok && Object.isFrozen(res.record)).toBe(true);
    const got = await store.get(sid(1));
    expect(got.ok && got.record !== null && Object.isFrozen(got.record)).toBe(true);
    expect(() => {
      if (got.ok && got.record !== null) (got.record as { owner: string }).owner = 'x';
    }).toThrow(TypeError);
  });

  it('a listener that throws breaks neither the store nor the other listeners', async () => {
    const errors: unknown[] = [];
    const store = new MemoryStore({
      onListenerError: (err) => {
        errors.push(err);
      },
    });
    const seen: StoreEvent[] = [];
    store.watch(() => {
      throw new Error('boom');
    });
    store.watch((ev) => seen.push(ev));
    const c = await store.create(rec(sid(1), 1n));
    expect(c.ok).toBe(true);
    const v1 = c.ok ? c.record : rec(sid(1), 1n);
    const v2 = { ...v1, version: 2n };
    expect(await store.update(v2, 1n)).toEqual({ ok: true, record: v2 });
    expect(seen).toHaveLength(2);
    expect(errors).toHaveLength(2);
    expect((errors[0] as Error).message).toBe('boom');
    expect(await store.get(sid(1))).toEqual({ ok: true, record: v2 });

    // A throwing error hook is contained as well.
    const quiet = new MemoryStore({
      onListenerError: () => {
        throw new Error('hook');
      },
    });
    quiet.watch(() => {
      throw new Error('boom');
    });
    expect((await quiet.create(v1)).ok).toBe(true);
  });

  it('a write made from inside a listener is delivered after the current event (commit order)', async () => {
    const store = new MemoryStore();
    const v1 = rec(sid(1), 1n);
    const v2 = { ...v1, version: 2n, state: 'FROZEN' as const };
    const order: string[] = [];
    store.watch((ev) => {
      order.push(`a:${ev.kind === 'put' ? ev.record.version : 'del'}`);
      if (ev.kind === 'put' && ev.record.version === 1n) void store.update(v2, 1n);
    });
    store.watch((ev) => order.push(`b:${ev.kind === 'put' ? ev.record.version : 'del'}`));
    await store.create(v1);
    expect(order).toEqual(['a:1', 'b:1', 'a:2', 'b:2']);
    expect(await store.get(sid(1))).toEqual({ ok: true, record: v2 });
  });

  it('a listener unsubscribed by an earlier listener gets nothing more', async () => {
    const store = new MemoryStore();
    const seen: StoreEvent[] = [];
    let stopB = (): void => {};
    store.watch(() => stopB());
    stopB = store.watch((ev) => seen.push(ev));
    await store.create(rec(sid(1), 1n));
    expect(seen).toEqual([]);
  });

  it('close makes every later call unavailable and ends watches', async () => {
    const store = new MemoryStore();
    const seen: StoreEvent[] = [];
    store.watch((ev) => seen.push(ev));
    await store.create(rec(sid(1), 1n));
    await store.close();
    await store.close(); // idempotent
    const closed = { ok: false, reason: 'unavailable', message: 'store closed' };
    expect(await store.get(sid(1))).toEqual(closed);
    expect(await store.listByOwner('node-a')).toEqual(closed);
    expect(await store.create(rec(sid(2), 1n))).toEqual(closed);
    expect(await store.update(rec(sid(1), 2n), 1n)).toEqual(closed);
    expect(await store.delete(sid(1), 1n, 0)).toEqual(closed);
    store.setUnavailable(false);
    expect(await store.get(sid(1))).toEqual(closed);
    store.watch((ev) => seen.push(ev));
    expect(seen).toHaveLength(1);
  });

  it('fault injection: failWith starts unavailable with that message; setUnavailable toggles it', async () => {
    const store = new MemoryStore({ failWith: 'etcd is down' });
    expect(await store.create(rec(sid(1), 1n))).toEqual({ ok: false, reason: 'unavailable', message: 'etcd is down' });
    store.setUnavailable(false);
    expect((await store.create(rec(sid(1), 1n))).ok).toBe(true);
    store.setUnavailable(true, 'partition');
    expect(await store.get(sid(1))).toEqual({ ok: false, reason: 'unavailable', message: 'partition' });
    store.setUnavailable(false);
    expect(store.size).toBe(1);
  });

  it('rejects duplicate ids in its initial contents', () => {
    const r: StoredSession = rec(sid(1), 3n);
    expect(() => new MemoryStore({ records: [r, r] })).toThrow(TypeError);
  });

  it('listByOwner returns exactly that owner\'s sessions in id order, at 10,000 sessions', async () => {
    const records = Array.from({ length: 10_000 }, (_, i) => rec(sid(i + 10), 1n, { owner: 'big' }));
    const store = new MemoryStore({ records: [...records, rec(sid(1), 1n, { owner: 'small' })] });
    const small = await store.listByOwner('small');
    expect(small.ok && small.records.map((r) => r.id)).toEqual([sid(1)]);
    const big = await store.listByOwner('big');
    expect(big.ok && big.records.length).toBe(10_000);
    expect(big.ok && big.records.every((r, i, a) => i === 0 || (a[i - 1] as StoredSession).id < r.id)).toBe(true);
  });
});
