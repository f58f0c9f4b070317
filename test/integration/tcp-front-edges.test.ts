// The TCP front when a connection ends in an unusual order (found by review): an owner that never accepts
// (its SYNs dropped) or a client that leaves while the front connects to the owner — the admitted session
// is ended, not stranded; a session frozen then resumed without a transfer — its client's bytes flow again;
// connections that close before their preamble — not counted as preamble timeouts; a reattach the owner
// never BINDs — counted once; a TCP-bound session's stray jump candidate — forgotten by the front.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { encodeJv1, sessionIdHex } from '../../src/codec/jv1.js';
import { PacketType } from '../../src/codec/types.js';
import { LifecycleEvent, SessionState } from '../../src/session/lifecycle.js';
import { CANDIDATE_TTL_MS } from '../../src/director/core.js';
import { createHasher } from '../../src/ring/hash.js';
import { buildRing, type Ring } from '../../src/ring/ring.js';
import { clientTransport, ManualClock, makeHarness, type Harness } from '../helpers/ownership-harness.js';
import { startTcpFront } from '../helpers/tcp-front.js';
import type { TcpFront } from '../../src/net/tcp-front.js';
import { loadNativeTcp, type NativeTcpBinding } from '../../src/net/native/index.js';
import { waitFor } from '../helpers/wait.js';

let ring: Ring;
beforeAll(async () => {
  ring = buildRing(await createHasher(), [{ id: 'node-a', weight: 1 }]);
});
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * A port whose connects hang (their SYNs dropped): a child process listens (accept queue of 2) and blocks
 * at once, never accepting; two connects of ours fill the queue. The child is killed by the test.
 */
async function blackhole(): Promise<number> {
  const child = spawn(
    process.execPath,
    [
      '-e',
      // listen() without a host binds synchronously; the event loop never runs, so nothing is accepted.
      `const s = require('node:net').createServer().listen({ port: 0, backlog: 1 });
       require('node:fs').writeSync(1, s.address().port + '\\n');
       Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120000);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  cleanups.push(() => child.kill('SIGKILL'));
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const port = Number(line.toString().trim());
  for (let i = 0; i < 2; i++) await client(port);
  return port;
}

/** A node that reads and never answers: the bytes it received, and whether the stream so far ends with `b`. */
async function silentNode(): Promise<{ port: number; received: () => number; endsWith: (b: Buffer) => boolean }> {
  let bytes = 0;
  let tail = Buffer.alloc(0);
  const socks = new Set<net.Socket>();
  const server = net.createServer((s) => {
    socks.add(s);
    s.on('data', (d: Buffer) => {
      bytes += d.length;
      tail = Buffer.concat([tail, d]).subarray(-4096);
    });
    s.on('error', () => undefined);
    s.on('close', () => socks.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => {
    for (const s of socks) s.destroy();
    server.close();
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    received: () => bytes,
    endsWith: (b) => tail.length >= b.length && tail.subarray(tail.length - b.length).equals(b),
  };
}

async function client(port: number): Promise<net.Socket> {
  const c = net.connect({ host: '127.0.0.1', port });
  c.on('error', () => undefined);
  cleanups.push(() => c.destroy());
  await once(c, 'connect');
  return c;
}

function harness(clock = new ManualClock()): Harness {
  const h = makeHarness({ ring, clock });
  cleanups.push(() => h.own.close());
  return h;
}

/** A session admitted over TCP by a front on a manual clock, bound to its connection, toward a silent node. */
async function boundOverTcp(
  idByte: number,
  native: NativeTcpBinding | null = null,
): Promise<{ clock: ManualClock; h: Harness; front: TcpFront; node: Awaited<ReturnType<typeof silentNode>>; c: net.Socket; id: Uint8Array }> {
  const clock = new ManualClock();
  const h = harness(clock);
  const node = await silentNode();
  const front = await startTcpFront(h, [{ id: 'node-a', port: node.port }], { native });
  cleanups.push(() => front.close());
  const id = new Uint8Array(16).fill(idByte);
  const c = await client(front.addresses[0]!.port);
  c.write(encodeJv1(PacketType.HELLO, id));
  await waitFor('bound', () => front.hasConnection(id) || undefined, { timeoutMs: 3000 });
  return { clock, h, front, node, c, id };
}

const nativeTcp = loadNativeTcp();

const refused = (h: Harness): Record<string, number> => Object.fromEntries([...h.stats.tcpRefused.values].filter(([, n]) => n > 0));

describe('TCP front: connections that end in an unusual order', () => {
  it('an owner that never accepts: the admitted session ends at the connect timeout (terminated, audited, counted), not left attached with no connection', async () => {
    const h = harness();
    const front = await startTcpFront(h, [{ id: 'node-a', port: await blackhole() }], { connectTimeoutMs: 300 });
    cleanups.push(() => front.close());
    const id = new Uint8Array(16).fill(0x31);
    const c = await client(front.addresses[0]!.port);
    c.write(encodeJv1(PacketType.HELLO, id, new Uint8Array(8)));
    await once(c, 'close');
    await waitFor('the session to end', () => h.core.table.get(sessionIdHex(id)) === undefined || undefined, { timeoutMs: 5000 });
    expect(refused(h)).toEqual({ upstream_connect: 1 });
    expect(h.audit.recent({ session: sessionIdHex(id), limit: 10 }).map((l) => [l.event, l.cause])).toEqual([
      ['create', 'hello'],
      ['terminate', 'upstream_connect_failed'],
    ]);
    expect(front.openConnections).toBe(0);
  });

  it('a client that leaves while the front connects to the owner: the session ends (client_gone), not stranded', async () => {
    const h = harness();
    const front = await startTcpFront(h, [{ id: 'node-a', port: await blackhole() }], { connectTimeoutMs: 30_000 });
    cleanups.push(() => front.close());
    const id = new Uint8Array(16).fill(0x32);
    const c = await client(front.addresses[0]!.port);
    c.write(encodeJv1(PacketType.HELLO, id, new Uint8Array(8)));
    await waitFor('the session admitted', () => h.core.table.get(sessionIdHex(id)) !== undefined || undefined, { timeoutMs: 5000 });
    c.resetAndDestroy();
    await waitFor('the session to end', () => h.core.table.get(sessionIdHex(id)) === undefined || undefined, { timeoutMs: 5000 });
    expect(refused(h)).toEqual({ client_gone: 1 });
    expect(h.audit.recent({ session: sessionIdHex(id), limit: 10 }).map((l) => l.event)).toEqual(['create', 'terminate']);
    await waitFor('no connection left', () => front.openConnections === 0 || undefined, { timeoutMs: 5000 });
  });

  it('a client that leaves while its session is being admitted: the session ends (client_gone, counted once), not ended as the node\'s failure', async () => {
    const h = harness();
    const node = await silentNode();
    const front = await startTcpFront(h, [{ id: 'node-a', port: node.port }]);
    cleanups.push(() => front.close());
    let release: (() => void) | null = null;
    h.store.beforeCreate = () => new Promise<void>((r) => (release = r));
    const id = new Uint8Array(16).fill(0x33);
    const c = await client(front.addresses[0]!.port);
    c.write(encodeJv1(PacketType.HELLO, id, new Uint8Array(8)));
    await waitFor('the admission being written', () => release !== null || undefined, { timeoutMs: 5000 });
    c.resetAndDestroy();
    await waitFor('the connection gone', () => front.openConnections === 0 || undefined, { timeoutMs: 5000 });
    release!();
    await waitFor('the session to end', () => (h.auditLines(sessionIdHex(id)).length === 2 ? true : undefined), { timeoutMs: 5000 });
    expect(h.core.table.get(sessionIdHex(id))).toBeUndefined();
    expect(refused(h)).toEqual({ client_gone: 1 });
    expect(h.auditLines(sessionIdHex(id)).map((l) => [l.event, l.cause])).toEqual([
      ['create', 'hello'],
      ['terminate', 'client_gone'],
    ]);
    expect(node.received()).toBe(0);
  });

  it('a session frozen and then resumed without a transfer (a stale freeze thawed): the client\'s bytes reach the owner again', async () => {
    const { clock, h, front, node, c, id } = await boundOverTcp(0x44);
    c.write(Buffer.alloc(100, 1));
    // All of them (a count above 100 may still miss the last of a write split in two reads).
    await waitFor('the first bytes', () => node.endsWith(Buffer.alloc(100, 1)) || undefined, { timeoutMs: 3000 });
    const before = node.received();
    const rec = h.core.table.get(sessionIdHex(id))!;
    expect((await h.own.step(rec, LifecycleEvent.FREEZE, { cause: 'migrate', actor: 'test' })).ok).toBe(true);
    clock.advance(60_000);
    h.own.thawStale(h.clock.now(), 1000);
    await waitFor('thawed', () => rec.state === SessionState.ATTACHED || undefined, { timeoutMs: 3000 });
    expect(front.hasConnection(id)).toBe(true);
    c.write(Buffer.alloc(100, 2));
    await waitFor('the bytes written after the thaw', () => (node.received() - before === 100 && node.endsWith(Buffer.alloc(100, 2))) || undefined, { timeoutMs: 3000 });
  });

  it('a connection whose session ended closes after a session of the same id was admitted again: the new session lives on', async () => {
    // Without PROXY v2 a session ends with its connection; the connection of a session already ended
    // (terminated, its connection ending gracefully while the client keeps its half open) must end only
    // that session, not the one of the same id admitted meanwhile (tombstones off).
    const h = makeHarness({ ring, limits: { tombstoneMs: 0 } });
    cleanups.push(() => h.own.close());
    const node = await silentNode();
    const front = await startTcpFront(h, [{ id: 'node-a', port: node.port }], { encapsulation: 'none' });
    cleanups.push(() => front.close());
    const id = new Uint8Array(16).fill(0x45);
    const hex = sessionIdHex(id);
    const c = net.connect({ host: '127.0.0.1', port: front.addresses[0]!.port, allowHalfOpen: true });
    c.on('error', () => undefined);
    cleanups.push(() => c.destroy());
    await once(c, 'connect');
    c.write(encodeJv1(PacketType.HELLO, id));
    await waitFor('bound', () => front.hasConnection(id) || undefined, { timeoutMs: 3000 });
    const first = h.core.table.get(hex)!;
    expect(h.own.terminate(hex, 'operator', 'test').ok).toBe(true);
    await once(c, 'end'); // the front ends its side; ours stays open
    const again = await h.admit(id, clientTransport(7));
    expect(again).not.toBe(first);
    expect(h.core.table.get(hex)).toBe(again);
    c.end();
    await waitFor('the old connection gone', () => front.openConnections === 0 || undefined, { timeoutMs: 5000 });
    expect(h.core.table.get(hex)).toBe(again);
    expect(again.state).toBe(SessionState.ATTACHED);
    expect(h.auditLines(hex).map((l) => l.event)).toEqual(['create', 'terminate', 'create']);
  });

  it('a TCP-bound session forgets a stray datagram transport (a jump candidate) once it is past its TTL: its bytes never pass the core, the front prunes', async () => {
    const { clock, h, node, c, id } = await boundOverTcp(0x46);
    const rec = h.core.table.get(sessionIdHex(id))!;
    // A late datagram of the session from elsewhere (the old path after a jump to TCP): a candidate.
    expect(h.client(encodeJv1(PacketType.DATA, id, new Uint8Array(8)), clientTransport(9)).kind).toBe('forward');
    expect(rec.candidates?.size).toBe(1);
    c.write(Buffer.alloc(10, 1));
    await waitFor('the first bytes', () => node.received() > 10 || undefined, { timeoutMs: 3000 });
    expect(rec.candidates?.size).toBe(1); // within its TTL: kept
    clock.advance(CANDIDATE_TTL_MS + 1);
    c.write(Buffer.alloc(10, 2));
    await waitFor('the candidate forgotten', () => rec.candidates === null || undefined, { timeoutMs: 3000 });
    expect(rec.state).toBe(SessionState.ATTACHED);
  });

  it.skipIf(!nativeTcp.ok)('a spliced session (its bytes never reach JavaScript) forgets a stray jump candidate past its TTL: the sweep prunes', async () => {
    const { clock, h, front, node, c, id } = await boundOverTcp(0x47, nativeTcp.ok ? nativeTcp.binding : null);
    c.write(Buffer.alloc(10, 1));
    await waitFor('the connection spliced and its bytes through', () => (front.splicedConnections === 1 && node.received() > 10) || undefined, { timeoutMs: 3000 });
    const rec = h.core.table.get(sessionIdHex(id))!;
    expect(h.client(encodeJv1(PacketType.DATA, id, new Uint8Array(8)), clientTransport(9)).kind).toBe('forward');
    expect(rec.candidates?.size).toBe(1);
    clock.advance(CANDIDATE_TTL_MS + 1);
    // No byte is written: only the sweep (once a second) looks at a spliced session.
    await waitFor('the candidate forgotten', () => rec.candidates === null || undefined, { timeoutMs: 5000 });
    expect(rec.state).toBe(SessionState.ATTACHED);
    expect(front.splicedConnections).toBe(1);
  });

  it('connections that close or reset before their preamble are counted client_gone, once each, not preamble timeouts (a silent one is)', async () => {
    const h = harness();
    const front = await startTcpFront(h, [{ id: 'node-a', port: 9 }], { preambleTimeoutMs: 300 });
    cleanups.push(() => front.close());
    for (let i = 0; i < 5; i++) {
      const c = await client(front.addresses[0]!.port);
      if (i % 2 === 0) c.write(Buffer.from('JV\x01'));
      c.end();
      await once(c, 'close');
    }
    for (let i = 0; i < 3; i++) {
      const c = await client(front.addresses[0]!.port);
      c.write(Buffer.from('JV\x01\x02\x00'));
      await waitFor('the bytes read', () => h.stats.tcpAccepted === 6 + i || undefined, { timeoutMs: 5000 });
      c.resetAndDestroy();
    }
    await waitFor('every connection closed', () => front.openConnections === 0 || undefined, { timeoutMs: 5000 });
    await client(front.addresses[0]!.port); // opened after the others: its timer fires after theirs would have
    await waitFor('the silent connection to time out', () => h.stats.tcpPreambleTimeouts > 0 || undefined, { timeoutMs: 5000 });
    expect(h.stats.tcpPreambleTimeouts).toBe(1);
    expect(refused(h)).toEqual({ preamble_timeout: 1, client_gone: 8 });
  });

  it('a reattach the owner never BINDs is counted once (bind_timeout)', async () => {
    const h = harness();
    const node = await silentNode();
    const front = await startTcpFront(h, [{ id: 'node-a', port: node.port }], { bindTimeoutMs: 300 });
    cleanups.push(() => front.close());
    const id = Buffer.alloc(16, 0x66);
    const a = await client(front.addresses[0]!.port);
    a.write(encodeJv1(PacketType.HELLO, id));
    await waitFor('bound', () => front.hasConnection(id) || undefined, { timeoutMs: 3000 });
    const b = await client(front.addresses[0]!.port);
    b.write(encodeJv1(PacketType.DATA, id, Buffer.alloc(8, 1)));
    await once(b, 'close');
    expect(refused(h)).toEqual({ bind_timeout: 1 });
  });
});
