// The offset codec (src/codec/offset.ts): the id is `length` bytes at `offset`. Fixture tables per spec,
// truncation, zero ids, spec validation, the TCP preamble cut at every byte boundary, and properties.
// Expected ids are built by hand, not by normaliseId.
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkOffsetSpec, classifyOffset, decodeOffsetPreamble } from '../../src/codec/offset.js';
import type { OffsetSpec } from '../../src/codec/offset.js';
import type { CodecVerdict, PreambleDecision } from '../../src/codec/codec.js';
import { pb } from '../helpers/packet-builder.js';

/** 0xA5, tag 2 (offset), length, the id, zero padding to 16. */
const nid = (id: readonly number[]): Uint8Array => {
  const out = new Uint8Array(16);
  out.set([0xa5, 2, id.length, ...id]);
  return out;
};
const open = (id: readonly number[]): CodecVerdict => ({ kind: 'open', sessionId: nid(id) });
const bad = (reason: string): CodecVerdict => ({ kind: 'malformed', reason } as CodecVerdict);

function view(v: CodecVerdict | PreambleDecision): unknown {
  if (v.kind === 'open' || v.kind === 'session') return { ...v, sessionId: Uint8Array.from(v.sessionId) };
  if (v.kind === 'ok') return { ...v, verdict: view(v.verdict) };
  return v;
}

const fixtures: Array<{ description: string; spec: OffsetSpec; input: Buffer; expected: CodecVerdict }> = [
  { description: '4 bytes at 0', spec: { offset: 0, length: 4 }, input: pb().u32(0xdeadbeef).hex('0102').build(), expected: open([0xde, 0xad, 0xbe, 0xef]) },
  { description: '4 bytes at 0, exactly 4 bytes', spec: { offset: 0, length: 4 }, input: pb().u32(0xdeadbeef).build(), expected: open([0xde, 0xad, 0xbe, 0xef]) },
  { description: '4 bytes at 0, 3 bytes', spec: { offset: 0, length: 4 }, input: pb().u8(0xde, 0xad, 0xbe).build(), expected: bad('truncated') },
  { description: 'empty datagram (no magic, so not "not mine")', spec: { offset: 0, length: 4 }, input: Buffer.alloc(0), expected: bad('truncated') },
  { description: '8 bytes at 3 (a WireGuard-ish sender index after a type)', spec: { offset: 3, length: 8 }, input: pb().u8(1, 0, 0).u8(1, 2, 3, 4, 5, 6, 7, 8).zeros(20).build(), expected: open([1, 2, 3, 4, 5, 6, 7, 8]) },
  { description: '8 bytes at 3, one byte short', spec: { offset: 3, length: 8 }, input: pb().u8(1, 0, 0).u8(1, 2, 3, 4, 5, 6, 7).build(), expected: bad('truncated') },
  { description: '13 bytes at 10 (the longest id)', spec: { offset: 10, length: 13 }, input: pb().zeros(10).bytes(Array.from({ length: 13 }, (_, i) => 0xf0 + i)).build(), expected: open(Array.from({ length: 13 }, (_, i) => 0xf0 + i)) },
  { description: '1 byte at 0', spec: { offset: 0, length: 1 }, input: Buffer.of(0x7f), expected: open([0x7f]) },
  { description: 'all-zero id', spec: { offset: 2, length: 4 }, input: pb().u8(9, 9).zeros(4).u8(9).build(), expected: bad('zero_session_id') },
  { description: 'id with only its last byte set', spec: { offset: 2, length: 4 }, input: pb().u8(0, 0).u8(0, 0, 0, 1).build(), expected: open([0, 0, 0, 1]) },
  { description: 'zeros around the id do not matter', spec: { offset: 2, length: 2 }, input: pb().zeros(2).u8(0, 5).zeros(8).build(), expected: open([0, 5]) },
];

describe('classifyOffset: fixtures', () => {
  it.each(fixtures)('$description', ({ spec, input, expected }) => {
    expect(view(classifyOffset(input, spec))).toEqual(view(expected));
  });

  it('every packet may open (no hello, no close)', () => {
    const spec = { offset: 1, length: 2 };
    for (const b0 of [0, 1, 2, 3, 0xff]) expect(classifyOffset(Buffer.of(b0, 0xab, 0xcd), spec).kind).toBe('open');
  });

  it('returns a new id array, not a view into the datagram', () => {
    const input = pb().u32(0x01020304).build();
    const v = classifyOffset(input, { offset: 0, length: 4 });
    input.fill(0);
    expect(view(v)).toEqual(view(open([1, 2, 3, 4])));
  });

  it('ids of different lengths never collide, even with equal bytes', () => {
    const input = pb().u8(1, 2, 3, 4).build();
    const a = classifyOffset(input, { offset: 0, length: 3 });
    const b = classifyOffset(input, { offset: 0, length: 4 });
    expect(view(a)).toEqual(view(open([1, 2, 3])));
    expect(view(b)).toEqual(view(open([1, 2, 3, 4])));
    expect(view(a)).not.toEqual(view(b));
  });
});

describe('checkOffsetSpec', () => {
  it.each([
    { offset: 0, length: 1 },
    { offset: 0, length: 13 },
    { offset: 65_535, length: 8 },
  ])('accepts offset $offset length $length', (spec) => {
    expect(() => checkOffsetSpec(spec)).not.toThrow();
  });

  it.each([
    { offset: -1, length: 4 },
    { offset: 1.5, length: 4 },
    { offset: Number.NaN, length: 4 },
    { offset: Infinity, length: 4 },
    { offset: 0, length: 0 },
    { offset: 0, length: 14 },
    { offset: 0, length: 2.5 },
  ])('rejects offset $offset length $length', (spec) => {
    expect(() => checkOffsetSpec(spec)).toThrow(RangeError);
  });
});

// ------------------------------------------------------------------------------------ TCP preamble

function feed(input: Uint8Array, spec: OffsetSpec, chunks: readonly number[], maxBytes = 64): { result: PreambleDecision; at: number } {
  let have = 0;
  let result = decodeOffsetPreamble(input.subarray(0, 0), maxBytes, spec);
  for (const c of [...chunks, input.length]) {
    if (result.kind !== 'need') break;
    have = Math.min(input.length, have + c);
    result = decodeOffsetPreamble(input.subarray(0, have), maxBytes, spec);
  }
  return { result, at: have };
}

const streamFixtures = fixtures.filter((f) => f.expected.kind === 'open' || (f.expected.kind === 'malformed' && f.expected.reason === 'zero_session_id'));

describe('decodeOffsetPreamble', () => {
  it.each(streamFixtures)('$description: cut at every byte boundary, decided at offset + length', ({ spec, input, expected }) => {
    const need = spec.offset + spec.length;
    const decided = expected.kind === 'malformed' ? expected : { kind: 'ok', verdict: expected, headerLength: need };
    for (let k = 0; k <= input.length; k++) {
      const r = decodeOffsetPreamble(input.subarray(0, k), 64, spec);
      if (k < need) expect(r, `cut at ${k}`).toEqual({ kind: 'need', need });
      else expect(view(r), `cut at ${k}`).toEqual(view(decided as PreambleDecision));
    }
    const { result, at } = feed(input, spec, Array<number>(input.length).fill(1));
    expect(view(result)).toEqual(view(decided as PreambleDecision));
    expect(at).toBe(need);
  });

  it('too-long when the budget is below offset + length', () => {
    const spec = { offset: 30, length: 4 };
    const input = pb().zeros(30).u32(7).build();
    expect(decodeOffsetPreamble(input.subarray(0, 20), 20, spec)).toEqual({ kind: 'need', need: 34 });
    expect(decodeOffsetPreamble(input.subarray(0, 21), 20, spec)).toEqual({ kind: 'too-long' });
    expect(view(decodeOffsetPreamble(input, 34, spec))).toEqual(view({ kind: 'ok', verdict: open([0, 0, 0, 7]), headerLength: 34 }));
  });
});

// -------------------------------------------------------------------------------------- properties

const specs = fc.record({ offset: fc.integer({ min: 0, max: 24 }), length: fc.integer({ min: 1, max: 13 }) });
const bytes = fc.oneof(fc.uint8Array({ maxLength: 48 }), fc.integer({ min: 0, max: 48 }).map((n) => new Uint8Array(n)));
const splits = fc.array(fc.integer({ min: 1, max: 15 }), { maxLength: 40 });

describe('offset codec: properties', () => {
  it('classify never throws; open carries exactly the bytes at offset', () => {
    fc.assert(
      fc.property(specs, bytes, (spec, b) => {
        const v = classifyOffset(b, spec);
        expect(['open', 'malformed']).toContain(v.kind);
        const end = spec.offset + spec.length;
        if (b.length < end) expect(v).toEqual(bad('truncated'));
        else if (b.subarray(spec.offset, end).every((x) => x === 0)) expect(v).toEqual(bad('zero_session_id'));
        else expect(view(v)).toEqual(view(open([...b.subarray(spec.offset, end)])));
      }),
      { numRuns: 3000 },
    );
  });

  it('the stream decision is the same however the bytes are split, and matches the datagram verdict', () => {
    fc.assert(
      fc.property(specs, bytes, splits, (spec, b, s) => {
        const one = feed(b, spec, Array<number>(b.length).fill(1));
        const chunked = feed(b, spec, s);
        expect(view(chunked.result)).toEqual(view(one.result));
        const d = classifyOffset(b, spec);
        if (one.result.kind === 'need') expect(d).toEqual(bad('truncated'));
        else if (one.result.kind === 'ok') expect(view(one.result.verdict)).toEqual(view(d));
        else expect(one.result).toEqual(d);
      }),
      { numRuns: 3000 },
    );
  });
});
