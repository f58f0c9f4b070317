// Addresses between the native UDP addon's metadata slots (family, port and the address as one u32 for
// IPv4 or four u32 words for IPv6, see index.ts `Meta`) and the director's Transport objects. Pure data
// structures: no I/O. Owns the bounded cache that turns a datagram's numeric source into one Transport
// and its text key (built once per client address, not once per datagram), and the numeric form of a
// Transport for sends. Addresses are formatted exactly as node:dgram reports them (codec/ip.ts).
import { bytesToIp, ipToBytes, transportKey } from '../../codec/ip.js';
import type { Transport } from '../../codec/types.js';
import { Meta } from './index.js';

/** A client address as the director keys it. */
export interface Peer {
  readonly t: Transport;
  readonly key: string;
}

/** Distinct sources remembered before the cache starts over (a flood of sources costs one string each). */
const PEER_CACHE_MAX = 65_536;

/** The Transport of the datagram whose metadata starts at `meta[m]` (uncached; see PeerCache). */
export function readTransport(meta: Int32Array, m: number): Transport {
  const family = meta[m + Meta.FAMILY] === 4 ? 4 : 6;
  return { family, address: addressText(family, meta, m + Meta.ADDR), port: meta[m + Meta.PORT] as number };
}

/** The text of the address in `words` at `at` as metadata holds it (ADDR, LOCAL): one word for IPv4, four for IPv6. */
export function addressText(family: 4 | 6, words: Int32Array, at: number): string {
  if (family === 4) {
    const a = (words[at] as number) >>> 0;
    return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
  }
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  for (let w = 0; w < 4; w++) v.setUint32(w * 4, (words[at + w] as number) >>> 0);
  return bytesToIp(b);
}

/**
 * Numeric source → Peer, bounded: IPv4 keyed by address × 65536 + port (exact in a double), IPv6 by its
 * words and port as text. When full it starts over (entries are rebuilt on their next datagram).
 */
export class PeerCache {
  readonly #v4 = new Map<number, Peer>();
  readonly #v6 = new Map<string, Peer>();

  get(meta: Int32Array, m: number): Peer {
    if (meta[m + Meta.FAMILY] === 4) {
      const k = ((meta[m + Meta.ADDR] as number) >>> 0) * 65536 + (meta[m + Meta.PORT] as number);
      const hit = this.#v4.get(k);
      if (hit !== undefined) return hit;
      if (this.#v4.size >= PEER_CACHE_MAX) this.#v4.clear();
      const p = this.#make(meta, m);
      this.#v4.set(k, p);
      return p;
    }
    const k = `${meta[m + Meta.ADDR]},${meta[m + Meta.ADDR + 1]},${meta[m + Meta.ADDR + 2]},${meta[m + Meta.ADDR + 3]},${meta[m + Meta.PORT]}`;
    const hit = this.#v6.get(k);
    if (hit !== undefined) return hit;
    if (this.#v6.size >= PEER_CACHE_MAX) this.#v6.clear();
    const p = this.#make(meta, m);
    this.#v6.set(k, p);
    return p;
  }

  #make(meta: Int32Array, m: number): Peer {
    const t = Object.freeze(readTransport(meta, m));
    return { t, key: transportKey(t) };
  }
}

/**
 * The FAMILY, PORT and ADDR fields (6 int32, in that order) of a send to `t`, as a new array; null when
 * its address is not an IP literal (never the case for a socket-reported address). Not cached per
 * Transport here: a cache keyed by the transports sessions hold would keep one entry per session (258
 * bytes each, measured); the director keeps it with a session's ready header (bounded) instead, and
 * parses it again (a few small allocations) for a reply of a session that has none.
 */
export function destOf(t: Transport): Int32Array | null {
  return destInto(t, new Int32Array(6));
}

/**
 * destOf written into `d` at `at` (six ints kept by the caller, e.g. a header cache slot's): `d`, or null
 * (`d` untouched).
 */
export function destInto(t: Transport, d: Int32Array, at = 0): Int32Array | null {
  const bytes = ipToBytes(t.address);
  if (bytes === undefined) return null;
  d[at] = bytes.length === 4 ? 4 : 6;
  d[at + 1] = t.port;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let w = 0; w < bytes.length / 4; w++) d[at + 2 + w] = v.getUint32(w * 4) | 0;
  for (let w = 2 + bytes.length / 4; w < 6; w++) d[at + w] = 0;
  return d;
}
