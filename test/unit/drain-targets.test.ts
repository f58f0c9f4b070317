// Where a migration's sessions go when nodes change under it (found by review): the target is checked
// again before the transfer (a node that started draining or went unhealthy during the freeze and the
// quiesce gets none of them), a drain does not finish while another migration's transfer to its node is
// being written, and a session transferred but not resumed counts as moved.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { DrainCoordinator, type DrainView } from '../../src/drain/coordinator.js';
import { createHasher } from '../../src/ring/hash.js';
import { buildRing, type Ring } from '../../src/ring/ring.js';
import { SessionState } from '../../src/session/lifecycle.js';
import type { SessionRecord } from '../../src/session/table.js';
import { systemClock } from '../../src/util/clock.js';
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
function rig(quiesceMs: number, published: DrainView[] = []): { h: Harness; drains: DrainCoordinator; clockReads: () => number } {
  let reads = 0;
  const clock = { ...systemClock, now: (): number => (reads++, systemClock.now()) };
  const h: Harness = makeHarness({ ring, clock: systemClock, quiesceMs, eligible: (n) => h.core.ring.nodes.some((x) => x.id === n) });
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
  }, 20_000);

  it('an undrain while a batch is frozen (in its quiesce) stops it before its transfer: its sessions are thawed on their node, and the record shared at the end says so', async () => {
    const published: DrainView[] = [];
    const { h, drains } = rig(200, published);
    const recs: SessionRecord[] = [];
    let t = 0;
    for (const id of idsOwnedBy(ring, 'node-a', 40)) recs.push(await h.admit(id, clientTransport(100 + t++)));
    const { view } = drains.start('node-a', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' });
    await waitFor('frozen', () => recs.some((r) => r.state === SessionState.FROZEN) || undefined, { intervalMs: 1 });
    const cancelled = drains.undrain('node-a')!;
    expect(cancelled.state).toBe('cancelled');
    const onA = h.core.table.countByOwner('node-a');
    await waitFor('every session thawed', () => recs.every((r) => r.state === SessionState.ATTACHED && r.pending === null) || undefined, { timeoutMs: 5000 });
    expect(h.core.table.countByOwner('node-a')).toBe(onA);
    const final = drains.get(view.id)!;
    await waitFor('the final record shared', () => (published.at(-1)?.moved === final.moved && published.at(-1)?.remaining === final.remaining) || undefined);
    expect(published.at(-1)).toMatchObject({ state: 'cancelled', moved: final.moved, remaining: onA });
  });
});
