// The TCP front binds a reconnect only to the session it was for: an owner that answers the reattach of
// session A with a BIND of another of its sessions B (whose jump candidates hold this connection's
// ip:port, from a datagram) binds nothing — no CAS of B, the connection closed, a SECURITY_EVENT.
// Real sockets on loopback, the real core, Ownership and in-process store (the ownership harness), and a
// scripted owner node.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { once } from 'node:events';
import { encodeBind, encodeJv1, sessionIdHex } from '../../src/codec/jv1.js';
import { PacketType } from '../../src/codec/types.js';
import { TCP_LISTENER } from '../../src/director/outcomes.js';
import { createHasher } from '../../src/ring/hash.js';
import { buildRing, type Ring } from '../../src/ring/ring.js';
import { makeHarness } from '../helpers/ownership-harness.js';
import { startTcpFront } from '../helpers/tcp-front.js';
import { waitFor } from '../helpers/wait.js';

const NODES = ['node-a', 'node-b'] as const;
let ring: Ring;
beforeAll(async () => {
  ring = buildRing(await createHasher(), NODES.map((id) => ({ id, weight: 1 })));
});

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Two session ids the ring gives to one node. */
function twoOnOneNode(): { a: Uint8Array; b: Uint8Array; owner: string } {
  const a = new Uint8Array(16).fill(0x11);
  const owner = ring.pick(a) as string;
  for (let k = 0x12; ; k++) {
    const b = new Uint8Array(16).fill(k);
    if (ring.pick(b) === owner) return { a, b, owner };
  }
}

/** A free local TCP port (bound and let go). */
async function freePort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const p = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

describe('TCP front: a BIND for another session', () => {
  it('binds nothing: the reconnect is closed, the other session keeps its transport and version, a SECURITY_EVENT says which', async () => {
    const h = makeHarness({ ring });
    cleanups.push(() => h.own.close());
    const { a, b, owner } = twoOnOneNode();
    const port = await freePort();
    // The owner: its first connection (A's admission) is taken as it is; any later one (A's reconnect) is
    // answered with a BIND of B for the reconnecting client's ip:port.
    let conns = 0;
    const sockets = new Set<net.Socket>();
    const node = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      if (++conns === 1) return;
      s.once('data', () => s.write(encodeBind(b, 1n, { family: 4, address: '127.0.0.1', port })));
    });
    node.listen(0, '127.0.0.1');
    await once(node, 'listening');
    cleanups.push(() => new Promise<void>((r) => node.close(() => r())));
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
    });
    const nodePort = (node.address() as net.AddressInfo).port;
    const front = await startTcpFront(h, NODES.map((id) => ({ id, port: nodePort })));
    cleanups.push(() => front.close());
    const target = front.addresses[0] as { port: number };

    // A: admitted over TCP and bound to its first connection.
    const first = net.connect({ host: '127.0.0.1', port: target.port });
    first.on('error', () => undefined);
    cleanups.push(() => void first.destroy());
    await once(first, 'connect');
    first.write(encodeJv1(PacketType.HELLO, a, new Uint8Array(8)));
    await waitFor('A admitted', () => h.core.table.get(sessionIdHex(a)) ?? undefined);
    await waitFor('the owner connected for A', () => conns === 1 || undefined);
    // B: a UDP session of the same owner, with a datagram from 127.0.0.1:port (a jump candidate).
    const bRec = await h.admit(b, { family: 4, address: '198.51.100.20', port: 4000 });
    const cand = h.core.onClient(encodeJv1(PacketType.DATA, b, new Uint8Array(8)), { family: 4, address: '127.0.0.1', port }, `127.0.0.1:${port}`, 0, h.clock.now());
    expect(cand.kind).toBe('forward');
    expect(bRec.candidates?.size).toBe(1);

    // A's reconnect from that very ip:port; the owner answers with B's BIND.
    const second = net.connect({ host: '127.0.0.1', port: target.port, localAddress: '127.0.0.1', localPort: port });
    second.on('error', () => undefined);
    cleanups.push(() => void second.destroy());
    await once(second, 'connect');
    const closed = once(second, 'close');
    second.resume();
    second.write(encodeJv1(PacketType.DATA, a, new Uint8Array(8)));
    await closed;
    expect(h.stats.tcpRefused.get('bind_other_session')).toBe(1);
    expect(h.core.table.get(sessionIdHex(b))).toMatchObject({ version: 1n, transport: { address: '198.51.100.20', port: 4000 } });
    expect(h.core.table.get(sessionIdHex(a))?.version).toBe(1n);
    const ev = h.auditLines(sessionIdHex(a)).find((l) => l.event === 'SECURITY_EVENT');
    expect(ev).toMatchObject({ cause: 'bind_for_other_session', actor: owner, detail: { bound_session: sessionIdHex(b) } });
  });
});

describe('TCP front: the candidate the owner binds is this connection', () => {
  /**
   * A UDP session (its client at 198.51.100.20:4000) reconnecting over TCP from 127.0.0.1:port; `meanwhile`
   * runs when the owner has the reattach, just before it answers with a BIND of `bindTo(port)`.
   */
  async function reconnect(bindTo: (port: number) => { family: 4; address: string; port: number }, meanwhile: (h: ReturnType<typeof makeHarness>, port: number, id: Uint8Array) => void) {
    const h = makeHarness({ ring });
    cleanups.push(() => h.own.close());
    const id = new Uint8Array(16).fill(0x31);
    const port = await freePort();
    const sockets = new Set<net.Socket>();
    const node = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      s.once('data', () => {
        meanwhile(h, port, id);
        s.write(encodeBind(id, 1n, bindTo(port)));
      });
    });
    node.listen(0, '127.0.0.1');
    await once(node, 'listening');
    cleanups.push(() => new Promise<void>((r) => node.close(() => r())));
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
    });
    const front = await startTcpFront(h, NODES.map((n) => ({ id: n, port: (node.address() as net.AddressInfo).port })));
    cleanups.push(() => front.close());
    const rec = await h.admit(id, { family: 4, address: '198.51.100.20', port: 4000 });
    const conn = net.connect({ host: '127.0.0.1', port: (front.addresses[0] as { port: number }).port, localAddress: '127.0.0.1', localPort: port });
    conn.on('error', () => undefined);
    cleanups.push(() => void conn.destroy());
    await once(conn, 'connect');
    const closed = once(conn, 'close');
    conn.resume();
    conn.write(encodeJv1(PacketType.DATA, id, new Uint8Array(8)));
    return { h, id, rec, front, port, conn, closed };
  }

  it('a datagram from the connection\'s ip:port meanwhile (spoofable) does not turn the reattach of the stream into a datagram binding', async () => {
    const { h, id, rec, front, port } = await reconnect(
      (p) => ({ family: 4, address: '127.0.0.1', port: p }),
      (hh, p, sid) => {
        expect(hh.core.onClient(encodeJv1(PacketType.DATA, sid, new Uint8Array(8)), { family: 4, address: '127.0.0.1', port: p }, `127.0.0.1:${p}`, 0, hh.clock.now()).kind).toBe('forward');
      },
    );
    await waitFor('the stream bound', () => (front.hasConnection(id) && rec.version === 2n ? true : undefined));
    expect(rec).toMatchObject({ listener: TCP_LISTENER, transport: { address: '127.0.0.1', port } });
    expect(h.stats.nodeControl.get('bind')).toBe(1);
  });

  it('a BIND naming another transport of the session (a datagram\'s) binds nothing: the connection is closed, a SECURITY_EVENT says which', async () => {
    const other = { family: 4 as const, address: '198.51.100.30', port: 5000 };
    const { h, id, rec, front, closed } = await reconnect(
      () => other,
      (hh, _p, sid) => {
        expect(hh.core.onClient(encodeJv1(PacketType.DATA, sid, new Uint8Array(8)), other, '198.51.100.30:5000', 0, hh.clock.now()).kind).toBe('forward');
      },
    );
    await closed;
    expect(front.hasConnection(id)).toBe(false);
    expect(rec).toMatchObject({ version: 1n, transport: { address: '198.51.100.20', port: 4000 } });
    expect(h.stats.tcpRefused.get('bind_other_transport')).toBe(1);
    const ev = h.auditLines(sessionIdHex(id)).find((l) => l.event === 'SECURITY_EVENT');
    expect(ev).toMatchObject({ cause: 'bind_for_other_transport', detail: { bound_transport: '198.51.100.30:5000' } });
  });
});
