// The TCP front end to end: a real director process, three real reference nodes (UDP and TCP on the
// same port), real sockets. Sessions over TCP get the same ownership guarantees as over UDP. On both
// TCP data paths: the native splice pump (tcp.native: on; skipped with the loader's reason when it was
// not built) and Node streams (off); the same behaviour is expected of both.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import type net from 'node:net';
import { once } from 'node:events';
import { decodeJv1, decodeReject, encodeJv1, parseSessionIdHex } from '../../src/codec/jv1.js';
import { PacketType, RejectReason, type Transport } from '../../src/codec/types.js';
import { checkRecords } from '../../src/refnode/checker.js';
import { buildRing } from '../../src/ring/ring.js';
import { createHasher } from '../../src/ring/hash.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { metric } from '../helpers/director-proc.js';
import { closedBy, connect, readBytes, tcpHello, tcpReattach, tcpReattachTogether } from '../helpers/tcp.js';
import { waitFor } from '../helpers/wait.js';
import { UdpPeer } from '../helpers/udp.js';
import { sealPacket } from '../../src/refnode/keys.js';
import { transportKey } from '../../src/codec/ip.js';
import { loadNativeTcp } from '../../src/net/native/index.js';

const TCP_CONFIG = {
  listen: { udp: ['127.0.0.1:0', '[::1]:0'], tcp: ['127.0.0.1:0', '[::1]:0'] },
  tcp: { preamble_timeout_ms: 300 },
};
type Reattached = Awaited<ReturnType<typeof tcpReattach>>;
const PROBE = 'probe-0123456789-0123456789-0123';

const nativeTcp = loadNativeTcp();
const paths = [
  { io: 'splice' as const, skip: nativeTcp.ok ? null : nativeTcp.reason },
  { io: 'stream' as const, skip: null },
];

interface SessionJson {
  owner: string;
  version: string;
  transport: string;
}

async function tcpTargets(c: Cluster): Promise<{ v4: Transport; v6: Transport }> {
  const line = c.director.stdout.split('\n').find((l) => l.includes('director started'))!;
  const tcp = (JSON.parse(line) as { tcp: string[] }).tcp;
  const port = (s: string) => Number(s.slice(s.lastIndexOf(':') + 1));
  return { v4: { family: 4, address: '127.0.0.1', port: port(tcp[0]!) }, v6: { family: 6, address: '::1', port: port(tcp[1]!) } };
}

/** Streams `bytes` of random data through the session and checks the echo's SHA-256. */
async function roundTrip(sock: net.Socket, bytes: number): Promise<void> {
  const data = randomBytes(bytes);
  const want = createHash('sha256').update(data).digest('hex');
  const got = createHash('sha256');
  let n = 0;
  const done = new Promise<void>((resolve, reject) => {
    sock.on('data', (c: Buffer) => {
      got.update(c);
      n += c.length;
      if (n >= bytes) resolve();
    });
    sock.once('close', () => (n >= bytes ? resolve() : reject(new Error(`closed after ${n} of ${bytes} bytes`))));
  });
  sock.resume();
  // write in chunks, honouring backpressure
  for (let off = 0; off < bytes; off += 64 * 1024) {
    if (!sock.write(data.subarray(off, Math.min(bytes, off + 64 * 1024)))) await once(sock, 'drain');
  }
  await done;
  expect(got.digest('hex')).toBe(want);
}

for (const { io, skip } of paths) describe.skipIf(skip !== null)(`TCP front, ${io} data path${skip === null ? '' : ` (skipped: ${skip})`}`, () => {
  let c: Cluster;
  let t: { v4: Transport; v6: Transport };
  beforeAll(async () => {
    c = await startCluster({ family: 4, config: { ...TCP_CONFIG, tcp: { ...TCP_CONFIG.tcp, native: io === 'splice' ? 'on' : 'off' } } });
    t = await tcpTargets(c);
  });
  afterAll(async () => {
    await c?.stop();
  });

  it(`runs on the ${io} path (the "director started" line, anchor_tcp_native_io and anchor_tcp_connections_spliced say so)`, async () => {
    expect(c.director.stdout).toContain(`"tcp_io":"${io}"`);
    expect(await metric(c.director.admin, 'anchor_tcp_native_io')).toBe(io === 'splice' ? 1 : 0);
    const { sock } = await tcpHello(t.v4, randomBytes(16));
    try {
      await roundTrip(sock, 64 * 1024);
      expect(await metric(c.director.admin, 'anchor_tcp_connections_spliced')).toBe(io === 'splice' ? 1 : 0);
      expect(await metric(c.director.admin, 'anchor_tcp_splice_fallbacks_total')).toBe(0);
      expect(await metric(c.director.admin, 'anchor_tcp_splice_copy_reads_total')).toBe(0);
    } finally {
      sock.destroy();
    }
    await waitFor('the connection to be gone', async () => (await metric(c.director.admin, 'anchor_tcp_connections_open')) === 0);
    expect(await metric(c.director.admin, 'anchor_tcp_connections_spliced')).toBe(0);
  });

  it('500 concurrent sessions each move 2 MB through the director, checksummed; each reached exactly the ring\'s node', async () => {
    const ring = buildRing(await createHasher(), c.nodeIds.map((id) => ({ id, weight: 1 })));
    const ids: Buffer[] = Array.from({ length: 500 }, () => randomBytes(16));
    const socks: net.Socket[] = [];
    try {
      for (let i = 0; i < ids.length; i += 50) {
        const batch = await Promise.all(ids.slice(i, i + 50).map((id) => tcpHello(t.v4, id)));
        socks.push(...batch.map((b) => b.sock));
      }
      await Promise.all(socks.map((s) => roundTrip(s, 2 * 1024 * 1024)));
    } finally {
      for (const s of socks) s.destroy();
    }
    const hex = new Set(ids.map((id) => id.toString('hex')));
    const records = c.records().filter((l) => hex.has(l.session));
    expect(records.length).toBe(500);
    for (const r of records) expect(r.node).toBe(ring.pick(parseSessionIdHex(r.session)!));
    expect(new Set(records.map((r) => r.node)).size).toBe(3);
    expect(await metric(c.director.admin, 'anchor_tcp_bytes_total', { direction: 'in' })).toBeGreaterThanOrEqual(500 * 2 * 1024 * 1024);
  });

  it('works over IPv6', async () => {
    const { sock } = await tcpHello(t.v6, randomBytes(16));
    try {
      await roundTrip(sock, 256 * 1024);
    } finally {
      sock.destroy();
    }
  });

  it('closes and counts slow and garbage preambles, and rejects unknown sessions', async () => {
    const before = await metric(c.director.admin, 'anchor_tcp_preamble_timeouts_total');
    const slow = await connect(t.v4);
    slow.write(Buffer.from('JV\x01')); // then nothing: slowloris
    expect((await closedBy(slow)).length).toBe(0);
    expect(await metric(c.director.admin, 'anchor_tcp_preamble_timeouts_total')).toBe(before + 1);

    const garbage = await connect(t.v4);
    garbage.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    expect((await closedBy(garbage)).length).toBe(0);
    expect(await metric(c.director.admin, 'anchor_tcp_connections_refused_total', { reason: 'not_mine' })).toBeGreaterThan(0);

    const bad = await connect(t.v4);
    bad.write(Buffer.concat([Buffer.from([0x4a, 0x56, 0x09, 0x01]), randomBytes(16)])); // JV, wrong version
    expect((await closedBy(bad)).length).toBe(0);

    // DATA for an unknown session, with enough bytes to be answered: REJECT UNKNOWN_SESSION, closed.
    const unknown = await connect(t.v4);
    unknown.write(Buffer.concat([encodeJv1(PacketType.DATA, randomBytes(16)), Buffer.alloc(16)]));
    const got = await closedBy(unknown);
    const d = decodeJv1(got);
    expect(d.kind).toBe('ok');
    if (d.kind === 'ok') expect(decodeReject(d.value.payload)?.reason).toBe(RejectReason.UNKNOWN_SESSION);

    // A client that keeps its half open after the REJECT does not keep its place: the director lets it go.
    const stays = await connect(t.v4);
    stays.resume(); // read the REJECT, so that the FIN behind it is seen
    const ended = once(stays, 'end');
    const gone = once(stays, 'close');
    stays.write(Buffer.concat([encodeJv1(PacketType.DATA, randomBytes(16)), Buffer.alloc(16)]));
    await ended; // the REJECT and the director's FIN; this side never ends
    await waitFor('the director to close the rejected connection', async () => (await metric(c.director.admin, 'anchor_tcp_connections_open')) === 0 || undefined, { timeoutMs: 10_000 });
    stays.destroy();
    await gone;
  });

  it('a reconnect is a reattach: bound only after the owner BINDs it, and the old connection is closed', async () => {
    const id = randomBytes(16);
    const first = await tcpHello(t.v4, id);
    const before = (await (await fetch(`${c.director.admin}/v1/sessions/${id.toString('hex')}`)).json()) as SessionJson;
    const oldClosed = closedBy(first.sock);
    const second = await tcpReattach(t.v4, id, first.key);
    expect(second.reply.toString()).toMatch(/^probe-/);
    await oldClosed;
    const after = (await (await fetch(`${c.director.admin}/v1/sessions/${id.toString('hex')}`)).json()) as SessionJson;
    expect(after.owner).toBe(before.owner);
    expect(after.version).toBe('2');
    expect(after.transport).toBe(`127.0.0.1:${second.sock.localPort}`);
    await roundTrip(second.sock, 128 * 1024);
    second.sock.destroy();

    // A forged reconnect (wrong key) is closed by the owner and binds nothing.
    const forged = await tcpReattach(t.v4, id, randomBytes(16)).catch(() => null);
    expect(forged === null || !forged.reply.toString().startsWith('probe-')).toBe(true);
    forged?.sock.destroy();
    const still = (await (await fetch(`${c.director.admin}/v1/sessions/${id.toString('hex')}`)).json()) as SessionJson;
    expect(still.version).toBe('2');
  });

  it('a reconnect from the very ip:port the session is bound to (its connection dropped, the port kept) is bound again, without a version', async () => {
    const id = randomBytes(16);
    const hex = id.toString('hex');
    // From a port below the ephemeral range, which no other connection (the test's own HTTP requests) takes meanwhile.
    const first = await tcpHello(t.v4, id, { localPort: 'fixed' });
    const port = first.sock.localPort!;
    expect(port).toBeLessThan(32768);
    const open = await metric(c.director.admin, 'anchor_tcp_connections_open');
    const rebinds = await metric(c.director.admin, 'anchor_node_control_total', { kind: 'rebind' });
    // Reset, not closed: no TIME_WAIT on this side, so the port can be taken again at once.
    first.sock.resetAndDestroy();
    await waitFor('the director to drop the connection', async () => (await metric(c.director.admin, 'anchor_tcp_connections_open')) < open || undefined);
    const again = await connect(t.v4, port);
    again.write(Buffer.concat([sealPacket(first.key, encodeJv1(PacketType.DATA, id)), Buffer.from(PROBE)]));
    expect((await readBytes(again, PROBE.length)).toString()).toBe(PROBE);
    await roundTrip(again, 64 * 1024);
    expect(await metric(c.director.admin, 'anchor_node_control_total', { kind: 'rebind' })).toBe(rebinds + 1);
    const rec = (await (await fetch(`${c.director.admin}/v1/sessions/${hex}`)).json()) as SessionJson;
    expect(rec).toMatchObject({ version: '1', transport: `127.0.0.1:${port}` });
    again.destroy();
  });

  it('racing reconnects: one wins, the other gets REJECT OWNERSHIP_CONFLICT and is closed', async () => {
    // The two connections race only when the second reaches the node before the first one's BIND is
    // committed. On a loaded machine the director may take them one after the other: then the second is a
    // jump of its own (version 3), both are answered, and the race is tried again with a new session.
    for (let attempt = 1; ; attempt++) {
      const id = randomBytes(16);
      const first = await tcpHello(t.v4, id);
      const [a, b] = (await tcpReattachTogether(t.v4, id, first.key, 2)) as [Reattached, Reattached];
      const won = [a, b].filter((x) => x.reply.toString().startsWith('probe-'));
      const lost = [a, b].filter((x) => !x.reply.toString().startsWith('probe-'));
      const rec = (await (await fetch(`${c.director.admin}/v1/sessions/${id.toString('hex')}`)).json()) as SessionJson;
      const wonAt = won.map((x) => `127.0.0.1:${x.sock.localPort}`);
      for (const x of [a, b, first]) x.sock.destroy();
      if (won.length === 2 && attempt < 5) {
        // One after the other: two jumps, each committed, the session on one of the two.
        expect(rec.version).toBe('3');
        expect(wonAt).toContain(rec.transport);
        continue;
      }
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(1);
      const d = decodeJv1(lost[0]!.reply);
      expect(d.kind).toBe('ok');
      if (d.kind === 'ok') expect(decodeReject(d.value.payload)?.reason).toBe(RejectReason.OWNERSHIP_CONFLICT);
      expect(rec.version).toBe('2');
      expect(rec.transport).toBe(wonAt[0]);
      return;
    }
  });

  it('a jump to datagrams: once the owner BINDs the new transport, the TCP connection is closed and the session goes on over UDP', async () => {
    const id = randomBytes(16);
    const first = await tcpHello(t.v4, id);
    const hex = id.toString('hex');
    await roundTrip(first.sock, 4096);
    const closed = closedBy(first.sock);
    const peer = await UdpPeer.open(4);
    try {
      peer.send(sealPacket(first.key, encodeJv1(PacketType.DATA, id, Buffer.from('over-udp'))), c.director.udp[0]!);
      const echo = decodeJv1(await peer.next((m) => decodeJv1(m).kind === 'ok'));
      expect(echo.kind === 'ok' && echo.value.type).toBe(PacketType.DATA);
      // One transport per session: the connection is not it any more, and is closed.
      await closed;
      const after = (await (await fetch(`${c.director.admin}/v1/sessions/${hex}`)).json()) as SessionJson & { state: string };
      expect(after).toMatchObject({ version: '2', state: 'ATTACHED', transport: transportKey(peer.address) });
    } finally {
      peer.close();
      first.sock.destroy();
    }
  });

  it('a migration closes the client connection; its reconnect lands on the new owner', async () => {
    const id = randomBytes(16);
    const first = await tcpHello(t.v4, id);
    const hex = id.toString('hex');
    const before = (await (await fetch(`${c.director.admin}/v1/sessions/${hex}`)).json()) as SessionJson;
    const inBefore = await metric(c.director.admin, 'anchor_tcp_bytes_total', { direction: 'in' });
    // The client answers the director's FIN with bytes of its own, then its FIN: read and dropped.
    first.sock.once('end', () => first.sock.write(Buffer.alloc(1000, 0x78)));
    const closed = closedBy(first.sock);
    const to = c.nodeIds.find((n) => n !== before.owner)!;
    const r = await fetch(`${c.director.admin}/v1/sessions/${hex}/migrate`, { method: 'POST', body: JSON.stringify({ to }) });
    expect(r.status).toBe(200);
    await closed;
    // Bytes "in" are bytes toward a node: the 1000 after the end went nowhere.
    expect(await metric(c.director.admin, 'anchor_tcp_bytes_total', { direction: 'in' })).toBe(inBefore);
    const again = await tcpReattach(t.v4, id, first.key);
    expect(again.reply.toString()).toMatch(/^probe-/);
    const after = (await (await fetch(`${c.director.admin}/v1/sessions/${hex}`)).json()) as SessionJson;
    expect(after.owner).toBe(to);
    expect(after.version).toBe('5'); // 1 → freeze 2 → transfer 3 → resume 4 → reattach 5
    const mine = await waitFor('the reconnect to be recorded', () => {
      const r2 = c.records().filter((l) => l.session === hex);
      return r2.some((l) => l.node === to) ? r2 : undefined;
    });
    expect(checkRecords(mine).ok).toBe(true);
    again.sock.destroy();
  });
});

for (const { io, skip } of paths) describe.skipIf(skip !== null)(`TCP front idle timeout, ${io} data path`, () => {
  let c: Cluster;
  let t: { v4: Transport; v6: Transport };
  beforeAll(async () => {
    c = await startCluster({ family: 4, config: { ...TCP_CONFIG, tcp: { ...TCP_CONFIG.tcp, idle_timeout_s: 1, native: io === 'splice' ? 'on' : 'off' } } });
    t = await tcpTargets(c);
  });
  afterAll(async () => {
    await c?.stop();
  });

  it('a connection without traffic either way is closed after tcp.idle_timeout_s and counted; its session lives on', async () => {
    const id = randomBytes(16);
    const { sock } = await tcpHello(t.v4, id);
    await roundTrip(sock, 32 * 1024);
    await closedBy(sock, 10_000);
    expect(await metric(c.director.admin, 'anchor_tcp_connections_refused_total', { reason: 'idle_timeout' })).toBe(1);
    const r = await fetch(`${c.director.admin}/v1/sessions/${id.toString('hex')}`);
    expect(r.status).toBe(200);
  });
});
