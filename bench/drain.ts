// Drain 100,000 live sessions off one of three nodes while traffic flows (all of them on that node, or
// with BENCH_DRAIN_PLACEMENT=spread a third): the time it takes, packets held and lost, and the
// checker's verdict over the nodes' records. Baseline in the same run: the same
// traffic for the same time with no drain (loss and RTT in a steady window before the drain).
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { dump } from 'js-yaml';
import { decodeJv1, encodeJv1 } from '../src/codec/jv1.js';
import { PacketType } from '../src/codec/types.js';
import { checkRecords } from '../src/refnode/checker.js';
import { createHasher } from '../src/ring/hash.js';
import { buildRing } from '../src/ring/ring.js';
import { readRecords } from '../src/refnode/records.js';
import { cpuSeconds, freePort, LOAD_CPU, machine, pinSelf, PROXY_CPU, startAnchorProcess, startProcess, writeResult, type Child } from './lib.js';
import { nativeBinary } from './native.js';

const SESSIONS = Number(process.env.BENCH_DRAIN_SESSIONS ?? 100_000);
const SOCKETS = 8;
const PPS = Number(process.env.BENCH_DRAIN_PPS ?? 8_000);
/**
 * The drains run, each from scratch, as `drain.rate` / `drain.concurrency` pairs: 5000/s and 1024 (ten
 * times Anchor's default rate, 500/s; the rate limit alone makes it 20 s for 100,000), then with the rate
 * limit out of the way (as fast as the director can: issue 7's "100,000 sessions in under 2 seconds").
 * BENCH_DRAIN_RATE and/or BENCH_DRAIN_CONCURRENCY: that one drain only.
 */
const DRAIN_RUNS: readonly { rate: number; concurrency: number }[] =
  process.env.BENCH_DRAIN_RATE !== undefined || process.env.BENCH_DRAIN_CONCURRENCY !== undefined
    ? [{ rate: Number(process.env.BENCH_DRAIN_RATE ?? 5_000), concurrency: Number(process.env.BENCH_DRAIN_CONCURRENCY ?? 1024) }]
    : [
        { rate: 5_000, concurrency: 1024 },
        { rate: 1_000_000, concurrency: 4096 },
      ];
/** `one`: all SESSIONS live on node-0, the node drained; `spread`: over the three nodes. */
const PLACEMENT = process.env.BENCH_DRAIN_PLACEMENT === 'spread' ? 'spread' : 'one';
/**
 * The three nodes: `c` (default), the C bench node bench/native/node.c (same decisions and records as the
 * reference node over UDP, fast enough not to be the bottleneck); `ref`, the reference node (`anchor node`).
 */
const NODES = process.env.BENCH_DRAIN_NODES ?? 'c';
const MAX_S = 180;

interface Window {
  sent: number;
  received: number;
}

async function metrics(admin: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${admin}/metrics`)).text();
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    const x = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (x !== null) m.set(`${x[1]}${x[2] ?? ''}`, Number(x[3]));
  }
  return m;
}

/** The sum of every series of a labeled counter, and its series by label value (`reason`, `outcome`…). */
function labeledSum(m: Map<string, number>, name: string): { total: number; by: Record<string, number> } {
  const by: Record<string, number> = {};
  let total = 0;
  for (const [k, v] of m) {
    if (!k.startsWith(`${name}{`)) continue;
    const label = /="([^"]*)"/.exec(k)?.[1] ?? k;
    by[label] = (by[label] ?? 0) + v;
    total += v;
  }
  return { total, by };
}

/** The difference of two labeled sums, keeping only label values that changed. */
function labeledDelta(a: { by: Record<string, number> }, b: { by: Record<string, number> }): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(a.by), ...Object.keys(b.by)])) {
    const d = (b.by[k] ?? 0) - (a.by[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

/**
 * Datagrams the kernel dropped on the UDP sockets of process `pid` (the `drops` column of /proc/net/udp
 * and udp6: a full receive buffer), summed over its sockets; null where /proc cannot tell (not Linux).
 */
function udpDrops(pid: number, byPort?: Map<number, number>): number | null {
  try {
    const inodes = new Set<string>();
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m !== null) inodes.add(m[1] as string);
      } catch {
        // the fd closed meanwhile
      }
    }
    let drops = 0;
    for (const table of ['/proc/net/udp', '/proc/net/udp6']) {
      for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        if (f.length >= 13 && inodes.has(f[9] as string)) {
          const d = Number(f[f.length - 1]);
          drops += d;
          const port = Number.parseInt((f[1] as string).split(':').pop() as string, 16);
          byPort?.set(port, (byPort.get(port) ?? 0) + d);
        }
      }
    }
    return drops;
  } catch {
    return null;
  }
}

/** Every drain of DRAIN_RUNS: `drain.json` for 5000/s and 1024, `drain-rate<R>.json` for another rate. */
export async function benchDrain(): Promise<unknown> {
  const out: unknown[] = [];
  for (const r of DRAIN_RUNS) out.push(await drainOnce(r.rate, r.concurrency, r.rate === 5_000 && r.concurrency === 1024 ? 'drain' : `drain-rate${r.rate}`));
  return out;
}

async function drainOnce(rate: number, concurrency: number, name: string): Promise<unknown> {
  const dir = mkdtempSync(join(tmpdir(), 'anchor-bench-drain-'));
  const children: Child[] = [];
  const sockets: dgram.Socket[] = [];
  // As in `peers`: the director alone on one core, the load (this process) and the nodes on the other,
  // so that neither starves the other of CPU and a loss is the director's.
  const unpin = pinSelf(LOAD_CPU);
  const pinning = `director: taskset -c ${PROXY_CPU}; load (the bench) and the three nodes: taskset -c ${LOAD_CPU}`;
  console.log(`drain bench: ${pinning}`);
  try {
    // Free ports picked now (fixed ones collide with whatever else runs on the machine).
    const ports = [await freePort(), await freePort(), await freePort()];
    const front = await freePort();
    const adminPort = await freePort();
    if (NODES !== 'c' && NODES !== 'ref') throw new Error(`BENCH_DRAIN_NODES must be c or ref, not ${NODES}`);
    const nodeBin = NODES === 'c' ? nativeBinary('node') : undefined;
    console.log(`drain bench: nodes: ${NODES === 'c' ? `C bench nodes (${nodeBin})` : 'reference nodes (anchor node)'}`);
    for (const [i, port] of ports.entries()) {
      const args = ['--id', `node-${i}`, '--listen', `127.0.0.1:${port}`, '--record', join(dir, `node-${i}.jsonl`)];
      // The C node flushes its records on SIGTERM (its stop() sends SIGTERM, then SIGKILL after 3 s).
      children.push(nodeBin !== undefined ? await startProcess(`node-${i}`, nodeBin, [...args, '--sessions', String(SESSIONS)], { cpu: LOAD_CPU, ready: /listening/ }) : await startAnchorProcess(['node', ...args], /listening/, 15_000, LOAD_CPU));
    }
    const cfg = join(dir, 'anchor.yaml');
    writeFileSync(
      cfg,
      dump({
        listen: { udp: [`127.0.0.1:${front}`] },
        admin: { listen: `127.0.0.1:${adminPort}` },
        nodes: ports.map((p, i) => ({ id: `node-${i}`, address: `127.0.0.1:${p}` })),
        session: { max: SESSIONS * 2, idle_ttl_s: 600 },
        admission: { per_source_rate: 1_000_000, per_source_burst: 1_000_000 },
        drain: { rate, concurrency },
        audit: { path: join(dir, 'audit.jsonl') },
        log: { level: 'info' },
        // BENCH_DRAIN_GSO=0: socket.gso off (each REVOKE and reply a sendmmsg message of its own), for A/B.
        ...(process.env.BENCH_DRAIN_GSO === '0' ? { socket: { gso: false } } : {}),
      }),
    );
    children.push(await startAnchorProcess(['run', '--config', cfg], /director started/, 15_000, PROXY_CPU));
    const admin = `http://127.0.0.1:${adminPort}`;

    // Sessions spread over a few client sockets (each socket is the bound transport of many sessions).
    const ids: Buffer[] = [];
    const opened = new Uint8Array(SESSIONS);
    let nOpened = 0;
    const win: Window = { sent: 0, received: 0 };
    // Every DATA carries its number (win.sent when it went out) in its first 4 payload bytes; the echo
    // marks it here, so a window's loss is exactly its packets never echoed (not sent − received).
    const echoed = new Uint8Array(PPS * MAX_S + 1);
    const lostIn = (from: number, to: number): number => {
      let n = 0;
      for (let k = from; k < to && k < echoed.length; k++) if (echoed[k] === 0) n++;
      return n;
    };
    for (let i = 0; i < SOCKETS; i++) {
      const s = dgram.createSocket('udp4');
      s.on('message', (msg) => {
        const d = decodeJv1(msg);
        if (d.kind !== 'ok') return;
        const idx = Buffer.from(d.value.sessionId.buffer, d.value.sessionId.byteOffset, 16).readUInt32BE(0);
        if (d.value.type === PacketType.HELLO && opened[idx] === 0) {
          opened[idx] = 1;
          nOpened++;
        } else if (d.value.type === PacketType.DATA) {
          win.received++;
          if (msg.length >= 24) {
            const k = msg.readUInt32BE(20);
            if (k < echoed.length) echoed[k] = 1;
          }
        }
      });
      s.bind(0, '127.0.0.1');
      await once(s, 'listening');
      s.setRecvBufferSize(8 * 1024 * 1024);
      s.connect(front, '127.0.0.1');
      await once(s, 'connect');
      sockets.push(s);
    }
    // `one`: every session's id is one the director's ring places on node-0 (the same rendezvous hash,
    // nodes and weights), so that the drain moves all SESSIONS of them; `spread`: ids at random, about
    // a third on each node.
    const ring = buildRing(await createHasher(), ports.map((_, i) => ({ id: `node-${i}`, weight: 1 })));
    for (let n = 0; ids.length < SESSIONS; n++) {
      const id = Buffer.alloc(16);
      id.writeUInt32BE(ids.length, 0);
      id.writeUInt32BE(0xa0c0ffee, 4);
      id.writeUInt32BE((n * 2654435761) >>> 0, 8);
      id.writeUInt32BE(0x5eed, 12);
      if (PLACEMENT === 'spread' || ring.pick(id) === 'node-0') ids.push(id);
    }
    const sockOf = (i: number): dgram.Socket => sockets[i % SOCKETS] as dgram.Socket;
    // HELLO everything, paced at 20,000/s, retrying what was not answered.
    const t0 = performance.now();
    for (let attempt = 0; attempt < 5 && nOpened < SESSIONS; attempt++) {
      let k = 0;
      const start = performance.now();
      for (let i = 0; i < SESSIONS; i++) {
        if (opened[i] === 1) continue;
        sockOf(i).send(encodeJv1(PacketType.HELLO, ids[i] as Buffer));
        if (++k % 200 === 0) {
          const due = (performance.now() - start) * 20;
          if (k > due) await new Promise((r) => setTimeout(r, (k - due) / 20));
        }
      }
      const until = performance.now() + 3000;
      while (nOpened < SESSIONS && performance.now() < until) await new Promise((r) => setTimeout(r, 50));
    }
    const openMs = performance.now() - t0;
    console.log(`drain bench: ${nOpened}/${SESSIONS} sessions opened in ${(openMs / 1000).toFixed(1)} s`);
    const mo = await metrics(admin);
    console.log([...mo].filter(([k]) => /rejects_sent|admissions|dropped|held|released/.test(k) && !k.includes('process')).map(([k, v]) => `${k} ${v}`).join('\n'));

    // Traffic: DATA round robin over all sessions at PPS.
    let next = 0;
    let sending = true;
    const payload = Buffer.alloc(32, 0x62);
    const pump = (async () => {
      const start = performance.now();
      let sent = 0;
      while (sending && performance.now() - start < MAX_S * 1000) {
        const due = Math.floor(((performance.now() - start) / 1000) * PPS);
        while (sent < due) {
          // A stride coprime with SESSIONS visits every session once per round, in an order unrelated to
          // the order the drain moves them in.
          const i = (next++ * 7919) % SESSIONS;
          if (opened[i] === 1) {
            payload.writeUInt32BE(win.sent >>> 0, 0);
            sockOf(i).send(encodeJv1(PacketType.DATA, ids[i] as Buffer, payload));
            win.sent++;
          }
          sent++;
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    const settle = async (): Promise<void> => {
      const until = performance.now() + 2000;
      let last = -1;
      while (performance.now() < until && win.received !== last) {
        last = win.received;
        await new Promise((r) => setTimeout(r, 200));
      }
    };

    // Baseline window: steady traffic, no drain.
    await new Promise((r) => setTimeout(r, 1000));
    const b0 = { ...win };
    const directorPid = children[children.length - 1]?.proc.pid ?? 0;
    const baseCpu0 = cpuSeconds(directorPid);
    const baseStart = performance.now();
    await new Promise((r) => setTimeout(r, 8000));
    const b1 = { ...win };
    const baselineS = (performance.now() - baseStart) / 1000;
    // The director's CPU per second carrying the traffic alone (no drain).
    const baseCpuPerS = (cpuSeconds(directorPid) - baseCpu0) / baselineS;

    // The drain of node-0, traffic still flowing.
    const m0 = await metrics(admin);
    const pids = { director: directorPid, nodes: children.slice(0, 3).map((c) => c.proc.pid ?? 0), clients: process.pid };
    const drops = (): { director: number | null; nodes: number | null; clients: number | null } => {
      const n = pids.nodes.map((p) => udpDrops(p));
      return { director: udpDrops(pids.director), nodes: n.some((x) => x === null) ? null : n.reduce((a: number, b) => a + (b as number), 0), clients: udpDrops(pids.clients) };
    };
    const dirPorts0 = new Map<number, number>();
    udpDrops(pids.director, dirPorts0);
    const drops0 = drops();
    const before = { ...win };
    // The director's CPU (utime + stime, all its threads) over the drain: the cost per moved session.
    const cpu0 = cpuSeconds(pids.director);
    const dStart = performance.now();
    const started = (await (await fetch(`${admin}/v1/nodes/node-0/drain`, { method: 'POST', body: '{"mode":"migrate"}' })).json()) as { id: string; total: number };
    let final: Record<string, unknown> = {};
    for (;;) {
      final = (await (await fetch(`${admin}/v1/drains/${started.id}`)).json()) as Record<string, unknown>;
      if (final.state !== 'running' || performance.now() - dStart > MAX_S * 1000) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const drainS = (performance.now() - dStart) / 1000;
    const directorCpuS = cpuSeconds(pids.director) - cpu0;
    sending = false;
    await pump;
    await settle();
    const after = { ...win };
    const m1 = await metrics(admin);
    const drops1 = drops();
    const dirPorts1 = new Map<number, number>();
    udpDrops(pids.director, dirPorts1);
    const directorDropsByPort: Record<string, number> = {};
    for (const [port, d] of dirPorts1) if (d - (dirPorts0.get(port) ?? 0) > 0) directorDropsByPort[port === front ? `${port} (listener)` : String(port)] = d - (dirPorts0.get(port) ?? 0);
    // Health changes the director logged (a node marked unhealthy drops its sessions' traffic as owner_unavailable).
    const director = children[children.length - 1];
    const healthChanges = (director?.output ?? '').split('\n').filter((l) => l.includes('node health changed')).map((l) => {
      try {
        const o = JSON.parse(l) as { node?: string; health?: string; time?: number };
        return `${o.node}:${o.health}`;
      } catch {
        return l.slice(0, 120);
      }
    });
    const delta = (k: string): number => (m1.get(k) ?? 0) - (m0.get(k) ?? 0);
    const ldelta = (k: string): Record<string, number> => labeledDelta(labeledSum(m0, k), labeledSum(m1, k));
    const dropDelta = (k: 'director' | 'nodes' | 'clients'): number | null => (drops0[k] === null || drops1[k] === null ? null : (drops1[k] as number) - (drops0[k] as number));

    for (const c of children) await c.stop();
    children.length = 0;
    const records = await readRecords(dir);
    const verdict = checkRecords(records);
    // Packets of each window never echoed (by the end: late echoes of the baseline window count).
    const baseLost = lostIn(b0.sent, b1.sent);
    const result = {
      bench: 'drain',
      machine: machine(),
      sessions: SESSIONS,
      sessions_opened: nOpened,
      pinning,
      placement: PLACEMENT,
      nodes: NODES === 'c' ? 'c (bench/native/node.c)' : 'ref (anchor node)',
      traffic_pps: PPS,
      drain_rate_limit: rate,
      drain_concurrency: concurrency,
      baseline: { seconds: Number(baselineS.toFixed(1)), sent: b1.sent - b0.sent, lost: baseLost, director_cpu_per_s: Number(baseCpuPerS.toFixed(3)) },
      drain: {
        sessions_moved: final.moved,
        sessions_total: started.total,
        failed: final.failed,
        seconds: Number(drainS.toFixed(2)),
        sessions_per_s: Number((Number(final.moved) / drainS).toFixed(0)),
        // The director's CPU seconds during the drain (traffic included) and per moved session.
        director_cpu_s: Number(directorCpuS.toFixed(3)),
        cpu_us_per_move: Number(((directorCpuS * 1e6) / Math.max(1, Number(final.moved))).toFixed(1)),
        // The same less what the traffic alone costs over as long (the baseline window's CPU per second).
        cpu_us_per_move_net: Number((((directorCpuS - baseCpuPerS * drainS) * 1e6) / Math.max(1, Number(final.moved))).toFixed(1)),
        state: final.state,
        sent: after.sent - before.sent,
        received: after.received - before.received,
        // Packets sent during the drain whose echo never came (each DATA is numbered: exact).
        lost: lostIn(before.sent, after.sent),
        held: delta('anchor_client_datagrams_held_total'),
        released: delta('anchor_client_datagrams_released_total'),
        hold_overflow: delta('anchor_client_datagrams_dropped_total{reason="hold_overflow"}'),
        former_owner_replies_dropped: delta('anchor_node_datagrams_dropped_total{reason="node_former_owner"}'),
        revokes_acknowledged: delta('anchor_revokes_total{outcome="acknowledged"}'),
        director_received_from_clients: delta('anchor_client_datagrams_received_total'),
        director_forwarded: delta('anchor_client_datagrams_forwarded_total'),
        director_relayed_to_clients: delta('anchor_node_datagrams_relayed_total'),
        director_rejected: delta('anchor_client_datagrams_rejected_total'),
        director_dropped_by_reason: ldelta('anchor_client_datagrams_dropped_total'),
        director_rejects_by_reason: ldelta('anchor_rejects_sent_total'),
        node_datagrams_dropped_by_reason: ldelta('anchor_node_datagrams_dropped_total'),
        send_errors: ldelta('anchor_send_errors_total'),
        revokes: ldelta('anchor_revokes_total'),
        migrations: ldelta('anchor_migrations_total'),
        drain_backoffs: delta('anchor_drain_backoffs_total'),
        // Datagrams the kernel dropped for a full receive buffer during the drain (/proc/net/udp `drops`),
        // on the director's sockets, the three nodes' and the bench's client sockets.
        socket_drops: { director: dropDelta('director'), director_by_port: directorDropsByPort, nodes: dropDelta('nodes'), clients: dropDelta('clients') },
        health_changes: healthChanges,
      },
      checker: { ok: verdict.ok, sessions: verdict.sessions, packets: verdict.packets, violations: verdict.violations.length, notes: verdict.notes },
    };
    console.log(JSON.stringify(result, null, 2));
    console.log(`drain bench: ${String(final.moved)} moved in ${drainS.toFixed(2)} s, director CPU ${directorCpuS.toFixed(2)} s, ${result.drain.cpu_us_per_move} µs per move (${result.drain.cpu_us_per_move_net} less the traffic's)`);
    console.log('written', writeResult(name, result));
    return result;
  } finally {
    for (const s of sockets) s.close();
    await Promise.allSettled(children.map((c) => c.stop()));
    unpin();
    // The audit log and the nodes' records: ~170 MB a run (the checker has read them).
    rmSync(dir, { recursive: true, force: true });
  }
}
