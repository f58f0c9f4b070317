// A UDP peer for tests: send datagrams and wait (with a bound) for one that matches.
import dgram from 'node:dgram';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { encodeJv1 } from '../../src/codec/jv1.js';
import { PacketType, type Transport } from '../../src/codec/types.js';
import { waitFor } from './wait.js';

export class UdpPeer {
  readonly socket: dgram.Socket;
  readonly inbox: { msg: Buffer; from: dgram.RemoteInfo }[] = [];
  #waiters: (() => void)[] = [];

  private constructor(socket: dgram.Socket) {
    this.socket = socket;
    socket.on('message', (msg, from) => {
      this.inbox.push({ msg, from });
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  static async open(family: 4 | 6 = 4, port = 0): Promise<UdpPeer> {
    const socket = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6 });
    socket.bind(port, family === 6 ? '::1' : '127.0.0.1');
    await once(socket, 'listening');
    return new UdpPeer(socket);
  }

  get address(): Transport {
    const a = this.socket.address();
    return { family: a.family === 'IPv6' ? 6 : 4, address: a.address, port: a.port };
  }

  send(buf: Uint8Array, to: Transport): void {
    this.socket.send(buf, to.port, to.address);
  }

  /** Removes and returns the first datagram matching `pred`, waiting up to `timeoutMs`. */
  async next(pred: (msg: Buffer) => boolean = () => true, timeoutMs = 3000): Promise<Buffer> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex((m) => pred(m.msg));
      if (i >= 0) return (this.inbox.splice(i, 1)[0] as { msg: Buffer }).msg;
      const left = until - Date.now();
      if (left <= 0) throw new Error(`no matching datagram within ${timeoutMs} ms (inbox: ${this.inbox.length})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.socket.close();
  }
}

/** Opens `n` sessions with HELLOs from one socket, sending again those not answered (UDP may drop some). */
export async function openSessions(peer: UdpPeer, target: Transport, n: number): Promise<Buffer[]> {
  const ids = Array.from({ length: n }, () => randomBytes(16));
  const pending = new Map(ids.map((id) => [id.toString('hex'), id]));
  for (let round = 0; round < 5 && pending.size > 0; round++) {
    for (const id of pending.values()) peer.send(encodeJv1(PacketType.HELLO, id, Buffer.from('hi')), target);
    await waitFor(
      'every HELLO to be answered',
      () => {
        for (const { msg } of peer.inbox.splice(0)) if (msg[3] === PacketType.HELLO) pending.delete(msg.subarray(4, 20).toString('hex'));
        return pending.size === 0;
      },
      { timeoutMs: 10_000 },
    ).catch(() => undefined); // the next round sends the rest again
  }
  if (pending.size > 0) throw new Error(`${pending.size} of ${n} sessions got no HELLO answer`);
  return ids;
}
