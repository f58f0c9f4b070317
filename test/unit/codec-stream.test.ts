// The stream preamble decoder (src/codec/stream.ts): a fixture table, each input fed cut at every byte
// boundary and one byte at a time, and properties — it never throws, and the decision (and the byte at
// which it is reached) is the same however the stream is split.
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeJv1Preamble, type PreambleResult } from '../../src/codec/stream.js';
import { MalformedReason, PacketType } from '../../src/codec/types.js';
import { PP2_SIGNATURE, pb, sid } from '../helpers/packet-builder.js';

type Expected =
  | { kind: 'ok'; type: PacketType; sessionId: Uint8Array }
  | { kind: 'not-mine' }
  | { kind: 'malformed'; reason: MalformedReason };

interface Fixture {
  readonly description: string;
  readonly input: Buffer;
  readonly expected: Expected;
  /** The number of bytes at which the decision can first be made. */
  readonly decidedAt: number;
}

const T = PacketType;
const ID = sid([0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
const ok = (type: PacketType, sessionId: Uint8Array = ID): Expected => ({ kind: 'ok', type, sessionId });
const bad = (reason: MalformedReason): Expected => ({ kind: 'malformed', reason });
const NOT_MINE: Expected = { kind: 'not-mine' };

const fixtures: Fixture[] = [
  { description: 'HELLO header', input: pb().jv1(T.HELLO, ID).build(), expected: ok(T.HELLO), decidedAt: 20 },
  { description: 'DATA header + MAC + stream bytes', input: pb().jv1(T.DATA, ID).zeros(16).utf8('stream').build(), expected: ok(T.DATA), decidedAt: 20 },
  { description: 'CLOSE header', input: pb().jv1(T.CLOSE, ID).build(), expected: ok(T.CLOSE), decidedAt: 20 },
  { description: 'REVOKE header (types are the caller\'s policy)', input: pb().jv1(T.REVOKE, ID).u64(1n).build(), expected: ok(T.REVOKE), decidedAt: 20 },
  { description: 'REJECT header', input: pb().jv1(T.REJECT, ID).u8(1).build(), expected: ok(T.REJECT), decidedAt: 20 },
  { description: 'BIND header', input: pb().jv1(T.BIND, ID).build(), expected: ok(T.BIND), decidedAt: 20 },
  { description: 'session id with only its last byte set', input: pb().jv1(T.HELLO, sid([...Array(15).fill(0), 1])).build(), expected: ok(T.HELLO, sid([...Array(15).fill(0), 1])), decidedAt: 20 },
  { description: 'wrong first magic byte', input: pb().jv1(T.HELLO, ID, { magic: 0x4b56 }).build(), expected: NOT_MINE, decidedAt: 1 },
  { description: 'wrong second magic byte', input: pb().jv1(T.HELLO, ID, { magic: 0x4a57 }).build(), expected: NOT_MINE, decidedAt: 2 },
  { description: 'a PROXY v2 header is not JV1', input: pb().bytes(PP2_SIGNATURE).build(), expected: NOT_MINE, decidedAt: 1 },
  { description: 'TLS ClientHello', input: Buffer.from('16030100a5010000a10303', 'hex'), expected: NOT_MINE, decidedAt: 1 },
  { description: 'HTTP', input: Buffer.from('GET / HTTP/1.1\r\n\r\n'), expected: NOT_MINE, decidedAt: 1 },
  { description: 'protocol version 0', input: pb().jv1(T.HELLO, ID, { version: 0 }).build(), expected: bad(MalformedReason.BAD_VERSION), decidedAt: 3 },
  { description: 'protocol version 2', input: pb().jv1(T.HELLO, ID, { version: 2 }).build(), expected: bad(MalformedReason.BAD_VERSION), decidedAt: 3 },
  { description: 'bad version wins over bad type', input: pb().jv1(0x77, ID, { version: 9 }).build(), expected: bad(MalformedReason.BAD_VERSION), decidedAt: 3 },
  { description: 'type 0', input: pb().jv1(0x00, ID).build(), expected: bad(MalformedReason.BAD_TYPE), decidedAt: 4 },
  { description: 'type 0x05', input: pb().jv1(0x05, ID).build(), expected: bad(MalformedReason.BAD_TYPE), decidedAt: 4 },
  { description: 'type 0xff with a zero id (type first)', input: pb().jv1(0xff, sid(0)).build(), expected: bad(MalformedReason.BAD_TYPE), decidedAt: 4 },
  { description: 'all-zero session id', input: pb().jv1(T.HELLO, sid(0)).build(), expected: bad(MalformedReason.ZERO_SESSION_ID), decidedAt: 20 },
  { description: 'all-zero session id, stream bytes after it', input: pb().jv1(T.DATA, sid(0)).utf8('x').build(), expected: bad(MalformedReason.ZERO_SESSION_ID), decidedAt: 20 },
];

/** The result as the fixture table writes it (sessionId as bytes, headerLength checked separately). */
function view(r: PreambleResult): unknown {
  if (r.kind !== 'ok') return r;
  expect(r.headerLength).toBe(20);
  return { kind: 'ok', type: r.type, sessionId: Uint8Array.from(r.sessionId) };
}

/**
 * Feeds `input` to the decoder in `chunks` (sizes), as a stream reader would: it appends each chunk and
 * decodes the whole buffer until the answer is not 'need'. Returns the answer and the bytes it took.
 */
function feed(input: Uint8Array, chunks: readonly number[], maxBytes = 20): { result: PreambleResult; at: number } {
  let have = 0;
  let result: PreambleResult = decodeJv1Preamble(input.subarray(0, 0), maxBytes);
  for (const c of [...chunks, input.length]) {
    if (result.kind !== 'need') break;
    have = Math.min(input.length, have + c);
    result = decodeJv1Preamble(input.subarray(0, have), maxBytes);
  }
  return { result, at: have };
}

describe('decodeJv1Preamble: fixtures', () => {
  it.each(fixtures)('$description (whole)', ({ input, expected }) => {
    expect(view(decodeJv1Preamble(input, 20))).toEqual(expected);
  });

  it.each(fixtures)('$description: cut at every byte boundary', ({ input, expected, decidedAt }) => {
    for (let k = 0; k <= input.length; k++) {
      const r = decodeJv1Preamble(input.subarray(0, k), 20);
      if (k < decidedAt) expect(r, `cut at ${k}`).toEqual({ kind: 'need', need: 20 });
      else expect(view(r), `cut at ${k}`).toEqual(expected);
    }
  });

  it.each(fixtures)('$description: one byte at a time', ({ input, expected, decidedAt }) => {
    const { result, at } = feed(input, Array<number>(input.length).fill(1));
    expect(view(result)).toEqual(expected);
    expect(at).toBe(decidedAt);
  });

  it('needs 20 bytes in total from an empty buffer', () => {
    expect(decodeJv1Preamble(new Uint8Array(0), 20)).toEqual({ kind: 'need', need: 20 });
  });

  it('returns a copy of the session id, not a view into the stream buffer', () => {
    const input = pb().jv1(T.HELLO, ID).build();
    const r = decodeJv1Preamble(input, 20);
    expect(r.kind).toBe('ok');
    if (r.kind !== 'ok') return;
    input.fill(0);
    expect(Uint8Array.from(r.sessionId)).toEqual(ID);
  });

  it('too-long: undecided past maxBytes (a codec contract; JV1 decides by 20)', () => {
    const input = pb().jv1(T.HELLO, ID).build();
    expect(decodeJv1Preamble(input.subarray(0, 10), 8)).toEqual({ kind: 'too-long' });
    expect(decodeJv1Preamble(input.subarray(0, 8), 8)).toEqual({ kind: 'need', need: 20 });
    // A decision made on the bytes present comes first.
    expect(decodeJv1Preamble(pb().jv1(0x00, ID).cut(10), 8)).toEqual({ kind: 'malformed', reason: MalformedReason.BAD_TYPE });
    // With maxBytes ≥ 20 it never happens.
    for (let k = 0; k <= 20; k++) expect(decodeJv1Preamble(input.subarray(0, k), 20).kind).not.toBe('too-long');
  });
});

describe('decodeJv1Preamble: properties', () => {
  // Mostly JV1-like bytes: the right magic, then any version/type/id; sometimes all random.
  const jv1ish = fc.oneof(
    fc.uint8Array({ maxLength: 40 }),
    fc
      .tuple(fc.constantFrom(1, 1, 1, 0, 2), fc.constantFrom(1, 2, 3, 4, 0x10, 0x20, 0, 5, 0xff), fc.oneof(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.constant(new Uint8Array(16))), fc.uint8Array({ maxLength: 20 }))
      .map(([v, t, id, rest]) => Buffer.concat([Buffer.from([0x4a, 0x56, v, t]), id, rest]))
      .chain((b) => fc.integer({ min: 0, max: b.length }).map((n) => b.subarray(0, n))),
  );
  const splits = fc.array(fc.integer({ min: 1, max: 25 }), { maxLength: 40 });

  it('never throws, and answers one of its five kinds', () => {
    fc.assert(
      fc.property(jv1ish, fc.integer({ min: 0, max: 64 }), (b, max) => {
        const r = decodeJv1Preamble(b, max);
        expect(['need', 'ok', 'not-mine', 'malformed', 'too-long']).toContain(r.kind);
        if (r.kind === 'need') expect(r.need).toBe(20);
        if (r.kind === 'too-long') expect(b.length).toBeGreaterThan(max);
      }),
      { numRuns: 2000 },
    );
  });

  it('the decision is the same however the stream is split, and is reached at the same byte', () => {
    fc.assert(
      fc.property(jv1ish, splits, splits, (b, s1, s2) => {
        const whole = decodeJv1Preamble(b, 20);
        const one = feed(b, Array<number>(b.length).fill(1));
        const a = feed(b, s1);
        const c = feed(b, s2);
        expect(view(a.result)).toEqual(view(one.result));
        expect(view(c.result)).toEqual(view(one.result));
        // Fed a byte at a time, the decision comes at the earliest byte; a chunked feed decides on the
        // first chunk that reaches it.
        if (one.result.kind !== 'need') {
          expect(view(whole)).toEqual(view(one.result));
          expect(a.at).toBeGreaterThanOrEqual(one.at);
          expect(view(decodeJv1Preamble(b.subarray(0, one.at), 20))).toEqual(view(one.result));
          if (one.at > 0) expect(decodeJv1Preamble(b.subarray(0, one.at - 1), 20).kind).toBe('need');
        } else {
          expect(whole).toEqual({ kind: 'need', need: 20 });
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('a valid header with anything after it is ok, whatever follows', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(T.HELLO, T.DATA, T.CLOSE),
        fc.uint8Array({ minLength: 16, maxLength: 16 }).filter((id) => id.some((x) => x !== 0)),
        fc.uint8Array({ maxLength: 64 }),
        (type, id, rest) => {
          const r = decodeJv1Preamble(Buffer.concat([pb().jv1(type, id).build(), rest]), 20);
          expect(view(r)).toEqual({ kind: 'ok', type, sessionId: Uint8Array.from(id) });
        },
      ),
    );
  });
});
