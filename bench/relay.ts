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
//   node dist/bench/relay.js --listen 127.0.0.1:PORT --backends 127.0.0.1:A,127.0.0.1:B [--ppv2]
import dgram from 'node:dgram';
import { once } from 'node:events';
import { createPpv2Prefix, ppv2HeaderLength, ppv2OwnerBytes, writePpv2 } from '../src/codec/ppv2.js';

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

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const listen = hostPort(arg('--listen') ?? '');
  const backends = (arg('--backends') ?? '').split(',').filter((x) => x !== '').map(hostPort);
  if (backends.length === 0) throw new Error('--backends is required');
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
