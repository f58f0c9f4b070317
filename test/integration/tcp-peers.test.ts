// The TCP front against independent and heavy peers: HAProxy parses the PROXY v2 header Anchor writes;
// a 200 MB transfer with a slow reader keeps the director's memory bounded; a node drain with live TCP
// sessions passes the checker. On both TCP data paths (the native splice pump, skipped with the loader's
// reason when it was not built; Node streams).
import { afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { once } from 'node:events';
import { decodePpv2 } from '../../src/codec/ppv2.js';
import { encodeJv1 } from '../../src/codec/jv1.js';
import { PacketType, type Transport } from '../../src/codec/types.js';
import { checkRecords } from '../../src/refnode/checker.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { startDirector, tempDir, type DirectorProc } from '../helpers/director-proc.js';
import { closedBy, readBytes, tcpHello, tcpReattach } from '../helpers/tcp.js';
import { waitFor } from '../helpers/wait.js';
import { loadNativeTcp } from '../../src/net/native/index.js';

const nativeTcp = loadNativeTcp();
const paths = [
  { io: 'splice' as const, skip: nativeTcp.ok ? null : nativeTcp.reason },
  { io: 'stream' as const, skip: null },
];

function tcpTarget(p: DirectorProc, family: 4 | 6 = 4): Transport {
  const line = p.stdout.split('\n').find((l) => l.includes('director started'))!;
  const tcp = (JSON.parse(line) as { tcp: string[] }).tcp;
  const s = tcp.find((x) => (family === 6 ? x.startsWith('[') : !x.startsWith('[')))!;
  return { family, address: family === 6 ? '::1' : '127.0.0.1', port: Number(s.slice(s.lastIndexOf(':') + 1)) };
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? 0 : Number(m[1]) * 1024;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

for (const { io, skip } of paths) describe.skipIf(skip !== null)(`TCP front with real peers, ${io} data path${skip === null ? '' : ` (skipped: ${skip})`}`, () => {
  const tcpIo = { native: io === 'splice' ? 'on' : 'off' };
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });

  it('HAProxy (accept-proxy) accepts the PROXY v2 header Anchor writes and sees the client address', async () => {
    // A server behind HAProxy: HAProxy re-sends what it parsed as its own PROXY v2 header (send-proxy-v2).
    const seen: { src?: Transport; body: Buffer[] } = { body: [] };
    const backend = net.createServer((s) => {
      let buf = Buffer.alloc(0);
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        if (seen.src === undefined) {
          const d = decodePpv2(buf);
          if (d.kind !== 'ok') return;
          seen.src = d.value.src;
          buf = buf.subarray(d.value.headerLength);
        }
        if (buf.length > 0) {
          seen.body.push(buf);
          s.write(buf); // echo
          buf = Buffer.alloc(0);
        }
      });
      s.on('error', () => {});
    });
    backend.listen(0, '127.0.0.1');
    await once(backend, 'listening');
    cleanup.push(() => new Promise<void>((r) => backend.close(() => r())));
    const backendPort = (backend.address() as net.AddressInfo).port;
    const fePort = await freePort();
    const dir = tempDir();
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(
      cfg,
      [
        'global',
        '  maxconn 64',
        'defaults',
        '  mode tcp',
        '  timeout connect 2s',
        '  timeout client 10s',
        '  timeout server 10s',
        'frontend fe',
        `  bind 127.0.0.1:${fePort} accept-proxy`,
        '  default_backend be',
        'backend be',
        `  server s1 127.0.0.1:${backendPort} send-proxy-v2`,
        '',
      ].join('\n'),
    );
    const bin = ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy'].find((p) => {
      try {
        readFileSync(p);
        return true;
      } catch {
        return false;
      }
    });
    expect(bin, 'haproxy is installed (scripts/ensure-test-deps.sh)').toBeDefined();
    const hap = spawn(bin!, ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let hapOut = '';
    hap.stderr.on('data', (d: Buffer) => (hapOut += d.toString()));
    cleanup.push(async () => {
      if (hap.exitCode === null) {
        hap.kill('SIGKILL');
        await once(hap, 'exit');
      }
    });
    await waitFor('haproxy to listen', async () => {
      const s = net.connect(fePort, '127.0.0.1');
      s.on('error', () => {});
      try {
        await once(s, 'connect');
        return true;
      } finally {
        s.destroy();
      }
    });

    const d = await startDirector({
      listen: { udp: ['127.0.0.1:0'], tcp: ['127.0.0.1:0'] },
      admin: { listen: '127.0.0.1:0' },
      nodes: [{ id: 'haproxy-node', address: `127.0.0.1:${fePort}` }],
      health: { enabled: false },
      tcp: tcpIo,
    });
    expect(d.stdout).toContain(`"tcp_io":"${io}"`);
    cleanup.push(async () => {
      d.kill();
      await d.exited;
    });
    const client = net.connect(tcpTarget(d).port, '127.0.0.1');
    client.on('error', () => {});
    await once(client, 'connect');
    const id = randomBytes(16);
    const hello = Buffer.concat([encodeJv1(PacketType.HELLO, id), Buffer.from('through haproxy')]);
    client.write(hello);
    const echo = await readBytes(client, hello.length);
    expect(echo.equals(hello), hapOut).toBe(true);
    expect(seen.src).toEqual({ family: 4, address: '127.0.0.1', port: client.localPort });
    client.destroy();
  });

  it('200 MB through one session with a slow reader keeps the director\'s RSS bounded', async () => {
    const c: Cluster = await startCluster({ family: 4, config: { listen: { udp: ['127.0.0.1:0'], tcp: ['127.0.0.1:0'] }, tcp: tcpIo } });
    expect(c.director.stdout).toContain(`"tcp_io":"${io}"`);
    cleanup.push(() => c.stop());
    const pid = c.director.child.pid!;
    const { sock } = await tcpHello(tcpTarget(c.director), randomBytes(16));
    cleanup.push(() => void sock.destroy());
    const baseline = rssBytes(pid);
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 20);
    cleanup.push(() => clearInterval(sampler));
    const total = 200 * 1024 * 1024;
    const chunk = randomBytes(256 * 1024);
    let received = 0;
    const done = new Promise<void>((resolve, reject) => {
      sock.on('data', (c2: Buffer) => {
        received += c2.length;
        // A slow reader: stop reading for a moment every 8 MB.
        if (received % (8 * 1024 * 1024) < c2.length) {
          sock.pause();
          setTimeout(() => sock.resume(), 30);
        }
        if (received >= total) resolve();
      });
      sock.once('close', () => (received >= total ? resolve() : reject(new Error(`closed after ${received} bytes`))));
    });
    sock.resume();
    for (let sent = 0; sent < total; sent += chunk.length) {
      if (!sock.write(chunk)) await once(sock, 'drain');
    }
    await done;
    clearInterval(sampler);
    const grew = peak - baseline;
    console.log(`director RSS: baseline ${(baseline / 2 ** 20).toFixed(1)} MiB, peak ${(peak / 2 ** 20).toFixed(1)} MiB during 200 MB`);
    expect(received).toBe(total);
    // Backpressure: the director never buffers a meaningful part of the 200 MB.
    expect(grew).toBeLessThan(64 * 1024 * 1024);
  });

  it('a node drain with live TCP sessions: clients reconnect onto the remaining nodes; the checker passes', async () => {
    const c: Cluster = await startCluster({ family: 4, config: { listen: { udp: ['127.0.0.1:0'], tcp: ['127.0.0.1:0'] }, tcp: tcpIo } });
    expect(c.director.stdout).toContain(`"tcp_io":"${io}"`);
    cleanup.push(() => c.stop());
    const target = tcpTarget(c.director);
    const live: { id: Buffer; key: Buffer; sock: net.Socket }[] = [];
    for (let i = 0; i < 30; i++) {
      const id = randomBytes(16);
      live.push({ id, ...(await tcpHello(target, id)) });
    }
    cleanup.push(() => live.forEach((s) => s.sock.destroy()));
    const onA = live.filter((s) => c.records().some((l) => l.session === s.id.toString('hex') && l.node === 'node-a'));
    expect(onA.length).toBeGreaterThan(0);
    const closed = onA.map((s) => closedBy(s.sock));
    const r = await fetch(`${c.director.admin}/v1/nodes/node-a/drain`, { method: 'POST', body: '{"mode":"migrate"}' });
    expect(r.status).toBe(202);
    await Promise.all(closed);
    for (const s of onA) {
      const again = await tcpReattach(target, s.id, s.key);
      expect(again.reply.toString()).toMatch(/^probe-/);
      s.sock = again.sock;
    }
    const hex = new Set(live.map((s) => s.id.toString('hex')));
    // Nodes write their records asynchronously: wait (bounded) until each reattached session's record
    // on its new node is there.
    const records = await waitFor('the reattached sessions recorded on their new nodes', () => {
      const r = c.records().filter((l) => hex.has(l.session));
      return onA.every((s) => r.some((l) => l.session === s.id.toString('hex') && l.node !== 'node-a')) ? r : undefined;
    });
    const verdict = checkRecords(records);
    expect(verdict.violations).toEqual([]);
    for (const s of onA) {
      const mine = records.filter((l) => l.session === s.id.toString('hex') && l.type !== PacketType.REVOKE);
      expect(mine.at(-1)!.node).not.toBe('node-a');
    }
  });
});
