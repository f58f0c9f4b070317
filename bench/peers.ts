// The peers bench (issue 7): UDP round trips per second through Anchor against what an operator would
// pick instead, in the same run, on the same pinning, with a load generator and backends in C that are
// faster than any of the proxies:
//   direct  the load generator straight to the backends (the ceiling: no proxy at all);
//   relay   bench/relay.ts, the minimal Node relay (Node's floor);
//   relay-native  the same relay over the native batched-UDP addon (src/net/native: recvmmsg/sendmmsg,
//           one JS call per batch): what Node can do once the per-datagram I/O cost is gone;
//   nginx   nginx's stream module, one worker, `hash $remote_addr$remote_port consistent`;
//   anchor  `anchor run` with its default config (PROXY v2 to the backends, health probes, metrics on);
//   anchor-nogso  (only when named in BENCH_PEERS_CONFIGS) the same with socket.gso off.
// The proxy under test runs on core PROXY_CPU (`taskset -c 0`), the load generator and the backends on
// LOAD_CPU (`taskset -c 1`). Every configuration is run REPEATS times, interleaved (the order rotates
// each round); medians, ratios and each process's CPU use (from /proc/PID/stat) are printed and written
// to bench/results/peers.json, and the chart to bench/results/peers.svg.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import { barChartSvg, stackSvgs } from './chart.js';
import {
  childPids,
  coreBusyPct,
  coreJiffies,
  cpuInfo,
  freePort,
  LOAD_CPU,
  MAIN,
  median,
  PROXY_CPU,
  RESULTS,
  ROOT,
  startProcess,
  today,
  treeCpuSeconds,
  udpHelloAnswered,
  writeResult,
  type Proc,
} from './lib.js';
import { nativeBinary } from './native.js';
import { loadNativeUdp } from '../src/net/native/index.js';

const env = process.env;
const num = (v: string | undefined, d: number): number => (v === undefined || v === '' ? d : Number(v));
const list = (v: string | undefined, d: string): string[] => (v ?? d).split(',').map((x) => x.trim()).filter((x) => x !== '');

const REPEATS = num(env.BENCH_PEERS_REPEATS ?? env.BENCH_REPEATS, 3);
const DURATION_S = num(env.BENCH_PEERS_DURATION_S, 2);
const WARMUP_S = num(env.BENCH_PEERS_WARMUP_S, 0.5);
const SESSIONS = num(env.BENCH_PEERS_SESSIONS, 100);
const WINDOWS = list(env.BENCH_PEERS_WINDOWS, '1,16,128').map(Number);
const SIZES = list(env.BENCH_PEERS_SIZES, '64,1200').map(Number);
const OPEN_RATE = num(env.BENCH_PEERS_RATE, 10_000);
const OPEN_SIZE = num(env.BENCH_PEERS_RATE_SIZE, 64);
/** Seconds of unrecorded traffic through every proxy before the first measurement (JIT, caches). */
const PREWARM_S = num(env.BENCH_PEERS_PREWARM_S, 2);
const SINGLE_SOCKET = env.BENCH_PEERS_SINGLE_SOCKET === '1';
const CONFIGS = list(env.BENCH_PEERS_CONFIGS, 'direct,relay,relay-native,nginx,anchor,anchor-dgram') as ConfigName[];
const MAX_PACKETS = 20_000_000;
const NGINX_BIN = '/usr/sbin/nginx';
const NGINX_STREAM = '/usr/lib/nginx/modules/ngx_stream_module.so';

type ConfigName = 'direct' | 'relay' | 'relay-ppv2' | 'relay-native' | 'relay-native-ppv2' | 'nginx' | 'anchor' | 'anchor-dgram' | 'anchor-nogso';
/** relay-ppv2 and relay-native-ppv2 (a cached PROXY v2 header per session) are not in the default set. */
const ALL_CONFIGS: readonly ConfigName[] = ['direct', 'relay', 'relay-ppv2', 'relay-native', 'relay-native-ppv2', 'nginx', 'anchor', 'anchor-dgram', 'anchor-nogso'];
const COLORS: Record<ConfigName, string> = { direct: '#9e9e9e', relay: '#4e79a7', 'relay-ppv2': '#76b7b2', 'relay-native': '#f28e2b', 'relay-native-ppv2': '#edc948', nginx: '#59a14f', anchor: '#e15759', 'anchor-dgram': '#ff9da7', 'anchor-nogso': '#b07aa1' };

interface Point {
  readonly key: string;
  readonly label: string;
  readonly window?: number;
  readonly rate?: number;
  readonly size: number;
}

interface GenReport {
  readonly mode: string;
  readonly sessions: number;
  readonly sessions_ok: number;
  readonly hello_rejected: number;
  readonly sent: number;
  readonly received: number;
  readonly lost: number;
  readonly late: number;
  readonly send_failures: number;
  readonly round_trips_per_s: number;
  readonly loss_pct: number;
  readonly duration_s: number;
  readonly rtt_us: { p50: number; p99: number; p999: number; mean: number; max: number };
  readonly cpu_pct: number;
  readonly error?: string;
}

interface Run {
  readonly config: ConfigName;
  readonly point: string;
  readonly repeat: number;
  readonly gen: GenReport | null;
  readonly error?: string;
  /** The proxy hardly ran (other work had its core): kept for the record, repeated, left out of medians. */
  readonly starved?: boolean;
  /**
   * CPU % of one core over the measured window: the proxy (all its processes), the backends, the
   * generator; and how busy each of the two cores was in all (other work on the machine included).
   */
  readonly cpu: { proxy: number | null; backend: number; generator: number; proxy_core_busy: number; load_core_busy: number };
  /**
   * Anchor on the native addon: datagrams per system call over the run (warm-up included), by socket
   * kind and call — how much batching the load allowed.
   */
  readonly batch?: Record<string, number | null>;
}

interface Live {
  readonly name: ConfigName;
  readonly target: string;
  /** The processes of the proxy (nginx: the master; its workers are counted through /proc children). */
  readonly proc: Proc | null;
  /** Anchor's admin port (its counters are read at the end). */
  readonly adminPort?: number;
}

function points(): Point[] {
  const out: Point[] = [];
  for (const w of WINDOWS) for (const s of SIZES) out.push({ key: `W${w}/${s}B`, label: `W=${w} ${s} B`, window: w, size: s });
  if (OPEN_RATE > 0) out.push({ key: `open ${OPEN_RATE}/${OPEN_SIZE}B`, label: `open ${Math.round(OPEN_RATE / 1000)}k/s ${OPEN_SIZE} B`, rate: OPEN_RATE, size: OPEN_SIZE });
  return out;
}

/** nginx and its stream module: present, installed now (root, apt-get), or a reason to skip nginx. */
function ensureNginx(): { ok: true } | { ok: false; reason: string } {
  if (existsSync(NGINX_BIN) && existsSync(NGINX_STREAM)) return { ok: true };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'nginx or libnginx-mod-stream is not installed and the bench is not running as root (apt-get install nginx libnginx-mod-stream)' };
  console.log('peers: installing nginx and libnginx-mod-stream with apt-get (the service is not started: policy-rc.d permitting)');
  const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): void => {
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'nginx', 'libnginx-mod-stream'], { stdio: 'inherit', env: aptEnv, timeout: 300_000 });
  };
  try {
    try {
      install();
    } catch {
      execFileSync('apt-get', ['update'], { stdio: 'inherit', env: aptEnv, timeout: 300_000 });
      install();
    }
  } catch (err) {
    return { ok: false, reason: `apt-get install nginx libnginx-mod-stream failed: ${String(err).slice(0, 300)}` };
  }
  return existsSync(NGINX_BIN) && existsSync(NGINX_STREAM) ? { ok: true } : { ok: false, reason: `installed, but ${NGINX_BIN} or ${NGINX_STREAM} is missing` };
}

function nginxConf(dir: string, port: number, backends: readonly number[]): string {
  return `# Generated by bench/peers.ts: nginx stream module, one worker, UDP, sticky by client transport.
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
load_module ${NGINX_STREAM};
events { worker_connections 4096; }
stream {
    upstream anchor_bench_backends {
        hash $remote_addr$remote_port consistent;
${backends.map((p) => `        server 127.0.0.1:${p};`).join('\n')}
    }
    server {
        # The same socket buffers as Anchor's defaults (socket.recv_buffer_bytes / send_buffer_bytes).
        listen 127.0.0.1:${port} udp rcvbuf=4194304 sndbuf=1048576;
        proxy_pass anchor_bench_backends;
        # proxy_protocol off: nginx sends PROXY v1 only; the backends get the bare JV1 datagram.
        proxy_timeout 20s;
    }
}
`;
}

/** Runs the load generator once against `live`, sampling the CPU of the processes at the window's edges. */
async function runGen(bin: string, live: Live, backend: Proc, p: Point, repeat: number, durationS = DURATION_S): Promise<Run> {
  const args = ['--target', live.target, '--sessions', String(SESSIONS), '--size', String(p.size), '--duration', String(durationS), '--warmup', String(WARMUP_S), '--max-packets', String(MAX_PACKETS)];
  if (p.window !== undefined) args.push('--window', String(p.window));
  else args.push('--rate', String(p.rate));
  if (SINGLE_SOCKET) args.push('--single-socket');
  const gen = spawn('taskset', ['-c', String(LOAD_CPU), bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const proxyPid = live.proc?.pid;
  const sample = (): { t: number; proxy: number; backend: number; cores: [number, number][] } => ({
    t: performance.now(),
    cores: coreJiffies(),
    proxy: proxyPid === undefined ? Number.NaN : treeCpuSeconds(proxyPid),
    backend: treeCpuSeconds(backend.pid),
  });
  let s0: ReturnType<typeof sample> | null = null;
  let s1: ReturnType<typeof sample> | null = null;
  gen.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  gen.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    if (s0 === null && err.includes('phase measure')) s0 = sample();
    if (s1 === null && err.includes('phase done')) s1 = sample();
  });
  const killer = setTimeout(() => gen.kill('SIGKILL'), (durationS + WARMUP_S + 25) * 1000);
  const code = await new Promise<number | null>((resolve) => gen.once('exit', (c) => resolve(c)));
  clearTimeout(killer);
  const line = out.split('\n').reverse().find((l) => l.startsWith('{'));
  let rep: GenReport | null = null;
  let repError: string | undefined;
  try {
    rep = line === undefined ? null : (JSON.parse(line) as GenReport);
  } catch {
    rep = null;
  }
  if (rep !== null && (rep.error !== undefined || typeof rep.round_trips_per_s !== 'number')) {
    repError = `${rep.error ?? 'incomplete report'} (${line ?? ''})`;
    rep = null;
  }
  const a = s0 as ReturnType<typeof sample> | null;
  const b = s1 as ReturnType<typeof sample> | null;
  const secs = a !== null && b !== null ? (b.t - a.t) / 1000 : Number.NaN;
  const pct = (x: number, y: number): number => Number((((y - x) / secs) * 100).toFixed(1));
  const run: Run = {
    config: live.name,
    point: p.key,
    repeat,
    gen: rep,
    cpu: {
      proxy: proxyPid === undefined || a === null || b === null ? null : pct(a.proxy, b.proxy),
      backend: a === null || b === null ? Number.NaN : pct(a.backend, b.backend),
      generator: rep?.cpu_pct ?? Number.NaN,
      proxy_core_busy: a === null || b === null ? Number.NaN : coreBusyPct(a.cores, b.cores, PROXY_CPU),
      load_core_busy: a === null || b === null ? Number.NaN : coreBusyPct(a.cores, b.cores, LOAD_CPU),
    },
    ...(code !== 0 || rep === null ? { error: `exit ${code}: ${(repError ?? '') + err.replace(/phase \w+\n/g, '').slice(-300)}` } : {}),
  };
  return run;
}

interface Summary {
  readonly point: string;
  readonly config: ConfigName;
  readonly runs: number;
  readonly round_trips_per_s: number;
  readonly loss_pct: number;
  readonly rtt_us: { p50: number; p99: number; p999: number };
  readonly cpu_pct: { proxy: number | null; backend: number; generator: number; load_core: number; proxy_core_busy: number; load_core_busy: number };
  /** Round trips per CPU-second of the proxy: throughput per busy proxy core. */
  readonly round_trips_per_proxy_cpu_s: number | null;
  readonly limited_by: string;
}

const r1 = (x: number): number => Number(x.toFixed(1));
const fmtUs = (us: number): string => (us >= 10_000 ? `${(us / 1000).toFixed(0)} ms` : us >= 1000 ? `${(us / 1000).toFixed(1)} ms` : `${Math.round(us)} µs`);

function summarize(p: Point, config: ConfigName, runs: readonly Run[]): Summary {
  const ok = runs.filter((r) => r.gen !== null && r.error === undefined && r.starved !== true);
  const g = (f: (r: Run) => number): number => median(ok.map(f));
  const rt = g((r) => (r.gen as GenReport).round_trips_per_s);
  const proxy = config === 'direct' ? null : g((r) => r.cpu.proxy ?? Number.NaN);
  const backend = g((r) => r.cpu.backend);
  const generator = g((r) => r.cpu.generator);
  const loadCore = g((r) => r.cpu.backend + r.cpu.generator);
  const proxyCoreBusy = g((r) => r.cpu.proxy_core_busy);
  const loadCoreBusy = g((r) => r.cpu.load_core_busy);
  // Which resource ran out: the proxy's core (by the proxy itself, or shared with other work on the
  // machine), the generator's and backends' core, or none (a small window leaves every process waiting
  // on the round trip: latency-bound; an open loop below saturation: the offered rate).
  const loadSaturated = loadCore >= 90 || loadCoreBusy >= 95;
  const limited =
    proxy !== null && proxy >= 85
      ? loadSaturated
        ? 'proxy core (load core saturated too)'
        : 'proxy core'
      : proxy !== null && proxyCoreBusy >= 90
        ? `proxy core, shared (others ${Math.round(proxyCoreBusy - proxy)}%)`
        : loadSaturated
          ? 'load core (generator + backends)'
          : p.window !== undefined
            ? 'round-trip latency (window)'
            : 'offered rate';
  return {
    point: p.key,
    config,
    runs: ok.length,
    round_trips_per_s: Math.round(rt),
    loss_pct: Number(g((r) => (r.gen as GenReport).loss_pct).toFixed(3)),
    rtt_us: { p50: r1(g((r) => (r.gen as GenReport).rtt_us.p50)), p99: r1(g((r) => (r.gen as GenReport).rtt_us.p99)), p999: r1(g((r) => (r.gen as GenReport).rtt_us.p999)) },
    cpu_pct: { proxy: proxy === null ? null : r1(proxy), backend: r1(backend), generator: r1(generator), load_core: r1(loadCore), proxy_core_busy: r1(proxyCoreBusy), load_core_busy: r1(loadCoreBusy) },
    round_trips_per_proxy_cpu_s: proxy === null || !(proxy > 0) ? null : Math.round(median(ok.map((r) => ((r.gen as GenReport).round_trips_per_s * 100) / (r.cpu.proxy ?? Number.NaN)))),
    limited_by: limited,
  };
}

/** A run in which the proxy got under 15% of its core while that core was at least 95% busy. */
function starved(r: Run): boolean {
  return r.cpu.proxy !== null && r.cpu.proxy < 15 && r.cpu.proxy_core_busy >= 95;
}

const ratio = (a: number | null | undefined, b: number | null | undefined): number | null =>
  a === null || a === undefined || b === null || b === undefined || !(b > 0) || !Number.isFinite(a) ? null : Number((a / b).toFixed(2));

/**
 * Datagrams per recvmmsg / sendmmsg between two readings of Anchor's counters, by socket kind, and the
 * share of the datagrams sent that left inside segmentation-offload messages (`*_gso_share`, socket.gso).
 */
function batchSizes(a: Record<string, number>, b: Record<string, number>): Record<string, number | null> {
  const d = (k: string): number => (b[k] ?? 0) - (a[k] ?? 0);
  const out: Record<string, number | null> = {};
  for (const socket of ['client', 'node']) {
    for (const [call, direction] of [['recvmmsg', 'received'], ['sendmmsg', 'sent']] as const) {
      const calls = d(`anchor_udp_native_syscalls_total{socket="${socket}",call="${call}"}`);
      const dgrams = d(`anchor_udp_native_datagrams_total{socket="${socket}",direction="${direction}"}`);
      out[`${socket}_${call}`] = calls > 0 ? Number((dgrams / calls).toFixed(2)) : null;
    }
    const sent = d(`anchor_udp_native_datagrams_total{socket="${socket}",direction="sent"}`);
    out[`${socket}_gso_share`] = sent > 0 ? Number((d(`anchor_udp_native_gso_datagrams_total{socket="${socket}"}`) / sent).toFixed(2)) : null;
  }
  return out;
}

async function anchorCounters(adminPort: number): Promise<Record<string, number>> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const out: Record<string, number> = {};
    for (const line of text.split('\n')) {
      const m = /^(anchor_(?:client_datagrams_\w+|node_datagrams_\w+|send_errors_total|admissions_total|rejects_sent_total|malformed_datagrams_total|udp_native_syscalls_total|udp_native_datagrams_total|udp_native_gso_datagrams_total)(\{[^}]*\})?) (\S+)$/.exec(line);
      if (m !== null && Number(m[3]) !== 0) out[m[1] as string] = Number(m[3]);
    }
    return out;
  } catch {
    return { error_fetching_metrics: 1 };
  }
}

export async function benchPeers(): Promise<unknown> {
  const loadgen = nativeBinary('loadgen');
  const backendBin = nativeBinary('backend');
  const dir = mkdtempSync(join(tmpdir(), 'anchor-bench-peers-'));
  const procs: Proc[] = [];
  const notes: string[] = [];
  try {
    const bPorts = [await freePort(), await freePort(), await freePort()];
    const backend = await startProcess('backend', backendBin, ['--listen', bPorts.map((p) => `127.0.0.1:${p}`).join(','), '--max-seconds', '3600'], { cpu: LOAD_CPU, ready: /backend listening/ });
    procs.push(backend);
    const lives: Live[] = [];
    for (const name of CONFIGS) {
      if (!ALL_CONFIGS.includes(name)) throw new Error(`unknown config ${name} in BENCH_PEERS_CONFIGS`);
      if (name === 'direct') {
        lives.push({ name, target: bPorts.map((p) => `127.0.0.1:${p}`).join(','), proc: null });
      } else if (name === 'relay' || name === 'relay-ppv2' || name === 'relay-native' || name === 'relay-native-ppv2') {
        if (name === 'relay-native' || name === 'relay-native-ppv2') {
          const native = loadNativeUdp();
          if (!native.ok) {
            const msg = `${name} skipped: ${native.reason}`;
            console.log(`peers: ${msg}`);
            notes.push(msg);
            continue;
          }
        }
        const port = await freePort();
        const mode = { relay: [], 'relay-ppv2': ['--ppv2'], 'relay-native': ['--native'], 'relay-native-ppv2': ['--native', '--ppv2'] }[name];
        const relayArgs = [join(ROOT, 'dist/bench/relay.js'), '--listen', `127.0.0.1:${port}`, '--backends', bPorts.map((p) => `127.0.0.1:${p}`).join(','), ...mode];
        const relay = await startProcess(name, process.execPath, relayArgs, { cpu: PROXY_CPU, ready: /relay listening/ });
        procs.push(relay);
        lives.push({ name, target: `127.0.0.1:${port}`, proc: relay });
      } else if (name === 'nginx') {
        const ok = ensureNginx();
        if (!ok.ok) {
          const msg = `nginx skipped: ${ok.reason}`;
          console.log(`peers: ${msg}`);
          notes.push(msg);
          continue;
        }
        const port = await freePort();
        const ndir = join(dir, 'nginx');
        mkdirSync(ndir, { recursive: true });
        writeFileSync(join(ndir, 'nginx.conf'), nginxConf(ndir, port, bPorts));
        const nginx = await startProcess('nginx', NGINX_BIN, ['-p', `${ndir}/`, '-e', join(ndir, 'error.log'), '-c', join(ndir, 'nginx.conf'), '-g', 'daemon off;'], {
          cpu: PROXY_CPU,
          readyCheck: () => udpHelloAnswered(port),
        });
        nginx.extraPids.push(...childPids(nginx.pid));
        procs.push(nginx);
        lives.push({ name, target: `127.0.0.1:${port}`, proc: nginx });
      } else {
        const port = await freePort();
        const adminPort = await freePort();
        const cfg = join(dir, `${name}.yaml`);
        // Anchor's defaults, except: addresses, the admission limit per source IP (every session of the
        // bench comes from 127.0.0.1; the default 100/s would refuse them) and an audit file (by default
        // audit lines go to the log, which the bench would buffer). `anchor-dgram`: the same with
        // socket.native off (node:dgram), the data path before the native addon; `anchor-nogso` (not in
        // the default set): socket.gso off, every datagram a sendmmsg message of its own.
        writeFileSync(
          cfg,
          dump({
            listen: { udp: [`127.0.0.1:${port}`] },
            admin: { listen: `127.0.0.1:${adminPort}` },
            nodes: bPorts.map((p, i) => ({ id: `node-${i}`, address: `127.0.0.1:${p}` })),
            admission: { per_source_rate: 1_000_000, per_source_burst: 1_000_000 },
            audit: { path: join(dir, `${name}-audit.jsonl`) },
            ...(name === 'anchor-dgram' ? { socket: { native: 'off' } } : name === 'anchor-nogso' ? { socket: { gso: false } } : {}),
          }),
        );
        // BENCH_CPU_PROF=DIR: each Anchor writes a V8 CPU profile into DIR when it exits (after its drain).
        const prof = env.BENCH_CPU_PROF !== undefined && env.BENCH_CPU_PROF !== '' ? ['--cpu-prof', `--cpu-prof-dir=${env.BENCH_CPU_PROF}`] : [];
        const anchor = await startProcess(name, process.execPath, [...prof, MAIN, 'run', '--config', cfg], { cpu: PROXY_CPU, ready: /director started/, timeoutMs: 30_000 });
        if (prof.length > 0) {
          const stop = anchor.stop.bind(anchor);
          anchor.stop = () => stop(60_000);
        }
        const io = /"udp_io":"(\w+)"/.exec(anchor.output)?.[1] ?? 'unknown';
        console.log(`peers: ${name} uses ${io} UDP I/O`);
        if (name === 'anchor' && io !== 'native') notes.push(`anchor ran on ${io} UDP I/O (the native addon was not built?)`);
        procs.push(anchor);
        // Health probes must have passed (rise: 2 at 1 s) before sessions are admitted everywhere.
        const until = Date.now() + 10_000;
        while (!(await udpHelloAnswered(port)) && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
        lives.push({ name, target: `127.0.0.1:${port}`, proc: anchor, adminPort });
      }
    }
    const pinning = `proxy under test: taskset -c ${PROXY_CPU}; load generator and backends: taskset -c ${LOAD_CPU}`;
    console.log(`peers: ${pinning}`);
    console.log(`peers: ${SESSIONS} sessions (${SINGLE_SOCKET ? 'one shared socket' : 'one socket each'}), ${DURATION_S} s measured after ${WARMUP_S} s warm-up, ${REPEATS} repeats interleaved; configs ${lives.map((l) => l.name).join(', ')}`);

    const pts = points();
    const runs: Run[] = [];
    if (PREWARM_S > 0) {
      // Every proxy carries traffic once before anything is recorded: the Node ones are JIT-compiled
      // by then, as a proxy in service would be.
      for (const live of lives) {
        if (live.proc === null) continue;
        const w = await runGen(loadgen, live, backend, { key: 'prewarm', label: 'prewarm', window: 16, size: 64 }, -1, PREWARM_S);
        console.log(`  prewarm ${live.name}: ${w.gen === null ? 'no report' : `${Math.round(w.gen.round_trips_per_s)} rt/s`}${w.error !== undefined ? ` ERROR ${w.error}` : ''}`);
      }
    }
    for (const p of pts) {
      for (let rep = 0; rep < REPEATS; rep++) {
        // Rotate the order every round, so no configuration always runs first (or right after another).
        const order = lives.map((_, i) => lives[(i + rep) % lives.length] as Live);
        for (const live of order) {
          // One run, with Anchor's batch sizes over it (its counters read before and after).
          const measure = async (): Promise<Run> => {
            const admin = live.adminPort;
            const c0 = admin === undefined ? null : await anchorCounters(admin);
            const r = await runGen(loadgen, live, backend, p, rep);
            if (c0 === null || admin === undefined) return r;
            const batch = batchSizes(c0, await anchorCounters(admin));
            // None on node:dgram (anchor-dgram has no native sockets to count).
            return Object.values(batch).every((v) => v === null) ? r : { ...r, batch };
          };
          let run = await measure();
          if (run.error !== undefined) {
            // A run without any session answered (e.g. Anchor's health probes timed out on an overloaded
            // machine, so it refused new sessions with NO_HEALTHY_NODE for a while): say so, once more.
            const alive = live.proc === null || (live.proc.proc.exitCode === null && live.proc.proc.signalCode === null);
            const msg = `${live.name} ${p.key} #${rep + 1} failed (${run.error.slice(0, 300)}); proxy ${alive ? 'alive' : `exited: ${live.proc?.output.slice(-600)}`}`;
            notes.push(msg);
            console.log(`  ${msg}`);
            if (alive) {
              await new Promise((r) => setTimeout(r, 3000));
              run = await measure();
              if (run.error === undefined) notes.push(`${live.name} ${p.key} #${rep + 1}: the retry 3 s later succeeded`);
            }
          }
          if (run.error === undefined && starved(run)) {
            // The proxy hardly ran although its core was busy: other work on the machine took the core
            // (it happens on this shared machine, for seconds at a time). Kept in the JSON, flagged; the
            // run is repeated once and the repeat is the one that counts.
            const msg = `${live.name} ${p.key} #${rep + 1}: proxy starved (${run.cpu.proxy}% CPU, core ${run.cpu.proxy_core_busy}% busy, ${Math.round(run.gen?.round_trips_per_s ?? 0)} rt/s); repeated`;
            notes.push(msg);
            console.log(`  ${msg}`);
            runs.push({ ...run, starved: true });
            run = await measure();
          }
          runs.push(run);
          const g = run.gen;
          console.log(
            `  ${p.key.padEnd(16)} ${live.name.padEnd(6)} #${rep + 1}: ${g === null ? 'no report' : `${Math.round(g.round_trips_per_s)} rt/s, loss ${g.loss_pct.toFixed(2)}%, p50 ${g.rtt_us.p50} us, p99 ${g.rtt_us.p99} us`}` +
              `  cpu proxy ${run.cpu.proxy ?? '-'}% backend ${run.cpu.backend}% gen ${run.cpu.generator}%${run.error !== undefined ? `  ERROR ${run.error}` : ''}` +
              (run.batch === undefined ? '' : `  batch ${Object.entries(run.batch).map(([k, v]) => `${k} ${v ?? '-'}`).join(', ')}`),
          );
        }
      }
    }

    const summaries: Summary[] = [];
    for (const p of pts) for (const l of lives) summaries.push(summarize(p, l.name, runs.filter((r) => r.point === p.key && r.config === l.name)));
    const get = (p: Point, c: ConfigName): Summary | undefined => summaries.find((s) => s.point === p.key && s.config === c);
    const ratios = pts.map((p) => {
      const a = get(p, 'anchor');
      return {
        point: p.key,
        anchor_over_nginx: ratio(a?.round_trips_per_s, get(p, 'nginx')?.round_trips_per_s),
        anchor_over_relay: ratio(a?.round_trips_per_s, get(p, 'relay')?.round_trips_per_s),
        anchor_over_direct: ratio(a?.round_trips_per_s, get(p, 'direct')?.round_trips_per_s),
        per_proxy_cpu_anchor_over_nginx: ratio(a?.round_trips_per_proxy_cpu_s, get(p, 'nginx')?.round_trips_per_proxy_cpu_s),
        per_proxy_cpu_anchor_over_relay: ratio(a?.round_trips_per_proxy_cpu_s, get(p, 'relay')?.round_trips_per_proxy_cpu_s),
        anchor_over_anchor_dgram: ratio(a?.round_trips_per_s, get(p, 'anchor-dgram')?.round_trips_per_s),
        per_proxy_cpu_anchor_over_anchor_dgram: ratio(a?.round_trips_per_proxy_cpu_s, get(p, 'anchor-dgram')?.round_trips_per_proxy_cpu_s),
        per_proxy_cpu_anchor_dgram_over_nginx: ratio(get(p, 'anchor-dgram')?.round_trips_per_proxy_cpu_s, get(p, 'nginx')?.round_trips_per_proxy_cpu_s),
        relay_over_nginx: ratio(get(p, 'relay')?.round_trips_per_s, get(p, 'nginx')?.round_trips_per_s),
        native_over_nginx: ratio(get(p, 'relay-native')?.round_trips_per_s, get(p, 'nginx')?.round_trips_per_s),
        native_over_relay: ratio(get(p, 'relay-native')?.round_trips_per_s, get(p, 'relay')?.round_trips_per_s),
        per_proxy_cpu_relay_over_nginx: ratio(get(p, 'relay')?.round_trips_per_proxy_cpu_s, get(p, 'nginx')?.round_trips_per_proxy_cpu_s),
        per_proxy_cpu_native_over_nginx: ratio(get(p, 'relay-native')?.round_trips_per_proxy_cpu_s, get(p, 'nginx')?.round_trips_per_proxy_cpu_s),
        per_proxy_cpu_native_over_relay: ratio(get(p, 'relay-native')?.round_trips_per_proxy_cpu_s, get(p, 'relay')?.round_trips_per_proxy_cpu_s),
        per_proxy_cpu_native_ppv2_over_nginx: ratio(get(p, 'relay-native-ppv2')?.round_trips_per_proxy_cpu_s, get(p, 'nginx')?.round_trips_per_proxy_cpu_s),
        per_proxy_cpu_native_ppv2_over_relay_ppv2: ratio(get(p, 'relay-native-ppv2')?.round_trips_per_proxy_cpu_s, get(p, 'relay-ppv2')?.round_trips_per_proxy_cpu_s),
      };
    });

    // The table: medians per point and configuration, the ratios, and who was busy.
    const table = pts.map((p) => {
      const row: Record<string, string | number | null> = { point: p.key };
      for (const l of lives) row[l.name] = get(p, l.name)?.round_trips_per_s ?? null;
      const r = ratios.find((x) => x.point === p.key);
      row['A/nginx'] = r?.anchor_over_nginx ?? null;
      row['A/relay'] = r?.anchor_over_relay ?? null;
      row['A/direct'] = r?.anchor_over_direct ?? null;
      row['A/nginx per cpu'] = r?.per_proxy_cpu_anchor_over_nginx ?? null;
      row['A/relay per cpu'] = r?.per_proxy_cpu_anchor_over_relay ?? null;
      if (lives.some((l) => l.name === 'relay-native')) {
        row['N/nginx per cpu'] = r?.per_proxy_cpu_native_over_nginx ?? null;
        row['N/relay per cpu'] = r?.per_proxy_cpu_native_over_relay ?? null;
      }
      return row;
    });
    const cpuTable = pts.flatMap((p) =>
      lives.map((l) => {
        const s = get(p, l.name) as Summary;
        return {
          point: p.key,
          config: l.name,
          'rt/s': s.round_trips_per_s,
          'loss %': s.loss_pct,
          'p50 us': s.rtt_us.p50,
          'p99 us': s.rtt_us.p99,
          'p99.9 us': s.rtt_us.p999,
          'proxy cpu %': s.cpu_pct.proxy,
          'backend cpu %': s.cpu_pct.backend,
          'gen cpu %': s.cpu_pct.generator,
          'proxy core busy %': s.cpu_pct.proxy_core_busy,
          'load core busy %': s.cpu_pct.load_core_busy,
          'limited by': s.limited_by,
        };
      }),
    );
    console.log(`peers: round trips per second, medians of ${REPEATS} (${pinning})`);
    console.table(table);
    console.table(cpuTable);

    let anchorMetrics: Record<string, number> | null = null;
    const anchorAdmin = lives.find((l) => l.name === 'anchor')?.adminPort;
    if (anchorAdmin !== undefined) anchorMetrics = await anchorCounters(anchorAdmin);
    const nginxLive = lives.find((l) => l.name === 'nginx');
    if (nginxLive !== undefined) {
      const log = join(dir, 'nginx', 'error.log');
      const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((l) => /\[(error|crit|alert|emerg)\]/.test(l)).slice(-5) : [];
      if (tail.length > 0) notes.push(`nginx error.log: ${tail.join(' | ')}`);
    }
    const failed = runs.filter((r) => r.error !== undefined);
    if (failed.length > 0) notes.push(`${failed.length} run(s) failed: ${failed.slice(0, 3).map((r) => `${r.config} ${r.point}: ${r.error}`).join('; ')}`);

    const date = today();
    const cpu = cpuInfo();
    const subtitle = `${date} · ${cpu.model}, ${cpu.cores} cores · proxy on core ${PROXY_CPU}, generator + backends on core ${LOAD_CPU} · ${SESSIONS} sessions · ${REPEATS} runs of ${DURATION_S} s`;
    const svgThroughput = barChartSvg(
      pts.map((p) => {
        const r = ratios.find((x) => x.point === p.key);
        return {
          label: p.label,
          sublabel: r?.anchor_over_nginx != null ? `A/nginx ${r.anchor_over_nginx}` : r?.anchor_over_relay != null ? `A/relay ${r.anchor_over_relay}` : undefined,
          bars: lives.map((l) => ({ series: l.name, value: get(p, l.name)?.round_trips_per_s ?? Number.NaN })),
        };
      }),
      {
        title: 'UDP round trips per second by configuration (median)',
        subtitle,
        yLabel: 'round trips / s',
        series: lives.map((l) => ({ name: l.name, color: COLORS[l.name] })),
        footer: [
          'W = packets in flight in total (closed loop); open = fixed offered rate. Payload = JV1 payload bytes (datagram = 20 + payload).',
          'anchor: anchor run, default config (PROXY v2 to the backends, metrics and health probes on); relay: bench/relay.ts; nginx: stream module, 1 worker.',
        ],
      },
    );
    const proxies = lives.filter((l) => l.name !== 'direct');
    const svgPerCpu = barChartSvg(
      pts.map((p) => {
        const r = ratios.find((x) => x.point === p.key);
        return {
          label: p.label,
          sublabel: r?.per_proxy_cpu_anchor_over_nginx != null ? `A/nginx ${r.per_proxy_cpu_anchor_over_nginx}` : r?.per_proxy_cpu_anchor_over_relay != null ? `A/relay ${r.per_proxy_cpu_anchor_over_relay}` : undefined,
          bars: proxies.map((l) => ({ series: l.name, value: get(p, l.name)?.round_trips_per_proxy_cpu_s ?? Number.NaN })),
        };
      }),
      {
        title: 'Round trips per CPU-second of the proxy (median): throughput per busy proxy core',
        subtitle: 'round trips/s ÷ the proxy process\'s CPU use over the same window (/proc/PID/stat; nginx: master + worker)',
        yLabel: 'round trips / proxy CPU-s',
        series: proxies.map((l) => ({ name: l.name, color: COLORS[l.name] })),
      },
    );
    const svg = stackSvgs([svgThroughput, svgPerCpu]);
    const svgPath = join(RESULTS, 'peers.svg');
    writeFileSync(svgPath, svg);

    // A markdown table for bench/README.md.
    const md: string[] = [];
    md.push(`| point | ${lives.map((l) => l.name).join(' | ')} | Anchor/nginx | Anchor/relay | Anchor/direct | per proxy CPU-s: A/nginx | A/relay | A/anchor-dgram | anchor-dgram/nginx |`);
    md.push(`|---|${lives.map(() => '---:').join('|')}|---:|---:|---:|---:|---:|---:|---:|`);
    for (const p of pts) {
      const r = ratios.find((x) => x.point === p.key);
      md.push(
        `| ${p.label} | ${lives.map((l) => (get(p, l.name)?.round_trips_per_s ?? NaN).toLocaleString('en-US')).join(' | ')} | ${r?.anchor_over_nginx ?? '–'} | ${r?.anchor_over_relay ?? '–'} | ${r?.anchor_over_direct ?? '–'} | ${r?.per_proxy_cpu_anchor_over_nginx ?? '–'} | ${r?.per_proxy_cpu_anchor_over_relay ?? '–'} | ` +
          `${r?.per_proxy_cpu_anchor_over_anchor_dgram ?? '–'} | ${r?.per_proxy_cpu_anchor_dgram_over_nginx ?? '–'} |`,
      );
    }
    // The native relays (N) against nginx and their node:dgram twin: in round trips/s and per proxy CPU-second.
    for (const [nat, twin] of [['relay-native', 'relay'], ['relay-native-ppv2', 'relay-ppv2']] as const) {
      if (!lives.some((l) => l.name === nat)) continue;
      md.push('');
      md.push(`| point | ${nat} (N) | ${twin} | nginx | N/nginx | N/${twin} | per proxy CPU-s: N/nginx | N/${twin} | ${twin}/nginx | N rt per CPU-s | ${twin} | nginx |`);
      md.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
      const n = (x: number | null | undefined): string => (x === null || x === undefined || Number.isNaN(x) ? '–' : x.toLocaleString('en-US'));
      for (const p of pts) {
        const [nv, rl, ng] = [nat, twin, 'nginx' as const].map((c) => get(p, c));
        const cpu = (x: Summary | undefined): number | null | undefined => x?.round_trips_per_proxy_cpu_s;
        md.push(
          `| ${p.label} | ${n(nv?.round_trips_per_s)} | ${n(rl?.round_trips_per_s)} | ${n(ng?.round_trips_per_s)} | ${ratio(nv?.round_trips_per_s, ng?.round_trips_per_s) ?? '–'} | ${ratio(nv?.round_trips_per_s, rl?.round_trips_per_s) ?? '–'} | ` +
            `${ratio(cpu(nv), cpu(ng)) ?? '–'} | ${ratio(cpu(nv), cpu(rl)) ?? '–'} | ${ratio(cpu(rl), cpu(ng)) ?? '–'} | ${n(cpu(nv))} | ${n(cpu(rl))} | ${n(cpu(ng))} |`,
        );
      }
    }
    md.push('');
    md.push(`| point | config | loss | RTT p50 | p99 | p99.9 | proxy CPU | backends CPU | generator CPU | core ${PROXY_CPU} busy | core ${LOAD_CPU} busy | limited by |`);
    md.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
    for (const row of cpuTable) {
      md.push(`| ${row.point} | ${row.config} | ${row['loss %']}% | ${fmtUs(row['p50 us'])} | ${fmtUs(row['p99 us'])} | ${fmtUs(row['p99.9 us'])} | ${row['proxy cpu %'] === null ? '–' : `${row['proxy cpu %']}%`} | ${row['backend cpu %']}% | ${row['gen cpu %']}% | ${row['proxy core busy %']}% | ${row['load core busy %']}% | ${row['limited by']} |`);
    }
    console.log(md.join('\n'));
    for (const n of notes) console.log(`peers note: ${n}`);

    const result = {
      bench: 'peers',
      date,
      machine: { ...cpu, node: process.version, loadavg_at_end: loadavg() },
      pinning,
      settings: {
        repeats: REPEATS,
        duration_s: DURATION_S,
        warmup_s: WARMUP_S,
        prewarm_s: PREWARM_S,
        sessions: SESSIONS,
        sockets: SINGLE_SOCKET ? 'single' : 'per-session',
        windows: WINDOWS,
        sizes: SIZES,
        open_rate: OPEN_RATE,
        open_size: OPEN_SIZE,
        window_definition: 'W packets in flight in total over all sessions; each answer frees a slot whose next packet goes to the next session (round robin)',
        payload_definition: 'JV1 payload bytes after the 20-byte header (u32 slot, u32 seq, u64 send time ns, filler)',
        cpu_definition: '% of one core over the measured window: /proc/PID/stat utime+stime deltas (nginx: master + worker); the generator reports its own getrusage; core busy = /proc/stat of that core, every process on it (other work on the machine included)',
      },
      configs: {
        direct: 'load generator straight to the 3 backends (session i -> backend i mod 3)',
        relay: 'node dist/bench/relay.js: JV1 id -> one Map lookup -> connected socket per backend; no PROXY v2 header',
        'relay-native': 'node dist/bench/relay.js --native: the same relay work over the native batched-UDP addon (src/net/native): one recvmmsg + one JS call per batch of up to 64, id read from the receive slab, one Map lookup, one send-slab metadata slot per datagram (gather from the rx slot, no copy), one sendmmsg per socket per batch, segmentation offload (gso) as Anchor',
        'relay-native-ppv2': 'relay-native with --ppv2: the session\'s cached PROXY v2 header copied into the send slot, the client bytes gathered behind it',
        'relay-ppv2': 'the same relay with --ppv2: a PROXY v2 header (Anchor\'s TLVs) built once per session, sent with each datagram as a gather send',
        nginx: 'nginx stream, worker_processes 1, hash $remote_addr$remote_port consistent, proxy_protocol off (bare JV1 to the backends), rcvbuf 4 MiB',
        anchor: 'node dist/src/main.js run: default config (PROXY v2 + TLVs to the backends, health probes, metrics on); admission limit raised, audit to a file',
      },
      table: summaries,
      ratios,
      anchor_counters: anchorMetrics,
      notes,
      runs,
    };
    console.log('written', writeResult('peers', result), 'and', svgPath);
    return result;
  } finally {
    // Every process by its PID (nginx: the master, then any worker left).
    for (const p of procs.reverse()) await p.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}
