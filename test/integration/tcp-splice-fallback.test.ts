// The TCP front when the splice pump cannot take a connection because the director has no descriptor
// left for it (EMFILE): the connection stays on Node streams, carries its bytes both ways, and is counted
// in anchor_tcp_splice_fallbacks_total{reason="EMFILE"}. The director's descriptor limit is lowered from
// outside with prlimit(1) (util-linux) to what it has open plus the two a routed connection needs
// (the client's and the owner's socket), so the pump's dup() of them is what fails. Skipped, saying why,
// without prlimit or the native pump.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import type net from 'node:net';
import type { Transport } from '../../src/codec/types.js';
import { loadNativeTcp } from '../../src/net/native/index.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { metric } from '../helpers/director-proc.js';
import { tcpHello } from '../helpers/tcp.js';
import { waitFor } from '../helpers/wait.js';

const nativeTcp = loadNativeTcp();
const hasPrlimit = spawnSync('prlimit', ['--version'], { stdio: 'ignore' }).status === 0;
const skip = !nativeTcp.ok ? `the native TCP pump is not built: ${nativeTcp.reason}` : !hasPrlimit ? 'prlimit (util-linux) is not installed' : null;

function prlimit(pid: number, soft: number | 'unlimited', hard: number | 'unlimited'): void {
  const r = spawnSync('prlimit', ['--pid', String(pid), `--nofile=${soft}:${hard}`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`prlimit --pid ${pid} --nofile=${soft}:${hard} failed: ${r.stderr}`);
}

function nofile(pid: number): { soft: string; hard: string } {
  const r = spawnSync('prlimit', ['--pid', String(pid), '--nofile', '--raw', '--noheadings', '--output=SOFT,HARD'], { encoding: 'utf8' });
  const [soft, hard] = r.stdout.trim().split(/\s+/);
  if (r.status !== 0 || soft === undefined || hard === undefined) throw new Error(`prlimit --pid ${pid} --nofile: ${r.stderr}`);
  return { soft, hard };
}

/** The lowest RLIMIT_NOFILE under which exactly `free` descriptor numbers are unused, given those in use. */
function limitForFree(used: readonly number[], free: number): number {
  const inUse = new Set(used);
  let seen = 0;
  for (let n = 0; ; n++) if (!inUse.has(n) && ++seen === free) return n + 1;
}

/** The descriptor numbers a process has open (from /proc). */
function openFds(pid: number): number[] {
  return readdirSync(`/proc/${pid}/fd`).map(Number);
}

describe.skipIf(skip !== null)(`TCP front, splice fallback on EMFILE${skip === null ? '' : ` (skipped: ${skip})`}`, () => {
  let c: Cluster;
  let target: Transport;
  beforeAll(async () => {
    c = await startCluster({ family: 4, config: { listen: { udp: ['127.0.0.1:0'], tcp: ['127.0.0.1:0'] }, tcp: { native: 'on' } } });
    const line = c.director.stdout.split('\n').find((l) => l.includes('director started')) as string;
    const tcp = (JSON.parse(line) as { tcp: string[] }).tcp[0] as string;
    target = { family: 4, address: '127.0.0.1', port: Number(tcp.slice(tcp.lastIndexOf(':') + 1)) };
  });
  afterAll(async () => {
    await c?.stop();
  });

  it('a connection the pump cannot take (no descriptor for its dup) runs on streams, intact both ways, counted as EMFILE', async () => {
    const pid = c.director.child.pid as number;
    // One spliced connection first: the pump and its pipe pool exist, so the only descriptors the next
    // connection needs are its own sockets' and the pump's dups of them.
    const first = await tcpHello(target, randomBytes(16));
    await echo(first.sock, 4096);
    await waitFor('the first connection to be spliced', async () => (await metric(c.director.admin, 'anchor_tcp_connections_spliced')) === 1);
    const was = nofile(pid);
    let sock: net.Socket | null = null;
    try {
      // Room for exactly the client's and the owner's sockets: the limit bounds descriptor numbers, and a
      // new descriptor takes the lowest free number, so the limit goes just past the second free one.
      prlimit(pid, limitForFree(openFds(pid), 2), was.hard === 'unlimited' ? 'unlimited' : Number(was.hard));
      const second = await tcpHello(target, randomBytes(16));
      sock = second.sock;
    } finally {
      prlimit(pid, was.soft === 'unlimited' ? 'unlimited' : Number(was.soft), was.hard === 'unlimited' ? 'unlimited' : Number(was.hard));
    }
    // Limit restored: the connection that fell back goes on working, on streams.
    await echo(sock, 256 * 1024);
    expect(await metric(c.director.admin, 'anchor_tcp_splice_fallbacks_total', { reason: 'EMFILE' })).toBe(1);
    expect(await metric(c.director.admin, 'anchor_tcp_splice_fallbacks_total')).toBe(1);
    expect(await metric(c.director.admin, 'anchor_tcp_connections_spliced')).toBe(1);
    expect(await metric(c.director.admin, 'anchor_tcp_connections_open')).toBe(2);
    // And the next connection is spliced again.
    const third = await tcpHello(target, randomBytes(16));
    await echo(third.sock, 4096);
    await waitFor('the third connection to be spliced', async () => (await metric(c.director.admin, 'anchor_tcp_connections_spliced')) === 2);
    for (const s of [first.sock, sock, third.sock]) s.destroy();
    await waitFor('the connections to be gone', async () => (await metric(c.director.admin, 'anchor_tcp_connections_open')) === 0);
  });
});

/** Writes `bytes` random bytes and checks that the same bytes come back (the reference node echoes). */
async function echo(sock: net.Socket, bytes: number): Promise<void> {
  const data = randomBytes(bytes);
  const got = createHash('sha256');
  let n = 0;
  const done = new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      got.update(chunk);
      n += chunk.length;
      if (n >= bytes) {
        sock.off('data', onData);
        resolve();
      }
    };
    sock.on('data', onData);
    sock.once('close', () => (n >= bytes ? resolve() : reject(new Error(`closed after ${n} of ${bytes} bytes`))));
  });
  sock.resume();
  for (let off = 0; off < bytes; off += 64 * 1024) {
    if (!sock.write(data.subarray(off, Math.min(bytes, off + 64 * 1024)))) await once(sock, 'drain');
  }
  await done;
  expect(got.digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
}
