// JV1, Anchor's native wire format (DESIGN §2): decoder, payload decoders and encoders. Pure: no I/O,
// no clock; decoders never throw on wire bytes (ok | not-mine | malformed), encoders throw only on misuse.
import { bytesToIp, ipToBytes } from './ip.js';
import { MalformedReason, PacketType } from './types.js';
import type { Decoded, RejectReason, Transport } from './types.js';

export const JV1_HEADER_LEN = 20;
export const JV1_MAGIC = 0x4a56;
export const JV1_VERSION = 1;
export const JV1_SESSION_ID_LEN = 16;

/** Payload sizes fixed by DESIGN §2. */
export const REVOKE_PAYLOAD_LEN = 8;
export const BIND4_PAYLOAD_LEN = 8 + 1 + 4 + 2;
export const BIND6_PAYLOAD_LEN = 8 + 1 + 16 + 2;
/** The smallest REJECT: header + reason byte. */
export const REJECT_MIN_LEN = JV1_HEADER_LEN + 1;

export interface Jv1Packet {
  readonly type: PacketType;
  /** 16 bytes, a view into the decoded buffer (no copy): copy it before the buffer is reused. */
  readonly sessionId: Uint8Array;
  /** Everything after the header, a view into the decoded buffer. */
  readonly payload: Uint8Array;
}

export interface Jv1Reject {
  readonly reason: RejectReason;
  readonly text: string;
}

export interface Jv1Bind {
  /** The state_version the owner validated the transport against. */
  readonly version: bigint;
  readonly transport: Transport;
}

const NOT_MINE: Decoded<never> = Object.freeze({ kind: 'not-mine' });
const malformed = (reason: MalformedReason): Decoded<never> => ({ kind: 'malformed', reason });
// Stateless in non-streaming use, so sharing one instance is safe. ignoreBOM keeps a leading U+FEFF.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const HEX: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
const SESSION_ID_HEX_RE = /^[0-9a-fA-F]{32}$/;
const MAX_REJECT_REASON = 8;

/** Whether a type byte is one of JV1's packet types. */
export function isPacketType(t: number): t is PacketType {
  return (
    t === PacketType.HELLO ||
    t === PacketType.DATA ||
    t === PacketType.CLOSE ||
    t === PacketType.REVOKE ||
    t === PacketType.REJECT ||
    t === PacketType.BIND
  );
}

function isZero(b: Uint8Array): boolean {
  return isZeroAt(b, 0, b.length);
}

function isZeroAt(b: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (b[i] !== 0) return false;
  return true;
}

/** The text of UTF-8 bytes, undefined if invalid (the decoder's own error is caught, never escapes). */
function decodeUtf8(b: Uint8Array): string | undefined {
  try {
    return UTF8.decode(b);
  } catch {
    return undefined;
  }
}

/** What `checkJv1` says of a datagram: valid, not JV1 at all, or malformed (with the reason). */
export type Jv1Check = 'ok' | 'not-mine' | MalformedReason;

/**
 * Validates one JV1 packet in place, allocating nothing (the per-datagram path reads the type at byte 3
 * and the session id at bytes 4..19 itself). Fewer than 2 bytes or another magic: not-mine. Then, in
 * this order: truncated (< 20 bytes), bad_version, bad_type, zero_session_id, bad_payload (REVOKE, BIND
 * and REJECT payloads are checked by their decoders below; HELLO, DATA and CLOSE carry anything).
 */
export function checkJv1(buf: Uint8Array): Jv1Check {
  if (buf.length < 2 || buf[0] !== 0x4a || buf[1] !== 0x56) return 'not-mine';
  if (buf.length < JV1_HEADER_LEN) return MalformedReason.TRUNCATED;
  if (buf[2] !== JV1_VERSION) return MalformedReason.BAD_VERSION;
  const type = buf[3] ?? 0;
  if (!isPacketType(type)) return MalformedReason.BAD_TYPE;
  if (isZeroAt(buf, 4, JV1_HEADER_LEN)) return MalformedReason.ZERO_SESSION_ID;
  // Only the control types have a payload shape to check (views are made for them only).
  if (type !== PacketType.HELLO && type !== PacketType.DATA && type !== PacketType.CLOSE && !payloadValid(type, buf.subarray(JV1_HEADER_LEN))) {
    return MalformedReason.BAD_PAYLOAD;
  }
  return 'ok';
}

/**
 * Decodes one JV1 packet: `checkJv1`'s verdict, and for a valid packet its type with views of the
 * session id and payload. The result's sessionId and payload are views into `buf`.
 */
export function decodeJv1(buf: Uint8Array): Decoded<Jv1Packet> {
  const c = checkJv1(buf);
  if (c === 'not-mine') return NOT_MINE;
  if (c !== 'ok') return malformed(c);
  return { kind: 'ok', value: { type: buf[3] as PacketType, sessionId: buf.subarray(4, JV1_HEADER_LEN), payload: buf.subarray(JV1_HEADER_LEN) } };
}

function payloadValid(type: PacketType, payload: Uint8Array): boolean {
  switch (type) {
    case PacketType.REVOKE:
      return payload.length === REVOKE_PAYLOAD_LEN;
    case PacketType.BIND:
      return bindShapeValid(payload);
    case PacketType.REJECT:
      return decodeReject(payload) !== undefined;
    default:
      return true;
  }
}

function bindShapeValid(p: Uint8Array): boolean {
  const family = p[8];
  return (family === 4 && p.length === BIND4_PAYLOAD_LEN) || (family === 6 && p.length === BIND6_PAYLOAD_LEN);
}

function readU64(b: Uint8Array, at: number): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(at, false);
}

/** REVOKE payload: the u64 version at which the session left the node. */
export function decodeRevoke(payload: Uint8Array): bigint | undefined {
  return payload.length === REVOKE_PAYLOAD_LEN ? readU64(payload, 0) : undefined;
}

/** REJECT payload: u8 reason (1..8) then optional UTF-8 text. */
export function decodeReject(payload: Uint8Array): Jv1Reject | undefined {
  const reason = payload[0];
  if (reason === undefined || reason < 1 || reason > MAX_REJECT_REASON) return undefined;
  const text = payload.length === 1 ? '' : decodeUtf8(payload.subarray(1));
  if (text === undefined) return undefined;
  return { reason: reason as RejectReason, text };
}

/**
 * BIND payload: u64 version, u8 family (4|6), 4 or 16 address bytes, u16 port. The address comes back
 * in canonical text (see bytesToIp); an IPv4-mapped IPv6 address stays family 6 ("::ffff:1.2.3.4").
 */
export function decodeBind(payload: Uint8Array): Jv1Bind | undefined {
  if (!bindShapeValid(payload)) return undefined;
  const family = payload[8] === 4 ? 4 : 6;
  const addrLen = family === 4 ? 4 : 16;
  const address = bytesToIp(payload.subarray(9, 9 + addrLen));
  const port = ((payload[9 + addrLen] ?? 0) << 8) | (payload[10 + addrLen] ?? 0);
  return { version: readU64(payload, 0), transport: { family, address, port } };
}

/** 32 lowercase hex characters (the admin API's and logs' form of a session id). */
export function sessionIdHex(id: Uint8Array): string {
  // Buffer's encoder returns one flat string; concatenating 16 pieces leaves V8 a rope of 16 nodes
  // (≈360 bytes kept per live session instead of ≈40).
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex');
}

/** Parses exactly 32 hex characters (either case) into 16 bytes; undefined if malformed or all zero. */
export function parseSessionIdHex(s: string): Uint8Array | undefined {
  if (!SESSION_ID_HEX_RE.test(s)) return undefined;
  const id = new Uint8Array(JV1_SESSION_ID_LEN);
  for (let i = 0; i < JV1_SESSION_ID_LEN; i++) id[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return isZero(id) ? undefined : id;
}

function checkSessionId(sessionId: Uint8Array): void {
  if (sessionId.length !== JV1_SESSION_ID_LEN) {
    throw new RangeError(`JV1 session id must be ${JV1_SESSION_ID_LEN} bytes, got ${sessionId.length}`);
  }
}

/** Writes the 20-byte header at `offset` of `out` (for building a packet in place). Throws on misuse. */
export function writeJv1Header(out: Uint8Array, offset: number, type: PacketType, sessionId: Uint8Array): void {
  checkSessionId(sessionId);
  if (offset < 0 || offset + JV1_HEADER_LEN > out.length) throw new RangeError('JV1 header does not fit');
  out[offset] = 0x4a;
  out[offset + 1] = 0x56;
  out[offset + 2] = JV1_VERSION;
  out[offset + 3] = type;
  out.set(sessionId, offset + 4);
}

/** A new packet: header + a copy of `payload`. */
export function encodeJv1(type: PacketType, sessionId: Uint8Array, payload?: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(JV1_HEADER_LEN + (payload?.length ?? 0));
  writeJv1Header(out, 0, type, sessionId);
  if (payload !== undefined) out.set(payload, JV1_HEADER_LEN);
  return out;
}

/** REVOKE(V): "you no longer own this session as of version V". */
export function encodeRevoke(sessionId: Uint8Array, version: bigint): Buffer {
  const out = Buffer.allocUnsafe(JV1_HEADER_LEN + REVOKE_PAYLOAD_LEN);
  writeRevoke(out, 0, sessionId, version);
  return out;
}

/** REVOKE(V) written into `out` at `offset` (28 bytes); returns the offset after it. */
export function writeRevoke(out: Buffer, offset: number, sessionId: Uint8Array, version: bigint): number {
  writeJv1Header(out, offset, PacketType.REVOKE, sessionId);
  return out.writeBigUInt64BE(version, offset + JV1_HEADER_LEN);
}

/**
 * BIND: the owner confirms `transport` after validating it against `version`. The family byte follows
 * the address text (an IPv4-mapped IPv6 address is sent as family 6). Throws if the address is not an
 * IP literal or the port is out of range.
 */
export function encodeBind(sessionId: Uint8Array, version: bigint, transport: Transport): Buffer {
  const addr = ipToBytes(transport.address);
  if (addr === undefined) throw new RangeError(`not an IP address: ${transport.address}`);
  const payloadLen = addr.length === 4 ? BIND4_PAYLOAD_LEN : BIND6_PAYLOAD_LEN;
  const out = Buffer.allocUnsafe(JV1_HEADER_LEN + payloadLen);
  writeJv1Header(out, 0, PacketType.BIND, sessionId);
  let at = out.writeBigUInt64BE(version, JV1_HEADER_LEN);
  out[at++] = addr.length === 4 ? 4 : 6;
  out.set(addr, at);
  out.writeUInt16BE(transport.port, at + addr.length);
  return out;
}

/**
 * REJECT(reason, text), never longer than `maxLen` bytes (DESIGN: a REJECT is never larger than the
 * packet that caused it): the text is cut on a UTF-8 character boundary to fit. Undefined when not even
 * header + reason (21 bytes) fits — such a packet gets silence.
 */
export function encodeReject(
  sessionId: Uint8Array,
  reason: RejectReason,
  text = '',
  maxLen = Infinity,
): Buffer | undefined {
  if (!(maxLen >= REJECT_MIN_LEN)) return undefined; // also catches NaN
  const textBytes = text === '' ? Buffer.alloc(0) : Buffer.from(text, 'utf8');
  let cut = Math.min(textBytes.length, Math.floor(maxLen) - REJECT_MIN_LEN);
  // Step back onto the first byte of a character: continuation bytes look like 0b10xxxxxx.
  while (cut > 0 && cut < textBytes.length && ((textBytes[cut] ?? 0) & 0xc0) === 0x80) cut--;
  const out = Buffer.allocUnsafe(REJECT_MIN_LEN + cut);
  writeJv1Header(out, 0, PacketType.REJECT, sessionId);
  out[JV1_HEADER_LEN] = reason;
  textBytes.copy(out, REJECT_MIN_LEN, 0, cut);
  return out;
}
