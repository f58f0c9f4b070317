// The reference VPN node: a real UDP service to route to. It reads PROXY v2 (or bare JV1), answers HELLO
// with the session key, echoes DATA, validates jump candidates (UNBOUND_SOURCE) by their MAC and BINDs
// them, honours REVOKE fences, answers PROXY v2 LOCAL health probes, and can record one JSON line per
// received packet so the checker (checker.ts) can prove from the nodes' side where each session's
// packets went. It also serves TCP on the same port (tcp.ts: one connection per client connection, same
// fences). The decisions live in core.ts (pure); this file owns the UDP socket and the record file.
import dgram from 'node:dgram';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { decodeJv1, sessionIdHex } from '../codec/jv1.js';
import { decodePpv2 } from '../codec/ppv2.js';
import type { Transport } from '../codec/types.js';
import { transportKey } from '../codec/ip.js';
import type { RecordDrop, RecordLine } from './checker.js';
import { NodeCore, type NodeProxyInfo } from './core.js';
import { devSecret } from './keys.js';
import { RefNodeTcp, type TcpOpenRecord, type TcpStats } from './tcp.js';

export type { RecordLine, RecordDrop } from './checker.js';
export { CLOSE_ME } from './core.js';

export interface ReferenceNodeOptions {
  readonly id: string;
  readonly listen: Transport;
  /** Append one JSON line per received packet (RecordLine) to this file. */
  readonly recordPath?: string;
  /**
   * The secret all reference nodes share; a session's key is HMAC-SHA256(secret, sessionId)[0..16].
   * Default: keys.ts DEV_SECRET_TEXT, a public development constant.
   */
  readonly secret?: Buffer;
  /** Also serve TCP on the UDP port (default true). */
  readonly tcp?: boolean;
}

/** How often start() picks a new UDP port when TCP's twin of a port-0 pick is taken. */
const SAME_PORT_ATTEMPTS = 8;

export interface ReferenceNodeStats extends TcpStats {
  received: number;
  /** Datagrams sent (answers, echoes, BINDs, REVOKE acknowledgements, probe answers). */
  answered: number;
  malformed: number;
  probes: number;
  /** Sessions live on this node now. */
  sessions: number;
  /** Jump candidates validated and BIND sent. */
  binds: number;
  /** REVOKEs acknowledged. */
  revokes: number;
  /** Dropped: version below a REVOKE fence. */
  fenced: number;
  /** Dropped: jump candidate without a valid MAC. */
  forged: number;
  /** Dropped: version below the one this node's ownership began at. */
  stale: number;
  /** Dropped: REVOKE not addressed to this node (0xE2) or without a PROXY v2 header. */
  misaddressed: number;
  /** Delivered without effect: CLOSE from an unbound source. */
  ignored: number;
  // TCP counters: see TcpStats (tcp.ts).
}

export class ReferenceNode {
  readonly #opts: ReferenceNodeOptions;
  #socket: dgram.Socket;
  readonly #core: NodeCore;
  readonly #tcp: RefNodeTcp | null;
  #record: WriteStream | null = null;
  #recordCorked = false;
  readonly stats: ReferenceNodeStats = {
    received: 0,
    answered: 0,
    malformed: 0,
    probes: 0,
    sessions: 0,
    binds: 0,
    revokes: 0,
    fenced: 0,
    forged: 0,
    stale: 0,
    misaddressed: 0,
    ignored: 0,
    tcpConnections: 0,
    tcpOpen: 0,
    tcpBytesEchoed: 0,
    tcpForged: 0,
    tcpFenced: 0,
    tcpStale: 0,
    tcpMalformed: 0,
    tcpLocal: 0,
    tcpBinds: 0,
    tcpMaxQueued: 0,
  };
  #address: Transport;

  constructor(opts: ReferenceNodeOptions) {
    this.#opts = opts;
    this.#address = opts.listen;
    this.#core = new NodeCore({ id: opts.id, secret: opts.secret ?? devSecret() });
    this.#socket = this.#createSocket();
    this.#tcp =
      opts.tcp === false
        ? null
        : new RefNodeTcp({ core: this.#core, stats: this.stats, record: (r) => this.#recordTcp(r) });
  }

  #createSocket(): dgram.Socket {
    const family = this.#opts.listen.family;
    return dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6 });
  }

  get id(): string {
    return this.#opts.id;
  }

  get address(): Transport {
    return this.#address;
  }

  /** The REVOKE fence of a session on this node (hex id), if any. */
  revokedBelow(session: string): bigint | undefined {
    return this.#core.revokedBelow(session);
  }

  /** The version at which this node's ownership of a live session began (hex id), if any. */
  ownedSince(session: string): bigint | undefined {
    return this.#core.ownedSince(session);
  }

  async start(): Promise<void> {
    if (this.#opts.recordPath !== undefined) {
      this.#record = createWriteStream(this.#opts.recordPath, { flags: 'a' });
      await once(this.#record, 'open');
    }
    // UDP first, then TCP on the port UDP got: `address` names both. With port 0 the TCP twin of UDP's
    // pick may be taken; then UDP picks again.
    const { listen } = this.#opts;
    for (let attempt = 1; ; attempt++) {
      this.#socket.bind(listen.port, listen.address);
      await once(this.#socket, 'listening');
      if (this.#tcp === null) break;
      try {
        await this.#tcp.listen({ ...listen, port: this.#socket.address().port });
        break;
      } catch (err) {
        await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
        this.#socket = this.#createSocket();
        const inUse = (err as NodeJS.ErrnoException).code === 'EADDRINUSE';
        if (!inUse || listen.port !== 0 || attempt >= SAME_PORT_ATTEMPTS) throw err;
      }
    }
    this.#socket.on('message', (msg, rinfo) => this.#onMessage(msg, rinfo));
    try {
      // Room for bursts (the kernel caps it at net.core.rmem_max).
      this.#socket.setRecvBufferSize(4 * 1024 * 1024);
    } catch {
      // The system default then.
    }
    const a = this.#socket.address();
    this.#address = { family: this.#opts.listen.family, address: a.address, port: a.port };
  }

  async close(): Promise<void> {
    await this.#tcp?.close();
    await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
    const r = this.#record;
    this.#record = null;
    if (r !== null) await new Promise<void>((resolve) => r.end(() => resolve()));
  }

  #onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.stats.received++;
    let body: Buffer = msg;
    let proxy: NodeProxyInfo | undefined;
    let dst: string | null = null;
    const pp = decodePpv2(msg);
    if (pp.kind === 'malformed') {
      this.stats.malformed++;
      return;
    }
    if (pp.kind === 'ok') {
      const h = pp.value;
      if (h.command === 'LOCAL') {
        // A health probe: answer with the same bytes.
        this.stats.probes++;
        this.#send(msg, rinfo);
        return;
      }
      body = msg.subarray(h.headerLength);
      proxy = { version: h.version, seq: h.seq, flags: h.flags ?? 0, owner: h.owner, src: h.src };
      dst = h.dst === undefined ? null : transportKey(h.dst);
    }
    const d = decodeJv1(body);
    if (d.kind !== 'ok') {
      this.stats.malformed++;
      return;
    }
    const { type, sessionId, payload } = d.value;
    const id = sessionIdHex(sessionId);
    const out = this.#core.handle(id, { type, sessionId, payload, packet: body, proxy });
    this.stats.sessions = this.#core.sessions;
    switch (out.kind) {
      case 'unexpected':
        this.stats.malformed++;
        return;
      case 'dropped':
        this.stats[out.drop]++;
        this.#recordPacket(id, proxy, dst, type, false, out.drop, undefined);
        return;
      case 'accepted':
        if (out.bound) this.stats.binds++;
        if (out.revoke !== undefined) {
          this.stats.revokes++;
          // Live TCP connections of the session opened below the fence end now.
          this.#tcp?.revoke(id, this.#core.revokedBelow(id) ?? out.revoke);
        }
        if (out.ignored) this.stats.ignored++;
        this.#recordPacket(id, proxy, dst, type, true, undefined, out.revoke);
        for (const r of out.replies) this.#send(r, rinfo);
    }
  }

  #recordPacket(
    session: string,
    pp: NodeProxyInfo | undefined,
    dst: string | null,
    type: number,
    accepted: boolean,
    drop: RecordDrop | undefined,
    revoke: bigint | undefined,
  ): void {
    if (this.#record === null) return;
    const line: RecordLine = {
      node: this.#opts.id,
      session,
      version: pp?.version === undefined ? null : pp.version.toString(),
      seq: pp?.seq === undefined ? null : pp.seq.toString(),
      flags: pp?.flags ?? 0,
      type,
      t: Date.now(),
      accepted,
      ...(drop === undefined ? {} : { drop }),
      ...(revoke === undefined ? {} : { revoke: revoke.toString() }),
      dst,
    };
    this.#writeRecord(JSON.stringify(line) + '\n');
  }

  /**
   * Appends one record line. The lines of one turn of the event loop go to the file in one write (the
   * stream is corked until the turn ends): one write per packet costs more than the packet itself.
   */
  #writeRecord(text: string): void {
    const r = this.#record;
    if (r === null) return;
    if (!this.#recordCorked) {
      this.#recordCorked = true;
      r.cork();
      setImmediate(() => {
        this.#recordCorked = false;
        r.uncork();
      });
    }
    r.write(text);
  }

  #recordTcp(r: TcpOpenRecord): void {
    if (this.#record === null) return;
    const line: RecordLine = {
      node: this.#opts.id,
      session: r.session,
      version: r.proxy?.version === undefined ? null : r.proxy.version.toString(),
      seq: r.proxy?.seq === undefined ? null : r.proxy.seq.toString(),
      flags: r.proxy?.flags ?? 0,
      type: r.type,
      t: Date.now(),
      accepted: r.accepted,
      ...(r.drop === undefined ? {} : { drop: r.drop }),
      dst: r.dst === undefined ? null : transportKey(r.dst),
      proto: 'tcp',
    };
    this.#writeRecord(JSON.stringify(line) + '\n');
  }

  #send(buf: Buffer, to: dgram.RemoteInfo): void {
    this.stats.answered++;
    this.#socket.send(buf, to.port, to.address);
  }

  toString(): string {
    return `${this.#opts.id}@${transportKey(this.#address)}`;
  }
}
