// The store contract over EtcdStore on a real three-member etcd cluster (loopback, started here),
// plus what only a consensus store can show: losing quorum (every call answers `unavailable` within its
// deadline and nothing changes), a killed leader (writes work again after the election), and how a
// write whose outcome is unknown is resolved.
import { randomBytes } from 'node:crypto';
import { createServer, connect as connectTcp, type AddressInfo, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokenCircuitError } from 'cockatiel';
import { Etcd3, KVClient } from 'etcd3';
import { EtcdStore, MAX_TXN_OPS, RANGE_PAGE, decodeRecord, encodeRecord, resolveUnknownWrite, sharedEvent } from '../../src/store/etcd.js';
import type { CasResult, SharedEvent, StoreEvent, StoredSession } from '../../src/store/store.js';
import { startEtcdCluster, type EtcdCluster, type EtcdMember } from '../helpers/etcd.js';
import { waitFor } from '../helpers/wait.js';
import { startPauseProxy } from '../helpers/pause-proxy.js';
import { rec, sid, storeContract } from './store-contract.js';

const CALL_TIMEOUT_MS = 1000;

let cluster: EtcdCluster;
let raw: Etcd3;

beforeAll(async () => {
  cluster = await startEtcdCluster({ members: 3 });
  raw = new Etcd3({ hosts: cluster.endpoints });
});

afterAll(async () => {
  raw?.close();
  await cluster?.stop();
});

function freshPrefix(): string {
  return `/anchor-test/${randomBytes(6).toString('hex')}/`;
}

async function connect(prefix: string, endpoints = cluster.endpoints): Promise<EtcdStore> {
  return EtcdStore.connect({ endpoints, prefix, callTimeoutMs: CALL_TIMEOUT_MS });
}

/** Two stores (two directors) on a fresh prefix, closed after `body`. */
async function withTwoStores(body: (a: EtcdStore, b: EtcdStore) => Promise<void>): Promise<void> {
  const prefix = freshPrefix();
  const a = await connect(prefix);
  const b = await connect(prefix);
  try {
    await body(a, b);
  } finally {
    await a.close();
    await b.close();
  }
}

/** Until `store`'s feed holds a state of `node`. */
async function nodeStateSeen(store: EtcdStore, node: string): Promise<void> {
  await waitFor(`the state of ${node} in the feed`, () => {
    let seen = false;
    store.watchShared((ev) => (seen ||= ev.kind === 'nodes' && ev.id === node))();
    return seen || undefined;
  }, { timeoutMs: 5000, intervalMs: 10 });
}

/** Status of one member through the HTTP gateway: its leader id ('0' = none known). */
async function leaderSeenBy(m: EtcdMember): Promise<string> {
  const res = await fetch(`${m.clientUrl}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(500) });
  const body = (await res.json()) as { leader?: string };
  return String(body.leader ?? '0');
}

/** Stops two members and waits until the third knows it has no leader (quorum lost). */
async function loseQuorum(): Promise<EtcdMember[]> {
  const [a, b, c] = cluster.members as [EtcdMember, EtcdMember, EtcdMember];
  await Promise.all([a.stop(), b.stop()]);
  await waitFor('the last member to see no leader', async () => (await leaderSeenBy(c)) === '0', { timeoutMs: 10_000, intervalMs: 25 });
  return [a, b];
}

async function restoreQuorum(stopped: EtcdMember[]): Promise<void> {
  for (const m of stopped) await m.restart();
  await cluster.waitHealthy(15_000);
}

storeContract(
  'etcd',
  async (seed?: readonly StoredSession[]) => {
    const prefix = freshPrefix();
    for (const r of seed ?? []) await raw.put(`${prefix}sessions/${r.id}`).value(encodeRecord(r));
    const store = await connect(prefix);
    let stopped: EtcdMember[] = [];
    return {
      store,
      cleanup: async () => {
        await store.close();
        await raw.delete().prefix(prefix);
      },
      makeUnavailable: async (on: boolean) => {
        if (on) {
          stopped = await loseQuorum();
        } else {
          await restoreQuorum(stopped);
          stopped = [];
          // The client reconnects on its own; wait until this store answers again.
          await waitFor('the store to answer again', async () => (await store.get(sid(0))).ok, { timeoutMs: 10_000, intervalMs: 50 });
        }
      },
    };
  },
  { numRuns: 25, eventTimeoutMs: 10_000 },
);

describe('EtcdStore on a three-member cluster', () => {
  it('losing quorum: every call answers unavailable within its deadline; nothing changes but writes already in flight', async () => {
    const prefix = freshPrefix();
    const store = await connect(prefix);
    try {
      const v1 = rec(sid(1), 1n);
      expect((await store.create(v1)).ok).toBe(true);
      const events: StoreEvent[] = [];
      store.watch((ev) => events.push(ev));

      // Stop two members and ask at once, before the survivor has noticed (the slowest case). A write
      // sent now may already sit in the survivor's log and commit once quorum is back: that is the
      // "outcome unknown" case, answered `unavailable` (the caller fails closed) and never a lie.
      const [a, b] = cluster.members as [EtcdMember, EtcdMember];
      await Promise.all([a.stop(), b.stop()]);
      const inFlightCreate = rec(sid(2), 1n);
      const inFlightUpdate = { ...v1, version: 2n, owner: 'node-b' };
      const early: [string, () => Promise<{ ok: boolean }>][] = [
        ['create', () => store.create(inFlightCreate)],
        ['update', () => store.update(inFlightUpdate, 1n)],
        ['get', () => store.get(sid(1))],
        ['delete', () => store.delete(sid(1), 1n, 0)],
        ['list', () => store.listByOwner('node-a')],
      ];
      const firstMs: Record<string, number> = {};
      for (const [name, call] of early) {
        const t0 = performance.now();
        const r = await call();
        const ms = performance.now() - t0;
        firstMs[name] = Math.round(ms);
        expect(r, name).toMatchObject({ ok: false, reason: 'unavailable' });
        // A write gets its deadline plus a re-read with its own: never more than two deadlines.
        expect(ms, name).toBeLessThan(2 * CALL_TIMEOUT_MS + 500);
      }
      // Once the survivor knows it has no leader, `hasleader` makes every call fail fast, before
      // anything is proposed: these can never apply.
      await waitFor('no leader', async () => (await leaderSeenBy(cluster.members[2] as EtcdMember)) === '0', { timeoutMs: 10_000, intervalMs: 25 });
      const late: [string, () => Promise<{ ok: boolean }>][] = [
        ['create', () => store.create(rec(sid(3), 1n))],
        ['update', () => store.update({ ...v1, version: 2n, owner: 'node-z' }, 1n)],
        ['updateMany', async () => (await store.updateMany([{ record: { ...v1, version: 2n, owner: 'node-z' }, expectVersion: 1n }]))[0] as { ok: boolean }],
        ['get', () => store.get(sid(1))],
        ['delete', () => store.delete(sid(1), 1n, 0)],
        ['list', () => store.listByOwner('node-a')],
      ];
      for (const [name, call] of late) {
        const t0 = performance.now();
        expect(await call(), name).toMatchObject({ ok: false, reason: 'unavailable' });
        expect(performance.now() - t0, name).toBeLessThan(1500);
      }
      console.log(`quorum lost: first answers after (ms) ${JSON.stringify(firstMs)}`);
      // Asked of the survivor alone (no dead member to fail fast for it), a read still answers at once:
      // `hasleader` makes etcd refuse instead of waiting for a quorum that is not there.
      const solo = await connect(prefix, [(cluster.members[2] as EtcdMember).clientUrl]);
      try {
        const t0 = performance.now();
        const r = await solo.get(sid(1));
        expect(r).toMatchObject({ ok: false, reason: 'unavailable', message: expect.stringMatching(/no leader/) });
        expect(performance.now() - t0).toBeLessThan(CALL_TIMEOUT_MS / 2);
      } finally {
        await solo.close();
      }

      await restoreQuorum([a, b]);
      await waitFor('the store to answer again', async () => (await store.get(sid(1))).ok, { timeoutMs: 10_000, intervalMs: 50 });
      const one = await store.get(sid(1));
      const two = await store.get(sid(2));
      // Either untouched or exactly the in-flight write; never the late ones.
      expect([v1, inFlightUpdate]).toContainEqual(one.ok && one.record);
      expect([null, inFlightCreate]).toContainEqual(two.ok && two.record);
      expect(await store.get(sid(3))).toEqual({ ok: true, record: null });
      const marker = rec(sid(99), 1n, { owner: 'marker' });
      expect((await store.create(marker)).ok).toBe(true);
      // The watch reports exactly what applied, then the marker.
      const expected: StoreEvent[] = [];
      if (two.ok && two.record !== null) expected.push({ kind: 'put', record: inFlightCreate, prev: null });
      if (one.ok && one.record?.version === 2n) expected.push({ kind: 'put', record: inFlightUpdate, prev: v1 });
      await waitFor('marker event', () => events.length >= expected.length + 1, { timeoutMs: 10_000, intervalMs: 10 });
      expect(events.at(-1)).toEqual({ kind: 'put', record: marker, prev: null });
      expect(events.slice(0, -1)).toHaveLength(expected.length);
      for (const e of expected) expect(events).toContainEqual(e);
    } finally {
      await store.close();
    }
  });

  it('a killed leader: writes succeed again after the election, and the watch misses nothing', async () => {
    const store = await connect(freshPrefix());
    try {
      const events: unknown[] = [];
      store.watch((ev) => events.push(ev));
      const name = await cluster.leader();
      const leader = cluster.members.find((m) => m.name === name) as EtcdMember;
      const t0 = performance.now();
      await leader.kill();
      let n = 0;
      const created: StoredSession[] = [];
      await waitFor(
        'a write to succeed after the election',
        async () => {
          const r = rec(sid(100 + n++), 1n);
          const res = await store.create(r);
          if (res.ok) created.push(r);
          return res.ok && created.length >= 3;
        },
        { timeoutMs: 15_000, intervalMs: 10 },
      );
      console.log(`leader ${name} killed: writes resumed after ${Math.round(performance.now() - t0)} ms`);
      await leader.restart();
      await cluster.waitHealthy(15_000);
      // Every successful write is seen exactly once by the watch, in order.
      await waitFor('events for every created record', () => created.every((r) => events.some((e) => (e as { record?: StoredSession }).record?.id === r.id)), { timeoutMs: 10_000, intervalMs: 10 });
      // (A create that answered `unavailable` during the election may still have applied: only ours are compared.)
      const ids = new Set(created.map((r) => r.id));
      const puts = events.filter((e) => (e as { kind: string }).kind === 'put').map((e) => (e as { record: StoredSession }).record);
      expect(puts.filter((r) => ids.has(r.id))).toEqual(created);
      for (const r of created) expect(await store.get(r.id)).toEqual({ ok: true, record: r });
    } finally {
      await store.close();
    }
  });

  it('a store pointed at nothing answers unavailable within the deadline; close makes every call unavailable', async () => {
    const store = await connect(freshPrefix(), ['http://127.0.0.1:1']);
    const t0 = performance.now();
    expect(await store.create(rec(sid(1), 1n))).toMatchObject({ ok: false, reason: 'unavailable' });
    expect(await store.get(sid(1))).toMatchObject({ ok: false, reason: 'unavailable' });
    expect(performance.now() - t0).toBeLessThan(4 * CALL_TIMEOUT_MS + 500);
    await store.close();
    const live = await connect(freshPrefix());
    await live.close();
    await live.close(); // idempotent
    const closed = { ok: false, reason: 'unavailable', message: 'store closed' };
    expect(await live.get(sid(1))).toEqual(closed);
    expect(await live.listByOwner('node-a')).toEqual(closed);
    expect(await live.create(rec(sid(1), 1n))).toEqual(closed);
    expect(await live.update(rec(sid(1), 2n), 1n)).toEqual(closed);
    expect(await live.delete(sid(1), 1n, 0)).toEqual(closed);
  });

  it('a value Anchor did not write under its prefix fails closed (unavailable), never a guess', async () => {
    const prefix = freshPrefix();
    const store = await connect(prefix);
    try {
      await raw.put(`${prefix}sessions/${sid(1)}`).value('{"id":"x","version":1}');
      expect(await store.get(sid(1))).toMatchObject({ ok: false, reason: 'unavailable', message: expect.stringMatching(/not an Anchor session record/) });
      expect(await store.update(rec(sid(1), 2n), 1n)).toMatchObject({ ok: false, reason: 'unavailable' });
      expect(await store.create(rec(sid(1), 1n))).toMatchObject({ ok: false, reason: 'unavailable' });
      // A listing leaves it out (one bad key made every listing fail: no director could start).
      expect(await store.listByOwner('node-a')).toEqual({ ok: true, records: [] });
      // In a batch, only that session fails closed; the others are written.
      const other = rec(sid(2), 1n);
      expect((await store.create(other)).ok).toBe(true);
      const next = { ...other, version: 2n, owner: 'node-b' };
      const res = await store.updateMany([
        { record: rec(sid(1), 2n), expectVersion: 1n },
        { record: next, expectVersion: 1n },
      ]);
      expect(res[0]).toMatchObject({ ok: false, reason: 'unavailable', message: expect.stringMatching(/not an Anchor session record/) });
      expect(res[1]).toEqual({ ok: true, record: next });
      expect(await store.get(sid(2))).toEqual({ ok: true, record: next });
    } finally {
      await store.close();
    }
  });

  it('a write whose first attempt was lost and landed only after the re-read (which saw it not applied): the retry\'s failed compare is that attempt, so the write is applied', async () => {
    // The first transaction of each write is held back (its caller told of a timeout) and sent only once
    // the store re-read the key and found it unchanged; the store's second attempt then fails its compare
    // on the first one. Answered as a conflict with the key gone, a director's expiry was audited by nobody.
    const prefix = freshPrefix();
    const store = await connect(prefix);
    const txn = Object.getOwnPropertyDescriptor(KVClient.prototype, 'txn')!;
    try {
      const s1 = rec(sid(61), 1n);
      const s2 = rec(sid(62), 1n);
      expect((await store.create(s1)).ok).toBe(true);
      expect((await store.create(s2)).ok).toBe(true);
      let held: (() => Promise<unknown>) | null = null;
      let heldRuns = 0;
      Object.defineProperty(KVClient.prototype, 'txn', {
        ...txn,
        value(this: KVClient, req: unknown, opts: unknown): Promise<unknown> {
          const real = (): Promise<unknown> => (txn.value as (r: unknown, o: unknown) => Promise<unknown>).call(this, req, opts);
          if (held === null && heldRuns === 0) {
            held = real; // lost on the way: it lands when the next attempt is made
            return Promise.reject(new Error('deadline exceeded (test)'));
          }
          if (held !== null) {
            const first = held;
            held = null;
            heldRuns++;
            return first().then(real);
          }
          return real();
        },
      });
      expect(await store.delete(s1.id, 1n, 0)).toEqual({ ok: true, record: s1 });
      expect(heldRuns).toBe(1);
      expect(await store.get(s1.id)).toEqual({ ok: true, record: null });
      heldRuns = 0;
      const next = { ...s2, version: 2n, owner: 'node-b' };
      expect(await store.updateMany([{ record: next, expectVersion: 1n }])).toEqual([{ ok: true, record: next }]);
      expect(heldRuns).toBe(1);
      heldRuns = 0;
      expect(await store.update({ ...next, version: 3n }, 2n)).toEqual({ ok: true, record: { ...next, version: 3n } });
      expect(heldRuns).toBe(1);
      // Another write that moved the key meanwhile is still a conflict.
      heldRuns = 0;
      const theirs = { ...next, version: 4n, owner: 'node-c' };
      Object.defineProperty(KVClient.prototype, 'txn', {
        ...txn,
        value(this: KVClient, req: unknown, opts: unknown): Promise<unknown> {
          const real = (): Promise<unknown> => (txn.value as (r: unknown, o: unknown) => Promise<unknown>).call(this, req, opts);
          if (heldRuns === 0) {
            heldRuns++;
            return Promise.reject(new Error('deadline exceeded (test): never sent'));
          }
          if (heldRuns === 1) {
            heldRuns++;
            return store.update(theirs, 3n).then(real); // another director's write lands first
          }
          return real();
        },
      });
      expect(await store.update({ ...next, version: 4n, owner: 'node-a' }, 3n)).toEqual({ ok: false, reason: 'conflict', current: theirs });
      // Attempts the circuit breaker refused were never sent: a key found gone is another's delete (a
      // conflict), and a write that could not be sent at all is not `maybeApplied`.
      const s3 = rec(sid(63), 1n);
      expect((await store.create(s3)).ok).toBe(true);
      let refused = 0;
      Object.defineProperty(KVClient.prototype, 'txn', {
        ...txn,
        value(this: KVClient, req: unknown, opts: unknown): Promise<unknown> {
          const real = (): Promise<unknown> => (txn.value as (r: unknown, o: unknown) => Promise<unknown>).call(this, req, opts);
          if (refused++ === 0) return Promise.reject(new BrokenCircuitError());
          return raw.delete().key(`${prefix}sessions/${s3.id}`).then(real); // another director ends it first
        },
      });
      expect(await store.delete(s3.id, 1n, 0)).toEqual({ ok: false, reason: 'conflict', current: null });
      expect((await store.create(rec(sid(64), 1n))).ok).toBe(true);
      Object.defineProperty(KVClient.prototype, 'txn', { ...txn, value: () => Promise.reject(new BrokenCircuitError()) });
      const unsent = await store.update(rec(sid(64), 2n), 1n);
      expect(unsent).toMatchObject({ ok: false, reason: 'unavailable' });
      expect(unsent).not.toHaveProperty('maybeApplied');
    } finally {
      Object.defineProperty(KVClient.prototype, 'txn', txn);
      await store.close();
    }
  });

  it('throws a TypeError for a version that breaks the rules', async () => {
    const store = await connect(freshPrefix());
    try {
      await expect(store.create(rec(sid(1), 2n))).rejects.toThrow(TypeError);
      await expect(store.update(rec(sid(1), 3n), 1n)).rejects.toThrow(/expectVersion \+ 1/);
      await expect(store.delete(sid(1), 1 as unknown as bigint, 0)).rejects.toThrow(TypeError);
    } finally {
      await store.close();
    }
  });

});

/** A TCP relay to one etcd member that the test can cut (every connection dropped, new ones refused). */
async function cuttableProxy(target: string): Promise<{ url: string; cut(): void; restore(): void; close(): Promise<void> }> {
  const { port: tport } = new URL(target);
  const sockets = new Set<Socket>();
  let open = true;
  const server = createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = connectTcp(Number(tport), '127.0.0.1');
    sockets.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    restore() {
      open = true;
    },
    close: async () => {
      open = false;
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('EtcdStore watch feed', () => {
  it('two stores (two directors) share one view: a write on one is an event on the other; a stale CAS loses', async () => {
    const prefix = freshPrefix();
    const a = await connect(prefix);
    const b = await connect(prefix);
    try {
      const seen: StoreEvent[] = [];
      b.watch((ev) => seen.push(ev));
      const v1 = rec(sid(1), 1n, { director: 'dir-a' });
      expect((await a.create(v1)).ok).toBe(true);
      await waitFor('b to see a\'s create', () => seen.length >= 1, { timeoutMs: 5000, intervalMs: 5 });
      expect(seen).toEqual([{ kind: 'put', record: v1, prev: null }]);
      const byA = { ...v1, version: 2n, owner: 'node-b', director: 'dir-a' };
      const byB = { ...v1, version: 2n, owner: 'node-c', director: 'dir-b' };
      const [ra, rb] = await Promise.all([a.update(byA, 1n), b.update(byB, 1n)]);
      expect([ra.ok, rb.ok].filter(Boolean)).toHaveLength(1);
      const winner = ra.ok ? byA : byB;
      expect(ra.ok ? rb : ra).toEqual({ ok: false, reason: 'conflict', current: winner });
      await waitFor('b to see the winner', () => seen.length >= 2, { timeoutMs: 5000, intervalMs: 5 });
      expect(seen[1]).toEqual({ kind: 'put', record: winner, prev: v1 });
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('shared entries: replayed to a new watcher, changes from any director in order, leased ones gone with their director, sessions untouched', async () => {
    const prefix = freshPrefix();
    const a = await EtcdStore.connect({ endpoints: cluster.endpoints, prefix, callTimeoutMs: CALL_TIMEOUT_MS, leaseTtlS: 5 });
    const b = await connect(prefix);
    try {
      const first = await a.putShared('nodes', 'node-a', { state: 'draining', director: 'dir-a' });
      expect(first).toMatchObject({ ok: true, revision: expect.any(BigInt) });
      expect(await a.putShared('drains', 'dr-1', { id: 'dr-1', state: 'running' }, { withLease: true })).toMatchObject({ ok: true });
      // b lacks a lease: a leased write is refused, named.
      const refused = await b.putShared('drains', 'dr-2', { id: 'dr-2' }, { withLease: true });
      expect(refused).toMatchObject({ ok: false, reason: 'unavailable' });
      expect(refused.ok ? '' : refused.message).toMatch(/no lease/);
      const seenB: SharedEvent[] = [];
      await waitFor('b to list both entries', () => {
        seenB.length = 0;
        const stop = b.watchShared((ev) => seenB.push(ev));
        stop();
        return seenB.length === 2;
      }, { timeoutMs: 5000, intervalMs: 10 });
      expect(seenB).toEqual(
        expect.arrayContaining([
          { kind: 'nodes', id: 'node-a', value: { state: 'draining', director: 'dir-a' } },
          { kind: 'drains', id: 'dr-1', value: { id: 'dr-1', state: 'running' } },
        ]),
      );
      const live: SharedEvent[] = [];
      const revisions: bigint[] = [];
      const sessions: StoreEvent[] = [];
      b.watch((ev) => sessions.push(ev));
      b.watchShared((ev, revision) => {
        live.push(ev);
        revisions.push(revision);
      });
      live.length = 0; // only what follows
      revisions.length = 0;
      const undrain = await b.putShared('nodes', 'node-a', { state: 'active', director: 'dir-b' });
      expect(undrain).toMatchObject({ ok: true });
      await a.close(); // releases a's lease: its drain record goes with it
      await waitFor('b to see the undrain and the leased record deleted', () => live.length >= 2, { timeoutMs: 5000, intervalMs: 10 });
      expect(live).toEqual([
        { kind: 'nodes', id: 'node-a', value: { state: 'active', director: 'dir-b' } },
        { kind: 'drains', id: 'dr-1', value: null },
      ]);
      // Each event at its write's revision: the put's answer names the same one (SharedNodeStates relies on it).
      expect(revisions[0]).toBe(undrain.ok ? undrain.revision : -1n);
      expect(revisions[1]! > revisions[0]!).toBe(true);
      expect(first.ok && revisions[0]! > first.revision).toBe(true);
      expect(sessions).toEqual([]);
      expect(b.cachedSize).toBe(0);
      // A key that is not a shared entry under the prefix is ignored by both feeds.
      await raw.put(`${prefix}nodes/bad id with spaces`).value('{}');
      await raw.put(`${prefix}drains/dr-3`).value('not json');
      expect(await b.putShared('nodes', 'node-b', { state: 'draining', director: 'dir-b' })).toMatchObject({ ok: true });
      await waitFor('b to see its own write', () => live.length >= 3, { timeoutMs: 5000, intervalMs: 10 });
      expect(live.slice(2)).toEqual([{ kind: 'nodes', id: 'node-b', value: { state: 'draining', director: 'dir-b' } }]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a create is refused (staleNodeState) when the owner\'s node state was written after the revision the director picked it at: nothing lands on a node whose drain began meanwhile', async () => {
    await withTwoStores(async (a, b) => {
      const drained = await a.putShared('nodes', 'node-a', { state: 'draining', director: 'dir-a' });
      if (!drained.ok) throw new Error(drained.message);
      const r = drained.revision;
      // Picked from a view before the write: refused, and nothing written.
      const stale = await b.create(rec(sid(1), 1n, { owner: 'node-a', director: 'dir-b' }), { nodeStateAsOf: r - 1n });
      expect(stale).toMatchObject({ ok: false, reason: 'unavailable', staleNodeState: true });
      expect(stale.ok ? '' : (stale as { message: string }).message).toMatch(/node node-a's state was written after revision/);
      expect(await b.get(sid(1))).toEqual({ ok: true, record: null });
      // From a view that has it: admitted.
      expect(await b.create(rec(sid(1), 1n, { owner: 'node-a', director: 'dir-b' }), { nodeStateAsOf: r })).toMatchObject({ ok: true });
      // A node whose state was never written: no guard to fail.
      expect(await b.create(rec(sid(2), 1n, { owner: 'node-b', director: 'dir-b' }), { nodeStateAsOf: 1n })).toMatchObject({ ok: true });
      // A record there already: still a conflict, with the record (not staleNodeState).
      expect(await b.create(rec(sid(2), 1n, { owner: 'node-a', director: 'dir-b' }), { nodeStateAsOf: r - 1n })).toMatchObject({ ok: false, reason: 'conflict', current: { id: sid(2) } });
      // By default, as of what the store's own feed has delivered: once b has seen the write, admitted.
      await nodeStateSeen(b, 'node-a');
      expect(await b.create(rec(sid(3), 1n, { owner: 'node-a', director: 'dir-b' }))).toMatchObject({ ok: true });
      // And refused by default while its feed has not: a state written, then at once a create from the
      // other store (most of the time before its watch brings the write). Every refused one wrote nothing.
      let refused = 0;
      for (let i = 0; i < 20 && refused < 3; i++) {
        const w = await a.putShared('nodes', 'node-a', { state: i % 2 === 0 ? 'active' : 'draining', director: 'dir-a' });
        expect(w.ok).toBe(true);
        const r = await b.create(rec(sid(100 + i), 1n, { owner: 'node-a', director: 'dir-b' }));
        if (r.ok) continue;
        expect(r).toMatchObject({ reason: 'unavailable', staleNodeState: true });
        expect(await b.get(sid(100 + i))).toEqual({ ok: true, record: null });
        refused++;
      }
      expect(refused).toBeGreaterThan(0);
    });
  });

  it('a write that changes the owner is refused (staleNodeState) when the new owner\'s node state was written after the view it was picked from; writes that keep the owner are not guarded', async () => {
    await withTwoStores(async (a, b) => {
      for (const i of [1, 2, 3, 4]) expect(await b.create(rec(sid(i), 1n, { owner: 'node-b', director: 'dir-b' }))).toMatchObject({ ok: true });
      expect(await b.create(rec(sid(5), 1n, { owner: 'node-a', director: 'dir-b' }))).toMatchObject({ ok: true });
      const drained = await a.putShared('nodes', 'node-a', { state: 'draining', director: 'dir-a' });
      if (!drained.ok) throw new Error(drained.message);
      const r = drained.revision;
      const moveTo = (i: number, owner: string, from = 1n): StoredSession => rec(sid(i), from + 1n, { owner, director: 'dir-b', state: 'FROZEN' });
      // One update onto node-a from a view before its draining state: refused, nothing written.
      const stale = await b.update(moveTo(1, 'node-a'), 1n, { nodeStateAsOf: r - 1n });
      expect(stale).toMatchObject({ ok: false, reason: 'unavailable', staleNodeState: true });
      expect(stale.ok ? '' : (stale as { message: string }).message).toMatch(/node node-a's state was written after revision .*not moved there/);
      expect(await b.get(sid(1))).toMatchObject({ ok: true, record: { version: 1n, owner: 'node-b' } });
      // A write that keeps the owner (node-a's own session frozen) is not guarded.
      expect(await b.update(moveTo(5, 'node-a'), 1n, { nodeStateAsOf: r - 1n })).toMatchObject({ ok: true });
      // From a view that has the state: moved.
      expect(await b.update(moveTo(1, 'node-a'), 1n, { nodeStateAsOf: r })).toMatchObject({ ok: true });
      // Several in one call, each with its own answer: onto node-a (stale), onto node-c (no state ever
      // written: nothing to fail), a version conflict (a conflict still, not stale), node-a's own session.
      const many = await b.updateMany(
        [
          { record: moveTo(2, 'node-a'), expectVersion: 1n },
          { record: moveTo(3, 'node-c'), expectVersion: 1n },
          { record: moveTo(4, 'node-a', 7n), expectVersion: 7n },
          { record: rec(sid(5), 3n, { owner: 'node-a', director: 'dir-b' }), expectVersion: 2n },
        ],
        { nodeStateAsOf: r - 1n },
      );
      expect(many).toMatchObject([
        { ok: false, reason: 'unavailable', staleNodeState: true },
        { ok: true },
        { ok: false, reason: 'conflict', current: { id: sid(4), version: 1n } },
        { ok: true },
      ]);
      expect(await b.get(sid(2))).toMatchObject({ ok: true, record: { version: 1n, owner: 'node-b' } });
      expect(await b.get(sid(3))).toMatchObject({ ok: true, record: { version: 2n, owner: 'node-c' } });
      // By default, as of what the store's own feed has delivered: a state written, then at once a move
      // onto that node from the other store, refused while its watch has not brought the write. Every
      // refused move wrote nothing; the moves let through are in the store. Both calls are guarded as of
      // the view they were called with, not as of the feed after their read of the session.
      let refused = 0;
      let refusedUpdate = 0;
      for (let i = 0; i < 60 && (refused < 3 || refusedUpdate === 0); i++) {
        const id = sid(100 + i);
        expect(await b.create(rec(id, 1n, { owner: 'node-b', director: 'dir-b' }))).toMatchObject({ ok: true });
        const w = await a.putShared('nodes', 'node-a', { state: i % 2 === 0 ? 'active' : 'draining', director: 'dir-a' });
        expect(w.ok).toBe(true);
        const m = i % 2 === 0 ? await b.update(moveTo(100 + i, 'node-a'), 1n) : ((await b.updateMany([{ record: moveTo(100 + i, 'node-a'), expectVersion: 1n }]))[0] as CasResult);
        const now = await b.get(id);
        if (m.ok) {
          expect(now).toMatchObject({ ok: true, record: { version: 2n, owner: 'node-a' } });
          continue;
        }
        expect(m).toMatchObject({ reason: 'unavailable', staleNodeState: true });
        expect(now).toMatchObject({ ok: true, record: { version: 1n, owner: 'node-b' } });
        refused++;
        if (i % 2 === 0) refusedUpdate++;
      }
      expect(refused).toBeGreaterThan(0);
      expect(refusedUpdate).toBeGreaterThan(0);
      // Moves onto as many nodes as sessions: each transaction's compares (a session's key and its node's
      // state each) stay within etcd's --max-txn-ops, so all of them land.
      const wide = Array.from({ length: MAX_TXN_OPS + 10 }, (_, i) => 1000 + i);
      await Promise.all(wide.map((i) => b.create(rec(sid(i), 1n, { owner: 'node-b', director: 'dir-b' }))));
      const spread = await b.updateMany(wide.map((i) => ({ record: moveTo(i, `node-w${i}`), expectVersion: 1n })));
      expect(spread.filter((x) => !x.ok)).toEqual([]);
    });
  });

  it('guardNodeViews: a node the director holds in a state the store may not (its own write on its way) takes no session while the store\'s state of it is newer than the view, though the feed has it', async () => {
    await withTwoStores(async (a, b) => {
      for (const i of [1, 2]) expect(await b.create(rec(sid(i), 1n, { owner: 'node-b', director: 'dir-b' }))).toMatchObject({ ok: true });
      const drained = await a.putShared('nodes', 'node-a', { state: 'draining', director: 'dir-a' });
      if (!drained.ok) throw new Error(drained.message);
      await nodeStateSeen(b, 'node-a');
      // b holds node-a as it was before the draining write (say, its undrain is on its way).
      let view: bigint | undefined = drained.revision - 1n;
      b.guardNodeViews((node) => (node === 'node-a' ? view : undefined));
      const moveTo = (i: number, owner: string): StoredSession => rec(sid(i), 2n, { owner, director: 'dir-b', state: 'FROZEN' });
      expect(await b.create(rec(sid(3), 1n, { owner: 'node-a', director: 'dir-b' }))).toMatchObject({ ok: false, reason: 'unavailable', staleNodeState: true });
      expect(await b.update(moveTo(1, 'node-a'), 1n)).toMatchObject({ ok: false, reason: 'unavailable', staleNodeState: true });
      expect(await b.updateMany([{ record: moveTo(1, 'node-a'), expectVersion: 1n }, { record: moveTo(2, 'node-c'), expectVersion: 1n }])).toMatchObject([{ ok: false, staleNodeState: true }, { ok: true }]);
      expect(await b.get(sid(3))).toEqual({ ok: true, record: null });
      expect(await b.get(sid(1))).toMatchObject({ ok: true, record: { version: 1n, owner: 'node-b' } });
      // A view past the feed (its own write answered, the echo not here yet) guards by that revision: a
      // director whose feed had not seen the draining write (nodeStateAsOf before it) places by its view.
      view = drained.revision;
      expect(await b.create(rec(sid(4), 1n, { owner: 'node-a', director: 'dir-b' }), { nodeStateAsOf: drained.revision - 1n })).toMatchObject({ ok: true });
      // Once the director's view is the store's again, the feed guards alone.
      view = undefined;
      expect(await b.create(rec(sid(3), 1n, { owner: 'node-a', director: 'dir-b' }))).toMatchObject({ ok: true });
      expect(await b.update(moveTo(1, 'node-a'), 1n)).toMatchObject({ ok: true });
    });
  });

  it('watchShared delivers the entries the store holds at their last write\'s revision, not the feed\'s', async () => {
    const prefix = freshPrefix();
    const a = await connect(prefix);
    try {
      const drained = await a.putShared('nodes', 'node-a', { state: 'draining', director: 'dir-a' });
      if (!drained.ok) throw new Error(drained.message);
      for (const i of [1, 2, 3]) expect(await a.create(rec(sid(i), 1n, { owner: 'node-b', director: 'dir-a' }))).toMatchObject({ ok: true });
      const b = await connect(prefix); // its feed lists at a later revision
      try {
        const got: bigint[] = [];
        b.watchShared((ev, revision) => ev.kind === 'nodes' && got.push(revision));
        expect(got).toEqual([drained.revision]);
      } finally {
        await b.close();
      }
    } finally {
      await a.close();
    }
  });

  it('a lease grant answered after its call deadline still gives the store its lease id: claims, attached to the lease, work once it is granted', async () => {
    const member = new URL(cluster.members[0]!.clientUrl);
    const proxy = await startPauseProxy({ host: member.hostname, port: Number(member.port) });
    const leaseErrors: unknown[] = [];
    let s: EtcdStore | undefined;
    try {
      proxy.pauseAnswers(); // the grant is sent; its answer comes after the call's deadline
      s = await EtcdStore.connect({ endpoints: [proxy.url], prefix: freshPrefix(), callTimeoutMs: CALL_TIMEOUT_MS, leaseTtlS: 5, onError: (err, context) => context === 'lease keepalive' && leaseErrors.push(err) });
      await waitFor('the grant past its deadline', () => leaseErrors.length > 0 || undefined, { timeoutMs: 10_000, intervalMs: 10 });
      expect(s.leaseOkAt()).toBeNull();
      proxy.resumeAnswers();
      const store = s;
      await waitFor('the lease kept alive', () => store.leaseOkAt() !== null || undefined, { timeoutMs: 10_000, intervalMs: 10 });
      expect(await store.claimShared('failovers', 'node-a', { director: 'dir-a', claim: 'late-grant' })).toMatchObject({ ok: true, claimed: true });
    } finally {
      await s?.close();
      await proxy.close();
    }
  });

  it('claims: one director at a time holds kind/id; another gets the holder; release only by the value written; a claim goes with its lease', async () => {
    const prefix = freshPrefix();
    const a = await EtcdStore.connect({ endpoints: cluster.endpoints, prefix, callTimeoutMs: CALL_TIMEOUT_MS, leaseTtlS: 5 });
    const b = await EtcdStore.connect({ endpoints: cluster.endpoints, prefix, callTimeoutMs: CALL_TIMEOUT_MS, leaseTtlS: 5 });
    const c = await connect(prefix); // no lease
    try {
      await waitFor('both leases', () => (a.leaseOkAt?.() != null && b.leaseOkAt?.() != null) || undefined, { timeoutMs: 5000, intervalMs: 10 });
      const va = { director: 'dir-a', claim: 'x1' };
      const vb = { director: 'dir-b', claim: 'y1' };
      // Both at once: exactly one takes it.
      const [ra, rb] = await Promise.all([a.claimShared('failovers', 'node-a', va), b.claimShared('failovers', 'node-a', vb)]);
      const won = [ra, rb].filter((r) => r.ok && r.claimed);
      expect(won).toHaveLength(1);
      const [winner, loser, wv, lv] = ra.ok && ra.claimed ? [a, b, va, vb] : [b, a, vb, va];
      expect(ra.ok && ra.claimed ? rb : ra).toEqual({ ok: true, claimed: false, holder: wv, lease: (ra.ok && ra.claimed ? ra : rb.ok && rb.claimed ? rb : { lease: '?' }).lease });
      // The loser cannot release it (not its value); the winner can.
      expect(await loser.releaseShared('failovers', 'node-a', lv)).toEqual({ ok: true, released: false });
      expect(await loser.claimShared('failovers', 'node-a', lv)).toMatchObject({ ok: true, claimed: false, holder: wv });
      expect(await winner.releaseShared('failovers', 'node-a', wv)).toEqual({ ok: true, released: true });
      const taken = await loser.claimShared('failovers', 'node-a', lv);
      expect(taken).toEqual({ ok: true, claimed: true, lease: expect.any(String) });
      // Held with the loser's lease (leaseHeld), not the winner's.
      const lease = taken.ok && taken.claimed ? taken.lease : '';
      expect([loser.leaseHeld(lease), winner.leaseHeld(lease)]).toEqual([true, false]);
      // Another node is another claim.
      expect(await winner.claimShared('failovers', 'node-b', wv)).toMatchObject({ ok: true, claimed: true });
      // Without a lease: refused, named.
      const noLease = await c.claimShared('failovers', 'node-c', { director: 'dir-c' });
      expect(noLease).toMatchObject({ ok: false, reason: 'unavailable' });
      expect(noLease.ok ? '' : noLease.message).toMatch(/no lease/);
      // The loser (now the holder of node-a) goes: its claim goes with its lease.
      await loser.close();
      expect(loser.leaseHeld(lease)).toBe(false);
      expect(await winner.claimShared('failovers', 'node-a', wv)).toMatchObject({ ok: true, claimed: true });
    } finally {
      await a.close();
      await b.close();
      await c.close();
    }
  });

  /**
   * Runs `body` with a store whose etcd traffic goes through a proxy the test can cut (its watch events
   * collected in `seen`) and a second store straight to etcd (`direct`); closes all three after.
   */
  async function withWatchBehindCut(body: (x: { proxy: Awaited<ReturnType<typeof cuttableProxy>>; store: EtcdStore; direct: EtcdStore; seen: StoreEvent[] }) => Promise<void>): Promise<void> {
    const prefix = freshPrefix();
    const proxy = await cuttableProxy(cluster.endpoints[0] as string);
    const store = await connect(prefix, [proxy.url]);
    const direct = await connect(prefix);
    try {
      const seen: StoreEvent[] = [];
      store.watch((ev) => seen.push(ev));
      await body({ proxy, store, direct, seen });
    } finally {
      await store.close();
      await direct.close();
      await proxy.close();
    }
  }

  it('resync(): not following from the call until listed again; what changed is delivered once, nothing twice, and the feed goes on', async () => {
    await withWatchBehindCut(async ({ store, direct, seen }) => {
      const v1 = rec(sid(1), 1n);
      expect((await direct.create(v1)).ok).toBe(true);
      await waitFor('first event', () => seen.length >= 1, { timeoutMs: 5000, intervalMs: 5 });
      await waitFor('following', () => store.following || undefined);
      store.resync();
      expect(store.following).toBe(false);
      const v2 = { ...v1, version: 2n, owner: 'node-b' };
      expect((await direct.update(v2, 1n)).ok).toBe(true); // during the listing, or after it
      await waitFor('following again', () => store.following || undefined, { timeoutMs: 10_000 });
      const marker = rec(sid(99), 1n, { owner: 'marker' });
      expect((await direct.create(marker)).ok).toBe(true);
      await waitFor('the marker', () => seen.some((e) => e.kind === 'put' && e.record.id === sid(99)) || undefined, { timeoutMs: 10_000, intervalMs: 10 });
      expect(seen.map((e) => (e.kind === 'put' ? `${e.record.id.slice(-2)} v${e.record.version}` : 'delete'))).toEqual(['02 v1', '02 v2', '64 v1']);
    });
  });

  /**
   * A relisting of 20 sessions written while the store was cut off, applied with a turn of the event loop
   * before every record (listSlices: sliceMs 0, checkEvery 1): the events it delivered, each with the
   * number of turns taken before it; `closeAtTurn` closes the store in that turn.
   */
  async function slicedRelisting(
    closeAtTurn = Infinity,
    followAtTurn = Infinity,
  ): Promise<{ seen: { id: string; turn: number }[]; ids: string[]; store: EtcdStore; followed: { snapshot: string[]; events: string[] } | null }> {
    const prefix = freshPrefix();
    const proxy = await cuttableProxy(cluster.endpoints[0] as string);
    let turns = 0;
    let closing: Promise<void> | null = null;
    let following: Promise<unknown> | null = null;
    const followed = { snapshot: [] as string[], events: [] as string[] };
    const store: EtcdStore = await EtcdStore.connect({
      endpoints: [proxy.url],
      prefix,
      callTimeoutMs: CALL_TIMEOUT_MS,
      listSlices: {
        sliceMs: 0,
        checkEvery: 1,
        yieldTurn: async () => {
          turns++;
          await new Promise((r) => setImmediate(r));
          if (turns === closeAtTurn) closing = store.close();
          if (turns === followAtTurn) {
            following = store.follow(
              (records) => followed.snapshot.push(...records.map((r) => r.id)),
              (ev) => followed.events.push(ev.kind === 'put' ? ev.record.id : ev.id),
            );
          }
        },
      },
    });
    const direct = await connect(prefix);
    try {
      const seen: { id: string; turn: number }[] = [];
      store.watch((ev) => seen.push({ id: ev.kind === 'put' ? ev.record.id : ev.id, turn: turns }));
      turns = 0; // the first listing (of nothing) is not counted
      proxy.cut();
      store.resync(); // fails while cut off, and is tried again every 200 ms
      const ids = Array.from({ length: 20 }, (_, i) => sid(i + 1));
      for (const id of ids) expect((await direct.create(rec(id, 1n))).ok).toBe(true);
      proxy.restore();
      if (closeAtTurn === Infinity) await waitFor('following again', () => store.following || undefined, { timeoutMs: 10_000 });
      else await waitFor('closed by the listing', () => (closing !== null ? true : undefined), { timeoutMs: 10_000 });
      if (followAtTurn !== Infinity) {
        await waitFor('the follow called', () => (following !== null ? true : undefined));
        expect(await following).toMatchObject({ ok: true });
      }
      return { seen, ids, store, followed: followAtTurn === Infinity ? null : followed };
    } finally {
      await (closing ?? store.close());
      await direct.close();
      await proxy.close();
    }
  }

  it('a listing is applied a slice at a time, the event loop getting turns between slices (the lease keepalives run meanwhile)', async () => {
    const { seen, ids } = await slicedRelisting();
    expect(seen.map((e) => e.id).sort()).toEqual([...ids].sort());
    // 20 records decoded, a turn before each; then 20 applied, a turn before each: every event in a turn of its own.
    expect(seen.map((e) => e.turn)).toEqual(Array.from({ length: 20 }, (_, i) => 21 + i));
  });

  it('follow() asked while a listing is being applied takes its snapshot once the listing is done: nothing it told is missed', async () => {
    const { ids, followed } = await slicedRelisting(Infinity, 25); // 4 of the 20 records told already
    expect([...followed!.snapshot].sort()).toEqual([...ids].sort());
    expect(followed!.events).toEqual([]);
  });

  it('a store closed between two slices of a listing applies nothing more of it, and follows nothing', async () => {
    const { seen, store } = await slicedRelisting(25); // while the records are applied
    expect(seen.map((e) => e.turn)).toEqual([21, 22, 23, 24]);
    expect(store.following).toBe(false);
    const early = await slicedRelisting(10); // while they are decoded
    expect(early.seen).toEqual([]);
    expect(early.store.cachedSize).toBe(0);
  });

  it('a dropped watch resumes after the last event it applied: events written meanwhile arrive once, in order', async () => {
    await withWatchBehindCut(async ({ proxy, store, direct, seen }) => {
      const v1 = rec(sid(1), 1n);
      expect((await direct.create(v1)).ok).toBe(true);
      await waitFor('first event', () => seen.length >= 1, { timeoutMs: 5000, intervalMs: 5 });
      proxy.cut();
      const more = [2, 3, 4].map((n) => rec(sid(n), 1n));
      for (const r of more) expect((await direct.create(r)).ok).toBe(true);
      expect(await store.get(sid(2))).toMatchObject({ ok: false, reason: 'unavailable' });
      proxy.restore();
      await waitFor('the missed events', () => seen.length >= 4, { timeoutMs: 10_000, intervalMs: 10 });
      const marker = rec(sid(99), 1n, { owner: 'marker' });
      expect((await direct.create(marker)).ok).toBe(true);
      await waitFor('the marker', () => seen.length >= 5, { timeoutMs: 10_000, intervalMs: 10 });
      expect(seen).toEqual([v1, ...more, marker].map((record) => ({ kind: 'put', record, prev: null })));
    });
  });

  it('the sessions of one updateMany transaction (one revision) are each an event, also when a dropped watch resumes', async () => {
    await withWatchBehindCut(async ({ proxy, store, direct, seen }) => {
      const v1 = [1, 2, 3].map((n) => rec(sid(n), 1n));
      for (const r of v1) expect((await direct.create(r)).ok).toBe(true);
      await waitFor('the creates', () => seen.length >= 3, { timeoutMs: 5000, intervalMs: 5 });
      const v2 = v1.map((r) => ({ ...r, version: 2n, state: 'FROZEN' as const }));
      expect((await direct.updateMany(v2.map((record) => ({ record, expectVersion: 1n })))).every((r) => r.ok)).toBe(true);
      await waitFor('the batch', () => seen.length >= 6, { timeoutMs: 5000, intervalMs: 5 });
      // Cut: a batch written meanwhile is replayed once the watch resumes, every session of it once.
      proxy.cut();
      const v3 = v2.map((r) => ({ ...r, version: 3n, owner: 'node-b' }));
      expect((await direct.updateMany(v3.map((record) => ({ record, expectVersion: 2n })))).every((r) => r.ok)).toBe(true);
      proxy.restore();
      await waitFor('the batch written while cut', () => seen.length >= 9, { timeoutMs: 10_000, intervalMs: 10 });
      const marker = rec(sid(99), 1n, { owner: 'marker' });
      expect((await direct.create(marker)).ok).toBe(true);
      await waitFor('the marker', () => seen.length >= 10, { timeoutMs: 10_000, intervalMs: 10 });
      expect(seen).toEqual([
        ...v1.map((record) => ({ kind: 'put', record, prev: null })),
        ...v2.map((record, i) => ({ kind: 'put', record, prev: v1[i] })),
        ...v3.map((record, i) => ({ kind: 'put', record, prev: v2[i] })),
        { kind: 'put', record: marker, prev: null },
      ]);
    });
  });

  /**
   * Runs `body` with a store whose reported errors are collected (`errors`, "context: error") and its watch
   * events (`seen`), and a second store on the same prefix (`direct`); closes both after.
   */
  async function withReportingStore(prefix: string, body: (x: { store: EtcdStore; direct: EtcdStore; seen: StoreEvent[]; errors: string[] }) => Promise<void>): Promise<void> {
    const errors: string[] = [];
    const store = await EtcdStore.connect({ endpoints: cluster.endpoints, prefix, callTimeoutMs: CALL_TIMEOUT_MS, onError: (e, ctx) => errors.push(`${ctx}: ${String(e)}`) });
    const direct = await connect(prefix);
    try {
      const seen: StoreEvent[] = [];
      store.watch((ev) => seen.push(ev));
      await body({ store, direct, seen, errors });
    } finally {
      await store.close();
      await direct.close();
    }
  }

  it('a key under sessions/ that is not an Anchor record is left out of the feed (reported, naming it), which follows every other session', async () => {
    const prefix = freshPrefix();
    await raw.put(`${prefix}sessions/${sid(7)}`).value('{"oops":1}');
    await withReportingStore(prefix, async ({ store, direct, seen, errors }) => {
      const good = rec(sid(1), 1n);
      expect((await direct.create(good)).ok).toBe(true);
      await waitFor('the event of the good session', () => seen.length >= 1 || undefined, { timeoutMs: 5000, intervalMs: 5 });
      expect(seen[0]).toEqual({ kind: 'put', record: good, prev: null });
      expect(errors.some((e) => e.includes('left out') && e.includes(`sessions/${sid(7)}`))).toBe(true);
      // That session itself fails closed.
      expect(await store.get(sid(7))).toMatchObject({ ok: false, reason: 'unavailable' });
      // A record that turns unreadable is no longer followed: a delete for its mirror, not a stale copy.
      await raw.put(`${prefix}sessions/${sid(1)}`).value('{"oops":2}');
      await waitFor('the unreadable record dropped', () => seen.length >= 2 || undefined, { timeoutMs: 5000, intervalMs: 5 });
      expect(seen[1]).toEqual({ kind: 'delete', id: sid(1), prev: good });
    });
  });

  it('a record whose id is not its key\'s is no session: left out of the feed and listings (reported), its key fails closed, the session it names untouched', async () => {
    const prefix = freshPrefix();
    await withReportingStore(prefix, async ({ store, direct, seen, errors }) => {
      const b = rec(sid(6), 1n);
      expect((await direct.create(b)).ok).toBe(true);
      // Under sessions/<sid 5>, a record claiming to be sid 6 at a far higher version.
      await raw.put(`${prefix}sessions/${sid(5)}`).value(encodeRecord({ ...b, version: 50n, owner: 'node-b' }));
      const marker = rec(sid(99), 1n, { owner: 'marker' });
      expect((await direct.create(marker)).ok).toBe(true);
      await waitFor('the marker', () => seen.some((e) => e.kind === 'put' && e.record.id === sid(99)) || undefined, { timeoutMs: 5000, intervalMs: 5 });
      expect(seen.filter((e) => e.kind === 'put').map((e) => (e.kind === 'put' ? [e.record.id, e.record.version] : null))).toEqual([
        [sid(6), 1n],
        [sid(99), 1n],
      ]);
      expect(errors.some((e) => e.includes(`sessions/${sid(5)}`) && e.includes(`names session ${sid(6)}`))).toBe(true);
      expect(await store.get(sid(5))).toMatchObject({ ok: false, reason: 'unavailable' });
      expect(await store.get(sid(6))).toEqual({ ok: true, record: b });
      expect(await store.listByOwner('node-a')).toEqual({ ok: true, records: [b] });
      await raw.put(`${prefix}sessions/${sid(8)}`).value(encodeRecord(rec('not-a-session-id', 1n)));
      expect(await store.get(sid(8))).toMatchObject({ ok: false, reason: 'unavailable', message: expect.stringMatching(/not a session id/) });
    });
  });

  it('a listing past gRPC\'s 4 MiB answer (20,000 sessions) is read page by page (RANGE_PAGE keys) at one revision: every record once', async () => {
    const prefix = freshPrefix();
    const n = 20_000;
    expect(n).toBeGreaterThan(RANGE_PAGE);
    const put = (i: number) => ({ request_put: { key: Buffer.from(`${prefix}sessions/${sid(i)}`), value: Buffer.from(encodeRecord(rec(sid(i), 1n, { owner: i % 2 === 0 ? 'node-a' : 'node-b' }))) } });
    // 128 puts per transaction (etcd's default limit), 8 transactions at a time.
    for (let i = 0; i < n; i += 128 * 8) {
      await Promise.all(
        Array.from({ length: 8 }, (_, t) => i + t * 128)
          .filter((j) => j < n)
          .map((j) => raw.kv.txn({ success: Array.from({ length: Math.min(128, n - j) }, (_, k) => put(j + k)) })),
      );
    }
    const store = await connect(prefix);
    try {
      expect(store.cachedSize).toBe(n);
      const a = await store.listByOwner('node-a');
      expect(a.ok && a.records.length).toBe(Math.ceil(n / 2));
      expect(a.ok && new Set(a.records.map((x) => x.id)).size).toBe(Math.ceil(n / 2));
      let snap = 0;
      const f = await store.follow((records) => (snap = records.length), () => undefined);
      expect(snap).toBe(n);
      if (f.ok) f.unsubscribe();
    } finally {
      await store.close();
    }
  });

  it('follow: the records, then every change after them, from one point — none missed or doubled, however the writes interleave with it', async () => {
    const prefix = freshPrefix();
    const direct = await connect(prefix);
    const store = await connect(prefix);
    try {
      for (let i = 0; i < 40; i++) expect((await direct.create(rec(sid(i), 1n))).ok).toBe(true);
      // Writes racing the follow: deletes, updates and creates, some before and some after its point.
      const mirror = new Map<string, StoredSession>();
      const racing = (async () => {
        for (let i = 0; i < 20; i++) {
          if (i % 2 === 0) expect((await direct.delete(sid(i), 1n, 0)).ok).toBe(true);
          else expect((await direct.update({ ...rec(sid(i), 2n), owner: 'node-b' }, 1n)).ok).toBe(true);
          expect((await direct.create(rec(sid(100 + i), 1n))).ok).toBe(true);
        }
      })();
      const r = await store.follow(
        (records) => {
          for (const x of records) mirror.set(x.id, x);
        },
        (ev) => {
          if (ev.kind === 'delete') {
            expect(mirror.has(ev.id)).toBe(true); // never a delete of what the mirror does not hold
            mirror.delete(ev.id);
          } else {
            if (ev.prev === null) expect(mirror.has(ev.record.id)).toBe(false); // never a create twice
            mirror.set(ev.record.id, ev.record);
          }
        },
      );
      expect(r.ok).toBe(true);
      await racing;
      const marker = rec(sid(999), 1n, { owner: 'marker' });
      expect((await direct.create(marker)).ok).toBe(true);
      await waitFor('the marker', () => mirror.has(sid(999)) || undefined, { timeoutMs: 5000, intervalMs: 5 });
      const all = await raw.getAll().prefix(`${prefix}sessions/`).strings();
      expect(new Map([...mirror].map(([id, x]) => [id, encodeRecord(x)]))).toEqual(new Map(Object.entries(all).map(([k, v]) => [k.slice(`${prefix}sessions/`.length), v])));
      if (r.ok) r.unsubscribe();
    } finally {
      await store.close();
      await direct.close();
    }
  });

  it('while the watch stream is down (etcd3 reconnecting it) the store is not following; once it is back, it follows and what was written meanwhile arrives', async () => {
    const prefix = freshPrefix();
    const proxy = await cuttableProxy(cluster.endpoints[0] as string);
    const store = await EtcdStore.connect({ endpoints: [proxy.url], prefix, callTimeoutMs: CALL_TIMEOUT_MS, onError: () => undefined });
    const direct = await connect(prefix);
    try {
      const seen = new Set<string>();
      store.watch((ev) => {
        if (ev.kind === 'put') seen.add(ev.record.id);
      });
      expect(store.following).toBe(true);
      proxy.cut();
      await waitFor('the stream to be seen down', () => store.following === false || undefined, { timeoutMs: 5000, intervalMs: 10 });
      expect((await direct.create(rec(sid(7), 1n))).ok).toBe(true); // another director admits meanwhile
      expect(store.following).toBe(false);
      proxy.restore();
      await waitFor('the write made meanwhile', () => seen.has(sid(7)) || undefined, { timeoutMs: 10_000, intervalMs: 20 });
      await waitFor('following again', () => store.following || undefined, { timeoutMs: 5000, intervalMs: 10 });
    } finally {
      await store.close();
      await direct.close();
      await proxy.close();
    }
  });

  it('a store that could not list at first (etcd unreachable) lists when followed, and a watcher from before then gets what was written meanwhile', async () => {
    const prefix = freshPrefix();
    const proxy = await cuttableProxy(cluster.endpoints[0] as string);
    proxy.cut();
    const store = await EtcdStore.connect({ endpoints: [proxy.url], prefix, callTimeoutMs: CALL_TIMEOUT_MS, onError: () => undefined });
    const direct = await connect(prefix);
    try {
      const early: StoreEvent[] = [];
      store.watch((ev) => early.push(ev));
      const a = rec(sid(1), 1n);
      expect((await direct.create(a)).ok).toBe(true);
      expect(await store.follow(() => undefined, () => undefined)).toMatchObject({ ok: false, reason: 'unavailable', message: expect.stringMatching(/^etcd: the sessions could not be listed: .+/) });
      expect(store.following).toBe(false); // what /readyz and anchor_store_following say
      proxy.restore();
      let snap: readonly StoredSession[] = [];
      const r = await waitFor('a follow that lists', async () => {
        const x = await store.follow((records) => (snap = records), () => undefined);
        return x.ok ? x : undefined;
      }, { timeoutMs: 10_000, intervalMs: 100 });
      expect(snap).toEqual([a]);
      expect(store.following).toBe(true);
      await waitFor('the early watcher to get the write made before the first listing', () => early.some((e) => e.kind === 'put' && e.record.id === sid(1)) || undefined, { timeoutMs: 5000, intervalMs: 10 });
      r.unsubscribe();
    } finally {
      await store.close();
      await direct.close();
      await proxy.close();
    }
  });

  it('a watch whose resume revision was compacted resynchronises by listing: the gap arrives as events', async () => {
    const prefix = freshPrefix();
    const proxy = await cuttableProxy(cluster.endpoints[0] as string);
    const errors: string[] = [];
    const store = await EtcdStore.connect({ endpoints: [proxy.url], prefix, callTimeoutMs: CALL_TIMEOUT_MS, onError: (_e, ctx) => errors.push(ctx) });
    const direct = await connect(prefix);
    try {
      const seen: StoreEvent[] = [];
      store.watch((ev) => seen.push(ev));
      const shared: { ev: SharedEvent; revision: bigint }[] = [];
      store.watchShared((ev, revision) => shared.push({ ev, revision }));
      const v1 = rec(sid(1), 1n);
      const gone = rec(sid(2), 1n);
      // sid(4): moved on to v2 before the gap, ended and admitted anew (v1, another owner) during it.
      const old4 = { ...rec(sid(4), 1n) };
      const old4v2 = { ...old4, version: 2n };
      const new4 = rec(sid(4), 1n, { owner: 'node-c' });
      expect((await direct.create(v1)).ok).toBe(true);
      expect((await direct.create(gone)).ok).toBe(true);
      expect((await direct.create(old4)).ok).toBe(true);
      expect((await direct.update(old4v2, 1n)).ok).toBe(true);
      const before = await direct.putShared('nodes', 'node-b', { state: 'active', director: 'dir-x', write: 'w1' });
      await waitFor('first events', () => (seen.length >= 4 && shared.length >= 1) || undefined, { timeoutMs: 5000, intervalMs: 5 });
      seen.splice(2, 2); // sid(4)'s create and update
      expect(shared.splice(0)).toEqual([{ ev: { kind: 'nodes', id: 'node-b', value: { state: 'active', director: 'dir-x', write: 'w1' } }, revision: before.ok ? before.revision : -1n }]);
      proxy.cut();
      // node-b written twice in the gap, back to the text it had: written since all the same.
      expect(await direct.putShared('nodes', 'node-b', { state: 'draining', director: 'dir-x', write: 'w2' })).toMatchObject({ ok: true });
      const back = await direct.putShared('nodes', 'node-b', { state: 'active', director: 'dir-x', write: 'w1' });
      if (!back.ok) throw new Error(back.message);
      // A node state written in the gap, then other keys: the listing's revision is past the state's.
      const drained = await direct.putShared('nodes', 'node-a', { state: 'draining', director: 'dir-x' });
      if (!drained.ok) throw new Error(drained.message);
      const v2 = { ...v1, version: 2n, state: 'FROZEN' as const };
      const v3 = { ...v2, version: 3n, owner: 'node-b' };
      const added = rec(sid(3), 1n);
      expect((await direct.update(v2, 1n)).ok).toBe(true);
      expect((await direct.update(v3, 2n)).ok).toBe(true);
      expect((await direct.delete(sid(2), 1n, 0)).ok).toBe(true);
      expect((await direct.create(added)).ok).toBe(true);
      expect((await direct.delete(sid(4), 2n, 0)).ok).toBe(true);
      expect((await direct.create(new4)).ok).toBe(true);
      // Compact everything up to now: the store's resume revision no longer exists.
      const head = await raw.put(`${prefix}unrelated`).value('x').exec();
      await raw.kv.compact({ revision: head.header.revision, physical: true });
      proxy.restore();
      await waitFor('the gap as events', () => seen.length >= 7, { timeoutMs: 10_000, intervalMs: 10 });
      // The listing shows end states only: v1 → v3 is one put (prev v1), the delete and the new record; a
      // session ended and admitted anew is its end and then the new session (one put of v1 on top of v2
      // would be ignored as older by every director).
      expect(seen.slice(2)).toEqual([
        { kind: 'delete', id: sid(2), prev: gone },
        { kind: 'put', record: v3, prev: v1 },
        { kind: 'put', record: added, prev: null },
        { kind: 'delete', id: sid(4), prev: old4v2 },
        { kind: 'put', record: new4, prev: null },
      ]);
      expect(errors.some((c) => c.includes('resynchronising') && /following from revision \d+/.test(c))).toBe(true);
      // Each node state comes at its last write's revision, not the listing's (SharedNodeStates guards by
      // it), node-b too though its text is what it was.
      expect(shared).toEqual([
        { ev: { kind: 'nodes', id: 'node-a', value: { state: 'draining', director: 'dir-x' } }, revision: drained.revision },
        { ev: { kind: 'nodes', id: 'node-b', value: { state: 'active', director: 'dir-x', write: 'w1' } }, revision: back.revision },
      ]);
      // And the feed goes on from there.
      const marker = rec(sid(99), 1n, { owner: 'marker' });
      expect((await direct.create(marker)).ok).toBe(true);
      await waitFor('the marker', () => seen.length >= 8, { timeoutMs: 10_000, intervalMs: 10 });
      expect(seen[7]).toEqual({ kind: 'put', record: marker, prev: null });
    } finally {
      await store.close();
      await direct.close();
      await proxy.close();
    }
  });
});

describe('sharedEvent (pure)', () => {
  it('accepts nodes/<id> and drains/<id> with a JSON object; refuses anything else', () => {
    expect(sharedEvent('nodes/node-a', '{"state":"active"}')).toEqual({ kind: 'nodes', id: 'node-a', value: { state: 'active' } });
    expect(sharedEvent('drains/dr-0a1b', '{}')).toEqual({ kind: 'drains', id: 'dr-0a1b', value: {} });
    for (const [k, v] of [
      ['sessions/00', '{}'],
      ['nodes/', '{}'],
      ['nodes/a/b', '{}'],
      ['nodes/x', '[]'],
      ['nodes/x', 'null'],
      ['nodes/x', '"s"'],
      ['nodes/x', '{'],
      ['other/x', '{}'],
    ] as const) {
      expect(sharedEvent(k, v)).toBeNull();
    }
  });
});

describe('resolveUnknownWrite (a write whose answer never came)', () => {
  const ours = rec(sid(1), 2n, { owner: 'node-b', director: 'dir-2' });
  const before = rec(sid(1), 1n);
  const other = rec(sid(1), 2n, { owner: 'node-c', director: 'dir-3' });
  const at = (r: StoredSession, modRevision: bigint) => ({ value: encodeRecord(r), record: r, modRevision });

  it('update: our value at a newer revision is applied; the compared revision is not applied; anything else is a conflict', () => {
    expect(resolveUnknownWrite('update', encodeRecord(ours), 10n, at(ours, 11n))).toEqual({ kind: 'applied' });
    expect(resolveUnknownWrite('update', encodeRecord(ours), 10n, at(before, 10n))).toEqual({ kind: 'not-applied' });
    expect(resolveUnknownWrite('update', encodeRecord(ours), 10n, at(other, 11n))).toEqual({ kind: 'conflict', current: other });
    expect(resolveUnknownWrite('update', encodeRecord(ours), 10n, null)).toEqual({ kind: 'conflict', current: null });
  });

  it('create: our value is applied; still absent is not applied; another record is a conflict', () => {
    const mine = rec(sid(1), 1n, { director: 'dir-2' });
    const theirs = rec(sid(1), 1n, { director: 'dir-3' });
    expect(resolveUnknownWrite('create', encodeRecord(mine), null, at(mine, 5n))).toEqual({ kind: 'applied' });
    expect(resolveUnknownWrite('create', encodeRecord(mine), null, null)).toEqual({ kind: 'not-applied' });
    expect(resolveUnknownWrite('create', encodeRecord(mine), null, at(theirs, 5n))).toEqual({ kind: 'conflict', current: theirs });
  });

  it('delete: gone is applied; the compared revision is not applied; a newer record is a conflict', () => {
    expect(resolveUnknownWrite('delete', null, 10n, null)).toEqual({ kind: 'applied' });
    expect(resolveUnknownWrite('delete', null, 10n, at(before, 10n))).toEqual({ kind: 'not-applied' });
    expect(resolveUnknownWrite('delete', null, 10n, at(other, 12n))).toEqual({ kind: 'conflict', current: other });
  });
});

describe('etcd record codec: lives (incarnation)', () => {
  it('round-trips the incarnation; a value written before lives were kept reads as life 0; anything else is refused', () => {
    const r = rec(sid(1), 3n, { incarnation: 2 ** 48 - 1 });
    expect(decodeRecord(encodeRecord(r))).toEqual(r);
    const older = JSON.parse(encodeRecord(r)) as Record<string, unknown>;
    delete older['incarnation'];
    expect(decodeRecord(JSON.stringify(older))).toEqual({ ...r, incarnation: 0 });
    for (const bad of [-1, 1.5, '7', null, 2 ** 53]) {
      expect(() => decodeRecord(JSON.stringify({ ...older, incarnation: bad }))).toThrow(/not an Anchor session record/);
    }
  });
});
