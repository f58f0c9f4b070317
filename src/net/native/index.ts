// Loader and types of the optional native addon for batched UDP I/O (udp_batch.c, built by node-gyp
// into build/Release/anchor_udp.node at `npm install`). Owns finding and loading the addon and
// describing its shared-slab API; it never throws when the addon is missing: callers get `null` with
// the reason and fall back to node:dgram. It never opens a socket itself.
//
// The API in one paragraph: `new UdpSocket(options, onBatch)` binds (and optionally connects) a
// non-blocking UDP socket that libuv polls. When readable it reads up to `slots` datagrams with one
// recvmmsg into `rx` (slot i at i × slotSize) and calls `onBatch(count)` once; `rxMeta` holds
// META_INTS int32 per slot (see Meta). To send, write bytes into `tx` slot i and its metadata into
// `txMeta`, then `flush(n)` sends slots 0..n-1 with sendmmsg; a tx slot may also gather the bytes of an
// rx slot of a `source` socket after its own (Meta.FLAGS = 1 + rx slot), so a relay copies nothing.
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
  /** int32 per slot. */
  INTS: 8,
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
}

export interface NativeUdpSocket {
  readonly rx: Uint8Array;
  readonly rxMeta: Int32Array;
  readonly tx: Uint8Array;
  readonly txMeta: Int32Array;
  readonly stats: Float64Array;
  readonly slots: number;
  readonly slotSize: number;
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

export interface NativeUdpBinding {
  readonly UdpSocket: new (options: UdpSocketOptions, onBatch: (this: NativeUdpSocket, count: number) => void) => NativeUdpSocket;
  readonly STATS: Readonly<Record<StatName, number>>;
  readonly META_INTS: number;
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

/**
 * Loads the addon (from `path`, or build/Release/anchor_udp.node under the package root) and checks
 * that it is the one this file describes. Never throws: `{ ok: false, reason }` says why not.
 */
export function loadNativeUdp(path?: string): NativeUdpLoad {
  if (process.platform !== 'linux') return { ok: false, reason: `the native UDP addon needs Linux (recvmmsg/sendmmsg), not ${process.platform}` };
  let file = path;
  if (file === undefined) {
    const root = packageRoot();
    if (root === null) return { ok: false, reason: 'package root (package.json of "anchor") not found above the loader' };
    file = join(root, ADDON);
  }
  if (!existsSync(file)) return { ok: false, reason: `${file} does not exist (the build at npm install failed or was skipped; \`npm run install\` rebuilds it and shows why)` };
  let mod: unknown;
  try {
    mod = createRequire(import.meta.url)(file);
  } catch (err) {
    return { ok: false, reason: `loading ${file} failed: ${err instanceof Error ? err.message : String(err)}` };
  }
  const b = mod as Partial<NativeUdpBinding>;
  if (typeof b.UdpSocket !== 'function' || b.META_INTS !== Meta.INTS || b.STATS?.TX_SYSCALLS !== Stat.TX_SYSCALLS) {
    return { ok: false, reason: `${file} is not the addon this loader expects (stale build? run npm install)` };
  }
  return { ok: true, binding: b as NativeUdpBinding, path: file };
}
