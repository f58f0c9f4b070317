// Session keys and the jump MAC shared by the reference node and the client simulator. Pure: no I/O, no
// clock, no state; deterministic HMAC-SHA256 only. It must never hold a key beyond one call.
//
// A real jumping VPN agrees a per-session key in its own handshake. The reference node stands in for
// that with a key derived from a secret every reference node shares (so any of them can validate a
// session that was moved to it) and hands the key to the client in its HELLO reply. That is a test
// harness's shortcut, not a key exchange: anyone who sees the HELLO reply sees the key.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { JV1_HEADER_LEN } from '../codec/jv1.js';

/** The secret reference nodes use when none is given. Public on purpose: for development and tests only. */
export const DEV_SECRET_TEXT = 'anchor-refnode-dev-secret/v1 (public, for tests only)';
/** Bytes of a session key and of a jump MAC. */
export const SESSION_KEY_LEN = 16;
export const JUMP_MAC_LEN = 16;

/** A new Buffer holding DEV_SECRET_TEXT (UTF-8): the default `ReferenceNodeOptions.secret`. */
export function devSecret(): Buffer {
  return Buffer.from(DEV_SECRET_TEXT, 'utf8');
}

/** The per-session key: the first 16 bytes of HMAC-SHA256(secret, sessionId). */
export function sessionKey(secret: Uint8Array, sessionId: Uint8Array): Buffer {
  return createHmac('sha256', secret).update(sessionId).digest().subarray(0, SESSION_KEY_LEN);
}

/** The jump MAC of a DATA packet: the first 16 bytes of HMAC-SHA256(key, header20 ‖ appPayload). */
export function jumpMac(key: Uint8Array, header20: Uint8Array, appPayload: Uint8Array): Buffer {
  return createHmac('sha256', key).update(header20).update(appPayload).digest().subarray(0, JUMP_MAC_LEN);
}

/**
 * Appends the MAC to a JV1 packet in place of building it twice: `packet` is header (20 bytes) ‖ app
 * bytes; the result is a new Buffer header ‖ app ‖ mac16.
 */
export function sealPacket(key: Uint8Array, packet: Uint8Array): Buffer {
  if (packet.length < JV1_HEADER_LEN) throw new RangeError('a JV1 packet has at least 20 bytes');
  const mac = jumpMac(key, packet.subarray(0, JV1_HEADER_LEN), packet.subarray(JV1_HEADER_LEN));
  return Buffer.concat([packet, mac]);
}

/**
 * Whether a JV1 packet (header ‖ app ‖ mac16) carries a valid MAC under `key`. False (never a throw)
 * for a packet too short to hold a header and a MAC. Compares in constant time.
 */
export function verifyPacket(key: Uint8Array, packet: Uint8Array): boolean {
  if (packet.length < JV1_HEADER_LEN + JUMP_MAC_LEN) return false;
  const macAt = packet.length - JUMP_MAC_LEN;
  const want = jumpMac(key, packet.subarray(0, JV1_HEADER_LEN), packet.subarray(JV1_HEADER_LEN, macAt));
  return timingSafeEqual(want, packet.subarray(macAt));
}
