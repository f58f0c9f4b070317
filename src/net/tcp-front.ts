// The TCP front: accepts client connections, reads the JV1 header within a time and byte budget, lets
// the core decide (admit, reattach, reject), connects to the owner with a PROXY v2 STREAM header and
// pipes both ways with backpressure, half-close and an idle timeout: in the kernel with splice(2) when
// the native pump is there (src/net/native/tcp_splice.c; the connection is handed over once everything
// the front reads — preamble, BIND — is read and the header written), else through Node streams. A
// reconnect of a live session is a reattach: bound only once the owner BINDs it, then the old connection
// is closed. It never decides ownership itself; it follows the transitions Ownership reports (pause on
// freeze, close on transfer).
import net from 'node:net';
import { once } from 'node:events';
import { decodeJv1, encodeReject, sessionIdHex } from '../codec/jv1.js';
import { sameTransport, transportKey } from '../codec/ip.js';
import { createPpv2Prefix, ppv2HeaderLength, PP2_FLAG, writePpv2 } from '../codec/ppv2.js';
import type { CodecVerdict, StreamCodec } from '../codec/codec.js';
import { PacketType, RejectReason, type Transport } from '../codec/types.js';
import type { DirectorCore, TcpOutcome } from '../director/core.js';
import { DropReason, TCP_LISTENER } from '../director/outcomes.js';
import type { Ownership } from '../director/ownership.js';
import type { Logger } from '../obs/logger.js';
import { type DirectorStats, rejectLabel } from '../obs/stats.js';
import { LifecycleEvent, SessionState } from '../session/lifecycle.js';
import type { SessionRecord } from '../session/table.js';
import type { Clock } from '../util/clock.js';
import { TcpDir, TcpEnd, TcpStat, type NativeTcpBinding, type NativeTcpPump, type TcpEndCode } from './native/index.js';
import { handOver } from './native/tcp-pump.js';

export interface TcpFrontOptions {
  readonly listen: readonly Transport[];
  readonly nodes: readonly { id: string; address: Transport }[];
  readonly encapsulation: 'ppv2' | 'none';
  readonly preambleTimeoutMs: number;
  readonly preambleMaxBytes: number;
  readonly idleTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly bindTimeoutMs: number;
  readonly maxConnections: number;
  /** How each listener (same order as `listen`) reads the first bytes of a stream. */
  readonly codecs: readonly StreamCodec[];
  /** The native splice pump (`tcp.native`); null or absent: every connection is piped through Node streams. */
  readonly native?: NativeTcpBinding | null;
}

export interface TcpFrontDeps {
  readonly core: DirectorCore;
  readonly ownership: Ownership;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly stats: DirectorStats;
}

/** A stream verdict as the core's JV1 vocabulary: open → HELLO, session → DATA or CLOSE. */
function asJv1(v: CodecVerdict): { type: PacketType; sessionId: Uint8Array } | null {
  if (v.kind === 'open') return { type: PacketType.HELLO, sessionId: v.sessionId };
  if (v.kind === 'session') return { type: v.close ? PacketType.CLOSE : PacketType.DATA, sessionId: v.sessionId };
  return null;
}

interface Conn {
  /** Whether the client speaks JV1 (can read a REJECT). */
  jv1: boolean;
  readonly client: net.Socket;
  readonly src: Transport;
  /** The director address the connection arrived on (arrivedOn): the PROXY v2 destination. */
  readonly listener: Transport;
  upstream: net.Socket | null;
  session: SessionRecord | null;
  /** The owner the upstream connection goes to (set when bound). */
  owner: string | null;
  closed: boolean;
  /** The client closed or failed first (not the director, not the node). */
  clientLeft: boolean;
  /** Ended gracefully (#endGracefully): closing, never resumed. */
  ending: boolean;
  /** Until the preamble is read: closes the connection at tcp.preamble_timeout_ms. */
  preambleTimer: NodeJS.Timeout | null;
  /** Set once the connection is spliced by the native pump (the two sockets are then destroyed). */
  pump: NativeTcpPump | null;
  /** Pump counters (bytes read from client / node) already added to the stats, and the last activity. */
  seenIn: number;
  seenOut: number;
  lastActive: number;
}

/** Bytes of a BIND packet by address family (header 20 + version 8 + family 1 + address + port 2). */
const BIND_LEN = { 4: 35, 6: 47 } as const;
/** Refresh a TCP session's idle deadline at most this often (not on every chunk). */
const TOUCH_EVERY_MS = 1000;
/** How often spliced connections are looked at (byte counters → stats, session touch, idle timeout). */
const SWEEP_EVERY_MS = 1000;
/** A gracefully ended connection is closed after this long if the client does not close it first. */
const END_GRACE_MS = 2000;
/**
 * Capacity asked for the splice pump's pipes (the kernel's default is 64 KiB; best effort). Bigger pipes
 * move more per splice, so fewer wakeups: in bench/tcp.ts (a shared 2-core VM, noisy) 256 KiB and 1 MiB
 * gave 0.82–1.04× the direct throughput against 0.65–0.99× with 64 KiB, with less CPU per byte. A pipe
 * holds at most this much per direction of a connection whose reader is slow (kernel memory that TCP's
 * own limits do not count), hence not 1 MiB.
 */
const PIPE_BYTES = 256 * 1024;

/**
 * The director address a connection arrived on (the PROXY v2 destination, DESIGN §3): the socket's own
 * local address — on a wildcard listener (0.0.0.0, ::) the listener's address says nothing — or the
 * listener's when the socket no longer knows it. Pure.
 */
export function arrivedOn(listener: Transport, local: { readonly localAddress?: string | undefined; readonly localPort?: number | undefined; readonly localFamily?: string | undefined }): Transport {
  if (local.localAddress === undefined || local.localAddress === '' || local.localPort === undefined) return listener;
  return { family: local.localFamily === 'IPv6' ? 6 : local.localFamily === 'IPv4' ? 4 : listener.family, address: local.localAddress, port: local.localPort };
}

/** Whether `conn` is the session's bound transport: a TCP transport, from this connection's ip:port. */
function isTransportOf(rec: SessionRecord, conn: { readonly src: Transport }): boolean {
  return rec.listener === TCP_LISTENER && sameTransport(rec.transport, conn.src);
}

export class TcpFront {
  readonly #o: TcpFrontOptions;
  readonly #d: TcpFrontDeps;
  readonly #servers: { server: net.Server; address: Transport }[] = [];
  readonly #conns = new Set<Conn>();
  /** The connection each TCP-bound session is bound to. */
  readonly #bound = new Map<string, Conn>();
  readonly #nodes: Map<string, Transport>;
  readonly #ownerBytes = new Map<string, Buffer>();
  /** Connections the native pump splices (their counters are swept). */
  readonly #pumped = new Set<Conn>();
  #sweepTimer: NodeJS.Timeout | null = null;

  constructor(opts: TcpFrontOptions, deps: TcpFrontDeps) {
    this.#o = opts;
    this.#d = deps;
    this.#nodes = new Map(opts.nodes.map((n) => [n.id, n.address]));
    for (const n of opts.nodes) this.#ownerBytes.set(n.id, Buffer.from(n.id, 'utf8'));
    deps.ownership.onTransition((rec, note) => this.#onTransition(rec, note.event, note.cause));
    opts.native?.setPipeSize(PIPE_BYTES);
  }

  get addresses(): Transport[] {
    return this.#servers.map((s) => s.address);
  }

  get openConnections(): number {
    return this.#conns.size;
  }

  /** Which data path connections take once routed: `splice` (the native pump) or `stream` (Node streams). */
  get dataPath(): 'splice' | 'stream' {
    return this.#o.native != null ? 'splice' : 'stream';
  }

  /** Spliced connections open now. */
  get splicedConnections(): number {
    return this.#pumped.size;
  }

  /** Reads the native pump made by copying because a connection could not have a pipe (0 without the pump). */
  get spliceCopyReads(): number {
    return this.#o.native?.pipePool().copies ?? 0;
  }

  /** Adds the bytes spliced since the last look to the stats (a scrape calls it; so does the sweep). */
  syncBytes(): void {
    for (const c of this.#pumped) this.#account(c);
  }

  async start(): Promise<void> {
    for (const addr of this.#o.listen) {
      const codec = this.#o.codecs[this.#servers.length] as StreamCodec;
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false, noDelay: true }, (sock) => this.#onConnection(sock, entry.address, codec));
      const entry = { server, address: addr };
      server.on('error', (err) => this.#d.logger.error({ err, listener: transportKey(addr) }, 'tcp listener error'));
      server.listen({ port: addr.port, host: addr.address, ipv6Only: addr.family === 6, backlog: 4096 });
      await once(server, 'listening');
      const a = server.address() as net.AddressInfo;
      entry.address = { family: addr.family, address: a.address, port: a.port };
      this.#servers.push(entry);
    }
  }

  async close(): Promise<void> {
    for (const c of this.#conns) this.#destroy(c);
    if (this.#sweepTimer !== null) clearInterval(this.#sweepTimer);
    this.#sweepTimer = null;
    await Promise.all(this.#servers.map((s) => new Promise<void>((resolve) => s.server.close(() => resolve()))));
  }

  #onConnection(client: net.Socket, listener: Transport, codec: StreamCodec): void {
    const stats = this.#d.stats;
    if (this.#conns.size >= this.#o.maxConnections) {
      stats.tcpRefused.inc('max_connections');
      client.destroy();
      return;
    }
    stats.tcpAccepted++;
    // A client that reset the connection before it was accepted has no address left to read: nothing to
    // route, nor to answer.
    if (client.remoteAddress === undefined || client.remotePort === undefined) {
      stats.tcpRefused.inc('client_gone');
      client.destroy();
      return;
    }
    const src: Transport = { family: client.remoteFamily === 'IPv6' ? 6 : 4, address: client.remoteAddress, port: client.remotePort };
    const conn: Conn = {
      jv1: codec.name === 'jv1',
      client,
      src,
      listener: arrivedOn(listener, client),
      upstream: null,
      session: null,
      owner: null,
      closed: false,
      clientLeft: false,
      ending: false,
      preambleTimer: null,
      pump: null,
      seenIn: 0,
      seenOut: 0,
      lastActive: 0,
    };
    this.#conns.add(conn);
    // Gone before its preamble was complete (nothing decided yet, so nothing else counts it).
    const goneEarly = (): void => {
      if (conn.preambleTimer !== null && !conn.closed) stats.tcpRefused.inc('client_gone');
    };
    const clientGone = (): void => {
      goneEarly();
      if (!conn.closed) conn.clientLeft = true;
      this.#destroy(conn);
    };
    client.on('error', clientGone);
    client.on('close', clientGone);
    let buf: Buffer = Buffer.alloc(0);
    // Cleared by #destroy: a connection that closed early is not a preamble timeout later.
    conn.preambleTimer = setTimeout(() => {
      conn.preambleTimer = null;
      stats.tcpPreambleTimeouts++;
      stats.tcpRefused.inc('preamble_timeout');
      this.#destroy(conn);
    }, this.#o.preambleTimeoutMs);
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const d = codec.preamble(buf, this.#o.preambleMaxBytes);
      if (d.kind === 'need') return;
      if (conn.preambleTimer !== null) clearTimeout(conn.preambleTimer);
      conn.preambleTimer = null;
      client.off('data', onData);
      client.pause();
      if (d.kind !== 'ok') {
        stats.tcpRefused.inc(d.kind === 'malformed' ? `malformed_${d.reason}` : d.kind.replace('-', '_'));
        this.#destroy(conn);
        return;
      }
      stats.tcpBytesIn += buf.length;
      conn.jv1 = codec.name === 'jv1';
      const v = asJv1(d.verdict);
      if (v === null) {
        stats.tcpRefused.inc(d.verdict.kind === 'pinned' ? 'unpinned' : 'client_forbidden_type');
        this.#destroy(conn);
        return;
      }
      const out = this.#d.core.onTcpPreamble(v.type, v.sessionId, src, transportKey(src), buf.length, this.#d.clock.now());
      this.#flushExpired();
      void this.#decided(conn, out, buf).catch((err: unknown) => {
        stats.tcpRefused.inc('internal_error');
        this.#d.logger.warn({ err }, 'tcp connection failed');
        this.#destroy(conn);
      });
    };
    client.on('data', onData);
    client.on('end', () => {
      if (conn.upstream !== null) return;
      goneEarly();
      this.#destroy(conn); // ended before it was routed
    });
  }

  async #decided(conn: Conn, out: TcpOutcome, first: Buffer): Promise<void> {
    const stats = this.#d.stats;
    switch (out.kind) {
      case 'drop':
        stats.tcpRefused.inc(out.reason);
        this.#destroy(conn);
        return;
      case 'reject':
        this.#reject(conn, out.sessionId, out.reason, first.length);
        return;
      case 'admit': {
        const rec = out.session;
        const r = await this.#d.ownership.admit(rec, { answer: false });
        if (!r.ok) {
          this.#reject(conn, rec.idBytes, r.reason, first.length, r.countAs);
          return;
        }
        const owner = rec.owner;
        const version = rec.version;
        const up = await this.#connect(conn, owner);
        if (typeof up === 'string') {
          // The owner cannot be reached, or the client left (while the session was being admitted, or
          // while the front connected): the session never carried a byte; end it rather than strand it —
          // this very record (one ended meanwhile, perhaps admitted again since by another connection, is
          // left alone).
          const cause = up === 'upstream_connect' ? 'upstream_connect_failed' : up === 'client_gone' ? 'client_gone' : 'connection_closed';
          this.#d.ownership.terminateRecord(rec, cause, 'tcp');
          return;
        }
        // Transitions are followed only once the connection is bound: one that ran while the front was
        // connecting (a drain's freeze or transfer, an end) must not be missed.
        if (!this.#stillRoutable(conn, rec, owner, version)) return;
        try {
          this.#send(up, rec, conn, rec.version, 0, out.seq, first);
        } catch (err) {
          // Not one byte reached the owner: end the session rather than strand it (then said by the caller).
          this.#d.ownership.terminateRecord(rec, 'connection_closed', 'tcp');
          throw err;
        }
        this.#bind(conn, rec);
        this.#pipe(conn, up, rec, Buffer.alloc(0));
        return;
      }
      case 'reattach': {
        const rec = out.session;
        if (this.#o.encapsulation === 'none') {
          // Without PROXY v2 the owner cannot validate a new connection: never bind one blindly.
          stats.tcpRefused.inc('reattach_unsupported');
          this.#reject(conn, rec.idBytes, RejectReason.OWNERSHIP_CONFLICT, first.length);
          return;
        }
        const owner = rec.owner;
        const up = await this.#connect(conn, owner);
        if (typeof up === 'string') return;
        this.#send(up, rec, conn, out.version, PP2_FLAG.UNBOUND_SOURCE, out.seq, first);
        const bind = await this.#readBind(up);
        if (typeof bind === 'string') {
          stats.tcpRefused.inc(conn.clientLeft ? 'client_gone' : bind); // once per connection
          this.#destroy(conn);
          return;
        }
        const n = this.#d.core.onNode(owner, bind.packet, this.#d.clock.now());
        if (n.kind === 'conflict') {
          stats.nodeControl.inc('bind_conflict');
          this.#reject(conn, rec.idBytes, RejectReason.OWNERSHIP_CONFLICT, first.length);
          return;
        }
        if (n.kind === 'drop' && n.reason === DropReason.BIND_NOOP && isTransportOf(rec, conn)) {
          // A new connection from the very ip:port the session is bound to (its old connection dropped, and
          // the client, or its NAT, kept the port): the owner validated it, and the session's transport does
          // not change, so there is nothing to write; this connection takes the old one's place.
          stats.nodeControl.inc('rebind');
          if (!this.#stillRoutable(conn, rec, owner, out.version)) return;
          this.#bind(conn, rec);
          this.#pipe(conn, up, rec, bind.rest);
          return;
        }
        if (n.kind !== 'bind') {
          stats.tcpRefused.inc(n.kind === 'drop' ? n.reason : 'bind_unexpected');
          if (n.kind === 'drop' && n.security !== undefined) this.#d.ownership.security(n.session ?? null, n.security, owner);
          this.#destroy(conn);
          return;
        }
        if (n.session !== rec) {
          // The owner answered this connection's reattach with a BIND of another session: nothing is bound.
          stats.tcpRefused.inc('bind_other_session');
          this.#d.ownership.security(rec.id, 'bind_for_other_session', owner, { bound_session: n.session.id });
          this.#destroy(conn);
          return;
        }
        if (!sameTransport(n.candidate.transport, conn.src)) {
          // The owner answered this connection's reattach with a BIND of another transport of the session
          // (a datagram's): binding it would leave this connection piped beside it. Nothing is bound.
          stats.tcpRefused.inc('bind_other_transport');
          this.#d.ownership.security(rec.id, 'bind_for_other_transport', owner, { bound_transport: n.candidate.key });
          this.#destroy(conn);
          return;
        }
        // The candidate of this ip:port is this connection, whatever protocol its last packet came over: a
        // datagram from the same ip:port (spoofable) must not make the owner's BIND of this stream bind a
        // datagram transport while the stream is piped.
        n.candidate.listener = TCP_LISTENER;
        stats.nodeControl.inc('bind');
        const r = await this.#d.ownership.reattach(n.session, n.candidate, n.version);
        if (!r.ok) {
          this.#reject(conn, rec.idBytes, r.reason === 'unavailable' ? RejectReason.STORE_UNAVAILABLE : RejectReason.OWNERSHIP_CONFLICT, first.length);
          return;
        }
        if (!this.#stillRoutable(conn, rec, owner, rec.version)) return;
        this.#bind(conn, rec);
        this.#pipe(conn, up, rec, bind.rest);
        return;
      }
    }
  }

  /**
   * After an await, before the connection is bound (until then the front does not follow the session's
   * transitions): whether `rec` is still live here, ATTACHED, owned by `owner` at `version`. If not — it
   * ended, a freeze or a transfer ran while the front connected — the connection is closed and counted
   * (`session_ended`, `session_moved`); the client reconnects and is routed by what the session is then.
   */
  #stillRoutable(conn: Conn, rec: SessionRecord, owner: string, version: bigint): boolean {
    if (conn.closed) return false;
    const live = this.#d.core.table.holds(rec) && rec.state !== SessionState.TERMINATED;
    if (live && rec.state === SessionState.ATTACHED && rec.owner === owner && rec.version === version) return true;
    this.#d.stats.tcpRefused.inc(live ? 'session_moved' : 'session_ended');
    this.#destroy(conn);
    return false;
  }

  /** Makes `conn` the session's connection; the one it had before is closed (one transport per session). */
  #bind(conn: Conn, rec: SessionRecord): void {
    conn.session = rec;
    conn.owner = rec.owner;
    const old = this.#bound.get(rec.id);
    this.#bound.set(rec.id, conn);
    if (old !== undefined && old !== conn) this.#endGracefully(old);
  }

  #pipe(conn: Conn, up: net.Socket, rec: SessionRecord, fromNode: Buffer): void {
    if (this.#o.native != null && this.#splice(conn, up, this.#o.native, fromNode)) return;
    const stats = this.#d.stats;
    const { client } = conn;
    if (fromNode.length > 0) {
      stats.tcpBytesOut += fromNode.length;
      client.write(fromNode);
    }
    let lastTouch = this.#d.clock.now();
    client.on('data', (chunk: Buffer) => {
      stats.tcpBytesIn += chunk.length;
      const now = this.#d.clock.now();
      if (now - lastTouch >= TOUCH_EVERY_MS && this.#d.core.table.holds(rec)) {
        lastTouch = now;
        this.#d.core.table.touch(rec, now);
        // Its bytes never reach the core: stray jump candidates are forgotten here instead.
        if (rec.candidates !== null) this.#d.core.forgetStaleCandidates(rec, now);
      }
    });
    up.on('data', (chunk: Buffer) => {
      stats.tcpBytesOut += chunk.length;
    });
    client.setTimeout(this.#o.idleTimeoutMs, () => {
      stats.tcpRefused.inc('idle_timeout');
      this.#destroy(conn);
    });
    // pipe() carries backpressure (a slow reader pauses the other side) and half-close (end → FIN).
    // Piped only once bound and ATTACHED (#stillRoutable): a freeze from here on is followed by #onTransition.
    up.pipe(client);
    client.pipe(up);
    client.resume();
  }

  /**
   * Hands the connection to the native pump: from here the kernel moves the bytes (splice) and the
   * sweep reads its counters. False (the stream path takes it, counted by reason) when it cannot be
   * handed over now — e.g. Node still holds queued writes, or no descriptor is left for the pump.
   */
  #splice(conn: Conn, up: net.Socket, binding: NativeTcpBinding, fromNode: Buffer): boolean {
    const h = handOver(binding, conn.client, up, { toClient: fromNode.length > 0 ? fromNode : undefined }, (code, errno, name) =>
      this.#pumpEnded(conn, code, errno, name),
    );
    if (!h.ok) {
      this.#d.stats.tcpSpliceFallbacks.inc(h.reason);
      this.#d.logger.debug({ reason: h.reason, client: transportKey(conn.src) }, 'tcp connection not spliced: using streams');
      return false;
    }
    conn.pump = h.pump;
    conn.lastActive = this.#d.clock.now();
    // As the stream path counts them: bytes received from each side (Node had read some already).
    this.#d.stats.tcpBytesIn += h.tookFromClient;
    this.#d.stats.tcpBytesOut += h.tookFromUpstream + fromNode.length;
    this.#pumped.add(conn);
    if (this.#sweepTimer === null) {
      this.#sweepTimer = setInterval(() => this.#sweep(), SWEEP_EVERY_MS);
      this.#sweepTimer.unref();
    }
    return true;
  }

  /** Bytes the pump moved since the last look → stats; returns whether any moved. */
  #account(conn: Conn): { inBytes: number; outBytes: number } {
    const st = (conn.pump as NativeTcpPump).stats;
    const inBytes = (st[TcpStat.IN_READ] as number) - conn.seenIn;
    const outBytes = (st[TcpStat.OUT_READ] as number) - conn.seenOut;
    conn.seenIn += inBytes;
    conn.seenOut += outBytes;
    this.#d.stats.tcpBytesIn += inBytes;
    this.#d.stats.tcpBytesOut += outBytes;
    return { inBytes, outBytes };
  }

  /** Spliced connections, once a second: bytes to the stats, the session's idle deadline, the idle timeout. */
  #sweep(): void {
    const now = this.#d.clock.now();
    for (const conn of this.#pumped) {
      const { inBytes, outBytes } = this.#account(conn);
      const rec = conn.session;
      // The session's bytes never reach the core: its stray jump candidates are forgotten here instead.
      if (rec !== null && rec.candidates !== null && this.#d.core.table.holds(rec)) this.#d.core.forgetStaleCandidates(rec, now);
      if (inBytes + outBytes > 0) {
        conn.lastActive = now;
        if (inBytes > 0 && rec !== null && this.#d.core.table.holds(rec)) this.#d.core.table.touch(rec, now);
      } else if (now - conn.lastActive >= this.#o.idleTimeoutMs) {
        this.#d.stats.tcpRefused.inc('idle_timeout');
        this.#destroy(conn);
      }
    }
    if (this.#pumped.size === 0 && this.#sweepTimer !== null) {
      clearInterval(this.#sweepTimer);
      this.#sweepTimer = null;
    }
  }

  /** The pump ended the connection by itself: both sides closed, an error, or the end of a graceful end. */
  #pumpEnded(conn: Conn, code: TcpEndCode, errno: number, name: string): void {
    if (code === TcpEnd.ERROR) this.#d.logger.debug({ errno, code: name, client: transportKey(conn.src) }, 'spliced tcp connection failed');
    this.#destroy(conn);
  }

  #send(up: net.Socket, rec: SessionRecord, conn: Conn, version: bigint, flags: number, seq: number, first: Buffer): void {
    if (this.#o.encapsulation === 'none') {
      up.write(first);
      return;
    }
    const owner = this.#ownerBytes.get(rec.owner) ?? Buffer.from(rec.owner, 'utf8');
    const prefix = createPpv2Prefix('STREAM', conn.src, conn.listener);
    const header = Buffer.allocUnsafe(ppv2HeaderLength(prefix, owner));
    writePpv2(header, prefix, rec.idBytes, version, owner, flags, seq);
    up.write(Buffer.concat([header, first]));
  }

  /**
   * A connection to the owner for `conn`, or why not (counted, `conn` destroyed): `client_gone` (the client
   * left, before or while connecting), `upstream_connect` (no address for the owner, refused, timed out),
   * `closed` (the front closed it meanwhile).
   */
  async #connect(conn: Conn, nodeId: string): Promise<net.Socket | 'client_gone' | 'upstream_connect' | 'closed'> {
    const addr = this.#nodes.get(nodeId);
    if (conn.closed) {
      // Gone before the connect began (e.g. while its session was being admitted): counted here, once.
      if (!conn.clientLeft) return 'closed';
      this.#d.stats.tcpRefused.inc('client_gone');
      return 'client_gone';
    }
    if (addr === undefined) {
      // An owner this front has no address for (a node known to the ring but not to the TCP front's config).
      this.#d.logger.warn({ node: nodeId }, 'tcp: no address for the owner');
      this.#d.stats.tcpRefused.inc('upstream_connect');
      this.#destroy(conn);
      return 'upstream_connect';
    }
    const up = net.connect({ host: addr.address, port: addr.port, family: addr.family, allowHalfOpen: true, noDelay: true });
    conn.upstream = up;
    up.on('error', () => this.#destroy(conn));
    up.on('close', () => this.#destroy(conn));
    // Settles on the connect, the timeout, or the socket's close whatever closed it (an error, or the
    // client leaving meanwhile: #destroy drops the upstream without an error, which `once` never sees).
    const how = await new Promise<'connect' | 'timeout' | 'closed'>((resolve) => {
      const timer = setTimeout(() => resolve('timeout'), this.#o.connectTimeoutMs);
      const settle = (v: 'connect' | 'closed'): void => {
        clearTimeout(timer);
        up.off('connect', onConnect);
        up.off('close', onClose);
        resolve(v);
      };
      const onConnect = (): void => settle('connect');
      const onClose = (): void => settle('closed');
      up.once('connect', onConnect);
      up.once('close', onClose);
    });
    if (how === 'connect' && !conn.closed) return up;
    // The client gone first (before or while connecting) is not the node's failure.
    const why = conn.clientLeft ? 'client_gone' : 'upstream_connect';
    this.#d.stats.tcpRefused.inc(why);
    this.#destroy(conn);
    return why;
  }

  /**
   * The node's first bytes on a reattach: a JV1 BIND, then (maybe) the first echoed bytes; or why not
   * (`bind_timeout`: none within tcp.bind_timeout_ms; `bind_missing`: the node closed, or sent something else).
   */
  async #readBind(up: net.Socket): Promise<{ packet: Buffer; rest: Buffer } | 'bind_timeout' | 'bind_missing'> {
    return new Promise((resolve) => {
      let buf: Buffer = Buffer.alloc(0);
      const done = (v: { packet: Buffer; rest: Buffer } | 'bind_timeout' | 'bind_missing'): void => {
        clearTimeout(timer);
        up.off('data', onData);
        up.off('close', onClose);
        up.off('end', onClose);
        if (typeof v !== 'string') up.pause();
        resolve(v);
      };
      const onClose = (): void => done('bind_missing');
      const onData = (chunk: Buffer): void => {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        if (buf.length < 29) return;
        // The family byte (offset 28) says how long the BIND is; then the whole packet is decoded.
        const fam = buf[28];
        const len = fam === 4 ? BIND_LEN[4] : fam === 6 ? BIND_LEN[6] : 0;
        if (len === 0 || buf[3] !== PacketType.BIND) return done('bind_missing');
        if (buf.length < len) return;
        const d = decodeJv1(buf.subarray(0, len));
        if (d.kind !== 'ok' || d.value.type !== PacketType.BIND) return done('bind_missing');
        done({ packet: buf.subarray(0, len), rest: buf.subarray(len) });
      };
      const timer = setTimeout(() => done('bind_timeout'), this.#o.bindTimeoutMs);
      up.on('data', onData);
      // The owner refusing the connection ends it (FIN) without a BIND.
      up.once('end', onClose);
      up.once('close', onClose);
    });
  }

  #reject(conn: Conn, sessionId: Uint8Array, reason: RejectReason, received: number, countAs?: string): void {
    const stats = this.#d.stats;
    // Never more bytes than the client sent (no amplification), as over UDP; and only to JV1 clients.
    const reply = conn.jv1 ? encodeReject(sessionId, reason, '', received) : undefined;
    if (reply !== undefined && !conn.closed) {
      stats.rejectsSent.inc(countAs ?? rejectLabel(reason));
      stats.tcpRefused.inc(`reject_${rejectLabel(reason)}`);
      conn.client.end(reply);
      conn.upstream?.destroy();
      // A client that keeps its half open after the REJECT must not keep its place (tcp.max_connections):
      // the connection goes after the same grace as any other ended one.
      const t = setTimeout(() => this.#destroy(conn), END_GRACE_MS);
      t.unref();
      return;
    }
    stats.tcpRefused.inc(`reject_${rejectLabel(reason)}`);
    this.#destroy(conn);
  }

  /** Follows ownership: a frozen session's client stops sending; a transferred or ended one is closed. */
  #onTransition(rec: SessionRecord, event: string, cause: string): void {
    const conn = this.#bound.get(rec.id);
    if (conn === undefined || conn.session !== rec) return;
    const up = conn.upstream;
    switch (event) {
      case LifecycleEvent.FREEZE:
        if (conn.pump !== null) {
          conn.pump.pause(TcpDir.IN);
          return;
        }
        if (up !== null) conn.client.unpipe(up);
        conn.client.pause();
        return;
      case LifecycleEvent.RESUME:
        // With the owner this connection goes to (a migration that did not happen: its transfer aborted,
        // a stale freeze thawed, another director's migration cut short): the client sends again. After a
        // transfer the connection is ending (the client reconnects to the new owner).
        if (conn.ending || rec.owner !== conn.owner) return;
        if (conn.pump !== null) conn.pump.resume(TcpDir.IN);
        else if (up !== null) {
          conn.client.pipe(up);
          conn.client.resume();
        }
        return;
      case LifecycleEvent.REATTACH:
        // Still this connection (the reattach that bound it): nothing to do. Otherwise the session's
        // transport is now another one — datagrams, or a connection through another director — and this
        // connection is not it any more (one transport per session): it ends, and the session lives on.
        if (isTransportOf(rec, conn)) return;
        this.#bound.delete(rec.id);
        this.#endGracefully(conn);
        return;
      case LifecycleEvent.TRANSFER:
      case LifecycleEvent.CLOSE:
      case LifecycleEvent.EXPIRE:
      case LifecycleEvent.TERMINATE:
        // The client reconnects and lands on the (new) owner as a reattach.
        this.#endGracefully(conn);
        return;
      default:
        return;
    }
  }

  /** Ends the client side cleanly (FIN after pending writes) and drops the upstream. */
  #endGracefully(conn: Conn): void {
    if (conn.closed) return;
    conn.ending = true;
    if (conn.pump !== null) {
      // The pump drops the upstream, delivers what it had read from it, FINs the client and ends when the
      // client closes (then #pumpEnded destroys the connection), or at the grace timer below.
      conn.pump.finish();
      if (conn.pump.closed) return;
      const t = setTimeout(() => this.#destroy(conn), END_GRACE_MS);
      t.unref();
      return;
    }
    const up = conn.upstream;
    if (up !== null) {
      conn.client.unpipe(up);
      up.unpipe(conn.client);
      up.destroy();
    }
    conn.client.end();
    const t = setTimeout(() => this.#destroy(conn), END_GRACE_MS);
    t.unref();
  }

  #destroy(conn: Conn): void {
    if (conn.closed) return;
    conn.closed = true;
    if (conn.preambleTimer !== null) clearTimeout(conn.preambleTimer);
    conn.preambleTimer = null;
    this.#conns.delete(conn);
    if (conn.pump !== null) {
      this.#account(conn);
      this.#pumped.delete(conn);
      conn.pump.close();
    }
    if (conn.session !== null && this.#bound.get(conn.session.id) === conn) {
      this.#bound.delete(conn.session.id);
      // A session that can never be reattached (no PROXY v2 for its owner to validate a reconnect,
      // or a client protocol that reconnects with a new session id) ends with its connection.
      // This very record: one ended meanwhile (its connection still ending) is not confused with a session
      // of the same id admitted since.
      if (!conn.jv1 || this.#o.encapsulation === 'none') this.#d.ownership.terminateRecord(conn.session, 'connection_closed', 'tcp');
    }
    conn.client.destroy();
    conn.upstream?.destroy();
  }

  #flushExpired(): void {
    const list = this.#d.core.expiredOnArrival;
    if (list.length === 0) return;
    for (const n of list.splice(0)) this.#d.ownership.ended(n.session, n.transition);
  }

  /** For tests and the admin view: whether a session has a live TCP connection. */
  hasConnection(id: Uint8Array | string): boolean {
    return this.#bound.has(typeof id === 'string' ? id : sessionIdHex(id));
  }
}
