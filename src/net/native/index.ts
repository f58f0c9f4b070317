// Loaders and types of the optional native addons, built by node-gyp at `npm install`: batched UDP I/O
// (udp_batch.c → build/Release/anchor_udp.node) and the TCP splice pump (tcp_splice.c →
// build/Release/anchor_tcp.node). Owns finding and loading them and describing their APIs; it never
// throws when an addon is missing: callers get `{ ok: false, reason }` and fall back to node:dgram /
// the JS stream path. It never opens a socket itself.
//
// The API in one paragraph: `new UdpSocket(options, onBatch)` binds (and optionally connects) a
// non-blocking UDP socket that libuv polls. When readable it reads up to `slots` datagrams with one
// recvmmsg into `rx` (slot i at i × slotSize) and calls `onBatch(count)` once; `rxMeta` holds
// META_INTS int32 per slot (see Meta). To send, write bytes into `tx` slot i (at i × txSlotSize) and its metadata into
// `txMeta`, then `flush(n)` sends slots 0..n-1 with sendmmsg; a tx slot may also gather the bytes of an
// rx slot of a `source` socket after its own (Meta.FLAGS = 1 + rx slot), so a relay copies nothing. With
// `gso`, runs of datagrams to one destination and of one size go as one UDP_SEGMENT message.
// Counters are in `stats` (a Float64Array, indices in Stat). Nothing is allocated per datagram.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Int32 fields of one metadata slot (rxMeta / txMeta), offsets within the slot. */
export const Meta = {
  /** rx: bytes stored in the slot (≤ slotSize); tx: bytes to send from the own tx slot. */
  LEN: 0,
  /** rx: Flag bits; tx: 0, or 1 + the rx slot of flush()'s `source` whose bytes follow the tx bytes. */
  FLAGS: 1,
  /** 4 or 6; tx: 0 = no destination (a connected socket). */
  FAMILY: 2,
  PORT: 3,
  /** IPv4: one u32 (127.0.0.1 = 0x7f000001, read with `>>> 0`); IPv6: four u32 words, most significant first. */
  ADDR: 4,
  /**
   * As ADDR. rx: the address the datagram was sent to (options.pktinfo; else all 0). tx: the source address
   * to send it from (all 0: the kernel's choice).
   */
  LOCAL: 8,
  /** int32 per slot. */
  INTS: 12,
} as const;

export const Flag = {
  /** The datagram was larger than the slot: LEN = slotSize and the rest is lost. */
  TRUNCATED: 1,
} as const;

/** Indices into `stats`. */
export const Stat = {
  RX_DATAGRAMS: 0,
  RX_BATCHES: 1,
  RX_TRUNCATED: 2,
  RX_ERRORS: 3,
  TX_DATAGRAMS: 4,
  /** Datagrams dropped because the socket's send buffer was full (EAGAIN/ENOBUFS). */
  TX_WOULDBLOCK_DROPS: 5,
  /** Datagrams refused (by the kernel, or a bad tx slot: EINVAL) and skipped. */
  TX_ERRORS: 6,
  /** errno of the last error counted (0 = none yet). */
  LAST_ERRNO: 7,
  RX_SYSCALLS: 8,
  TX_SYSCALLS: 9,
  /** Messages that carried several datagrams as one UDP_SEGMENT (GSO) send (options.gso). */
  TX_GSO_SENDS: 10,
  /** The datagrams sent in them (also in TX_DATAGRAMS). */
  TX_GSO_DATAGRAMS: 11,
  /** GSO messages the kernel refused: their datagrams went again one by one (see UdpSocketOptions.gso). */
  TX_GSO_FALLBACKS: 12,
} as const;
export type StatName = keyof typeof Stat;

export interface UdpSocketOptions {
  readonly family: 4 | 6;
  /** Bind address (an IP literal; `0.0.0.0` / `::` for any). */
  readonly address: string;
  /** Bind port; 0 picks a free one (see address()). */
  readonly port: number;
  readonly recvBufferSize?: number;
  readonly sendBufferSize?: number;
  /** Connect to this peer (both or neither): sends may then leave FAMILY = 0. */
  readonly connectAddress?: string;
  readonly connectPort?: number;
  /** Datagrams per batch, the number of slots in each slab (1..1024, default 64). */
  readonly slots?: number;
  /** Bytes per slot (64..65536, a multiple of 8, default 2048). */
  readonly slotSize?: number;
  /**
   * Bytes per tx slot (64..65536, a multiple of 8, default slotSize): larger than slotSize, a tx slot holds a
   * header before a body copied from an rx slot of its full size (a datagram held, then sent with a header).
   */
  readonly txSlotSize?: number;
  /**
   * Generic segmentation offload (default false): flush() sends each run of consecutive tx slots to one
   * destination and of one size (the last of a run may be shorter; at most 64 datagrams and 65,000 bytes)
   * as one sendmmsg message with UDP_SEGMENT, so the kernel's send path runs once per run; receivers
   * still get the same datagrams in the same order. A run the kernel refuses goes again one datagram at
   * a time (TX_GSO_FALLBACKS): for EINVAL/EMSGSIZE (e.g. over the path MTU) datagrams of that size or
   * larger are not grouped again; for any other error GSO stays off on the socket.
   */
  readonly gso?: boolean;
  /**
   * Read each datagram's local address into Meta.LOCAL (IP_PKTINFO / IPV6_RECVPKTINFO), for a socket bound
   * to a wildcard address: which of the host's addresses the client sent to, so that the reply leaves from
   * it (Meta.LOCAL on the send) and the node is told it (PROXY v2 destination). Default false.
   */
  readonly pktinfo?: boolean;
  /** Tests only: SO_NO_CHECK (IPv4 sends without a UDP checksum), which makes the kernel refuse GSO. */
  readonly testNoChecksum?: boolean;
}

export interface NativeUdpSocket {
  readonly rx: Uint8Array;
  readonly rxMeta: Int32Array;
  readonly tx: Uint8Array;
  readonly txMeta: Int32Array;
  readonly stats: Float64Array;
  readonly slots: number;
  /** Bytes per rx slot: the largest datagram read whole. */
  readonly slotSize: number;
  /** Bytes per tx slot (tx slot i at i × txSlotSize). */
  readonly txSlotSize: number;
  readonly family: 4 | 6;
  readonly closed: boolean;
  /** Sends tx slots 0..count-1; returns how many the kernel took (the rest are in stats). */
  flush(count: number, source?: NativeUdpSocket | null): number;
  address(): { family: 4 | 6; address: string; port: number };
  /** Idempotent; the fd is closed when it returns; allowed inside onBatch. */
  close(): void;
  ref(): void;
  unref(): void;
}

/** What the native sockets of one kind counted themselves (`UdpDirector.nativeCounters`). */
export interface NativeUdpCounters {
  readonly socket: 'client' | 'node';
  /** recvmmsg calls (also those that found nothing) and the datagrams they read. */
  readonly recvCalls: number;
  readonly recvDatagrams: number;
  /** Receive errors the kernel reported (e.g. ICMP unreachable on a node link). */
  readonly recvErrors: number;
  /** sendmmsg calls and the datagrams the kernel took. */
  readonly sendCalls: number;
  readonly sendDatagrams: number;
  /** sendmmsg messages that carried several datagrams (GSO), the datagrams in them, and GSO fallbacks. */
  readonly gsoSends: number;
  readonly gsoDatagrams: number;
  readonly gsoFallbacks: number;
}

export interface NativeUdpBinding {
  readonly UdpSocket: new (options: UdpSocketOptions, onBatch: (this: NativeUdpSocket, count: number) => void) => NativeUdpSocket;
  readonly STATS: Readonly<Record<StatName, number>>;
  readonly META_INTS: number;
  /** Meta.LOCAL in this build (a build before send slots of their own size and local addresses has none). */
  readonly M_LOCAL: number;
  readonly MAX_SLOTS: number;
  readonly MAX_SLOT_SIZE: number;
}

export type NativeUdpLoad = { readonly ok: true; readonly binding: NativeUdpBinding; readonly path: string } | { readonly ok: false; readonly reason: string };

const ADDON = join('build', 'Release', 'anchor_udp.node');

/** The package root: the nearest directory above this file with a package.json (works from src/ and dist/). */
function packageRoot(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, 'utf8')) as { name?: unknown }).name === 'anchor') return dir;
      } catch {
        // not ours; keep looking
      }
    }
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/** Requires an addon file (`path`, or `addon` under the package root); never throws. */
function requireAddon(addon: string, path: string | undefined): { ok: true; mod: unknown; file: string } | { ok: false; reason: string } {
  let file = path;
  if (file === undefined) {
    const root = packageRoot();
    if (root === null) return { ok: false, reason: 'package root (package.json of "anchor") not found above the loader' };
    file = join(root, addon);
  }
  if (!existsSync(file)) return { ok: false, reason: `${file} does not exist (the build at npm install failed or was skipped; \`npm run install\` rebuilds it and shows why)` };
  try {
    return { ok: true, mod: createRequire(import.meta.url)(file), file };
  } catch (err) {
    return { ok: false, reason: `loading ${file} failed: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/**
 * Loads the addon (from `path`, or build/Release/anchor_udp.node under the package root) and checks
 * that it is the one this file describes. Never throws: `{ ok: false, reason }` says why not.
 */
export function loadNativeUdp(path?: string): NativeUdpLoad {
  if (process.platform !== 'linux') return { ok: false, reason: `the native UDP addon needs Linux (recvmmsg/sendmmsg), not ${process.platform}` };
  const r = requireAddon(ADDON, path);
  if (!r.ok) return r;
  const b = r.mod as Partial<NativeUdpBinding>;
  // A stale build would be taken at its word on options it does not know (txSlotSize, pktinfo): its slots
  // then do not lie where the director writes them.
  if (typeof b.UdpSocket !== 'function' || b.META_INTS !== Meta.INTS || b.M_LOCAL !== Meta.LOCAL || b.STATS?.TX_GSO_FALLBACKS !== Stat.TX_GSO_FALLBACKS) {
    return { ok: false, reason: `${r.file} is not the addon this loader expects (stale build? run npm install)` };
  }
  return { ok: true, binding: b as NativeUdpBinding, path: r.file };
}

// ---------- the TCP splice pump (tcp_splice.c) ----------
//
// `new TcpPump(clientFd, upstreamFd, pendingIn, pendingOut, onEnd)` dup()s both connected sockets (the
// caller then closes its own handles — e.g. destroys the net.Socket — which leaves the connections
// open) and moves bytes both ways with splice(2) through a pipe per direction, polled by libuv on the
// main loop. `pendingIn` (to the upstream) and `pendingOut` (to the client) are written first: bytes JS
// had read and not forwarded. A side is read only while the pipe toward the other side is empty
// (backpressure); EOF from one side becomes a FIN to the other once its bytes are out (half-close).
// `onEnd(code, errno, errnoName)` is called once when the pump ends the connection by itself
// (TcpEnd); `close()` ends it without a call. `stats` (Float64Array, TcpStat) counts bytes both ways.

/** Indices into a pump's `stats`. */
export const TcpStat = {
  /** Bytes read from the client. */
  IN_READ: 0,
  /** Bytes written to the upstream. */
  IN_WRITTEN: 1,
  /** Bytes read from the upstream. */
  OUT_READ: 2,
  /** Bytes written to the client. */
  OUT_WRITTEN: 3,
  /** splice / send / read syscalls. */
  SPLICES: 4,
  /** Readiness events handled. */
  EVENTS: 5,
  /** Bytes the client sent after finish(), read and dropped (not in IN_READ: they go nowhere). */
  IN_DISCARDED: 6,
} as const;

/** How a pump ended by itself (onEnd's first argument). */
export const TcpEnd = {
  /** Both directions ended: EOF read from each side and passed on as a FIN. */
  EOF: 1,
  /** A socket error (errno / errnoName say which), or out of memory. */
  ERROR: 2,
  /** finish(): the upstream was dropped, the client got its FIN and then closed. */
  FINISHED: 3,
} as const;
export type TcpEndCode = (typeof TcpEnd)[keyof typeof TcpEnd];

/** Directions for pause()/resume(). */
export const TcpDir = { IN: 1, OUT: 2, BOTH: 3 } as const;

export interface NativeTcpPump {
  readonly stats: Float64Array;
  readonly closed: boolean;
  /** Stops reading the client (IN, the default) and/or the upstream (OUT); bytes already read still go out. */
  pause(mask?: number): void;
  resume(mask?: number): void;
  /** Graceful end: the upstream is closed now; what it sent reaches the client, then a FIN; the client's close ends it (TcpEnd.FINISHED). */
  finish(): void;
  /** Closes both connections now; onEnd is not called. Idempotent. */
  close(): void;
}

export interface NativeTcpBinding {
  readonly TcpPump: new (
    clientFd: number,
    upstreamFd: number,
    pendingIn: Uint8Array | null,
    pendingOut: Uint8Array | null,
    onEnd: (this: NativeTcpPump, code: TcpEndCode, errno: number, errnoName: string) => void,
  ) => NativeTcpPump;
  readonly STATS: Readonly<Record<keyof typeof TcpStat, number>>;
  /**
   * Empty pipes kept for reuse, all pipes the addon has open, and the reads made by copying (recv, then
   * send) because a direction could not have a pipe (setMaxPipes' limit, or no descriptor left).
   */
  pipePool(): { pooled: number; open: number; copies: number };
  /** Closes the pooled pipes; returns how many. */
  trimPipePool(): number;
  /** Capacity asked (F_SETPIPE_SZ, best effort) for pipes created from now on; 0 = the kernel default. */
  setPipeSize(bytes: number): void;
  /** Pipes open at most (pooled + in use); -1 = no limit (the default), 0 = none. Past it a direction copies (recv, send) instead of splicing. */
  setMaxPipes(n: number): void;
}

export type NativeTcpLoad = { readonly ok: true; readonly binding: NativeTcpBinding; readonly path: string } | { readonly ok: false; readonly reason: string };

const TCP_ADDON = join('build', 'Release', 'anchor_tcp.node');

/** Loads the TCP splice pump (build/Release/anchor_tcp.node, or `path`). Never throws. */
export function loadNativeTcp(path?: string): NativeTcpLoad {
  if (process.platform !== 'linux') return { ok: false, reason: `the native TCP pump needs Linux (splice), not ${process.platform}` };
  const r = requireAddon(TCP_ADDON, path);
  if (!r.ok) return r;
  const b = r.mod as Partial<NativeTcpBinding> & { END_FINISHED?: unknown };
  if (typeof b.TcpPump !== 'function' || b.STATS?.IN_DISCARDED !== TcpStat.IN_DISCARDED || b.END_FINISHED !== TcpEnd.FINISHED) {
    return { ok: false, reason: `${r.file} is not the addon this loader expects (stale build? run npm install)` };
  }
  return { ok: true, binding: b as NativeTcpBinding, path: r.file };
}
