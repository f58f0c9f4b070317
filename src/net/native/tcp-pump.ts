// Hands a proxied TCP connection (two connected net.Sockets) over to the native splice pump
// (tcp_splice.c). Owns the handover only: taking what Node had read but not delivered, giving the pump
// its own dup() of both descriptors, and then closing Node's handles — which closes Node's descriptors,
// not the connections (the pump's duplicates keep them open; no FIN, no reset). It never decides whether
// a connection should be pumped, and never touches a socket it could not hand over (the caller keeps
// using it on the JS stream path then).
import type net from 'node:net';
import type { NativeTcpBinding, NativeTcpPump, TcpEndCode } from './index.js';

/** On success, also how many bytes Node had read from each socket (now handed to the pump to write). */
export type HandOver =
  | { readonly ok: true; readonly pump: NativeTcpPump; readonly tookFromClient: number; readonly tookFromUpstream: number }
  | { readonly ok: false; readonly reason: string };

/** The descriptor under a connected net.Socket (Node's libuv handle exposes it on Unix), or -1. */
function fdOf(s: net.Socket): number {
  const fd = (s as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : -1;
}

/** What the socket has read and not delivered (it must be paused, or never have flowed). */
function takeBuffered(s: net.Socket): Buffer[] {
  const out: Buffer[] = [];
  // read() may ask libuv to read again: harmless, the handle is closed in this same tick, before the
  // loop can poll it.
  for (let c = s.read() as Buffer | null; c !== null; c = s.read() as Buffer | null) out.push(c);
  return out;
}

const noop = (): void => {};
const EVENTS = ['data', 'end', 'close', 'error', 'timeout', 'drain', 'readable', 'finish'] as const;

function bytes(parts: readonly Buffer[]): Buffer | null {
  const n = parts.reduce((a, b) => a + b.length, 0);
  return n === 0 ? null : parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, n);
}

/**
 * Moves `client` ↔ `upstream` into a native pump, synchronously (one tick: nothing can be read by Node
 * in between). `toUpstream` / `toClient` are bytes the caller holds that must reach that side before
 * anything else (e.g. what the node sent after its BIND). Refused (`ok: false`, both sockets untouched
 * and still usable, every byte still in them) when a socket is not connected, still has writes queued
 * in Node, or the pump cannot be made (e.g. no descriptor left for the dup). On success the sockets
 * are destroyed (their listeners removed first: no 'close' reaches the caller) and `onEnd` is the
 * pump's own end callback.
 */
export function handOver(
  binding: NativeTcpBinding,
  client: net.Socket,
  upstream: net.Socket,
  pending: { readonly toUpstream?: Buffer; readonly toClient?: Buffer },
  onEnd: (code: TcpEndCode, errno: number, errnoName: string) => void,
): HandOver {
  const cfd = fdOf(client);
  const ufd = fdOf(upstream);
  if (cfd < 0 || ufd < 0 || client.destroyed || upstream.destroyed) return { ok: false, reason: 'not_connected' };
  // Bytes still queued in Node (not yet taken by the kernel) cannot be moved: the stream path keeps them.
  if (client.writableLength > 0 || upstream.writableLength > 0) return { ok: false, reason: 'write_pending' };
  const fromClient = takeBuffered(client);
  const fromUpstream = takeBuffered(upstream);
  const toUp = bytes([...(pending.toUpstream !== undefined ? [pending.toUpstream] : []), ...fromClient]);
  const toCl = bytes([...(pending.toClient !== undefined ? [pending.toClient] : []), ...fromUpstream]);
  let pump: NativeTcpPump;
  try {
    pump = new binding.TcpPump(cfd, ufd, toUp, toCl, onEnd);
  } catch (err) {
    // Give the sockets back as they were: the bytes taken out go back in front.
    for (let i = fromClient.length - 1; i >= 0; i--) client.unshift(fromClient[i] as Buffer);
    for (let i = fromUpstream.length - 1; i >= 0; i--) upstream.unshift(fromUpstream[i] as Buffer);
    return { ok: false, reason: (err as { code?: string }).code ?? (err instanceof Error ? err.message : String(err)) };
  }
  for (const s of [client, upstream]) {
    for (const e of EVENTS) s.removeAllListeners(e);
    s.on('error', noop);
    s.setTimeout(0);
    s.destroy();
  }
  const sum = (l: readonly Buffer[]): number => l.reduce((a, b) => a + b.length, 0);
  return { ok: true, pump, tookFromClient: sum(fromClient), tookFromUpstream: sum(fromUpstream) };
}
