import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bytesToIp } from '../../src/codec/ip.js';
import {
  PP2_FLAG,
  PP2_TLV,
  createPpv2Prefix,
  createPpv2Template,
  decodePpv2,
  encodePpv2,
  ppv2HeaderLength,
  ppv2NeedBytes,
  ppv2OwnerBytes,
  stampPpv2,
  writePpv2,
} from '../../src/codec/ppv2.js';
import type { Ppv2Fields, Ppv2Header } from '../../src/codec/ppv2.js';
import { MalformedReason } from '../../src/codec/types.js';
import type { Decoded } from '../../src/codec/types.js';
import { PP2_SIGNATURE, hex, pb, sid } from '../helpers/packet-builder.js';

const { TRUNCATED, BAD_HEADER, BAD_TLV } = MalformedReason;

const V4: Ppv2Fields = {
  transport: 'DGRAM',
  src: { family: 4, address: '192.0.2.1', port: 51820 },
  dst: { family: 4, address: '198.51.100.7', port: 443 },
  sessionId: hex('00112233445566778899aabbccddeeff'),
  version: 5n,
  owner: 'node-a',
  flags: PP2_FLAG.UNBOUND_SOURCE,
  seq: 42,
};
const V4_HEX = `
  0d0a0d0a000d0a515549540a | 21 | 12 | 0042
  c0000201 | c6336407 | ca6c | 01bb
  e0 0010 00112233445566778899aabbccddeeff
  e1 0008 0000000000000005
  e2 0006 6e6f64652d61
  e3 0001 01
  e4 0008 000000000000002a`;

const V6: Ppv2Fields = {
  transport: 'STREAM',
  src: { family: 6, address: '2001:db8::1', port: 1194 },
  dst: { family: 6, address: 'fd00::2', port: 443 },
  sessionId: hex('0102030405060708090a0b0c0d0e0f10'),
  version: 2n ** 63n + 1n,
  owner: 'nœud-1',
  flags: PP2_FLAG.UNBOUND_SOURCE | PP2_FLAG.REPLAYED,
  seq: 2 ** 40 + 1,
};
const V6_HEX = `
  0d0a0d0a000d0a515549540a | 21 | 21 | 005b
  20010db8000000000000000000000001 | fd000000000000000000000000000002 | 04aa | 01bb
  e0 0010 0102030405060708090a0b0c0d0e0f10
  e1 0008 8000000000000001
  e2 0007 6ec59375642d31
  e3 0001 03
  e4 0008 0000010000000001`;

/** A comparable summary of a decode result (hex for byte views). */
function summarize(d: Decoded<Ppv2Header>): unknown {
  if (d.kind !== 'ok') return d;
  const { sessionId, tlvs, ...rest } = d.value;
  return {
    kind: 'ok',
    ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)),
    ...(sessionId !== undefined && { sessionId: Buffer.from(sessionId).toString('hex') }),
    tlvTypes: tlvs.map((t) => t.type),
  };
}

function expectedOf(f: Ppv2Fields, headerLength: number): unknown {
  return {
    kind: 'ok',
    command: 'PROXY',
    transport: f.transport,
    src: f.src,
    dst: f.dst,
    headerLength,
    sessionId: Buffer.from(f.sessionId).toString('hex'),
    version: f.version,
    owner: f.owner,
    flags: f.flags,
    seq: BigInt(f.seq),
    tlvTypes: [0xe0, 0xe1, 0xe2, 0xe3, 0xe4],
  };
}

describe('PROXY v2 encoder: exact bytes', () => {
  it('IPv4 / DGRAM', () => {
    expect(encodePpv2(V4).toString('hex')).toBe(hex(V4_HEX).toString('hex'));
    expect(encodePpv2(V4)).toHaveLength(82);
  });
  it('IPv6 / STREAM, multi-byte owner, seq above 2^32, version above 2^63', () => {
    expect(encodePpv2(V6).toString('hex')).toBe(hex(V6_HEX).toString('hex'));
  });
  it('the PacketBuilder builds the same bytes (fixture helper sanity)', () => {
    const built = pb()
      .ppv2({ fam: 0x12 })
      .addresses('192.0.2.1', 51820, '198.51.100.7', 443)
      .anchorTlvs({ sessionId: V4.sessionId, version: 5n, owner: 'node-a', flags: 1, seq: 42n })
      .build();
    expect(built.toString('hex')).toBe(hex(V4_HEX).toString('hex'));
  });
  it('mixed families: the IPv4 side becomes IPv4-mapped IPv6 and the header is INET6', () => {
    const h = encodePpv2({ ...V4, dst: { family: 6, address: '::', port: 443 } });
    expect(h[13]).toBe(0x22);
    const d = decodePpv2(h);
    expect(d.kind === 'ok' && d.value.src).toEqual({ family: 6, address: '::ffff:192.0.2.1', port: 51820 });
    expect(d.kind === 'ok' && d.value.dst).toEqual({ family: 6, address: '::', port: 443 });
  });
});

describe('PROXY v2 hot-path writer', () => {
  const prefix = createPpv2Prefix(V4.transport, V4.src, V4.dst);
  const owner = ppv2OwnerBytes(V4.owner);

  it('writes at an offset, returns the header length, number and bigint seq agree', () => {
    const len = ppv2HeaderLength(prefix, owner);
    const out = Buffer.alloc(len + 10, 0xee);
    expect(writePpv2(out, prefix, V4.sessionId, V4.version, owner, V4.flags, 42n, 3)).toBe(len);
    expect(out.subarray(3, 3 + len).toString('hex')).toBe(hex(V4_HEX).toString('hex'));
    expect(out.subarray(0, 3).toString('hex') + out.subarray(3 + len).toString('hex')).toBe('ee'.repeat(10));
    const again = Buffer.alloc(len);
    writePpv2(again, prefix, V4.sessionId, V4.version, owner, V4.flags, 42);
    expect(again.equals(out.subarray(3, 3 + len))).toBe(true);
  });

  it('the prefix is reusable across owners of different lengths', () => {
    for (const o of ['', 'x', 'a'.repeat(64)]) {
      const ob = ppv2OwnerBytes(o);
      const out = Buffer.alloc(ppv2HeaderLength(prefix, ob) + 4);
      const n = writePpv2(out, prefix, V4.sessionId, 1n, ob, 0, 1);
      out.write('DATA', n);
      const d = decodePpv2(out);
      expect(d.kind === 'ok' && [d.value.headerLength, d.value.owner]).toEqual([n, o]);
    }
  });

  it('throws on misuse (never on wire bytes: there are none here)', () => {
    const out = Buffer.alloc(200);
    expect(() => ppv2OwnerBytes('é'.repeat(33))).toThrow(RangeError);
    expect(() => writePpv2(Buffer.alloc(10), prefix, V4.sessionId, 1n, owner, 0, 1)).toThrow(RangeError);
    expect(() => writePpv2(out, prefix, sid(1).subarray(1), 1n, owner, 0, 1)).toThrow(RangeError);
    expect(() => writePpv2(out, prefix, V4.sessionId, 1n, owner, 0, -1)).toThrow(RangeError);
    expect(() => writePpv2(out, prefix, V4.sessionId, 1n, owner, 0, 1.5)).toThrow(RangeError);
    expect(() => writePpv2(out, prefix, V4.sessionId, -1n, owner, 0, 1)).toThrow(RangeError);
    expect(() => writePpv2(out, prefix, V4.sessionId, 1n, owner, 256, 1)).toThrow(RangeError);
    expect(() => createPpv2Prefix('DGRAM', { family: 4, address: 'nope', port: 1 }, V4.dst)).toThrow(RangeError);
    expect(() => createPpv2Prefix('DGRAM', { ...V4.src, port: 65536 }, V4.dst)).toThrow(RangeError);
  });
});

describe('decodePpv2 round trips', () => {
  it.each([
    ['IPv4', V4, V4_HEX],
    ['IPv6', V6, V6_HEX],
  ] as const)('%s', (_name, fields, wire) => {
    const bytes = Buffer.concat([hex(wire), Buffer.from('JV payload')]);
    expect(summarize(decodePpv2(bytes))).toEqual(expectedOf(fields, hex(wire).length));
  });
});

type Fixture = { description: string; input: Uint8Array; expected: unknown };
const bad = (reason: MalformedReason) => ({ kind: 'malformed', reason });
const v4Addr = (b = pb()) => b.addresses('10.0.0.1', 1000, '10.0.0.2', 2000);
const tlvs = { sessionId: sid(1), version: 1n, owner: 'n1', flags: 0, seq: 1n };
const plainOk = (extra: object) => ({ kind: 'ok', command: 'PROXY', transport: 'DGRAM', ...extra });
const SRC4 = { family: 4, address: '10.0.0.1', port: 1000 };
const DST4 = { family: 4, address: '10.0.0.2', port: 2000 };

const fixtures: Fixture[] = [
  // ok
  { description: 'PROXY UDP4 without TLVs', input: v4Addr(pb().ppv2()).build(), expected: plainOk({ src: SRC4, dst: DST4, headerLength: 28, tlvTypes: [] }) },
  {
    description: 'PROXY TCP4 + payload after the header',
    input: v4Addr(pb().ppv2({ fam: 0x11 })).endPpv2().utf8('GET /').build(),
    expected: plainOk({ transport: 'STREAM', src: SRC4, dst: DST4, headerLength: 28, tlvTypes: [] }),
  },
  {
    description: 'unknown TLVs (NOOP 0x04, 0xee) are kept',
    input: v4Addr(pb().ppv2()).tlv(0x04, [0, 0]).tlv(0xee, []).tlv(0xe3, [2]).build(),
    expected: plainOk({ src: SRC4, dst: DST4, headerLength: 28 + 5 + 3 + 4, flags: 2, tlvTypes: [0x04, 0xee, 0xe3] }),
  },
  { description: 'E2 of exactly 64 bytes', input: v4Addr(pb().ppv2()).tlv(0xe2, 'o'.repeat(64)).build(), expected: plainOk({ src: SRC4, dst: DST4, headerLength: 28 + 67, owner: 'o'.repeat(64), tlvTypes: [0xe2] }) },
  { description: 'E2 empty', input: v4Addr(pb().ppv2()).tlv(0xe2, '').build(), expected: plainOk({ src: SRC4, dst: DST4, headerLength: 31, owner: '', tlvTypes: [0xe2] }) },
  { description: 'LOCAL, UNSPEC, empty', input: pb().ppv2({ verCmd: 0x20, fam: 0x00 }).build(), expected: { kind: 'ok', command: 'LOCAL', transport: 'UNSPEC', headerLength: 16, tlvTypes: [] } },
  { description: 'LOCAL with INET addresses: addresses ignored', input: v4Addr(pb().ppv2({ verCmd: 0x20 })).build(), expected: { kind: 'ok', command: 'LOCAL', transport: 'DGRAM', headerLength: 28, tlvTypes: [] } },
  { description: 'PROXY UNSPEC with TLVs', input: pb().ppv2({ fam: 0x00 }).anchorTlvs(tlvs).build(), expected: { kind: 'ok', command: 'PROXY', transport: 'UNSPEC', headerLength: 16 + 50, sessionId: '01'.repeat(16), version: 1n, owner: 'n1', flags: 0, seq: 1n, tlvTypes: [0xe0, 0xe1, 0xe2, 0xe3, 0xe4] } },
  { description: 'PROXY UNIX DGRAM: 216 address bytes skipped', input: pb().ppv2({ fam: 0x32 }).zeros(216).tlv(0xe3, [1]).build(), expected: plainOk({ headerLength: 16 + 216 + 4, flags: 1, tlvTypes: [0xe3] }) },
  // not-mine
  { description: 'JV1 packet', input: pb().jv1(2).build(), expected: { kind: 'not-mine' } },
  { description: 'one wrong byte', input: hex('00'), expected: { kind: 'not-mine' } },
  { description: 'signature with "QUIX"', input: hex('0d0a0d0a000d0a515549580a 21 12 0000'), expected: { kind: 'not-mine' } },
  { description: 'PROXY v1 text', input: Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n'), expected: { kind: 'not-mine' } },
  { description: 'signature prefix then mismatch', input: hex('0d0a0d0a00ff'), expected: { kind: 'not-mine' } },
  // truncated
  { description: 'empty', input: new Uint8Array(0), expected: bad(TRUNCATED) },
  { description: 'first signature byte', input: hex('0d'), expected: bad(TRUNCATED) },
  { description: 'signature only', input: Buffer.from(PP2_SIGNATURE), expected: bad(TRUNCATED) },
  { description: '15 bytes', input: pb().ppv2().cut(15), expected: bad(TRUNCATED) },
  { description: 'length says 12, no addresses', input: pb().ppv2({ len: 12 }).build(), expected: bad(TRUNCATED) },
  { description: 'valid IPv4 header minus its last byte', input: hex(V4_HEX).subarray(0, 81), expected: bad(TRUNCATED) },
  // bad_header
  { description: 'version 1 nibble', input: v4Addr(pb().ppv2({ verCmd: 0x11 })).build(), expected: bad(BAD_HEADER) },
  { description: 'version 3 nibble', input: v4Addr(pb().ppv2({ verCmd: 0x31 })).build(), expected: bad(BAD_HEADER) },
  { description: 'command 2', input: v4Addr(pb().ppv2({ verCmd: 0x22 })).build(), expected: bad(BAD_HEADER) },
  { description: 'command 0xf', input: v4Addr(pb().ppv2({ verCmd: 0x2f })).build(), expected: bad(BAD_HEADER) },
  { description: 'bad version seen before the rest arrives', input: pb().ppv2({ verCmd: 0x10 }).cut(13), expected: bad(BAD_HEADER) },
  { description: 'family 4', input: v4Addr(pb().ppv2({ fam: 0x41 })).build(), expected: bad(BAD_HEADER) },
  { description: 'transport 3', input: v4Addr(pb().ppv2({ fam: 0x13 })).build(), expected: bad(BAD_HEADER) },
  { description: 'bad family seen at 14 bytes', input: pb().ppv2({ fam: 0xf2 }).cut(14), expected: bad(BAD_HEADER) },
  { description: 'INET address block longer than len', input: pb().ppv2({ fam: 0x12 }).zeros(8).build(), expected: bad(BAD_HEADER) },
  { description: 'INET6 with only 12 address bytes', input: v4Addr(pb().ppv2({ fam: 0x22 })).build(), expected: bad(BAD_HEADER) },
  { description: 'UNIX with only 100 bytes', input: pb().ppv2({ fam: 0x31 }).zeros(100).build(), expected: bad(BAD_HEADER) },
  // bad_tlv
  { description: '1 stray byte after the addresses', input: v4Addr(pb().ppv2()).u8(0xe3).build(), expected: bad(BAD_TLV) },
  { description: '2 stray bytes (TLV head cut)', input: v4Addr(pb().ppv2()).u8(0xe3, 0).build(), expected: bad(BAD_TLV) },
  { description: 'TLV length past the header end', input: v4Addr(pb().ppv2()).tlv(0x04, [1, 2], 3).build(), expected: bad(BAD_TLV) },
  { description: 'TLV within the buffer but past the length field', input: v4Addr(pb().ppv2({ len: 12 + 4 + 2 })).tlv(0xe3, [1]).tlv(0xe3, [1]).build(), expected: bad(BAD_TLV) },
  { description: 'E0 of 15 bytes', input: v4Addr(pb().ppv2()).tlv(0xe0, sid(1).subarray(1)).build(), expected: bad(BAD_TLV) },
  { description: 'E0 of 17 bytes', input: v4Addr(pb().ppv2()).tlv(0xe0, [...sid(1), 1]).build(), expected: bad(BAD_TLV) },
  { description: 'E1 of 7 bytes', input: v4Addr(pb().ppv2()).tlv(0xe1, new Uint8Array(7)).build(), expected: bad(BAD_TLV) },
  { description: 'E3 empty', input: v4Addr(pb().ppv2()).tlv(0xe3, []).build(), expected: bad(BAD_TLV) },
  { description: 'E3 of 2 bytes', input: v4Addr(pb().ppv2()).tlv(0xe3, [0, 0]).build(), expected: bad(BAD_TLV) },
  { description: 'E4 of 9 bytes', input: v4Addr(pb().ppv2()).tlv(0xe4, new Uint8Array(9)).build(), expected: bad(BAD_TLV) },
  { description: 'E2 of 65 bytes', input: v4Addr(pb().ppv2()).tlv(0xe2, 'o'.repeat(65)).build(), expected: bad(BAD_TLV) },
  { description: 'E2 not UTF-8', input: v4Addr(pb().ppv2()).tlv(0xe2, [0x6e, 0xc3]).build(), expected: bad(BAD_TLV) },
  { description: 'E1 twice', input: v4Addr(pb().ppv2()).tlv(0xe1, new Uint8Array(8)).tlv(0xe1, new Uint8Array(8)).build(), expected: bad(BAD_TLV) },
  { description: 'E2 twice', input: v4Addr(pb().ppv2()).tlv(0xe2, 'a').tlv(0xe2, 'b').build(), expected: bad(BAD_TLV) },
];

describe('decodePpv2 fixtures', () => {
  it.each(fixtures)('$description', ({ input, expected }) => {
    expect(summarize(decodePpv2(input))).toEqual(expected);
  });
});

describe('stream header cut at every byte', () => {
  for (const [name, wire] of [
    ['IPv4', hex(V4_HEX)],
    ['IPv6', hex(V6_HEX)],
    ['LOCAL', pb().ppv2({ verCmd: 0x20, fam: 0 }).build()],
  ] as const) {
    it(name, () => {
      const stream = Buffer.concat([wire, Buffer.from('stream bytes')]);
      for (let n = 0; n <= stream.length; n++) {
        const part = stream.subarray(0, n);
        expect(ppv2NeedBytes(part), `need at ${n}`).toBe(n < 16 ? 16 : wire.length);
        const d = decodePpv2(part);
        if (n < wire.length) expect(d, `decode at ${n}`).toEqual(bad(TRUNCATED));
        else expect(d.kind === 'ok' && d.value.headerLength).toBe(wire.length);
      }
    });
  }
  it('not-mine as soon as a byte differs', () => {
    const other = Buffer.from('\r\n\r\nGET / HTTP/1.1');
    for (let n = 0; n <= other.length; n++) {
      expect(ppv2NeedBytes(other.subarray(0, n))).toBe(n < 5 ? 16 : 'not-mine');
    }
  });
});

describe('properties', () => {
  const ip4 = fc.uint8Array({ minLength: 4, maxLength: 4 }).map(bytesToIp);
  const ip6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map(bytesToIp);
  const port = fc.integer({ min: 0, max: 65535 });
  const transport = (ip: fc.Arbitrary<string>, family: 4 | 6) => fc.record({ family: fc.constant(family), address: ip, port });
  const pair = fc.oneof(fc.tuple(transport(ip4, 4), transport(ip4, 4)), fc.tuple(transport(ip6, 6), transport(ip6, 6)));
  const owner = fc.oneof(fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/), fc.string({ unit: 'grapheme', maxLength: 20 })).filter((s) => Buffer.byteLength(s) <= 64);

  it('encode → decode round trip for arbitrary fields', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('DGRAM' as const, 'STREAM' as const),
        pair,
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        owner,
        fc.integer({ min: 0, max: 255 }),
        fc.oneof(fc.maxSafeNat(), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
        (tr, [src, dst], sessionId, version, o, flags, seq) => {
          const f: Ppv2Fields = { transport: tr, src, dst, sessionId, version, owner: o, flags, seq };
          const h = encodePpv2(f);
          expect(summarize(decodePpv2(h))).toEqual(expectedOf(f, h.length));
        },
      ),
    );
  });

  it('decodePpv2 and ppv2NeedBytes never throw on arbitrary bytes', () => {
    const tlv = fc.tuple(fc.constantFrom(0xe0, 0xe1, 0xe2, 0xe3, 0xe4, 0x04, 0x20), fc.uint8Array({ maxLength: 20 }), fc.boolean()).map(([t, v, lie]) =>
      pb().tlv(t, v, lie ? v.length + 1 : undefined).build(),
    );
    const structured = fc
      .tuple(fc.constantFrom(0x20, 0x21, 0x22, 0x11), fc.constantFrom(0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x13, 0x41), fc.uint8Array({ maxLength: 40 }), fc.array(tlv, { maxLength: 6 }), fc.option(fc.integer({ min: 0, max: 0xffff })))
      .map(([verCmd, fam, addr, ts, len]) => pb().ppv2({ verCmd, fam, ...(len !== null && { len }) }).bytes(addr).bytes(Buffer.concat(ts)).build());
    const sigFirst = fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.concat([Buffer.from(PP2_SIGNATURE), b]));
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 80 }), sigFirst, structured), (b) => {
        const d = decodePpv2(b);
        const need = ppv2NeedBytes(b);
        if (d.kind === 'ok') expect(d.value.headerLength).toBe(need);
        if (d.kind === 'not-mine') expect(need).toBe('not-mine');
        return d.kind !== 'malformed' || Object.values(MalformedReason).includes(d.reason);
      }),
      { numRuns: 3000 },
    );
  });

  it('TLV constants', () => {
    expect(PP2_TLV).toEqual({ SESSION_ID: 0xe0, VERSION: 0xe1, OWNER: 0xe2, FLAGS: 0xe3, SEQ: 0xe4 });
    expect(PP2_FLAG).toEqual({ UNBOUND_SOURCE: 1, REPLAYED: 2 });
  });
});

describe('createPpv2Template + stampPpv2 (the per-datagram encoder)', () => {
  it('writes exactly what writePpv2 writes, for any flags and seq up to 2^53 - 1', () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.string({ minLength: 1, maxLength: 64 }).filter((s) => Buffer.byteLength(s) <= 64),
        fc.integer({ min: 0, max: 255 }),
        fc.maxSafeNat(),
        (v6, id, version, owner, flags, seq) => {
          const src = v6 ? { family: 6 as const, address: '2001:db8::7', port: 40000 } : { family: 4 as const, address: '192.0.2.1', port: 51820 };
          const prefix = createPpv2Prefix('DGRAM', src, { family: 4, address: '198.51.100.7', port: 443 });
          const ownerBytes = ppv2OwnerBytes(owner);
          const want = Buffer.alloc(ppv2HeaderLength(prefix, ownerBytes));
          writePpv2(want, prefix, id, version, ownerBytes, flags, seq);
          const template = createPpv2Template(prefix, id, version, ownerBytes);
          const got = Buffer.alloc(template.length + 3, 0xaa);
          expect(stampPpv2(got, template, flags, seq)).toBe(want.length);
          expect(got.subarray(0, want.length).toString('hex')).toBe(want.toString('hex'));
          expect([...got.subarray(want.length)]).toEqual([0xaa, 0xaa, 0xaa]);
          const d = decodePpv2(got.subarray(0, want.length));
          expect(d.kind === 'ok' && d.value.seq === BigInt(seq) && d.value.flags === flags && d.value.version === version).toBe(true);
        },
      ),
    );
  });

  it('leaves the template as it was (it is shared by every datagram of the session)', () => {
    const prefix = createPpv2Prefix('DGRAM', V4.src, V4.dst);
    const template = createPpv2Template(prefix, V4.sessionId, 9n, ppv2OwnerBytes('node-b'));
    const before = Buffer.from(template);
    stampPpv2(Buffer.alloc(template.length), template, PP2_FLAG.REPLAYED, 123456789);
    expect(template.equals(before)).toBe(true);
  });
});
