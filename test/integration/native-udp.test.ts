// The optional native UDP addon (src/net/native) over real loopback sockets, IPv4 and IPv6: batch
// receive (bytes, lengths, source addresses), sends (addressed, connected, gathered from an rx slot),
// truncation, close, refused sends, and argument checking. Skipped, saying why, when the addon did not
// build. Waits for conditions with a bound; never asserts on speed.
import { afterEach, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Flag, loadNativeUdp, Meta, Stat, type NativeUdpSocket, type UdpSocketOptions } from '../../src/net/native/index.js';
import { UdpPeer } from '../helpers/udp.js';
import { waitFor } from '../helpers/wait.js';

const load = loadNativeUdp();
if (!load.ok) console.warn(`native-udp tests skipped: ${load.reason}`);

interface Got {
  bytes: Buffer;
  len: number;
  flags: number;
  family: number;
  port: number;
  addr: number[];
}

/** IPv4 u32 (as Meta.ADDR holds it) → dotted text. */
const v4text = (u: number): string => [u >>> 24, (u >>> 16) & 255, (u >>> 8) & 255, u & 255].join('.');

describe.skipIf(!load.ok)('native UDP addon', () => {
  const binding = load.ok ? load.binding : (null as never);
  const open: { close(): void }[] = [];
  afterEach(() => {
    for (const s of open.splice(0)) s.close();
  });

  /** A native socket whose batches are copied (test code may allocate) into `got`, with batch sizes. */
  function nativeSocket(opts: Partial<UdpSocketOptions> = {}): { sock: NativeUdpSocket; got: Got[]; batches: number[] } {
    const got: Got[] = [];
    const batches: number[] = [];
    const sock = new binding.UdpSocket({ family: 4, address: '127.0.0.1', port: 0, ...opts }, function (this: NativeUdpSocket, n: number) {
      batches.push(n);
      for (let i = 0; i < n; i++) {
        const m = i * Meta.INTS;
        const len = this.rxMeta[m + Meta.LEN] as number;
        got.push({
          bytes: Buffer.from(this.rx.slice(i * this.slotSize, i * this.slotSize + len)),
          len,
          flags: this.rxMeta[m + Meta.FLAGS] as number,
          family: this.rxMeta[m + Meta.FAMILY] as number,
          port: this.rxMeta[m + Meta.PORT] as number,
          addr: Array.from(this.rxMeta.subarray(m + Meta.ADDR, m + Meta.ADDR + 4), (x) => x >>> 0),
        });
      }
    });
    open.push(sock);
    return { sock, got, batches };
  }

  /** A native socket connected to a loopback port nobody listens on, once a send to it was refused (counted). */
  async function refusedSocket(): Promise<ReturnType<typeof nativeSocket> & { port: number }> {
    const gone = dgram.createSocket('udp4');
    await new Promise<void>((r) => gone.bind(0, '127.0.0.1', r));
    const port = gone.address().port;
    await new Promise<void>((r) => gone.close(() => r()));
    const n = nativeSocket({ connectAddress: '127.0.0.1', connectPort: port });
    await waitFor(
      'a refused send counted',
      () => {
        put(n.sock, 0, Buffer.from('anyone?'));
        n.sock.flush(1);
        return n.sock.stats[Stat.TX_ERRORS]! + n.sock.stats[Stat.RX_ERRORS]! > 0;
      },
      { timeoutMs: 5000 },
    );
    return { ...n, port };
  }

  async function peer(family: 4 | 6 = 4): Promise<UdpPeer> {
    const p = await UdpPeer.open(family);
    open.push(p);
    return p;
  }

  /** Writes `bytes` into tx slot i with a destination (or none: family 0). */
  function put(sock: NativeUdpSocket, i: number, bytes: Uint8Array, to?: { family: 4 | 6; port: number; addr: number[] }): void {
    sock.tx.set(bytes, i * sock.txSlotSize);
    const m = i * Meta.INTS;
    sock.txMeta[m + Meta.LEN] = bytes.length;
    sock.txMeta[m + Meta.FLAGS] = 0;
    sock.txMeta[m + Meta.FAMILY] = to?.family ?? 0;
    sock.txMeta[m + Meta.PORT] = to?.port ?? 0;
    for (let k = 0; k < 4; k++) sock.txMeta[m + Meta.ADDR + k] = to?.addr[k] ?? 0;
  }

  it('receives a burst in batches: bytes, lengths and source address and port of every datagram', async () => {
    const { sock, got, batches } = nativeSocket({ slots: 16 });
    const a = sock.address();
    expect(a.family).toBe(4);
    expect(a.address).toBe('127.0.0.1');
    expect(a.port).toBeGreaterThan(0);
    const p = await peer();
    const N = 200;
    for (let i = 0; i < N; i++) p.send(Buffer.from(`datagram ${i} `.padEnd(10 + (i % 50), 'x')), { family: 4, address: '127.0.0.1', port: a.port });
    await waitFor('200 datagrams through the native socket', () => got.length >= N);
    expect(got.length).toBe(N);
    for (let i = 0; i < N; i++) {
      const g = got[i] as Got;
      const want = `datagram ${i} `.padEnd(10 + (i % 50), 'x');
      expect(g.bytes.toString()).toBe(want);
      expect(g.len).toBe(want.length);
      expect(g.flags).toBe(0);
      expect(g.family).toBe(4);
      expect(g.port).toBe(p.address.port);
      expect(v4text(g.addr[0] as number)).toBe('127.0.0.1');
    }
    expect(Math.max(...batches)).toBeLessThanOrEqual(16);
    expect(batches.reduce((x, y) => x + y, 0)).toBe(N);
    expect(sock.stats[Stat.RX_DATAGRAMS]).toBe(N);
    expect(sock.stats[Stat.RX_BATCHES]).toBe(batches.length);
  });

  it('sends a batch to addressed destinations with one flush', async () => {
    const { sock } = nativeSocket();
    const p = await peer();
    const to = { family: 4 as const, port: p.address.port, addr: [0x7f000001, 0, 0, 0] };
    for (let i = 0; i < 10; i++) put(sock, i, Buffer.from(`reply ${i}`), to);
    expect(sock.flush(10)).toBe(10);
    await waitFor('10 datagrams at the peer', () => p.inbox.length >= 10);
    expect(p.inbox.map((m) => m.msg.toString())).toEqual(Array.from({ length: 10 }, (_, i) => `reply ${i}`));
    expect(p.inbox.every((m) => m.from.port === sock.address().port)).toBe(true);
    expect(sock.stats[Stat.TX_DATAGRAMS]).toBe(10);
    expect(sock.stats[Stat.TX_SYSCALLS]).toBe(1);
    expect(sock.flush(0)).toBe(0);
  });

  it('a connected socket sends without a destination and gathers rx bytes behind a tx header', async () => {
    const p = await peer();
    const front = nativeSocket();
    const up = nativeSocket({ connectAddress: '127.0.0.1', connectPort: p.address.port });
    // A client datagram arrives on `front`; it is relayed on `up` behind a 4-byte header, without a copy.
    const client = await peer();
    client.send(Buffer.from('payload-bytes'), { family: 4, address: '127.0.0.1', port: front.sock.address().port });
    await waitFor('the client datagram', () => front.got.length >= 1);
    const u = up.sock;
    u.tx.set(Buffer.from('HDR:'), 0);
    u.txMeta[Meta.LEN] = 4;
    u.txMeta[Meta.FLAGS] = 1 + 0; // rx slot 0 of the source
    u.txMeta[Meta.FAMILY] = 0; // connected
    expect(u.flush(1, front.sock)).toBe(1);
    const msg = await p.next();
    expect(msg.toString()).toBe('HDR:payload-bytes');
    // The peer answers the connected socket; its source is the peer.
    p.send(Buffer.from('answer'), { family: 4, address: '127.0.0.1', port: u.address().port });
    await waitFor('the answer on the connected socket', () => up.got.length >= 1);
    expect(up.got[0]?.bytes.toString()).toBe('answer');
    expect(up.got[0]?.port).toBe(p.address.port);
    // A gather slot without a source, or an rx slot out of range, is an error counted, not a send.
    u.txMeta[Meta.FLAGS] = 1;
    expect(u.flush(1)).toBe(0);
    u.txMeta[Meta.FLAGS] = u.slots + 1;
    expect(u.flush(1, front.sock)).toBe(0);
    expect(u.stats[Stat.TX_ERRORS]).toBe(2);
  });

  it('works over IPv6 ::1 (addresses as four words); an IPv6 socket is IPv6 only, as node:dgram\'s are', async () => {
    const { sock, got } = nativeSocket({ family: 6, address: '::1' });
    const a = sock.address();
    expect(a).toMatchObject({ family: 6, address: '::1' });
    const p = await peer(6);
    p.send(Buffer.from('over v6'), { family: 6, address: '::1', port: a.port });
    await waitFor('a datagram over ::1', () => got.length >= 1);
    const g = got[0] as Got;
    expect(g.family).toBe(6);
    expect(g.addr).toEqual([0, 0, 0, 1]);
    expect(g.port).toBe(p.address.port);
    expect(g.bytes.toString()).toBe('over v6');
    put(sock, 0, Buffer.from('back over v6'), { family: 6, port: g.port, addr: g.addr });
    expect(sock.flush(1)).toBe(1);
    expect((await p.next()).toString()).toBe('back over v6');

    // `[::]` and `0.0.0.0` on one port are two sockets (a config may list both); an IPv4 datagram reaches
    // the IPv4 one, never the IPv6 one as ::ffff:a.b.c.d; an IPv4 destination is not sent on the IPv6 one.
    const any6 = nativeSocket({ family: 6, address: '::' });
    const any4 = nativeSocket({ family: 4, address: '0.0.0.0', port: any6.sock.address().port });
    const p4 = await peer(4);
    p4.send(Buffer.from('to v4'), { family: 4, address: '127.0.0.1', port: any6.sock.address().port });
    await waitFor('the IPv4 datagram on the IPv4 socket', () => any4.got.length >= 1);
    expect(any4.got[0]!.bytes.toString()).toBe('to v4');
    expect(any6.got).toHaveLength(0);
    put(any6.sock, 0, Buffer.from('mapped'), { family: 4, port: p4.address.port, addr: [0x7f000001, 0, 0, 0] });
    expect(any6.sock.flush(1)).toBe(0);
    expect(any6.sock.stats[Stat.TX_ERRORS]).toBe(1);
  });

  it('marks a datagram larger than its slot as truncated and skips an oversize tx slot', async () => {
    const { sock, got } = nativeSocket({ slotSize: 64, slots: 4 });
    const p = await peer();
    p.send(Buffer.alloc(100, 7), { family: 4, address: '127.0.0.1', port: sock.address().port });
    p.send(Buffer.alloc(64, 8), { family: 4, address: '127.0.0.1', port: sock.address().port });
    await waitFor('two datagrams', () => got.length >= 2);
    expect(got[0]).toMatchObject({ len: 64, flags: Flag.TRUNCATED });
    expect(got[0]?.bytes.equals(Buffer.alloc(64, 7))).toBe(true);
    expect(got[1]).toMatchObject({ len: 64, flags: 0 });
    expect(sock.stats[Stat.RX_TRUNCATED]).toBe(1);

    put(sock, 0, Buffer.from('ok-1'), { family: 4, port: p.address.port, addr: [0x7f000001, 0, 0, 0] });
    put(sock, 1, Buffer.from('too long'), { family: 4, port: p.address.port, addr: [0x7f000001, 0, 0, 0] });
    sock.txMeta[1 * Meta.INTS + Meta.LEN] = 65; // more than the slot
    put(sock, 2, Buffer.from('wrong family'), { family: 6, port: p.address.port, addr: [0, 0, 0, 1] });
    put(sock, 3, Buffer.from('ok-2'), { family: 4, port: p.address.port, addr: [0x7f000001, 0, 0, 0] });
    expect(sock.flush(4)).toBe(2);
    expect(sock.stats[Stat.TX_ERRORS]).toBe(2);
    await waitFor('the two good datagrams', () => p.inbox.length >= 2);
    expect(p.inbox.map((m) => m.msg.toString())).toEqual(['ok-1', 'ok-2']);
  });

  it('tx slots of their own size (txSlotSize): a header plus a body as large as an rx slot fits; past it, skipped', async () => {
    const { sock, got } = nativeSocket({ slotSize: 64, txSlotSize: 128, slots: 4 });
    expect(sock.slotSize).toBe(64);
    expect(sock.txSlotSize).toBe(128);
    expect(sock.tx.length).toBe(4 * 128);
    expect(sock.rx.length).toBe(4 * 64);
    const p = await peer();
    const to = { family: 4 as const, port: p.address.port, addr: [0x7f000001, 0, 0, 0] };
    put(sock, 0, Buffer.alloc(128, 1), to); // a whole tx slot: twice an rx slot
    put(sock, 1, Buffer.alloc(120, 2), to); // at 128, not at 64
    put(sock, 2, Buffer.alloc(8, 3), to);
    sock.txMeta[2 * Meta.INTS + Meta.LEN] = 129; // past its slot
    expect(sock.flush(3)).toBe(2);
    expect(sock.stats[Stat.TX_ERRORS]).toBe(1);
    await waitFor('the two datagrams', () => p.inbox.length >= 2);
    expect(p.inbox[0]!.msg.equals(Buffer.alloc(128, 1))).toBe(true);
    expect(p.inbox[1]!.msg.equals(Buffer.alloc(120, 2))).toBe(true);
    // Receiving still stops at slotSize.
    p.send(Buffer.alloc(100, 9), { family: 4, address: '127.0.0.1', port: sock.address().port });
    await waitFor('the datagram', () => got.length >= 1);
    expect(got[0]).toMatchObject({ len: 64, flags: Flag.TRUNCATED });
  });

  it('pktinfo: each datagram\'s local address in LOCAL (IPv4, IPv6); a send naming its source address in LOCAL goes out; without pktinfo LOCAL stays 0', async () => {
    for (const [family, address, words] of [
      [4, '127.0.0.1', [0x7f000001, 0, 0, 0]],
      [6, '::1', [0, 0, 0, 1]],
    ] as const) {
      const { sock, got } = nativeSocket({ family, address, pktinfo: true, slots: 4 });
      const plain = nativeSocket({ family, address, slots: 4 });
      const p = await peer(family);
      p.send(Buffer.from('to-pktinfo'), { family, address, port: sock.address().port });
      p.send(Buffer.from('to-plain'), { family, address, port: plain.sock.address().port });
      await waitFor('both datagrams', () => got.length >= 1 && plain.got.length >= 1);
      expect(Array.from(sock.rxMeta.subarray(Meta.LOCAL, Meta.LOCAL + 4), (x) => x >>> 0)).toEqual(words);
      expect(Array.from(plain.sock.rxMeta.subarray(Meta.LOCAL, Meta.LOCAL + 4))).toEqual([0, 0, 0, 0]);
      // A reply from the address the datagram was sent to (LOCAL), and one leaving it to the kernel (0).
      const to = { family, port: p.address.port, addr: family === 4 ? [0x7f000001, 0, 0, 0] : [0, 0, 0, 1] };
      put(sock, 0, Buffer.from('from-local'), to);
      sock.txMeta.set(words.map((w) => w | 0), Meta.LOCAL);
      put(sock, 1, Buffer.from('from-any'), to);
      sock.txMeta.fill(0, Meta.INTS + Meta.LOCAL, Meta.INTS + Meta.LOCAL + 4);
      expect(sock.flush(2)).toBe(2);
      await waitFor('the two replies', () => p.inbox.length >= 2);
      expect(p.inbox.map((m) => [m.msg.toString(), m.from.address])).toEqual([
        ['from-local', address],
        ['from-any', address],
      ]);
    }
    const U = binding.UdpSocket as unknown as new (o: unknown, f: unknown) => unknown;
    expect(() => new U({ family: 4, address: '127.0.0.1', port: 0, pktinfo: 'yes' }, () => {})).toThrow(/options.pktinfo must be a boolean/);
  });

  it('counts a send refused by the peer (ICMP port unreachable) instead of throwing', async () => {
    const { sock } = await refusedSocket();
    expect(sock.stats[Stat.LAST_ERRNO]).toBe(111); // ECONNREFUSED
    expect(sock.closed).toBe(false);
  });

  it('reads on after a refused send: the peer back on its port is heard again (a node restarted)', async () => {
    // Sent while nobody listens: the ICMP port unreachable leaves an error pending on the socket.
    const { sock, got, port } = await refusedSocket();
    // Back on the same port: what it sends reaches the socket, and what the socket sends reaches it.
    const back = dgram.createSocket('udp4');
    open.push({ close: () => back.close() });
    const heard: Buffer[] = [];
    back.on('message', (m) => heard.push(m));
    await new Promise<void>((r) => back.bind(port, '127.0.0.1', r));
    await waitFor(
      'the restarted peer heard, and heard from',
      () => {
        back.send(Buffer.from('back'), sock.address().port, '127.0.0.1');
        put(sock, 0, Buffer.from('hello again'));
        sock.flush(1);
        return got.some((g) => g.bytes.toString() === 'back') && heard.some((m) => m.toString() === 'hello again');
      },
      { timeoutMs: 5000, intervalMs: 50 },
    );
    expect(sock.closed).toBe(false);
  });

  it('closes cleanly: idempotent, the port is free at once, no batch after close, even from inside a batch', async () => {
    const { sock, got } = nativeSocket();
    const port = sock.address().port;
    sock.close();
    sock.close();
    expect(sock.closed).toBe(true);
    expect(() => sock.flush(0)).toThrow(/closed/);
    expect(() => sock.address()).toThrow(/closed/);
    sock.ref(); // no-ops on a closed socket
    sock.unref();
    const again = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      again.once('error', reject);
      again.bind(port, '127.0.0.1', resolve);
    });
    again.close();
    expect(got.length).toBe(0);

    // close() inside the batch callback: the rest of the queue is never delivered.
    let calls = 0;
    const inner = new binding.UdpSocket({ family: 4, address: '127.0.0.1', port: 0, slots: 1 }, function (this: NativeUdpSocket) {
      calls++;
      this.close();
    });
    open.push(inner);
    const p = await peer();
    for (let i = 0; i < 5; i++) p.send(Buffer.from('x'), { family: 4, address: '127.0.0.1', port: inner.address().port });
    await waitFor('the first batch', () => calls >= 1);
    // Another socket's full round trip proves the loop went on turning after the close.
    const probe = nativeSocket();
    p.send(Buffer.from('later'), { family: 4, address: '127.0.0.1', port: probe.sock.address().port });
    await waitFor('a later datagram elsewhere', () => probe.got.length >= 1);
    expect(calls).toBe(1);
    expect(inner.closed).toBe(true);

    // Open and close many: no descriptor is left behind.
    const fds = (): number => readdirSync('/proc/self/fd').length;
    const before = fds();
    for (let i = 0; i < 300; i++) new binding.UdpSocket({ family: i % 2 === 0 ? 4 : 6, address: i % 2 === 0 ? '127.0.0.1' : '::1', port: 0, slots: 8 }, () => undefined).close();
    expect(fds()).toBe(before);
  });

  it('a thread ending with a socket open exits cleanly; an exception thrown by onBatch is an uncaught exception', async () => {
    const path = JSON.stringify(load.ok ? load.path : '');
    /** `p`, or a failure naming the step that did not happen within `ms`. */
    const within = <T>(p: Promise<T>, step: string, ms = 20_000): Promise<T> =>
      Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`not within ${ms} ms: ${step}`)), ms).unref())]);
    // A worker that leaves its socket open and unrefs it: the env cleanup hook closes it as the thread ends.
    const leaver = new Worker(
      `const { UdpSocket } = require(${path});
       const s = new UdpSocket({ family: 4, address: '127.0.0.1', port: 0 }, () => {});
       require('node:worker_threads').parentPort.postMessage(s.address().port);
       s.unref();`,
      { eval: true },
    );
    const exited = new Promise<[number]>((resolve) => leaver.once('exit', (c: number) => resolve([c])));
    const [port] = (await within(once(leaver, 'message'), 'the leaving worker reports its port')) as [number];
    const [code] = (await within(exited, 'the leaving worker exits')) as [number];
    expect(code).toBe(0);
    const again = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      again.once('error', reject);
      again.bind(port, '127.0.0.1', resolve); // the thread's socket was closed
    });
    again.close();

    // A callback that throws: the error reaches the thread's uncaught-exception path (here: 'error').
    const thrower = new Worker(
      `const { UdpSocket } = require(${path});
       const s = new UdpSocket({ family: 4, address: '127.0.0.1', port: 0 }, () => { throw new Error('boom from onBatch'); });
       require('node:worker_threads').parentPort.postMessage(s.address().port);`,
      { eval: true },
    );
    const errored = once(thrower, 'error');
    // (not events.once: it rejects when 'error' is emitted first, as it is here)
    const threwExit = new Promise<unknown>((resolve) => thrower.once('exit', resolve));
    const [tport] = (await within(once(thrower, 'message'), 'the throwing worker reports its port')) as [number];
    const p = await peer();
    // Sent again until the worker's callback has run (a datagram is never promised to arrive).
    const resend = setInterval(() => p.send(Buffer.from('x'), { family: 4, address: '127.0.0.1', port: tport }), 200);
    p.send(Buffer.from('x'), { family: 4, address: '127.0.0.1', port: tport });
    try {
      const [err] = (await within(errored, "the throwing worker's error")) as [Error];
      expect(err.message).toBe('boom from onBatch');
    } finally {
      clearInterval(resend);
    }
    await within(threwExit, 'the throwing worker exits');
  });

  describe('segmentation offload (gso)', () => {
    const LO4 = [0x7f000001, 0, 0, 0];
    /** `n` datagrams of `size` bytes, each unlike the others (its index in the first two bytes). */
    const datagrams = (n: number, size: number, tag: number): Buffer[] =>
      Array.from({ length: n }, (_, i) => {
        const b = Buffer.alloc(size, tag);
        if (size >= 2) b.writeUInt16BE(i, 0);
        return b;
      });

    it('sends each run to one destination and of one size as one message; every datagram arrives, in order, unchanged', async () => {
      const { sock } = nativeSocket({ gso: true });
      const a = await peer();
      const b = await peer();
      const toA = { family: 4 as const, port: a.address.port, addr: LO4 };
      const toB = { family: 4 as const, port: b.address.port, addr: LO4 };
      const runA = datagrams(5, 40, 1); // one message
      const runB = datagrams(3, 40, 2); // one message (another destination)
      const tailA = [Buffer.alloc(40, 3), Buffer.alloc(17, 4)]; // one message: a shorter datagram may end a run
      const afterShort = Buffer.alloc(40, 5); // a message of its own: nothing joins after a shorter one
      const empty = Buffer.alloc(0); // an empty datagram is never part of a run
      const plan: { bytes: Buffer; to: typeof toA }[] = [
        ...runA.map((bytes) => ({ bytes, to: toA })),
        ...runB.map((bytes) => ({ bytes, to: toB })),
        ...tailA.map((bytes) => ({ bytes, to: toA })),
        { bytes: afterShort, to: toA },
        { bytes: empty, to: toA },
      ];
      plan.forEach((d, i) => put(sock, i, d.bytes, d.to));
      // A bad slot inside a run is skipped and the run goes on around it.
      put(sock, plan.length, Buffer.alloc(40, 9), toB);
      put(sock, plan.length + 1, Buffer.alloc(40, 9), { family: 6, port: b.address.port, addr: [0, 0, 0, 1] }); // not on an IPv4 socket
      put(sock, plan.length + 2, Buffer.alloc(40, 10), toB);
      expect(sock.flush(plan.length + 3)).toBe(plan.length + 2);
      const forA = [...runA, ...tailA, afterShort, empty];
      const forB = [...runB, Buffer.alloc(40, 9), Buffer.alloc(40, 10)];
      await waitFor('every datagram at both peers', () => a.inbox.length >= forA.length && b.inbox.length >= forB.length);
      expect(a.inbox.map((m) => m.msg.toString('hex'))).toEqual(forA.map((x) => x.toString('hex')));
      expect(b.inbox.map((m) => m.msg.toString('hex'))).toEqual(forB.map((x) => x.toString('hex')));
      expect(a.inbox.every((m) => m.from.port === sock.address().port)).toBe(true);
      // Messages: A×5, B×3, A×2, A, A (empty), B×2 (around the bad slot): four carry several datagrams.
      expect(sock.stats[Stat.TX_GSO_SENDS]).toBe(4);
      expect(sock.stats[Stat.TX_GSO_DATAGRAMS]).toBe(5 + 3 + 2 + 2);
      expect(sock.stats[Stat.TX_DATAGRAMS]).toBe(plan.length + 2);
      expect(sock.stats[Stat.TX_ERRORS]).toBe(1);
      expect(sock.stats[Stat.TX_SYSCALLS]).toBe(1);
      expect(sock.stats[Stat.TX_GSO_FALLBACKS]).toBe(0);
    });

    it('cuts runs at 64 datagrams and at 65,000 bytes', async () => {
      const p = await peer();
      const { sock } = nativeSocket({ gso: true, slots: 128, connectAddress: '127.0.0.1', connectPort: p.address.port });
      const small = datagrams(70, 200, 1); // 64 + 6
      small.forEach((d, i) => put(sock, i, d));
      expect(sock.flush(small.length)).toBe(small.length);
      await waitFor('70 datagrams', () => p.inbox.length >= small.length);
      expect(p.inbox.splice(0).map((m) => m.msg.toString('hex'))).toEqual(small.map((x) => x.toString('hex')));
      expect(sock.stats[Stat.TX_GSO_SENDS]).toBe(2);
      const large = datagrams(60, 1200, 2); // 54 (65,000 bytes at most) + 6
      large.forEach((d, i) => put(sock, i, d));
      expect(sock.flush(large.length)).toBe(large.length);
      await waitFor('60 datagrams', () => p.inbox.length >= large.length);
      expect(p.inbox.map((m) => m.msg.toString('hex'))).toEqual(large.map((x) => x.toString('hex')));
      expect(sock.stats[Stat.TX_GSO_SENDS]).toBe(4);
      expect(sock.stats[Stat.TX_GSO_DATAGRAMS]).toBe(130);
    });

    it('groups gathered datagrams (a header from tx, the payload from an rx slot) and works over IPv6', async () => {
      const p = await peer(6);
      const front = nativeSocket({ family: 6, address: '::1' });
      const up = nativeSocket({ family: 6, address: '::1', gso: true, connectAddress: '::1', connectPort: p.address.port });
      const client = await peer(6);
      const payloads = ['payload-0', 'payload-1', 'payload-2'];
      for (const x of payloads) client.send(Buffer.from(x), { family: 6, address: '::1', port: front.sock.address().port });
      await waitFor('three client datagrams', () => front.got.length >= 3);
      // The three arrived in one batch or in several; the last batch's slots are the ones to gather.
      const last = front.batches.at(-1) as number;
      expect(last).toBeGreaterThan(0);
      const u = up.sock;
      for (let i = 0; i < last; i++) {
        u.tx.set(Buffer.from('HDR:'), i * u.slotSize);
        u.txMeta[i * Meta.INTS + Meta.LEN] = 4;
        u.txMeta[i * Meta.INTS + Meta.FLAGS] = 1 + i;
        u.txMeta[i * Meta.INTS + Meta.FAMILY] = 0;
      }
      expect(u.flush(last, front.sock)).toBe(last);
      const want = payloads.slice(3 - last).map((x) => `HDR:${x}`);
      await waitFor('the relayed datagrams', () => p.inbox.length >= last);
      expect(p.inbox.map((m) => m.msg.toString())).toEqual(want);
      expect(u.stats[Stat.TX_GSO_SENDS]).toBe(last > 1 ? 1 : 0);
    });

    it('a run the kernel refuses goes again one datagram at a time (nothing lost), and that size is not grouped again', async () => {
      const p = await peer();
      // SO_NO_CHECK: the kernel refuses every GSO message on this socket (EINVAL).
      const { sock } = nativeSocket({ gso: true, testNoChecksum: true, connectAddress: '127.0.0.1', connectPort: p.address.port });
      const first = datagrams(5, 100, 1);
      first.forEach((d, i) => put(sock, i, d));
      expect(sock.flush(5)).toBe(5);
      expect(sock.stats[Stat.TX_GSO_FALLBACKS]).toBe(1);
      expect(sock.stats[Stat.TX_GSO_SENDS]).toBe(0);
      expect(sock.stats[Stat.TX_ERRORS]).toBe(0);
      // Datagrams of 100 bytes and more now go one by one without a try; smaller ones are grouped (and refused) again.
      const second = datagrams(4, 100, 2);
      second.forEach((d, i) => put(sock, i, d));
      expect(sock.flush(4)).toBe(4);
      expect(sock.stats[Stat.TX_GSO_FALLBACKS]).toBe(1);
      const third = datagrams(3, 60, 3);
      third.forEach((d, i) => put(sock, i, d));
      expect(sock.flush(3)).toBe(3);
      expect(sock.stats[Stat.TX_GSO_FALLBACKS]).toBe(2);
      const all = [...first, ...second, ...third];
      await waitFor('every datagram', () => p.inbox.length >= all.length);
      expect(p.inbox.map((m) => m.msg.toString('hex'))).toEqual(all.map((x) => x.toString('hex')));
      expect(sock.stats[Stat.TX_DATAGRAMS]).toBe(all.length);
    });

    it('a peer error (a stale ICMP port unreachable) neither turns GSO off nor loses the datagrams sent after it', async () => {
      const gone = dgram.createSocket('udp4');
      await new Promise<void>((r) => gone.bind(0, '127.0.0.1', r));
      const port = gone.address().port;
      await new Promise<void>((r) => gone.close(() => r()));
      const { sock } = nativeSocket({ gso: true, connectAddress: '127.0.0.1', connectPort: port });
      // Nobody there: the first message's ICMP error is pending when the second goes (the same turn).
      datagrams(4, 100, 1).forEach((d, i) => put(sock, i, d));
      sock.flush(4);
      datagrams(4, 100, 2).forEach((d, i) => put(sock, i, d));
      sock.flush(4);
      expect(sock.stats[Stat.LAST_ERRNO]).toBe(111); // ECONNREFUSED, met by a send
      expect(sock.stats[Stat.TX_GSO_FALLBACKS]).toBe(0);
      // Back on its port: runs still go as one message each, and arrive.
      const back = dgram.createSocket('udp4');
      open.push({ close: () => back.close() });
      const heard: Buffer[] = [];
      back.on('message', (m) => heard.push(m));
      await new Promise<void>((r) => back.bind(port, '127.0.0.1', r));
      const gsoBefore = sock.stats[Stat.TX_GSO_SENDS]!;
      const run = datagrams(4, 100, 3);
      run.forEach((d, i) => put(sock, i, d));
      expect(sock.flush(4)).toBe(4);
      expect(sock.stats[Stat.TX_GSO_SENDS]).toBe(gsoBefore + 1);
      await waitFor('the run', () => heard.length >= 4);
      expect(heard.map((m) => m.toString('hex'))).toEqual(run.map((x) => x.toString('hex')));
    });

    it('without gso (the default) every datagram is a message of its own', async () => {
      const p = await peer();
      const { sock } = nativeSocket({ connectAddress: '127.0.0.1', connectPort: p.address.port });
      const run = datagrams(6, 50, 1);
      run.forEach((d, i) => put(sock, i, d));
      expect(sock.flush(6)).toBe(6);
      await waitFor('six datagrams', () => p.inbox.length >= 6);
      expect(p.inbox.map((m) => m.msg.toString('hex'))).toEqual(run.map((x) => x.toString('hex')));
      expect(sock.stats[Stat.TX_GSO_SENDS]).toBe(0);
      expect(sock.stats[Stat.TX_GSO_DATAGRAMS]).toBe(0);
    });
  });

  it('reports bad arguments as TypeError / RangeError with a clear message, and a busy port as EADDRINUSE', () => {
    const U = binding.UdpSocket as unknown as new (...args: unknown[]) => NativeUdpSocket;
    const ok = { family: 4, address: '127.0.0.1', port: 0 };
    const noop = (): void => undefined;
    expect(() => (U as unknown as (...a: unknown[]) => unknown)(ok, noop)).toThrow(TypeError);
    expect(() => new U()).toThrow(/options must be an object/);
    expect(() => new U(ok)).toThrow(/onBatch must be a function/);
    expect(() => new U({ ...ok, family: 5 }, noop)).toThrow(/family must be 4 or 6/);
    expect(() => new U({ ...ok, family: '4' }, noop)).toThrow(TypeError);
    expect(() => new U({ ...ok, address: 'not-an-ip' }, noop)).toThrow(/not an IPv4 address/);
    expect(() => new U({ ...ok, address: '::1' }, noop)).toThrow(TypeError);
    expect(() => new U({ ...ok, address: 7 }, noop)).toThrow(/options.address must be an IP address string/);
    expect(() => new U({ family: 4, address: '127.0.0.1' }, noop)).toThrow(/port is required/);
    expect(() => new U({ ...ok, port: 70000 }, noop)).toThrow(RangeError);
    expect(() => new U({ ...ok, port: 1.5 }, noop)).toThrow(/integer from 0 to 65535/);
    expect(() => new U({ ...ok, slots: 0 }, noop)).toThrow(RangeError);
    expect(() => new U({ ...ok, slotSize: 100 }, noop)).toThrow(/slotSize must be a multiple of 8/);
    expect(() => new U({ ...ok, txSlotSize: 100 }, noop)).toThrow(/txSlotSize must be a multiple of 8/);
    expect(() => new U({ ...ok, txSlotSize: 32 }, noop)).toThrow(RangeError);
    expect(() => new U({ ...ok, connectAddress: '127.0.0.1' }, noop)).toThrow(/go together/);
    expect(() => new U({ ...ok, gso: 'yes' }, noop)).toThrow(/options.gso must be a boolean/);

    const { sock } = nativeSocket();
    expect(() => sock.flush('1' as unknown as number)).toThrow(TypeError);
    expect(() => sock.flush(-1)).toThrow(RangeError);
    expect(() => sock.flush(sock.slots + 1)).toThrow(/from 0 to 64/);
    expect(() => sock.flush(1, {} as NativeUdpSocket)).toThrow(/source must be a UdpSocket/);
    // V8's own receiver check (the methods carry the class signature) stops a foreign `this`.
    expect(() => sock.flush.call({}, 0)).toThrow(TypeError);
    let busy: unknown;
    try {
      nativeSocket({ port: sock.address().port });
    } catch (err) {
      busy = err;
    }
    expect(busy).toMatchObject({ code: 'EADDRINUSE', syscall: 'bind' });
  });
});

describe('native UDP addon loader', () => {
  it('never throws: a missing or foreign file is a reason, not an exception', () => {
    const missing = loadNativeUdp('/nonexistent/anchor_udp.node');
    expect(missing.ok).toBe(false);
    expect(!missing.ok && missing.reason).toMatch(/\/nonexistent\/anchor_udp\.node does not exist/);
    const foreign = loadNativeUdp(fileURLToPath(new URL('../../package.json', import.meta.url)));
    expect(foreign.ok).toBe(false);
    expect(!foreign.ok && foreign.reason).toMatch(/not the addon this loader expects/);
  });
});
