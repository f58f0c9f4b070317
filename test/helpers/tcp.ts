// Raw TCP clients for the TCP front's tests: HELLO and reattach preambles, reading exact byte counts.
import net from 'node:net';
import { once } from 'node:events';
import { encodeJv1 } from '../../src/codec/jv1.js';
import { PacketType, type Transport } from '../../src/codec/types.js';
import { sealPacket } from '../../src/refnode/keys.js';

export async function connect(target: Transport, localPort?: number): Promise<net.Socket> {
  const s = net.connect({ host: target.address, port: target.port, family: target.family, allowHalfOpen: true, ...(localPort !== undefined ? { localPort } : {}) });
  s.on('error', () => {});
  await once(s, 'connect');
  return s;
}

/** Reads exactly `n` bytes (or fewer if the connection ends first), within `timeoutMs`. */
export function readBytes(s: net.Socket, n: number, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const finish = (): void => {
      clearTimeout(t);
      s.off('data', onData);
      s.off('end', onEnd);
      s.off('close', onEnd);
      const all = Buffer.concat(chunks);
      if (all.length > n) s.unshift(all.subarray(n));
      s.pause();
      resolve(all.subarray(0, n));
    };
    const onData = (c: Buffer): void => {
      chunks.push(c);
      got += c.length;
      if (got >= n) finish();
    };
    const onEnd = (): void => finish();
    const t = setTimeout(() => {
      s.off('data', onData);
      reject(new Error(`read ${got} of ${n} bytes within ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('close', onEnd);
    s.resume();
  });
}

/** Waits until the peer closes the connection (bounded). */
export async function closedBy(s: net.Socket, timeoutMs = 5000): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  // The peer's FIN ('end') is its close; answer it so the socket closes (allowHalfOpen sockets wait).
  s.once('end', () => s.end());
  s.resume();
  if (s.destroyed || s.readableEnded) return Buffer.concat(chunks);
  await Promise.race([
    once(s, 'close'),
    new Promise((_, reject) => setTimeout(() => reject(new Error(`not closed within ${timeoutMs} ms`)), timeoutMs)),
  ]);
  return Buffer.concat(chunks);
}

/**
 * A connection from a port below the kernel's ephemeral range (20000–29999, a few tries at random), which
 * no other connection of the machine is given meanwhile: a test can reset it and connect from it again.
 */
export async function connectFromFixedPort(target: Transport): Promise<net.Socket> {
  for (let i = 0; ; i++) {
    try {
      return await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect({ host: target.address, port: target.port, family: target.family, allowHalfOpen: true, localPort: 20_000 + Math.floor(Math.random() * 10_000) });
        s.once('error', reject);
        s.once('connect', () => {
          s.off('error', reject);
          s.on('error', () => {});
          resolve(s);
        });
      });
    } catch (err) {
      if (i >= 20 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    }
  }
}

/** A new session over TCP: HELLO, then the node's HELLO header + 16-byte key. `localPort: 'fixed'`: see connectFromFixedPort. */
export async function tcpHello(target: Transport, id: Buffer, opts: { localPort?: 'fixed' } = {}): Promise<{ sock: net.Socket; key: Buffer }> {
  const sock = opts.localPort === 'fixed' ? await connectFromFixedPort(target) : await connect(target);
  sock.write(encodeJv1(PacketType.HELLO, id));
  const answer = await readBytes(sock, 36);
  if (answer.length < 36 || answer[3] !== PacketType.HELLO) throw new Error(`no HELLO answer (got ${answer.length} bytes, type ${answer[3]})`);
  return { sock, key: Buffer.from(answer.subarray(20, 36)) };
}

/** A reconnect of a live session: DATA header + MAC; resolves with the socket once a probe echoes. */
export async function tcpReattach(target: Transport, id: Buffer, key: Buffer, probe = PROBE): Promise<{ sock: net.Socket; reply: Buffer }> {
  const [r] = await tcpReattachTogether(target, id, key, 1, probe);
  return r!;
}

const PROBE = 'probe-0123456789-0123456789-0123';

/**
 * `count` reconnects of one session that race for real: every connection is open before any preamble is
 * written, and all the preambles are written in one turn of this process's loop. The owner (an in-process
 * reference node) cannot answer the first before the last is on its way, so the director reads them all
 * at the session's current version.
 */
export async function tcpReattachTogether(target: Transport, id: Buffer, key: Buffer, count: number, probe = PROBE): Promise<{ sock: net.Socket; reply: Buffer }[]> {
  const socks = await Promise.all(Array.from({ length: count }, () => connect(target)));
  const preamble = Buffer.concat([sealPacket(key, encodeJv1(PacketType.DATA, id)), Buffer.from(probe)]);
  for (const s of socks) s.write(preamble);
  return Promise.all(socks.map(async (sock) => ({ sock, reply: await readBytes(sock, probe.length) })));
}
