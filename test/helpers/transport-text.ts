// Transport texts for property tests of the store (src/store/transport-text.ts, columns.ts): canonical ones
// as the director writes them, and ones a little off that must be kept as the text they are.
import fc from 'fast-check';
import { bytesToIp, transportKey } from '../../src/codec/ip.js';

/** Canonical transport texts, as the director writes them (transportKey of a canonical address). */
export const canonicalTransport: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 65535 })).map(([a, p]) => transportKey({ family: 4, address: bytesToIp(Uint8Array.of(a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255)), port: p })),
  fc.tuple(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.nat({ max: 65535 })).map(([b, p]) => transportKey({ family: 6, address: bytesToIp(b), port: p })),
  // Zero runs of every length and place (the "::" choice), and the dotted forms inet_ntop writes.
  fc.tuple(fc.array(fc.constantFrom(0, 0, 0, 1, 0xffff, 0x1234), { minLength: 8, maxLength: 8 }), fc.nat({ max: 65535 })).map(([g, p]) => {
    const b = new Uint8Array(16);
    g.forEach((w, i) => {
      b[2 * i] = w >>> 8;
      b[2 * i + 1] = w & 255;
    });
    return transportKey({ family: 6, address: bytesToIp(b), port: p });
  }),
  fc.tuple(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.boolean(), fc.nat({ max: 65535 })).map(([v4, mapped, p]) => {
    const b = new Uint8Array(16);
    if (mapped) b.fill(0xff, 10, 12);
    b.set(v4, 12);
    return transportKey({ family: 6, address: bytesToIp(b), port: p });
  }),
);

/** A canonical text changed a little: a digit or zero added, a character dropped, doubled, case-flipped or replaced. */
export const nearCanonicalTransport: fc.Arbitrary<string> = fc
  .tuple(canonicalTransport, fc.nat(), fc.constantFrom('insert0', 'drop', 'double', 'case', 'replace', 'zone', 'space'), fc.constantFrom('0', '9', ':', '.', 'A', 'f', ' ', '\u00b0', '[', ']', '%'))
  .map(([s, at, how, c]) => {
    const i = at % (s.length + 1);
    switch (how) {
      case 'insert0':
        return s.slice(0, i) + '0' + s.slice(i);
      case 'drop':
        return s.slice(0, i) + s.slice(i + 1);
      case 'double':
        return s.slice(0, i) + s.slice(i, i + 1) + s.slice(i);
      case 'case':
        return s.toUpperCase();
      case 'zone':
        return s.includes(']') ? s.replace(']', '%eth0]') : s;
      case 'space':
        return i % 2 === 0 ? ` ${s}` : `${s} `;
      default:
        return s.slice(0, i) + c + s.slice(i + 1);
    }
  });
