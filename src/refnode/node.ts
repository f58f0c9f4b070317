// The reference VPN node: a real UDP service to route to. It reads PROXY v2 (or bare JV1), answers
// HELLO, echoes DATA, honours CLOSE, answers PROXY v2 LOCAL health probes, and can record one JSON line
// per received packet so a checker can prove from the nodes' side where each session's packets went.
import dgram from 'node:dgram';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { decodeJv1, encodeJv1, sessionIdHex } from '../codec/jv1.js';
import { decodePpv2 } from '../codec/ppv2.js';
import { PacketType, type Transport } from '../codec/types.js';
import { transportKey } from '../codec/ip.js';

export interface RecordLine {
  readonly node: string;
  readonly session: string;
  /** Decimal string (u64); null when the packet came without a PROXY v2 header. */
  readonly version: string | null;
  readonly seq: string | null;
  readonly flags: number;
  readonly type: number;
  /** Wall-clock milliseconds. */
  readonly t: number;
}

export interface ReferenceNodeOptions {
  readonly id: string;
  readonly listen: Transport;
  readonly recordPath?: string;
}

export interface ReferenceNodeStats {
  received: number;
  answered: number;
  malformed: number;
  probes: number;
  sessions: number;
}

/** A DATA payload starting with these bytes makes the node end the session with a CLOSE. */
export const CLOSE_ME = Buffer.from('!close');

export class ReferenceNode {
  readonly #opts: ReferenceNodeOptions;
  readonly #socket: dgram.Socket;
  readonly #sessions = new Set<string>();
  #record: WriteStream | null = null;
  readonly stats: ReferenceNodeStats = { received: 0, answered: 0, malformed: 0, probes: 0, sessions: 0 };
  #address: Transport;

  constructor(opts: ReferenceNodeOptions) {
    this.#opts = opts;
    this.#address = opts.listen;
    this.#socket = dgram.createSocket({ type: opts.listen.family === 6 ? 'udp6' : 'udp4', ipv6Only: opts.listen.family === 6 });
  }

  get address(): Transport {
    return this.#address;
  }

  async start(): Promise<void> {
    if (this.#opts.recordPath !== undefined) {
      this.#record = createWriteStream(this.#opts.recordPath, { flags: 'a' });
      await once(this.#record, 'open');
    }
    this.#socket.on('message', (msg, rinfo) => this.#onMessage(msg, rinfo));
    this.#socket.bind(this.#opts.listen.port, this.#opts.listen.address);
    await once(this.#socket, 'listening');
    const a = this.#socket.address();
    this.#address = { family: this.#opts.listen.family, address: a.address, port: a.port };
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
    const r = this.#record;
    this.#record = null;
    if (r !== null) await new Promise<void>((resolve) => r.end(() => resolve()));
  }

  #onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.stats.received++;
    let body: Buffer = msg;
    let version: bigint | undefined;
    let seq: bigint | undefined;
    let flags = 0;
    const pp = decodePpv2(msg);
    if (pp.kind === 'malformed') {
      this.stats.malformed++;
      return;
    }
    if (pp.kind === 'ok') {
      if (pp.value.command === 'LOCAL') {
        // A health probe: answer with the same bytes.
        this.stats.probes++;
        this.#send(msg, rinfo);
        return;
      }
      body = msg.subarray(pp.value.headerLength);
      version = pp.value.version;
      seq = pp.value.seq;
      flags = pp.value.flags ?? 0;
    }
    const d = decodeJv1(body);
    if (d.kind !== 'ok') {
      this.stats.malformed++;
      return;
    }
    const { type, sessionId, payload } = d.value;
    const id = sessionIdHex(sessionId);
    this.#recordPacket(id, version, seq, flags, type);
    switch (type) {
      case PacketType.HELLO:
        if (!this.#sessions.has(id)) {
          this.#sessions.add(id);
          this.stats.sessions = this.#sessions.size;
        }
        this.#send(encodeJv1(PacketType.HELLO, sessionId, payload), rinfo);
        return;
      case PacketType.DATA:
        if (payload.length >= CLOSE_ME.length && CLOSE_ME.equals(payload.subarray(0, CLOSE_ME.length))) {
          this.#sessions.delete(id);
          this.#send(encodeJv1(PacketType.CLOSE, sessionId), rinfo);
          return;
        }
        this.#send(encodeJv1(PacketType.DATA, sessionId, payload), rinfo);
        return;
      case PacketType.CLOSE:
        this.#sessions.delete(id);
        this.stats.sessions = this.#sessions.size;
        return;
      default:
        this.stats.malformed++;
    }
  }

  #recordPacket(session: string, version: bigint | undefined, seq: bigint | undefined, flags: number, type: number): void {
    if (this.#record === null) return;
    const line: RecordLine = {
      node: this.#opts.id,
      session,
      version: version === undefined ? null : version.toString(),
      seq: seq === undefined ? null : seq.toString(),
      flags,
      type,
      t: Date.now(),
    };
    this.#record.write(JSON.stringify(line) + '\n');
  }

  #send(buf: Buffer, to: dgram.RemoteInfo): void {
    this.stats.answered++;
    this.#socket.send(buf, to.port, to.address);
  }

  toString(): string {
    return `${this.#opts.id}@${transportKey(this.#address)}`;
  }
}
