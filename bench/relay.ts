// The minimal Node UDP relay of the peers bench: the least any Node UDP proxy in front of JV1 nodes must
// do, as Node's own floor. Per client datagram: check the JV1 magic, read the 16-byte session id (one
// latin1 string), one Map lookup, one send on the backend's connected socket. Per backend datagram: the
// same read and lookup, one send to the session's client address. A new session (a HELLO with an id not
// in the map) is pinned to a backend by its id bytes; nothing else (no admission, no table bound beyond
// MAX_SESSIONS, no expiry, no metrics, no logging).
//
// By default the backend gets the client's JV1 datagram unmodified (no PROXY v2 header: less work than
// Anchor, which writes one per datagram). With --ppv2 every datagram is sent behind a PROXY v2 header
// built once per session and cached (the same address block and TLVs as Anchor's, sequence number
// frozen at 1), as a two-buffer gather send: the cost of carrying the header without maintaining it.
//
// With --native the same work runs over the native batched-UDP addon (src/net/native) instead of
// node:dgram: one recvmmsg and one JS call per batch of up to 64 datagrams; per datagram the magic and
// the 16-byte id are read from the receive slab (the same latin1 string, the same Map lookup), and one
// metadata slot of the other socket's send slab is written (destination, and "send the bytes of rx slot
// i": a gather, no copy); one sendmmsg per socket per batch, with segmentation offload as Anchor's
// (runs to one destination and of one size as one UDP_SEGMENT message). --native --ppv2: the session's cached
// PROXY v2 header is copied into the tx slot and the client's bytes gathered behind it.
//
//   node dist/bench/relay.js --listen 127.0.0.1:PORT --backends 127.0.0.1:A,127.0.0.1:B [--ppv2] [--native]
import dgram from 'node:dgram';
import { once } from 'node:events';
import { createPpv2Prefix, ppv2HeaderLength, ppv2OwnerBytes, writePpv2 } from '../src/codec/ppv2.js';
import { loadNativeUdp, Meta, Stat, type NativeUdpSocket } from '../src/net/native/index.js';

const MAX_SESSIONS = 2_000_000;
const RECV_BUFFER = 4 * 1024 * 1024;
const SEND_BUFFER = 1024 * 1024;

interface Session {
  readonly backend: number;
  address: string;
  port: number;
  /** --ppv2: the PROXY v2 header for this session, built once. */
  header: Buffer | null;
}

function hostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  const host = s.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(s.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`bad HOST:PORT: ${s}`);
  if (!/^127\./.test(host) && host !== '::1') throw new Error(`loopback only: ${s}`);
  return { host, port };
}

/** A session of the --native relay: the client's IPv4 address as a u32 and its port. */
interface NativeSession {
  readonly backend: number;
  addr: number;
  port: number;
  /** --ppv2: the PROXY v2 header for this session, built once (for the client transport it began with). */
  readonly header: Buffer | null;
}

/** --native: the same relay over the batched-UDP addon (IPv4 only, like the default relay). */
function mainNative(listen: { host: string; port: number }, backends: { host: string; port: number }[], ppv2: boolean): void {
  const load = loadNativeUdp();
  if (!load.ok) {
    console.error(`relay: --native: the native UDP addon is not available: ${load.reason}`);
    process.exit(2);
  }
  const { UdpSocket } = load.binding;
  const sessions = new Map<string, NativeSession>();
  const n = backends.length;
  const counts = new Int32Array(n);
  const I = Meta.INTS;
  const dst = { family: 4 as const, address: listen.host, port: listen.port };
  const owners = backends.map((_, i) => ppv2OwnerBytes(`node-${i}`));

  /** A Buffer over a socket's receive slab (made once per socket, for latin1 reads of the id). */
  const slabBuffer = (s: NativeUdpSocket): Buffer => Buffer.from(s.rx.buffer, s.rx.byteOffset, s.rx.byteLength);

  // Replies from a backend: the session's client is the destination; the bytes are gathered from the
  // backend socket's rx slot (FLAGS = 1 + slot), so nothing is copied in JS.
  const onBackend = (): ((this: NativeUdpSocket, count: number) => void) => {
    let rxb: Buffer | null = null;
    return function (this: NativeUdpSocket, count: number): void {
      const rx = this.rx;
      const meta = this.rxMeta;
      const size = this.slotSize;
      rxb ??= slabBuffer(this);
      const tm = front.txMeta;
      let k = 0;
      for (let i = 0; i < count; i++) {
        const m = i * I;
        const off = i * size;
        if ((meta[m + Meta.LEN] as number) < 20 || meta[m + Meta.FLAGS] !== 0 || rx[off] !== 0x4a || rx[off + 1] !== 0x56) continue;
        const sess = sessions.get(rxb.toString('latin1', off + 4, off + 20));
        if (sess === undefined) continue;
        const o = k++ * I;
        tm[o + Meta.LEN] = 0;
        tm[o + Meta.FLAGS] = i + 1;
        tm[o + Meta.FAMILY] = 4;
        tm[o + Meta.PORT] = sess.port;
        tm[o + Meta.ADDR] = sess.addr;
      }
      if (k > 0) front.flush(k, this);
    };
  };

  // The socket options Anchor's native path uses, segmentation offload included (socket.gso).
  const opts = { family: 4 as const, recvBufferSize: RECV_BUFFER, sendBufferSize: SEND_BUFFER, gso: true };
  const ups: NativeUdpSocket[] = backends.map((b) => new UdpSocket({ ...opts, address: '0.0.0.0', port: 0, connectAddress: b.host, connectPort: b.port }, onBackend()));

  // Client datagrams: per backend, one tx metadata slot per datagram (connected socket: no
  // destination; bytes gathered from the front socket's rx slot), one flush per backend per batch.
  let frontRxb: Buffer | null = null;
  const front: NativeUdpSocket = new UdpSocket({ ...opts, address: listen.host, port: listen.port }, function (this: NativeUdpSocket, count: number) {
    const rx = this.rx;
    const meta = this.rxMeta;
    const size = this.slotSize;
    const rxb = (frontRxb ??= slabBuffer(this));
    for (let i = 0; i < count; i++) {
      const m = i * I;
      const off = i * size;
      if ((meta[m + Meta.LEN] as number) < 20 || meta[m + Meta.FLAGS] !== 0 || rx[off] !== 0x4a || rx[off + 1] !== 0x56) continue;
      const key = rxb.toString('latin1', off + 4, off + 20);
      const addr = meta[m + Meta.ADDR] as number;
      const port = meta[m + Meta.PORT] as number;
      let sess = sessions.get(key);
      if (sess === undefined) {
        if (rx[off + 3] !== 0x01 || sessions.size >= MAX_SESSIONS) continue; // only a HELLO opens a session
        const backend = ((rxb.readUInt32BE(off + 16) ^ rxb.readUInt32BE(off + 12)) >>> 0) % n;
        let header: Buffer | null = null;
        if (ppv2) {
          const src = { family: 4 as const, address: `${addr >>> 24}.${(addr >>> 16) & 255}.${(addr >>> 8) & 255}.${addr & 255}`, port };
          const prefix = createPpv2Prefix('DGRAM', src, dst);
          const owner = owners[backend] as Buffer;
          header = Buffer.allocUnsafe(ppv2HeaderLength(prefix, owner));
          writePpv2(header, prefix, rxb.subarray(off + 4, off + 20), 1n, owner, 0, 1);
        }
        sess = { backend, addr, port, header };
        sessions.set(key, sess);
      } else if (sess.port !== port || sess.addr !== addr) {
        sess.addr = addr; // follows the client (no validation: the floor, not a director)
        sess.port = port;
      }
      const b = sess.backend;
      const o = (counts[b] as number) * I;
      counts[b] = (counts[b] as number) + 1;
      const up = ups[b] as NativeUdpSocket;
      const tm = up.txMeta;
      if (sess.header !== null) up.tx.set(sess.header, (o / I) * up.slotSize); // the header, then the gathered bytes
      tm[o + Meta.LEN] = sess.header === null ? 0 : sess.header.length;
      tm[o + Meta.FLAGS] = i + 1;
      tm[o + Meta.FAMILY] = 0;
    }
    for (let b = 0; b < n; b++) {
      if (counts[b] === 0) continue;
      (ups[b] as NativeUdpSocket).flush(counts[b] as number, this);
      counts[b] = 0;
    }
  });
  console.log(`relay listening on ${listen.host}:${front.address().port} -> ${backends.map((b) => `${b.host}:${b.port}`).join(',')} (native${ppv2 ? ', ppv2' : ''}, ${front.slots} datagrams per batch)`);
  const bye = (): void => {
    const sum = (s: NativeUdpSocket[], i: number): number => s.reduce((a, x) => a + (x.stats[i] as number), 0);
    const all = [front, ...ups];
    console.log(
      `relay native stats: rx ${sum(all, Stat.RX_DATAGRAMS)} in ${sum(all, Stat.RX_BATCHES)} batches, tx ${sum(all, Stat.TX_DATAGRAMS)} in ${sum(all, Stat.TX_SYSCALLS)} sendmmsg, ` +
        `drops ${sum(all, Stat.TX_WOULDBLOCK_DROPS)}, tx errors ${sum(all, Stat.TX_ERRORS)}, rx truncated ${sum(all, Stat.RX_TRUNCATED)}`,
    );
    for (const s of all) s.close();
    process.exit(0);
  };
  process.on('SIGTERM', bye);
  process.on('SIGINT', bye);
  setTimeout(bye, Number(process.env.RELAY_MAX_S ?? 3600) * 1000).unref();
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const listen = hostPort(arg('--listen') ?? '');
  const backends = (arg('--backends') ?? '').split(',').filter((x) => x !== '').map(hostPort);
  if (backends.length === 0) throw new Error('--backends is required');
  if (argv.includes('--native')) {
    mainNative(listen, backends, argv.includes('--ppv2'));
    return;
  }
  const ppv2 = argv.includes('--ppv2');
  const sessions = new Map<string, Session>();
  const front = dgram.createSocket('udp4');
  const dst = { family: 4 as const, address: listen.host, port: listen.port };
  const owners = backends.map((_, i) => ppv2OwnerBytes(`node-${i}`));

  const ups = backends.map((b) => {
    const s = dgram.createSocket('udp4');
    s.on('message', (msg) => {
      if (msg.length < 20 || msg[0] !== 0x4a || msg[1] !== 0x56) return;
      const sess = sessions.get(msg.toString('latin1', 4, 20));
      if (sess !== undefined) front.send(msg, sess.port, sess.address);
    });
    s.on('error', () => undefined);
    return s;
  });
  // Every backend socket is connected before the front socket takes its first datagram.
  for (const [i, s] of ups.entries()) {
    const b = backends[i] as { host: string; port: number };
    s.connect(b.port, b.host);
    await once(s, 'connect');
    s.setRecvBufferSize(RECV_BUFFER);
    s.setSendBufferSize(SEND_BUFFER);
  }

  front.on('message', (msg, rinfo) => {
    if (msg.length < 20 || msg[0] !== 0x4a || msg[1] !== 0x56) return;
    const key = msg.toString('latin1', 4, 20);
    let sess = sessions.get(key);
    if (sess === undefined) {
      if (msg[3] !== 0x01 || sessions.size >= MAX_SESSIONS) return; // only a HELLO opens a session
      // The backend from the id bytes (ids are random): no hashing library, no ring.
      const backend = ((msg.readUInt32BE(16) ^ msg.readUInt32BE(12)) >>> 0) % backends.length;
      sess = { backend, address: rinfo.address, port: rinfo.port, header: null };
      if (ppv2) {
        const prefix = createPpv2Prefix('DGRAM', { family: 4, address: rinfo.address, port: rinfo.port }, dst);
        const owner = owners[backend] as Buffer;
        const h = Buffer.allocUnsafe(ppv2HeaderLength(prefix, owner));
        writePpv2(h, prefix, msg.subarray(4, 20), 1n, owner, 0, 1);
        sess.header = h;
      }
      sessions.set(key, sess);
    } else if (sess.port !== rinfo.port || sess.address !== rinfo.address) {
      sess.address = rinfo.address; // follows the client (no validation: the floor, not a director)
      sess.port = rinfo.port;
    }
    const up = ups[sess.backend] as dgram.Socket;
    if (sess.header !== null) up.send([sess.header, msg]);
    else up.send(msg);
  });
  front.on('error', (err) => {
    console.error('relay: front socket error', err);
    process.exit(1);
  });
  front.bind(listen.port, listen.host, () => {
    front.setRecvBufferSize(RECV_BUFFER);
    front.setSendBufferSize(SEND_BUFFER);
    console.log(`relay listening on ${listen.host}:${listen.port} -> ${backends.map((b) => `${b.host}:${b.port}`).join(',')}${ppv2 ? ' (ppv2)' : ''}`);
  });
  const bye = (): void => process.exit(0);
  process.on('SIGTERM', bye);
  process.on('SIGINT', bye);
  // Bench processes are bounded: a relay left behind ends by itself.
  setTimeout(bye, Number(process.env.RELAY_MAX_S ?? 3600) * 1000).unref();
}

await main();
