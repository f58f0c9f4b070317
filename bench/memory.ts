// Memory per session with 1,000,000 sessions (issue 7): RSS and V8 heap of the director's real session
// structures, filled in-process from dist/ the way the director fills them, against the same process
// empty (the baseline) and against a plain Map of small objects (the reference). Each measurement runs in
// its own child process (`node --expose-gc`), so one cannot inherit another's heap:
//   map          Map<id hex, { owner, version, transport }>: the reference ("a Map of objects"); its
//                keys are flat strings (Buffer#toString('hex'))
//   table+store  SessionTable.insert (src/session/table.ts) + MemoryStore.create (src/store/memory.ts) of
//                the records newSessionRecord builds, the store reading its records from the table's rows
//                (src/store/table-records.ts) as a director's does: what the director keeps per session
//   director     DirectorCore.onClient(HELLO) -> MemoryStore.create -> DirectorCore.admitted: the real
//                admission path without sockets (ring pick, held HELLO, forward bookkeeping), plus the
//                client transports made by the native path's PeerCache, and the
//                PROXY v2 header template the shell caches on a session's first forward (director.ts
//                #templateFor) and the numeric reply destination beside it (#relay, at the first reply),
//                kept for the most recently active session.header_cache sessions (131,072 by default:
//                HeaderCacheSlots takes the others' back)
// Every session has its own client transport (10.x.y.z:port, 64 per address), ids are distinct 16-byte
// values. Bytes/session = (after - before) / sessions, both after a full GC.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { machine, today, writeResult } from './lib.js';

const SESSIONS = Number(process.env.BENCH_MEMORY_SESSIONS ?? 1_000_000);
const BREAKDOWN_SESSIONS = 200_000;
const MODES = ['map', 'table+store', 'director'] as const;
type Mode = (typeof MODES)[number];

interface Sample {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

interface ChildReport {
  mode: Mode;
  sessions: number;
  before: Sample;
  /** After the first half of the sessions (breakdown: absent). */
  mid?: Sample;
  after: Sample;
  fill_ms: number;
  /** breakdown mode: bytes per session of each kind of object. */
  breakdown?: { step: string; bytes_per_session: number }[];
  /** director mode: what the admin API's table walks cost the event loop at this many sessions. */
  admin?: AdminCost;
  /** table+store and director: the store's records kept apart from the table's rows at the end (TableRecords.apart). */
  store_records_apart?: number;
  /** Heap bytes one session id string keeps alive: as sessionIdHex builds it, and flat. */
  id_string_bytes?: { sessionIdHex: number; flat: number };
  error?: string;
}

/** session.header_cache (default 131,072): the sessions whose header, and record, the director keeps ready. */
const HEADER_CACHE = Number(process.env.BENCH_MEMORY_HEADER_CACHE ?? 131_072);

/**
 * A turn of the event loop. The fills take one every 1,024 sessions, as the director's datagrams arrive
 * in turns: what a turn lets go of (the table's WeakRefs to records that left its cache, see
 * src/session/table.ts) is then let go as it would be in the director, not only after a million sessions.
 */
function turn(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

async function settle(): Promise<Sample> {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((r) => setTimeout(r, 50));
  }
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers };
}

function idBytes(i: number): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint32(0, 0xa5c3e1f7 ^ Math.imul(i, 0x9e3779b1), false);
  v.setUint32(4, i, false);
  v.setUint32(8, Math.imul(i ^ 0x5bd1e995, 0x85ebca6b) >>> 0, false);
  v.setUint32(12, 0x4a560001, false);
  return b;
}

/**
 * Session i's client transport: 64 sessions per address (as behind NATs), so the director's per-source
 * admission buckets (at most 65,536 keys) never have to evict; every transport is distinct, and every
 * session has its own address and key strings, as transports read from packets do.
 */
function clientOf(i: number): { family: 4; address: string; port: number } {
  const a = i >>> 6;
  return { family: 4, address: `10.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`, port: 20000 + (i & 63) };
}

/** In the child: builds `n` sessions in `mode` and reports memory before and after. */
async function child(mode: Mode, n: number): Promise<ChildReport> {
  const keep: unknown[] = [];
  const { sessionIdHex, encodeJv1 } = await import('../src/codec/jv1.js');
  const { transportKey } = await import('../src/codec/ip.js');
  const { SessionState } = await import('../src/session/lifecycle.js');
  const { SessionTable, newSessionRecord } = await import('../src/session/table.js');
  const { MemoryStore } = await import('../src/store/memory.js');
  const { TableRecords } = await import('../src/store/table-records.js');
  const { PacketType } = await import('../src/codec/types.js');
  const ppv2 = await import('../src/codec/ppv2.js');
  const { createPpv2Prefix, ppv2OwnerBytes } = ppv2;
  const owners = ['node-0', 'node-1', 'node-2'];
  const ownerBytes = new Map(owners.map((o) => [o, ppv2OwnerBytes(o)]));
  /** Stand-ins for the shell's per-node upstream objects (the header cache refers to one: shared, not per session). */
  const upstreams = new Map(owners.map((o) => [o, { nodeId: o }]));
  const idleTtlMs = 120_000;
  let fill: (from: number, to: number) => Promise<void>;
  let adminOf: (() => Promise<AdminCost>) | null = null;
  /** The store's records kept apart from the table's rows (TableRecords.apart): none when each says what its row says. */
  let apartOf: (() => number) | null = null;
  if (mode === 'map') {
    const m = new Map<string, { owner: string; version: number; transport: string }>();
    keep.push(m);
    fill = async (from, to) => {
      for (let i = from; i < to; i++) {
        const t = clientOf(i);
        // A flat 32-character key (Buffer#toString), as a plain Map of small objects would have.
        m.set(Buffer.from(idBytes(i)).toString('hex'), { owner: owners[i % 3] as string, version: 1, transport: transportKey(t) });
      }
    };
  } else if (mode === 'table+store') {
    // The director's table keeps records for session.header_cache sessions in use, and the table and the
    // embedded store reserve session.max rows and slots (anchor.ts).
    const table = new SessionTable({ max: n + 1, idleTtlMs, tombstoneMs: 60_000, records: HEADER_CACHE, reserve: n + 1 });
    // The embedded store reads its records from the table's rows (src/store/table-records.ts), as anchor.ts binds it.
    const holder = new TableRecords();
    const store = new MemoryStore({ holder });
    holder.bind(table, 'anchor-1');
    apartOf = () => holder.apart;
    keep.push(table, store);
    fill = async (from, to) => {
      const now = performance.now();
      for (let i = from; i < to; i++) {
        if ((i & 1023) === 1023) await turn();
        const idb = idBytes(i);
        const id = sessionIdHex(idb);
        const t = clientOf(i);
        const key = transportKey(t);
        const owner = owners[i % 3] as string;
        const rec = newSessionRecord({ id, owner, version: 1n, state: SessionState.ATTACHED, transport: t, listener: 0, now, idleTtlMs });
        if (!table.insert(rec)) throw new Error(`insert ${i} refused`);
        const r = await store.create({ id, owner, version: 1n, state: SessionState.ATTACHED, transport: key, director: 'anchor-1', expiresAt: Date.now() + idleTtlMs, incarnation: 0 });
        if (!r.ok) throw new Error(`create ${i} refused`);
      }
    };
  } else {
    const { DirectorCore } = await import('../src/director/core.js');
    const { createHasher } = await import('../src/ring/hash.js');
    const { buildRing } = await import('../src/ring/ring.js');
    const ring = buildRing(await createHasher(), owners.map((id) => ({ id, weight: 1 })));
    const core = new DirectorCore(
      { sessionMax: n + 1, idleTtlMs, tombstoneMs: 60_000, admissionRate: 1e9, admissionBurst: 1e9, rejectRate: 10, rejectBurst: 20, holdMax: 64, recordCache: HEADER_CACHE, reserveRows: n + 1 },
      ring,
    );
    const holder = new TableRecords();
    const store = new MemoryStore({ holder });
    holder.bind(core.table, 'anchor-1');
    apartOf = () => holder.apart;
    keep.push(core, store);
    adminOf = () => adminCost(core, ring);
    const dst = { family: 4 as const, address: '127.0.0.1', port: 4500 };
    const { SessionHeaders } = await import('../src/director/header-cache.js');
    const headers = new SessionHeaders<unknown>(HEADER_CACHE);
    keep.push(headers);
    // Client sources as the native data path reads them: a datagram's numeric source through the
    // director's PeerCache (src/net/native/addr.ts), which makes each session's Transport and key.
    const { PeerCache } = await import('../src/net/native/addr.js');
    const { Meta } = await import('../src/net/native/index.js');
    const peers = new PeerCache();
    const meta = new Int32Array(Meta.INTS);
    fill = async (from, to) => {
      for (let i = from; i < to; i++) {
        if ((i & 1023) === 1023) await turn();
        const now = performance.now();
        const a = i >>> 6;
        meta[Meta.FAMILY] = 4;
        meta[Meta.PORT] = 20000 + (i & 63);
        meta[Meta.ADDR] = (10 << 24) | a; // 10.x.y.z, 64 sessions per address, as clientOf(i)
        const { t: src, key } = peers.get(meta, 0);
        const hello = encodeJv1(PacketType.HELLO, idBytes(i));
        const out = core.onClient(hello, src, key, 0, now);
        if (out.kind !== 'admit') throw new Error(`session ${i}: ${out.kind} ${'reason' in out ? String(out.reason) : ''}`);
        const rec = out.session;
        const r = await store.create({ id: rec.id, owner: rec.owner, version: rec.version, state: rec.state, transport: rec.transportKey, director: 'anchor-1', expiresAt: Date.now() + idleTtlMs, incarnation: 0 });
        if (!r.ok) throw new Error(`create ${i} refused`);
        const { forwards } = core.admitted(rec, now);
        // What the shell (director.ts #templateFor) caches on the record at the first forward: the
        // session's whole PROXY v2 header as a template (or, before the lean data path, its prefix).
        for (const f of forwards) {
          const prefix = createPpv2Prefix('DGRAM', f.src, dst);
          const e = headers.cache(f.session, f.session.transport, f.listener, prefix, f.session.idBytes, f.node, upstreams.get(f.node), f.version, ownerBytes.get(f.node) as Uint8Array);
          // And the reply destination it keeps from the session's first reply (director.ts #relay).
          headers.destOf(e);
        }
      }
    };
  }
  const before = await settle();
  // In two halves, sampled between them too: the second half's bytes per session are what one more
  // session costs (the marginal), apart from what does not grow with the sessions (caches of a fixed
  // size, V8's young generation grown under the allocation).
  const half = n >> 1;
  let t0 = performance.now();
  await fill(0, half);
  let fillMs = performance.now() - t0;
  const mid = await settle();
  t0 = performance.now();
  await fill(half, n);
  fillMs += performance.now() - t0;
  const after = await settle();
  if (keep.length === 0) console.log('unreachable');
  // How the director builds its id strings (sessionIdHex) against a flat string of the same text: heap
  // bytes one id keeps alive, on 100,000 ids, after the main measurement (in the map child only).
  const idCost = async (flat: boolean): Promise<number> => {
    const k = 100_000;
    const arr: string[] = new Array<string>(k);
    const b0 = (await settle()).heapUsed;
    for (let i = 0; i < k; i++) arr[i] = flat ? Buffer.from(idBytes(n + i)).toString('hex') : sessionIdHex(idBytes(n + i));
    const b1 = (await settle()).heapUsed;
    return Math.round((b1 - b0) / k) - 8 + (arr.length - k); // minus the array slot
  };
  const idStringBytes = mode === 'map' ? { sessionIdHex: await idCost(false), flat: await idCost(true) } : undefined;
  const admin = adminOf === null ? undefined : await adminOf(); // after the memory samples: it allocates
  const apart = apartOf?.();
  return { mode, sessions: n, before, mid, after, fill_ms: Math.round(fillMs), ...(apart !== undefined ? { store_records_apart: apart } : {}), ...(idStringBytes !== undefined ? { id_string_bytes: idStringBytes } : {}), ...(admin !== undefined ? { admin } : {}) };
}

interface AdminCost {
  /** A page of 100 sessions (GET /v1/sessions), median of ADMIN_REPEATS, ms: SessionTable.list, all / one owner. */
  list_page_ms: number;
  list_page_owner_ms: number;
  /** The same page found by a scan of every record comparing id texts (the table's list before 2026-11-28), ms. */
  baseline_scan_page_ms: number;
  baseline_scan_page_owner_ms: number;
  /** The drain dry run of node-1 (a third of the sessions): DrainCoordinator.plan, a page of 100. */
  plan: { sessions: number; wall_ms: number; longest_loop_block_ms: number; longest_gc_ms: number };
  /** The same dry run computed at once as before 2026-11-28 (planDrain over every record of the node), one turn. */
  baseline_plan_ms: number;
}

const ADMIN_REPEATS = 5;

/**
 * The admin API's walks over a full table: a page of GET /v1/sessions and the drain dry run, against the
 * scans they replaced (re-implemented here as they were). The event loop's longest block while the dry
 * run counts is read from perf_hooks' event-loop delay histogram (1 ms resolution).
 */
async function adminCost(core: import('../src/director/core.js').DirectorCore, ring: import('../src/ring/ring.js').Ring): Promise<AdminCost> {
  const { default: TinyQueue } = await import('tinyqueue');
  const { monitorEventLoopDelay, PerformanceObserver } = await import('node:perf_hooks');
  const { DrainCoordinator } = await import('../src/drain/coordinator.js');
  const { planDrain } = await import('../src/drain/plan.js');
  const { DirectorStats } = await import('../src/obs/stats.js');
  const { systemClock } = await import('../src/util/clock.js');
  const { pino } = await import('pino');
  type Rec = import('../src/session/record.js').SessionRecord;
  const table = core.table;
  const medianMs = (f: () => unknown, k = ADMIN_REPEATS): number => {
    const xs: number[] = [];
    for (let i = 0; i < k; i++) {
      const t0 = performance.now();
      f();
      xs.push(performance.now() - t0);
    }
    xs.sort((a, b) => a - b);
    return Number((xs[xs.length >> 1] as number).toFixed(1));
  };
  const scanPage = (owner: string | undefined): Rec[] => {
    const heap = new TinyQueue<Rec>([], (a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    for (const rec of table.values()) {
      if (owner !== undefined && rec.owner !== owner) continue;
      if (heap.length < 101) heap.push(rec);
      else if (rec.id < (heap.peek() as Rec).id) {
        heap.pop();
        heap.push(rec);
      }
    }
    return heap.data;
  };
  const drains = new DrainCoordinator(
    { rate: 500, concurrency: 64 },
    // The dry run reads the table and the ring only: no drain is started here, so nothing is ever moved.
    // (The coordinator follows the ownership's transitions to count the ends of a drain's node: none here.)
    { core, ownership: { onTransition: () => {} } as unknown as import('../src/director/ownership.js').Ownership, clock: systemClock, logger: pino({ level: 'silent' }), stats: new DirectorStats(), setDraining: () => {} },
  );
  const loop = monitorEventLoopDelay({ resolution: 1 });
  let gcMax = 0; // the longest GC pause meanwhile: part of any block the loop saw
  const gcs = new PerformanceObserver((l) => {
    for (const e of l.getEntries()) gcMax = Math.max(gcMax, e.duration);
  });
  gcs.observe({ entryTypes: ['gc'] });
  loop.enable();
  const t0 = performance.now();
  const plan = await drains.plan('node-1', { limit: 100 });
  const wall = performance.now() - t0;
  loop.disable();
  await new Promise((r) => setTimeout(r, 50)); // GC entries arrive asynchronously
  gcs.disconnect();
  return {
    list_page_ms: medianMs(() => table.list({ limit: 100 })),
    list_page_owner_ms: medianMs(() => table.list({ owner: 'node-1', limit: 100 })),
    baseline_scan_page_ms: medianMs(() => scanPage(undefined), 3),
    baseline_scan_page_owner_ms: medianMs(() => scanPage('node-1'), 3),
    plan: { sessions: plan.sessions, wall_ms: Math.round(wall), longest_loop_block_ms: Number((loop.max / 1e6).toFixed(1)), longest_gc_ms: Number(gcMax.toFixed(1)) },
    baseline_plan_ms: medianMs(() => planDrain('node-1', [...table.values()].filter((r) => r.owner === 'node-1'), ring), 1),
  };
}

/**
 * Where the table+store bytes go: the same objects built one kind at a time for `n` sessions, heap +
 * external bytes per session after each step (each includes one 8-byte array slot that holds it).
 */
async function breakdown(n: number): Promise<{ step: string; bytes_per_session: number }[]> {
  const { sessionIdHex } = await import('../src/codec/jv1.js');
  const { SessionState } = await import('../src/session/lifecycle.js');
  const { SessionTable, newSessionRecord } = await import('../src/session/table.js');
  const { MemoryStore } = await import('../src/store/memory.js');
  const { TableRecords } = await import('../src/store/table-records.js');
  const total = async (): Promise<number> => {
    const s = await settle();
    return s.heapUsed + s.external;
  };
  const out: { step: string; bytes_per_session: number }[] = [];
  let last = await total();
  const mark = async (step: string): Promise<void> => {
    const now = await total();
    out.push({ step, bytes_per_session: Math.round((now - last) / n) });
    last = now;
  };
  // Records keep no id bytes of their own (idBytes is decoded from the id text when read): the bytes
  // here are transient, as a packet's are.
  const ids = Array.from({ length: n }, (_, i) => sessionIdHex(idBytes(i)));
  await mark('id text: sessionIdHex');
  const ts = Array.from({ length: n }, (_, i) => clientOf(i));
  await mark('transport object and its address string');
  // Owners are the ring's node ids (shared strings), times are monotonic ms as the director's clock gives.
  const owners = ['node-0', 'node-1', 'node-2'];
  const now = performance.now();
  // The records themselves are not kept by the bench (the table keeps rows, and records only for the
  // sessions in use): each is made and inserted in one step. The rows are made for n up front, as the
  // director reserves session.max: columns that grow leave their old buffers to be freed later, in another
  // step's figure.
  const table = new SessionTable({ max: n + 1, idleTtlMs: 120_000, tombstoneMs: 60_000, records: HEADER_CACHE, reserve: n + 1 });
  for (let i = 0; i < n; i++) {
    if ((i & 1023) === 1023) await turn();
    table.insert(newSessionRecord({ id: ids[i] as string, owner: owners[i % 3] as string, version: 1n, state: SessionState.ATTACHED, transport: ts[i]!, listener: 0, now, idleTtlMs: 120_000 }));
  }
  await settle();
  await mark(`SessionTable.insert of newSessionRecord records: a row of columns, the id index and the expiry heap, and records kept for the last ${Math.min(n, HEADER_CACHE).toLocaleString('en-US')} sessions (src/session/table.ts)`);
  // The director's embedded store: its records read from the table's rows (src/store/table-records.ts).
  const holder = new TableRecords();
  const store = new MemoryStore({ holder });
  holder.bind(table, 'anchor-1');
  for (let i = 0; i < n; i++) {
    await store.create({ id: ids[i] as string, owner: owners[i % 3] as string, version: 1n, state: SessionState.ATTACHED, transport: `${ts[i]!.address}:${ts[i]!.port}`, director: 'anchor-1', expiresAt: Date.now() + 120_000, incarnation: 0 });
  }
  await mark('MemoryStore.create, its records read from the table\'s rows: an expiry per row (src/store/table-records.ts)');
  if (table.size + store.size < 0) console.log('unreachable');
  return out;
}

async function runChild(mode: Mode | 'breakdown'): Promise<ChildReport> {
  const self = fileURLToPath(import.meta.url);
  const n = mode === 'breakdown' ? BREAKDOWN_SESSIONS : SESSIONS;
  const p = spawn(process.execPath, ['--expose-gc', '--max-old-space-size=8192', self, 'child', mode, String(n)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const killer = setTimeout(() => p.kill('SIGKILL'), 300_000);
  const code = await new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
  clearTimeout(killer);
  const line = out.split('\n').reverse().find((l) => l.startsWith('{'));
  if (code !== 0 || line === undefined) {
    return { mode: mode as Mode, sessions: n, before: {} as Sample, after: {} as Sample, fill_ms: 0, error: `exit ${code}: ${err.slice(-500)}` };
  }
  return JSON.parse(line) as ChildReport;
}

export async function benchMemory(): Promise<unknown> {
  const rows = [];
  // The children run at once (each measures only itself; on 2 cores this halves the wall time).
  const [steps, ...reports] = await Promise.all([runChild('breakdown'), ...MODES.map((m) => runChild(m))]) as [ChildReport, ...ChildReport[]];
  for (const r of reports) {
    const mode = r.mode;
    if (r.error !== undefined) {
      console.log(`memory ${mode}: FAILED ${r.error}`);
      rows.push({ mode, error: r.error });
      continue;
    }
    const per = (k: keyof Sample): number => Math.round((r.after[k] - r.before[k]) / r.sessions);
    const half = r.sessions >> 1;
    const marginal = r.mid === undefined ? null : Math.round((r.after.rss - r.mid.rss) / (r.sessions - half));
    rows.push({
      mode,
      sessions: r.sessions,
      rss_per_session: per('rss'),
      rss_per_session_second_half: marginal,
      heap_used_per_session: per('heapUsed'),
      external_per_session: per('external'),
      rss_before_mib: Number((r.before.rss / 2 ** 20).toFixed(1)),
      rss_after_mib: Number((r.after.rss / 2 ** 20).toFixed(1)),
      heap_used_after_mib: Number((r.after.heapUsed / 2 ** 20).toFixed(1)),
      fill_s: Number((r.fill_ms / 1000).toFixed(1)),
      ...(r.store_records_apart !== undefined ? { store_records_apart: r.store_records_apart } : {}),
    });
  }
  const ref = rows.find((x) => x.mode === 'map') as { rss_per_session?: number } | undefined;
  for (const row of rows as { rss_per_session?: number; vs_map?: number | null }[]) {
    row.vs_map = ref?.rss_per_session !== undefined && row.rss_per_session !== undefined ? Number((row.rss_per_session / ref.rss_per_session).toFixed(2)) : null;
  }
  console.log(
    `memory: bytes per session with ${SESSIONS.toLocaleString('en-US')} sessions (after - before, each after a full GC; own child process each); rss_per_session_second_half: the RSS the second ${(SESSIONS - (SESSIONS >> 1)).toLocaleString('en-US')} sessions added, per session (what grows with the sessions, without what is fixed: caches of a fixed size, the young generation)`,
  );
  console.table(rows);
  const admin = reports.find((r) => r.admin !== undefined)?.admin;
  if (admin !== undefined) {
    console.log(
      `memory: the admin API at ${SESSIONS.toLocaleString('en-US')} sessions (director child): a page of GET /v1/sessions ${admin.list_page_ms} ms (one owner ${admin.list_page_owner_ms} ms) against ${admin.baseline_scan_page_ms} ms (${admin.baseline_scan_page_owner_ms} ms) for a scan of the records; ` +
        `the drain dry run of ${admin.plan.sessions.toLocaleString('en-US')} sessions ${admin.plan.wall_ms} ms with the event loop blocked ${admin.plan.longest_loop_block_ms} ms at most (the longest GC pause meanwhile ${admin.plan.longest_gc_ms} ms), against ${admin.baseline_plan_ms} ms in one turn`,
    );
  }
  const ids = reports.find((r) => r.id_string_bytes !== undefined)?.id_string_bytes;
  if (ids !== undefined) console.log(`memory: one session id string keeps ${ids.sessionIdHex} heap bytes as sessionIdHex builds it, ${ids.flat} as a flat string`);
  const stepRows = steps.breakdown ?? [];
  if (stepRows.length > 0) {
    console.log(`memory: where table+store's bytes go (heap + external per session, ${BREAKDOWN_SESSIONS.toLocaleString('en-US')} sessions built one kind of object at a time; each step includes an 8-byte array slot)`);
    console.table(stepRows);
  } else if (steps.error !== undefined) console.log(`memory breakdown: FAILED ${steps.error}`);
  const result = {
    bench: 'memory',
    date: today(),
    machine: machine(),
    sessions: SESSIONS,
    target_rss_per_session: 100,
    modes: {
      map: 'Map<id hex, {owner, version, transport}>: the reference',
      'table+store': 'SessionTable.insert + MemoryStore.create of newSessionRecord records (src/session/table.ts, src/store/memory.ts)',
      director: 'DirectorCore.onClient(HELLO) -> MemoryStore.create -> DirectorCore.admitted, plus the shell\'s cached PROXY v2 header template per session',
    },
    rows,
    id_string_bytes: ids ?? null,
    admin: admin ?? null,
    breakdown: { sessions: BREAKDOWN_SESSIONS, steps: stepRows },
    reports,
  };
  console.log('written', writeResult('memory', result));
  return result;
}

if (process.argv[2] === 'child' && process.argv[1] === fileURLToPath(import.meta.url) && process.argv[3] === 'breakdown') {
  const n = Number(process.argv[4] ?? BREAKDOWN_SESSIONS);
  const r: ChildReport = { mode: 'map', sessions: n, before: {} as Sample, after: {} as Sample, fill_ms: 0, breakdown: await breakdown(n) };
  console.log(JSON.stringify(r));
} else if (process.argv[2] === 'child' && process.argv[1] === fileURLToPath(import.meta.url)) {
  const mode = process.argv[3] as Mode;
  if (!MODES.includes(mode)) throw new Error(`unknown mode ${mode}`);
  const r = await child(mode, Number(process.argv[4] ?? SESSIONS));
  console.log(JSON.stringify(r));
}
