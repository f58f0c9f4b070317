// The reference node's TCP side: one connection per client connection, opened by a PROXY v2 STREAM header
// (or none, encapsulation `none`) and a JV1 preamble; after it the stream is opaque and echoed with
// backpressure and half-close. It owns the listening socket and its connections; the decisions (keys,
// MACs, fences, ownership) are NodeCore's, shared with the UDP side, and the preamble parse below is pure.
// It never buffers more than one preamble per connection: the echo is a pipe.
import net from 'node:net';
import { JV1_HEADER_LEN, sessionIdHex } from '../codec/jv1.js';
import { decodePpv2, ppv2NeedBytes, type Ppv2Header } from '../codec/ppv2.js';
import { decodeJv1Preamble } from '../codec/stream.js';
import { MalformedReason, type PacketType, type Transport } from '../codec/types.js';
import { RecordDrop } from './checker.js';
import { fencedBy, streamPreambleExtra, type NodeCore, type NodeProxyInfo } from './core.js';

// ------------------------------------------------------------------------------------ pure: preamble

export type StreamPreamble =
  /** Undecided: wait until the buffer holds `need` bytes in total. */
  | { readonly kind: 'need'; readonly need: number }
  /** PROXY v2 LOCAL: a health check; TCP ones are not served (they stay on UDP). */
  | { readonly kind: 'local' }
  /** Neither PROXY v2 nor JV1. */
  | { readonly kind: 'not-mine' }
  | { readonly kind: 'malformed'; readonly reason: MalformedReason }
  | {
      readonly kind: 'ok';
      /** Absent with encapsulation `none`. */
      readonly proxy?: Ppv2Header;
      readonly type: PacketType;
      readonly sessionId: Uint8Array;
      /** Copies (the buffer they came from is the caller's). */
      readonly header: Uint8Array;
      readonly mac?: Uint8Array;
      /** Bytes the preamble took: the echo starts here. */
      readonly length: number;
    };

/**
 * Reads the preamble at the start of a stream to the node: an optional PROXY v2 header, the 20-byte JV1
 * header and, for DATA, the 16-byte MAC (core.ts streamPreambleExtra). Pure; never throws on wire bytes;
 * bounded: it never asks for more than one PROXY v2 header (≤ 65,551 bytes) plus 36.
 */
export function parseStreamPreamble(buf: Uint8Array): StreamPreamble {
  if (buf.length === 0) return { kind: 'need', need: 1 };
  let at = 0;
  let proxy: Ppv2Header | undefined;
  const ppNeed = ppv2NeedBytes(buf);
  if (ppNeed !== 'not-mine') {
    if (buf.length < ppNeed) return { kind: 'need', need: ppNeed };
    const pp = decodePpv2(buf);
    if (pp.kind === 'not-mine') return pp; // cannot happen: the signature matched
    if (pp.kind === 'malformed') return pp;
    if (pp.value.command === 'LOCAL') return { kind: 'local' };
    proxy = pp.value;
    at = pp.value.headerLength;
  }
  const j = decodeJv1Preamble(buf.subarray(at), JV1_HEADER_LEN);
  switch (j.kind) {
    case 'need':
      return { kind: 'need', need: at + j.need };
    case 'not-mine':
      return { kind: 'not-mine' };
    case 'malformed':
      return j;
    case 'too-long': // cannot happen with maxBytes = 20
      return { kind: 'malformed', reason: MalformedReason.TRUNCATED };
  }
  const extra = streamPreambleExtra(j.type);
  const length = at + JV1_HEADER_LEN + extra;
  if (buf.length < length) return { kind: 'need', need: length };
  // new Uint8Array(view) copies (Buffer#slice would not).
  const header = new Uint8Array(buf.subarray(at, at + JV1_HEADER_LEN));
  const mac = extra === 0 ? undefined : new Uint8Array(buf.subarray(at + JV1_HEADER_LEN, length));
  return {
    kind: 'ok',
    ...(proxy === undefined ? {} : { proxy }),
    type: j.type,
    sessionId: j.sessionId,
    header,
    ...(mac === undefined ? {} : { mac }),
    length,
  };
}

// ------------------------------------------------------------------------------------------- shell

/** The TCP counters, kept in the node's stats object. */
export interface TcpStats {
  /** Connections accepted by the listening socket (all of them: probes, malformed, refused, served). */
  tcpConnections: number;
  /** Connections open now. */
  tcpOpen: number;
  /** Stream bytes after the preamble handed back to the sender (the echo). */
  tcpBytesEchoed: number;
  /** Reattach connections (UNBOUND_SOURCE DATA) with a missing or invalid MAC: closed, nothing written. */
  tcpForged: number;
  /** Connections refused below a REVOKE fence, plus live ones cut by a REVOKE. */
  tcpFenced: number;
  /** Connections refused: a version below the one this node's ownership began at. */
  tcpStale: number;
  /** Connections whose preamble was not PROXY v2 + JV1 (or opened with REVOKE, REJECT, BIND). */
  tcpMalformed: number;
  /** PROXY v2 LOCAL connections (closed: health checks are served over UDP). */
  tcpLocal: number;
  /** Reattach connections validated and BOUND. */
  tcpBinds: number;
  /** The most bytes ever queued in user space for writing on one connection (backpressure at work). */
  tcpMaxQueued: number;
  /** Sessions live on the node (NodeCore's count, shared with UDP). */
  sessions: number;
}

/** What a connection's one record says (the node turns it into a RecordLine with proto 'tcp'). */
export interface TcpOpenRecord {
  readonly session: string;
  readonly proxy: NodeProxyInfo | undefined;
  readonly dst: Transport | undefined;
  readonly type: PacketType;
  readonly accepted: boolean;
  readonly drop?: RecordDrop;
}

export interface RefNodeTcpOptions {
  readonly core: NodeCore;
  readonly stats: TcpStats;
  /** Called once per connection whose preamble reached the session decision. */
  readonly record: (r: TcpOpenRecord) => void;
  /** A connection that has not sent its whole preamble by then is closed (ms, default 10,000). */
  readonly preambleTimeoutMs?: number;
}

interface Conn {
  readonly socket: net.Socket;
  session: string | undefined;
  version: bigint | undefined;
}

export const DEFAULT_PREAMBLE_TIMEOUT_MS = 10_000;

const DROP_COUNTER = {
  [RecordDrop.FORGED]: 'tcpForged',
  [RecordDrop.FENCED]: 'tcpFenced',
  [RecordDrop.STALE]: 'tcpStale',
  [RecordDrop.MISADDRESSED]: 'tcpMalformed', // REVOKE never opens a stream: unreachable
} as const satisfies Record<RecordDrop, keyof TcpStats>;

export class RefNodeTcp {
  readonly #opts: RefNodeTcpOptions;
  readonly #stats: TcpStats;
  #server: net.Server | null = null;
  readonly #conns = new Set<Conn>();
  readonly #bySession = new Map<string, Set<Conn>>();

  constructor(opts: RefNodeTcpOptions) {
    this.#opts = opts;
    this.#stats = opts.stats;
  }

  /** Listens on `at` (port 0: any); resolves with the port. Rejects (e.g. EADDRINUSE) and holds nothing. */
  async listen(at: Transport): Promise<number> {
    const server = net.createServer({ allowHalfOpen: true }, (s) => this.#onConnection(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: at.port, host: at.address, ipv6Only: at.family === 6 }, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    server.on('error', () => {}); // accept errors (EMFILE…) leave the server listening
    this.#server = server;
    return (server.address() as net.AddressInfo).port;
  }

  /**
   * A REVOKE arrived (over UDP) and the session's fence is now `fence`: cut this session's live
   * connections opened below it. Returns how many were cut.
   */
  revoke(session: string, fence: bigint): number {
    const set = this.#bySession.get(session);
    if (set === undefined) return 0;
    let cut = 0;
    for (const c of set) {
      if (!fencedBy(c.version, fence)) continue;
      this.#stats.tcpFenced++;
      cut++;
      c.socket.destroy();
    }
    return cut;
  }

  /** Destroys every connection and closes the listening socket. Idempotent. */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    for (const c of this.#conns) c.socket.destroy();
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #onConnection(socket: net.Socket): void {
    const conn: Conn = { socket, session: undefined, version: undefined };
    this.#stats.tcpConnections++;
    this.#stats.tcpOpen++;
    this.#conns.add(conn);
    socket.setNoDelay(true);
    socket.on('error', () => socket.destroy()); // resets: 'close' follows
    socket.on('close', () => this.#onClose(conn));
    socket.setTimeout(this.#opts.preambleTimeoutMs ?? DEFAULT_PREAMBLE_TIMEOUT_MS, () => socket.destroy());
    let buf: Buffer = Buffer.alloc(0);
    const onEnd = (): void => {
      socket.destroy(); // ended before its preamble
    };
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const p = parseStreamPreamble(buf);
      if (p.kind === 'need') return;
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.pause();
      socket.setTimeout(0);
      this.#opened(conn, p, buf);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
  }

  #opened(conn: Conn, p: Exclude<StreamPreamble, { kind: 'need' }>, buf: Buffer): void {
    const { socket } = conn;
    const stats = this.#stats;
    if (p.kind === 'local') {
      stats.tcpLocal++;
      socket.destroy();
      return;
    }
    if (p.kind !== 'ok') {
      stats.tcpMalformed++;
      socket.destroy();
      return;
    }
    const h = p.proxy;
    const proxy: NodeProxyInfo | undefined =
      h === undefined ? undefined : { version: h.version, seq: h.seq, flags: h.flags ?? 0, owner: h.owner, src: h.src };
    const session = sessionIdHex(p.sessionId);
    const out = this.#opts.core.openStream(session, {
      type: p.type,
      sessionId: p.sessionId,
      header: p.header,
      ...(p.mac === undefined ? {} : { mac: p.mac }),
      ...(proxy === undefined ? {} : { proxy }),
    });
    stats.sessions = this.#opts.core.sessions;
    const rec = { session, proxy, dst: h?.dst, type: p.type };
    if (out.kind === 'unexpected') {
      stats.tcpMalformed++;
      socket.destroy();
      return;
    }
    if (out.kind === 'dropped') {
      stats[DROP_COUNTER[out.drop]]++;
      this.#opts.record({ ...rec, accepted: false, drop: out.drop });
      socket.destroy(); // nothing written
      return;
    }
    this.#opts.record({ ...rec, accepted: true });
    if (out.bound) stats.tcpBinds++;
    conn.session = session;
    conn.version = proxy?.version;
    let set = this.#bySession.get(session);
    if (set === undefined) this.#bySession.set(session, (set = new Set()));
    set.add(conn);
    for (const b of out.preface) socket.write(b);
    if (out.end) {
      // CLOSE: end our side; whatever else the client sends is read and discarded.
      socket.end();
      socket.resume();
      return;
    }
    const rest = buf.subarray(p.length);
    if (rest.length > 0) socket.unshift(rest);
    // The echo: pipe pauses reading while the write side is over its high-water mark and ends the write
    // side once the client's side has ended and everything before it was written (half-close).
    socket.pipe(socket);
    socket.on('data', (chunk: Buffer) => {
      stats.tcpBytesEchoed += chunk.length;
      if (socket.writableLength > stats.tcpMaxQueued) stats.tcpMaxQueued = socket.writableLength;
    });
  }

  #onClose(conn: Conn): void {
    this.#stats.tcpOpen--;
    this.#conns.delete(conn);
    if (conn.session === undefined) return;
    const set = this.#bySession.get(conn.session);
    if (set === undefined) return;
    set.delete(conn);
    if (set.size === 0) this.#bySession.delete(conn.session);
  }
}
