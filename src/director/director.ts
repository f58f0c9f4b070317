// The UDP data path shell: listener sockets toward clients, one connected upstream socket per node,
// the sweep tick. It performs the effects DirectorCore decides (forward, reject, relay, drop), counts
// each outcome and audits transitions. It never decides routing itself.
import dgram from 'node:dgram';
import { once } from 'node:events';
import { encodeReject } from '../codec/jv1.js';
import { transportKey } from '../codec/ip.js';
import { createPpv2Prefix, ppv2HeaderLength, writePpv2 } from '../codec/ppv2.js';
import type { Transport } from '../codec/types.js';
import type { AuditSink } from '../obs/audit.js';
import type { Logger } from '../obs/logger.js';
import { type DirectorStats, rejectLabel } from '../obs/stats.js';
import type { SessionRecord } from '../session/table.js';
import type { Clock } from '../util/clock.js';
import { type ClientOutcome, DirectorCore, type ExpiredNote, type TransitionNote } from './core.js';
import type { Membership } from '../nodes/membership.js';

export interface DirectorOptions {
  readonly directorId: string;
  readonly listen: readonly Transport[];
  readonly encapsulation: 'ppv2' | 'none';
  readonly sweepIntervalMs?: number;
}

export interface DirectorDeps {
  readonly core: DirectorCore;
  readonly membership: Membership;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly audit: AuditSink;
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

/** Per-session cache of the PROXY v2 address block for the bound transport and listener. */
interface PrefixCache {
  key: string;
  listener: number;
  prefix: Buffer;
}

function socketType(family: 4 | 6): 'udp4' | 'udp6' {
  return family === 6 ? 'udp6' : 'udp4';
}

export class UdpDirector {
  readonly #opts: DirectorOptions;
  readonly #d: DirectorDeps;
  readonly #core: DirectorCore;
  readonly #listeners: Listener[] = [];
  readonly #upstreams = new Map<string, Upstream>();
  #tick: NodeJS.Timeout | null = null;
  #closed = false;
  readonly #onClientSent: (err: Error | null) => void;

  constructor(opts: DirectorOptions, deps: DirectorDeps) {
    this.#opts = opts;
    this.#d = deps;
    this.#core = deps.core;
    this.#onClientSent = (err) => {
      if (err) this.#d.stats.sendErrors.inc('client');
    };
  }

  /** The bound listener addresses (ports resolved when the config said 0). */
  get addresses(): Transport[] {
    return this.#listeners.map((l) => l.address);
  }

  async start(): Promise<void> {
    for (const n of this.#d.membership.list()) await this.#openUpstream(n.id, n.address);
    for (const [i, addr] of this.#opts.listen.entries()) await this.#openListener(i, addr);
    const every = this.#opts.sweepIntervalMs ?? 250;
    this.#tick = setInterval(() => this.#sweep(), every);
    this.#tick.unref();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#tick) clearInterval(this.#tick);
    const all = [...this.#listeners.map((l) => l.socket), ...[...this.#upstreams.values()].map((u) => u.socket)];
    await Promise.all(all.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  async #openListener(index: number, addr: Transport): Promise<void> {
    const socket = dgram.createSocket({ type: socketType(addr.family), ipv6Only: addr.family === 6, reuseAddr: false });
    const l: Listener = { socket, address: addr };
    socket.on('message', (msg, rinfo) => this.#onClient(index, msg, rinfo));
    socket.on('error', (err) => this.#d.logger.error({ err, listener: transportKey(addr) }, 'listener socket error'));
    socket.bind(addr.port, addr.address);
    await once(socket, 'listening');
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
    socket.on('message', (msg) => this.#onNode(up, msg));
    // A connected socket only receives from the node's own address, so a reply's source is the node.
    socket.on('error', (err) => this.#d.logger.warn({ err, node: nodeId }, 'upstream socket error'));
    socket.bind(0, addr.family === 6 ? '::' : '0.0.0.0');
    await once(socket, 'listening');
    socket.connect(addr.port, addr.address);
    await once(socket, 'connect');
    this.#upstreams.set(nodeId, up);
  }

  #onClient(listener: number, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const stats = this.#d.stats;
    stats.clientReceived++;
    stats.clientReceivedBytes += msg.length;
    const src: Transport = { family: rinfo.family === 'IPv6' ? 6 : 4, address: rinfo.address, port: rinfo.port };
    const key = transportKey(src);
    const out = this.#core.onClient(msg, src, key, listener, this.#d.clock.now());
    if (this.#core.expiredOnArrival.length > 0) this.#flushExpired(this.#core.expiredOnArrival.splice(0));
    switch (out.kind) {
      case 'forward':
        stats.forwarded++;
        if (out.transition !== null) this.#onTransition(out.session, out.transition);
        this.#forward(out, msg, src, key, listener);
        return;
      case 'reject': {
        const reply = encodeReject(out.sessionId, out.reason, '', msg.length);
        if (reply === undefined) {
          stats.clientDropped.inc('reject_too_small');
          return;
        }
        stats.rejectsSent.inc(rejectLabel(out.reason));
        stats.relayedBytes += reply.length;
        this.#listenerSocket(listener).send(reply, src.port, src.address, this.#onClientSent);
        return;
      }
      case 'drop':
        stats.clientDropped.inc(out.reason);
        if (out.detail !== undefined && out.reason === 'malformed') stats.malformed.inc(out.detail);
        return;
    }
  }

  #forward(out: Extract<ClientOutcome, { kind: 'forward' }>, msg: Buffer, src: Transport, key: string, listener: number): void {
    const rec = out.session;
    const up = this.#upstreams.get(rec.owner);
    if (up === undefined) {
      // The ring and the table only name configured nodes; a missing socket means we are closing.
      this.#d.stats.sendErrors.inc('node');
      return;
    }
    if (this.#opts.encapsulation === 'none') {
      this.#d.stats.forwardedBytes += msg.length;
      up.socket.send(msg, up.onSent);
      return;
    }
    const prefix = this.#prefixFor(rec, src, key, listener);
    const header = Buffer.allocUnsafe(ppv2HeaderLength(prefix, up.ownerBytes));
    writePpv2(header, prefix, rec.idBytes, out.version, up.ownerBytes, out.flags, out.seq);
    this.#d.stats.forwardedBytes += header.length + msg.length;
    up.socket.send([header, msg], up.onSent);
  }

  /** The PROXY v2 address block: cached per session for its bound transport, fresh for a jump candidate. */
  #prefixFor(rec: SessionRecord, src: Transport, key: string, listener: number): Buffer {
    const dst = (this.#listeners[listener] as Listener).address;
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
    if (this.#core.expiredOnArrival.length > 0) this.#flushExpired(this.#core.expiredOnArrival.splice(0));
    if (out.kind === 'drop') {
      stats.nodeDropped.inc(out.reason);
      if (out.reason === 'node_not_owner') {
        this.#d.audit.write({
          session: out.detail ?? null,
          event: 'SECURITY_EVENT',
          cause: 'reply_from_non_owner',
          from_version: null,
          to_version: null,
          from_owner: null,
          to_owner: null,
          actor: up.nodeId,
        });
      }
      return;
    }
    const rec = out.session;
    stats.relayed++;
    stats.relayedBytes += msg.length;
    if (out.transition !== null) this.#onTransition(rec, out.transition);
    this.#listenerSocket(rec.listener).send(msg, rec.transport.port, rec.transport.address, this.#onClientSent);
  }

  #listenerSocket(i: number): dgram.Socket {
    return (this.#listeners[i] as Listener).socket;
  }

  #sweep(): void {
    const now = this.#d.clock.now();
    this.#flushExpired(this.#core.sweep(now));
    this.#core.sweepLimiters(now);
  }

  #flushExpired(notes: ExpiredNote[]): void {
    for (const n of notes) this.#onTransition(n.session, n.transition);
  }

  #onTransition(rec: SessionRecord, t: TransitionNote): void {
    const stats = this.#d.stats;
    const event = t.event === 'admit' ? 'create' : t.event;
    if (t.event === 'admit') stats.admissions++;
    else if (t.event === 'close' || t.event === 'expire' || t.event === 'terminate') stats.sessionsEnded.inc(t.cause);
    stats.auditEvents.inc(event);
    this.#d.audit.write({
      session: rec.id,
      event,
      cause: t.cause,
      from_version: t.fromVersion === null ? null : t.fromVersion.toString(),
      to_version: t.toVersion.toString(),
      from_owner: t.fromOwner,
      to_owner: t.toOwner,
      actor: this.#opts.directorId,
    });
  }
}
