// The reference node's TCP side over real sockets, with the test standing in for the director (PROXY v2
// STREAM header + the client's preamble): HELLO key and echo (megabytes, a slow reader, half-close),
// reattach BIND or forged, REVOKE cutting live connections and fencing new ones, stale, LOCAL, malformed,
// bare JV1, records with proto 'tcp'. IPv4 and IPv6. Then TcpClientSession against the node and a raw peer.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_REATTACH_PROBE, StreamClosedError, TcpClientSession } from '../../src/client/tcp-session.js';
import { transportKey } from '../../src/codec/ip.js';
import { decodeRevoke, encodeBind, encodeJv1, encodeReject, encodeRevoke, sessionIdHex } from '../../src/codec/jv1.js';
import { encodePpv2, PP2_FLAG } from '../../src/codec/ppv2.js';
import { PacketType, RejectReason, type Transport } from '../../src/codec/types.js';
import { checkRecords } from '../../src/refnode/checker.js';
import { devSecret, sealPacket, sessionKey } from '../../src/refnode/keys.js';
import { ReferenceNode, type RecordLine } from '../../src/refnode/node.js';
import { parseStreamPreamble } from '../../src/refnode/tcp.js';
import { readRecords } from '../../src/refnode/records.js';
import { tempDir } from '../helpers/director-proc.js';
import { pb, PP2_SIGNATURE } from '../helpers/packet-builder.js';
import { UdpPeer } from '../helpers/udp.js';
import { waitFor } from '../helpers/wait.js';

const NODE_ID = 'node-t';
const keyOf = (id: Uint8Array): Buffer => sessionKey(devSecret(), id);
const hello = (id: Uint8Array): Buffer => encodeJv1(PacketType.HELLO, id);
/** The reattach preamble: DATA header ‖ MAC over the header alone (a wrong key forges it). */
const reattach = (id: Uint8Array, key: Uint8Array = keyOf(id)): Buffer => sealPacket(key, encodeJv1(PacketType.DATA, id));

/** One connection to the node, as the director's side of it: everything received is kept. */
class Upstream {
  received = Buffer.alloc(0);
  ended = false;
  closed = false;
  readonly socket: net.Socket;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (c: Buffer) => (this.received = Buffer.concat([this.received, c])));
    socket.on('end', () => (this.ended = true));
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => {}); // a reset shows as 'close'
  }

  static async open(to: Transport): Promise<Upstream> {
    const socket = net.connect({ host: to.address, port: to.port, allowHalfOpen: true, noDelay: true });
    await once(socket, 'connect');
    return new Upstream(socket);
  }

  write(b: Uint8Array): Promise<void> {
    return new Promise<void>((resolve, reject) => this.socket.write(b, (err) => (err ? reject(err) : resolve())));
  }

  /** Waits until at least `n` bytes arrived; returns the first `n`. */
  async bytes(n: number): Promise<Buffer> {
    await waitFor(`${n} bytes (have ${this.received.length})`, () => this.received.length >= n || this.closed);
    expect(this.received.length).toBeGreaterThanOrEqual(n);
    return this.received.subarray(0, n);
  }

  /** Waits until the node closed the connection (its FIN, or a reset): what it had sent. */
  async whenClosed(): Promise<Buffer> {
    await waitFor('the node to close the connection', () => this.ended || this.closed);
    return this.received;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

for (const family of [4, 6] as const) {
  const loop = family === 6 ? '::1' : '127.0.0.1';
  const client: Transport = { family, address: loop, port: 40001 };
  const jumped: Transport = { family, address: loop, port: 40002 };
  const director: Transport = { family, address: loop, port: 4500 };

  describe(`reference node over TCP, IPv${family}`, () => {
    let node: ReferenceNode;
    let dir: string;
    let seq: bigint;
    const open: Upstream[] = [];

    beforeEach(async () => {
      dir = tempDir('anchor-refnode-tcp-');
      node = new ReferenceNode({ id: NODE_ID, listen: { family, address: loop, port: 0 }, recordPath: join(dir, `${NODE_ID}.jsonl`) });
      await node.start();
      seq = 0n;
    });
    afterEach(async () => {
      for (const u of open.splice(0)) u.destroy();
      await node.close();
    });

    /** PROXY v2 STREAM header for `id`, as the director writes it. */
    const proxy = (id: Uint8Array, f: { version: bigint; flags?: number; src?: Transport; owner?: string }): Buffer =>
      encodePpv2({ transport: 'STREAM', src: f.src ?? client, dst: director, sessionId: id, version: f.version, owner: f.owner ?? NODE_ID, flags: f.flags ?? 0, seq: ++seq });
    /** Opens a connection and writes PROXY v2 ‖ preamble ‖ stream bytes. */
    const connect = async (id: Uint8Array, preamble: Buffer, f: { version: bigint; flags?: number; src?: Transport } | null, stream: Buffer = Buffer.alloc(0)): Promise<Upstream> => {
      const u = await Upstream.open(node.address);
      open.push(u);
      await u.write(Buffer.concat([f === null ? Buffer.alloc(0) : proxy(id, f), preamble, stream]));
      return u;
    };
    const records = async (): Promise<RecordLine[]> => {
      for (const u of open.splice(0)) u.destroy();
      await node.close();
      node = new ReferenceNode({ id: NODE_ID, listen: { family, address: loop, port: 0 } }); // for afterEach
      await node.start();
      return readRecords(dir);
    };

    it('listens for UDP and TCP on the same port', async () => {
      expect(node.address.port).toBeGreaterThan(0);
      const id = randomBytes(16);
      const u = await connect(id, hello(id), { version: 1n });
      expect((await u.bytes(36)).subarray(20).equals(keyOf(id))).toBe(true);
      const peer = await UdpPeer.open(family);
      try {
        const id2 = randomBytes(16);
        peer.send(hello(id2), node.address);
        expect((await peer.next()).subarray(20).equals(keyOf(id2))).toBe(true);
      } finally {
        peer.close();
      }
    });

    it('HELLO: header ‖ key, then echoes the stream and ends its half after the client ends its own', async () => {
      const id = randomBytes(16);
      const u = await connect(id, hello(id), { version: 1n }, Buffer.from('first bytes;'));
      await u.write(Buffer.from('more bytes'));
      await u.bytes(36 + 22);
      expect(u.ended).toBe(false); // half-open: the node waits for the client's end
      u.socket.end();
      await waitFor('the node to end its half', () => u.ended);
      expect(u.received.equals(Buffer.concat([hello(id), keyOf(id), Buffer.from('first bytes;more bytes')]))).toBe(true);
      expect(node.stats).toMatchObject({ tcpConnections: 1, tcpBytesEchoed: 22, sessions: 1 });
      await waitFor('the connection to close', () => node.stats.tcpOpen === 0);
    });

    it('reads a preamble that arrives one byte at a time', async () => {
      const id = randomBytes(16);
      const u = await Upstream.open(node.address);
      open.push(u);
      for (const b of Buffer.concat([proxy(id, { version: 1n }), hello(id), Buffer.from('x')])) await u.write(Uint8Array.of(b));
      expect((await u.bytes(37)).equals(Buffer.concat([hello(id), keyOf(id), Buffer.from('x')]))).toBe(true);
    });

    it('echoes megabytes intact to a slow reader, with bounded buffering (backpressure)', async () => {
      const total = 8 * 1024 * 1024;
      const id = randomBytes(16);
      const u = await Upstream.open(node.address);
      u.socket.removeAllListeners('data'); // this test reads through a slow sink instead
      open.push(u);
      const sent = createHash('sha256');
      const got = createHash('sha256');
      let preface = Buffer.alloc(0);
      let received = 0;
      let chunks = 0;
      const sink = new Writable({
        highWaterMark: 16 * 1024,
        write(chunk: Buffer, _enc, cb) {
          let c = chunk;
          if (preface.length < 36) {
            const take = Math.min(36 - preface.length, c.length);
            preface = Buffer.concat([preface, c.subarray(0, take)]);
            c = c.subarray(take);
          }
          got.update(c);
          received += c.length;
          // A slow reader: every chunk waits a timer turn.
          if (++chunks % 2 === 0) setTimeout(cb, 1);
          else setImmediate(cb);
        },
      });
      u.socket.pipe(sink);
      const writer = (async () => {
        await u.write(Buffer.concat([proxy(id, { version: 1n }), hello(id)]));
        for (let n = 0; n < total; ) {
          const chunk = randomBytes(Math.min(64 * 1024, total - n));
          sent.update(chunk);
          n += chunk.length;
          if (!u.socket.write(chunk)) await once(u.socket, 'drain');
        }
        u.socket.end();
      })();
      await Promise.all([writer, finished(sink)]);
      expect(preface.equals(Buffer.concat([hello(id), keyOf(id)]))).toBe(true);
      expect(received).toBe(total);
      expect(got.digest('hex')).toBe(sent.digest('hex'));
      expect(node.stats.tcpBytesEchoed).toBe(total);
      // The node paused reading while its writes were queued: never more than a few chunks held.
      expect(node.stats.tcpMaxQueued).toBeLessThan(1024 * 1024);
    });

    it('reattach with a valid MAC: BIND(version, PROXY source) first, then the echo', async () => {
      const id = randomBytes(16);
      const u = await connect(id, reattach(id), { version: 7n, flags: PP2_FLAG.UNBOUND_SOURCE, src: jumped }, Buffer.from('after the mac'));
      const bind = encodeBind(id, 7n, jumped);
      expect((await u.bytes(bind.length + 13)).equals(Buffer.concat([bind, Buffer.from('after the mac')]))).toBe(true);
      expect(node.stats).toMatchObject({ tcpBinds: 1, tcpForged: 0, sessions: 1 });
      expect(node.ownedSince(sessionIdHex(id))).toBe(7n);
    });

    it('DATA not flagged UNBOUND_SOURCE: echoes after the MAC, no BIND, MAC unchecked', async () => {
      const id = randomBytes(16);
      const u = await connect(id, reattach(id, randomBytes(16)), { version: 1n }, Buffer.from('plain'));
      expect((await u.bytes(5)).toString()).toBe('plain');
      expect(node.stats).toMatchObject({ tcpBinds: 0, tcpForged: 0 });
    });

    it('reattach with a forged MAC: closed, nothing written, recorded forged', async () => {
      const id = randomBytes(16);
      const flags = PP2_FLAG.UNBOUND_SOURCE;
      const forged = await connect(id, reattach(id, randomBytes(16)), { version: 1n, flags, src: jumped }, Buffer.from('x'));
      const otherKey = await connect(id, reattach(id, keyOf(randomBytes(16))), { version: 1n, flags, src: jumped });
      expect(await forged.whenClosed()).toHaveLength(0);
      expect(await otherKey.whenClosed()).toHaveLength(0);
      expect(node.stats).toMatchObject({ tcpForged: 2, tcpBinds: 0, sessions: 0 });
      const lines = await records();
      expect(lines.map((l) => [l.proto, l.accepted, l.drop, l.flags])).toEqual([
        ['tcp', false, 'forged', 1],
        ['tcp', false, 'forged', 1],
      ]);
    });

    it('REVOKE(V) over UDP cuts live connections below V, keeps the others, and fences new ones', async () => {
      const id = randomBytes(16);
      const hex = sessionIdHex(id);
      const v1 = await connect(id, hello(id), { version: 1n });
      const v3 = await connect(id, hello(id), { version: 3n });
      await v1.bytes(36);
      await v3.bytes(36);
      const peer = await UdpPeer.open(family);
      try {
        const header = encodePpv2({ transport: 'DGRAM', src: client, dst: director, sessionId: id, version: 2n, owner: NODE_ID, flags: 0, seq: ++seq });
        peer.send(Buffer.concat([header, encodeRevoke(id, 2n)]), node.address);
        expect(decodeRevoke((await peer.next((m) => m[3] === PacketType.REVOKE)).subarray(20))).toBe(2n);
      } finally {
        peer.close();
      }
      await v1.whenClosed();
      expect(node.revokedBelow(hex)).toBe(2n);
      await v3.write(Buffer.from('still here'));
      expect((await v3.bytes(46)).subarray(36).toString()).toBe('still here');
      expect(v3.closed).toBe(false);

      const late = await connect(id, hello(id), { version: 1n }, Buffer.from('late'));
      expect(await late.whenClosed()).toHaveLength(0);
      const back = await connect(id, hello(id), { version: 2n });
      expect((await back.bytes(36)).subarray(20).equals(keyOf(id))).toBe(true);
      expect(node.stats).toMatchObject({ tcpFenced: 2, revokes: 1 });

      const lines = (await records()).filter((l) => l.proto === 'tcp');
      expect(lines.map((l) => [l.version, l.accepted, l.drop])).toEqual([
        ['1', true, undefined],
        ['3', true, undefined],
        ['1', false, 'fenced'],
        ['2', true, undefined],
      ]);
    });

    it('a connection below the version this ownership began at is stale', async () => {
      const id = randomBytes(16);
      const first = await connect(id, hello(id), { version: 4n, flags: PP2_FLAG.REPLAYED });
      await first.bytes(36);
      const stale = await connect(id, reattach(id), { version: 3n }, Buffer.from('x'));
      expect(await stale.whenClosed()).toHaveLength(0);
      expect(node.stats.tcpStale).toBe(1);
    });

    it('CLOSE ends the session and the connection', async () => {
      const id = randomBytes(16);
      await (await connect(id, hello(id), { version: 1n })).bytes(36);
      expect(node.stats.sessions).toBe(1);
      const c = await connect(id, encodeJv1(PacketType.CLOSE, id), { version: 1n });
      await waitFor('the node to end its half', () => c.ended);
      expect(c.received).toHaveLength(0);
      expect(node.stats.sessions).toBe(0);
    });

    it('closes PROXY v2 LOCAL (health checks stay on UDP) and malformed preambles without a word', async () => {
      const id = randomBytes(16);
      const local = await Upstream.open(node.address);
      open.push(local);
      await local.write(pb().bytes(PP2_SIGNATURE).u8(0x20, 0x00).u16(0).build());
      expect(await local.whenClosed()).toHaveLength(0);
      expect(node.stats.tcpLocal).toBe(1);

      const cases: Buffer[] = [
        Buffer.from('GET / HTTP/1.1\r\n\r\n'),
        Buffer.concat([proxy(id, { version: 1n }), Buffer.from('not jv1 at all')]),
        Buffer.concat([proxy(id, { version: 1n }), pb().jv1(PacketType.HELLO, id, { version: 2 }).build()]),
        Buffer.concat([proxy(id, { version: 1n }), encodeRevoke(id, 9n)]), // never opens a stream
        pb().bytes(PP2_SIGNATURE).u8(0x21, 0x99).u16(0).build(), // bad family
        pb().jv1(PacketType.HELLO, new Uint8Array(16)).build(), // zero session id
      ];
      for (const bytes of cases) {
        const u = await Upstream.open(node.address);
        open.push(u);
        await u.write(bytes);
        expect(await u.whenClosed()).toHaveLength(0);
      }
      expect(node.stats.tcpMalformed).toBe(cases.length);
      expect(node.stats.sessions).toBe(0);
      expect(await records()).toEqual([]); // no session decision, no record
    });

    it('closes a connection that ends before its preamble is whole', async () => {
      const id = randomBytes(16);
      const u = await Upstream.open(node.address);
      open.push(u);
      await u.write(Buffer.concat([proxy(id, { version: 1n, flags: PP2_FLAG.UNBOUND_SOURCE, src: jumped }), reattach(id).subarray(0, 30)]));
      u.socket.end();
      expect(await u.whenClosed()).toHaveLength(0);
      expect(node.stats).toMatchObject({ tcpForged: 0, tcpBinds: 0, tcpOpen: 0 });
    });

    it('serves bare JV1 (encapsulation none) with TcpClientSession: no versions, no BIND', async () => {
      const s = await TcpClientSession.connect(node.address);
      try {
        expect((await s.hello()).equals(keyOf(s.id))).toBe(true);
        await s.write(Buffer.from('ping'));
        expect((await s.read(4)).toString()).toBe('ping');
        const r = await s.reattach();
        expect(r.bind).toBeUndefined();
        await s.write(Buffer.from('after reattach'));
        expect((await s.read(14)).toString()).toBe('after reattach');
        await s.end();
        expect(await s.readToEnd()).toHaveLength(0);
      } finally {
        await s.close();
      }
      const lines = await records();
      expect(lines.map((l) => [l.proto, l.type, l.version, l.seq, l.dst, l.accepted])).toEqual([
        ['tcp', 1, null, null, null, true],
        ['tcp', 2, null, null, null, true],
      ]);
    });

    it('records one line per connection with proto tcp, which the checker reads like packets', async () => {
      const id = randomBytes(16);
      const hex = sessionIdHex(id);
      await (await connect(id, hello(id), { version: 1n })).bytes(36);
      await (await connect(id, reattach(id), { version: 2n, flags: PP2_FLAG.UNBOUND_SOURCE, src: jumped })).bytes(20);
      const lines = await records();
      const d = transportKey(director);
      expect(lines.map(({ t, ...rest }) => (expect(t).toBeGreaterThan(0), rest))).toEqual([
        { node: NODE_ID, session: hex, version: '1', seq: '1', flags: 0, type: 1, accepted: true, dst: d, proto: 'tcp' },
        { node: NODE_ID, session: hex, version: '2', seq: '2', flags: 1, type: 2, accepted: true, dst: d, proto: 'tcp' },
      ]);
      expect(checkRecords(lines)).toMatchObject({ ok: true, sessions: 1, packets: 2, violations: [] });
    });
  });
}

describe('parseStreamPreamble (pure): the node-side preamble cut at every byte boundary', () => {
  const id = randomBytes(16);
  const src: Transport = { family: 4, address: '192.0.2.1', port: 1194 };
  const pp = encodePpv2({ transport: 'STREAM', src, dst: src, sessionId: id, version: 5n, owner: 'n', flags: 1, seq: 9n });
  const cases = [
    { description: 'PROXY v2 ‖ HELLO', bytes: Buffer.concat([pp, hello(id)]), type: PacketType.HELLO, proxied: true },
    { description: 'PROXY v2 ‖ DATA ‖ MAC', bytes: Buffer.concat([pp, reattach(id)]), type: PacketType.DATA, proxied: true },
    { description: 'bare DATA ‖ MAC', bytes: reattach(id), type: PacketType.DATA, proxied: false },
    { description: 'bare CLOSE', bytes: encodeJv1(PacketType.CLOSE, id), type: PacketType.CLOSE, proxied: false },
  ];
  it.each(cases)('$description', ({ bytes, type, proxied }) => {
    const stream = Buffer.concat([bytes, Buffer.from('stream')]);
    for (let k = 0; k < bytes.length; k++) {
      const r = parseStreamPreamble(stream.subarray(0, k));
      expect(r.kind, `cut at ${k}`).toBe('need');
      if (r.kind === 'need') expect(r.need).toBeGreaterThan(k);
    }
    const r = parseStreamPreamble(stream);
    expect(r.kind).toBe('ok');
    if (r.kind !== 'ok') return;
    expect(r).toMatchObject({ type, length: bytes.length });
    expect(Buffer.from(r.sessionId).equals(id)).toBe(true);
    expect(r.proxy === undefined).toBe(!proxied);
    if (proxied) expect(r.proxy).toMatchObject({ version: 5n, seq: 9n, flags: 1, owner: 'n', src });
    const at = proxied ? pp.length : 0;
    stream.fill(0); // header and MAC are copies: zeroing the stream buffer leaves them
    expect(Buffer.from(r.header).equals(bytes.subarray(at, at + 20))).toBe(true);
    if (type === PacketType.DATA) expect(Buffer.from(r.mac ?? []).equals(bytes.subarray(at + 20, at + 36))).toBe(true);
  });
  it('LOCAL, not-mine and malformed', () => {
    expect(parseStreamPreamble(pb().bytes(PP2_SIGNATURE).u8(0x20, 0x00).u16(0).build())).toEqual({ kind: 'local' });
    expect(parseStreamPreamble(Buffer.from('GET /'))).toEqual({ kind: 'not-mine' });
    expect(parseStreamPreamble(Buffer.concat([pp, Buffer.from('GET /')]))).toEqual({ kind: 'not-mine' });
    expect(parseStreamPreamble(Buffer.concat([pp, pb().jv1(0x09, id).build()]))).toEqual({ kind: 'malformed', reason: 'bad_type' });
    expect(parseStreamPreamble(pb().bytes(PP2_SIGNATURE).u8(0x31, 0x11).u16(0).build())).toEqual({ kind: 'malformed', reason: 'bad_header' });
  });
});

describe('ReferenceNode start', () => {
  it('fails when the TCP twin of a fixed port is taken, and holds no UDP port then', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    const node = new ReferenceNode({ id: 'n', listen: { family: 4, address: '127.0.0.1', port } });
    try {
      await expect(node.start()).rejects.toMatchObject({ code: 'EADDRINUSE' });
      const free = new ReferenceNode({ id: 'n2', listen: { family: 4, address: '127.0.0.1', port }, tcp: false });
      await free.start(); // the UDP port was given back
      await free.close();
    } finally {
      await node.close();
      blocker.close();
    }
  });
});

describe('TcpClientSession against a raw peer', () => {
  /** A TCP server that runs `serve` on each connection. */
  const serve = async (fn: (s: net.Socket) => void): Promise<{ address: Transport; close: () => void }> => {
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      fn(s);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    return { address: { family: 4, address: '127.0.0.1', port }, close: () => server.close() };
  };
  /** Calls `fn` with the first `n` bytes the connection sends. */
  const onBytes = (s: net.Socket, n: number, fn: (b: Buffer) => void): void => {
    let buf = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      if (buf.length < n) return;
      s.off('data', onData);
      fn(buf);
    };
    s.on('data', onData);
  };

  it('hello() throws ClientRejectedError with the reason and the whole text on a REJECT', async () => {
    const srv = await serve((s) => onBytes(s, 20, (b) => s.end(encodeReject(b.subarray(4, 20), RejectReason.NO_CAPACITY, 'full up') as Buffer)));
    const s = await TcpClientSession.connect(srv.address);
    try {
      await expect(s.hello()).rejects.toMatchObject({ name: 'ClientRejectedError', reason: RejectReason.NO_CAPACITY, text: 'full up' });
    } finally {
      await s.close();
      srv.close();
    }
  });

  it('reattach(): a REJECT throws ClientRejectedError; a closed connection StreamClosedError', async () => {
    let mode: 'reject' | 'close' = 'reject';
    const srv = await serve((s) =>
      onBytes(s, 36, (b) => (mode === 'reject' ? s.end(encodeReject(b.subarray(4, 20), RejectReason.UNKNOWN_SESSION) as Buffer) : s.destroy())),
    );
    const s = await TcpClientSession.connect(srv.address, { key: randomBytes(16) });
    try {
      await expect(s.reattach()).rejects.toMatchObject({ name: 'ClientRejectedError', reason: RejectReason.UNKNOWN_SESSION, text: '' });
      mode = 'close';
      await expect(s.reattach()).rejects.toBeInstanceOf(StreamClosedError);
      expect(s.reattaches).toBe(2);
    } finally {
      await s.close();
      srv.close();
    }
  });

  it('reattach() writes DATA header ‖ MAC ‖ probe and consumes a BIND and the echo, leaving the rest', async () => {
    const key = randomBytes(16);
    let seen: Buffer | undefined;
    const srv = await serve((s) =>
      onBytes(s, 37, (b) => {
        seen = b;
        const bind = encodeBind(b.subarray(4, 20), 3n, { family: 6, address: '2001:db8::7', port: 9 });
        s.write(Buffer.concat([bind, b.subarray(36), Buffer.from('tail')]));
      }),
    );
    const s = await TcpClientSession.connect(srv.address, { key });
    try {
      expect(await s.reattach()).toEqual({ bind: { version: 3n, transport: { family: 6, address: '2001:db8::7', port: 9 } } });
      expect(seen?.equals(Buffer.concat([sealPacket(key, encodeJv1(PacketType.DATA, s.id)), DEFAULT_REATTACH_PROBE]))).toBe(true);
      expect((await s.read(4)).toString()).toBe('tail');
      await expect(s.reattach(1000, Buffer.from('J'))).rejects.toThrow(RangeError);
    } finally {
      await s.close();
      srv.close();
    }
  });
});
