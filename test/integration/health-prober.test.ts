// HealthProber over real UDP sockets on loopback with real reference nodes: rise/fall counted in probes,
// a closed node goes unhealthy once and comes back when restarted on its port, IPv6, a silent socket, and
// answers that must not count (late, wrong nonce, wrong source port).
import { afterEach, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import { Worker } from 'node:worker_threads';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { ReferenceNode } from '../../src/refnode/node.js';
import { HealthProber, PROBE_LEN, encodeProbe, probeNonce } from '../../src/nodes/prober.js';
import { NodeHealth } from '../../src/nodes/membership.js';
import type { Transport } from '../../src/codec/types.js';
import { systemClock } from '../../src/util/clock.js';
import { waitFor } from '../helpers/wait.js';

const { UNKNOWN, HEALTHY, UNHEALTHY } = NodeHealth;

interface Change {
  readonly node: string;
  readonly health: NodeHealth;
  readonly consecutive: number;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function refNode(id: string, family: 4 | 6 = 4, port = 0): Promise<ReferenceNode> {
  const n = new ReferenceNode({ id, listen: { family, address: family === 6 ? '::1' : '127.0.0.1', port } });
  await n.start();
  let closed = false;
  const close = n.close.bind(n);
  n.close = async () => {
    if (closed) return;
    closed = true;
    await close();
  };
  cleanups.push(() => n.close());
  return n;
}

/** A bound UDP socket that counts what it receives and does whatever `answer` says (default: nothing). */
async function fakeNode(
  family: 4 | 6 = 4,
  answer: (msg: Buffer, from: dgram.RemoteInfo, self: dgram.Socket) => void = () => {},
): Promise<{ address: Transport; received: () => number }> {
  const s = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6 });
  let received = 0;
  s.on('message', (msg, from) => {
    received++;
    answer(msg, from, s);
  });
  s.bind(0, family === 6 ? '::1' : '127.0.0.1');
  await once(s, 'listening');
  cleanups.push(() => new Promise<void>((r) => s.close(() => r())));
  const a = s.address();
  return { address: { family, address: a.address, port: a.port }, received: () => received };
}

function prober(
  nodes: { id: string; address: Transport }[],
  opts: { intervalMs?: number; timeoutMs?: number; rise?: number; fall?: number } = {},
): { p: HealthProber; changes: Change[] } {
  const changes: Change[] = [];
  const errors: unknown[] = [];
  const p = new HealthProber({
    nodes,
    intervalMs: opts.intervalMs ?? 50,
    timeoutMs: opts.timeoutMs ?? 200, // generous: a busy CI host must not turn a live node's answer into a timeout
    rise: opts.rise ?? 2,
    fall: opts.fall ?? 2,
    clock: systemClock,
    onChange: (node, health, { consecutive }) => changes.push({ node, health, consecutive }),
    onError: (err) => errors.push(err),
  });
  cleanups.push(() => p.close());
  return { p, changes };
}

const of = (changes: Change[], node: string): NodeHealth[] => changes.filter((c) => c.node === node).map((c) => c.health);

const v6 = await new Promise<boolean>((resolve) => {
  const s = dgram.createSocket({ type: 'udp6', ipv6Only: true });
  s.once('error', () => {
    s.close();
    resolve(false);
  });
  s.bind(0, '::1', () => s.close(() => resolve(true)));
});

describe('probe datagram', () => {
  it('is a 27-byte PROXY v2 LOCAL header whose nonce TLV round-trips', () => {
    const nonce = Buffer.from('0123456789abcdef', 'hex');
    const b = encodeProbe(nonce);
    expect(b.length).toBe(PROBE_LEN);
    expect(b.subarray(12, 16)).toEqual(Buffer.from([0x20, 0x00, 0x00, 11]));
    expect(Buffer.from(probeNonce(b) ?? [])).toEqual(nonce);
    expect(probeNonce(b.subarray(0, 20))).toBeUndefined();
    expect(probeNonce(Buffer.from('not a probe'))).toBeUndefined();
  });
});

describe('HealthProber', () => {
  it('a node never probed is healthy at its first answer (start() awaits the first round); unhealthy after exactly fall silent probes', async () => {
    const ref = await refNode('ref');
    const silent = await fakeNode();
    // A long interval: only start()'s round and probeNow() probe, so every probe is counted here.
    const { p, changes } = prober(
      [
        { id: 'ref', address: ref.address },
        { id: 'silent', address: silent.address },
      ],
      { intervalMs: 60_000, timeoutMs: 500, rise: 3, fall: 2 },
    );
    expect(p.health('ref')).toBe(UNKNOWN);
    expect(p.health('nope')).toBeUndefined();
    await expect(p.probeNow()).rejects.toThrow(/before start/);
    await p.start();
    // The first round is over when start() resolves: the node that answered is healthy (rise counts only
    // for a node that failed), the silent one failed once (fall 2: not yet unhealthy, and takes no session).
    expect([p.health('ref'), p.health('silent')]).toEqual([HEALTHY, UNKNOWN]);
    expect([ref.stats.probes, silent.received()]).toEqual([1, 1]);
    await p.probeNow();
    expect([p.health('ref'), p.health('silent')]).toEqual([HEALTHY, UNHEALTHY]);
    await p.probeNow();
    expect(changes).toEqual([
      { node: 'ref', health: HEALTHY, consecutive: 1 },
      { node: 'silent', health: UNHEALTHY, consecutive: 2 },
    ]);
    expect(p.unhealthyFor('ref')).toBe(0);
  });

  it('a node that failed is healthy again after exactly rise answered probes', async () => {
    let answer = false;
    const flaky = await fakeNode(4, (msg, from, s) => {
      if (answer) s.send(msg, from.port, from.address);
    });
    const { p, changes } = prober([{ id: 'flaky', address: flaky.address }], { intervalMs: 60_000, timeoutMs: 200, rise: 3, fall: 1 });
    await p.start();
    expect(p.health('flaky')).toBe(UNHEALTHY);
    answer = true;
    await p.probeNow();
    await p.probeNow();
    expect(p.health('flaky')).toBe(UNHEALTHY); // 2 of 3
    await p.probeNow();
    expect(p.health('flaky')).toBe(HEALTHY);
    expect(changes).toEqual([
      { node: 'flaky', health: UNHEALTHY, consecutive: 1 },
      { node: 'flaky', health: HEALTHY, consecutive: 3 },
    ]);
  });

  it('a closed node goes unhealthy once, and healthy again when restarted on the same port', async () => {
    const a = await refNode('a');
    const b = await refNode('b');
    const { p, changes } = prober([
      { id: 'a', address: a.address },
      { id: 'b', address: b.address },
    ]);
    await p.start();
    await waitFor('both healthy', () => p.health('a') === HEALTHY && p.health('b') === HEALTHY);
    expect(changes).toEqual(
      expect.arrayContaining([
        { node: 'a', health: HEALTHY, consecutive: 1 },
        { node: 'b', health: HEALTHY, consecutive: 1 },
      ]),
    );
    expect(changes).toHaveLength(2);

    const port = a.address.port;
    await a.close();
    await waitFor('a unhealthy', () => p.health('a') === UNHEALTHY);
    await waitFor('unhealthyFor(a) counting', () => p.unhealthyFor('a') > 0);
    // More failed probes change nothing: still exactly one report.
    await p.probeNow();
    await p.probeNow();
    expect(of(changes, 'a')).toEqual([HEALTHY, UNHEALTHY]);
    expect(changes.find((c) => c.node === 'a' && c.health === UNHEALTHY)?.consecutive).toBe(2);
    expect(p.health('b')).toBe(HEALTHY);
    expect(of(changes, 'b')).toEqual([HEALTHY]);

    const again = await refNode('a', 4, port);
    expect(again.address.port).toBe(port);
    await waitFor('a healthy again', () => p.health('a') === HEALTHY);
    expect(of(changes, 'a')).toEqual([HEALTHY, UNHEALTHY, HEALTHY]);
    expect(p.unhealthyFor('a')).toBe(0);
  });

  it.skipIf(!v6)('probes an IPv6 node (::1) beside an IPv4 one', async () => {
    const n6 = await refNode('six', 6);
    const n4 = await refNode('four', 4);
    const silent6 = await fakeNode(6);
    expect(n6.address.address).toBe('::1');
    const { p, changes } = prober([
      { id: 'six', address: n6.address },
      { id: 'four', address: n4.address },
      { id: 'silent6', address: silent6.address },
    ]);
    await p.start();
    await waitFor('v6 and v4 healthy, silent v6 unhealthy', () => p.health('six') === HEALTHY && p.health('four') === HEALTHY && p.health('silent6') === UNHEALTHY);
    expect(of(changes, 'six')).toEqual([HEALTHY]);
    expect(of(changes, 'silent6')).toEqual([UNHEALTHY]);
    await n6.close();
    await waitFor('v6 node unhealthy after close', () => p.health('six') === UNHEALTHY);
    expect(of(changes, 'six')).toEqual([HEALTHY, UNHEALTHY]);
  });

  it('answers that are late, carry another nonce or come from another port count as nothing', async () => {
    const timeoutMs = 100;
    const late = await fakeNode(4, (msg, from, s) => {
      setTimeout(() => {
        // The test may have closed this node by then: a late answer to nobody is fine.
        try {
          s.send(msg, from.port, from.address, () => undefined);
        } catch {
          // socket closed
        }
      }, timeoutMs * 3).unref();
    });
    const wrongNonce = await fakeNode(4, (msg, from, s) => {
      const copy = Buffer.from(msg);
      copy[copy.length - 1] = (copy[copy.length - 1] ?? 0) ^ 0xff;
      s.send(copy, from.port, from.address);
    });
    const other = dgram.createSocket('udp4');
    other.bind(0, '127.0.0.1');
    await once(other, 'listening');
    cleanups.push(() => new Promise<void>((r) => other.close(() => r())));
    const otherPort = await fakeNode(4, (msg, from) => other.send(msg, from.port, from.address));
    const ref = await refNode('ref');
    const { p, changes } = prober(
      [
        { id: 'late', address: late.address },
        { id: 'wrong-nonce', address: wrongNonce.address },
        { id: 'other-port', address: otherPort.address },
        { id: 'ref', address: ref.address },
      ],
      { intervalMs: 60_000, timeoutMs, rise: 1, fall: 3 },
    );
    await p.start();
    for (let i = 0; i < 4; i++) await p.probeNow();
    for (const id of ['late', 'wrong-nonce', 'other-port']) {
      expect(p.health(id)).toBe(UNHEALTHY);
      expect(of(changes, id)).toEqual([UNHEALTHY]);
    }
    expect(late.received()).toBeGreaterThanOrEqual(3);
    expect(p.health('ref')).toBe(HEALTHY);
  });

  it('an answer that came in time but waited unread while the event loop was blocked past the deadline counts', async () => {
    // The node runs on a thread of its own, so it answers while this thread is blocked. It answers start()'s
    // probe at once (the node is healthy from then on), and holds its answer to a later one until told to,
    // so that the answer is certainly not read before the block.
    const worker = new Worker(
      `const { parentPort } = require('node:worker_threads');
       const s = require('node:dgram').createSocket('udp4');
       let held = null;
       let first = true;
       s.on('message', (msg, from) => { if (first) { first = false; s.send(msg, from.port, from.address); return; } held = () => s.send(msg, from.port, from.address, () => parentPort.postMessage('sent')); parentPort.postMessage('got'); });
       parentPort.on('message', (m) => { if (m === 'answer' && held) held(); if (m === 'close') s.close(() => process.exit(0)); });
       s.bind(0, '127.0.0.1', () => parentPort.postMessage(s.address().port));`,
      { eval: true },
    );
    cleanups.push(async () => {
      worker.postMessage('close');
      await once(worker, 'exit');
    });
    const [port] = (await once(worker, 'message')) as [number];
    const timeoutMs = 100;
    const { p, changes } = prober([{ id: 'busy', address: { family: 4, address: '127.0.0.1', port } }], { intervalMs: 60_000, timeoutMs, rise: 1, fall: 1 });
    await p.start();
    expect(p.health('busy')).toBe(HEALTHY);
    const probed = p.probeNow();
    await once(worker, 'message'); // 'got': the probe is there
    worker.postMessage('answer');
    // Blocked well past the deadline; meanwhile the node answers (the answer waits in the socket).
    const t = performance.now();
    while (performance.now() - t < timeoutMs * 3) {
      // the director busy with something else
    }
    await probed;
    expect(p.health('busy')).toBe(HEALTHY);
    expect(of(changes, 'busy')).toEqual([HEALTHY]);
  });

  it('200 nodes answering in time while the event loop is blocked past the deadline: every answer counts (their backlog is read over several turns)', async () => {
    // The nodes run in a process of their own (answering while this thread is blocked), ended by its PID.
    const N = 200;
    const script = `const dgram = require('node:dgram'); const ports = []; let n = 0;
      for (let i = 0; i < ${N}; i++) { const s = dgram.createSocket('udp4'); s.on('message', (m, r) => s.send(m, r.port, r.address));
        s.bind(0, '127.0.0.1', () => { ports[i] = s.address().port; if (++n === ${N}) process.stdout.write(JSON.stringify(ports) + '\\n'); }); }`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    cleanups.push(() => {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const ports = await waitFor('the nodes to listen', () => (out.includes('\n') ? (JSON.parse(out) as number[]) : undefined));
    const { p, changes } = prober(
      ports.map((port, i) => ({ id: `n${i}`, address: { family: 4 as const, address: '127.0.0.1', port } })),
      { intervalMs: 3_600_000, timeoutMs: 100, rise: 1, fall: 1 },
    );
    await p.start();
    expect(changes.filter((c) => c.health === HEALTHY)).toHaveLength(N);
    const round = p.probeNow();
    // The probes go out (dgram sends after a lookup on the next tick), then the director is busy for 3×
    // the timeout while every answer comes in and waits in the socket.
    for (let i = 0; i < 6; i++) await new Promise((r) => process.nextTick(r));
    const t = performance.now();
    while (performance.now() - t < 300) {
      // busy
    }
    await round;
    expect(changes.filter((c) => c.health === UNHEALTHY)).toEqual([]);
    for (let i = 0; i < N; i++) expect(p.health(`n${i}`)).toBe(HEALTHY);
  }, 30_000);

  it('close() is idempotent; probeNow() after close resolves and changes nothing', async () => {
    const ref = await refNode('ref');
    const { p } = prober([{ id: 'ref', address: ref.address }]);
    await p.start();
    await waitFor('healthy', () => p.health('ref') === HEALTHY);
    await p.close();
    await p.close();
    await p.probeNow(); // after close: sends nothing, resolves at once
    expect(p.health('ref')).toBe(HEALTHY);
  });
});
