// The UDP data path shell: listener sockets toward clients, one connected upstream socket per node,
// the sweep tick. It performs the effects DirectorCore decides (forward, hold, reject, relay, drop),
// hands transitions to Ownership, counts each outcome. It never decides routing itself.
//
// Per datagram it allocates only what Node's own send needs plus one view for the datagram toward the
// node (the session's cached PROXY v2 header, completed with flags and seq, then the client's bytes): no
// transport strings, no outcome objects, no send callbacks or DNS lookups (each would cost a
// process.nextTick), no logging, counters as plain number fields read at scrape time.
import dgram from 'node:dgram';
import { once } from 'node:events';
import { encodeReject, encodeRevoke, JV1_HEADER_LEN, REVOKE_PAYLOAD_LEN, writeRevoke } from '../codec/jv1.js';
import { isUnspecified, sameTransport, transportKey } from '../codec/ip.js';
import { createPpv2Prefix, createPpv2Template, PP2_ANCHOR_TLVS_FIXED_LEN, PP2_FIXED_LEN, PP2_OWNER_MAX_LEN, ppv2HeaderLength, stampPpv2, writePpv2 } from '../codec/ppv2.js';
import { RejectReason, type Transport } from '../codec/types.js';
import type { Logger } from '../obs/logger.js';
import { type CounterCell, type DirectorStats, rejectLabel } from '../obs/stats.js';
import type { Candidate, SessionRecord } from '../session/table.js';
import type { Clock } from '../util/clock.js';
import { DEFAULT_PORT_QUARANTINE_MS, type HeldPort, PortQuarantine } from '../net/port-quarantine.js';
import { addressText, destOf, PeerCache } from '../net/native/addr.js';
import { Flag, Meta, type NativeUdpBinding, type NativeUdpCounters, type NativeUdpSocket, Stat } from '../net/native/index.js';
import { SessionHeaders, type SessionHeader } from './header-cache.js';
import { type ClientOutcome, type DirectorCore, type Forward, TCP_LISTENER, type TransitionNote } from './core.js';
import { DropReason } from './outcomes.js';
import type { DataPath, Ownership } from './ownership.js';

/** Idle sessions expired per turn of the event loop at most (see #expireSome). */
const EXPIRE_BATCH = 256;

export interface DirectorOptions {
  readonly directorId: string;
  readonly listen: readonly Transport[];
  readonly nodes: readonly { id: string; address: Transport }[];
  readonly encapsulation: 'ppv2' | 'none';
  readonly sweepIntervalMs?: number;
  /** Sessions whose PROXY v2 header is kept ready (session.header_cache; default 131,072). */
  readonly headerCache?: number;
  /** SO_RCVBUF / SO_SNDBUF for every socket (0 = the system default). */
  readonly recvBufferBytes?: number;
  readonly sendBufferBytes?: number;
  /** Native sockets send runs of datagrams to one destination as one segmentation-offload message (socket.gso; default true). */
  readonly gso?: boolean;
  /**
   * The native batched UDP addon (src/net/native): listeners and node sockets read with recvmmsg and
   * send with sendmmsg, one JS call per batch. Null or absent: node:dgram. Not used for transparent
   * forwarding (`encapsulation: none`, a socket per session).
   */
  readonly native?: NativeUdpBinding | null;
  /**
   * Transparent forwarding: how long a local port a session gave up is not used toward the same node
   * again (backend.port_quarantine_s; default 300 s; 0: no quarantine). See port-quarantine.ts.
   */
  readonly portQuarantineMs?: number;
}

/** Sockets opened at most for one session's upstream socket when the kernel keeps handing out held ports. */
const PORT_TRIES = 16;
/**
 * After a node's sessions found no port, how long their datagrams are dropped without trying again (or
 * until a session socket closes): a failed try costs up to PORT_TRIES binds (~120 µs), and every datagram
 * of a session without a socket would pay it.
 */
export const NO_PORT_BACKOFF_MS = 100;
/** A bind failure other than "no port free" (EMFILE, ...) is logged at warn at most this often. */
const BIND_WARN_EVERY_MS = 10_000;

export interface DirectorDeps {
  readonly core: DirectorCore;
  readonly ownership: Ownership;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly stats: DirectorStats;
}

interface Listener {
  /** node:dgram, or null on the native path. */
  readonly socket: dgram.Socket | null;
  /** The native path: the socket and its pending sends. */
  readonly native: NativeIo | null;
  /** What nodes are told the datagram was sent to (PROXY v2 destination). */
  address: Transport;
  /**
   * A listener of one of the host's addresses on a configured wildcard listener's socket (native, read with
   * pktinfo): that address as Meta.LOCAL words, which its replies leave from. Null for a configured one.
   */
  readonly local: Int32Array | null;
  /** The configured listener whose socket it is (its own index for a configured one). */
  readonly base: number;
  /** A configured wildcard listener read with pktinfo: the listeners of the addresses met on it so far. */
  readonly byAddress: number[] | null;
}

/** A native socket and the sends queued in its send slab (flushed at the end of a batch, or at once). */
interface NativeIo {
  readonly s: NativeUdpSocket;
  /** Read with pktinfo: every send names its source address (Meta.LOCAL; all 0 for the kernel's choice). */
  readonly pktinfo: boolean;
  /**
   * The last Buffer view made of each receive slot: the next datagram of the same length in that slot
   * reuses it (a view is fixed to its bytes' place and length, which is all that a datagram's view is).
   */
  readonly views: (Buffer | undefined)[];
  /** A Buffer over the send slab (for datagrams written in place: REVOKEs). */
  readonly txb: Buffer;
  /** Slots filled and not yet flushed. */
  n: number;
  /** Whose received bytes the queued slots gather (one source per flush). */
  source: NativeUdpSocket | null;
  /** Listed in the director's sockets to flush at the end of the batch being handled. */
  dirty: boolean;
  /**
   * The director closed the socket (only the director closes it). Kept here because the socket's own
   * `closed` is a native getter, a call into the addon on every send.
   */
  closed: boolean;
  /** Counts sends the kernel did not take. */
  readonly dropped: (n: number) => void;
}

/**
 * Listeners of the host's addresses made on wildcard listeners (one per address a client sent to, for
 * as long as the director runs); past it, a datagram to another address is handled on its wildcard
 * listener (its reply leaves by the routing table's choice of source, as on node:dgram).
 */
const MAX_ADDRESS_LISTENERS = 256;

/** Datagram bytes per native receive slot: jumbo frames fit; a larger datagram is dropped (`oversize`). */
const NATIVE_SLOT_SIZE = 9216;
/**
 * Bytes per native send slot: a datagram as large as a receive slot's, copied after the longest PROXY v2
 * header Anchor writes (IPv6 addresses, every TLV, an owner id of 64 bytes) — a held datagram replayed, or
 * a HELLO released after its admission, is sent from a copy; rounded up to 8 bytes.
 */
const NATIVE_TX_SLOT_SIZE = Math.ceil((NATIVE_SLOT_SIZE + PP2_FIXED_LEN + 36 + PP2_ANCHOR_TLVS_FIXED_LEN + PP2_OWNER_MAX_LEN) / 8) * 8;
/** Datagrams per native batch. */
const NATIVE_SLOTS = 64;

interface Upstream {
  readonly nodeId: string;
  /** node:dgram, or null on the native path. */
  readonly socket: dgram.Socket | null;
  readonly native: NativeIo | null;
  readonly ownerBytes: Buffer;
  /** For control sends (REVOKE): counts a failed send. Data sends go without a callback. */
  readonly onSent: (err: Error | null) => void;
  /** anchor_node_datagrams_received_total{node}, counted with a number store. */
  readonly received: CounterCell;
}

/** Transparent forwarding: a session's own socket toward its owner. */
interface SessionSocket {
  readonly socket: dgram.Socket;
  readonly node: string;
  readonly rec: SessionRecord;
  readonly address: string;
  readonly port: number;
  /** The socket's own (local) port: held toward `node` once the socket closes. */
  readonly localPort: number;
}

/** A session's cached PROXY v2 header (see SessionHeader in header-cache.ts). */
type SessionHeaderCache = SessionHeader<Upstream>;

function socketType(family: 4 | 6): 'udp4' | 'udp6' {
  return family === 6 ? 'udp6' : 'udp4';
}

/** session.header_cache's default: sessions whose PROXY v2 header is kept ready (~510 bytes of RSS each with its reply destination, see docs/operations.md). */
const DEFAULT_HEADER_CACHE = 131_072;

/** Bytes of one block of SendSlab. */
const SLAB_BLOCK = 64 * 1024;

/**
 * Fresh bytes for datagrams toward nodes, carved from 64 KiB blocks: one allocation per block instead of
 * one per datagram, and a plain Uint8Array view each (cheaper than a Buffer). A block is never reused, so
 * a send that the kernel could not take at once (queued by libuv) keeps valid bytes; a block is freed when
 * no view of it is left. Blocks are not zero-filled: the caller writes every byte of a view it sends.
 */
class SendSlab {
  #block = SendSlab.#newBlock();
  #at = 0;

  static #newBlock(): ArrayBuffer {
    return Buffer.allocUnsafeSlow(SLAB_BLOCK).buffer as ArrayBuffer;
  }

  take(n: number): Uint8Array {
    if (n > SLAB_BLOCK / 8) return new Uint8Array(n);
    if (this.#at + n > SLAB_BLOCK) {
      this.#block = SendSlab.#newBlock();
      this.#at = 0;
    }
    const out = new Uint8Array(this.#block, this.#at, n);
    this.#at += (n + 7) & ~7;
    return out;
  }
}

/** Closes a socket that may be closed already. */
function closeQuietly(socket: dgram.Socket): void {
  try {
    socket.close();
  } catch {
    // already closed
  }
}

/**
 * node:dgram resolves the address of every unconnected send with dns.lookup, which defers the send to a
 * process.nextTick even for an IP literal. Every address the director sends to is an IP literal as a
 * socket reported it (or as config and the store parsed it), so its listener sockets resolve in place.
 */
function literalLookup(address: string, family: unknown, cb: (err: Error | null, address: string, family: number) => void): void {
  cb(null, address, family === 6 ? 6 : 4);
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
  readonly #quarantine: PortQuarantine;
  /** Per node: until when its sessions without a socket get none (see NO_PORT_BACKOFF_MS). */
  readonly #noPortUntil = new Map<string, number>();
  #bindWarnedAt = Number.NEGATIVE_INFINITY;
  readonly #nodeAddr: Map<string, Transport>;
  #tick: NodeJS.Timeout | null = null;
  /** An expiry batch is scheduled for the next turn (a backlog of idle sessions). */
  #expireSoon = false;
  #closed = false;
  readonly #onClientSent: (err: Error | null) => void;
  readonly #slab = new SendSlab();
  /** The native path (null: node:dgram). */
  readonly #native: NativeUdpBinding | null;
  /** Client sources of native datagrams as Transports with their keys (bounded). */
  readonly #peers = new PeerCache();
  /** Which sessions keep their PROXY v2 header ready (the recently active ones, at most session.header_cache). */
  readonly #headers: SessionHeaders<Upstream>;
  /** Native sockets with sends queued during the batch being handled. */
  readonly #dirty: NativeIo[] = [];
  /** How many of #dirty are queued now (the array is reused: no length change per batch). */
  #nDirty = 0;
  #inBatch = false;
  /** The datagram of the batch being handled and where it lies (so a forward can gather it in place). */
  #rxMsg: Buffer | null = null;
  #rxSocket: NativeUdpSocket | null = null;
  #rxSlot = 0;

  constructor(opts: DirectorOptions, deps: DirectorDeps) {
    this.#opts = opts;
    this.#d = deps;
    this.#core = deps.core;
    this.#own = deps.ownership;
    this.#onClientSent = (err) => {
      if (err) this.#d.stats.sendErrors.inc('client');
    };
    this.#native = opts.encapsulation === 'ppv2' ? (opts.native ?? null) : null;
    this.#headers = new SessionHeaders(opts.headerCache ?? DEFAULT_HEADER_CACHE);
    deps.ownership.attach(this);
    // Listeners of host addresses share their wildcard listener's socket (see #addressListener).
    deps.core.setListenerBase((i) => this.#listeners[i]?.base ?? i);
    this.#nodeAddr = new Map(opts.nodes.map((n) => [n.id, n.address]));
    this.#quarantine = new PortQuarantine(opts.portQuarantineMs ?? DEFAULT_PORT_QUARANTINE_MS);
    // A session's own upstream socket lives as long as the session keeps its owner.
    deps.ownership.onTransition((rec, note) => {
      if (note.toOwner !== note.fromOwner || note.toOwner === null) this.#closeSessionSocket(rec.id);
      if (note.toOwner === null) this.#headers.release(rec);
    });
  }

  /** Whether datagrams go through the native batched addon (else node:dgram). */
  get nativeIo(): boolean {
    return this.#native !== null;
  }

  /**
   * The native sockets' own counters (system calls, datagrams, receive errors), summed by kind: the
   * client listeners and the node links. Empty on node:dgram. Sockets only close with the director, so
   * the sums never go down.
   */
  nativeCounters(): NativeUdpCounters[] {
    if (this.#native === null) return [];
    const sum = (socket: 'client' | 'node'): NativeUdpCounters => {
      const c = { socket, recvCalls: 0, recvDatagrams: 0, recvErrors: 0, sendCalls: 0, sendDatagrams: 0, gsoSends: 0, gsoDatagrams: 0, gsoFallbacks: 0 };
      for (const io of this.#nativeIos(socket)) {
        const st = io.s.stats;
        c.recvCalls += st[Stat.RX_SYSCALLS] as number;
        c.recvDatagrams += st[Stat.RX_DATAGRAMS] as number;
        c.recvErrors += st[Stat.RX_ERRORS] as number;
        c.sendCalls += st[Stat.TX_SYSCALLS] as number;
        c.sendDatagrams += st[Stat.TX_DATAGRAMS] as number;
        c.gsoSends += st[Stat.TX_GSO_SENDS] as number;
        c.gsoDatagrams += st[Stat.TX_GSO_DATAGRAMS] as number;
        c.gsoFallbacks += st[Stat.TX_GSO_FALLBACKS] as number;
      }
      return c;
    };
    return [sum('client'), sum('node')];
  }

  /** The native sockets of the client listeners or of the node links (none on node:dgram). */
  #nativeIos(kind: 'client' | 'node'): NativeIo[] {
    const all = kind === 'client' ? this.#configured().map((l) => l.native) : [...this.#upstreams.values()].map((u) => u.native);
    return all.filter((io) => io !== null);
  }

  /** The bound listener addresses (ports resolved when the config said 0). */
  get addresses(): Transport[] {
    return this.#configured().map((l) => l.address);
  }

  /** The configured listeners (not those of host addresses met on a wildcard one: they share its socket). */
  #configured(): Listener[] {
    return this.#listeners.filter((l) => l.local === null);
  }

  /** Whether each configured UDP listener learns the address each datagram was sent to (a native wildcard one). */
  get learnsLocalAddress(): boolean[] {
    return this.#configured().map((l) => l.byAddress !== null);
  }

  async start(): Promise<void> {
    await this.openUpstreams();
    await this.listen();
  }

  /** The sockets to the nodes (the first half of `start`): replies and REVOKEs can go out, no client is read. */
  async openUpstreams(): Promise<void> {
    for (const n of this.#opts.nodes) await this.#openUpstream(n.id, n.address);
  }

  /**
   * The client listeners and the sweep (the second half of `start`). A director on a shared store opens
   * them only once it holds the store's sessions: a datagram of a live session read before that would be
   * answered REJECT UNKNOWN_SESSION, and its client would give the session up.
   */
  async listen(): Promise<void> {
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
    const all = [...this.#configured().map((l) => l.socket), ...[...this.#upstreams.values()].map((u) => u.socket)].filter((s) => s !== null);
    for (const io of [...this.#nativeIos('client'), ...this.#nativeIos('node')]) {
      this.#flushIo(io);
      io.closed = true;
      io.s.close();
    }
    await Promise.all(all.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  /** A native socket (bound, and connected when `peer` is given) whose batches go to `onBatch`. */
  #openNative(addr: Transport, peer: Transport | null, kind: 'client' | 'node', onBatch: (io: NativeIo, count: number) => void, pktinfo = false): NativeIo {
    const binding = this.#native as NativeUdpBinding;
    const stats = this.#d.stats;
    let io: NativeIo | null = null;
    let s: NativeUdpSocket;
    try {
      s = new binding.UdpSocket(
        {
          family: addr.family,
          address: addr.address,
          port: addr.port,
          ...(peer === null ? {} : { connectAddress: peer.address, connectPort: peer.port }),
          ...((this.#opts.recvBufferBytes ?? 0) > 0 ? { recvBufferSize: this.#opts.recvBufferBytes } : {}),
          ...((this.#opts.sendBufferBytes ?? 0) > 0 ? { sendBufferSize: this.#opts.sendBufferBytes } : {}),
          slots: NATIVE_SLOTS,
          slotSize: NATIVE_SLOT_SIZE,
          txSlotSize: NATIVE_TX_SLOT_SIZE,
          gso: this.#opts.gso ?? true,
          ...(pktinfo ? { pktinfo: true } : {}),
        },
        (count) => {
          if (io !== null) onBatch(io, count);
        },
      );
    } catch (err) {
      // The addon's error names the call and the code, not the address: add it, as node:dgram's does.
      const e = err as NodeJS.ErrnoException;
      const where = peer === null ? transportKey(addr) : `${transportKey(addr)} → ${transportKey(peer)}`;
      throw Object.assign(new Error(`${e.message} (${where})`, { cause: err }), { code: e.code, syscall: e.syscall });
    }
    io = { s, pktinfo, views: [], txb: Buffer.from(s.tx.buffer, s.tx.byteOffset, s.tx.byteLength), n: 0, source: null, dirty: false, closed: false, dropped: (n) => stats.sendErrors.inc(kind, n) };
    return io;
  }

  async #openListener(index: number, addr: Transport): Promise<void> {
    if (this.#native !== null) {
      // On a wildcard address each datagram's local address is read (pktinfo): its reply leaves from that
      // address, and its node is told it, through a listener of that address (#addressListener). JV1
      // listeners only: the core reads another codec's sessions by their configured listener.
      const wildcard = isUnspecified(addr.address) && this.#core.speaksJv1(index);
      const h = this.#clientHandlers(index, wildcard);
      const io = this.#openNative(addr, null, 'client', (x, count) => this.#batch(x, count, h.truncated, h.datagram), wildcard);
      const a = io.s.address();
      this.#listeners.push({ socket: null, native: io, address: { family: addr.family, address: a.address, port: a.port }, local: null, base: index, byAddress: wildcard ? [] : null });
      return;
    }
    const socket = dgram.createSocket({ type: socketType(addr.family), ipv6Only: addr.family === 6, lookup: literalLookup as never });
    const l: Listener = { socket, native: null, address: addr, local: null, base: index, byAddress: null };
    socket.on('message', (msg, rinfo) => this.#onClientDgram(index, msg, rinfo));
    socket.on('error', (err) => this.#d.logger.error({ err, listener: transportKey(addr) }, 'listener socket error'));
    // Listening is awaited before binding: with an in-place lookup, bind() may report it synchronously.
    const listening = once(socket, 'listening');
    socket.bind(addr.port, addr.address);
    await listening;
    this.#tune(socket);
    const a = socket.address();
    l.address = { family: addr.family, address: a.address, port: a.port };
    this.#listeners.push(l);
  }

  async #openUpstream(nodeId: string, addr: Transport): Promise<void> {
    const stats = this.#d.stats;
    if (this.#native !== null) {
      let up: Upstream | null = null;
      const truncated = (): void => {
        if (up !== null) up.received.n++;
        stats.nodeDropped.inc('oversize');
      };
      const datagram = (msg: Buffer, _meta: Int32Array, _m: number, now: number): void => {
        if (up !== null) this.#onNode(up, msg, now);
      };
      const io = this.#openNative({ family: addr.family, address: addr.family === 6 ? '::' : '0.0.0.0', port: 0 }, addr, 'node', (x, count) => this.#batch(x, count, truncated, datagram));
      up = {
        nodeId,
        socket: null,
        native: io,
        ownerBytes: Buffer.from(nodeId, 'utf8'),
        onSent: (err) => {
          if (err) stats.sendErrors.inc('node');
        },
        received: stats.nodeReceived.cell(nodeId),
      };
      this.#upstreams.set(nodeId, up);
      return;
    }
    const socket = dgram.createSocket({ type: socketType(addr.family) });
    const up: Upstream = {
      nodeId,
      socket,
      native: null,
      ownerBytes: Buffer.from(nodeId, 'utf8'),
      onSent: (err) => {
        if (err) stats.sendErrors.inc('node');
      },
      received: stats.nodeReceived.cell(nodeId),
    };
    // A connected socket only receives from the node's own address, so a reply's source is the node.
    socket.on('message', (msg) => this.#onNode(up, msg));
    // Errors the kernel reports on the link (ICMP unreachable after a send to a node that is down, or a
    // failed queued send): counted as send errors toward the node.
    socket.on('error', (err) => {
      stats.sendErrors.inc('node');
      this.#d.logger.debug({ err, node: nodeId }, 'upstream socket error');
    });
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

  /**
   * Runs `handle` on each datagram of a native batch — a view of its receive slot, which a forward or
   * relay of that same datagram gathers instead of copying — then sends everything the batch queued.
   */
  #batch(io: NativeIo, count: number, truncated: () => void, handle: (msg: Buffer, meta: Int32Array, m: number, now: number) => void): void {
    const { s } = io;
    const meta = s.rxMeta;
    const size = s.slotSize;
    const base = s.rx.byteOffset;
    const now = this.#d.clock.now();
    this.#inBatch = true;
    this.#rxSocket = s;
    try {
      for (let i = 0; i < count; i++) {
        const m = i * Meta.INTS;
        if (((meta[m + Meta.FLAGS] as number) & Flag.TRUNCATED) !== 0) {
          truncated();
          continue;
        }
        const len = meta[m + Meta.LEN] as number;
        let msg = io.views[i];
        if (msg === undefined || msg.length !== len) {
          msg = Buffer.from(s.rx.buffer, base + i * size, len);
          io.views[i] = msg;
        }
        this.#rxMsg = msg;
        this.#rxSlot = i;
        handle(msg, meta, m, now);
      }
    } finally {
      this.#rxMsg = null;
      this.#rxSocket = null;
      this.#endBatch();
    }
  }

  /** The per-datagram handlers of a native listener (made once per socket, not per batch). */
  #clientHandlers(listener: number, byAddress: boolean): { truncated: () => void; datagram: (msg: Buffer, meta: Int32Array, m: number, now: number) => void } {
    return {
      truncated: () => {
        this.#d.stats.clientReceived++;
        this.#d.stats.clientDropped.inc('oversize');
      },
      datagram: (msg, meta, m, now) => {
        const peer = this.#peers.get(meta, m);
        this.#onClient(byAddress ? this.#addressListener(listener, meta, m + Meta.LOCAL) : listener, msg, peer.t.address, peer.t.port, peer.t.family, now, peer.t, peer.key);
      },
    };
  }

  /**
   * The listener of the host address a datagram on wildcard listener `base` was sent to (its Meta.LOCAL
   * words at `at`): made the first time that address is met (at most MAX_ADDRESS_LISTENERS), sharing the
   * wildcard's socket. `base` itself when the address is not known (all 0) or past the bound.
   */
  #addressListener(base: number, meta: Int32Array, at: number): number {
    const w0 = meta[at] as number;
    const w1 = meta[at + 1] as number;
    const w2 = meta[at + 2] as number;
    const w3 = meta[at + 3] as number;
    if ((w0 | w1 | w2 | w3) === 0) return base;
    const b = this.#listeners[base] as Listener;
    const known = b.byAddress as number[];
    for (let k = 0; k < known.length; k++) {
      const i = known[k] as number;
      const local = (this.#listeners[i] as Listener).local as Int32Array;
      if (local[0] === w0 && local[1] === w1 && local[2] === w2 && local[3] === w3) return i;
    }
    // Listeners of host addresses come after every configured one (their indexes must not take one's place).
    const configured = this.#opts.listen.length;
    if (this.#listeners.length < configured || this.#listeners.length - configured >= MAX_ADDRESS_LISTENERS) return base;
    const local = Int32Array.of(w0, w1, w2, w3);
    const address = addressText(b.address.family, local, 0);
    this.#listeners.push({ socket: null, native: b.native, address: { family: b.address.family, address, port: b.address.port }, local, base, byAddress: null });
    known.push(this.#listeners.length - 1);
    return this.#listeners.length - 1;
  }

  #onClientDgram(listener: number, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.#onClient(listener, msg, rinfo.address, rinfo.port, rinfo.family === 'IPv6' ? 6 : 4, this.#d.clock.now());
  }

  #onClient(listener: number, msg: Buffer, address: string, port: number, family: 4 | 6, now: number, src?: Transport, srcKey?: string): void {
    const stats = this.#d.stats;
    stats.clientReceived++;
    stats.clientReceivedBytes += msg.length;
    const v = this.#core.decideClient(msg, address, port, family, listener, now, src, srcKey);
    this.#flushExpired();
    if (this.#core.restarted.length > 0) {
      for (const old of this.#core.restarted.splice(0)) this.#own.terminate(old.id, 'client_restarted', this.#opts.directorId);
    }
    switch (v.kind) {
      case 'forward': {
        const rec = v.session as SessionRecord;
        if (v.transition === null) {
          if (this.#send(rec, v.node, v.msg as Buffer, v.src as Transport, v.listener, v.flags, v.seq, v.version)) stats.forwarded++;
          return;
        }
        // This packet ended the session (a CLOSE): read the verdict before handing the end on, and send it
        // first — on the session's own upstream socket (encapsulation none), which the end then closes. Sent
        // after the end, it opened a new socket that nothing closed, one per CLOSE.
        const { node, msg: m, src, listener: l, flags, seq, version, transition } = v;
        if (this.#send(rec, node, m as Buffer, src as Transport, l, flags, seq, version)) stats.forwarded++;
        this.#own.ended(rec, transition);
        return;
      }
      case 'admit':
        stats.held++;
        void this.#own.admit(v.session as SessionRecord);
        return;
      case 'hold':
        stats.held++;
        return;
      case 'reject':
        stats.clientRejected++;
        this.#sendReject(v.sessionId as Uint8Array, v.reject, src ?? { family, address, port }, listener, msg.length);
        return;
      default:
        stats.clientDropped.inc(v.reason);
        if (v.detail !== undefined && v.reason === 'malformed') stats.malformed.inc(v.detail);
        return;
    }
  }

  /** DataPath: sends a decided forward to its node, behind a PROXY v2 header. */
  forward(f: Forward): void {
    if (this.#closed) return; // a store answer after the sockets closed (a stop): nothing goes out
    this.#send(f.session, f.node, f.msg, f.src, f.listener, f.flags, f.seq, f.version);
  }

  /**
   * One client datagram to `node`: behind a PROXY v2 header (the session's cached header, copied and
   * completed with flags and seq) on the node's connected socket, or the original bytes from the
   * session's own socket (transparent forwarding). No send callback: a failure the kernel reports later
   * arrives as the socket's 'error' and is counted there. False only when the datagram was dropped because
   * the session has no upstream socket (counted `no_upstream_port`), so that it is not counted forwarded.
   *
   * Header and payload are copied into one view rather than sent as a list: node:dgram copies a list and
   * wraps each of its buffers in a new Buffer on every send (three allocations), where one contiguous
   * datagram costs one view and two memcpys, and the kernel gets one iovec.
   */
  #send(rec: SessionRecord, node: string, msg: Buffer, src: Transport, listener: number, flags: number, seq: number, version: bigint): boolean {
    const c = rec.shellCache as SessionHeaderCache | undefined;
    const up = (c !== undefined && c.node === node ? c.up : null) ?? this.#upstreams.get(node);
    if (up === undefined) {
      this.#d.stats.sendErrors.inc('node');
      return true;
    }
    if (this.#opts.encapsulation === 'none') {
      // Transparent forwarding: the original bytes only, from the session's own upstream socket, so
      // the node sees one stable peer per session and its replies map back to the session.
      const ss = this.#sessionSocket(rec, node, up);
      if (ss === null) {
        this.#d.stats.clientDropped.inc(DropReason.NO_UPSTREAM_PORT);
        return false;
      }
      this.#d.stats.forwardedBytes += msg.length;
      ss.socket.send(msg, ss.port, ss.address);
      return true;
    }
    const template = this.#templateFor(rec, src, listener, up, version);
    if (up.native !== null) {
      // Counted as a send error, not as bytes forwarded, when it cannot be queued (a closed socket, or too
      // long for a send slot: cannot happen for a datagram the director read, see NATIVE_TX_SLOT_SIZE).
      if (this.#sendNative(up.native, template, flags, seq, msg, null, 'node')) this.#d.stats.forwardedBytes += template.length + msg.length;
      return true;
    }
    const out = this.#slab.take(template.length + msg.length);
    stampPpv2(out, template, flags, seq);
    out.set(msg, template.length);
    this.#d.stats.forwardedBytes += out.length;
    (up.socket as dgram.Socket).send(out);
    return true;
  }

  /**
   * Queues one datagram on a native socket: `head` (a PROXY v2 template, stamped with flags and seq
   * when `seq` ≥ 0; else sent as it is) then `body`, to `dest` (null: the connected peer). A body that is
   * the datagram of the batch being handled is gathered from its receive slot, not copied. Outside a
   * batch the send is flushed at once. False when it was not queued (the socket closed, or too long for a
   * send slot: counted as a send error).
   */
  #sendNative(io: NativeIo, head: Uint8Array | null, flags: number, seq: number, body: Uint8Array, dest: Int32Array | null, kind: 'node' | 'client', destAt = 0, local: Int32Array | null = null): boolean {
    if (io.closed) return false;
    const s = io.s;
    const gather = body === this.#rxMsg && this.#rxSocket !== null;
    const headLen = head === null ? 0 : head.length;
    if (headLen + (gather ? 0 : body.length) > s.txSlotSize) {
      this.#d.stats.sendErrors.inc(kind);
      return false;
    }
    const source = gather ? this.#rxSocket : null;
    const slot = this.#claim(io, source);
    const at = slot * s.txSlotSize;
    if (head !== null) {
      if (seq >= 0) stampPpv2(s.tx, head, flags, seq, at);
      else s.tx.set(head, at);
    }
    const m = slot * Meta.INTS;
    const meta = s.txMeta;
    if (gather) {
      io.source = source;
      meta[m + Meta.LEN] = headLen;
      meta[m + Meta.FLAGS] = 1 + this.#rxSlot;
    } else {
      s.tx.set(body, at + headLen);
      meta[m + Meta.LEN] = headLen + body.length;
      meta[m + Meta.FLAGS] = 0;
    }
    if (dest === null) meta[m + Meta.FAMILY] = 0;
    else {
      // Element by element: TypedArray.prototype.set costs more than six stores for six ints.
      const d = m + Meta.FAMILY;
      meta[d] = dest[destAt] as number;
      meta[d + 1] = dest[destAt + 1] as number;
      meta[d + 2] = dest[destAt + 2] as number;
      meta[d + 3] = dest[destAt + 3] as number;
      meta[d + 4] = dest[destAt + 4] as number;
      meta[d + 5] = dest[destAt + 5] as number;
    }
    if (io.pktinfo) {
      // The source address of a reply (the one its client sent to), or none (all 0): set on every send,
      // the slot's last datagram may have had one.
      const o = m + Meta.LOCAL;
      meta[o] = local === null ? 0 : (local[0] as number);
      meta[o + 1] = local === null ? 0 : (local[1] as number);
      meta[o + 2] = local === null ? 0 : (local[2] as number);
      meta[o + 3] = local === null ? 0 : (local[3] as number);
    }
    if (!this.#inBatch) this.#endBatch();
    return true;
  }

  /**
   * The next send slot of `io`: what is queued goes out first when every slot is taken, or when the
   * queued slots gather from another socket than `source` (one source per flush); the socket is listed
   * to be flushed at the end of the batch.
   */
  #claim(io: NativeIo, source: NativeUdpSocket | null): number {
    if (io.n === io.s.slots || (source !== null && io.source !== null && io.source !== source)) this.#flushIo(io);
    if (!io.dirty) {
      io.dirty = true;
      this.#dirty[this.#nDirty++] = io;
    }
    return io.n++;
  }

  /** Sends what is queued on `io`. */
  #flushIo(io: NativeIo): void {
    const n = io.n;
    if (n === 0) return;
    io.n = 0;
    const sent = io.closed ? 0 : io.s.flush(n, io.source);
    io.source = null;
    if (sent < n) io.dropped(n - sent);
  }

  /** The end of a native batch (or a send outside one): every queued send goes out. */
  #endBatch(): void {
    this.#inBatch = false;
    for (let i = 0; i < this.#nDirty; i++) {
      const io = this.#dirty[i] as NativeIo;
      io.dirty = false;
      this.#flushIo(io);
    }
    this.#nDirty = 0;
  }

  /** Sessions whose PROXY v2 header is kept ready now, and headers taken back to make room (a counter). */
  get headerCache(): { held: number; evicted: number } {
    return { held: this.#headers.size, evicted: this.#headers.evicted };
  }

  /** Upstream sockets open for transparent forwarding (one per session; bounded by session.max). */
  get sessionSockets(): number {
    return this.#perSession.size;
  }

  /** Local ports given up by sessions' own sockets, held per node (transparent forwarding). */
  get quarantinedPorts(): number {
    return this.#quarantine.size(this.#d.clock.now());
  }

  /**
   * What a restart must go on holding: the held (node, port) pairs with their ages, and the ports of the
   * session sockets open now (age 0: a crash would give them up about now). After close: every session's.
   */
  quarantineEntries(): HeldPort[] {
    const out = this.#quarantine.heldEntries(this.#d.clock.now());
    for (const ss of this.#perSession.values()) out.push({ node: ss.node, port: ss.localPort, ageMs: 0 });
    return out;
  }

  /** Holds the pairs an earlier run left (backend.port_quarantine_path), before any session socket opens. */
  restoreQuarantine(entries: readonly HeldPort[]): void {
    this.#quarantine.restore(entries, this.#d.clock.now());
  }

  /**
   * The session's own upstream socket toward `node`, opened on first use. Null when no local port may be
   * used: the kernel had none free, or handed out only ports held toward `node` (see port-quarantine.ts).
   */
  #sessionSocket(rec: SessionRecord, node: string, up: Upstream): SessionSocket | null {
    const have = this.#perSession.get(rec.id);
    if (have !== undefined && have.node === node && have.rec === rec) return have;
    if (have !== undefined) this.#closeSessionSocket(rec.id);
    const addr = this.#nodeAddr.get(node) as Transport;
    const now = this.#d.clock.now();
    const until = this.#noPortUntil.get(node);
    if (until !== undefined) {
      if (now < until) return null;
      this.#noPortUntil.delete(node);
    }
    const bound = this.#bindSessionSocket(node, addr.family, now);
    if (bound === null) {
      this.#noPortUntil.set(node, now + NO_PORT_BACKOFF_MS);
      return null;
    }
    const { socket, localPort } = bound;
    const ss: SessionSocket = { socket, node, rec, address: addr.address, port: addr.port, localPort };
    socket.on('error', (err) => {
      this.#d.stats.sendErrors.inc('node');
      this.#d.logger.debug({ err, node }, 'session upstream socket error');
    });
    socket.on('message', (msg, rinfo) => {
      // Only the node this socket was opened toward may answer on it.
      if (rinfo.port !== addr.port || rinfo.address !== addr.address) {
        this.#d.stats.nodeDropped.inc('wrong_source');
        return;
      }
      this.#onSessionReply(ss, up, msg);
    });
    this.#perSession.set(rec.id, ss);
    return ss;
  }

  /**
   * A socket on an ephemeral port that is not held toward `node`, or null. Bound in place: the lookup is
   * literal, so node:dgram binds (or reports the failure) before bind() returns; a socket not listening
   * by then is given up rather than read for a port it does not have yet. A held port's socket stays open
   * while the next one binds, so that the kernel cannot hand out the same port again; all close at the end.
   */
  #bindSessionSocket(node: string, family: 4 | 6, now: number): { socket: dgram.Socket; localPort: number } | null {
    const held: dgram.Socket[] = [];
    try {
      for (let i = 0; i < PORT_TRIES; i++) {
        const socket = dgram.createSocket({ type: socketType(family), lookup: literalLookup as never });
        let failed: NodeJS.ErrnoException | null = null;
        let listening = false;
        const onBindError = (err: Error): void => {
          failed = err;
        };
        socket.on('error', onBindError);
        socket.once('listening', () => {
          listening = true;
        });
        // exclusive: never the cluster path, which would bind later.
        socket.bind({ port: 0, address: family === 6 ? '::' : '0.0.0.0', exclusive: true });
        socket.off('error', onBindError);
        if (!listening) {
          // No port free (EADDRINUSE) is the expected failure: counted by the caller. Anything else (EMFILE,
          // a bind that did not finish in place) is said, at most every BIND_WARN_EVERY_MS.
          const code = (failed as NodeJS.ErrnoException | null)?.code;
          if (code !== 'EADDRINUSE' && now - this.#bindWarnedAt >= BIND_WARN_EVERY_MS) {
            this.#bindWarnedAt = now;
            this.#d.logger.warn({ err: failed ?? undefined, code: code ?? 'not_bound_in_place', node }, 'session upstream socket could not bind: datagrams of new sessions toward the node are dropped (no_upstream_port)');
          }
          closeQuietly(socket);
          return null;
        }
        const localPort = socket.address().port;
        if (!this.#quarantine.held(node, localPort, now)) return { socket, localPort };
        this.#d.stats.portRebinds++;
        held.push(socket);
      }
      return null;
    } finally {
      for (const socket of held) closeQuietly(socket);
    }
  }

  #closeSessionSocket(id: string): void {
    const ss = this.#perSession.get(id);
    if (ss === undefined) return;
    this.#perSession.delete(id);
    this.#quarantine.release(ss.node, ss.localPort, this.#d.clock.now());
    // In the next turn: a datagram just handed to it (a session's CLOSE) goes out first. Its port is then
    // free (toward the other nodes): sessions that found none may try again at once.
    setImmediate(() => {
      closeQuietly(ss.socket);
      this.#noPortUntil.clear();
    });
  }

  /** A reply on a session's own upstream socket: the bytes are the backend's, relayed as they are. */
  #onSessionReply(ss: SessionSocket, up: Upstream, msg: Buffer): void {
    const stats = this.#d.stats;
    up.received.n++;
    stats.nodeReceivedBytes += msg.length;
    const out = this.#core.onSessionReply(ss.rec, up.nodeId, msg, this.#d.clock.now());
    this.#flushExpired();
    if (out.kind === 'drop') {
      stats.nodeDropped.inc(out.reason);
      return;
    }
    this.#relay(out.session, out.transition, up.nodeId, msg);
  }

  /**
   * A node's reply to the session's bound client transport (a node CLOSE has ended the session). `held`:
   * a reply held during a reattach, counted when it arrived (node_control held_reply): not counted again.
   */
  #relay(rec: SessionRecord, transition: TransitionNote | null, nodeId: string, msg: Buffer, held = false): void {
    const stats = this.#d.stats;
    if (transition !== null) this.#own.ended(rec, transition, nodeId);
    if (rec.listener === TCP_LISTENER) {
      // A TCP session's replies travel on its connection, never as datagrams.
      if (!held) stats.nodeDropped.inc('tcp_session');
      return;
    }
    if (!held) stats.relayed++;
    stats.relayedBytes += msg.length;
    // The bound transport's numeric destination, kept with the session's header (no lookup per reply).
    const c = rec.shellCache as SessionHeaderCache | undefined;
    if (c !== undefined && c.transport === rec.transport) {
      c.used = true;
      if (this.#headers.destOf(c)) {
        this.#toClient(rec.listener, msg, rec.transport, undefined, this.#headers.dests, c.destAt);
        return;
      }
    }
    this.#toClient(rec.listener, msg, rec.transport);
  }

  /** DataPath: replies held during a reattach go to the transport that is bound now. */
  relayHeld(rec: SessionRecord, replies: Buffer[]): void {
    if (this.#closed || !this.#d.core.table.holds(rec)) return;
    for (const msg of replies) this.#relay(rec, null, rec.owner, msg, true);
  }

  /** DataPath: a REJECT for a HELLO whose admission failed in the store. */
  answer(out: ClientOutcome, rec: SessionRecord, countAs?: string): void {
    if (this.#closed) return;
    if (out.kind === 'reject') this.#sendReject(out.sessionId, out.reason, rec.transport, rec.listener, Infinity, countAs);
    else if (out.kind === 'drop') this.#d.stats.clientDropped.inc(out.reason);
  }

  /** DataPath: REVOKE(version) to a node that no longer owns `rec`. */
  revoke(rec: SessionRecord, node: string, version: bigint): void {
    const up = this.#upstreams.get(node);
    if (up === undefined || this.#closed) return; // a resend timer firing during a stop: a closed dgram socket throws
    const id = rec.idBytes; // decoded once
    if (this.#opts.encapsulation === 'none') {
      (up.socket as dgram.Socket).send(encodeRevoke(id, version), up.onSent);
      return;
    }
    const prefix = this.#prefixFor(rec, rec.transport, rec.listener);
    const headLen = ppv2HeaderLength(prefix, up.ownerBytes);
    const seq = rec.nextSeq++;
    if (up.native !== null) {
      // Written in place in the send slab: header, then the REVOKE (a drain sends thousands a second).
      const io = up.native;
      const at = this.#slotFor(io, headLen + JV1_HEADER_LEN + REVOKE_PAYLOAD_LEN, 'node');
      if (at >= 0) writeRevoke(io.txb, writePpv2(io.txb, prefix, id, version, up.ownerBytes, 0, seq, at) + at, id, version);
      if (!this.#inBatch) this.#endBatch();
      return;
    }
    const header = Buffer.allocUnsafe(headLen);
    writePpv2(header, prefix, id, version, up.ownerBytes, 0, seq);
    (up.socket as dgram.Socket).send([header, encodeRevoke(id, version)], up.onSent);
  }

  /**
   * A send slot of `io` for one datagram of `len` bytes to its connected peer, which the caller writes
   * into `io.txb` at the byte offset returned (then ends the batch if outside one, as #sendNative does);
   * -1 when the socket is closed or the datagram too long for a slot (counted).
   */
  #slotFor(io: NativeIo, len: number, kind: 'node' | 'client'): number {
    if (io.closed) return -1;
    const s = io.s;
    if (len > s.txSlotSize) {
      this.#d.stats.sendErrors.inc(kind);
      return -1;
    }
    const slot = this.#claim(io, null);
    const m = slot * Meta.INTS;
    const meta = s.txMeta;
    meta[m + Meta.LEN] = len;
    meta[m + Meta.FLAGS] = 0;
    meta[m + Meta.FAMILY] = 0;
    return slot * s.txSlotSize;
  }

  /**
   * DataPath: the native sends `fn` makes are queued and flushed together at its end, as a receive
   * batch's are (a drain step's REVOKEs and replays: one sendmmsg per socket for up to NATIVE_SLOTS of
   * them, not one each). node:dgram sends are not affected.
   */
  sendTogether(fn: () => void): void {
    if (this.#inBatch) {
      fn();
      return;
    }
    this.#inBatch = true;
    try {
      fn();
    } finally {
      this.#endBatch();
    }
  }

  /** DataPath: a REJECT to an unbound transport, never more than 3× the bytes it sent us. */
  rejectCandidate(rec: SessionRecord, c: Candidate, reason: RejectReason): void {
    if (c.listener === TCP_LISTENER || this.#closed) return; // a TCP candidate is answered on its connection (and counted there)
    const reply = this.#core.speaksJv1(c.listener) ? encodeReject(rec.idBytes, reason) : undefined; // no REJECT in OpenVPN or offset
    if (reply === undefined || !this.#core.chargeCandidate(c, reply.length)) {
      this.#d.stats.rejectsSuppressed++;
      return;
    }
    this.#d.stats.rejectsSent.inc(rejectLabel(reason));
    this.#d.stats.relayedBytes += reply.length;
    this.#toClient(c.listener, reply, c.transport, this.#onClientSent);
  }

  #sendReject(sessionId: Uint8Array, reason: RejectReason, to: Transport, listener: number, maxLen: number, countAs?: string): void {
    const stats = this.#d.stats;
    const reply = encodeReject(sessionId, reason, '', maxLen);
    if (reply === undefined) {
      stats.clientDropped.inc('reject_too_small');
      return;
    }
    stats.rejectsSent.inc(countAs ?? rejectLabel(reason));
    stats.relayedBytes += reply.length;
    this.#toClient(listener, reply, to, this.#onClientSent);
  }

  /** The PROXY v2 address block: cached per session for its bound transport, fresh for a jump candidate. */
  #prefixFor(rec: SessionRecord, src: Transport, listener: number): Buffer {
    if (!this.#isBound(rec, src)) return createPpv2Prefix('DGRAM', src, this.#listenerAddress(listener));
    const c = rec.shellCache as SessionHeaderCache | undefined;
    if (c !== undefined && c.transport === rec.transport && c.listener === listener) return c.template.subarray(0, c.prefixLength);
    return createPpv2Prefix('DGRAM', src, this.#listenerAddress(listener));
  }

  /**
   * The whole PROXY v2 header of `rec` toward `up` under `version`, flags and seq 0: cached per session
   * while its transport, listener, owner and version stay; built afresh for a jump candidate's transport.
   */
  #templateFor(rec: SessionRecord, src: Transport, listener: number, up: Upstream, version: bigint): Buffer {
    if (!this.#isBound(rec, src)) return createPpv2Template(createPpv2Prefix('DGRAM', src, this.#listenerAddress(listener)), rec.idBytes, version, up.ownerBytes);
    const c = rec.shellCache as SessionHeaderCache | undefined;
    if (c === undefined || c.transport !== rec.transport || c.listener !== listener) {
      const prefix = createPpv2Prefix('DGRAM', src, this.#listenerAddress(listener));
      return this.#headers.cache(rec, rec.transport, listener, prefix, rec.idBytes, up.nodeId, up, version, up.ownerBytes).template;
    }
    c.used = true;
    // A transfer or a version change (rare): same address block, new TLVs.
    if (c.node !== up.nodeId || c.version !== version) this.#headers.retarget(c, rec.idBytes, up.nodeId, up, version, up.ownerBytes);
    return c.template;
  }

  /** Whether `src` is the session's bound transport (the one its cached header is for). */
  #isBound(rec: SessionRecord, src: Transport): boolean {
    return sameTransport(src, rec.transport);
  }

  /** A TCP-bound session (REVOKE) names the first UDP listener as the PROXY destination. */
  #listenerAddress(listener: number): Transport {
    return (this.#listeners[listener] ?? (this.#listeners[0] as Listener)).address;
  }

  #onNode(up: Upstream, msg: Buffer, now = this.#d.clock.now()): void {
    const stats = this.#d.stats;
    up.received.n++;
    stats.nodeReceivedBytes += msg.length;
    const v = this.#core.decideNode(up.nodeId, msg, now);
    this.#flushExpired();
    switch (v.kind) {
      case 'relay':
        this.#relay(v.session as SessionRecord, v.transition, up.nodeId, msg);
        return;
      case 'drop':
        stats.nodeDropped.inc(v.reason);
        if (v.reason === 'malformed' && v.detail !== undefined) stats.malformed.inc(v.detail);
        if (v.security !== undefined) this.#own.security(v.dropSession ?? null, v.security, up.nodeId);
        return;
      case 'held-reply':
        stats.nodeControl.inc('held_reply');
        return;
      case 'revoke-ack':
        // One that matches no REVOKE pending to that node (a second acknowledgement of a REVOKE sent again,
        // or one the node made up) is counted apart.
        stats.nodeControl.inc(this.#own.onRevokeAck(v.revoked, v.version, up.nodeId) ? 'revoke_ack' : 'revoke_ack_unmatched');
        return;
      case 'bind':
        stats.nodeControl.inc('bind');
        void this.#own.reattach(v.session as SessionRecord, v.candidate as Candidate, v.version);
        return;
      case 'conflict':
        stats.nodeControl.inc('bind_conflict');
        this.rejectCandidate(v.session as SessionRecord, v.candidate as Candidate, RejectReason.OWNERSHIP_CONFLICT);
        return;
    }
  }

  /**
   * One datagram to a client through listener `i` (`cb`: told of a failed dgram send, for control sends;
   * `known`: `to`'s numeric destination when the caller holds it, for a native send).
   */
  #toClient(i: number, bytes: Uint8Array, to: Transport, cb?: (err: Error | null) => void, known: Int32Array | null = null, knownAt = 0): void {
    const l = this.#listeners[i] as Listener;
    if (l.native !== null) {
      if (known !== null) this.#sendNative(l.native, null, 0, -1, bytes, known, 'client', knownAt, l.local);
      else {
        const dest = destOf(to);
        if (dest === null) this.#d.stats.sendErrors.inc('client');
        else this.#sendNative(l.native, null, 0, -1, bytes, dest, 'client', 0, l.local);
      }
      return;
    }
    if (cb === undefined) (l.socket as dgram.Socket).send(bytes, to.port, to.address);
    else (l.socket as dgram.Socket).send(bytes, to.port, to.address, cb);
  }

  #sweep(): void {
    const now = this.#d.clock.now();
    this.#core.sweepLimiters(now);
    this.#expireSome();
  }

  /**
   * Idle sessions end in the store first (once in a cluster), then here: EXPIRE_BATCH per turn of the
   * event loop. A batch that was full (a mass expiry: many sessions idle at once) goes on at the next
   * turn, after the datagrams waiting meanwhile, rather than in one long turn: 10,000 expiries in one
   * turn held the sockets ~400 ms.
   */
  #expireSome(): void {
    if (this.#closed) return;
    const started = this.#own.expireIdle(this.#d.clock.now(), EXPIRE_BATCH);
    if (started === EXPIRE_BATCH && !this.#expireSoon) {
      this.#expireSoon = true;
      setImmediate(() => {
        this.#expireSoon = false;
        this.#expireSome();
      });
    }
  }

  #flushExpired(): void {
    const list = this.#core.expiredOnArrival;
    if (list.length === 0) return;
    for (const n of list.splice(0)) this.#own.ended(n.session, n.transition);
  }
}
