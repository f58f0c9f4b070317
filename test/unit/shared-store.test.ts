// Directors sharing one store. Idle expiry: the serving director refreshes the store's expiry in coarse
// steps while its session has traffic; every director expires a session by it; the end is a delete on the
// session's version in the store first, so a session expires once, whichever director sees it. What the
// store says wins: a write whose answer was lost but which landed is applied from the watch; a session
// left frozen by a migration cut short is resumed by the stale-freeze sweep.
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseHostPortLiteral } from '../../src/config/load.js';
import { encodeJv1, sessionIdHex } from '../../src/codec/jv1.js';
import { transportKey } from '../../src/codec/ip.js';
import { PacketType, type Transport } from '../../src/codec/types.js';
import { DirectorCore } from '../../src/director/core.js';
import { Ownership, refreshSlots } from '../../src/director/ownership.js';
import { createAudit, type AuditSink } from '../../src/obs/audit.js';
import { DirectorStats } from '../../src/obs/stats.js';
import { createHasher } from '../../src/ring/hash.js';
import { buildRing, type Ring } from '../../src/ring/ring.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { CasResult, OwnershipStore, StoredSession, UpdateWrite } from '../../src/store/store.js';
import { LifecycleEvent } from '../../src/session/lifecycle.js';
import { ManualClock, RecordingPath, TEST_LIMITS, clientTransport, counterId, idsOwnedBy } from '../helpers/ownership-harness.js';

const TTL = 1000;
const GRACE = 500;

let ring: Ring;
beforeAll(async () => {
  ring = buildRing(await createHasher(), [
    { id: 'node-a', weight: 1 },
    { id: 'node-b', weight: 1 },
  ]);
});

interface Dir {
  readonly id: string;
  readonly core: DirectorCore;
  readonly own: Ownership;
  readonly audit: AuditSink;
  readonly stats: DirectorStats;
  /** What Ownership asked of the data path (REVOKEs, forwards…). */
  readonly path: RecordingPath;
  /** A client datagram through this director, as the UDP shell handles it. */
  client(msg: Buffer, t: Transport): void;
  events(kind: string): number;
}

function director(id: string, store: OwnershipStore, clock: ManualClock, refreshConcurrency?: number): Dir {
  const core = new DirectorCore({ ...TEST_LIMITS, idleTtlMs: TTL, sharedExpiryGraceMs: GRACE }, ring);
  const audit = createAudit({ path: null, wallClock: () => clock.wall(), keep: 100_000 });
  const stats = new DirectorStats();
  const nodes = new Set(['node-a', 'node-b']);
  const own = new Ownership(
    { directorId: id, quiesceMs: 0, revokeTimeoutMs: 60_000, revokeRetries: 0, refreshExpiry: true, idleTtlMs: TTL, ...(refreshConcurrency !== undefined ? { refreshConcurrency } : {}) },
    { core, store, audit, stats, clock, eligible: (n) => nodes.has(n), knownNode: (n) => nodes.has(n) },
  );
  const path = new RecordingPath(clock);
  own.attach(path);
  own.followStore((key) => {
    const t = parseHostPortLiteral(key);
    return t === undefined ? null : { t, key, listener: 0 };
  });
  return {
    id,
    core,
    own,
    audit,
    stats,
    path,
    client(msg, t) {
      const out = core.onClient(msg, t, transportKey(t), 0, clock.now());
      for (const n of core.expiredOnArrival.splice(0)) own.ended(n.session, n.transition);
      if (out.kind === 'admit') void own.admit(out.session);
      else if (out.kind === 'forward' && out.transition !== null) own.ended(out.session, out.transition);
    },
    events(kind) {
      return audit.recent({ limit: 100_000 }).filter((l) => l.event === kind).length;
    },
  };
}

/** Lets store calls and watch deliveries settle. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

async function setup(): Promise<{ clock: ManualClock; store: MemoryStore; a: Dir; b: Dir; id: string; t: Transport }> {
  const clock = new ManualClock();
  const store = new MemoryStore();
  const a = director('dir-a', store, clock);
  const b = director('dir-b', store, clock);
  const idBytes = counterId(7);
  const t = clientTransport(1);
  a.client(encodeJv1(PacketType.HELLO, idBytes, new Uint8Array(4)), t);
  await settle();
  const id = sessionIdHex(idBytes);
  expect(a.core.table.get(id)).toMatchObject({ servedHere: true, version: 1n });
  expect(b.core.table.get(id)).toMatchObject({ servedHere: false, version: 1n, storeExpiresAt: TTL, expiresAt: TTL + GRACE });
  return { clock, store, a, b, id, t };
}

describe('idle expiry across directors sharing a store', () => {
  it('an idle session expires once: both directors try, one delete wins, the other follows; one audit line', async () => {
    const { clock, store, a, b, id } = await setup();
    clock.advance(TTL + GRACE);
    a.own.expireIdle(clock.now());
    b.own.expireIdle(clock.now());
    await settle();
    expect((await store.get(id)).ok && (await store.get(id))).toMatchObject({ record: null });
    expect(a.core.table.get(id)).toBeUndefined();
    expect(b.core.table.get(id)).toBeUndefined();
    expect(a.events('expire') + b.events('expire')).toBe(1);
    expect(a.events('SECURITY_EVENT') + b.events('SECURITY_EVENT')).toBe(0);
    // Both keep a tombstone: the id cannot come back as a new session through either.
    expect(a.core.table.tombstoneUntil(id, clock.now())).toBeDefined();
    expect(b.core.table.tombstoneUntil(id, clock.now())).toBeDefined();
  });

  it('traffic through A keeps the session alive on B with a few refresh writes, not one per packet; idle, it then expires', async () => {
    const { clock, store, a, b, id, t } = await setup();
    let packets = 0;
    for (let step = 0; step < 40; step++) {
      clock.advance(100);
      a.client(encodeJv1(PacketType.DATA, counterId(7), new Uint8Array(4)), t);
      packets++;
      a.own.refreshExpiries(clock.now());
      a.own.expireIdle(clock.now());
      b.own.expireIdle(clock.now());
      await settle();
      expect(b.core.table.get(id), `B still has it at ${clock.now()} ms`).toBeDefined();
    }
    const refreshes = a.stats.expiryRefreshes.get('ok');
    expect(refreshes).toBeGreaterThanOrEqual(4); // 4 s of traffic with a 1 s TTL
    expect(refreshes).toBeLessThanOrEqual(packets / 4);
    expect(b.stats.remoteChanges.get('refreshed')).toBe(refreshes);
    const stored = await store.get(id);
    expect(stored.ok && stored.record?.version).toBe(1n); // refreshes never bump the version
    // Traffic stops: the session expires once, everywhere.
    for (let step = 0; step < 30 && (a.core.table.get(id) !== undefined || b.core.table.get(id) !== undefined); step++) {
      clock.advance(100);
      a.own.refreshExpiries(clock.now());
      a.own.expireIdle(clock.now());
      b.own.expireIdle(clock.now());
      await settle();
    }
    expect(a.core.table.get(id)).toBeUndefined();
    expect(b.core.table.get(id)).toBeUndefined();
    expect(a.events('expire') + b.events('expire')).toBe(1);
  });

  it('at scale a refresh call looks at its share of the table, not all of it, and still no busy session expires on the other director', async () => {
    const clock = new ManualClock();
    const store = new MemoryStore();
    const a = director('dir-a', store, clock, 100_000);
    const b = director('dir-b', store, clock);
    const n = 6000; // 16,384 slots in the id index: a pass takes several calls
    for (let i = 0; i < n; i++) a.client(encodeJv1(PacketType.HELLO, counterId(1000 + i), new Uint8Array(4)), clientTransport(i));
    await settle();
    expect(a.core.table.size).toBe(n);
    expect(b.core.table.size).toBe(n);
    const recs = [...a.core.table.values()];
    let before = 0;
    const perCall: number[] = [];
    for (let step = 0; step < 300; step++) {
      clock.advance(10);
      for (const rec of recs) a.core.table.touch(rec, clock.now()); // every session has traffic
      a.own.refreshExpiries(clock.now());
      b.own.expireIdle(clock.now());
      await settle();
      const total = a.stats.expiryRefreshes.get('ok');
      perCall.push(total - before);
      before = total;
    }
    // 3 s of traffic with a 1 s TTL: every session refreshed about every 2/3 of the TTL, none lost on B.
    expect(b.core.table.size).toBe(n);
    expect(b.events('expire')).toBe(0);
    expect(a.stats.expiryRefreshes.get('ok')).toBeGreaterThanOrEqual(3 * n);
    // A call looks at 4,096 of the 16,384 slots (the floor of a share), so it refreshes about a quarter of
    // the sessions at most: never all of them in one turn.
    expect(Math.max(...perCall)).toBeLessThan(n / 2);
    expect(Math.max(...perCall)).toBeGreaterThan(0);
  });

  it('a director that died: the survivor expires its sessions at the store expiry plus the grace', async () => {
    const { clock, store, b, id } = await setup(); // A never runs again
    clock.advance(TTL + GRACE - 1);
    b.own.expireIdle(clock.now());
    await settle();
    expect(b.core.table.get(id)).toBeDefined();
    clock.advance(1);
    b.own.expireIdle(clock.now());
    await settle();
    expect(b.core.table.get(id)).toBeUndefined();
    expect((await store.get(id)).ok && (await store.get(id))).toMatchObject({ record: null });
    expect(b.audit.recent({ session: id, limit: 10 }).map((l) => [l.event, l.actor])).toEqual([['expire', 'dir-b']]);
  });

  it('the store unreachable: nothing expires (no audit, the session intact); it expires once the store answers', async () => {
    const { clock, store, a, id } = await setup();
    store.setUnavailable(true);
    clock.advance(TTL);
    a.own.expireIdle(clock.now());
    await settle();
    expect(a.core.table.get(id)).toMatchObject({ pending: null, version: 1n });
    expect(a.events('expire')).toBe(0);
    store.setUnavailable(false);
    clock.advance(1000); // looked at again within a second
    a.own.expireIdle(clock.now());
    await settle();
    expect(a.core.table.get(id)).toBeUndefined();
    expect(a.events('expire')).toBe(1);
  });
});

/** A store whose next write of a kind lands but whose answer is lost (answered `unavailable`). */
class LossyStore implements OwnershipStore {
  lose: 'create' | 'update' | 'delete' | null = null;
  constructor(readonly inner: MemoryStore) {}
  get(id: string) {
    return this.inner.get(id);
  }
  listByOwner(owner: string) {
    return this.inner.listByOwner(owner);
  }
  async create(r: StoredSession): Promise<CasResult> {
    const res = await this.inner.create(r);
    return this.#answer('create', res);
  }
  async update(r: StoredSession, v: bigint): Promise<CasResult> {
    const res = await this.inner.update(r, v);
    return this.#answer('update', res);
  }
  updateMany(writes: readonly UpdateWrite[]): Promise<CasResult[]> {
    return Promise.all(writes.map((w) => this.update(w.record, w.expectVersion)));
  }
  refresh(id: string, v: bigint, e: number, d: string, i: number) {
    return this.inner.refresh(id, v, e, d, i);
  }
  /** Runs before a delete answered `unavailable` without sending it (its read failed). */
  beforeUnsentDelete: (() => Promise<void>) | null = null;
  async delete(id: string, v: bigint, i: number): Promise<CasResult> {
    if (this.beforeUnsentDelete !== null) {
      const fn = this.beforeUnsentDelete;
      this.beforeUnsentDelete = null;
      await fn();
      return { ok: false, reason: 'unavailable', message: 'read failed (test): nothing sent' };
    }
    const res = await this.inner.delete(id, v, i);
    // The watch's delete event reaches the directors before the (lost) answer, as it can from etcd.
    if (this.lose === 'delete') await settle();
    return this.#answer('delete', res);
  }
  watch(fn: Parameters<OwnershipStore['watch']>[0]) {
    return this.inner.watch(fn);
  }
  close() {
    return this.inner.close();
  }
  #answer(kind: 'create' | 'update' | 'delete', res: CasResult): CasResult {
    if (this.lose !== kind) return res;
    this.lose = null;
    return { ok: false, reason: 'unavailable', message: 'answer lost (test)', maybeApplied: true };
  }
}

describe('what the store says wins', () => {
  it('a create whose answer was lost but which landed: refused to the client, then applied from the watch (audited)', async () => {
    const clock = new ManualClock();
    const store = new LossyStore(new MemoryStore());
    const a = director('dir-a', store, clock);
    store.lose = 'create';
    const idBytes = counterId(11);
    a.client(encodeJv1(PacketType.HELLO, idBytes, new Uint8Array(4)), clientTransport(2));
    await settle();
    const id = sessionIdHex(idBytes);
    const stored = await store.get(id);
    expect(stored.ok && stored.record).toMatchObject({ version: 1n, director: 'dir-a' });
    // The director follows the store, not its assumption: the session is there, at version 1.
    expect(a.core.table.get(id)).toMatchObject({ version: 1n, state: 'ATTACHED', pending: null });
    expect(a.audit.recent({ session: id, limit: 10 }).map((l) => l.cause)).toEqual(['admit_store_unavailable', 'late_write_applied']);
  });

  it('an expiry whose delete landed but whose answer was lost, the watch saying the session is gone first: one expire, audited by the director that deleted it', async () => {
    const clock = new ManualClock();
    const store = new LossyStore(new MemoryStore());
    const a = director('dir-a', store, clock);
    const b = director('dir-b', store, clock);
    const idBytes = counterId(12);
    a.client(encodeJv1(PacketType.HELLO, idBytes, new Uint8Array(4)), clientTransport(3));
    await settle();
    const id = sessionIdHex(idBytes);
    expect(b.core.table.get(id)).toMatchObject({ version: 1n });
    // A is gone (it never runs again); B expires the session once the store expiry and the grace passed.
    clock.advance(TTL + GRACE);
    store.lose = 'delete';
    b.own.expireIdle(clock.now());
    await settle();
    await settle();
    expect(store.lose).toBeNull(); // the answer was lost
    expect((await store.get(id)).ok && (await store.get(id))).toMatchObject({ record: null });
    expect(b.core.table.get(id)).toBeUndefined();
    expect(b.audit.recent({ session: id, limit: 10 }).map((l) => [l.event, l.actor])).toEqual([['expire', 'dir-b']]);
  });

  it('an expiry whose delete was never sent (its read failed) while another director ended the session: the end is that director\'s alone, audited once', async () => {
    const clock = new ManualClock();
    const store = new LossyStore(new MemoryStore());
    const a = director('dir-a', store, clock);
    const b = director('dir-b', store, clock);
    const idBytes = counterId(13);
    a.client(encodeJv1(PacketType.HELLO, idBytes, new Uint8Array(4)), clientTransport(4));
    await settle();
    const id = sessionIdHex(idBytes);
    clock.advance(TTL + GRACE);
    store.beforeUnsentDelete = async () => {
      expect(a.own.terminate(id, 'operator', 'op').ok).toBe(true); // A ends it meanwhile (the store deletes it)
      await settle();
    };
    b.own.expireIdle(clock.now());
    await settle();
    await settle();
    expect(store.beforeUnsentDelete).toBeNull();
    expect(b.core.table.get(id)).toBeUndefined();
    const ends = [...a.audit.recent({ session: id, limit: 10 }), ...b.audit.recent({ session: id, limit: 10 })].filter((l) => l.event !== 'create');
    expect(ends.map((l) => [l.event, l.actor])).toEqual([['terminate', 'op']]);
  });

  it('a transfer whose answer was lost but which landed (the watch has it): committed as written — the transfer audited, not an abort', async () => {
    const clock = new ManualClock();
    const store = new LossyStore(new MemoryStore());
    const a = director('dir-a', store, clock);
    const idBytes = counterId(12);
    a.client(encodeJv1(PacketType.HELLO, idBytes, new Uint8Array(4)), clientTransport(3));
    await settle();
    const id = sessionIdHex(idBytes);
    const rec = a.core.table.get(id)!;
    const from = rec.owner;
    const to = from === 'node-a' ? 'node-b' : 'node-a';
    expect((await a.own.step(rec, LifecycleEvent.FREEZE, { cause: 'test', actor: 'op' })).ok).toBe(true);
    store.lose = 'update';
    const t = await a.own.step(rec, LifecycleEvent.TRANSFER, { cause: 'test', toOwner: to, actor: 'op' });
    expect(store.lose).toBeNull(); // the answer was lost
    expect(t).toMatchObject({ ok: true, note: { event: 'transfer', fromOwner: from, toOwner: to, toVersion: 3n } });
    await settle();
    expect(a.core.table.get(id)).toMatchObject({ owner: to, version: 3n, state: 'FROZEN', pending: null });
    expect(a.audit.recent({ session: id, limit: 10 }).map((l) => [l.event, l.cause])).toEqual([
      ['create', 'hello'],
      ['freeze', 'test'],
      ['transfer', 'test'],
    ]);
  });

  it('a batch step whose answer was lost for one session but which landed: that session\'s transfer is committed as written (audited, REVOKE sent), like the others', async () => {
    const clock = new ManualClock();
    const store = new LossyStore(new MemoryStore());
    const a = director('dir-a', store, clock);
    const ids = idsOwnedBy(ring, 'node-a', 3, 40);
    for (const [i, idBytes] of ids.entries()) a.client(encodeJv1(PacketType.HELLO, idBytes, new Uint8Array(4)), clientTransport(40 + i));
    await settle();
    const hex = ids.map((b) => sessionIdHex(b));
    const recs = hex.map((id) => a.core.table.get(id)!);
    for (const rec of recs) expect((await a.own.step(rec, LifecycleEvent.FREEZE, { cause: 'test', actor: 'op' })).ok).toBe(true);
    // The migration goes on from the transfer (the sessions are frozen): the first transfer's answer is lost.
    store.lose = 'update';
    const results = await a.own.migrateBatch(hex, { to: 'node-b', cause: 'drain', actor: 'op' });
    await settle();
    expect(store.lose).toBeNull(); // the answer was lost
    expect(results.map((r) => r.ok)).toEqual([true, true, true]);
    // The lost one's write landed (the watch had it): a transfer like the others, and its REVOKE went out.
    expect(a.audit.recent({ session: hex[0]!, limit: 10 }).map((l) => [l.event, l.cause])).toEqual([
      ['create', 'hello'],
      ['freeze', 'test'],
      ['transfer', 'drain'],
      ['resume', 'drain'],
    ]);
    expect(a.path.revokes.map((r) => [r.session, r.node, r.version])).toEqual(hex.map((id) => [id, 'node-a', 3n]));
    for (const id of hex) {
      expect(a.core.table.get(id)).toMatchObject({ owner: 'node-b', version: 4n, state: 'ATTACHED', pending: null });
      expect(await store.get(id)).toMatchObject({ ok: true, record: { owner: 'node-b', version: 4n, state: 'ATTACHED' } });
    }
  });

  it('a session left frozen (transfer and thaw both refused) is resumed by the stale-freeze sweep, its held packets replayed', async () => {
    const clock = new ManualClock();
    const mem = new MemoryStore();
    const a = director('dir-a', mem, clock);
    const idBytes = counterId(13);
    const t = clientTransport(4);
    a.client(encodeJv1(PacketType.HELLO, idBytes, new Uint8Array(4)), t);
    await settle();
    const id = sessionIdHex(idBytes);
    const rec = a.core.table.get(id)!;
    expect((await a.own.step(rec, LifecycleEvent.FREEZE, { cause: 'test', actor: 'op' })).ok).toBe(true);
    mem.setUnavailable(true);
    expect((await a.own.step(rec, LifecycleEvent.TRANSFER, { cause: 'test', toOwner: 'node-b', actor: 'op' })).ok).toBe(false);
    expect((await a.own.step(rec, LifecycleEvent.RESUME, { cause: 'test', actor: 'op' })).ok).toBe(false);
    a.client(encodeJv1(PacketType.DATA, idBytes, new Uint8Array(4)), t); // held while frozen
    expect(rec.held).toHaveLength(1);
    clock.advance(4000);
    a.own.thawStale(clock.now(), 5000);
    await settle();
    expect(rec.state).toBe('FROZEN'); // not stale yet
    mem.setUnavailable(false);
    clock.advance(1000);
    a.own.thawStale(clock.now(), 5000);
    await settle();
    expect(rec).toMatchObject({ state: 'ATTACHED', version: 3n, held: null });
    expect(a.audit.recent({ session: id, limit: 10 }).filter((l) => l.event === 'resume').map((l) => l.cause)).toEqual(['stale_freeze']);
  });

  it('a drain retrying a session left frozen goes on from the transfer (no second freeze)', async () => {
    const clock = new ManualClock();
    const mem = new MemoryStore();
    const a = director('dir-a', mem, clock);
    const idBytes = counterId(14);
    a.client(encodeJv1(PacketType.HELLO, idBytes, new Uint8Array(4)), clientTransport(5));
    await settle();
    const id = sessionIdHex(idBytes);
    const rec = a.core.table.get(id)!;
    const to = rec.owner === 'node-a' ? 'node-b' : 'node-a';
    expect((await a.own.step(rec, LifecycleEvent.FREEZE, { cause: 'test', actor: 'op' })).ok).toBe(true);
    const r = await a.own.migrate(id, { to, cause: 'drain', actor: 'op' });
    expect(r).toMatchObject({ ok: true, to, version: 4n });
    expect(a.audit.recent({ session: id, limit: 10 }).map((l) => l.event)).toEqual(['create', 'freeze', 'transfer', 'resume']);
  });
});

describe('refreshSlots (how much of the table a refresh call looks at)', () => {
  it('a whole pass on the first call; its share of a pass by the time since the previous call; a floor; never more than a pass', () => {
    expect(refreshSlots(1 << 21, Infinity, 10_000)).toBe(1 << 21);
    expect(refreshSlots(1 << 21, 1000, 10_000)).toBe(Math.ceil((1 << 21) / 10)); // a tenth of the pass time: a tenth of the slots
    expect(refreshSlots(1 << 21, 20_000, 10_000)).toBe(1 << 21);
    expect(refreshSlots(1 << 21, 1, 10_000)).toBe(4096);
    expect(refreshSlots(1024, 1, 10_000)).toBe(1024); // a small table: whole, every call
    expect(refreshSlots(1 << 21, -5, 10_000)).toBe(4096); // a clock that went back: the floor
    expect(refreshSlots(1 << 21, 1000, 0)).toBe(1 << 21);
    expect(refreshSlots(0, 1000, 10_000)).toBe(0);
  });

  it('property: calls that together last a pass look at every slot at least once', () => {
    fc.assert(
      fc.property(fc.integer({ min: 16, max: 1 << 22 }), fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 200 }), fc.integer({ min: 100, max: 100_000 }), (slots, gaps, passMs) => {
        let looked = 0;
        let elapsed = 0;
        for (const g of gaps) {
          looked += refreshSlots(slots, g, passMs);
          elapsed += g;
        }
        if (elapsed >= passMs) expect(looked).toBeGreaterThanOrEqual(slots);
        for (const g of gaps) expect(refreshSlots(slots, g, passMs)).toBeLessThanOrEqual(slots);
      }),
    );
  });
});
