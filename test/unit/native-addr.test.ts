// Addresses between native metadata slots and Transports (src/net/native/addr.ts): a source read from a
// slot is formatted exactly as node:dgram reports it, a Transport written back as a destination reads
// back to itself, and the peer cache hands out one Transport per source.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { bytesToIp, transportKey } from '../../src/codec/ip.js';
import type { Transport } from '../../src/codec/types.js';
import { destInto, destOf, PeerCache, readTransport } from '../../src/net/native/addr.js';
import { Meta } from '../../src/net/native/index.js';

const FC = { seed: 7_2026, numRuns: 300 } as const;

/** A metadata slab of `slots` slots with `t` written into slot `i` the way the addon writes a source. */
function slotOf(t: { family: 4 | 6; bytes: Uint8Array; port: number }, slots = 2, i = 1): { meta: Int32Array; m: number } {
  const meta = new Int32Array(slots * Meta.INTS);
  const m = i * Meta.INTS;
  meta[m + Meta.FAMILY] = t.family;
  meta[m + Meta.PORT] = t.port;
  const v = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.length);
  for (let w = 0; w < t.bytes.length / 4; w++) meta[m + Meta.ADDR + w] = v.getUint32(w * 4) | 0;
  return { meta, m };
}

const source = fc.oneof(
  fc.record({ family: fc.constant(4 as const), bytes: fc.uint8Array({ minLength: 4, maxLength: 4 }), port: fc.integer({ min: 0, max: 65535 }) }),
  fc.record({ family: fc.constant(6 as const), bytes: fc.uint8Array({ minLength: 16, maxLength: 16 }), port: fc.integer({ min: 0, max: 65535 }) }),
);

describe('native addresses', () => {
  it('readTransport formats a source as node:dgram would (codec/ip bytesToIp), with its port', () => {
    fc.assert(
      fc.property(source, (src) => {
        const { meta, m } = slotOf(src);
        expect(readTransport(meta, m)).toEqual({ family: src.family, address: bytesToIp(src.bytes), port: src.port });
      }),
      FC,
    );
  });

  it('known forms: 127.0.0.1, 255.255.255.255 (u32 above 2^31), ::1 and an IPv4-mapped address', () => {
    const cases: [4 | 6, number[], string][] = [
      [4, [127, 0, 0, 1], '127.0.0.1'],
      [4, [255, 255, 255, 255], '255.255.255.255'],
      [6, [...Array(15).fill(0), 1], '::1'],
      [6, [...Array(10).fill(0), 0xff, 0xff, 192, 0, 2, 1], '::ffff:192.0.2.1'],
    ];
    for (const [family, bytes, text] of cases) {
      const { meta, m } = slotOf({ family, bytes: Uint8Array.from(bytes), port: 443 });
      expect(readTransport(meta, m)).toEqual({ family, address: text, port: 443 });
    }
  });

  it('destOf writes back what readTransport read (FAMILY, PORT, ADDR words), for any source', () => {
    fc.assert(
      fc.property(source, (src) => {
        const { meta, m } = slotOf(src);
        const t = readTransport(meta, m);
        const d = destOf(t);
        expect(d).not.toBeNull();
        const words = src.family === 4 ? 1 : 4;
        expect([...(d as Int32Array).subarray(0, 2 + words)]).toEqual([...meta.subarray(m + Meta.FAMILY, m + Meta.ADDR + words)]);
      }),
      FC,
    );
  });

  it('destInto writes what destOf makes into a kept array, whatever it held before (a header cache slot reused across sessions)', () => {
    fc.assert(
      fc.property(source, source, (a, b) => {
        const kept = new Int32Array(6);
        expect(destInto(readTransport(slotOf(a).meta, slotOf(a).m), kept)).toBe(kept);
        const t = readTransport(slotOf(b).meta, slotOf(b).m);
        expect(destInto(t, kept)).toBe(kept);
        expect([...kept]).toEqual([...(destOf(t) as Int32Array)]);
      }),
      FC,
    );
    const kept = Int32Array.of(1, 2, 3, 4, 5, 6);
    expect(destInto({ family: 4, address: 'example.com', port: 1 }, kept)).toBeNull();
    expect([...kept]).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('destOf refuses an address that is not an IP literal; each call makes a new array (nothing kept per Transport)', () => {
    expect(destOf({ family: 4, address: 'example.com', port: 1 })).toBeNull();
    const t: Transport = { family: 4, address: '10.1.2.3', port: 9 };
    const d = destOf(t);
    expect(destOf(t)).not.toBe(d);
    expect(destOf(t)).toEqual(d);
    expect([...(d as Int32Array).subarray(0, 3)]).toEqual([4, 9, (10 << 24) | (1 << 16) | (2 << 8) | 3]);
  });

  it('PeerCache: one frozen Transport and key per source', () => {
    const peers = new PeerCache();
    fc.assert(
      fc.property(source, (src) => {
        const { meta, m } = slotOf(src);
        const a = peers.get(meta, m);
        const b = peers.get(slotOf(src, 1, 0).meta, 0);
        expect(b).toBe(a);
        expect(Object.isFrozen(a.t)).toBe(true);
        expect(a.key).toBe(transportKey(a.t));
        expect(a.t).toEqual(readTransport(meta, m));
      }),
      FC,
    );
    // Another port of the same address is another peer.
    const x = slotOf({ family: 4, bytes: Uint8Array.from([127, 0, 0, 1]), port: 1 });
    const y = slotOf({ family: 4, bytes: Uint8Array.from([127, 0, 0, 1]), port: 2 });
    expect(peers.get(x.meta, x.m)).not.toBe(peers.get(y.meta, y.m));
  });
});
