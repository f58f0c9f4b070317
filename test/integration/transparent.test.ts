// Transparent forwarding (backend.encapsulation: none) with the OpenVPN codec: the original bytes only,
// one upstream socket per session (the backend sees one stable peer per session), data packets follow
// the transport's pin, a client restart ends its old session, and a drain ends what cannot move.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { encodeJv1 } from '../../src/codec/jv1.js';
import { PacketType } from '../../src/codec/types.js';
import { startDirector, metric, type DirectorProc } from '../helpers/director-proc.js';
import { UdpPeer } from '../helpers/udp.js';
import { waitFor } from '../helpers/wait.js';

/** A UDP backend that echoes and remembers which peer (source port) sent what. */
class EchoBackend {
  readonly peers: { port: number; first: number; bytes: Buffer }[] = [];
  private constructor(readonly socket: dgram.Socket) {
    socket.on('message', (msg, from) => {
      this.peers.push({ port: from.port, first: msg[0] ?? -1, bytes: msg });
      socket.send(msg, from.port, from.address);
    });
  }
  static async start(): Promise<EchoBackend> {
    const s = dgram.createSocket('udp4');
    s.bind(0, '127.0.0.1');
    await once(s, 'listening');
    return new EchoBackend(s);
  }
  get port(): number {
    return this.socket.address().port;
  }
}

/** A director forwarding transparently (backend.encapsulation: none) from `listen` to `backends` (vpn-0, vpn-1, …). */
function transparentDirector(listen: string | { address: string; codec: string }, backends: readonly EchoBackend[]): Promise<DirectorProc> {
  return startDirector({
    listen: { udp: [listen] },
    admin: { listen: '127.0.0.1:0' },
    nodes: backends.map((b, i) => ({ id: `vpn-${i}`, address: `127.0.0.1:${b.port}` })),
    backend: { encapsulation: 'none' },
    health: { enabled: false },
    admission: { per_source_rate: 10_000, per_source_burst: 10_000 },
  });
}

const HARD_RESET_V2 = 7 << 3;
const P_DATA_V2 = 9 << 3;
const reset = (sid: Buffer): Buffer => Buffer.concat([Buffer.from([HARD_RESET_V2]), sid, randomBytes(40)]);
const data = (payload: string): Buffer => Buffer.concat([Buffer.from([P_DATA_V2, 0, 0, 1]), Buffer.from(payload)]);

describe('transparent forwarding with the openvpn codec', () => {
  let d: DirectorProc;
  const backends: EchoBackend[] = [];
  beforeAll(async () => {
    for (let i = 0; i < 3; i++) backends.push(await EchoBackend.start());
    d = await transparentDirector({ address: '127.0.0.1:0', codec: 'openvpn' }, backends);
  });
  afterAll(async () => {
    d?.kill();
    await d?.exited;
    for (const b of backends) b.socket.close();
  });

  it('forwards the original bytes from one stable upstream port per session; data follows the pin', async () => {
    const target = d.udp[0]!;
    const clients = await Promise.all(Array.from({ length: 12 }, () => UdpPeer.open(4)));
    try {
      const sids = clients.map(() => randomBytes(8));
      clients.forEach((c, i) => c.send(reset(sids[i]!), target));
      for (const [i, c] of clients.entries()) {
        const echo = await c.next((m) => m[0] === HARD_RESET_V2);
        expect(echo.subarray(1, 9).equals(sids[i]!)).toBe(true);
      }
      clients.forEach((c, i) => c.send(data(`payload-${i}`), target));
      for (const [i, c] of clients.entries()) {
        const echo = await c.next((m) => m[0] === P_DATA_V2);
        expect(echo.subarray(4).toString()).toBe(`payload-${i}`);
      }
      // Each session reached exactly one backend, always from the same upstream port, and no two
      // sessions shared a port.
      // Only this test's OpenVPN packets: a stray datagram to a reused loopback port is not a session.
      const ports = backends.flatMap((b, bi) => b.peers.filter((p) => p.first === HARD_RESET_V2 || p.first === P_DATA_V2).map((p) => ({ ...p, backend: bi })));
      const portsByBackend = new Map<number, Set<number>>();
      for (const p of ports) {
        const s = portsByBackend.get(p.backend) ?? new Set<number>();
        s.add(p.port);
        portsByBackend.set(p.backend, s);
      }
      const allPorts = [...portsByBackend.values()].flatMap((s) => [...s]);
      expect(new Set(allPorts).size).toBe(12);
      expect(backends.filter((b) => b.peers.length > 0).length).toBeGreaterThan(1);
      expect(await metric(d.admin, 'anchor_upstream_session_sockets')).toBe(12);
    } finally {
      for (const c of clients) c.close();
    }
  });

  it('drops what is not OpenVPN and data from a transport with no session; a client restart ends the old session', async () => {
    const target = d.udp[0]!;
    const c = await UdpPeer.open(4);
    try {
      const before = await metric(d.admin, 'anchor_client_datagrams_dropped_total', { reason: 'unpinned' });
      c.send(data('nobody'), target);
      await waitFor('the unpinned drop', async () => (await metric(d.admin, 'anchor_client_datagrams_dropped_total', { reason: 'unpinned' })) === before + 1);
      c.send(Buffer.from([0x00, 1, 2, 3]), target);
      await waitFor('the not_mine drop', async () => (await metric(d.admin, 'anchor_client_datagrams_dropped_total', { reason: 'not_mine' })) >= 1);

      const first = randomBytes(8);
      c.send(reset(first), target);
      await c.next((m) => m[0] === HARD_RESET_V2);
      const second = randomBytes(8);
      c.send(reset(second), target); // the client restarted: a new session id from the same transport
      await c.next((m) => m[0] === HARD_RESET_V2 && m.subarray(1, 9).equals(second));
      const audit = (await (await fetch(`${d.admin}/v1/audit?limit=1000`)).json()) as { items: { event: string; cause: string }[] };
      expect(audit.items.some((l) => l.event === 'terminate' && l.cause === 'client_restarted')).toBe(true);
      c.send(data('after-restart'), target);
      const echo = await c.next((m) => m[0] === P_DATA_V2);
      expect(echo.subarray(4).toString()).toBe('after-restart');
    } finally {
      c.close();
    }
  });

  it('a migrate drain ends sessions that cannot move; an operator migrate is refused', async () => {
    const target = d.udp[0]!;
    const c = await UdpPeer.open(4);
    try {
      c.send(reset(randomBytes(8)), target);
      await c.next((m) => m[0] === HARD_RESET_V2);
      const sessions = (await (await fetch(`${d.admin}/v1/sessions?limit=1000`)).json()) as { items: { id: string; owner: string }[] };
      const one = sessions.items[0]!;
      const refused = await fetch(`${d.admin}/v1/sessions/${one.id}/migrate`, { method: 'POST', body: '{}' });
      expect(refused.status).toBe(409);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('unmovable');
      const onNode = sessions.items.filter((s) => s.owner === one.owner).length;
      const r = await fetch(`${d.admin}/v1/nodes/${one.owner}/drain`, { method: 'POST', body: '{"mode":"migrate"}' });
      const drain = (await r.json()) as { id: string };
      const done = await waitFor('the drain to finish', async () => {
        const v = (await (await fetch(`${d.admin}/v1/drains/${drain.id}`)).json()) as { state: string; ended: number; moved: number; remaining: number };
        return v.state === 'completed' ? v : undefined;
      });
      expect(done).toMatchObject({ moved: 0, remaining: 0 });
      expect(done.ended).toBe(onNode);
      const audit = (await (await fetch(`${d.admin}/v1/audit?limit=1000`)).json()) as { items: { event: string; cause: string }[] };
      expect(audit.items.filter((l) => l.event === 'terminate' && l.cause === 'drain_unmovable').length).toBe(onNode);
    } finally {
      c.close();
    }
  });
});

describe('transparent forwarding with the offset codec', () => {
  it('routes by the id at a fixed position: one backend per id, the same upstream port for it', async () => {
    const backends: EchoBackend[] = [];
    for (let i = 0; i < 3; i++) backends.push(await EchoBackend.start());
    const d = await startDirector({
      listen: { udp: [{ address: '127.0.0.1:0', codec: 'offset', offset: 2, length: 6 }] },
      admin: { listen: '127.0.0.1:0' },
      nodes: backends.map((b, i) => ({ id: `b-${i}`, address: `127.0.0.1:${b.port}` })),
      backend: { encapsulation: 'none' },
      health: { enabled: false },
      admission: { per_source_rate: 10_000, per_source_burst: 10_000 },
    });
    const c = await UdpPeer.open(4);
    try {
      const ids = Array.from({ length: 20 }, () => randomBytes(6));
      // Two datagrams per id, from one client socket: the id, not the transport, picks the session.
      // UDP may drop a datagram on a loaded machine: each one is resent until its echo comes back.
      for (const round of [0, 1]) {
        for (const [i, id] of ids.entries()) {
          const dgram = Buffer.concat([Buffer.from([0xee, round]), id, Buffer.from(`#${i}`)]);
          const echoed = (m: Buffer): boolean => m[1] === round && m.subarray(8).toString() === `#${i}`;
          for (let attempt = 0; ; attempt++) {
            c.send(dgram, d.udp[0]!);
            const got = await c.next(echoed, 1000).then(() => true, () => false);
            if (got) break;
            expect(attempt, `no echo for id #${i} after retries`).toBeLessThan(4);
          }
        }
      }
      expect(await metric(d.admin, 'anchor_admissions_total')).toBe(20);
      // Every datagram of an id reached one backend from one upstream port, and no two ids shared one.
      const pairOf = new Map<string, Set<string>>();
      for (const [bi, b] of backends.entries()) {
        for (const p of b.peers) {
          // Only this test's datagrams (marked 0xee): a loopback port can be one another test's process
          // used a moment ago, and a datagram sent to it then can still arrive (seen once in CI).
          if (p.bytes[0] !== 0xee) continue;
          const id = p.bytes.subarray(2, 8).toString('hex');
          pairOf.set(id, (pairOf.get(id) ?? new Set()).add(`${bi}:${p.port}`));
        }
      }
      expect(pairOf.size).toBe(20);
      for (const pairs of pairOf.values()) expect(pairs.size).toBe(1);
      expect(new Set([...pairOf.values()].map((p) => [...p][0])).size).toBe(20);
      // Too short for the id: malformed, dropped.
      c.send(Buffer.from([0xee, 9, 1]), d.udp[0]!);
      await waitFor('the malformed drop', async () => (await metric(d.admin, 'anchor_client_datagrams_dropped_total', { reason: 'malformed' })) === 1);
    } finally {
      c.close();
      d.kill();
      await d.exited;
      for (const b of backends) b.socket.close();
    }
  });
});

describe('transparent forwarding of JV1 sessions: a client CLOSE', () => {
  let d: DirectorProc;
  let backend: EchoBackend;
  beforeAll(async () => {
    backend = await EchoBackend.start();
    d = await transparentDirector('127.0.0.1:0', [backend]);
  });
  afterAll(async () => {
    d?.kill();
    await d?.exited;
    backend?.socket.close();
  });

  it('goes to the backend from the session\'s own upstream port, which is closed with the session (none left open)', async () => {
    const target = d.udp[0]!;
    const peer = await UdpPeer.open(4);
    try {
      // All 20 open at once (a closed session's port may be handed out again), then each CLOSEd.
      const open: { id: Buffer; port: number }[] = [];
      for (let i = 0; i < 20; i++) {
        const id = randomBytes(16);
        peer.send(encodeJv1(PacketType.HELLO, id, Buffer.from('hello')), target);
        await peer.next((m) => m[3] === PacketType.HELLO && m.subarray(4, 20).equals(id));
        open.push({ id, port: backend.peers.find((p) => p.bytes[3] === PacketType.HELLO && p.bytes.subarray(4, 20).equals(id))!.port });
      }
      expect(new Set(open.map((o) => o.port)).size).toBe(20);
      for (const { id, port } of open) {
        peer.send(encodeJv1(PacketType.CLOSE, id, Buffer.from('bye')), target);
        const close = await waitFor('the CLOSE at the backend', () => backend.peers.find((p) => p.bytes[3] === PacketType.CLOSE && p.bytes.subarray(4, 20).equals(id)));
        expect(close.port).toBe(port);
      }
      await waitFor('every session ended', async () => (await metric(d.admin, 'anchor_sessions_active')) === 0 || undefined);
      await waitFor('no upstream socket left', async () => (await metric(d.admin, 'anchor_upstream_session_sockets')) === 0 || undefined);
    } finally {
      peer.close();
    }
  });
});
