// The drain without sockets (issue 7: "100,000 sessions drained off a node in under 2 seconds"): what a
// move costs the director itself — DirectorCore, Ownership (freeze → transfer → REVOKE → resume, batch
// steps), the in-process store with its watch followed as `anchor run` does, the audit chain written to
// a file, the DrainCoordinator with the rate limit out of the way — with a data path that sends nothing
// (each REVOKE acknowledged on the next turn). Baseline in the same run: the same store writes alone (three
// CASes per session, 256 per `updateMany`, no watch), the floor of any drain on this store.
// CPU seconds from process.cpuUsage (every thread of the process: GC helpers included), wall seconds, GC
// time; medians of REPEATS runs, each on fresh structures, interleaved with the baseline, after one small
// unmeasured drain (JIT warm-up). Not pinned. BENCH_DRAIN_CORE_SESSIONS (100000).
// Also a mass expiry on the same structures (`mass_expiry`): 50,000 sessions idle at once, ended 256 per
// turn of the event loop as the director's sweep does, against 10,000 in one turn (the sweep before
// 2026-11-28): the event loop's longest block (perf_hooks' delay histogram) and the time to end them all.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance, PerformanceObserver } from 'node:perf_hooks';
import { pino } from 'pino';
import { encodeJv1 } from '../src/codec/jv1.js';
import { PacketType } from '../src/codec/types.js';
import { parseHostPortLiteral } from '../src/config/schema.js';
import { DirectorCore } from '../src/director/core.js';
import { Ownership } from '../src/director/ownership.js';
import { DrainCoordinator } from '../src/drain/coordinator.js';
import { createAudit } from '../src/obs/audit.js';
import { DirectorStats } from '../src/obs/stats.js';
import { createHasher } from '../src/ring/hash.js';
import { buildRing } from '../src/ring/ring.js';
import { SessionState } from '../src/session/lifecycle.js';
import { MemoryStore } from '../src/store/memory.js';
import { TableRecords } from '../src/store/table-records.js';
import type { StoredSession } from '../src/store/store.js';
import { systemClock } from '../src/util/clock.js';
import { machine, median, writeResult } from './lib.js';

const SESSIONS = Number(process.env.BENCH_DRAIN_CORE_SESSIONS ?? 100_000);
/** Sessions of the unmeasured first drain (the JIT compiles the path before anything is recorded). */
const WARMUP_SESSIONS = 5_000;
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
/** Sessions of the mass-expiry runs. */
const EXPIRY_SESSIONS = Math.min(SESSIONS, 50_000);
const NODES = ['node-0', 'node-1', 'node-2'];
/** A drain that has not ended by then is reported as such (a bound on the loop below). */
const MAX_MS = 120_000;

interface Cost {
  readonly moved: number;
  readonly wall_s: number;
  readonly cpu_s: number;
  readonly gc_ms: number;
}

const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** GC milliseconds observed while `fn` runs. */
async function withGc<T>(fn: () => Promise<T>): Promise<{ value: T; gcMs: number }> {
  let gcMs = 0;
  const obs = new PerformanceObserver((l) => {
    for (const e of l.getEntries()) gcMs += e.duration;
  });
  obs.observe({ entryTypes: ['gc'] });
  try {
    const value = await fn();
    // Entries are delivered asynchronously: let the last ones in.
    await new Promise((r) => setImmediate(r));
    return { value, gcMs };
  } finally {
    obs.disconnect();
  }
}

/** Session ids the ring places on node-0 (so that draining node-0 moves every one). */
function idsOnNode0(ring: ReturnType<typeof buildRing>, n: number): Buffer[] {
  const ids: Buffer[] = [];
  for (let k = 0; ids.length < n; k++) {
    const id = Buffer.alloc(16);
    id.writeUInt32BE(ids.length, 0);
    id.writeUInt32BE(0xd4a1c0de, 4);
    id.writeUInt32BE((k * 2654435761) >>> 0, 8);
    id.writeUInt32BE(0x5eed, 12);
    if (ring.pick(id) === 'node-0') ids.push(id);
  }
  return ids;
}

/** The director's own structures (core, in-process store followed as `anchor run` does, audit file) with `ids` admitted. */
async function director(ring: ReturnType<typeof buildRing>, ids: readonly Buffer[], dir: string, idleTtlMs = 600_000) {
  const core = new DirectorCore({ sessionMax: ids.length * 2, idleTtlMs, tombstoneMs: 60_000, admissionRate: 1e9, admissionBurst: 1e9, rejectRate: 1e9, rejectBurst: 1e9, holdMax: 64, recordCache: 131_072 /* session.header_cache's default, as anchor.ts passes it */, reserveRows: ids.length * 2 }, ring);
  // The embedded store reads its records from the table's rows, as anchor.ts binds it (src/store/table-records.ts).
  const holder = new TableRecords();
  const store = new MemoryStore({ holder });
  holder.bind(core.table, 'bench');
  const auditPath = join(dir, `audit-${Date.now()}.jsonl`);
  const audit = createAudit({ path: auditPath, wallClock: () => Date.now() });
  const stats = new DirectorStats();
  const own = new Ownership({ directorId: 'bench', quiesceMs: 50, revokeTimeoutMs: 500, revokeRetries: 3 }, { core, store, audit, stats, clock: systemClock, eligible: () => true, knownNode: () => true });
  own.attach({
    forward() {},
    answer() {},
    revoke(rec, node, version) {
      setImmediate(() => own.onRevokeAck(rec.id, version, node));
    },
    rejectCandidate() {},
    relayHeld() {},
  });
  const unfollow = own.followStore((key) => {
    const t = parseHostPortLiteral(key);
    return t === undefined ? null : { t, key, listener: 0 };
  });
  for (const [i, id] of ids.entries()) {
    const t = { family: 4 as const, address: '127.0.0.1', port: 1000 + (i % 64) };
    const out = core.onClient(encodeJv1(PacketType.HELLO, id), t, `127.0.0.1:${t.port}`, 0, systemClock.now());
    if (out.kind !== 'admit') throw new Error(`drain-core: session ${i} not admitted (${out.kind})`);
    await own.admit(out.session);
  }
  const close = async (): Promise<void> => {
    unfollow();
    own.close();
    await audit.close();
    rmSync(auditPath, { force: true });
  };
  return { core, own, stats, close };
}

/** One drain of `ids` (all on node-0) through the director's own structures. */
async function drainOnce(ring: ReturnType<typeof buildRing>, ids: readonly Buffer[], dir: string): Promise<Cost> {
  const { core, own, stats, close } = await director(ring, ids, dir);
  const drains = new DrainCoordinator({ rate: 1_000_000, concurrency: 4096 }, { core, ownership: own, clock: systemClock, logger: pino({ level: 'silent' }), stats, setDraining() {} });
  try {
    const { value, gcMs } = await withGc(async () => {
      const t0 = performance.now();
      const c0 = cpuNow();
      const { view } = drains.start('node-0', { mode: 'migrate', deadlineS: 0, cause: 'drain', actor: 'bench' });
      for (;;) {
        const v = drains.get(view.id);
        if (v === undefined || v.state !== 'running' || performance.now() - t0 > MAX_MS) {
          return { moved: v?.moved ?? 0, wall_s: (performance.now() - t0) / 1000, cpu_s: cpuNow() - c0 };
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    });
    return { ...value, gc_ms: gcMs };
  } finally {
    drains.close();
    await close();
  }
}

interface ExpiryCost {
  /** Idle sessions ended per turn of the event loop at most. */
  readonly per_turn: number;
  readonly expired: number;
  readonly wall_s: number;
  /** The event loop's longest block meanwhile (perf_hooks' delay histogram, 1 ms resolution). */
  readonly longest_block_ms: number;
}

/**
 * A mass expiry: every session of `ids` idle at once, ended `perTurn` per turn of the event loop as the
 * director's sweep does (256 since 2026-11-28; 10,000 in one turn before), each a store delete, an audit
 * line and the table's removal.
 */
async function expireOnce(ring: ReturnType<typeof buildRing>, ids: readonly Buffer[], dir: string, perTurn: number): Promise<ExpiryCost> {
  const ttl = 1000;
  const { core, own, close } = await director(ring, ids, dir, ttl);
  const loop = monitorEventLoopDelay({ resolution: 1 });
  try {
    const later = systemClock.now() + 2 * ttl; // every session idle by then (expiry compares with this `now`)
    loop.enable();
    const t0 = performance.now();
    while (core.table.size > 0 && performance.now() - t0 < MAX_MS) {
      own.expireIdle(later, perTurn);
      await new Promise((r) => setImmediate(r));
    }
    const wall = (performance.now() - t0) / 1000;
    loop.disable();
    return { per_turn: perTurn, expired: ids.length - core.table.size, wall_s: Number(wall.toFixed(2)), longest_block_ms: Number((loop.max / 1e6).toFixed(1)) };
  } finally {
    await close();
  }
}

/**
 * The baseline: the same three CASes per session on the store alone, 256 per updateMany, nothing else. Its
 * records are held by a TableRecords bound to no table (each kept in its columns), as the director's store
 * holds its records through a TableRecords: a MemoryStore meeting two kinds of holder in one process would
 * run the director's drains on code made for both (slower than a director, which has one).
 */
async function storeOnly(ids: readonly Buffer[]): Promise<Cost> {
  const store = new MemoryStore({ holder: new TableRecords() });
  const recs: StoredSession[] = ids.map((id, i) => ({
    id: id.toString('hex'),
    owner: 'node-0',
    version: 1n,
    state: SessionState.ATTACHED,
    transport: `127.0.0.1:${1000 + (i % 64)}`,
    director: 'bench',
    expiresAt: Date.now() + 600_000,
    incarnation: 0,
  }));
  // As created: with the incarnation the store gave each.
  for (let i = 0; i < recs.length; i++) {
    const r = await store.create(recs[i] as StoredSession);
    if (r.ok) recs[i] = r.record;
  }
  const { value, gcMs } = await withGc(async () => {
    const t0 = performance.now();
    const c0 = cpuNow();
    for (let at = 0; at < recs.length; at += 256) {
      const batch = recs.slice(at, at + 256);
      for (const [state, owner, v] of [
        [SessionState.FROZEN, 'node-0', 2n],
        [SessionState.FROZEN, 'node-1', 3n],
        [SessionState.ATTACHED, 'node-1', 4n],
      ] as const) {
        const res = await store.updateMany(batch.map((r) => ({ record: { ...r, state, owner, version: v }, expectVersion: v - 1n })));
        if (res.some((x) => !x.ok)) throw new Error('drain-core: a baseline CAS failed');
      }
    }
    return { moved: recs.length, wall_s: (performance.now() - t0) / 1000, cpu_s: cpuNow() - c0 };
  });
  await store.close();
  return { ...value, gc_ms: gcMs };
}

export async function benchDrainCore(): Promise<unknown> {
  const ring = buildRing(await createHasher(), NODES.map((id) => ({ id, weight: 1 })));
  const ids = idsOnNode0(ring, SESSIONS);
  const dir = mkdtempSync(join(tmpdir(), 'anchor-bench-drain-core-'));
  const drains: Cost[] = [];
  const bases: Cost[] = [];
  const expiries: ExpiryCost[] = [];
  try {
    await storeOnly(ids.slice(0, WARMUP_SESSIONS));
    await drainOnce(ring, ids.slice(0, WARMUP_SESSIONS), dir);
    for (let rep = 0; rep < REPEATS; rep++) {
      bases.push(await storeOnly(ids));
      drains.push(await drainOnce(ring, ids, dir));
      const d = drains[drains.length - 1] as Cost;
      const b = bases[bases.length - 1] as Cost;
      console.log(
        `  #${rep + 1}: drain ${d.moved} in ${d.wall_s.toFixed(2)} s, CPU ${d.cpu_s.toFixed(2)} s (${((d.cpu_s * 1e6) / Math.max(1, d.moved)).toFixed(1)} µs/move, GC ${Math.round(d.gc_ms)} ms); store CASes alone ${((b.cpu_s * 1e6) / b.moved).toFixed(1)} µs/session`,
      );
    }
    for (const perTurn of [256, 10_000]) {
      const e = await expireOnce(ring, ids.slice(0, EXPIRY_SESSIONS), dir, perTurn);
      expiries.push(e);
      console.log(`  mass expiry of ${e.expired}, ${perTurn} per turn: ${e.wall_s} s, the event loop blocked ${e.longest_block_ms} ms at most`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const perMove = (c: Cost): number => (c.cpu_s * 1e6) / Math.max(1, c.moved);
  const drainUs = median(drains.map(perMove));
  const baseUs = median(bases.map(perMove));
  const result = {
    bench: 'drain-core',
    machine: machine(),
    sessions: SESSIONS,
    repeats: REPEATS,
    drain: {
      moved_all: drains.every((d) => d.moved === SESSIONS),
      wall_s: Number(median(drains.map((d) => d.wall_s)).toFixed(2)),
      cpu_s: Number(median(drains.map((d) => d.cpu_s)).toFixed(2)),
      cpu_us_per_move: Number(drainUs.toFixed(1)),
      gc_ms: Math.round(median(drains.map((d) => d.gc_ms))),
      moves_per_cpu_s: Math.round(1e6 / drainUs),
    },
    baseline_store_cas_only: { cpu_us_per_session: Number(baseUs.toFixed(1)) },
    ratio_drain_over_store_only: Number((drainUs / baseUs).toFixed(1)),
    // The CPU 100,000 moves take at this cost (every thread of the process: GC helpers included); the
    // drain's wall time is `drain.wall_s` (and the time of a drain with sockets, the `drain` bench's).
    cpu_s_for_100k: Number(((drainUs * 100_000) / 1e6).toFixed(1)),
    runs: { drains, baselines: bases },
    // A mass expiry as the director's sweep runs it (256 per turn) against one turn of 10,000 (before).
    mass_expiry: expiries,
  };
  console.log(`drain-core: ${SESSIONS} sessions, medians of ${REPEATS}: ${result.drain.cpu_us_per_move} µs CPU per move (${result.drain.moves_per_cpu_s} moves per CPU-second; 100,000 → ${result.cpu_s_for_100k} s of CPU; ${SESSIONS} moved in ${result.drain.wall_s} s, median), the store's CASes alone ${result.baseline_store_cas_only.cpu_us_per_session} µs per session`);
  console.log('written', writeResult('drain-core', result));
  return result;
}
