// The common shape of every listener codec (DESIGN §2 "pluggable codecs"): the verdict a codec gives on a
// datagram or on the first bytes of a TCP stream, the 16-byte id form shared by all codecs, and the factory
// that builds a listener's codec from its config. Pure: no I/O, no clock; never throws on wire bytes
// (only on misuse: a bad spec or id given by code, not by the network).
//
// Import cycle note: openvpn.ts and offset.ts import normaliseId from here and this file imports their
// functions for createCodec. It is safe because neither side uses the other at module evaluation time
// (only inside function bodies), so any import order works.
import { JV1_HEADER_LEN, JV1_SESSION_ID_LEN, decodeJv1 } from './jv1.js';
import { classifyOffset, decodeOffsetPreamble, checkOffsetSpec } from './offset.js';
import type { OffsetSpec } from './offset.js';
import { OPENVPN_TCP_MAX_PACKET_DEFAULT, classifyOpenVpn, decodeOpenVpnPreamble } from './openvpn.js';
import { decodeJv1Preamble } from './stream.js';
import { MalformedReason, PacketType } from './types.js';

export type CodecName = 'jv1' | 'openvpn' | 'offset';

/**
 * Why a codec called bytes malformed: JV1's reasons plus those of the other codecs. Strings in
 * snake_case, used as counter labels.
 */
export const CodecReason = {
  ...MalformedReason,
  /** OpenVPN opcodes 1 and 2 (key-method 1 hard resets), obsolete and refused by OpenVPN itself. */
  UNSUPPORTED_OPCODE: 'unsupported_opcode',
  /** An OpenVPN-over-TCP length prefix outside [9, max packet length]. */
  BAD_LENGTH: 'bad_length',
} as const;
export type CodecReason = (typeof CodecReason)[keyof typeof CodecReason];

/**
 * What one datagram (or a stream's first packet) says, seen from the client side. `sessionId` is always
 * the normalised 16-byte form (see normaliseId); it may be a view into the decoded buffer (JV1
 * datagrams), so copy it before the buffer is reused.
 */
export type CodecVerdict =
  /** May create a session (JV1 HELLO, OpenVPN client hard reset, every offset-codec packet). */
  | { readonly kind: 'open'; readonly sessionId: Uint8Array }
  /** Belongs to an existing session by id (JV1 DATA/CLOSE, OpenVPN control/ack); `close` ends it. */
  | { readonly kind: 'session'; readonly sessionId: Uint8Array; readonly close: boolean }
  /** Carries no id: follows the session pinned to the client's transport (OpenVPN data). */
  | { readonly kind: 'pinned' }
  | { readonly kind: 'not-mine' }
  | { readonly kind: 'malformed'; readonly reason: CodecReason }
  /** A type a client must never send (JV1 REVOKE/REJECT/BIND, OpenVPN server hard reset). */
  | { readonly kind: 'forbidden' };

export interface DatagramCodec {
  readonly name: CodecName;
  /** The verdict on one client datagram. Never throws. */
  classify(buf: Uint8Array): CodecVerdict;
}

/**
 * A stream codec's answer on the bytes received so far at the start of a TCP stream. Decided as soon as
 * the bytes present allow, and monotone: once decided at k bytes, every longer prefix gives the same
 * answer, so the decision does not depend on how the stream is split.
 */
export type PreambleDecision =
  /** Undecided: the buffer must grow to `need` bytes in total (not `need` more). */
  | { readonly kind: 'need'; readonly need: number }
  /**
   * Decided: `verdict` is open, session, pinned or forbidden (which ones may open a stream is the
   * caller's policy); its sessionId is a copy. `headerLength` = the bytes the decision needed.
   */
  | { readonly kind: 'ok'; readonly verdict: CodecVerdict; readonly headerLength: number }
  | { readonly kind: 'not-mine' }
  | { readonly kind: 'malformed'; readonly reason: CodecReason }
  /** Still undecided past `maxBytes`: the caller stops buffering. */
  | { readonly kind: 'too-long' };

export interface StreamCodec {
  readonly name: CodecName;
  /** The decision on the first bytes of a stream (`buf` = everything received so far). Never throws. */
  preamble(buf: Uint8Array, maxBytes: number): PreambleDecision;
}

export type CodecSpec =
  | { readonly codec: 'jv1' }
  /** `maxPacketLength`: the largest first packet accepted over TCP (default 1600). */
  | { readonly codec: 'openvpn'; readonly maxPacketLength?: number }
  | { readonly codec: 'offset'; readonly offset: number; readonly length: number };

export interface Codec {
  readonly datagram: DatagramCodec;
  readonly stream: StreamCodec;
}

// ------------------------------------------------------------------------------------- session ids

/** Codec tags inside a normalised id. 0 is JV1 (ids pass through); 1–255 are the other codecs. */
export const CodecTag = { jv1: 0, openvpn: 1, offset: 2 } as const;
export type CodecTag = (typeof CodecTag)[keyof typeof CodecTag];

export const NORMALISED_ID_LEN = JV1_SESSION_ID_LEN;
/**
 * First byte of every non-JV1 normalised id. It is reserved: a JV1 id starting with 0xA5 could in theory
 * equal a normalised id of another codec. That needs an exact match of all 16 bytes (0xA5, tag, length,
 * id, zero padding) — negligible for random JV1 ids — and a forged one only reaches the owner as an
 * unbound-source reattach, which the owner's own crypto refuses. A given listener only ever sees one codec.
 */
export const NON_JV1_ID_MARK = 0xa5;
/** 16 bytes minus mark, tag and length. */
export const MAX_CODEC_ID_LEN = NORMALISED_ID_LEN - 3;

/**
 * The 16-byte form of a codec's session id, shared by the session table and the ring. JV1 (tag 0): the
 * 16-byte id itself, unchanged (same object). Other codecs: a new array
 * `[0xA5, codecTag, id.length, ...id, 0…]`; tag and length are part of the value, so ids of different
 * codecs or lengths never collide. Throws RangeError on misuse (codecs only pass validated ids).
 */
export function normaliseId(codecTag: number, id: Uint8Array): Uint8Array {
  if (!Number.isInteger(codecTag) || codecTag < 0 || codecTag > 0xff) {
    throw new RangeError(`codec tag must be an integer 0–255, got ${codecTag}`);
  }
  if (codecTag === CodecTag.jv1) {
    if (id.length !== JV1_SESSION_ID_LEN) throw new RangeError(`JV1 session id must be 16 bytes, got ${id.length}`);
    return id;
  }
  if (id.length < 1 || id.length > MAX_CODEC_ID_LEN) {
    throw new RangeError(`session id must be 1–${MAX_CODEC_ID_LEN} bytes, got ${id.length}`);
  }
  const out = new Uint8Array(NORMALISED_ID_LEN);
  out[0] = NON_JV1_ID_MARK;
  out[1] = codecTag;
  out[2] = id.length;
  out.set(id, 3);
  return out;
}

// ------------------------------------------------------------------------------------- JV1 adapter

const NOT_MINE: CodecVerdict = Object.freeze({ kind: 'not-mine' });
const FORBIDDEN: CodecVerdict = Object.freeze({ kind: 'forbidden' });

/** JV1 types as a client sends them: HELLO opens, DATA/CLOSE name a session, the rest are forbidden. */
function jv1Verdict(type: PacketType, sessionId: Uint8Array): CodecVerdict {
  switch (type) {
    case PacketType.HELLO:
      return { kind: 'open', sessionId };
    case PacketType.DATA:
      return { kind: 'session', sessionId, close: false };
    case PacketType.CLOSE:
      return { kind: 'session', sessionId, close: true };
    default:
      return FORBIDDEN;
  }
}

const JV1_DATAGRAM: DatagramCodec = Object.freeze({
  name: 'jv1',
  classify(buf: Uint8Array): CodecVerdict {
    const d = decodeJv1(buf);
    if (d.kind === 'ok') return jv1Verdict(d.value.type, d.value.sessionId);
    return d.kind === 'not-mine' ? NOT_MINE : d;
  },
} as const);

const JV1_STREAM: StreamCodec = Object.freeze({
  name: 'jv1',
  preamble(buf: Uint8Array, maxBytes: number): PreambleDecision {
    const d = decodeJv1Preamble(buf, maxBytes);
    if (d.kind !== 'ok') return d;
    return { kind: 'ok', verdict: jv1Verdict(d.type, d.sessionId), headerLength: JV1_HEADER_LEN };
  },
} as const);

// ---------------------------------------------------------------------------------------- factory

/**
 * A listener's codec pair. Throws RangeError on an invalid spec (offset: integer offset ≥ 0, length
 * 1–13; openvpn: integer maxPacketLength 9–65535) — config validation should have caught it.
 */
export function createCodec(spec: CodecSpec): Codec {
  switch (spec.codec) {
    case 'jv1':
      return Object.freeze({ datagram: JV1_DATAGRAM, stream: JV1_STREAM });
    case 'openvpn': {
      const max = spec.maxPacketLength ?? OPENVPN_TCP_MAX_PACKET_DEFAULT;
      if (!Number.isInteger(max) || max < 9 || max > 0xffff) {
        throw new RangeError(`openvpn maxPacketLength must be an integer 9–65535, got ${max}`);
      }
      return Object.freeze({
        datagram: Object.freeze({ name: 'openvpn', classify: (buf: Uint8Array) => classifyOpenVpn(buf) } as const),
        stream: Object.freeze({
          name: 'openvpn',
          preamble: (buf: Uint8Array, maxBytes: number) => decodeOpenVpnPreamble(buf, maxBytes, max),
        } as const),
      });
    }
    case 'offset': {
      const s: OffsetSpec = Object.freeze({ offset: spec.offset, length: spec.length });
      checkOffsetSpec(s);
      return Object.freeze({
        datagram: Object.freeze({ name: 'offset', classify: (buf: Uint8Array) => classifyOffset(buf, s) } as const),
        stream: Object.freeze({
          name: 'offset',
          preamble: (buf: Uint8Array, maxBytes: number) => decodeOffsetPreamble(buf, maxBytes, s),
        } as const),
      });
    }
  }
}
