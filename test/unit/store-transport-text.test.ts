// Transport text ↔ numbers for the store's columns (src/store/transport-text.ts): a table of texts that
// are and are not held as numbers (almost-canonical ones included), and properties — any text a parser
// accepts formats back to exactly that text; every canonical text (as codec/ip.ts writes it) is accepted.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { formatV4Transport, formatV6Transport, parseV4Transport, parseV6Transport } from '../../src/store/transport-text.js';
import { canonicalTransport, nearCanonicalTransport } from '../helpers/transport-text.js';

/** The text formatted back from what a parser took from `s`, or null when neither takes it. */
function roundTrip(s: string): string | null {
  const addr = new Uint32Array(1);
  const v4port = parseV4Transport(s, addr);
  if (v4port !== -1) return formatV4Transport(addr[0]!, v4port);
  const b = new Uint8Array(16);
  const port = parseV6Transport(s, b);
  return port === -1 ? null : formatV6Transport(b, port);
}

describe('transport text', () => {
  it.each([
    ['1.2.3.4:80', true],
    ['0.0.0.0:0', true],
    ['255.255.255.255:65535', true],
    ['10.0.0.1:20000', true],
    ['[::1]:443', true],
    ['[::]:0', true],
    ['[2001:db8::1]:443', true],
    ['[::ffff:1.2.3.4]:5', true],
    ['[::1.2.3.4]:5', true],
    ['[fe80::1:0:0:1]:7', true],
    ['[1:0:0:1::1]:7', true],
    ['[1:0:0:1:0:0:0:1]:7', false],
    ['[2001:db8:0:0:1:0:0:1]:1', false], // the first of two equal zero runs is the one compressed
    ['[2001:db8::1:0:0:1]:1', true],
    ['[1:2:3:4:5:6:7:8]:9', true],
    ['[1:2:3:4:5:6:0:8]:9', true], // a single zero group is never compressed
    ['[1:2:3:4:5:6::8]:9', false],
    ['1.2.3.4:080', false],
    ['01.2.3.4:80', false],
    ['1.2.3.04:80', false],
    ['1.2.3.4:65536', false],
    ['256.1.1.1:1', false],
    ['1.2.3:4', false],
    ['1.2.3.4.5:6', false],
    ['1.2.3.4', false],
    ['1.2.3.4:', false],
    ['1.2.3.4:+1', false],
    ['1.2.3.4:1e3', false],
    [' 1.2.3.4:80', false],
    ['1.2.3.4:80 ', false],
    ['1.2.3.4:80:81', false],
    ['', false],
    [':', false],
    ['[]:1', false],
    ['[::]:', false],
    ['[::1]:080', false],
    ['[::FFFF:1.2.3.4]:5', false],
    ['[::ffff:01.2.3.4]:5', false],
    ['[0:0:0:0:0:0:0:1]:80', false],
    ['[::0001]:80', false],
    ['[::1%eth0]:80', false],
    ['[1.2.3.4]:5', false],
    ['::1:80', false],
    ['[::1]80', false],
    ['[:::1]:1', false],
    ['[1::2::3]:1', false],
    ['[1:2:3:4:5:6:7:8:9]:1', false],
    ['[1:2:3:4:5:6:7]:1', false],
    ['[12345::1]:1', false],
    ['localhost:80', false],
  ])('%j is held as numbers: %s', (s, held) => {
    const back = roundTrip(s);
    expect(back !== null).toBe(held);
    if (back !== null) expect(back).toBe(s);
  });

  it('formats back exactly what it accepted, for any string (almost-canonical ones above all)', () => {
    fc.assert(
      fc.property(fc.oneof(nearCanonicalTransport, fc.string({ unit: 'binary', maxLength: 60 }), fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:.[]'), maxLength: 48 })), (s) => {
        const back = roundTrip(s);
        if (back !== null) expect(back).toBe(s);
      }),
      { numRuns: 5000 },
    );
  });

  it('accepts every canonical text, and the numbers format back to it', () => {
    fc.assert(
      fc.property(canonicalTransport, (s) => {
        expect(roundTrip(s)).toBe(s);
      }),
      { numRuns: 3000 },
    );
  });

  it('reads IPv4 numbers back as they were written', () => {
    fc.assert(
      fc.property(fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 65535 }), (a, p) => {
        const addr = new Uint32Array(1);
        expect(parseV4Transport(formatV4Transport(a, p), addr)).toBe(p);
        expect(addr[0]).toBe(a);
      }),
    );
  });
});
