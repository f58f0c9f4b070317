// The UDP data path shell: listener sockets toward clients, one connected upstream socket per node,
// the sweep tick. It performs the effects DirectorCore decides (forward, hold, reject, relay, drop),
// hands transitions to Ownership, counts each outcome. It never decides routing itself.
import dgram from 'node:dgram';
import { once } from 'node:events';
import { encodeReject, encodeRevoke } from '../codec/jv1.js';
import { transportKey } from '../codec/ip.js';
import { createPpv2Prefix, ppv2HeaderLength, writePpv2 } from '../codec/ppv2.js';
import { RejectReason, type Transport } from '../codec/types.js';
import type { Logger } from '../obs/logger.js';
import { type DirectorStats, rejectLabel } from '../obs/stats.js';
import type { Candidate, SessionRecord } from '../session/table.js';
import type { Clock } from '../util/clock.js';
import { type ClientOutcome, type DirectorCore, type Forward, TCP_LISTENER, type TransitionNote } from './core.js';
import type { DataPath, Ownership } from './ownership.js';

export interface DirectorOptions {
  readonly directorId: string;
  readonly listen: readonly Transport[];
  readonly nodes: readonly { id: string; address: Transport }[];
  readonly encapsulation: 'ppv2' | 'none';
  readonly sweepIntervalMs?: number;
  /** SO_RCVBUF / SO_SNDBUF for every socket (0 = the system default). */
  readonly recvBufferBytes?: number;
  readonly sendBufferBytes?: number;
}

export interface DirectorDeps {
  readonly core: DirectorCore;
  readonly ownership: Ownership;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly stats: DirectorStats;
}

interface Listener {
  readonly socket: dgram.Socket;
  address: Transport;
}

interface Upstream {
  readonly nodeId: string;
  readonly socket: dgram.Socket;
  readonly ownerBytes: Buffer;
  readonly onSent: (err: Error | null) => void;
}

/** Transparent forwarding: a session's own socket toward its owner. */
interface SessionSocket {
  readonly socket: dgram.Socket;
  readonly node: string;
  readonly rec: SessionRecord;
  readonly address: string;
  readonly port: number;
}

/** Per-session cache of the PROXY v2 address block for the bound transport and listener. */
interface PrefixCache {
  key: string;
  listener: number;
  prefix: Buffer;
}

function socketType(family: 4 | 6): 'udp4' | 'udp6' {
  return family === 6 ? 'udp6' : 'udp4';
}

export class UdpDirector implements DataPath {
  readonly #opts: DirectorOptions;
  readonly #d: DirectorDeps;
  readonly #core: DirectorCore;
  readonly #own: Ownership;
  readonly #listeners: Listener[] = [];
  readonly #upstreams = new Map<string, Upstream>();
  /** Transparent forwarding: each session's own upstream socket. */
  readonly #perSession = new Map<string, SessionSocket>();
  readonly #nodeAddr: Map<string, Transport>;
  #tick: NodeJS.Timeout | null = null;
  #closed = false;
  readonly #onClientSent: (err: Error | null) => void;

  constructor(opts: DirectorOptions, deps: DirectorDeps) {
    this.#opts = opts;
    this.#d = deps;
    this.#core = deps.core;
    this.#own = deps.ownership;
    this.#onClientSent = (err) => {
      if (err) this.#d.stats.sendErrors.inc('client');
    };
    deps.ownership.attach(this);
    this.#nodeAddr = new Map(opts.nodes.map((n) => [n.id, n.address]));
    // A session's own upstream socket lives as long as the session keeps its owner.
    deps.ownership.onTransition((rec, note) => {
      if (note.toOwner !== note.fromOwner || note.toOwner === null) this.#closeSessionSocket(rec.id);
    });
  }

  /** The bound listener addresses (ports resolved when the config said 0). */
  get addresses(): Transport[] {
    return this.#listeners.map((l) => l.address);
  }

  async start(): Promise<void> {
    for (const n of this.#opts.nodes) await this.#openUpstream(n.id, n.address);
    for (const [i, addr] of this.#opts.listen.entries()) await this.#openListener(i, addr);
    const every = this.#opts.sweepIntervalMs ?? 250;
    this.#tick = setInterval(() => this.#sweep(), every);
    this.#tick.unref();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#tick) clearInterval(this.#tick);
    for (const id of [...this.#perSession.keys()]) this.#closeSessionSocket(id);
    const all = [...this.#listeners.map((l) => l.socket), ...[...this.#upstreams.values()].map((u) => u.socket)];
    await Promise.all(all.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  async #openListener(index: number, addr: Transport): Promise<void> {
    const socket = dgram.createSocket({ type: socketType(addr.family), ipv6Only: addr.family === 6 });
    const l: Listener = { socket, address: addr };
    socket.on('message', (msg, rinfo) => this.#onClient(index, msg, rinfo));
    socket.on('error', (err) => this.#d.logger.error({ err, listener: transportKey(addr) }, 'listener socket error'));
    socket.bind(addr.port, addr.address);
    await once(socket, 'listening');
    this.#tune(socket);
    const a = socket.address();
    l.address = { family: addr.family, address: a.address, port: a.port };
    this.#listeners.push(l);
  }

  async #openUpstream(nodeId: string, addr: Transport): Promise<void> {
    const socket = dgram.createSocket({ type: socketType(addr.family) });
    const stats = this.#d.stats;
    const up: Upstream = {
      nodeId,
      socket,
      ownerBytes: Buffer.from(nodeId, 'utf8'),
      onSent: (err) => {
        if (err) stats.sendErrors.inc('node');
      },
    };
    // A connected socket only receives from the node's own address, so a reply's source is the node.
    socket.on('message', (msg) => this.#onNode(up, msg));
    socket.on('error', (err) => this.#d.logger.debug({ err, node: nodeId }, 'upstream socket error'));
    socket.bind(0, addr.family === 6 ? '::' : '0.0.0.0');
    await once(socket, 'listening');
    this.#tune(socket);
    socket.connect(addr.port, addr.address);
    await once(socket, 'connect');
    this.#upstreams.set(nodeId, up);
  }

  /** Bigger socket buffers absorb bursts while the event loop is busy (the kernel caps them). */
  #tune(socket: dgram.Socket): void {
    try {
      if ((this.#opts.recvBufferBytes ?? 0) > 0) socket.setRecvBufferSize(this.#opts.recvBufferBytes as number);
      if ((this.#opts.sendBufferBytes ?? 0) > 0) socket.setSendBufferSize(this.#opts.sendBufferBytes as number);
    } catch (err) {
      this.#d.logger.warn({ err }, 'could not set socket buffer sizes; using the system default');
    }
  }

  #onClient(listener: number, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const stats = this.#d.stats;
    stats.clientReceived++;
    stats.clientReceivedBytes += msg.length;
    const src: Transport = { family: rinfo.family === 'IPv6' ? 6 : 4, address: rinfo.address, port: rinfo.port };
    const out = this.#core.onClient(msg, src, transportKey(src), listener, this.#d.clock.now());
    this.#flushExpired();
    if (this.#core.restarted.length > 0) {
      for (const old of this.#core.restarted.splice(0)) this.#own.terminate(old.id, 'client_restarted', this.#opts.directorId);
    }
    switch (out.kind) {
      case 'forward':
        stats.forwarded++;
        if (out.transition !== null) this.#own.ended(out.session, out.transition);
        this.forward(out);
        return;
      case 'admit':
        stats.held++;
        void this.#own.admit(out.session);
        return;
      case 'hold':
        stats.held++;
        return;
      case 'reject':
        stats.clientRejected++;
        this.#sendReject(out.sessionId, out.reason, src, listener, msg.length);
        return;
      case 'drop':
        stats.clientDropped.inc(out.reason);
        if (out.detail !== undefined && out.reason === 'malformed') stats.malformed.inc(out.detail);
        return;
    }
  }

  /** DataPath: sends a decided forward to its node, behind a PROXY v2 header. */
  forward(f: Forward): void {
    const up = this.#upstreams.get(f.node);
    if (up === undefined) {
      this.#d.stats.sendErrors.inc('node');
      return;
    }
    if (this.#opts.encapsulation === 'none') {
      // Transparent forwarding: the original bytes only, from the session's own upstream socket, so
      // the node sees one stable peer per session and its replies map back to the session.
      this.#d.stats.forwardedBytes += f.msg.length;
      const ss = this.#sessionSocket(f.session, f.node, up);
      ss.socket.send(f.msg, ss.port, ss.address, up.onSent);
      return;
    }
    const rec = f.session;
    const prefix = this.#prefixFor(rec, f.src, f.listener);
    const header = Buffer.allocUnsafe(ppv2HeaderLength(prefix, up.ownerBytes));
    writePpv2(header, prefix, rec.idBytes, f.version, up.ownerBytes, f.flags, f.seq);
    this.#d.stats.forwardedBytes += header.length + f.msg.length;
    up.socket.send([header, f.msg], up.onSent);
  }

  /** Upstream sockets open for transparent forwarding (one per session; bounded by session.max). */
  get sessionSockets(): number {
    return this.#perSession.size;
  }

  #sessionSocket(rec: SessionRecord, node: string, up: Upstream): SessionSocket {
    const have = this.#perSession.get(rec.id);
    if (have !== undefined && have.node === node && have.rec === rec) return have;
    if (have !== undefined) this.#closeSessionSocket(rec.id);
    const addr = this.#nodeAddr.get(node) as Transport;
    const socket = dgram.createSocket({ type: socketType(addr.family) });
    const ss: SessionSocket = { socket, node, rec, address: addr.address, port: addr.port };
    socket.on('error', (err) => this.#d.logger.debug({ err, node }, 'session upstream socket error'));
    socket.on('message', (msg, rinfo) => {
      // Only the node this socket was opened toward may answer on it.
      if (rinfo.port !== addr.port || rinfo.address !== addr.address) {
        this.#d.stats.nodeDropped.inc('wrong_source');
        return;
      }
      this.#onSessionReply(ss, up, msg);
    });
    socket.bind(0, addr.family === 6 ? '::' : '0.0.0.0');
    this.#perSession.set(rec.id, ss);
    return ss;
  }

  #closeSessionSocket(id: string): void {
    const ss = this.#perSession.get(id);
    if (ss === undefined) return;
    this.#perSession.delete(id);
    try {
      ss.socket.close();
    } catch {
      // already closed
    }
  }

  /** A reply on a session's own upstream socket: the bytes are the backend's, relayed as they are. */
  #onSessionReply(ss: SessionSocket, up: Upstream, msg: Buffer): void {
    const stats = this.#d.stats;
    stats.nodeReceived.inc(up.nodeId);
    stats.nodeReceivedBytes += msg.length;
    const out = this.#core.onSessionReply(ss.rec, up.nodeId, msg, this.#d.clock.now());
    this.#flushExpired();
    if (out.kind === 'drop') {
      stats.nodeDropped.inc(out.reason);
      return;
    }
    this.#relay(out.session, out.transition, up.nodeId, msg);
  }

  /** A node's reply to the session's bound client transport (a node CLOSE has ended the session). */
  #relay(rec: SessionRecord, transition: TransitionNote | null, nodeId: string, msg: Buffer): void {
    const stats = this.#d.stats;
    if (transition !== null) this.#own.ended(rec, transition, nodeId);
    if (rec.listener === TCP_LISTENER) {
      // A TCP session's replies travel on its connection, never as datagrams.
      stats.nodeDropped.inc('tcp_session');
      return;
    }
    stats.relayed++;
    stats.relayedBytes += msg.length;
    this.#listenerSocket(rec.listener).send(msg, rec.transport.port, rec.transport.address, this.#onClientSent);
  }

  /** DataPath: replies held during a reattach go to the transport that is bound now. */
  relayHeld(rec: SessionRecord, replies: Buffer[]): void {
    if (this.#d.core.table.get(rec.id) !== rec) return;
    for (const msg of replies) this.#relay(rec, null, rec.owner, msg);
  }

  /** DataPath: a REJECT for a HELLO whose admission failed in the store. */
  answer(out: ClientOutcome, rec: SessionRecord): void {
    if (out.kind === 'reject') this.#sendReject(out.sessionId, out.reason, rec.transport, rec.listener, Infinity);
    else if (out.kind === 'drop') this.#d.stats.clientDropped.inc(out.reason);
  }

  /** DataPath: REVOKE(version) to a node that no longer owns `rec`. */
  revoke(rec: SessionRecord, node: string, version: bigint): void {
    const up = this.#upstreams.get(node);
    if (up === undefined) return;
    const body = encodeRevoke(rec.idBytes, version);
    if (this.#opts.encapsulation === 'none') {
      up.socket.send(body, up.onSent);
      return;
    }
    const prefix = this.#prefixFor(rec, rec.transport, rec.listener);
    const header = Buffer.allocUnsafe(ppv2HeaderLength(prefix, up.ownerBytes));
    writePpv2(header, prefix, rec.idBytes, version, up.ownerBytes, 0, rec.nextSeq++);
    up.socket.send([header, body], up.onSent);
  }

  /** DataPath: a REJECT to an unbound transport, never more than 3× the bytes it sent us. */
  rejectCandidate(rec: SessionRecord, c: Candidate, reason: RejectReason): void {
    if (c.listener === TCP_LISTENER) return; // a TCP candidate is answered on its connection
    const reply = encodeReject(rec.idBytes, reason);
    if (reply === undefined || !this.#core.chargeCandidate(c, reply.length)) {
      this.#d.stats.rejectsSuppressed++;
      return;
    }
    this.#d.stats.rejectsSent.inc(rejectLabel(reason));
    this.#d.stats.relayedBytes += reply.length;
    this.#listenerSocket(c.listener).send(reply, c.transport.port, c.transport.address, this.#onClientSent);
  }

  #sendReject(sessionId: Uint8Array, reason: RejectReason, to: Transport, listener: number, maxLen: number): void {
    const stats = this.#d.stats;
    const reply = encodeReject(sessionId, reason, '', maxLen);
    if (reply === undefined) {
      stats.clientDropped.inc('reject_too_small');
      return;
    }
    stats.rejectsSent.inc(rejectLabel(reason));
    stats.relayedBytes += reply.length;
    this.#listenerSocket(listener).send(reply, to.port, to.address, this.#onClientSent);
  }

  /** The PROXY v2 address block: cached per session for its bound transport, fresh for a jump candidate. */
  #prefixFor(rec: SessionRecord, src: Transport, listener: number): Buffer {
    // A TCP-bound session (REVOKE) names the first UDP listener as the PROXY destination.
    const dst = (this.#listeners[listener] ?? (this.#listeners[0] as Listener)).address;
    const key = src === rec.transport ? rec.transportKey : transportKey(src);
    if (key !== rec.transportKey) return createPpv2Prefix('DGRAM', src, dst);
    const c = rec.shellCache as PrefixCache | undefined;
    if (c !== undefined && c.key === key && c.listener === listener) return c.prefix;
    const prefix = createPpv2Prefix('DGRAM', src, dst);
    rec.shellCache = { key, listener, prefix } satisfies PrefixCache;
    return prefix;
  }

  #onNode(up: Upstream, msg: Buffer): void {
    const stats = this.#d.stats;
    stats.nodeReceived.inc(up.nodeId);
    stats.nodeReceivedBytes += msg.length;
    const out = this.#core.onNode(up.nodeId, msg, this.#d.clock.now());
    this.#flushExpired();
    switch (out.kind) {
      case 'drop':
        stats.nodeDropped.inc(out.reason);
        if (out.reason === 'malformed' && out.detail !== undefined) stats.malformed.inc(out.detail);
        if (out.security !== undefined) this.#own.security(out.session ?? null, out.security, up.nodeId);
        return;
      case 'held-reply':
        stats.nodeControl.inc('held_reply');
        return;
      case 'revoke-ack':
        stats.nodeControl.inc('revoke_ack');
        this.#own.onRevokeAck(out.session, out.version, up.nodeId);
        return;
      case 'bind':
        stats.nodeControl.inc('bind');
        void this.#own.reattach(out.session, out.candidate, out.version);
        return;
      case 'conflict':
        stats.nodeControl.inc('bind_conflict');
        this.rejectCandidate(out.session, out.candidate, RejectReason.OWNERSHIP_CONFLICT);
        return;
      case 'relay':
        this.#relay(out.session, out.transition, up.nodeId, msg);
        return;
    }
  }

  #listenerSocket(i: number): dgram.Socket {
    return (this.#listeners[i] as Listener).socket;
  }

  #sweep(): void {
    const now = this.#d.clock.now();
    // Idle sessions end in the store first (once in a cluster), then here.
    this.#own.expireIdle(now);
    this.#core.sweepLimiters(now);
  }

  #flushExpired(): void {
    const list = this.#core.expiredOnArrival;
    if (list.length === 0) return;
    for (const n of list.splice(0)) this.#own.ended(n.session, n.transition);
  }
}
