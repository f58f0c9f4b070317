// TCP throughput: 1 and 64 concurrent streams echoed through the director to three reference nodes,
// against the same streams straight to one reference node (the baseline), in the same run; plus the
// director's peak RSS while one 200 MB stream goes through it.
import net from 'node:net';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { dump } from 'js-yaml';
import { encodeJv1 } from '../src/codec/jv1.js';
import { PacketType } from '../src/codec/types.js';
import { machine, median, startAnchorProcess, writeResult, type Child } from './lib.js';

const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const PER_STREAM_MB = Number(process.env.BENCH_TCP_MB ?? 64);

/** Opens `streams` JV1 sessions over TCP to `port`, pushes `mb` MB through each and reads the echo. */
async function run(port: number, streams: number, mb: number): Promise<number> {
  const bytes = mb * 1024 * 1024;
  const chunk = randomBytes(64 * 1024);
  const socks = await Promise.all(
    Array.from({ length: streams }, async () => {
      const s = net.connect({ port, host: '127.0.0.1', noDelay: true });
      await once(s, 'connect');
      return s;
    }),
  );
  const t0 = performance.now();
  await Promise.all(
    socks.map(async (s) => {
      // The same JV1 HELLO opens the stream either way (straight to a node there is no PROXY header,
      // which the reference node accepts): the node answers its 36-byte HELLO, then echoes.
      const hello = encodeJv1(PacketType.HELLO, randomBytes(16));
      const want = bytes + 36;
      let got = 0;
      const done = new Promise<void>((resolve, reject) => {
        s.on('data', (c: Buffer) => {
          got += c.length;
          if (got >= want) resolve();
        });
        s.once('close', () => (got >= want ? resolve() : reject(new Error(`closed after ${got}`))));
      });
      s.write(hello);
      for (let sent = 0; sent < bytes; sent += chunk.length) if (!s.write(chunk)) await once(s, 'drain');
      await done;
      s.destroy();
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return (streams * mb) / seconds; // MB/s each way
}

function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? 0 : Number(m[1]) / 1024;
}

export async function benchTcp(): Promise<unknown> {
  const dir = mkdtempSync(join(tmpdir(), 'anchor-bench-tcp-'));
  const children: Child[] = [];
  try {
    const ports = [45301, 45302, 45303];
    for (const [i, port] of ports.entries()) {
      children.push(await startAnchorProcess(['node', '--id', `node-${i}`, '--listen', `127.0.0.1:${port}`], /listening/));
    }
    const cfg = join(dir, 'anchor.yaml');
    writeFileSync(
      cfg,
      dump({
        listen: { udp: ['127.0.0.1:45300'], tcp: ['127.0.0.1:45300'] },
        admin: { listen: '127.0.0.1:0' },
        nodes: ports.map((p, i) => ({ id: `node-${i}`, address: `127.0.0.1:${p}` })),
        admission: { per_source_rate: 100_000, per_source_burst: 100_000 },
        audit: { path: join(dir, 'audit.jsonl') },
        log: { level: 'info' },
      }),
    );
    const director = await startAnchorProcess(['run', '--config', cfg], /director started/);
    children.push(director);
    const rows = [];
    for (const streams of [1, 64]) {
      const mb = streams === 1 ? PER_STREAM_MB * 4 : Math.max(1, Math.round(PER_STREAM_MB / 4));
      const direct: number[] = [];
      const through: number[] = [];
      for (let i = 0; i < REPEATS; i++) {
        direct.push(await run(ports[0] as number, streams, mb));
        through.push(await run(45300, streams, mb));
      }
      rows.push({
        streams,
        mb_per_stream: mb,
        direct_mb_s: Math.round(median(direct)),
        director_mb_s: Math.round(median(through)),
        ratio: Number((median(through) / median(direct)).toFixed(2)),
      });
    }
    // Peak RSS of the director while one 200 MB stream goes through it.
    const pid = director.proc.pid as number;
    const base = rss(pid);
    let peak = base;
    const timer = setInterval(() => (peak = Math.max(peak, rss(pid))), 10);
    await run(45300, 1, 200);
    clearInterval(timer);
    console.log('tcp (medians of %d runs; MB/s each way)', REPEATS);
    console.table(rows);
    console.log(`director RSS during one 200 MB stream: before ${base.toFixed(1)} MiB, peak ${peak.toFixed(1)} MiB`);
    const result = { bench: 'tcp', machine: machine(), repeats: REPEATS, rows, rss_200mb: { before_mib: Number(base.toFixed(1)), peak_mib: Number(peak.toFixed(1)) } };
    console.log('written', writeResult('tcp', result));
    return result;
  } finally {
    await Promise.allSettled(children.map((c) => c.stop()));
  }
}
