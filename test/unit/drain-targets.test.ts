// Where a migration's sessions go when nodes change under it (found by review): the target is checked
// again before the transfer (a node that started draining or went unhealthy during the freeze and the
// quiesce gets none of them), a drain does not finish while another migration's transfer to its node is
// being written, and a session transferred but not resumed counts as moved.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { parseHostPortLiteral } from '../../src/config/load.js';
import { DrainCoordinator, type DrainView } from '../../src/drain/coordinator.js';
import { LifecycleEvent } from '../../src/session/lifecycle.js';
import type { StoredSession } from '../../src/store/store.js';
import { createHasher } from '../../src/ring/hash.js';
import { buildRing, type Ring } from '../../src/ring/ring.js';
import { SessionState } from '../../src/session/lifecycle.js';
import type { SessionRecord } from '../../src/session/table.js';
import { systemClock, type Clock } from '../../src/util/clock.js';
import { clientTransport, idsOwnedBy, makeHarness, type Harness } from '../helpers/ownership-harness.js';
import { waitFor } from '../helpers/wait.js';

let ring: Ring;
beforeAll(async () => {
  ring = buildRing(await createHasher(), ['node-a', 'node-b', 'node-c'].map((id) => ({ id, weight: 1 })));
});
const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

/** The harness and a drain coordinator wired as anchor.ts wires them: a draining node leaves the ring, and only ring nodes are eligible. */
function rig(quiesceMs: number, published: DrainView[] = [], own: { clock?: Clock; unknownWriteBoundMs?: number; sessionMax?: number } = {}): { h: Harness; drains: DrainCoordinator; clockReads: () => number } {
  let reads = 0;
  const clock = { ...systemClock, now: (): number => (reads++, systemClock.now()) };
  const h: Harness = makeHarness({
    ring,
    clock: own.clock ?? systemClock,
    quiesceMs,
    eligible: (n) => h.core.ring.nodes.some((x) => x.id === n),
    ...(own.unknownWriteBoundMs !== undefined ? { unknownWriteBoundMs: own.unknownWriteBoundMs } : {}),
    ...(own.sessionMax !== undefined ? { limits: { sessionMax: own.sessionMax } } : {}),
  });
  const drains = new DrainCoordinator(
    { rate: 100_000, concurrency: 16, tickMs: 5, directorId: 'dir-test' },
    {
      core: h.core,
      ownership: h.own,
      clock,
      logger: pino({ level: 'silent' }),
      stats: h.stats,
      setDraining: (n, on) => h.core.setRing(on ? h.core.ring.without([n]) : h.core.ring.with({ id: n, weight: 1 })),
      publish: (v) => published.push(v),
    },
  );
  cleanup.push(() => {
    drains.close();
    h.own.close();
  });
  return { h, drains, clockReads: () => reads };
}

const finished = (drains: DrainCoordinator, id: string) => () => {
  const v = drains.get(id)!;
  return v.state !== 'running' && v.state !== 'waiting' ? v : undefined;
};

describe('migration targets', () => {
  it('a node that starts draining while another drain\'s sessions are frozen (their targets picked) gets none of them; its drain completes with none left', async () => {
    const { h, drains } = rig(200);
    const recs: SessionRecord[] = [];
    let t = 0;
    for (const id of idsOwnedBy(ring, 'node-a', 40)) recs.push(await h.admit(id, clientTransport(t++)));
    expect(recs.some((r) => ring.pickExcluding(r.idBytes, new Set(['node-a'])) === 'node-b')).toBe(true);
    const a = drains.start('node-a', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' }).view;
    await waitFor('a session bound for node-b frozen', () => recs.some((r) => r.state === SessionState.FROZEN && ring.pickExcluding(r.idBytes, new Set(['node-a'])) === 'node-b') || undefined, { intervalMs: 1 });
    const b = drains.start('node-b', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' }).view;
    const bDone = await waitFor('node-b drained', finished(drains, b.id));
    const aDone = await waitFor('node-a drained', finished(drains, a.id));
    expect([aDone.state, aDone.moved, bDone.state]).toEqual(['completed', 40, 'completed']);
    expect(h.core.table.countByOwner('node-a')).toBe(0);
    expect(h.core.table.countByOwner('node-b')).toBe(0);
    expect(h.core.table.countByOwner('node-c')).toBe(40);
  });

  it('a migration whose ring-picked target leaves the ring during the quiesce goes to another node; a named target that leaves fails it (bad_target) and the session is thawed in place', async () => {
    const { h } = rig(100);
    const [id, id2] = idsOwnedBy(ring, 'node-a', 2);
    const rec = await h.admit(id!, clientTransport(1));
    const target = ring.pickExcluding(rec.idBytes, new Set(['node-a']))!;
    const p = h.own.migrateBatch([rec.id], { cause: 'failover', actor: 'auto-failover' });
    await waitFor('frozen', () => rec.state === SessionState.FROZEN || undefined, { intervalMs: 1 });
    h.core.setRing(h.core.ring.without([target])); // unhealthy now
    const [r] = await p;
    expect(r).toMatchObject({ ok: true, from: 'node-a' });
    expect(rec.owner).not.toBe(target);
    expect(rec.owner).not.toBe('node-a');
    h.core.setRing(ring);
    const rec2 = await h.admit(id2!, clientTransport(2));
    const p2 = h.own.migrateBatch([rec2.id], { to: 'node-b', cause: 'migrate', actor: 'op' });
    await waitFor('frozen', () => rec2.state === SessionState.FROZEN || undefined, { intervalMs: 1 });
    h.core.setRing(h.core.ring.without(['node-b']));
    const [r2] = await p2;
    expect(r2).toMatchObject({ ok: false, reason: 'bad_target' });
    expect([rec2.owner, rec2.state]).toEqual(['node-a', SessionState.ATTACHED]);
  });

  it('a drain does not finish while another migration\'s transfer to its node is being written; the session that lands there is moved on', async () => {
    const { h, drains, clockReads } = rig(0);
    const [id] = idsOwnedBy(ring, 'node-a', 1);
    const rec = await h.admit(id!, clientTransport(3));
    let release: (() => void) | null = null;
    let b: string | null = null;
    h.store.beforeUpdate = async (record) => {
      if (record.owner === 'node-b' && record.state === SessionState.FROZEN && b === null) {
        // The transfer to node-b is being written: node-b's drain starts now (node-b has no session yet).
        b = drains.start('node-b', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' }).view.id;
        await new Promise<void>((r) => (release = r));
      }
    };
    const p = h.own.migrateBatch([rec.id], { to: 'node-b', cause: 'migrate', actor: 'op' });
    await waitFor('node-b drain started', () => (b !== null && release !== null) || undefined);
    expect(h.own.transfersInFlightTo('node-b')).toBe(1);
    // Ticks pass (the coordinator reads its clock each one) with node-b empty: its drain waits for the transfer.
    const reads = clockReads();
    await waitFor('drain ticks', () => clockReads() > reads + 40 || undefined);
    expect(drains.get(b!)!.state).toBe('running');
    release!();
    expect((await p)[0]).toMatchObject({ ok: true, to: 'node-b' });
    const bDone = await waitFor('node-b drained', finished(drains, b!));
    expect([bDone.state, bDone.moved]).toEqual(['completed', 1]);
    expect(rec.owner).not.toBe('node-b');
  });

  it('a session whose transfer committed but whose resume the store kept refusing counts as moved, not as ended', async () => {
    const { h, drains } = rig(0);
    const recs: SessionRecord[] = [];
    for (const [i, id] of idsOwnedBy(ring, 'node-a', 3).entries()) recs.push(await h.admit(id, clientTransport(10 + i)));
    const victim = recs[1]!;
    h.store.beforeUpdate = (record) => {
      if (record.id === victim.id && record.state === SessionState.ATTACHED && record.owner !== 'node-a') return { ok: false, reason: 'unavailable', message: 'store down (test)' };
    };
    const d = drains.start('node-a', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' }).view;
    const done = await waitFor('drained', finished(drains, d.id), { timeoutMs: 15_000 });
    expect(done).toMatchObject({ state: 'completed', total: 3, moved: 3, failed: 0, ended: 0, remaining: 0 });
    expect([victim.owner !== 'node-a', victim.state]).toEqual([true, SessionState.FROZEN]);
    // Counted as what it is, not as the store failure that kept it frozen.
    expect([h.stats.migrations.get('transferred'), h.stats.migrations.get('ok'), h.stats.migrations.get('unavailable')]).toEqual([1, 2, 0]);
  }, 20_000);

  it('an undrain while a batch is frozen (in its quiesce) stops it before its transfer: its sessions are thawed on their node', async () => {
    const { h, drains } = rig(200);
    const recs: SessionRecord[] = [];
    let t = 0;
    for (const id of idsOwnedBy(ring, 'node-a', 40)) recs.push(await h.admit(id, clientTransport(100 + t++)));
    drains.start('node-a', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' });
    await waitFor('frozen', () => recs.some((r) => r.state === SessionState.FROZEN) || undefined, { intervalMs: 1 });
    expect(drains.undrain('node-a')!.state).toBe('cancelled');
    const onA = h.core.table.countByOwner('node-a');
    await waitFor('every session thawed', () => recs.every((r) => r.state === SessionState.ATTACHED && r.pending === null) || undefined, { timeoutMs: 5000 });
    expect(h.core.table.countByOwner('node-a')).toBe(onA);
    expect(onA).toBe(40);
  });

  it('a batch stopped before its first step (undrained as it waits for its turn) changes nothing: no freeze, no write, every session "cancelled"', async () => {
    const { h } = rig(0);
    const recs: SessionRecord[] = [];
    for (const [i, id] of idsOwnedBy(ring, 'node-a', 5).entries()) recs.push(await h.admit(id, clientTransport(300 + i)));
    const writes = h.store.updates.length;
    let wanted = true;
    const p = h.own.migrateBatch(recs.map((r) => r.id), { cause: 'drain', actor: 'op', proceed: () => wanted });
    wanted = false; // the undrain comes before the batch's first turn of the event loop
    const results = await p;
    expect(results.map((r) => (r.ok ? 'ok' : r.reason))).toEqual(Array(5).fill('cancelled'));
    expect(h.store.updates.length).toBe(writes);
    expect(recs.map((r) => [r.owner, r.state])).toEqual(Array(5).fill(['node-a', SessionState.ATTACHED]));
    expect(h.auditLines().filter((l) => l.event === LifecycleEvent.FREEZE)).toEqual([]);
  });

  it('a batch in its transfer write when the drain is undrained still lands; the record shared at the end counts it as moved', async () => {
    const published: DrainView[] = [];
    const { h, drains } = rig(0, published);
    for (const [i, id] of idsOwnedBy(ring, 'node-a', 40).entries()) await h.admit(id, clientTransport(400 + i));
    let release: (() => void) | null = null;
    h.store.beforeUpdate = async (record) => {
      if (record.owner !== 'node-a' && record.state === SessionState.FROZEN && release === null) await new Promise<void>((r) => (release = r));
    };
    const { view } = drains.start('node-a', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' });
    await waitFor('a transfer being written', () => release !== null || undefined, { intervalMs: 1 });
    const atUndrain = drains.undrain('node-a')!;
    expect([atUndrain.state, atUndrain.moved]).toEqual(['cancelled', 0]);
    expect(published.at(-1)).toMatchObject({ state: 'cancelled', moved: 0 });
    release!();
    await waitFor('the held batch settled', () => (drains.get(view.id)!.moved > 0 ? true : undefined));
    const final = drains.get(view.id)!;
    expect(h.core.table.countByOwner('node-a')).toBe(40 - final.moved);
    await waitFor('the final record shared', () => (published.at(-1)?.moved === final.moved || undefined), { timeoutMs: 5000 });
    expect(published.at(-1)).toMatchObject({ state: 'cancelled', moved: final.moved, remaining: 40 - final.moved });
  });

  it('a transfer whose answer was lost (it may still land) keeps its target\'s drain from finishing until it shows which way it went', async () => {
    const { h, drains, clockReads } = rig(0);
    h.own.followStore((key) => {
      const t = parseHostPortLiteral(key);
      return t === undefined ? null : { t, key, listener: 0 };
    });
    const [id] = idsOwnedBy(ring, 'node-a', 1);
    const rec = await h.admit(id!, clientTransport(500));
    // The transfer to node-b is sent and its answer lost; the store applies it later (`land`). Meanwhile
    // the store answers nothing else (the thaw fails too).
    let land: (() => Promise<unknown>) | null = null;
    let down = false;
    h.store.beforeUpdate = (record: StoredSession, expect: bigint) => {
      if (down) return { ok: false, reason: 'unavailable', message: 'store down (test)' };
      if (record.owner === 'node-b' && record.state === SessionState.FROZEN && land === null) {
        land = () => h.mem.update(record, expect);
        down = true;
        return { ok: false, reason: 'unavailable', message: 'answer lost (test)', maybeApplied: true };
      }
    };
    const [r] = await h.own.migrateBatch([rec.id], { to: 'node-b', cause: 'migrate', actor: 'op' });
    expect(r).toMatchObject({ ok: false, reason: 'unavailable' });
    expect([rec.owner, h.core.table.countByOwner('node-b')]).toEqual(['node-a', 0]);
    expect(h.own.transfersInFlightTo('node-b')).toBe(1);
    down = false;
    const b = drains.start('node-b', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' }).view;
    const reads = clockReads();
    await waitFor('drain ticks', () => clockReads() > reads + 40 || undefined);
    expect(drains.get(b.id)!.state).toBe('running');
    // The transfer lands; the watch brings it; node-b's drain moves the session on.
    expect(await land!()).toMatchObject({ ok: true });
    await waitFor('the session seen on node-b', () => (rec.owner === 'node-b' ? true : undefined));
    expect(h.own.transfersInFlightTo('node-b')).toBe(0);
    const bDone = await waitFor('node-b drained', finished(drains, b.id), { timeoutMs: 10_000 });
    expect([bDone.state, bDone.moved]).toEqual(['completed', 1]);
    expect(['node-a', 'node-c']).toContain(rec.owner);
  });

  it('a lost-answer transfer the watch shows landed after its migration gave it up is that transfer: audited as one, REVOKE to the node it left, resumed by the sweep', async () => {
    const { h } = rig(0);
    const [id] = idsOwnedBy(ring, 'node-a', 1);
    const rec = await h.admit(id!, clientTransport(550));
    // The transfer lands in the store but its answer is lost, and the watch is slower than the thaw that
    // follows (an etcd watch reconnecting): the thaw loses to it, and the watch brings the transfer later.
    const held: (() => void)[] = [];
    let slow = false;
    h.store.beforeUpdate = async (record: StoredSession, expectVersion: bigint) => {
      if (record.owner === 'node-b' && record.state === SessionState.FROZEN) {
        slow = true;
        expect(await h.mem.update(record, expectVersion)).toMatchObject({ ok: true });
        return { ok: false, reason: 'unavailable', message: 'answer lost (test)', maybeApplied: true };
      }
    };
    const feed = h.mem.watch.bind(h.mem);
    h.mem.watch = (l) => feed((ev) => (slow ? held.push(() => l(ev)) : l(ev)));
    h.own.followStore((key) => {
      const t = parseHostPortLiteral(key);
      return t === undefined ? null : { t, key, listener: 0 };
    });
    const [r] = await h.own.migrateBatch([rec.id], { to: 'node-b', cause: 'migrate', actor: 'op' });
    expect(r).toMatchObject({ ok: false });
    expect(rec.owner).toBe('node-a');
    expect(h.path.revokes).toEqual([]);
    h.store.beforeUpdate = null;
    slow = false;
    for (const deliver of held.splice(0)) deliver();
    expect([rec.owner, rec.formerOwner]).toEqual(['node-b', 'node-a']);
    const transfer = h.auditLines(rec.id).filter((l) => l.event === 'transfer');
    expect(transfer).toEqual([expect.objectContaining({ cause: 'migrate', actor: 'op', from_owner: 'node-a', to_owner: 'node-b', from_version: '2', to_version: '3' })]);
    expect(h.path.revokes).toEqual([expect.objectContaining({ node: 'node-a', version: 3n, session: rec.id })]);
    expect(h.own.transfersInFlightTo('node-b')).toBe(0);
    // Frozen on its new owner until the stale-freeze sweep resumes it there.
    expect(rec.state).toBe(SessionState.FROZEN);
    h.own.thawStale(systemClock.now() + 60_000, 1);
    await waitFor('resumed on node-b', () => (rec.state === SessionState.ATTACHED ? true : undefined));
    expect(rec.owner).toBe('node-b');
  });

  it('a session ended here after its transfer\'s answer was lost still holds the target\'s drain (its end is not yet in the store, the transfer may land first), until the bound passes', async () => {
    // Ownership's clock runs ahead of the wall clock by `skip` (the test moves it past the bound).
    let skip = 0;
    const ownClock: Clock = { ...systemClock, now: () => systemClock.now() + skip };
    const { h, drains, clockReads } = rig(0, [], { clock: ownClock, unknownWriteBoundMs: 60_000 });
    const [id] = idsOwnedBy(ring, 'node-a', 1);
    const rec = await h.admit(id!, clientTransport(600));
    let down = false;
    h.store.beforeUpdate = (record: StoredSession) => {
      if (down) return { ok: false, reason: 'unavailable', message: 'store down (test)' };
      if (record.owner === 'node-b' && record.state === SessionState.FROZEN) {
        down = true;
        return { ok: false, reason: 'unavailable', message: 'answer lost (test)', maybeApplied: true };
      }
    };
    h.store.beforeDelete = () => ({ ok: false, reason: 'unavailable', message: 'store down (test)' });
    const [r] = await h.own.migrateBatch([rec.id], { to: 'node-b', cause: 'migrate', actor: 'op' });
    expect(r).toMatchObject({ ok: false, reason: 'unavailable' });
    expect(h.own.terminate(rec.id, 'test_end', 'op')).toMatchObject({ ok: true });
    expect(h.core.table.get(rec.id)).toBeUndefined();
    expect(h.own.transfersInFlightTo('node-b')).toBe(1);
    const b = drains.start('node-b', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' }).view;
    const reads = clockReads();
    await waitFor('drain ticks', () => clockReads() > reads + 40 || undefined);
    expect(drains.get(b.id)!.state).toBe('running');
    skip = 60_000; // the bound passes with nothing shown: the transfer is taken as never landing
    const bDone = await waitFor('node-b drained', finished(drains, b.id), { timeoutMs: 10_000 });
    expect([bDone.state, bDone.moved]).toEqual(['completed', 0]);
    expect(h.own.transfersInFlightTo('node-b')).toBe(0);
  });

  it('a lost-answer transfer is forgotten once the thaw on the same version commits (the transfer can no longer land)', async () => {
    const { h } = rig(0);
    const [id] = idsOwnedBy(ring, 'node-a', 1);
    const rec = await h.admit(id!, clientTransport(700));
    h.store.beforeUpdate = (record: StoredSession) => {
      if (record.owner === 'node-b' && record.state === SessionState.FROZEN) return { ok: false, reason: 'unavailable', message: 'answer lost (test)', maybeApplied: true };
    };
    const before = rec.version;
    const [r] = await h.own.migrateBatch([rec.id], { to: 'node-b', cause: 'migrate', actor: 'op' });
    expect(r).toMatchObject({ ok: false, reason: 'unavailable' });
    // The transfer never reached the store; the thaw (transfer_aborted) committed on the version it was written on.
    expect([rec.owner, rec.state, rec.version]).toEqual(['node-a', SessionState.ATTACHED, before + 2n]);
    expect(h.own.transfersInFlightTo('node-b')).toBe(0);
  });

  it('a finished drain\'s figures stay as they were when it finished, whatever its node receives later', async () => {
    const { h, drains } = rig(0);
    const ids = idsOwnedBy(ring, 'node-a', 5);
    for (const [i, id] of ids.slice(0, 3).entries()) await h.admit(id, clientTransport(800 + i));
    const d = drains.start('node-a', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' }).view;
    const done = await waitFor('drained', finished(drains, d.id));
    expect(done).toMatchObject({ state: 'completed', total: 3, moved: 3, remaining: 0, ended: 0 });
    drains.undrain('node-a');
    for (const [i, id] of ids.slice(3).entries()) await h.admit(id, clientTransport(810 + i));
    expect(h.core.table.countByOwner('node-a')).toBe(2);
    expect(drains.get(d.id)).toMatchObject({ state: 'completed', total: 3, moved: 3, remaining: 0, ended: 0 });
  });

  it('a move the shared store refuses because its target began draining on another director (staleNodeState): thawed on its owner, counted, not a security event; the drain moves it again elsewhere and completes', async () => {
    const { h, drains } = rig(0);
    const recs: SessionRecord[] = [];
    for (const [i, id] of idsOwnedBy(ring, 'node-a', 30).entries()) recs.push(await h.admit(id, clientTransport(900 + i)));
    const toB = recs.filter((r) => ring.pickExcluding(r.idBytes, new Set(['node-a'])) === 'node-b').map((r) => r.id);
    expect(toB.length).toBeGreaterThan(0);
    const refused: string[] = [];
    h.store.beforeUpdate = (record) => {
      if (record.owner !== 'node-b') return undefined;
      // Another director's draining write of node-b landed just before: the store refuses the move, and
      // the watch then brings the state (node-b leaves this director's ring; batches planned after it
      // pick node-c).
      refused.push(record.id);
      if (h.core.ring.nodes.some((x) => x.id === 'node-b')) h.core.setRing(h.core.ring.without(['node-b']));
      return { ok: false, reason: 'unavailable', message: "node node-b's state was written after revision 7", staleNodeState: true };
    };
    const d = drains.start('node-a', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' }).view;
    const done = await waitFor('node-a drained', finished(drains, d.id));
    expect(done).toMatchObject({ state: 'completed', total: 30, moved: 30, remaining: 0, ended: 0 });
    expect(refused.length).toBeGreaterThan(0);
    expect(toB).toEqual(expect.arrayContaining(refused));
    expect(h.stats.transfersStaleNodeState).toBe(refused.length);
    expect(h.core.table.countByOwner('node-a')).toBe(0);
    expect(h.core.table.countByOwner('node-b')).toBe(0);
    expect(h.core.table.countByOwner('node-c')).toBe(30);
    expect(h.auditLines().filter((l) => l.event === 'SECURITY_EVENT')).toEqual([]);
    // Each refused session was thawed on node-a, then moved: a resume after the aborted transfer.
    for (const id of refused) {
      const lines = h.auditLines(id).map((l) => `${l.event}/${l.cause}/${l.to_owner}`);
      expect(lines).toEqual(['create/hello/node-a', 'freeze/drain/node-a', 'resume/transfer_aborted/node-a', 'freeze/drain/node-a', 'transfer/drain/node-c', 'resume/drain/node-c']);
    }
  });

  it('a drain through a director whose table is full (session.max) does not complete while the store has sessions of the node the table could not take: it fails naming them; once the table holds them a drain moves them; sessions left out on other nodes do not hold it up', async () => {
    const { h, drains } = rig(0, [], { sessionMax: 6 });
    h.own.followStore((key) => {
      const t = parseHostPortLiteral(key);
      return t === undefined ? null : { t, key, listener: 0 };
    });
    for (const [i, id] of idsOwnedBy(ring, 'node-a', 4).entries()) await h.admit(id, clientTransport(1000 + i));
    const onB: SessionRecord[] = [];
    for (const [i, id] of idsOwnedBy(ring, 'node-b', 2).entries()) onB.push(await h.admit(id, clientTransport(1100 + i)));
    expect(h.core.table.full).toBe(true);
    // Another director admits two sessions to node-a and one to node-c: the watch brings them, and the full
    // table leaves them out.
    const remote = (tag: string, owner: string, port: number): StoredSession => ({ id: tag.padStart(32, '0'), owner, version: 1n, state: SessionState.ATTACHED, transport: `192.0.2.77:${port}`, director: 'dir-other', expiresAt: Date.now() + 3_600_000, incarnation: 9 });
    const onA = [remote('f1', 'node-a', 4001), remote('f2', 'node-a', 4002)];
    const onC = remote('f3', 'node-c', 4003);
    for (const r of [...onA, onC]) expect(await h.mem.create(r)).toMatchObject({ ok: true });
    expect(h.stats.remoteChanges.get('not_held')).toBe(3);
    expect([h.own.notHeldOn('node-a'), h.own.notHeldOn('node-c'), h.own.notHeldOn('node-b')]).toEqual([2, 1, 0]);
    // The drain moves the four it holds, asks the store, and fails: two of the node's sessions are out of its reach.
    let listings = 0;
    const list = h.store.listByOwner.bind(h.store);
    h.store.listByOwner = (owner) => (listings++, list(owner));
    const first = drains.start('node-a', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' }).view;
    const failed = await waitFor('the drain to finish', finished(drains, first.id));
    expect(failed).toMatchObject({ state: 'failed', moved: 4, failed: 2, remaining: 2 });
    expect(failed.last_error).toMatch(/^2 session\(s\) of node-a are in the store but not in this director's table \(session\.max reached\)/);
    expect(listings).toBe(2); // failed on the second answer in a row, a second after the first
    expect(((await h.store.listByOwner('node-a')) as { records: unknown[] }).records).toHaveLength(2);
    // Room: the other director ends node-b's two sessions; then it writes node-a's two again (a jump, say),
    // and the table takes them. A drain of node-a moves them and completes, while the session left out on
    // node-c changes all the time (every change of it is left out again).
    for (const r of onB) expect(await h.mem.delete(r.id, r.version, r.incarnation)).toMatchObject({ ok: true });
    await waitFor('room in the table', () => !h.core.table.full || undefined);
    for (const r of onA) expect(await h.mem.update({ ...r, version: 2n, transport: '192.0.2.78:5000' }, 1n)).toMatchObject({ ok: true });
    expect(onA.map((r) => h.core.table.get(r.id)?.owner)).toEqual(['node-a', 'node-a']);
    expect(h.core.table.full).toBe(true);
    let expiry = onC.expiresAt;
    const churn = setInterval(() => void h.mem.refresh(onC.id, 1n, (expiry += 1000), 'dir-other', 9), 2);
    try {
      const second = drains.start('node-a', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' }).view;
      const done = await waitFor('the second drain to finish', finished(drains, second.id));
      expect(done).toMatchObject({ state: 'completed', moved: 2, remaining: 0, last_error: null });
    } finally {
      clearInterval(churn);
    }
    expect(h.own.notHeldOn('node-c')).toBeGreaterThan(1);
    expect(((await h.store.listByOwner('node-a')) as { records: unknown[] }).records).toEqual([]);
  });
});
