// The common codec shape (src/codec/codec.ts): normaliseId (layout, misuse, no collisions), the JV1
// adapter over decodeJv1 / decodeJv1Preamble, createCodec for every spec, and properties over all codecs
// (classify never throws; the stream decision does not depend on how bytes are split).
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CodecTag, NON_JV1_ID_MARK, createCodec, normaliseId } from '../../src/codec/codec.js';
import type { Codec, CodecSpec, CodecVerdict, PreambleDecision } from '../../src/codec/codec.js';
import { PacketType } from '../../src/codec/types.js';
import { pb, sid } from '../helpers/packet-builder.js';

function view(v: CodecVerdict | PreambleDecision): unknown {
  if (v.kind === 'open' || v.kind === 'session') return { ...v, sessionId: Uint8Array.from(v.sessionId) };
  if (v.kind === 'ok') return { ...v, verdict: view(v.verdict) };
  return v;
}
const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// ------------------------------------------------------------------------------------- normaliseId

describe('normaliseId', () => {
  it('passes a JV1 id through unchanged (the same object)', () => {
    const id = sid([0xa5, 1, 8, 4]);
    expect(normaliseId(CodecTag.jv1, id)).toBe(id);
  });

  it('lays out other ids as 0xA5, tag, length, id, zero padding', () => {
    expect(hexOf(normaliseId(CodecTag.openvpn, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8)))).toBe('a501080102030405060708' + '0000000000');
    expect(hexOf(normaliseId(CodecTag.offset, Uint8Array.of(0xff)))).toBe('a50201ff' + '00'.repeat(12));
    expect(hexOf(normaliseId(CodecTag.offset, new Uint8Array(13).fill(0x11)))).toBe('a5020d' + '11'.repeat(13));
    expect(NON_JV1_ID_MARK).toBe(0xa5);
    expect(CodecTag).toEqual({ jv1: 0, openvpn: 1, offset: 2 });
  });

  it('copies: the result does not follow later changes to the input', () => {
    const id = Uint8Array.of(9, 9, 9);
    const n = normaliseId(CodecTag.offset, id);
    id.fill(0);
    expect(hexOf(n)).toBe('a50203090909' + '00'.repeat(10));
  });

  it.each([
    ['a 15-byte JV1 id', 0, 15],
    ['a 17-byte JV1 id', 0, 17],
    ['an empty id', 1, 0],
    ['a 14-byte id', 2, 14],
  ])('throws RangeError on %s', (_, tag, len) => {
    expect(() => normaliseId(tag, new Uint8Array(len).fill(1))).toThrow(RangeError);
  });

  it.each([-1, 256, 1.5, Number.NaN])('throws RangeError on tag %s', (tag) => {
    expect(() => normaliseId(tag, Uint8Array.of(1))).toThrow(RangeError);
  });

  const tagged = fc.record({ tag: fc.integer({ min: 1, max: 255 }), id: fc.uint8Array({ minLength: 1, maxLength: 13 }) });

  it('never collides: different (tag, id) pairs give different ids (fast-check)', () => {
    fc.assert(
      fc.property(tagged, tagged, (a, b) => {
        const same = a.tag === b.tag && hexOf(a.id) === hexOf(b.id);
        expect(hexOf(normaliseId(a.tag, a.id)) === hexOf(normaliseId(b.tag, b.id))).toBe(same);
      }),
      { numRuns: 5000 },
    );
  });

  it('never collides on near misses: equal bytes with another length or tag, trailing zeros', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 254 }), (id, tag) => {
        const padded = Uint8Array.from([...id, 0]);
        const n = hexOf(normaliseId(tag, id));
        expect(hexOf(normaliseId(tag, padded))).not.toBe(n);
        expect(hexOf(normaliseId(tag + 1, id))).not.toBe(n);
        if (id.length > 1) expect(hexOf(normaliseId(tag, id.subarray(0, -1)))).not.toBe(n);
      }),
      { numRuns: 3000 },
    );
  });

  it('always 16 bytes, marked 0xA5, and injective over a batch (fast-check)', () => {
    fc.assert(
      fc.property(fc.uniqueArray(tagged, { selector: (x) => `${x.tag}:${hexOf(x.id)}`, maxLength: 200 }), (xs) => {
        const seen = new Set<string>();
        for (const { tag, id } of xs) {
          const n = normaliseId(tag, id);
          expect(n.length).toBe(16);
          expect(n[0]).toBe(0xa5);
          seen.add(hexOf(n));
        }
        expect(seen.size).toBe(xs.length);
      }),
      { numRuns: 300 },
    );
  });
});

// ------------------------------------------------------------------------------------- JV1 adapter

const T = PacketType;
const ID = sid([0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
const jv1 = createCodec({ codec: 'jv1' });

const jv1Fixtures: Array<{ description: string; input: Buffer; expected: CodecVerdict }> = [
  { description: 'HELLO opens', input: pb().jv1(T.HELLO, ID).build(), expected: { kind: 'open', sessionId: ID } },
  { description: 'DATA names a session', input: pb().jv1(T.DATA, ID).utf8('payload').build(), expected: { kind: 'session', sessionId: ID, close: false } },
  { description: 'CLOSE ends it', input: pb().jv1(T.CLOSE, ID).build(), expected: { kind: 'session', sessionId: ID, close: true } },
  { description: 'REVOKE from a client is forbidden', input: pb().jv1(T.REVOKE, ID).u64(3n).build(), expected: { kind: 'forbidden' } },
  { description: 'REJECT from a client is forbidden', input: pb().jv1(T.REJECT, ID).u8(1).build(), expected: { kind: 'forbidden' } },
  { description: 'BIND from a client is forbidden', input: pb().jv1(T.BIND, ID).bindPayload(2n, '10.0.0.1', 5000).build(), expected: { kind: 'forbidden' } },
  { description: 'REVOKE with a bad payload stays malformed', input: pb().jv1(T.REVOKE, ID).u8(1).build(), expected: { kind: 'malformed', reason: 'bad_payload' } },
  { description: 'other magic: not mine', input: pb().jv1(T.HELLO, ID, { magic: 0x4a57 }).build(), expected: { kind: 'not-mine' } },
  { description: 'one byte: not mine', input: Buffer.of(0x4a), expected: { kind: 'not-mine' } },
  { description: 'truncated', input: pb().jv1(T.HELLO, ID).cut(19), expected: { kind: 'malformed', reason: 'truncated' } },
  { description: 'bad version', input: pb().jv1(T.HELLO, ID, { version: 2 }).build(), expected: { kind: 'malformed', reason: 'bad_version' } },
  { description: 'bad type', input: pb().jv1(0x05, ID).build(), expected: { kind: 'malformed', reason: 'bad_type' } },
  { description: 'zero id', input: pb().jv1(T.HELLO, sid(0)).build(), expected: { kind: 'malformed', reason: 'zero_session_id' } },
  { description: 'a JV1 id starting with 0xA5 passes through (the mark is reserved, not refused)', input: pb().jv1(T.HELLO, sid([0xa5, 1, 8])).build(), expected: { kind: 'open', sessionId: sid([0xa5, 1, 8]) } },
];

describe('JV1 adapter: datagrams', () => {
  it('is named jv1', () => {
    expect(jv1.datagram.name).toBe('jv1');
    expect(jv1.stream.name).toBe('jv1');
  });

  it.each(jv1Fixtures)('$description', ({ input, expected }) => {
    expect(view(jv1.datagram.classify(input))).toEqual(view(expected));
  });
});

describe('JV1 adapter: stream preamble', () => {
  const decided = (v: CodecVerdict): PreambleDecision =>
    v.kind === 'malformed' || v.kind === 'not-mine' ? v : { kind: 'ok', verdict: v, headerLength: 20 };
  const streamFixtures = jv1Fixtures.filter((f) => f.input.length >= 20 && !f.description.includes('bad payload'));

  it.each(streamFixtures)('$description: cut at every byte boundary', ({ input, expected }) => {
    const final = view(decided(expected));
    let first = -1;
    for (let k = 0; k <= input.length; k++) {
      const r = jv1.stream.preamble(input.subarray(0, k), 64);
      if (r.kind === 'need') {
        expect(first, `need after a decision at ${k}`).toBe(-1);
        expect(r.need).toBe(20);
      } else {
        if (first === -1) first = k;
        expect(view(r), `cut at ${k}`).toEqual(final);
      }
    }
    expect(first).toBeGreaterThan(0);
  });

  it('passes too-long through', () => {
    expect(jv1.stream.preamble(pb().jv1(T.HELLO, ID).cut(10), 8)).toEqual({ kind: 'too-long' });
  });
});

// ----------------------------------------------------------------------------------- createCodec

describe('createCodec', () => {
  it('names each codec', () => {
    expect(createCodec({ codec: 'openvpn' }).datagram.name).toBe('openvpn');
    expect(createCodec({ codec: 'openvpn' }).stream.name).toBe('openvpn');
    expect(createCodec({ codec: 'offset', offset: 0, length: 4 }).datagram.name).toBe('offset');
    expect(createCodec({ codec: 'offset', offset: 0, length: 4 }).stream.name).toBe('offset');
  });

  it('openvpn: classify and preamble; maxPacketLength is honoured', () => {
    const hr = pb().u8(0x38).u8(1, 2, 3, 4, 5, 6, 7, 8).build();
    const id = Uint8Array.from([0xa5, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0]);
    const c = createCodec({ codec: 'openvpn' });
    expect(view(c.datagram.classify(hr))).toEqual({ kind: 'open', sessionId: id });
    const stream = pb().u16(2000).bytes(hr).build();
    expect(c.stream.preamble(stream, 64)).toEqual({ kind: 'malformed', reason: 'bad_length' });
    const big = createCodec({ codec: 'openvpn', maxPacketLength: 2000 });
    expect(view(big.stream.preamble(stream, 64))).toEqual({ kind: 'ok', verdict: { kind: 'open', sessionId: id }, headerLength: 11 });
  });

  it('offset: classify and preamble', () => {
    const c = createCodec({ codec: 'offset', offset: 1, length: 2 });
    const id = Uint8Array.from([0xa5, 2, 2, 0xab, 0xcd, ...new Uint8Array(11)]);
    expect(view(c.datagram.classify(Buffer.of(0, 0xab, 0xcd)))).toEqual({ kind: 'open', sessionId: id });
    expect(c.stream.preamble(Buffer.of(0, 0xab), 64)).toEqual({ kind: 'need', need: 3 });
  });

  it.each<CodecSpec>([
    { codec: 'offset', offset: -1, length: 4 },
    { codec: 'offset', offset: 0, length: 14 },
    { codec: 'offset', offset: 0, length: 0 },
    { codec: 'openvpn', maxPacketLength: 8 },
    { codec: 'openvpn', maxPacketLength: 70_000 },
  ])('throws RangeError on %o', (spec) => {
    expect(() => createCodec(spec)).toThrow(RangeError);
  });

  it('a JV1 packet and an OpenVPN or offset packet never name the same session', () => {
    const ovpn = createCodec({ codec: 'openvpn' }).datagram.classify(pb().u8(0x38).u8(1, 2, 3, 4, 5, 6, 7, 8).build());
    const off = createCodec({ codec: 'offset', offset: 1, length: 8 }).datagram.classify(pb().u8(0x38).u8(1, 2, 3, 4, 5, 6, 7, 8).build());
    const j = jv1.datagram.classify(pb().jv1(T.HELLO, sid([1, 2, 3, 4, 5, 6, 7, 8])).build());
    const ids = [ovpn, off, j].map((v) => (v.kind === 'open' ? hexOf(v.sessionId) : v.kind));
    expect(new Set(ids).size).toBe(3);
    expect(ids.every((x) => x.length === 32)).toBe(true);
  });
});

// --------------------------------------------------------------------------- properties over all codecs

const codecs: Array<[string, Codec]> = [
  ['jv1', jv1],
  ['openvpn', createCodec({ codec: 'openvpn' })],
  ['offset 3/8', createCodec({ codec: 'offset', offset: 3, length: 8 })],
  ['offset 0/13', createCodec({ codec: 'offset', offset: 0, length: 13 })],
];
const anyBytes = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.concat([Buffer.of(0x4a, 0x56, 1), b])),
  fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.concat([Buffer.of(0, b.length + 1, 0x38), b])),
);
const splits = fc.array(fc.integer({ min: 1, max: 15 }), { maxLength: 40 });
const VERDICTS = ['open', 'session', 'pinned', 'not-mine', 'malformed', 'forbidden'];

function feed(c: Codec, input: Uint8Array, chunks: readonly number[]): PreambleDecision {
  let have = 0;
  let result = c.stream.preamble(input.subarray(0, 0), 64);
  for (const n of [...chunks, input.length]) {
    if (result.kind !== 'need') break;
    have = Math.min(input.length, have + n);
    result = c.stream.preamble(input.subarray(0, have), 64);
  }
  return result;
}

describe.each(codecs)('%s: properties', (_, c) => {
  it('classify never throws; ids are 16 bytes', () => {
    fc.assert(
      fc.property(anyBytes, (b) => {
        const v = c.datagram.classify(b);
        expect(VERDICTS).toContain(v.kind);
        if (v.kind === 'open' || v.kind === 'session') expect(v.sessionId.length).toBe(16);
      }),
      { numRuns: 2000 },
    );
  });

  it('the stream decision does not depend on how the bytes are split', () => {
    fc.assert(
      fc.property(anyBytes, splits, (b, s) => {
        const one = feed(c, b, Array<number>(b.length).fill(1));
        expect(view(feed(c, b, s))).toEqual(view(one));
        expect(['need', 'ok', 'not-mine', 'malformed', 'too-long']).toContain(one.kind);
        if (one.kind === 'ok') {
          expect(['open', 'session', 'pinned', 'forbidden']).toContain(one.verdict.kind);
          expect(one.headerLength).toBeGreaterThan(0);
          expect(one.headerLength).toBeLessThanOrEqual(b.length);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
