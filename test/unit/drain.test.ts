// The drain plan (pure: where each session of a node would go, progress arithmetic) and the
// DrainCoordinator over a real DirectorCore + Ownership + MemoryStore with a recording DataPath, its
// real interval timer and bounded polling (no fixed sleeps, no assertions on speed).
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { pino } from 'pino';
import { sessionIdHex } from '../../src/codec/jv1.js';
import { PacketType } from '../../src/codec/types.js';
import { DrainCoordinator, parseDrainView, type DrainOptions, type DrainView } from '../../src/drain/coordinator.js';
import { drainProgress, planDrain, type PlanSession } from '../../src/drain/plan.js';
import { createHasher, type Hasher } from '../../src/ring/hash.js';
import { buildRing, type Ring } from '../../src/ring/ring.js';
import type { SessionRecord } from '../../src/session/table.js';
import { systemClock } from '../../src/util/clock.js';
import { clientTransport, counterId, idsOwnedBy, makeHarness, packet, type Harness } from '../helpers/ownership-harness.js';
import { waitFor } from '../helpers/wait.js';

const NODES = ['node-a', 'node-b', 'node-c'] as const;
let hasher: Hasher;
let ring: Ring;

beforeAll(async () => {
  hasher = await createHasher();
  ring = buildRing(
    hasher,
    NODES.map((id) => ({ id, weight: 1 })),
  );
});

// ------------------------------------------------------------------------------------------ planDrain
function planSession(n: number, owner: string, version = 1n): PlanSession {
  const idBytes = counterId(n);
  return { id: sessionIdHex(idBytes), idBytes, owner, version };
}

describe('planDrain', () => {
  it('every session of the node goes to ring.pickExcluding(id, {node}); other nodes’ sessions are ignored', () => {
    const sessions: PlanSession[] = [];
    for (let n = 1; n <= 300; n++) sessions.push(planSession(n, NODES[n % 3]!, BigInt(n)));
    const plan = planDrain('node-a', [...sessions].reverse(), ring);
    const mine = sessions.filter((s) => s.owner === 'node-a');
    expect(plan.node).toBe('node-a');
    expect(plan.unplaceable).toEqual([]);
    expect(plan.moves).toHaveLength(mine.length);
    // In id order, each exactly once, with its version.
    expect(plan.moves.map((m) => m.session)).toEqual(mine.map((s) => s.id).sort());
    for (const m of plan.moves) {
      const s = mine.find((x) => x.id === m.session)!;
      expect(m).toEqual({ session: s.id, from: 'node-a', to: ring.pickExcluding(s.idBytes, new Set(['node-a'])), version: s.version });
      expect(m.to).not.toBe('node-a');
    }
    const sum = Object.values(plan.byTarget).reduce((a, b) => a + b, 0);
    expect(sum).toBe(plan.moves.length);
    for (const [to, count] of Object.entries(plan.byTarget)) expect(count).toBe(plan.moves.filter((m) => m.to === to).length);
    expect(Object.keys(plan.byTarget).sort()).toEqual(['node-b', 'node-c']);
  });

  it('unplaceable when no other node is in the ring', () => {
    const solo = buildRing(hasher, [{ id: 'node-a', weight: 1 }]);
    const sessions = [planSession(1, 'node-a'), planSession(2, 'node-a'), planSession(3, 'node-b')];
    const plan = planDrain('node-a', sessions, solo);
    expect(plan.moves).toEqual([]);
    expect(plan.byTarget).toEqual({});
    expect(plan.unplaceable).toEqual([sessions[0]!.id, sessions[1]!.id].sort());
    expect(planDrain('node-a', sessions, buildRing(hasher, []))).toMatchObject({ moves: [], unplaceable: [sessions[0]!.id, sessions[1]!.id].sort() });
  });

  it('nodes named like Object\'s own properties are counted like any other', () => {
    const odd = buildRing(hasher, ['node-a', '__proto__', 'constructor', 'toString'].map((id) => ({ id, weight: 1 })));
    const sessions = Array.from({ length: 200 }, (_, i) => planSession(i + 1, 'node-a'));
    const plan = planDrain('node-a', sessions, odd);
    expect(Object.keys(plan.byTarget).sort()).toEqual(['__proto__', 'constructor', 'toString']);
    expect(Object.values(plan.byTarget).reduce((a, b) => a + b, 0)).toBe(200);
    for (const to of ['__proto__', 'constructor', 'toString']) expect(plan.byTarget[to]).toBe(plan.moves.filter((m) => m.to === to).length);
    expect(JSON.parse(JSON.stringify(plan.byTarget))).toEqual(plan.byTarget);
  });

  it('a node without sessions has an empty plan', () => {
    expect(planDrain('node-c', [planSession(1, 'node-a')], ring)).toEqual({ node: 'node-c', moves: [], unplaceable: [], byTarget: {} });
  });

  it('property: moves ∪ unplaceable = the node’s sessions; byTarget sums to the moves; never to the node itself', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 1_000_000 }), { maxLength: 80 }),
        fc.array(fc.constantFrom(...NODES), { minLength: 80, maxLength: 80 }),
        fc.subarray([...NODES]),
        fc.constantFrom(...NODES),
        (ns, owners, inRing, node) => {
          const r = buildRing(
            hasher,
            inRing.map((id) => ({ id, weight: 1 })),
          );
          const sessions = ns.map((n, i) => planSession(n, owners[i]!));
          const plan = planDrain(node, sessions, r);
          const mine = sessions.filter((s) => s.owner === node).map((s) => s.id).sort();
          expect([...plan.moves.map((m) => m.session), ...plan.unplaceable].sort()).toEqual(mine);
          expect(Object.values(plan.byTarget).reduce((a, b) => a + b, 0)).toBe(plan.moves.length);
          for (const m of plan.moves) {
            expect(m.to).not.toBe(node);
            expect(inRing).toContain(m.to);
          }
          if (inRing.some((n) => n !== node)) expect(plan.unplaceable).toEqual([]);
          else expect(plan.moves).toEqual([]);
        },
      ),
    );
  });
});

// ------------------------------------------------------------------------------------------ drainProgress
describe('drainProgress', () => {
  const base = { total: 100, moved: 0, failed: 0, remaining: 100, migratingSinceMs: null as number | null, nowMs: 10_000, configuredRate: 50 };

  it.each([
    ['not started, sessions left → rate 0, eta null', {}, { rate: 0, eta_s: null }],
    ['not started, nothing left → eta 0', { remaining: 0 }, { rate: 0, eta_s: 0 }],
    ['observed rate from moves: 50 in 10 s → 5/s; 50 left → 10 s', { moved: 50, remaining: 50, migratingSinceMs: 0 }, { rate: 5, eta_s: 10 }],
    ['nothing left → eta 0 with the observed rate', { moved: 100, remaining: 0, migratingSinceMs: 0 }, { rate: 10, eta_s: 0 }],
    ['just started (≤ 0.5 s): the configured rate', { moved: 3, remaining: 97, migratingSinceMs: 9_700 }, { rate: 50, eta_s: 1.9 }],
    ['started, nothing moved yet: the configured rate', { remaining: 100, migratingSinceMs: 0 }, { rate: 50, eta_s: 2 }],
    ['rounded to one decimal', { moved: 10, remaining: 10, migratingSinceMs: 7_000 }, { rate: 3.3, eta_s: 3 }],
    ['configured rate 0 and nothing moved → eta null', { remaining: 5, migratingSinceMs: 0, configuredRate: 0 }, { rate: 0, eta_s: null }],
  ] as const)('%s', (_d, over, want) => {
    expect(drainProgress({ ...base, ...over })).toEqual(want);
  });
});

// ------------------------------------------------------------------------------------------ coordinator
interface Rig {
  readonly h: Harness;
  readonly drains: DrainCoordinator;
  readonly draining: [string, boolean][];
  /** Records of the sessions placed on the node being drained. */
  readonly recs: SessionRecord[];
  /** Every drain record shared with other directors, in order. */
  readonly published: DrainView[];
}

const rigs: Rig[] = [];
afterEach(() => {
  for (const r of rigs.splice(0)) {
    r.drains.close();
    r.h.own.close();
  }
});

async function rig(node: string, count: number, opts: Partial<DrainOptions> = {}, others = 0, loopLag?: () => number, nodeStateSettled?: (node: string) => boolean): Promise<Rig> {
  const h = makeHarness({ ring, clock: systemClock });
  const draining: [string, boolean][] = [];
  const published: DrainView[] = [];
  const drains = new DrainCoordinator(
    { rate: 100_000, concurrency: 16, tickMs: 5, directorId: 'dir-test', ...opts },
    {
      core: h.core,
      ownership: h.own,
      clock: systemClock,
      logger: pino({ level: 'silent' }),
      stats: h.stats,
      setDraining: (n, on) => draining.push([n, on]),
      publish: (v) => published.push(v),
      ...(loopLag === undefined ? {} : { loopLag }),
      ...(nodeStateSettled === undefined ? {} : { nodeStateSettled }),
    },
  );
  const recs: SessionRecord[] = [];
  let t = 0;
  for (const id of idsOwnedBy(ring, node, count)) recs.push(await h.admit(id, clientTransport(t++)));
  for (const other of NODES.filter((n) => n !== node)) {
    for (const id of idsOwnedBy(ring, other, others, 5_000_000)) await h.admit(id, clientTransport(t++));
  }
  const r = { h, drains, draining, recs, published };
  rigs.push(r);
  return r;
}

const finished = (r: Rig, id: string) => (): DrainView | undefined => {
  const v = r.drains.get(id);
  return v !== undefined && v.state !== 'running' && v.state !== 'waiting' ? v : undefined;
};

/** Sessions moved by each time a drain was looked at (every 5 ms) until it finished. */
async function observeUntilFinished(r: Rig, id: string, t0: number): Promise<{ moved: number; elapsedS: number }[]> {
  const observations: { moved: number; elapsedS: number }[] = [];
  await waitFor(
    'drain finished',
    () => {
      observations.push({ moved: r.drains.get(id)!.moved, elapsedS: (systemClock.now() - t0) / 1000 });
      return finished(r, id)();
    },
    { intervalMs: 5, timeoutMs: 30_000 },
  );
  return observations;
}

describe('DrainCoordinator', () => {
  it('a migrate drain moves every session of the node elsewhere (table and store agree)', async () => {
    const r = await rig('node-a', 200, {}, 20);
    const { h } = r;
    const { view, created } = r.drains.start('node-a', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' });
    expect(created).toBe(true);
    expect(view).toMatchObject({ node: 'node-a', mode: 'migrate', cause: 'drain', state: 'running', total: 200, moved: 0, remaining: 200, failed: 0 });
    expect(view.id).toMatch(/^dr-/);
    expect(r.draining).toEqual([['node-a', true]]);

    const done = await waitFor('drain finished', finished(r, view.id));
    expect(done).toMatchObject({ state: 'completed', total: 200, moved: 200, remaining: 0, failed: 0, ended: 0, eta_s: 0, last_error: null });
    expect(done.finished_at).not.toBeNull();
    expect(h.core.table.countByOwner('node-a')).toBe(0);
    for (const rec of r.recs) {
      expect(rec.owner).not.toBe('node-a');
      expect(rec.owner).toBe(ring.pickExcluding(rec.idBytes, new Set(['node-a'])));
      expect(rec).toMatchObject({ version: 4n, state: 'ATTACHED', formerOwner: 'node-a' });
      expect(await h.store.record(rec.id)).toMatchObject({ owner: rec.owner, version: 4n, state: 'ATTACHED' });
    }
    const onA = await h.mem.listByOwner('node-a');
    expect(onA.ok && onA.records.length).toBe(0);
    // Sessions of other nodes were not touched.
    expect(h.core.table.countByOwner('node-b') + h.core.table.countByOwner('node-c')).toBe(240);
    expect(h.path.revokes).toHaveLength(200);
    for (const rv of h.path.revokes) expect(rv).toMatchObject({ node: 'node-a', version: 3n });
    // Completed, but node-a has confirmed none of them yet (nothing acknowledges here): the record says so.
    expect(r.drains.get(view.id)).toMatchObject({ state: 'completed', revokes_pending: 200, revokes_unacknowledged: 0 });
    for (const rv of h.path.revokes.slice(0, 150)) h.own.onRevokeAck(rv.session, rv.version, 'node-a');
    expect(r.drains.get(view.id)).toMatchObject({ revokes_pending: 50 });
    expect(h.stats.migrations.get('ok')).toBe(200);
    expect(h.stats.drainsFinished.get('completed')).toBe(1);
    expect(h.stats.drainsFinished.get('failed')).toBe(0);
    const transfers = h.auditLines().filter((l) => l.event === 'transfer');
    expect(transfers).toHaveLength(200);
    for (const l of transfers) expect(l).toMatchObject({ cause: 'drain', from_owner: 'node-a', actor: `drain:${view.id}` });
    expect(r.drains.list().map((d) => d.id)).toEqual([view.id]);
    expect(r.drains.active('node-a')).toBeUndefined();
  });

  it('the rate limit holds at every observation: moved ≤ rate × elapsed + 1', async () => {
    const rate = 400;
    const r = await rig('node-b', 60, { rate, concurrency: 4, tickMs: 5 });
    const t0 = systemClock.now();
    const { view } = r.drains.start('node-b', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' });
    const observations = await observeUntilFinished(r, view.id, t0);
    expect(r.drains.get(view.id)).toMatchObject({ state: 'completed', moved: 60 });
    // The budget only accrues at `rate` per second of elapsed time, so this holds however slow the machine.
    for (const o of observations) expect(o.moved).toBeLessThanOrEqual(rate * o.elapsedS + 1);
    const last = observations.at(-1)!;
    expect(last.moved).toBeLessThanOrEqual(rate * last.elapsedS + 1);
  });

  it('a settled batch’s places are taken again at once, not at the next tick (a tick can start one batch at concurrency 1)', async () => {
    // Concurrency 1: a tick starts one move at most while one is in flight, so 20 moves would need 20
    // ticks if places were only refilled by ticks. The loopLag hook is read once per tick: it counts them.
    let ticks = 0;
    const r = await rig('node-b', 20, { rate: 100_000, concurrency: 1, tickMs: 500 }, 0, () => {
      ticks++;
      return 0;
    });
    const { view } = r.drains.start('node-b', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' });
    expect(await waitFor('drain finished', finished(r, view.id), { timeoutMs: 30_000 })).toMatchObject({ state: 'completed', moved: 20, failed: 0 });
    expect(ticks).toBeGreaterThanOrEqual(1);
    expect(ticks).toBeLessThan(20);
    expect(r.h.core.table.countByOwner('node-b')).toBe(0);
  });

  it('refilling on a settled batch still honours the rate: moved ≤ rate × elapsed + 1 at every observation', async () => {
    const rate = 200;
    const r = await rig('node-b', 30, { rate, concurrency: 1, tickMs: 50 });
    const t0 = systemClock.now();
    const { view } = r.drains.start('node-b', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' });
    const observations = await observeUntilFinished(r, view.id, t0);
    expect(r.drains.get(view.id)).toMatchObject({ state: 'completed', moved: 30 });
    for (const o of observations) expect(o.moved).toBeLessThanOrEqual(rate * o.elapsedS + 1);
  });

  it('while the event loop runs later than maxLoopLagMs, moves start at a tenth of the rate, and the drain still completes', async () => {
    const rate = 2000;
    const r = await rig('node-b', 40, { rate, concurrency: 64, tickMs: 5, maxLoopLagMs: 50 }, 0, () => 80);
    const t0 = systemClock.now();
    const { view } = r.drains.start('node-b', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' });
    const observations = await observeUntilFinished(r, view.id, t0);
    expect(r.drains.get(view.id)).toMatchObject({ state: 'completed', moved: 40 });
    for (const o of observations) expect(o.moved).toBeLessThanOrEqual((rate / 10) * o.elapsedS + 1);
    expect(r.h.stats.drainBackoffs).toBeGreaterThan(0);
  });

  it('an event loop within maxLoopLagMs does not slow a drain (no backoff counted)', async () => {
    const r = await rig('node-b', 40, { rate: 100_000, concurrency: 64, tickMs: 5, maxLoopLagMs: 50 }, 0, () => 50);
    const { view } = r.drains.start('node-b', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' });
    await waitFor('drain finished', finished(r, view.id));
    expect(r.drains.get(view.id)).toMatchObject({ state: 'completed', moved: 40 });
    expect(r.h.stats.drainBackoffs).toBe(0);
  });

  it('by default the lag is how late a tick comes: a turn that blocks the loop past maxLoopLagMs slows the drain', async () => {
    const r = await rig('node-b', 40, { rate: 100_000, concurrency: 1, tickMs: 5, maxLoopLagMs: 20 });
    const { view } = r.drains.start('node-b', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' });
    // One turn of the event loop held for 60 ms: the next tick comes about 55 ms late.
    await new Promise((resolve) => setTimeout(resolve, 1));
    const t = performance.now();
    while (performance.now() - t < 60) {
      // keep the loop from turning
    }
    await waitFor('a backoff', () => r.h.stats.drainBackoffs > 0 || undefined, { timeoutMs: 5000 });
    await waitFor('drain finished', finished(r, view.id));
    expect(r.drains.get(view.id)).toMatchObject({ state: 'completed', moved: 40 });
  });

  it('maxLoopLagMs 0 never holds a drain back, however late the loop runs', async () => {
    const r = await rig('node-b', 40, { rate: 100_000, concurrency: 64, tickMs: 5, maxLoopLagMs: 0 }, 0, () => 10_000);
    const { view } = r.drains.start('node-b', { mode: 'migrate', deadlineS: 30, cause: 'drain', actor: 'op' });
    await waitFor('drain finished', finished(r, view.id));
    expect(r.h.stats.drainBackoffs).toBe(0);
  });

  it('a wait drain counts sessions that end by themselves, and migrates the rest at the deadline', async () => {
    const r = await rig('node-c', 30);
    const { h } = r;
    const t0 = systemClock.now();
    const { view } = r.drains.start('node-c', { mode: 'wait', deadlineS: 0.2, cause: 'drain', actor: 'op' });
    expect(view).toMatchObject({ state: 'waiting', total: 30, moved: 0, rate: 0, eta_s: null });
    expect(view.deadline_at).not.toBeNull();
    // Ten sessions end by themselves (the client sends CLOSE), before the deadline.
    for (const [i, rec] of r.recs.slice(0, 10).entries()) {
      expect(h.client(packet(PacketType.CLOSE, rec.idBytes), clientTransport(i)).kind).toBe('forward');
    }
    expect(r.drains.get(view.id)).toMatchObject({ remaining: 20, ended: 10 });
    const done = await waitFor('drain finished', finished(r, view.id));
    expect(done).toMatchObject({ state: 'completed', total: 30, moved: 20, ended: 10, failed: 0, remaining: 0 });
    expect(h.core.table.countByOwner('node-c')).toBe(0);
    // Nothing was moved before the deadline (the coordinator reads the same clock).
    expect(h.path.revokes).toHaveLength(20);
    for (const rv of h.path.revokes) expect(rv.at).toBeGreaterThanOrEqual(t0 + 200);
    expect(h.auditLines().filter((l) => l.event === 'close')).toHaveLength(10);
  });

  it('sessions moved off the node by something else than the drain (an operator\'s migrate) count as moved, not ended; its own ends as ended', async () => {
    const r = await rig('node-c', 12);
    const { h } = r;
    const { view } = r.drains.start('node-c', { mode: 'wait', deadlineS: 600, cause: 'drain', actor: 'op' });
    for (const rec of r.recs.slice(0, 4)) expect(await h.own.migrate(rec.id, { to: 'node-a', cause: 'migrate', actor: 'op' })).toMatchObject({ ok: true });
    expect(h.own.terminate(r.recs[4]!.id, 'operator', 'op')).toMatchObject({ ok: true });
    // total = moved + failed + ended + remaining, whoever moved them.
    expect(r.drains.get(view.id)).toMatchObject({ state: 'waiting', total: 12, moved: 4, remaining: 7, ended: 1, failed: 0 });
    r.drains.undrain('node-c');
    // Ends after the drain finished are not its own.
    expect(h.own.terminate(r.recs[5]!.id, 'operator', 'op')).toMatchObject({ ok: true });
    expect(r.drains.get(view.id)).toMatchObject({ state: 'cancelled', ended: 1 });
  });

  it('a wait drain that reaches its deadline says mode migrate; its rate and ETA count only its own moves, not those others made while it waited', async () => {
    const r = await rig('node-c', 12, { rate: 0.001 }); // its own moves: next to none
    const { h } = r;
    const { view } = r.drains.start('node-c', { mode: 'wait', deadlineS: 0.05, cause: 'drain', actor: 'op' });
    for (const rec of r.recs.slice(0, 6)) expect(await h.own.migrate(rec.id, { to: 'node-a', cause: 'migrate', actor: 'op' })).toMatchObject({ ok: true });
    await waitFor('the deadline to pass, and the rate to be measured (half a second of migrating)', () => {
      const v = r.drains.get(view.id)!;
      return v.state === 'running' && Date.parse(v.started_at) + 600 < Date.now() ? v : undefined;
    });
    const v = r.drains.get(view.id)!;
    expect(v).toMatchObject({ mode: 'migrate', moved: 6, remaining: 6 }); // none of its own yet
    expect(v.rate).toBeLessThan(1); // 6 moved by others in ~0.6 s would read as 10/s
    r.drains.undrain('node-c');
  });

  it('a drain completes only once its node state is settled in the shared store (another director\'s admission just before it may still be on its way)', async () => {
    for (const [mode, count] of [['migrate', 0], ['migrate', 3], ['wait', 0]] as const) {
      let ticks = 0;
      let settled = false;
      const asked: string[] = [];
      const r = await rig('node-a', count, {}, 0, () => (ticks++, 0), (n) => (asked.push(n), settled));
      const { view } = r.drains.start('node-a', { mode, deadlineS: mode === 'wait' ? 60 : 0, cause: 'drain', actor: 'op' });
      await waitFor('every session moved', () => r.drains.get(view.id)!.moved === count || undefined);
      const from = ticks;
      await waitFor('ticks after that', () => ticks >= from + 5 || undefined);
      expect(r.drains.get(view.id)!.state).toBe(mode === 'wait' ? 'waiting' : 'running'); // nothing left, but not settled
      expect(asked).toContain('node-a');
      settled = true;
      const done = await waitFor('drain finished', finished(r, view.id));
      expect(done).toMatchObject({ state: 'completed', moved: count, remaining: 0 });
    }
    // An automatic failover does not take the node out of admission: it has no node state to wait for.
    const r = await rig('node-a', 3, {}, 0, undefined, () => false);
    const { view } = r.drains.start('node-a', { mode: 'migrate', deadlineS: 0, cause: 'failover', actor: 'auto-failover' });
    expect(await waitFor('failover finished', finished(r, view.id))).toMatchObject({ state: 'completed', moved: 3 });
  });

  it('a wait drain whose sessions all end before the deadline completes with nothing moved', async () => {
    const r = await rig('node-a', 5);
    const { view } = r.drains.start('node-a', { mode: 'wait', deadlineS: 60, cause: 'drain', actor: 'op' });
    for (const rec of r.recs) expect(r.h.own.terminate(rec.id, 'operator', 'op').ok).toBe(true);
    const done = await waitFor('drain finished', finished(r, view.id));
    expect(done).toMatchObject({ state: 'completed', total: 5, moved: 0, ended: 5, remaining: 0 });
    expect(r.h.path.revokes).toHaveLength(0);
  });

  it('undrain cancels a running drain and lets the node take sessions again', async () => {
    const r = await rig('node-a', 10, { rate: 0.001 }); // effectively nothing moves
    const { view } = r.drains.start('node-a', { mode: 'wait', deadlineS: 60, cause: 'drain', actor: 'op' });
    const cancelled = r.drains.undrain('node-a');
    expect(cancelled).toMatchObject({ id: view.id, state: 'cancelled', moved: 0, remaining: 10 });
    expect(cancelled!.finished_at).not.toBeNull();
    expect(r.draining).toEqual([
      ['node-a', true],
      ['node-a', false],
    ]);
    expect(r.drains.get(view.id)!.state).toBe('cancelled');
    expect(r.drains.active('node-a')).toBeUndefined();
    // Undrain of a node without a drain still lets it take sessions.
    expect(r.drains.undrain('node-b')).toBeUndefined();
    expect(r.draining.at(-1)).toEqual(['node-b', false]);

    // A migrate drain cancelled while it runs stays cancelled.
    const m = r.drains.start('node-a', { mode: 'migrate', deadlineS: 0, cause: 'drain', actor: 'op' });
    expect(m.created).toBe(true);
    expect(r.drains.undrain('node-a')).toMatchObject({ id: m.view.id, state: 'cancelled', last_error: 'cancelled: the node was undrained' });
    expect(r.h.core.table.countByOwner('node-a')).toBe(10);
  });

  it('cancel (an undrain on another director) stops the drain without writing the node state back', async () => {
    const r = await rig('node-a', 4, { rate: 0.001 });
    const { view } = r.drains.start('node-a', { mode: 'migrate', deadlineS: 0, cause: 'drain', actor: 'op' });
    expect(r.drains.cancel('node-a', 'cancelled: the node was undrained on director d2')).toMatchObject({ id: view.id, state: 'cancelled', director: 'dir-test', last_error: 'cancelled: the node was undrained on director d2' });
    expect(r.draining).toEqual([['node-a', true]]);
    expect(r.drains.cancel('node-a', 'again')).toBeUndefined();
    expect(r.drains.active('node-a')).toBeUndefined();
  });

  it('publishes its record at start, while it runs (throttled) and at the end; parseDrainView reads every one back', async () => {
    const r = await rig('node-a', 30, { rate: 50, publishEveryMs: 100 });
    const { view } = r.drains.start('node-a', { mode: 'migrate', deadlineS: 0, cause: 'drain', actor: 'op' });
    await waitFor('the drain to finish', finished(r, view.id), { timeoutMs: 10_000 });
    const mine = r.published.filter((v) => v.id === view.id);
    expect(mine[0]).toMatchObject({ state: 'running', director: 'dir-test', moved: 0 });
    expect(mine.at(-1)).toMatchObject({ state: 'completed', moved: 30, remaining: 0 });
    expect(mine.length).toBeGreaterThanOrEqual(3); // start, at least one while running (≈0.6 s at 50/s), end
    expect(mine.length).toBeLessThan(30); // throttled, not once per session
    for (const v of mine) expect(parseDrainView(JSON.parse(JSON.stringify(v)) as Record<string, unknown>)).toEqual(v);
  });

  it('drains shared by other directors: listed and found by id, one in progress per node, abandoned when their record goes; ours ignored', async () => {
    const r = await rig('node-a', 2, { rate: 0.001 });
    const remote = {
      id: 'dr-remote', node: 'node-b', mode: 'migrate', cause: 'drain', state: 'running', director: 'dir-other', total: 3, moved: 1, remaining: 2,
      failed: 0, ended: 0, rate: 1, eta_s: 2, started_at: '2000-01-01T00:00:00.000Z', deadline_at: null, finished_at: null, last_error: null,
    };
    r.drains.applyShared('dr-remote', remote);
    r.drains.applyShared('dr-mine', { ...remote, id: 'dr-mine', director: 'dir-test' }); // our own echo
    r.drains.applyShared('dr-junk', { id: 'dr-junk' }); // not a drain record
    expect(r.drains.get('dr-remote')).toEqual({ ...remote, revokes_pending: 0, revokes_unacknowledged: 0 });
    expect(r.drains.get('dr-mine')).toBeUndefined();
    expect(r.drains.activeElsewhere('node-b')).toEqual({ ...remote, revokes_pending: 0, revokes_unacknowledged: 0 });
    expect(r.drains.activeElsewhere('node-a')).toBeUndefined();
    const { view } = r.drains.start('node-a', { mode: 'wait', deadlineS: 60, cause: 'drain', actor: 'op' });
    expect(r.drains.list().map((d) => d.id)).toEqual(['dr-remote', view.id]); // oldest first
    r.drains.applyShared('dr-remote', null); // its director's lease ended mid-drain
    expect(r.drains.get('dr-remote')).toMatchObject({ state: 'abandoned', eta_s: null });
    expect(r.drains.activeElsewhere('node-b')).toBeUndefined();
  });

  it('parseDrainView refuses a record with any field missing or of the wrong kind', () => {
    const v = {
      id: 'dr-1', node: 'node-a', mode: 'migrate', cause: 'drain', state: 'running', director: 'd', total: 3, moved: 1, remaining: 2,
      failed: 0, ended: 0, rate: 1.5, eta_s: 2, started_at: '2026-01-01T00:00:00.000Z', deadline_at: null, finished_at: null, last_error: null,
    };
    // A record of a director before the REVOKE fields: read with 0 for them.
    expect(parseDrainView(v)).toEqual({ ...v, revokes_pending: 0, revokes_unacknowledged: 0 });
    const withRevokes = { ...v, revokes_pending: 4, revokes_unacknowledged: 1 };
    expect(parseDrainView(withRevokes)).toEqual(withRevokes);
    for (const [k, bad] of [
      ['id', 1], ['mode', 'fast'], ['cause', 'x'], ['state', 'done'], ['director', null], ['total', -1], ['moved', 1.5],
      ['rate', Number.NaN], ['eta_s', 'soon'], ['started_at', null], ['finished_at', 3], ['last_error', {}],
    ] as const) {
      expect(parseDrainView({ ...v, [k]: bad })).toBeNull();
    }
    const { node: _node, ...missing } = v;
    expect(parseDrainView(missing)).toBeNull();
  });

  it('a second start for the same node returns the running drain (created false); a migrate drain asked for while a wait drain waits makes it migrate now', async () => {
    const r = await rig('node-b', 5);
    const first = r.drains.start('node-b', { mode: 'wait', deadlineS: 60, cause: 'drain', actor: 'op' });
    const second = r.drains.start('node-b', { mode: 'wait', deadlineS: 10, cause: 'drain', actor: 'someone-else' });
    expect(first.created).toBe(true);
    expect(second.created).toBe(false);
    expect(second.escalated).toBeUndefined();
    expect(second.view).toMatchObject({ id: first.view.id, mode: 'wait', state: 'waiting' });
    const third = r.drains.start('node-b', { mode: 'migrate', deadlineS: 0, cause: 'drain', actor: 'someone-else' });
    expect(third).toMatchObject({ created: false, escalated: true, view: { id: first.view.id, mode: 'migrate', state: 'running', cause: 'drain' } });
    const done = await waitFor('the escalated drain finished', finished(r, first.view.id));
    expect(done).toMatchObject({ state: 'completed', moved: 5, remaining: 0, cause: 'drain' });
    expect(r.draining).toEqual([['node-b', true]]);
    expect(r.drains.list()).toHaveLength(1);
    // Another node gets its own drain.
    expect(r.drains.start('node-c', { mode: 'wait', deadlineS: 60, cause: 'drain', actor: 'op' }).created).toBe(true);
  });

  it('a failover of a node whose drain still waits makes that drain migrate now (escalated); a failover of a migrating drain changes nothing', async () => {
    const r = await rig('node-b', 12);
    const waiting = r.drains.start('node-b', { mode: 'wait', deadlineS: 600, cause: 'drain', actor: 'op' });
    expect(waiting.view.state).toBe('waiting');
    const fo = r.drains.start('node-b', { mode: 'migrate', deadlineS: 0, cause: 'failover', actor: 'health' });
    expect(fo).toMatchObject({ created: false, escalated: true, view: { id: waiting.view.id, state: 'running' } });
    const done = await waitFor('escalated drain finished', finished(r, waiting.view.id));
    expect(done).toMatchObject({ state: 'completed', moved: 12, remaining: 0, cause: 'failover' });
    // Its moves are the failover's, in the audit log too.
    const moves = r.h.auditLines().filter((l) => l.event === 'transfer' || l.event === 'failover');
    expect(moves).toHaveLength(12);
    for (const l of moves) expect(l).toMatchObject({ event: 'failover', cause: 'failover', from_owner: 'node-b', actor: `failover:${waiting.view.id}` });
    // A second failover while one migrates is the running drain, not an escalation.
    const r2 = await rig('node-c', 5, { rate: 0.001 });
    const first = r2.drains.start('node-c', { mode: 'migrate', deadlineS: 0, cause: 'failover', actor: 'health' });
    const again = r2.drains.start('node-c', { mode: 'migrate', deadlineS: 0, cause: 'failover', actor: 'health' });
    expect(first.created).toBe(true);
    expect(again).toMatchObject({ created: false, view: { id: first.view.id } });
    expect(again.escalated).toBeUndefined();
    // A drain asked for while that failover runs is the failover, and the node stops taking sessions.
    expect(r2.draining).toEqual([]);
    const drain = r2.drains.start('node-c', { mode: 'migrate', deadlineS: 0, cause: 'drain', actor: 'op' });
    expect(drain).toMatchObject({ created: false, view: { id: first.view.id, cause: 'failover' } });
    expect(r2.draining).toEqual([['node-c', true]]);
  });

  it('a wait drain\'s deadline is bounded (a year), so its record always has a valid deadline_at', async () => {
    const r = await rig('node-a', 3);
    const { view } = r.drains.start('node-a', { mode: 'wait', deadlineS: 1e13, cause: 'drain', actor: 'op' });
    expect(Date.parse(view.deadline_at as string) - Date.parse(view.started_at as string)).toBeLessThanOrEqual(31_536_000_000 + 1000);
    expect(() => r.drains.list()).not.toThrow();
    r.drains.undrain('node-a');
  });

  it('a failover does not take the node out of admission; transfers are audited as failover', async () => {
    const r = await rig('node-c', 25);
    const { view, created } = r.drains.start('node-c', { mode: 'migrate', deadlineS: 0, cause: 'failover', actor: 'health' });
    expect(created).toBe(true);
    expect(view.id).toMatch(/^fo-/);
    expect(view.cause).toBe('failover');
    const done = await waitFor('failover finished', finished(r, view.id));
    expect(done).toMatchObject({ state: 'completed', moved: 25, remaining: 0 });
    expect(r.draining).toEqual([]);
    const lines = r.h.auditLines().filter((l) => l.cause === 'failover');
    expect(lines.filter((l) => l.event === 'failover')).toHaveLength(25);
    expect(lines.filter((l) => l.event === 'transfer')).toHaveLength(0);
  });

  it('an operator\'s failover (stopAdmissions) takes the node out of admission too — new, escalating a waiting drain, or joining a running failover', async () => {
    const r = await rig('node-c', 5);
    const { view } = r.drains.start('node-c', { mode: 'migrate', deadlineS: 0, cause: 'failover', actor: 'admin', stopAdmissions: true });
    expect(r.draining).toEqual([['node-c', true]]);
    await waitFor('failover finished', finished(r, view.id));
    const w = await rig('node-b', 3);
    w.drains.start('node-b', { mode: 'wait', deadlineS: 600, cause: 'drain', actor: 'op' });
    w.draining.length = 0;
    const esc = w.drains.start('node-b', { mode: 'migrate', deadlineS: 0, cause: 'failover', actor: 'admin', stopAdmissions: true });
    expect(esc.escalated).toBe(true);
    expect(w.draining).toEqual([['node-b', true]]);
    const j = await rig('node-a', 5, { rate: 0.001 });
    j.drains.start('node-a', { mode: 'migrate', deadlineS: 0, cause: 'failover', actor: 'auto-failover' });
    expect(j.draining).toEqual([]);
    const joined = j.drains.start('node-a', { mode: 'migrate', deadlineS: 0, cause: 'failover', actor: 'admin', stopAdmissions: true });
    expect(joined.created).toBe(false);
    expect(j.draining).toEqual([['node-a', true]]);
    j.drains.undrain('node-a');
  });

  it('migrations the store keeps refusing count as failed after the retries (unavailable: 10× attempts); the drain ends failed with last_error', async () => {
    const r = await rig('node-a', 40, { attempts: 3 });
    const { h } = r;
    const bad = new Set(r.recs.filter((_x, i) => i % 8 === 0).map((x) => x.id)); // 5 sessions
    const tries = new Map<string, number>();
    h.store.beforeUpdate = (record) => {
      if (!bad.has(record.id)) return undefined;
      tries.set(record.id, (tries.get(record.id) ?? 0) + 1);
      return { ok: false, reason: 'unavailable', message: 'injected: etcd timeout' };
    };
    const { view } = r.drains.start('node-a', { mode: 'migrate', deadlineS: 0, cause: 'drain', actor: 'op' });
    const done = await waitFor('drain finished', finished(r, view.id));
    expect(done).toMatchObject({ state: 'failed', total: 40, moved: 35, failed: 5, remaining: 5, ended: 0 });
    expect(done.last_error).toMatch(/store unavailable: injected: etcd timeout/);
    expect(r.h.stats.drainsFinished.get('failed')).toBe(1);
    // Each refused session was tried exactly 10 × `attempts` times (the store may be back in a moment), and
    // stays where it was (fail closed).
    expect([...tries.values()]).toEqual([30, 30, 30, 30, 30]);
    for (const rec of r.recs) {
      if (bad.has(rec.id)) expect(rec).toMatchObject({ owner: 'node-a', version: 1n, state: 'ATTACHED', pending: null });
      else expect(rec.owner).not.toBe('node-a');
    }
    expect(h.stats.migrations.get('unavailable')).toBe(150);
    expect(h.stats.securityEvents.get('freeze_aborted')).toBe(150);
  });

  it('a refused session is tried again once per tick at most, however often settled batches refill their places', async () => {
    let ticks = 0;
    const r = await rig('node-a', 60, { attempts: 3, concurrency: 2, tickMs: 5 }, 0, () => {
      ticks++;
      return 0;
    });
    const { h } = r;
    const bad = new Set(r.recs.filter((_x, i) => i % 20 === 0).map((x) => x.id)); // 3 sessions
    const tries = new Map<string, { tries: number; ticks: number }>();
    h.store.beforeUpdate = (record) => {
      if (!bad.has(record.id)) return undefined;
      const t = tries.get(record.id) ?? { tries: 0, ticks };
      tries.set(record.id, { tries: t.tries + 1, ticks: t.ticks });
      return { ok: false, reason: 'unavailable', message: 'injected: etcd timeout' };
    };
    const { view } = r.drains.start('node-a', { mode: 'migrate', deadlineS: 0, cause: 'drain', actor: 'op' });
    expect(await waitFor('drain finished', finished(r, view.id), { timeoutMs: 30_000 })).toMatchObject({ state: 'failed', moved: 57, failed: 3 });
    expect([...tries.values()].map((t) => t.tries)).toEqual([30, 30, 30]);
    // From its first try on, each try of a session took a tick of its own (the first within the tick it started in).
    for (const t of tries.values()) expect(t.tries).toBeLessThanOrEqual(ticks - t.ticks + 1);
  });

  it('a node with no other node to go to: every session fails no_target at once', async () => {
    const r = await rig('node-a', 4);
    r.h.core.setRing(buildRing(hasher, [{ id: 'node-a', weight: 1 }]));
    const { view } = r.drains.start('node-a', { mode: 'migrate', deadlineS: 0, cause: 'drain', actor: 'op' });
    expect(await r.drains.plan('node-a', { limit: 1000 })).toMatchObject({ moves: [], unplaceable: r.recs.map((x) => x.id).sort(), sessions: 4, unplaceable_count: 4, byTarget: {} });
    const done = await waitFor('drain finished', finished(r, view.id));
    expect(done).toMatchObject({ state: 'failed', moved: 0, failed: 4, remaining: 4 });
    expect(r.h.stats.migrations.get('no_target')).toBe(4);
  });

  it('the walk over the node’s sessions finishes while the table changes under it (sessions end, others are admitted and grow the id index): none is left behind', async () => {
    // A slow drain (2 in flight, 400 moves/s), so that its walk is carried from tick to tick while the table changes.
    const r = await rig('node-a', 90, { rate: 400, concurrency: 2, tickMs: 5 });
    const { h } = r;
    const { view } = r.drains.start('node-a', { mode: 'migrate', deadlineS: 0, cause: 'drain', actor: 'op' });
    const others = idsOwnedBy(ring, 'node-b', 600, 7_000_000);
    let t = 10_000;
    let ended = 0;
    for (let round = 1; round <= 6; round++) {
      // Wait for the drain to get on (or to end), then change the table: 100 sessions admitted on another
      // node (the id index grows from 256 slots to 2048 meanwhile, placing every record anew) and a few
      // sessions of the node end (their probe runs shift back under the walk).
      await waitFor('drain progress', () => (r.drains.get(view.id)!.moved >= round * 10 || finished(r, view.id)() !== undefined) || undefined);
      for (const id of others.splice(0, 100)) await h.admit(id, clientTransport(t++));
      for (const rec of r.recs.filter((x) => x.owner === 'node-a' && x.pending === null && h.core.table.holds(x)).slice(0, 2)) {
        if (h.own.terminate(rec.id, 'operator', 'op').ok) ended++;
      }
    }
    const done = await waitFor('drain finished', finished(r, view.id));
    expect(done).toMatchObject({ state: 'completed', total: 90, remaining: 0, failed: 0 });
    expect(done.moved + done.ended).toBe(90);
    expect(done.ended).toBeGreaterThanOrEqual(ended);
    expect(ended).toBeGreaterThan(0);
    expect(h.core.table.countByOwner('node-a')).toBe(0);
    for (const rec of r.recs) if (h.core.table.holds(rec)) expect(rec.owner).not.toBe('node-a');
    expect(h.core.table.countByOwner('node-b')).toBeGreaterThanOrEqual(600);
  });

  it('plan() stops when its signal says the one who asked went away', async () => {
    const r = await rig('node-b', 5);
    const gone = new AbortController();
    gone.abort(new Error('client gone'));
    await expect(r.drains.plan('node-b', { limit: 10, signal: gone.signal })).rejects.toThrow('client gone');
    expect((await r.drains.plan('node-b', { limit: 10, signal: new AbortController().signal })).sessions).toBe(5);
  });

  it('plan() stops between slices of its walk once the one who asked went away (not only before it starts)', async () => {
    const r = await rig('node-b', 40);
    // A clock that jumps a slice's length at every read: every session met ends a slice of the walk.
    let reads = 0;
    const gone = new AbortController();
    const clock = { ...systemClock, now: () => (++reads === 6 ? (gone.abort(new Error('client gone')), reads * 10) : reads * 10) };
    const drains = new DrainCoordinator({ rate: 100_000, concurrency: 16, tickMs: 5, directorId: 'dir-test' }, { core: r.h.core, ownership: r.h.own, clock, logger: pino({ level: 'silent' }), stats: r.h.stats, setDraining: () => {} });
    try {
      await expect(drains.plan('node-b', { limit: 10, signal: gone.signal })).rejects.toThrow('client gone');
      // Aborted in its third slice: the walk did not go on over the 40 sessions (a read or two per slice).
      expect(reads).toBeLessThan(10);
      const whole = await drains.plan('node-b', { limit: 10, signal: new AbortController().signal });
      expect(whole.sessions).toBe(40);
      expect(reads).toBeGreaterThan(40);
    } finally {
      drains.close();
    }
  });

  it('plan() is the dry run of the node’s live sessions', async () => {
    const r = await rig('node-b', 12, {}, 3);
    const plan = await r.drains.plan('node-b', { limit: 1000 });
    expect(plan.moves.map((m) => m.session)).toEqual(r.recs.map((x) => x.id).sort());
    for (const m of plan.moves) expect(m.to).toBe(ring.pickExcluding(r.recs.find((x) => x.id === m.session)!.idBytes, new Set(['node-b'])));
    expect(plan).toMatchObject({ sessions: 12, unplaceable_count: 0, byTarget: planDrain('node-b', r.recs, ring).byTarget, next_cursor: null });
    expect(r.h.store.updates).toHaveLength(0);
  });

  it('plan() counts every session of the node and lists them a page at a time, in id order', async () => {
    const r = await rig('node-b', 40, {}, 5);
    const whole = planDrain('node-b', r.recs, ring);
    const listed: string[] = [];
    let after: string | undefined;
    for (let page = 0; page < 10; page++) {
      const p = await r.drains.plan('node-b', { limit: 7, ...(after !== undefined ? { after } : {}) });
      expect(p).toMatchObject({ node: 'node-b', sessions: 40, unplaceable_count: 0, byTarget: whole.byTarget });
      expect(p.moves.length).toBeLessThanOrEqual(7);
      listed.push(...p.moves.map((m) => m.session));
      if (p.next_cursor === null) break;
      expect(p.moves).toHaveLength(7);
      after = p.next_cursor;
    }
    expect(listed).toEqual(whole.moves.map((m) => m.session));
    expect(Object.values(whole.byTarget).reduce((a, b) => a + b, 0)).toBe(40);
  });

  it('plan() counts in slices, giving the event loop turns between them; sessions ending meanwhile are counted once at most', async () => {
    const r = await rig('node-b', 60, {}, 20);
    let t = 0;
    const drains = new DrainCoordinator(
      { rate: 100_000, concurrency: 16, tickMs: 5 },
      // A clock that moves 5 ms per reading: every session counted ends a slice.
      { core: r.h.core, ownership: r.h.own, clock: { ...systemClock, now: () => (t += 5) }, logger: pino({ level: 'silent' }), stats: r.h.stats, setDraining: () => {} },
    );
    let turns = 0;
    let ended = 0;
    let done = false;
    const other = (): void => {
      if (done) return;
      turns++;
      const rec = r.recs.find((x) => r.h.core.table.holds(x) && x.pending === null);
      if (turns % 3 === 0 && rec !== undefined && r.h.own.terminate(rec.id, 'operator', 'op').ok) ended++;
      setImmediate(other);
    };
    setImmediate(other);
    const p = await drains.plan('node-b', { limit: 100 });
    done = true;
    expect(turns).toBeGreaterThanOrEqual(20); // the count gave turns back while it ran
    expect(ended).toBeGreaterThan(0);
    expect(p.sessions).toBeLessThanOrEqual(60);
    expect(p.sessions).toBeGreaterThanOrEqual(60 - ended);
    expect(Object.values(p.byTarget).reduce((a, b) => a + b, 0)).toBe(p.sessions);
  });
});
