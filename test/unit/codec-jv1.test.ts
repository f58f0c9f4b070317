import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkJv1,
  JV1_HEADER_LEN,
  JV1_MAGIC,
  JV1_VERSION,
  decodeBind,
  decodeJv1,
  decodeReject,
  decodeRevoke,
  encodeBind,
  encodeJv1,
  encodeReject,
  encodeRevoke,
  parseSessionIdHex,
  sessionIdHex,
  writeJv1Header,
} from '../../src/codec/jv1.js';
import { MalformedReason, PacketType, RejectReason } from '../../src/codec/types.js';
import type { Decoded, Transport } from '../../src/codec/types.js';
import type { Jv1Packet } from '../../src/codec/jv1.js';
import { PP2_SIGNATURE, hex, pb, sid } from '../helpers/packet-builder.js';

type Expected =
  | { kind: 'ok'; type: PacketType; payload: string }
  | { kind: 'not-mine' }
  | { kind: 'malformed'; reason: MalformedReason };

interface Fixture {
  description: string;
  input: Uint8Array;
  expected: Expected;
}

const ok = (type: PacketType, payload = ''): Expected => ({ kind: 'ok', type, payload });
const bad = (reason: MalformedReason): Expected => ({ kind: 'malformed', reason });
const NOT_MINE: Expected = { kind: 'not-mine' };
const { TRUNCATED, BAD_VERSION, BAD_TYPE, ZERO_SESSION_ID, BAD_PAYLOAD } = MalformedReason;
const T = PacketType;

const fixtures: Fixture[] = [
  // ok, one or more per type
  { description: 'HELLO, empty payload', input: pb().jv1(T.HELLO).build(), expected: ok(T.HELLO) },
  { description: 'HELLO with payload', input: pb().jv1(T.HELLO).hex('0102').build(), expected: ok(T.HELLO, '0102') },
  { description: 'DATA', input: pb().jv1(T.DATA).utf8('hi').build(), expected: ok(T.DATA, '6869') },
  { description: 'DATA, 1400-byte payload', input: pb().jv1(T.DATA).zeros(1400).build(), expected: ok(T.DATA, '00'.repeat(1400)) },
  { description: 'CLOSE', input: pb().jv1(T.CLOSE).build(), expected: ok(T.CLOSE) },
  { description: 'REVOKE(7)', input: pb().jv1(T.REVOKE).u64(7n).build(), expected: ok(T.REVOKE, '0000000000000007') },
  { description: 'REJECT reason only', input: pb().jv1(T.REJECT).u8(1).build(), expected: ok(T.REJECT, '01') },
  { description: 'REJECT reason 8 + text', input: pb().jv1(T.REJECT).u8(8).utf8('slow €').build(), expected: ok(T.REJECT, '08736c6f7720e282ac') },
  {
    description: 'BIND IPv4',
    input: pb().jv1(T.BIND).bindPayload(3n, '192.0.2.1', 1194).build(),
    expected: ok(T.BIND, '0000000000000003' + '04' + 'c0000201' + '04aa'),
  },
  {
    description: 'BIND IPv6',
    input: pb().jv1(T.BIND).bindPayload(1n, '2001:db8::1', 443).build(),
    expected: ok(T.BIND, '0000000000000001' + '06' + '20010db8000000000000000000000001' + '01bb'),
  },
  { description: 'session id with only the last byte set', input: pb().jv1(T.DATA, sid([...Array(15).fill(0), 1])).build(), expected: ok(T.DATA) },
  // not-mine
  { description: 'empty', input: new Uint8Array(0), expected: NOT_MINE },
  { description: 'one byte "J"', input: hex('4a'), expected: NOT_MINE },
  { description: 'magic "JX"', input: pb().jv1(T.DATA, sid(1), { magic: 0x4a58 }).build(), expected: NOT_MINE },
  { description: 'magic byte-swapped "VJ"', input: pb().jv1(T.DATA, sid(1), { magic: 0x564a }).build(), expected: NOT_MINE },
  { description: 'a PROXY v2 header', input: pb().bytes(PP2_SIGNATURE).zeros(20).build(), expected: NOT_MINE },
  { description: 'OpenVPN hard reset', input: hex('38 0102030405060708 00 00000000'), expected: NOT_MINE },
  // truncated
  { description: 'magic only', input: hex('4a56'), expected: bad(TRUNCATED) },
  { description: 'header cut at 19 bytes', input: pb().jv1(T.DATA).cut(19), expected: bad(TRUNCATED) },
  { description: 'bad version and short: truncated wins', input: pb().jv1(T.DATA, sid(1), { version: 9 }).cut(10), expected: bad(TRUNCATED) },
  // bad_version
  { description: 'version 0', input: pb().jv1(T.DATA, sid(1), { version: 0 }).build(), expected: bad(BAD_VERSION) },
  { description: 'version 2', input: pb().jv1(T.DATA, sid(1), { version: 2 }).build(), expected: bad(BAD_VERSION) },
  { description: 'version 2 and unknown type', input: pb().jv1(0x77, sid(1), { version: 2 }).build(), expected: bad(BAD_VERSION) },
  // bad_type
  { description: 'type 0x00', input: pb().jv1(0x00).build(), expected: bad(BAD_TYPE) },
  { description: 'type 0x05', input: pb().jv1(0x05).build(), expected: bad(BAD_TYPE) },
  { description: 'type 0x11', input: pb().jv1(0x11).build(), expected: bad(BAD_TYPE) },
  { description: 'type 0xff and zero session id: type wins', input: pb().jv1(0xff, sid(0)).build(), expected: bad(BAD_TYPE) },
  // zero_session_id
  { description: 'all-zero session id', input: pb().jv1(T.DATA, sid(0)).build(), expected: bad(ZERO_SESSION_ID) },
  { description: 'all-zero session id on a bad REVOKE', input: pb().jv1(T.REVOKE, sid(0)).build(), expected: bad(ZERO_SESSION_ID) },
  // bad_payload
  { description: 'REVOKE without payload', input: pb().jv1(T.REVOKE).build(), expected: bad(BAD_PAYLOAD) },
  { description: 'REVOKE 7-byte payload', input: pb().jv1(T.REVOKE).zeros(7).build(), expected: bad(BAD_PAYLOAD) },
  { description: 'REVOKE 9-byte payload', input: pb().jv1(T.REVOKE).zeros(9).build(), expected: bad(BAD_PAYLOAD) },
  { description: 'REJECT without payload', input: pb().jv1(T.REJECT).build(), expected: bad(BAD_PAYLOAD) },
  { description: 'REJECT reason 0', input: pb().jv1(T.REJECT).u8(0).build(), expected: bad(BAD_PAYLOAD) },
  { description: 'REJECT reason 9', input: pb().jv1(T.REJECT).u8(9).build(), expected: bad(BAD_PAYLOAD) },
  { description: 'REJECT text 0xff (not UTF-8)', input: pb().jv1(T.REJECT).u8(1).hex('41ff').build(), expected: bad(BAD_PAYLOAD) },
  { description: 'REJECT text cut inside "€"', input: pb().jv1(T.REJECT).u8(1).hex('e282').build(), expected: bad(BAD_PAYLOAD) },
  { description: 'REJECT text with a UTF-16 surrogate (CESU)', input: pb().jv1(T.REJECT).u8(1).hex('eda080').build(), expected: bad(BAD_PAYLOAD) },
  { description: 'BIND without payload', input: pb().jv1(T.BIND).build(), expected: bad(BAD_PAYLOAD) },
  { description: 'BIND family 5', input: pb().jv1(T.BIND).bindPayload(1n, '192.0.2.1', 1, 5).build(), expected: bad(BAD_PAYLOAD) },
  { description: 'BIND family 6 with an IPv4 address', input: pb().jv1(T.BIND).bindPayload(1n, '192.0.2.1', 1, 6).build(), expected: bad(BAD_PAYLOAD) },
  { description: 'BIND family 4 with an IPv6 address', input: pb().jv1(T.BIND).bindPayload(1n, '::1', 1, 4).build(), expected: bad(BAD_PAYLOAD) },
  { description: 'BIND IPv4 one byte short', input: pb().jv1(T.BIND).bindPayload(1n, '192.0.2.1', 1).cut(20 + 14), expected: bad(BAD_PAYLOAD) },
  { description: 'BIND IPv4 one byte long', input: pb().jv1(T.BIND).bindPayload(1n, '192.0.2.1', 1).u8(0).build(), expected: bad(BAD_PAYLOAD) },
  { description: 'BIND IPv6 one byte short', input: pb().jv1(T.BIND).bindPayload(1n, '::1', 1).cut(20 + 26), expected: bad(BAD_PAYLOAD) },
];

function summarize(d: Decoded<Jv1Packet>): Expected {
  if (d.kind !== 'ok') return d;
  return { kind: 'ok', type: d.value.type, payload: Buffer.from(d.value.payload).toString('hex') };
}

describe('decodeJv1 fixtures', () => {
  it.each(fixtures)('$description', ({ input, expected }) => {
    expect(summarize(decodeJv1(input))).toEqual(expected);
  });

  it('covers every outcome', () => {
    const seen = new Set(fixtures.map((f) => (f.expected.kind === 'malformed' ? f.expected.reason : f.expected.kind)));
    for (const r of [TRUNCATED, BAD_VERSION, BAD_TYPE, ZERO_SESSION_ID, BAD_PAYLOAD, 'ok', 'not-mine']) expect(seen).toContain(r);
    const okTypes = new Set(fixtures.flatMap((f) => (f.expected.kind === 'ok' ? [f.expected.type] : [])));
    expect([...okTypes].sort()).toEqual(Object.values(PacketType).sort());
  });

  it('returns views into the input, not copies', () => {
    const buf = pb().jv1(T.DATA, sid(5)).hex('aabb').build();
    const d = decodeJv1(buf);
    if (d.kind !== 'ok') throw new Error('expected ok');
    expect(d.value.sessionId.buffer).toBe(buf.buffer);
    expect(d.value.payload.buffer).toBe(buf.buffer);
    buf[4] = 9;
    expect(d.value.sessionId[0]).toBe(9);
  });

  it('decodes a packet inside a larger ArrayBuffer at an odd offset', () => {
    const backing = Buffer.concat([hex('ffffff'), encodeRevoke(sid(3), 0x0102030405060708n)]);
    const view = backing.subarray(3);
    const d = decodeJv1(view);
    expect(d.kind).toBe('ok');
    if (d.kind === 'ok') expect(decodeRevoke(d.value.payload)).toBe(0x0102030405060708n);
  });
});

describe('payload decoders', () => {
  it('decodeRevoke', () => {
    expect(decodeRevoke(hex('ffffffffffffffff'))).toBe(2n ** 64n - 1n);
    expect(decodeRevoke(hex('00'))).toBeUndefined();
  });
  it('decodeReject', () => {
    expect(decodeReject(hex('05'))).toEqual({ reason: RejectReason.SESSION_TERMINATED, text: '' });
    expect(decodeReject(Buffer.from('\x02\ufeffx', 'utf8'))).toEqual({ reason: 2, text: '\ufeffx' });
    expect(decodeReject(hex(''))).toBeUndefined();
    expect(decodeReject(hex('01c3'))).toBeUndefined();
  });
  it('decodeBind: canonical address text; IPv4-mapped stays IPv6', () => {
    const cases: [string, Transport][] = [
      ['192.0.2.1', { family: 4, address: '192.0.2.1', port: 1194 }],
      ['2001:DB8:0:0:0:0:0:1', { family: 6, address: '2001:db8::1', port: 1194 }],
      ['::ffff:192.0.2.1', { family: 6, address: '::ffff:192.0.2.1', port: 1194 }],
    ];
    for (const [address, transport] of cases) {
      const p = pb().bindPayload(9n, address, 1194).build();
      expect(decodeBind(p)).toEqual({ version: 9n, transport });
    }
    expect(decodeBind(hex('00'))).toBeUndefined();
  });
});

describe('encoders', () => {
  it('encodeJv1 writes the header byte by byte', () => {
    expect(encodeJv1(T.DATA, sid(0x11), hex('beef')).toString('hex')).toBe('4a560102' + '11'.repeat(16) + 'beef');
    expect(encodeJv1(T.CLOSE, sid(0x11))).toHaveLength(JV1_HEADER_LEN);
    expect([JV1_MAGIC, JV1_VERSION]).toEqual([0x4a56, 1]);
  });
  it('writeJv1Header builds in place at an offset', () => {
    const out = Buffer.alloc(25, 0xee);
    writeJv1Header(out, 2, T.HELLO, sid(1));
    expect(out.toString('hex')).toBe('eeee4a560101' + '01'.repeat(16) + 'eeeeee');
    expect(() => writeJv1Header(out, 6, T.HELLO, sid(1))).toThrow(RangeError);
    expect(() => writeJv1Header(out, 0, T.HELLO, new Uint8Array(15))).toThrow(RangeError);
  });
  it('encodeRevoke / encodeBind exact bytes', () => {
    expect(encodeRevoke(sid(2), 258n).toString('hex')).toBe('4a560104' + '02'.repeat(16) + '0000000000000102');
    expect(encodeBind(sid(2), 1n, { family: 4, address: '10.0.0.1', port: 80 }).toString('hex')).toBe(
      '4a560120' + '02'.repeat(16) + '0000000000000001' + '04' + '0a000001' + '0050',
    );
    expect(() => encodeBind(sid(2), 1n, { family: 4, address: 'localhost', port: 80 })).toThrow(RangeError);
  });

  it('round trips every type through decodeJv1', () => {
    for (const type of Object.values(PacketType)) {
      const payload =
        type === T.REVOKE ? encodeRevoke(sid(1), 4n).subarray(20)
        : type === T.REJECT ? hex('0368656c6c6f')
        : type === T.BIND ? encodeBind(sid(1), 1n, { family: 6, address: '::1', port: 5 }).subarray(20)
        : hex('00ff');
      const d = decodeJv1(encodeJv1(type, sid(7), payload));
      expect(summarize(d)).toEqual(ok(type, Buffer.from(payload).toString('hex')));
      if (d.kind === 'ok') expect(sessionIdHex(d.value.sessionId)).toBe('07'.repeat(16));
    }
  });
});

describe('encodeReject never exceeds maxLen', () => {
  const text = (b: Buffer | undefined): string | undefined => (b === undefined ? undefined : decodeReject(b.subarray(20))?.text);
  it.each([
    { description: 'maxLen 20: silence', maxLen: 20, input: 'x', expected: undefined },
    { description: 'maxLen 0: silence', maxLen: 0, input: '', expected: undefined },
    { description: 'maxLen NaN: silence', maxLen: NaN, input: '', expected: undefined },
    { description: 'maxLen 21: reason only', maxLen: 21, input: 'hello', expected: '' },
    { description: 'ASCII cut', maxLen: 23, input: 'hello', expected: 'he' },
    { description: 'fits exactly', maxLen: 26, input: 'hello', expected: 'hello' },
    { description: 'default maxLen: whole text', maxLen: undefined, input: 'hello', expected: 'hello' },
    { description: 'fractional maxLen floors', maxLen: 23.9, input: 'hello', expected: 'he' },
    { description: '"€" (3 bytes) cut after 1 byte', maxLen: 21 + 2, input: 'a€b', expected: 'a' },
    { description: '"€" cut after 2 bytes', maxLen: 21 + 3, input: 'a€b', expected: 'a' },
    { description: '"€" whole', maxLen: 21 + 4, input: 'a€b', expected: 'a€' },
    { description: '4-byte emoji cut inside', maxLen: 21 + 3, input: '😀', expected: '' },
    { description: '2-byte "é" cut inside', maxLen: 21 + 2, input: 'xé', expected: 'x' },
  ])('$description', ({ maxLen, input, expected }) => {
    const out = encodeReject(sid(1), RejectReason.UNKNOWN_SESSION, input, maxLen);
    expect(text(out)).toBe(expected);
    if (out !== undefined && maxLen !== undefined) expect(out.length).toBeLessThanOrEqual(maxLen);
    if (out !== undefined) expect(decodeJv1(out).kind).toBe('ok');
  });

  it('property: fits, decodes, and keeps the longest whole-character prefix', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), fc.integer({ min: 0, max: 200 }), fc.integer({ min: 1, max: 8 }), (s, maxLen, reason) => {
        const out = encodeReject(sid(9), reason as RejectReason, s, maxLen);
        if (maxLen < 21) return out === undefined;
        if (out === undefined || out.length > maxLen) return false;
        const d = decodeJv1(out);
        if (d.kind !== 'ok' || d.value.type !== T.REJECT) return false;
        const r = decodeReject(d.value.payload);
        const full = Buffer.from(s, 'utf8').toString('utf8'); // lone surrogates become U+FFFD
        if (r === undefined || r.reason !== reason || !full.startsWith(r.text)) return false;
        const next = [...full.slice(r.text.length)][0];
        return next === undefined || out.length + Buffer.byteLength(next) > maxLen;
      }),
    );
  });
});

describe('session id hex', () => {
  it('formats and parses', () => {
    const id = hex('00112233445566778899aabbccddeeff');
    expect(sessionIdHex(id)).toBe('00112233445566778899aabbccddeeff');
    expect(parseSessionIdHex('00112233445566778899AABBCCDDEEFF')).toEqual(new Uint8Array(id));
  });
  it.each(['', '0'.repeat(32), '1'.repeat(31), '1'.repeat(33), 'g' + '1'.repeat(31), ' ' + '1'.repeat(31), '0x' + '1'.repeat(30)])(
    'rejects %j',
    (s) => expect(parseSessionIdHex(s)).toBeUndefined(),
  );
  it('round trips any non-zero id', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }).filter((b) => b.some((x) => x !== 0)), (id) => {
        const s = sessionIdHex(id);
        return /^[0-9a-f]{32}$/.test(s) && Buffer.from(parseSessionIdHex(s) ?? []).equals(Buffer.from(id));
      }),
    );
  });
});

describe('properties', () => {
  const sessionIdArb = fc.uint8Array({ minLength: 16, maxLength: 16 }).filter((b) => b.some((x) => x !== 0));

  it('decodeJv1 never throws on arbitrary bytes', () => {
    const magicFirst = fc
      .tuple(fc.constantFrom(0, 1, 2, 255), fc.constantFrom(0, ...Object.values(PacketType), 0x7f), fc.uint8Array({ maxLength: 64 }))
      .map(([v, t, rest]) => Buffer.concat([hex('4a56'), Uint8Array.of(v, t), rest]));
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), magicFirst), (b) => {
        const d = decodeJv1(b);
        return d.kind === 'ok' || d.kind === 'not-mine' || Object.values(MalformedReason).includes(d.reason);
      }),
      { numRuns: 2000 },
    );
  });

  it('encode → decode round trip for arbitrary fields', () => {
    const ipv4 = fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b) => b.join('.'));
    const ipv6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => (Buffer.from(b).toString('hex').match(/..../g) ?? []).join(':'));
    const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
    fc.assert(
      fc.property(sessionIdArb, u64, fc.oneof(ipv4, ipv6), fc.integer({ min: 0, max: 65535 }), fc.uint8Array({ maxLength: 40 }), (id, v, address, port, data) => {
        const data1 = decodeJv1(encodeJv1(T.DATA, id, data));
        const revoke = decodeJv1(encodeRevoke(id, v));
        const bind = decodeJv1(encodeBind(id, v, { family: address.includes(':') ? 6 : 4, address, port }));
        if (data1.kind !== 'ok' || revoke.kind !== 'ok' || bind.kind !== 'ok') return false;
        const b = decodeBind(bind.value.payload);
        const wantFamily = address.includes(':') ? 6 : 4;
        return (
          Buffer.from(data1.value.payload).equals(Buffer.from(data)) &&
          Buffer.from(data1.value.sessionId).equals(Buffer.from(id)) &&
          decodeRevoke(revoke.value.payload) === v &&
          b?.version === v &&
          b.transport.port === port &&
          b.transport.family === wantFamily &&
          Buffer.from(encodeBind(id, v, b.transport)).equals(encodeBind(id, v, { family: wantFamily, address, port }))
        );
      }),
    );
  });
});

describe('checkJv1 (the in-place check of the per-datagram path)', () => {
  it('agrees with decodeJv1 on arbitrary bytes and on JV1-looking bytes', () => {
    const jv1ish = fc
      .tuple(fc.constantFrom(1, 2, 3, 4, 0x10, 0x20, 0, 9), fc.uint8Array({ minLength: 0, maxLength: 40 }), fc.constantFrom(1, 2))
      .map(([type, rest, version]) => Uint8Array.from([0x4a, 0x56, version, type, ...rest]));
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), jv1ish), (b) => {
        const d = decodeJv1(b);
        const c = checkJv1(b);
        expect(c).toBe(d.kind === 'ok' ? 'ok' : d.kind === 'not-mine' ? 'not-mine' : d.reason);
        if (d.kind === 'ok') expect(d.value.type).toBe(b[3]);
      }),
    );
  });
});
