// Admissions per second (HELLO → store create → forwarded → the node's HELLO answer back), in one run:
// one director on the in-process store (the baseline), one director on a three-member etcd cluster, and
// two directors on that cluster sharing the load.
import dgram from 'node:dgram';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { dump } from 'js-yaml';
import { encodeJv1 } from '../src/codec/jv1.js';
import { PacketType } from '../src/codec/types.js';
import { startEtcdCluster } from '../test/helpers/etcd.js';
import { freePort, machine, median, startAnchorProcess, writeResult, type Child } from './lib.js';

const SECONDS = Number(process.env.BENCH_ADMIT_S ?? 4);
const WINDOW = 128;
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);

/** Opens sessions as fast as answers come back (WINDOW in flight per target) for SECONDS; admissions/s. */
async function load(targets: number[]): Promise<number> {
  const sockets = await Promise.all(
    targets.map(async (port) => {
      const s = dgram.createSocket('udp4');
      s.bind(0, '127.0.0.1');
      await once(s, 'listening');
      s.setRecvBufferSize(4 * 1024 * 1024);
      s.connect(port, '127.0.0.1');
      await once(s, 'connect');
      return s;
    }),
  );
  let done = 0;
  const end = performance.now() + SECONDS * 1000;
  await Promise.all(
    sockets.map(
      (s) =>
        new Promise<void>((resolve) => {
          let inflight = 0;
          const send = (): void => {
            while (inflight < WINDOW && performance.now() < end) {
              inflight++;
              s.send(encodeJv1(PacketType.HELLO, randomBytes(16)));
            }
          };
          s.on('message', (m) => {
            if (m[3] !== PacketType.HELLO) return;
            inflight--;
            done++;
            if (performance.now() < end) send();
            else if (inflight === 0) resolve();
          });
          // Lost datagrams are not retried: the window refills every 100 ms.
          const t = setInterval(() => {
            if (performance.now() >= end) {
              clearInterval(t);
              resolve();
            } else {
              inflight = Math.min(inflight, WINDOW / 2);
              send();
            }
          }, 100);
          send();
        }),
    ),
  );
  for (const s of sockets) s.close();
  return done / SECONDS;
}

export async function benchAdmissions(): Promise<unknown> {
  const dir = mkdtempSync(join(tmpdir(), 'anchor-bench-admit-'));
  const children: Child[] = [];
  const etcd = await startEtcdCluster({ members: 3 });
  try {
    // Free ports picked now (fixed ones collide with whatever else runs on the machine).
    const ports = [await freePort(), await freePort(), await freePort()];
    for (const [i, port] of ports.entries()) children.push(await startAnchorProcess(['node', '--id', `n${i}`, '--listen', `127.0.0.1:${port}`], /listening/));
    const director = async (name: string, port: number, store: Record<string, unknown>): Promise<number> => {
      const cfg = join(dir, `${name}.yaml`);
      writeFileSync(
        cfg,
        dump({
          director: { id: name },
          listen: { udp: [`127.0.0.1:${port}`] },
          admin: { listen: '127.0.0.1:0' },
          nodes: ports.map((p, i) => ({ id: `n${i}`, address: `127.0.0.1:${p}` })),
          session: { max: 2_000_000, idle_ttl_s: 600 },
          admission: { per_source_rate: 1_000_000, per_source_burst: 1_000_000 },
          audit: { path: join(dir, `${name}.audit.jsonl`) },
          store,
          log: { level: 'info' },
        }),
      );
      children.push(await startAnchorProcess(['run', '--config', cfg], /director started/));
      return port;
    };
    const memPort = await director('mem', await freePort(), { kind: 'memory' });
    const etcdStore = { kind: 'etcd', etcd: { endpoints: etcd.endpoints, prefix: `/bench-${randomBytes(3).toString('hex')}/` } };
    const e1 = await director('etcd-1', await freePort(), etcdStore);
    const e2 = await director('etcd-2', await freePort(), etcdStore);
    const runs = { memory: [] as number[], etcd_one: [] as number[], etcd_two: [] as number[] };
    for (let i = 0; i < REPEATS; i++) {
      runs.memory.push(await load([memPort]));
      runs.etcd_one.push(await load([e1]));
      runs.etcd_two.push(await load([e1, e2]));
    }
    const row = {
      memory_per_s: Math.round(median(runs.memory)),
      etcd_one_director_per_s: Math.round(median(runs.etcd_one)),
      etcd_two_directors_per_s: Math.round(median(runs.etcd_two)),
    };
    console.log(`admissions/s (medians of ${REPEATS} × ${SECONDS} s, window ${WINDOW} per director)`);
    console.table([row]);
    const result = { bench: 'admissions', machine: machine(), seconds: SECONDS, window: WINDOW, repeats: REPEATS, ...row, runs };
    console.log('written', writeResult('admissions', result));
    return result;
  } finally {
    await Promise.allSettled(children.map((c) => c.stop()));
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
