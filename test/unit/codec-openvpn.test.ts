// The OpenVPN codec (src/codec/openvpn.ts): every opcode × key id, truncation, real-looking packets in the
// tls-auth, tls-crypt and tls-crypt-v2 layouts, the server direction, the TCP preamble cut at every byte
// boundary, and properties (never throws; the stream decision does not depend on how bytes are split;
// the stream and datagram views agree). Expected ids are built by hand, not by normaliseId.
import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { classifyOpenVpn, decodeOpenVpnPreamble } from '../../src/codec/openvpn.js';
import type { CodecVerdict, PreambleDecision } from '../../src/codec/codec.js';
import { pb } from '../helpers/packet-builder.js';

const SID = [0x8f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78] as const;
const SID2 = [0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00] as const;
/** The normalised form, by hand: 0xA5, tag 1 (openvpn), length 8, the id, 5 zero bytes. */
const nid = (id: readonly number[] = SID): Uint8Array => Uint8Array.from([0xa5, 1, id.length, ...id, 0, 0, 0, 0, 0]);

const open = (id: readonly number[] = SID): CodecVerdict => ({ kind: 'open', sessionId: nid(id) });
const session = (id: readonly number[] = SID): CodecVerdict => ({ kind: 'session', sessionId: nid(id), close: false });
const PINNED: CodecVerdict = { kind: 'pinned' };
const FORBIDDEN: CodecVerdict = { kind: 'forbidden' };
const NOT_MINE: CodecVerdict = { kind: 'not-mine' };
const bad = (reason: string): CodecVerdict => ({ kind: 'malformed', reason } as CodecVerdict);

/** Plain arrays for comparison (a Buffer view and a Uint8Array with equal bytes compare equal). */
function view(v: CodecVerdict | PreambleDecision): unknown {
  if (v.kind === 'open' || v.kind === 'session') return { ...v, sessionId: Uint8Array.from(v.sessionId) };
  if (v.kind === 'ok') return { ...v, verdict: view(v.verdict) };
  return v;
}

/** Opcode byte then the session id then `rest`. */
const ctl = (byte0: number, id: readonly number[] = SID, rest: readonly number[] = [0, 0, 0, 0]): Buffer =>
  pb().u8(byte0).bytes(id).bytes(rest).build();

// ------------------------------------------------------------------------------ every opcode × key id

/** What a client packet with each opcode is, written out (absent: not-mine). */
const CLIENT_ROLE: Readonly<Record<number, 'open' | 'session' | 'pinned' | 'forbidden' | 'unsupported'>> = {
  1: 'unsupported', // P_CONTROL_HARD_RESET_CLIENT_V1
  2: 'unsupported', // P_CONTROL_HARD_RESET_SERVER_V1
  3: 'session', // P_CONTROL_SOFT_RESET_V1 (a rekey)
  4: 'session', // P_CONTROL_V1
  5: 'session', // P_ACK_V1
  6: 'pinned', // P_DATA_V1
  7: 'open', // P_CONTROL_HARD_RESET_CLIENT_V2
  8: 'forbidden', // P_CONTROL_HARD_RESET_SERVER_V2
  9: 'pinned', // P_DATA_V2
  10: 'open', // P_CONTROL_HARD_RESET_CLIENT_V3
  11: 'session', // P_CONTROL_WKC_V1
};

function expectedFor(role: string | undefined, id: readonly number[] = SID): CodecVerdict {
  switch (role) {
    case 'open':
      return open(id);
    case 'session':
      return session(id);
    case 'pinned':
      return PINNED;
    case 'forbidden':
      return FORBIDDEN;
    case 'unsupported':
      return bad('unsupported_opcode');
    default:
      return NOT_MINE;
  }
}

const opcodeTable = Array.from({ length: 32 }, (_, op) => [0, 7].map((key) => ({ op, key, role: CLIENT_ROLE[op] }))).flat();

describe('classifyOpenVpn: every opcode 0–31 × key id 0 and 7', () => {
  it.each(opcodeTable)('opcode $op key $key → $role', ({ op, key, role }) => {
    const byte0 = (op << 3) | key;
    expect(view(classifyOpenVpn(ctl(byte0)))).toEqual(view(expectedFor(role)));
    // The key id never matters.
    expect(view(classifyOpenVpn(ctl(byte0)))).toEqual(view(classifyOpenVpn(ctl(op << 3))));
  });

  it('reads the opcode from the high 5 bits: the familiar first bytes', () => {
    const cases: Array<[number, CodecVerdict]> = [
      [0x38, open()], // HARD_RESET_CLIENT_V2, key 0
      [0x50, open()], // HARD_RESET_CLIENT_V3
      [0x40, FORBIDDEN], // HARD_RESET_SERVER_V2
      [0x18, session()], // SOFT_RESET_V1
      [0x19, session()], // SOFT_RESET_V1, key 1 (a rekey)
      [0x20, session()], // CONTROL_V1
      [0x28, session()], // ACK_V1
      [0x58, session()], // CONTROL_WKC_V1
      [0x30, PINNED], // DATA_V1 key 0
      [0x37, PINNED], // DATA_V1 key 7
      [0x48, PINNED], // DATA_V2 key 0
      [0x4f, PINNED], // DATA_V2 key 7
      [0x08, bad('unsupported_opcode')],
      [0x10, bad('unsupported_opcode')],
      [0x00, NOT_MINE],
      [0x60, NOT_MINE], // opcode 12
      [0xff, NOT_MINE], // opcode 31
    ];
    for (const [b, v] of cases) expect(view(classifyOpenVpn(ctl(b))), `0x${b.toString(16)}`).toEqual(view(v));
  });
});

// -------------------------------------------------------------------------------------- lengths

describe('classifyOpenVpn: lengths', () => {
  it('an empty datagram is not mine', () => {
    expect(classifyOpenVpn(new Uint8Array(0))).toEqual(NOT_MINE);
  });

  it.each([3, 4, 5, 7, 8, 10, 11])('control opcode %i: truncated below 9 bytes, decided at exactly 9', (op) => {
    const whole = pb().u8(op << 3).bytes(SID).build();
    for (let n = 1; n < 9; n++) expect(classifyOpenVpn(whole.subarray(0, n)), `${n} bytes`).toEqual(bad('truncated'));
    expect(view(classifyOpenVpn(whole))).toEqual(view(expectedFor(CLIENT_ROLE[op])));
  });

  it('data packets need no minimum length (they carry no id)', () => {
    expect(classifyOpenVpn(Uint8Array.of(0x30))).toEqual(PINNED);
    expect(classifyOpenVpn(Uint8Array.of(0x48))).toEqual(PINNED);
    expect(classifyOpenVpn(Uint8Array.of(0x48, 0, 0, 1))).toEqual(PINNED);
  });

  it('obsolete opcodes are unsupported at any length', () => {
    expect(classifyOpenVpn(Uint8Array.of(0x08))).toEqual(bad('unsupported_opcode'));
    expect(classifyOpenVpn(Uint8Array.of(0x10))).toEqual(bad('unsupported_opcode'));
  });

  it('an all-zero session id is malformed (OpenVPN\'s undefined id)', () => {
    for (const op of [3, 4, 5, 7, 8, 10, 11]) {
      expect(classifyOpenVpn(ctl(op << 3, [0, 0, 0, 0, 0, 0, 0, 0])), `opcode ${op}`).toEqual(bad('zero_session_id'));
    }
    expect(view(classifyOpenVpn(ctl(0x38, SID2)))).toEqual(view(open(SID2)));
  });
});

// -------------------------------------------------------------------------------- real-looking packets

const HMAC20 = Array<number>(20).fill(0xc1);
const HMAC32 = Array<number>(32).fill(0xc2);
const TAG32 = Array<number>(32).fill(0x7a);
const CIPHER = [0x9e, 0x04, 0x5b, 0xd3, 0x11, 0x6c, 0xa0, 0x2f, 0x33];
const TIME = 0x65a1b2c3;

const realPackets: Array<{ description: string; input: Buffer; expected: CodecVerdict }> = [
  {
    description: 'HARD_RESET_CLIENT_V2, tls-auth SHA1 (sid, hmac 20, packet-id, time, ack len 0, message-id)',
    input: pb().u8(0x38).bytes(SID).bytes(HMAC20).u32(1).u32(TIME).u8(0).u32(0).build(),
    expected: open(),
  },
  {
    description: 'HARD_RESET_CLIENT_V2, tls-auth SHA256 (hmac 32)',
    input: pb().u8(0x38).bytes(SID).bytes(HMAC32).u32(1).u32(TIME).u8(0).u32(0).build(),
    expected: open(),
  },
  {
    description: 'HARD_RESET_CLIENT_V2, no tls-auth (sid, ack len 0, message-id)',
    input: pb().u8(0x38).bytes(SID).u8(0).u32(0).build(),
    expected: open(),
  },
  {
    description: 'HARD_RESET_CLIENT_V2, tls-crypt (sid, packet-id 8, tag 32, encrypted)',
    input: pb().u8(0x38).bytes(SID).u32(1).u32(TIME).bytes(TAG32).bytes(CIPHER).build(),
    expected: open(),
  },
  {
    description: 'HARD_RESET_CLIENT_V3, tls-crypt-v2 (…, encrypted, WKc, u16 WKc length)',
    input: pb().u8(0x50).bytes(SID).u32(1).u32(TIME).bytes(TAG32).bytes(CIPHER).zeros(290).u16(292).build(),
    expected: open(),
  },
  {
    description: 'CONTROL_V1, tls-auth, acking one packet (ack len 1, id, remote sid)',
    input: pb().u8(0x20).bytes(SID).bytes(HMAC20).u32(2).u32(TIME).u8(1).u32(0).bytes(SID2).u32(1).hex('160301').build(),
    expected: session(),
  },
  {
    description: 'ACK_V1, no tls-auth (ack len 1, id, remote sid)',
    input: pb().u8(0x28).bytes(SID).u8(1).u32(0).bytes(SID2).build(),
    expected: session(),
  },
  {
    description: 'CONTROL_WKC_V1, tls-crypt-v2',
    input: pb().u8(0x58).bytes(SID).u32(2).u32(TIME).bytes(TAG32).bytes(CIPHER).zeros(30).u16(32).build(),
    expected: session(),
  },
  {
    description: 'SOFT_RESET_V1, key id 2 (a rekey: same session)',
    input: pb().u8(0x1a).bytes(SID).bytes(HMAC20).u32(9).u32(TIME).u8(0).u32(5).build(),
    expected: session(),
  },
  {
    description: 'HARD_RESET_SERVER_V2 from a client',
    input: pb().u8(0x40).bytes(SID2).bytes(HMAC20).u32(1).u32(TIME).u8(1).u32(0).bytes(SID).u32(0).build(),
    expected: FORBIDDEN,
  },
  {
    description: 'DATA_V1, key 0 (hmac, iv, ciphertext)',
    input: pb().u8(0x30).bytes(HMAC20).zeros(16).bytes(CIPHER).build(),
    expected: PINNED,
  },
  {
    description: 'DATA_V2, key 1, peer-id 7 (AEAD: packet id, tag, ciphertext)',
    input: pb().u8(0x49, 0, 0, 7).u32(3).bytes(Array<number>(16).fill(0x5e)).bytes(CIPHER).build(),
    expected: PINNED,
  },
];

describe('classifyOpenVpn: real-looking packets (the id is at bytes 1–8 in every layout)', () => {
  it.each(realPackets)('$description', ({ input, expected }) => {
    expect(view(classifyOpenVpn(input))).toEqual(view(expected));
  });

  it('returns a new id array, not a view into the datagram', () => {
    const input = ctl(0x38);
    const v = classifyOpenVpn(input);
    input.fill(0xee);
    expect(view(v)).toEqual(view(open()));
  });

  it('two clients (different ids) get different ids; the same id twice, the same', () => {
    const a = classifyOpenVpn(ctl(0x38, SID));
    const b = classifyOpenVpn(ctl(0x38, SID2));
    const c = classifyOpenVpn(ctl(0x20, SID));
    expect(a.kind === 'open' && b.kind === 'open' && c.kind === 'session').toBe(true);
    if (a.kind !== 'open' || b.kind !== 'open' || c.kind !== 'session') return;
    expect(Buffer.from(a.sessionId).equals(Buffer.from(b.sessionId))).toBe(false);
    expect(Buffer.from(a.sessionId).equals(Buffer.from(c.sessionId))).toBe(true);
  });
});

describe('classifyOpenVpn: from a server', () => {
  it('the server hard reset is fine from a server, the client resets are not', () => {
    expect(view(classifyOpenVpn(ctl(0x40), 'server'))).toEqual(view(session()));
    expect(classifyOpenVpn(ctl(0x38), 'server')).toEqual(FORBIDDEN);
    expect(classifyOpenVpn(ctl(0x50), 'server')).toEqual(FORBIDDEN);
  });

  it('every other opcode reads the same from either side', () => {
    for (let op = 0; op < 32; op++) {
      if (op === 7 || op === 8 || op === 10) continue;
      expect(view(classifyOpenVpn(ctl(op << 3), 'server')), `opcode ${op}`).toEqual(view(classifyOpenVpn(ctl(op << 3))));
    }
  });
});

// ------------------------------------------------------------------------------------ TCP preamble

/** [u16 length][packet], the length being the packet's unless `len` is given. */
const tcp = (packet: Uint8Array, len = packet.length): Buffer => pb().u16(len).bytes(packet).build();

const okAt = (verdict: CodecVerdict): PreambleDecision => ({ kind: 'ok', verdict, headerLength: 11 });
const stop = (reason: string): PreambleDecision => ({ kind: 'malformed', reason } as PreambleDecision);

const tcpFixtures: Array<{ description: string; input: Buffer; expected: PreambleDecision; decidedAt: number; maxPacket?: number }> = [
  { description: 'HARD_RESET_CLIENT_V2, tls-auth, then more packets', input: Buffer.concat([tcp(realPackets[0]!.input), tcp(ctl(0x28))]), expected: okAt(open()), decidedAt: 11 },
  { description: 'HARD_RESET_CLIENT_V3, tls-crypt-v2', input: tcp(realPackets[4]!.input), expected: okAt(open()), decidedAt: 11 },
  { description: 'a 9-byte control packet (shortest)', input: tcp(ctl(0x38, SID, [])), expected: okAt(open()), decidedAt: 11 },
  { description: 'CONTROL_V1 first (caller\'s policy)', input: tcp(realPackets[5]!.input), expected: okAt(session()), decidedAt: 11 },
  { description: 'DATA_V2 first: pinned (caller\'s policy)', input: tcp(realPackets[11]!.input), expected: okAt(PINNED), decidedAt: 11 },
  { description: 'HARD_RESET_SERVER_V2 from a client', input: tcp(realPackets[9]!.input), expected: okAt(FORBIDDEN), decidedAt: 11 },
  { description: 'length 1600 (the default max)', input: tcp(ctl(0x38, SID, Array<number>(1591).fill(1))), expected: okAt(open()), decidedAt: 11 },
  { description: 'length 1601 > max', input: tcp(ctl(0x38, SID, Array<number>(1592).fill(1))), expected: stop('bad_length'), decidedAt: 3 },
  { description: 'length 1601 with max 2000', input: tcp(ctl(0x38, SID, Array<number>(1592).fill(1))), expected: okAt(open()), decidedAt: 11, maxPacket: 2000 },
  { description: 'length 8 < 9', input: tcp(ctl(0x38), 8), expected: stop('bad_length'), decidedAt: 3 },
  { description: 'length 0', input: tcp(ctl(0x38), 0), expected: stop('bad_length'), decidedAt: 3 },
  { description: 'length 0xffff', input: tcp(ctl(0x38), 0xffff), expected: stop('bad_length'), decidedAt: 3 },
  { description: 'unknown opcode 0 (not-mine beats a bad length)', input: tcp(ctl(0x00), 3), expected: { kind: 'not-mine' }, decidedAt: 3 },
  { description: 'opcode 31', input: tcp(ctl(0xf8)), expected: { kind: 'not-mine' }, decidedAt: 3 },
  { description: 'TLS ClientHello', input: Buffer.from('16030100a5010000a10303', 'hex'), expected: { kind: 'not-mine' }, decidedAt: 3 },
  { description: 'obsolete opcode 1', input: tcp(ctl(0x08)), expected: stop('unsupported_opcode'), decidedAt: 3 },
  { description: 'obsolete opcode 2, key 7', input: tcp(ctl(0x17)), expected: stop('unsupported_opcode'), decidedAt: 3 },
  { description: 'all-zero session id', input: tcp(ctl(0x38, [0, 0, 0, 0, 0, 0, 0, 0])), expected: stop('zero_session_id'), decidedAt: 11 },
];

function feed(input: Uint8Array, chunks: readonly number[], maxBytes = 64, maxPacket?: number): { result: PreambleDecision; at: number } {
  let have = 0;
  let result = decodeOpenVpnPreamble(input.subarray(0, 0), maxBytes, maxPacket);
  for (const c of [...chunks, input.length]) {
    if (result.kind !== 'need') break;
    have = Math.min(input.length, have + c);
    result = decodeOpenVpnPreamble(input.subarray(0, have), maxBytes, maxPacket);
  }
  return { result, at: have };
}

describe('decodeOpenVpnPreamble: fixtures', () => {
  it.each(tcpFixtures)('$description (whole)', ({ input, expected, maxPacket }) => {
    expect(view(decodeOpenVpnPreamble(input, 64, maxPacket))).toEqual(view(expected));
  });

  it.each(tcpFixtures)('$description: cut at every byte boundary', ({ input, expected, decidedAt, maxPacket }) => {
    for (let k = 0; k <= Math.min(input.length, 40); k++) {
      const r = decodeOpenVpnPreamble(input.subarray(0, k), 64, maxPacket);
      if (k < decidedAt) expect(r, `cut at ${k}`).toEqual({ kind: 'need', need: 11 });
      else expect(view(r), `cut at ${k}`).toEqual(view(expected));
    }
  });

  it.each(tcpFixtures)('$description: one byte at a time', ({ input, expected, decidedAt, maxPacket }) => {
    const { result, at } = feed(input, Array<number>(input.length).fill(1), 64, maxPacket);
    expect(view(result)).toEqual(view(expected));
    expect(at).toBe(decidedAt);
  });

  it('the id is a copy, not a view into the stream buffer', () => {
    const input = tcp(ctl(0x38));
    const r = decodeOpenVpnPreamble(input, 64);
    input.fill(0);
    expect(view(r)).toEqual(view(okAt(open())));
  });

  it('too-long: undecided past maxBytes; a decision on the bytes present comes first', () => {
    const input = tcp(ctl(0x38));
    expect(decodeOpenVpnPreamble(input.subarray(0, 6), 5)).toEqual({ kind: 'too-long' });
    expect(decodeOpenVpnPreamble(input.subarray(0, 5), 5)).toEqual({ kind: 'need', need: 11 });
    expect(decodeOpenVpnPreamble(tcp(ctl(0x00)).subarray(0, 6), 5)).toEqual({ kind: 'not-mine' });
    for (let k = 0; k <= input.length; k++) expect(decodeOpenVpnPreamble(input.subarray(0, k), 11).kind).not.toBe('too-long');
  });
});

// -------------------------------------------------------------------------------------- properties

const KINDS = ['open', 'session', 'pinned', 'not-mine', 'malformed', 'forbidden'];
/** Mostly OpenVPN-like: any first byte, any id (sometimes zero), anything after; sometimes all random. */
const ovpnish = fc.oneof(
  fc.uint8Array({ maxLength: 40 }),
  fc
    .tuple(fc.integer({ min: 0, max: 255 }), fc.oneof(fc.uint8Array({ minLength: 8, maxLength: 8 }), fc.constant(new Uint8Array(8))), fc.uint8Array({ maxLength: 30 }))
    .map(([b, id, rest]) => Buffer.concat([Buffer.of(b), id, rest]))
    .chain((b) => fc.integer({ min: 0, max: b.length }).map((n) => b.subarray(0, n))),
);
/** A TCP stream: a length prefix (often right, sometimes anything) and a packet. */
const streamish = fc.oneof(
  fc.uint8Array({ maxLength: 30 }),
  fc.tuple(ovpnish, fc.option(fc.integer({ min: 0, max: 0xffff }))).map(([p, len]) => tcp(p, len ?? p.length)),
);
const splits = fc.array(fc.integer({ min: 1, max: 15 }), { maxLength: 40 });

describe('openvpn codec: properties', () => {
  it('classify never throws; an id, when given, is the normalised bytes 1–8', () => {
    fc.assert(
      fc.property(ovpnish, fc.constantFrom('client', 'server') as fc.Arbitrary<'client' | 'server'>, (b, from) => {
        const v = classifyOpenVpn(b, from);
        expect(KINDS).toContain(v.kind);
        if (v.kind === 'open' || v.kind === 'session') {
          expect(Uint8Array.from(v.sessionId)).toEqual(nid([...b.subarray(1, 9)]));
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('the stream decision is the same however the bytes are split, reached at the same byte', () => {
    fc.assert(
      fc.property(streamish, splits, splits, (b, s1, s2) => {
        const whole = decodeOpenVpnPreamble(b, 64);
        const one = feed(b, Array<number>(b.length).fill(1));
        const a = feed(b, s1);
        const c = feed(b, s2);
        expect(view(a.result)).toEqual(view(one.result));
        expect(view(c.result)).toEqual(view(one.result));
        if (one.result.kind !== 'need') {
          expect(view(whole)).toEqual(view(one.result));
          expect(a.at).toBeGreaterThanOrEqual(one.at);
          if (one.at > 0) expect(decodeOpenVpnPreamble(b.subarray(0, one.at - 1), 64).kind).toBe('need');
        } else {
          expect(whole).toEqual({ kind: 'need', need: 11 });
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('a well-framed first packet gets the datagram verdict', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ minLength: 8, maxLength: 60 }), (b0, rest) => {
        const packet = Buffer.concat([Buffer.of(b0), rest]);
        const d = classifyOpenVpn(packet);
        const s = decodeOpenVpnPreamble(tcp(packet), 64);
        if (d.kind === 'not-mine' || d.kind === 'malformed') expect(s).toEqual(d);
        else expect(view(s)).toEqual(view(okAt(d)));
      }),
      { numRuns: 3000 },
    );
  });
});
