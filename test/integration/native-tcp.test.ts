// The optional native TCP splice pump (src/net/native/tcp_splice.c, handed sockets by tcp-pump.ts) over
// real loopback connections, IPv4 and IPv6: bytes both ways, bytes Node had already read, large
// transfers through a slow reader (backpressure), half-close in each direction, a peer's reset, close()
// and finish() from JS, pause/resume, and no descriptor left behind (/proc/self/fd). Skipped, saying
// why, when the addon did not build. Waits for conditions with a bound; never asserts on speed.
import { afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import { loadNativeTcp, loadNativeUdp, TcpDir, TcpEnd, TcpStat, type NativeTcpPump, type NativeUdpSocket } from '../../src/net/native/index.js';
import { handOver } from '../../src/net/native/tcp-pump.js';
import { waitFor } from '../helpers/wait.js';

const load = loadNativeTcp();
if (!load.ok) console.warn(`native-tcp tests skipped: ${load.reason}`);

const openFds = (): number => readdirSync('/proc/self/fd').length;

/** One test end of a connection: everything received is kept; end/close seen. */
class End {
  received: Buffer[] = [];
  n = 0;
  ended = false;
  closed = false;
  error: NodeJS.ErrnoException | null = null;
  constructor(readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.received.push(c);
      this.n += c.length;
    });
    sock.on('end', () => (this.ended = true));
    sock.on('close', () => (this.closed = true));
    sock.on('error', (e: NodeJS.ErrnoException) => (this.error = e));
  }
  get bytes(): Buffer {
    return Buffer.concat(this.received);
  }
  async until(n: number, what = `${n} bytes`): Promise<void> {
    await waitFor(`${what} (have ${this.n})`, () => this.n >= n || this.closed);
    expect(this.n).toBeGreaterThanOrEqual(n);
  }
}

interface Pumped {
  /** The test's client (connected to the "director"). */
  client: End;
  /** The test's node (the "director" connected to it). */
  node: End;
  pump: NativeTcpPump;
  ends: { code: number; errno: number; name: string }[];
}

describe.skipIf(!load.ok)('native TCP splice pump', () => {
  const binding = load.ok ? load.binding : (null as never);
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const f of cleanup.splice(0).reverse()) f();
  });

  /**
   * The test's client → [accepted socket] and [connected socket] → the test's node (paused, half-open
   * allowed): the director side's two sockets before any handover. The servers close at cleanup.
   */
  async function connected(family: 4 | 6 = 4): Promise<{ clientSock: net.Socket; accepted: net.Socket; upstream: net.Socket; nodeSock: net.Socket }> {
    const host = family === 6 ? '::1' : '127.0.0.1';
    const front = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    const back = net.createServer({ allowHalfOpen: true });
    for (const s of [front, back]) {
      s.listen(0, host);
      await once(s, 'listening');
      cleanup.push(() => s.close());
    }
    const acceptedP = once(front, 'connection') as Promise<[net.Socket]>;
    const clientSock = net.connect({ port: (front.address() as net.AddressInfo).port, host, allowHalfOpen: true });
    const [accepted] = await acceptedP;
    await once(clientSock, 'connect').catch(() => undefined);
    const nodeP = once(back, 'connection') as Promise<[net.Socket]>;
    const upstream = net.connect({ port: (back.address() as net.AddressInfo).port, host, allowHalfOpen: true });
    await once(upstream, 'connect');
    const [nodeSock] = await nodeP;
    return { clientSock, accepted, upstream, nodeSock };
  }

  /**
   * Two connections through a stand-in director: the test's client → [accepted socket] and
   * [connected socket] → the test's node; the two director-side sockets are handed to a pump.
   * `before` runs on the director's sockets before the handover (to leave bytes in Node's buffers).
   */
  async function pumped(family: 4 | 6 = 4, before?: (d: { accepted: net.Socket; upstream: net.Socket; node: net.Socket }) => Promise<void>, pending: { toUpstream?: Buffer; toClient?: Buffer } = {}): Promise<Pumped> {
    const { clientSock, accepted, upstream, nodeSock } = await connected(family);
    const client = new End(clientSock);
    const node = new End(nodeSock);
    cleanup.push(() => {
      clientSock.destroy();
      nodeSock.destroy();
    });
    await before?.({ accepted, upstream, node: nodeSock });
    const ends: Pumped['ends'] = [];
    const h = handOver(binding, accepted, upstream, pending, (code, errno, name) => ends.push({ code, errno, name }));
    expect(h.ok, h.ok ? '' : h.reason).toBe(true);
    if (!h.ok) throw new Error(h.reason);
    cleanup.push(() => h.pump.close());
    return { client, node, pump: h.pump, ends };
  }

  /** `size` random bytes each way at once through the pump; both sides get exactly what the other sent. */
  async function bothWays(p: Pumped, size: number): Promise<void> {
    const up = randomBytes(size);
    const down = randomBytes(size);
    await Promise.all([writeAll(p.client.sock, up), writeAll(p.node.sock, down)]);
    await p.node.until(size);
    await p.client.until(size);
    expect(p.node.bytes.equals(up)).toBe(true);
    expect(p.client.bytes.equals(down)).toBe(true);
  }

  /** Writes `data` honouring backpressure. */
  async function writeAll(s: net.Socket, data: Buffer): Promise<void> {
    for (let off = 0; off < data.length; off += 256 * 1024) {
      if (!s.write(data.subarray(off, Math.min(data.length, off + 256 * 1024)))) await once(s, 'drain');
    }
  }

  for (const family of [4, 6] as const) {
    it(`moves bytes both ways (IPv${family}) and counts them`, async () => {
      const p = await pumped(family);
      p.client.sock.write('hello node');
      p.node.sock.write('hello client!');
      await p.node.until(10);
      await p.client.until(13);
      expect(p.node.bytes.toString()).toBe('hello node');
      expect(p.client.bytes.toString()).toBe('hello client!');
      expect(p.pump.stats[TcpStat.IN_READ]).toBe(10);
      expect(p.pump.stats[TcpStat.IN_WRITTEN]).toBe(10);
      expect(p.pump.stats[TcpStat.OUT_READ]).toBe(13);
      expect(p.pump.stats[TcpStat.OUT_WRITTEN]).toBe(13);
      expect(p.ends).toEqual([]);
    });
  }

  it('steps over TCP urgent data (MSG_OOB) as Node streams do: the bytes after it flow, the connection does not stall', async () => {
    // A client that sends urgent data: Python's socket (Node's net cannot send MSG_OOB). It sends, then
    // waits for its stdin to close before closing.
    const front = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    const back = net.createServer({ allowHalfOpen: true });
    for (const s of [front, back]) {
      s.listen(0, '127.0.0.1');
      await once(s, 'listening');
      cleanup.push(() => s.close());
    }
    const acceptedP = once(front, 'connection') as Promise<[net.Socket]>;
    const py = spawn('python3', ['-c', `import socket, sys
s = socket.create_connection(("127.0.0.1", ${(front.address() as net.AddressInfo).port}))
s.sendall(b"abc"); s.send(b"!", socket.MSG_OOB); s.sendall(b"def")
sys.stdin.read(); s.close()`], { stdio: ['pipe', 'ignore', 'inherit'] });
    cleanup.push(() => py.kill('SIGKILL'));
    const [accepted] = await acceptedP;
    const nodeP = once(back, 'connection') as Promise<[net.Socket]>;
    const upstream = net.connect({ port: (back.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
    await once(upstream, 'connect');
    const [nodeSock] = await nodeP;
    cleanup.push(() => nodeSock.destroy());
    const node = new End(nodeSock);
    const h = handOver(binding, accepted, upstream, {}, () => undefined);
    expect(h.ok, h.ok ? '' : h.reason).toBe(true);
    if (!h.ok) return;
    cleanup.push(() => h.pump.close());
    await node.until(6);
    expect(node.bytes.toString()).toBe('abcdef');
    py.stdin!.end();
    await waitFor('the client\'s FIN passed on', () => node.ended || undefined);
  });

  it('a UdpSocket is never taken for a TcpPump, nor a TcpPump for a UdpSocket (objects of the other addon: TypeError, nothing read)', async () => {
    const udp = loadNativeUdp();
    if (!udp.ok) return; // the UDP addon did not build: nothing of it to confuse
    const p = await pumped();
    const u = new udp.binding.UdpSocket({ family: 4, address: '127.0.0.1', port: 0 }, () => undefined);
    cleanup.push(() => u.close());
    const udpClosed = Object.getOwnPropertyDescriptor(udp.binding.UdpSocket.prototype, 'closed')!.get!;
    const pumpClosed = Object.getOwnPropertyDescriptor(binding.TcpPump.prototype, 'closed')!.get!;
    expect(() => udpClosed.call(p.pump)).toThrow(/`this` is not a UdpSocket/);
    expect(() => pumpClosed.call(u)).toThrow(/`this` is not a TcpPump/);
    expect(() => udp.binding.UdpSocket.prototype.close.call(p.pump)).toThrow(TypeError);
    expect(() => u.flush(0, p.pump as unknown as NativeUdpSocket)).toThrow(/source must be a UdpSocket/);
    // Both still work.
    expect(p.pump.closed).toBe(false);
    expect(u.closed).toBe(false);
    p.client.sock.write('still here');
    await p.node.until(10);
  });

  it('writes the bytes it was handed, and those Node had read, before anything spliced', async () => {
    const p = await pumped(
      4,
      async ({ upstream, node }) => {
        node.write('early-from-node;');
        // Node reads it into the upstream socket's buffer (nobody consumes it there).
        await waitFor('Node to buffer the node\'s early bytes', () => upstream.readableLength >= 16);
      },
      { toUpstream: Buffer.from('[proxy header]'), toClient: Buffer.from('after-bind;') },
    );
    p.client.sock.write('client-bytes');
    p.node.sock.write('spliced');
    await p.client.until('after-bind;early-from-node;spliced'.length);
    await p.node.until('[proxy header]client-bytes'.length);
    expect(p.client.bytes.toString()).toBe('after-bind;early-from-node;spliced');
    expect(p.node.bytes.toString()).toBe('[proxy header]client-bytes');
  });

  it('64 MB each way at once through slow readers, checksummed (backpressure)', async () => {
    const p = await pumped(4);
    const size = 64 * 1024 * 1024;
    const up = randomBytes(size);
    const down = randomBytes(size);
    // Slow readers: both ends pause for a moment every 4 MB.
    for (const e of [p.client, p.node]) {
      let next = 4 * 1024 * 1024;
      e.sock.on('data', () => {
        if (e.n >= next) {
          next += 4 * 1024 * 1024;
          e.sock.pause();
          setImmediate(() => setImmediate(() => e.sock.resume()));
        }
      });
    }
    await Promise.all([writeAll(p.client.sock, up), writeAll(p.node.sock, down)]);
    await p.node.until(size);
    await p.client.until(size);
    expect(createHash('sha256').update(p.node.bytes).digest('hex')).toBe(createHash('sha256').update(up).digest('hex'));
    expect(createHash('sha256').update(p.client.bytes).digest('hex')).toBe(createHash('sha256').update(down).digest('hex'));
    expect(p.pump.stats[TcpStat.IN_WRITTEN]).toBe(size);
    expect(p.pump.stats[TcpStat.OUT_WRITTEN]).toBe(size);
  });

  it('works with one-page pipes (what an unprivileged user gets past fs.pipe-user-pages-soft): 8 MB each way', async () => {
    binding.setPipeSize(4096);
    binding.trimPipePool(); // new pipes from here on
    cleanup.push(() => {
      binding.setPipeSize(0);
      binding.trimPipePool();
    });
    const p = await pumped(4);
    const size = 8 * 1024 * 1024;
    await bothWays(p, size);
  });

  it('with no pipe to be had (setMaxPipes), a direction copies through memory instead: 8 MB each way intact, counted', async () => {
    binding.trimPipePool();
    const opened = binding.pipePool().open;
    // One pipe in all: at most one direction splices at a time, the other copies (recv, then send).
    binding.setMaxPipes(opened + 1);
    cleanup.push(() => binding.setMaxPipes(-1));
    const copies0 = binding.pipePool().copies;
    const p = await pumped(4);
    const size = 8 * 1024 * 1024;
    await bothWays(p, size);
    expect(p.pump.stats[TcpStat.IN_WRITTEN]).toBe(size);
    expect(p.pump.stats[TcpStat.OUT_WRITTEN]).toBe(size);
    expect(binding.pipePool().open).toBeLessThanOrEqual(opened + 1);
    expect(binding.pipePool().copies).toBeGreaterThan(copies0);
    expect(p.ends).toEqual([]);
  });

  it('with no pipe at all (setMaxPipes(0)), the pump still carries both ways and half-closes', async () => {
    binding.setMaxPipes(0);
    cleanup.push(() => binding.setMaxPipes(-1));
    binding.trimPipePool();
    const copies0 = binding.pipePool().copies;
    const p = await pumped(4);
    p.client.sock.write('hello over memory');
    await p.node.until(17);
    p.node.sock.end('bye');
    await waitFor('the client to see the FIN', () => p.client.ended);
    expect(p.node.bytes.toString()).toBe('hello over memory');
    expect(p.client.bytes.toString()).toBe('bye');
    expect(binding.pipePool()).toMatchObject({ pooled: 0, open: 0 });
    expect(binding.pipePool().copies).toBeGreaterThanOrEqual(copies0 + 2);
    p.client.sock.end();
    await waitFor('the pump to end', () => p.ends.length > 0);
    expect(p.ends).toEqual([{ code: TcpEnd.EOF, errno: 0, name: '' }]);
  });

  it('half-close from the client: the node gets a FIN, can still answer; then both end (EOF, once)', async () => {
    const p = await pumped(4);
    p.client.sock.end('last words');
    await waitFor('the node to see the FIN', () => p.node.ended);
    expect(p.node.bytes.toString()).toBe('last words');
    p.node.sock.write('reply after FIN');
    await p.client.until(15);
    expect(p.client.bytes.toString()).toBe('reply after FIN');
    p.node.sock.end();
    await waitFor('the client to see the FIN', () => p.client.ended);
    await waitFor('the pump to end', () => p.ends.length > 0);
    expect(p.ends).toEqual([{ code: TcpEnd.EOF, errno: 0, name: '' }]);
    expect(p.pump.closed).toBe(true);
    await waitFor('both test sockets to close', () => p.client.closed && p.node.closed);
  });

  it('half-close from the node: the client gets a FIN, can still send; then both end', async () => {
    const p = await pumped(6);
    p.node.sock.end('bye');
    await waitFor('the client to see the FIN', () => p.client.ended);
    expect(p.client.bytes.toString()).toBe('bye');
    p.client.sock.write('still talking');
    await p.node.until(13);
    p.client.sock.end();
    await waitFor('the pump to end', () => p.ends.length > 0);
    expect(p.ends[0]!.code).toBe(TcpEnd.EOF);
    await waitFor('the node to see the FIN', () => p.node.ended);
  });

  it('a peer\'s reset ends the pump with the error, once, and closes the other side', async () => {
    const p = await pumped(4);
    p.client.sock.write('x');
    await p.node.until(1);
    p.client.sock.resetAndDestroy();
    await waitFor('the pump to end', () => p.ends.length > 0);
    expect(p.ends).toHaveLength(1);
    expect(p.ends[0]!.code).toBe(TcpEnd.ERROR);
    expect(p.ends[0]!.name).toBe('ECONNRESET');
    await waitFor('the node\'s connection to close', () => p.node.ended || p.node.closed);
    expect(p.pump.closed).toBe(true);
  });

  it('close() from JS closes both connections and calls nothing', async () => {
    const p = await pumped(4);
    p.client.sock.write('abc');
    await p.node.until(3);
    p.pump.close();
    p.pump.close(); // idempotent
    expect(p.pump.closed).toBe(true);
    await waitFor('both ends to see the close', () => (p.client.ended || p.client.closed) && (p.node.ended || p.node.closed));
    expect(p.ends).toEqual([]);
  });

  it('finish(): drops the node, delivers what it sent, FINs the client, ends when the client closes', async () => {
    const p = await pumped(4);
    p.node.sock.write('final bytes from the node');
    await p.client.until(25);
    p.pump.finish();
    await waitFor('the node to see its connection closed', () => p.node.ended || p.node.closed);
    await waitFor('the client to see the FIN', () => p.client.ended);
    expect(p.client.bytes.toString()).toBe('final bytes from the node');
    expect(p.ends).toEqual([]);
    const readBefore = p.pump.stats[TcpStat.IN_READ];
    p.client.sock.write('ignored'); // read and discarded
    p.client.sock.end();
    await waitFor('the pump to end', () => p.ends.length > 0);
    expect(p.ends).toEqual([{ code: TcpEnd.FINISHED, errno: 0, name: '' }]);
    // Counted apart: bytes "in" are bytes toward the node, and these went nowhere.
    expect(p.pump.stats[TcpStat.IN_DISCARDED]).toBe(7);
    expect(p.pump.stats[TcpStat.IN_READ]).toBe(readBefore);
  });

  it('pause() stops reading the client while the other direction flows; resume() delivers everything', async () => {
    const p = await pumped(4);
    p.pump.pause(); // IN
    const held = randomBytes(1024 * 1024);
    await writeAll(p.client.sock, held);
    // Three round trips the other way: the pump handles events in order, and reads nothing from the client.
    for (let i = 1; i <= 3; i++) {
      p.node.sock.write(`tick${i}`);
      await p.client.until(5 * i);
    }
    expect(p.pump.stats[TcpStat.IN_READ]).toBe(0);
    expect(p.node.n).toBe(0);
    p.pump.resume();
    await p.node.until(held.length);
    expect(p.node.bytes.equals(held)).toBe(true);
    // And OUT can be paused the same way.
    p.pump.pause(TcpDir.OUT);
    p.node.sock.write('later');
    p.client.sock.write('ping');
    await p.node.until(held.length + 4);
    expect(p.pump.stats[TcpStat.OUT_READ]).toBe(15);
    p.pump.resume(TcpDir.OUT);
    await p.client.until(20);
    expect(p.client.bytes.toString().endsWith('later')).toBe(true);
  });

  it('leaves no descriptor behind (/proc/self/fd), whichever way 20 pumps end', async () => {
    binding.trimPipePool();
    const before = openFds();
    const list: Pumped[] = [];
    for (let i = 0; i < 20; i++) list.push(await pumped(i % 2 === 0 ? 4 : 6));
    for (const p of list) p.client.sock.write(randomBytes(100_000));
    for (const p of list) await p.node.until(100_000);
    expect(binding.pipePool().open).toBeGreaterThan(0);
    for (const [i, p] of list.entries()) {
      if (i % 4 === 0) p.pump.close();
      else if (i % 4 === 1) p.client.sock.resetAndDestroy();
      else if (i % 4 === 2) {
        p.client.sock.end();
        p.node.sock.end();
      } else p.pump.finish();
    }
    for (const [i, p] of list.entries()) if (i % 4 === 3) p.client.sock.end();
    await waitFor('every pump to close', () => list.every((p) => p.pump.closed));
    for (const f of cleanup.splice(0).reverse()) f();
    binding.trimPipePool();
    expect(binding.pipePool()).toMatchObject({ pooled: 0, open: 0 });
    await waitFor(`the descriptor count back to ${before} (now ${openFds()})`, () => openFds() <= before);
  });

  it('refuses what is not a pair of stream sockets, and leaves the sockets usable', async () => {
    expect(() => new binding.TcpPump(0, 0, null, null, () => {})).toThrow(/differ/);
    expect(() => new binding.TcpPump(-1, 3, null, null, () => {})).toThrow(/file descriptor/);
    // The same socket twice: refused by the pump, so handOver leaves it alone.
    const front = net.createServer();
    front.listen(0, '127.0.0.1');
    await once(front, 'listening');
    cleanup.push(() => front.close());
    const a = net.connect((front.address() as net.AddressInfo).port, '127.0.0.1');
    await once(a, 'connect');
    cleanup.push(() => a.destroy());
    const h = handOver(binding, a, a, {}, () => {});
    expect(h.ok).toBe(false);
    expect(a.destroyed).toBe(false);
  });

  it('refuses a socket with writes still queued in Node (write_pending): nothing taken, every byte still delivered', async () => {
    const { clientSock, accepted, upstream, nodeSock } = await connected();
    nodeSock.pause();
    cleanup.push(() => {
      for (const x of [clientSock, accepted, upstream, nodeSock]) x.destroy();
    });
    // The node reads nothing yet: a write bigger than the kernel's buffers stays partly queued in Node.
    const big = randomBytes(32 * 1024 * 1024);
    upstream.write(big);
    await waitFor('bytes queued in Node', () => upstream.writableLength > 0);
    const h = handOver(binding, accepted, upstream, {}, () => {});
    expect(h).toEqual({ ok: false, reason: 'write_pending' });
    expect(accepted.destroyed || upstream.destroyed).toBe(false);
    // Untouched: the node, reading now, gets every byte of it, in order.
    const got: Buffer[] = [];
    let n = 0;
    nodeSock.on('data', (c: Buffer) => {
      got.push(c);
      n += c.length;
    });
    nodeSock.resume();
    await waitFor('all bytes at the node', () => n >= big.length, { timeoutMs: 20_000 });
    expect(Buffer.concat(got).equals(big)).toBe(true);
  });
});
