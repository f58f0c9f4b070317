// End-to-end UDP: `anchor client` round trips directly against a reference node (the baseline) and
// through the director to three reference nodes, in the same run, repeated; medians and ratios.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import { runClient, type ClientReport } from '../src/client/client.js';
import type { Transport } from '../src/codec/types.js';
import { freePort, machine, median, startAnchorProcess, writeResult, type Child } from './lib.js';

const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 3);
const SESSIONS = 100;
const RATES = [5_000, 40_000];
const SIZE = 64;

interface Row {
  readonly config: 'direct' | 'director';
  readonly rate: number;
  readonly runs: ClientReport[];
}

function summary(r: Row): Record<string, number | string> {
  return {
    config: r.config,
    target_pps: r.rate,
    pps_received: median(r.runs.map((x) => x.pps_received)),
    loss_pct: median(r.runs.map((x) => x.loss_pct)),
    rtt_p50_ms: median(r.runs.map((x) => x.rtt_ms.p50)),
    rtt_p99_ms: median(r.runs.map((x) => x.rtt_ms.p99)),
  };
}

export async function benchUdpE2e(): Promise<unknown> {
  const dir = mkdtempSync(join(tmpdir(), 'anchor-bench-'));
  const children: Child[] = [];
  try {
    // Free ports picked now (fixed ones collide with whatever else runs on the machine).
    const ports = [await freePort(), await freePort(), await freePort()];
    const front = await freePort();
    for (const [i, port] of ports.entries()) {
      children.push(await startAnchorProcess(['node', '--id', `node-${i}`, '--listen', `127.0.0.1:${port}`], /listening/));
    }
    const cfg = join(dir, 'anchor.yaml');
    writeFileSync(
      cfg,
      dump({
        listen: { udp: [`127.0.0.1:${front}`] },
        admin: { listen: '127.0.0.1:0' },
        nodes: ports.map((p, i) => ({ id: `node-${i}`, address: `127.0.0.1:${p}` })),
        admission: { per_source_rate: 100_000, per_source_burst: 100_000 },
        log: { level: 'info' },
        audit: { path: join(dir, 'audit.jsonl') },
      }),
    );
    children.push(await startAnchorProcess(['run', '--config', cfg], /director started/));
    const direct: Transport = { family: 4, address: '127.0.0.1', port: ports[0] as number };
    const director: Transport = { family: 4, address: '127.0.0.1', port: front };
    const rows: Row[] = [];
    for (const rate of RATES) {
      const d: Row = { config: 'direct', rate, runs: [] };
      const a: Row = { config: 'director', rate, runs: [] };
      // Interleaved, the order alternating, so that background noise and warm-up hit both alike.
      for (let i = 0; i < REPEATS; i++) {
        const pair: [Row, Transport][] = [
          [d, direct],
          [a, director],
        ];
        if (i % 2 === 1) pair.reverse();
        for (const [row, target] of pair) row.runs.push(await runClient({ target, sessions: SESSIONS, rate, durationS: DURATION_S, size: SIZE }));
      }
      rows.push(d, a);
    }
    const table = rows.map(summary);
    const ratios = RATES.map((rate) => {
      const d = table.find((t) => t.config === 'direct' && t.target_pps === rate) as Record<string, number>;
      const a = table.find((t) => t.config === 'director' && t.target_pps === rate) as Record<string, number>;
      return {
        target_pps: rate,
        pps_director_over_direct: Number(((a.pps_received as number) / (d.pps_received as number)).toFixed(3)),
        rtt_p50_director_over_direct: Number(((a.rtt_p50_ms as number) / (d.rtt_p50_ms as number)).toFixed(2)),
        rtt_p99_director_over_direct: Number(((a.rtt_p99_ms as number) / (d.rtt_p99_ms as number)).toFixed(2)),
      };
    });
    console.log('udp-e2e (medians of %d runs, %d sessions, %d-byte payload, %d s each)', REPEATS, SESSIONS, SIZE, DURATION_S);
    console.table(table);
    console.table(ratios);
    const result = { bench: 'udp-e2e', machine: machine(), repeats: REPEATS, duration_s: DURATION_S, sessions: SESSIONS, size: SIZE, table, ratios, runs: rows };
    console.log('written', writeResult('udp-e2e', result));
    return result;
  } finally {
    await Promise.allSettled(children.map((c) => c.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}
