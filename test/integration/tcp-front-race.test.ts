// The TCP front follows a session's transitions only once the connection is bound to it. A transition
// that runs while the front is still connecting to the owner (between the admission and the bind) must
// not be missed: the connection is closed and nothing is sent to a node that no longer owns the session
// (or to one whose session is frozen). Real sockets on loopback, the real core, Ownership and in-process
// store (the ownership harness); the owner's TCP connect is held back until the migration has run.
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import net from 'node:net';
import { once } from 'node:events';
import { encodeJv1, sessionIdHex } from '../../src/codec/jv1.js';
import { PacketType } from '../../src/codec/types.js';
import type { TcpFront } from '../../src/net/tcp-front.js';
import { createHasher } from '../../src/ring/hash.js';
import { buildRing, type Ring } from '../../src/ring/ring.js';
import { SessionState } from '../../src/session/lifecycle.js';
import { makeHarness, type Harness } from '../helpers/ownership-harness.js';
import { startTcpFront } from '../helpers/tcp-front.js';
import { waitFor } from '../helpers/wait.js';

const NODES = ['node-a', 'node-b'] as const;
let ring: Ring;

beforeAll(async () => {
  ring = buildRing(
    await createHasher(),
    NODES.map((id) => ({ id, weight: 1 })),
  );
});

/** A TCP node that records every byte each of its connections received. */
async function recordingNode(): Promise<{ server: net.Server; port: number; received: () => number; connections: () => number }> {
  let bytes = 0;
  let conns = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    conns++;
    sockets.add(s);
    s.on('data', (d: Buffer) => (bytes += d.length));
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const close = server.close.bind(server);
  server.close = (cb?: (err?: Error) => void) => {
    for (const s of sockets) s.destroy();
    return close(cb);
  };
  return { server, port: (server.address() as net.AddressInfo).port, received: () => bytes, connections: () => conns };
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * Holds back the 'connect' event of every socket opened toward one of `ports` (the nodes) until `gate`
 * settles: the connection itself is made; only the front's view of it waits.
 */
function holdConnects(ports: readonly number[], gate: () => Promise<unknown>): void {
  const real = net.connect.bind(net) as (...a: unknown[]) => net.Socket;
  vi.spyOn(net, 'connect').mockImplementation(((...args: unknown[]) => {
    const s = real(...args);
    if (!ports.includes((args[0] as { port?: number }).port ?? -1)) return s;
    const emit = s.emit.bind(s) as (ev: string | symbol, ...a: unknown[]) => boolean;
    s.emit = ((ev: string | symbol, ...a: unknown[]) => {
      if (ev !== 'connect') return emit(ev, ...a);
      void gate().finally(() => emit(ev, ...a));
      return true;
    }) as typeof s.emit;
    return s;
  }) as typeof net.connect);
}

async function setup(opts: { quiesceMs: number }): Promise<{ h: Harness; front: TcpFront; nodes: Map<string, Awaited<ReturnType<typeof recordingNode>>> }> {
  const h = makeHarness({ ring, quiesceMs: opts.quiesceMs });
  cleanups.push(() => h.own.close());
  const nodes = new Map<string, Awaited<ReturnType<typeof recordingNode>>>();
  for (const id of NODES) {
    const n = await recordingNode();
    nodes.set(id, n);
    cleanups.push(() => new Promise<void>((r) => n.server.close(() => r())));
  }
  const front = await startTcpFront(h, NODES.map((id) => ({ id, port: (nodes.get(id) as { port: number }).port })));
  cleanups.push(() => front.close());
  return { h, front, nodes };
}

function nodePorts(nodes: Map<string, { port: number }>): number[] {
  return [...nodes.values()].map((n) => n.port);
}

/** Opens a client connection that sends a HELLO for `id`; resolves when the director closes it. */
async function helloAndWaitClose(front: TcpFront, id: Uint8Array): Promise<void> {
  const a = front.addresses[0] as { port: number };
  const c = net.connect({ host: '127.0.0.1', port: a.port });
  cleanups.push(() => void c.destroy());
  c.on('error', () => undefined);
  await once(c, 'connect');
  const closed = once(c, 'close');
  c.write(encodeJv1(PacketType.HELLO, id, new Uint8Array(8)));
  await Promise.race([closed, new Promise((_r, reject) => setTimeout(() => reject(new Error('the director did not close the connection within 5 s')), 5000).unref())]);
}

describe('TCP front: a transition while it connects to the owner', () => {
  it('a transfer that ran while the front connected: the connection is closed, the old owner gets no byte', async () => {
    const { h, front, nodes } = await setup({ quiesceMs: 0 });
    const id = new Uint8Array(16).fill(0x5a);
    const hex = sessionIdHex(id);
    const owner = ring.pick(id) as string;
    const to = NODES.find((n) => n !== owner) as string;
    // The session is admitted (the front connects to its owner only then); the migration runs while the
    // front waits for the connection.
    let migrated: unknown = null;
    holdConnects(nodePorts(nodes), async () => {
      migrated = await h.own.migrate(hex, { to, cause: 'test', actor: 'test' });
    });
    await helloAndWaitClose(front, id);
    expect(migrated).toMatchObject({ ok: true });
    const rec = h.core.table.get(hex);
    expect(rec?.owner).toBe(to);
    expect(rec?.version).toBe(4n); // freeze, transfer, resume
    expect(h.stats.tcpRefused.get('session_moved')).toBe(1);
    expect((nodes.get(owner) as { received: () => number }).received(), 'bytes the old owner received').toBe(0);
    expect((nodes.get(to) as { received: () => number }).received(), 'bytes the new owner received without a reconnect').toBe(0);
  });

  it('a freeze that ran while the front connected: the connection is closed, nothing is sent to the frozen owner', async () => {
    // A quiesce long enough that the session is still FROZEN when the connect is released.
    const { h, front, nodes } = await setup({ quiesceMs: 60_000 });
    const id = new Uint8Array(16).fill(0x6b);
    const hex = sessionIdHex(id);
    const owner = ring.pick(id) as string;
    holdConnects(nodePorts(nodes), async () => {
      void h.own.migrate(hex, { to: NODES.find((n) => n !== owner) as string, cause: 'test', actor: 'test' });
      await waitFor('the freeze', () => (h.core.table.get(hex)?.state === SessionState.FROZEN ? true : undefined), { timeoutMs: 5000, intervalMs: 5 });
    });
    await helloAndWaitClose(front, id);
    expect(h.core.table.get(hex)?.state).toBe(SessionState.FROZEN);
    expect(h.stats.tcpRefused.get('session_moved')).toBe(1);
    expect((nodes.get(owner) as { received: () => number }).received(), 'bytes the frozen owner received').toBe(0);
  });
});
