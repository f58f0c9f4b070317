// OpenVPN codec (issue 5): classifies OpenVPN packets by opcode and reads the sender's 8-byte session id,
// over UDP (one packet per datagram) and over TCP (the first [u16 length][packet] of the stream). Pure:
// no I/O, no clock; never throws on wire bytes. It never looks past byte 8 of a packet: everything after
// the session id (HMAC, packet id, tls-crypt tag, ciphertext, WKc) is the node's business.
//
// Byte 0 is `opcode << 3 | key_id`. Control packets (every opcode but data) carry the sender's session id
// at bytes 1–8, in the clear with tls-auth, tls-crypt and tls-crypt-v2 alike. Data packets carry none.
import { CodecTag, normaliseId } from './codec.js';
import type { CodecReason, CodecVerdict, PreambleDecision } from './codec.js';

/** Opcodes (OpenVPN's ssl_pkt.h). */
export const OpenVpnOpcode = {
  HARD_RESET_CLIENT_V1: 1,
  HARD_RESET_SERVER_V1: 2,
  SOFT_RESET_V1: 3,
  CONTROL_V1: 4,
  ACK_V1: 5,
  DATA_V1: 6,
  HARD_RESET_CLIENT_V2: 7,
  HARD_RESET_SERVER_V2: 8,
  DATA_V2: 9,
  HARD_RESET_CLIENT_V3: 10,
  CONTROL_WKC_V1: 11,
} as const;
export type OpenVpnOpcode = (typeof OpenVpnOpcode)[keyof typeof OpenVpnOpcode];

export const OPENVPN_SESSION_ID_LEN = 8;
/** Opcode byte + session id: the least a control packet can be. */
export const OPENVPN_CONTROL_MIN_LEN = 1 + OPENVPN_SESSION_ID_LEN;
/** Over TCP: u16 length prefix + opcode byte + session id, the bytes needed to decide. */
export const OPENVPN_TCP_PREAMBLE_LEN = 2 + OPENVPN_CONTROL_MIN_LEN;
/** The default largest first packet over TCP (a tls-crypt-v2 reset with a 1024-byte WKc fits). */
export const OPENVPN_TCP_MAX_PACKET_DEFAULT = 1600;

/** Who sent the packet: the verdicts differ only for hard resets. */
export type OpenVpnSender = 'client' | 'server';

/** How an opcode is read; absent from the table = not OpenVPN (not-mine). */
type Role = 'open' | 'session' | 'data' | 'server-reset' | 'obsolete';
const ROLE: ReadonlyMap<number, Role> = new Map<number, Role>([
  [OpenVpnOpcode.HARD_RESET_CLIENT_V1, 'obsolete'],
  [OpenVpnOpcode.HARD_RESET_SERVER_V1, 'obsolete'],
  // A soft reset is a rekey inside the session, not a new session.
  [OpenVpnOpcode.SOFT_RESET_V1, 'session'],
  [OpenVpnOpcode.CONTROL_V1, 'session'],
  [OpenVpnOpcode.ACK_V1, 'session'],
  [OpenVpnOpcode.DATA_V1, 'data'],
  [OpenVpnOpcode.HARD_RESET_CLIENT_V2, 'open'],
  [OpenVpnOpcode.HARD_RESET_SERVER_V2, 'server-reset'],
  [OpenVpnOpcode.DATA_V2, 'data'],
  [OpenVpnOpcode.HARD_RESET_CLIENT_V3, 'open'],
  [OpenVpnOpcode.CONTROL_WKC_V1, 'session'],
]);

const NOT_MINE = Object.freeze({ kind: 'not-mine' } as const);
const PINNED = Object.freeze({ kind: 'pinned' } as const);
const FORBIDDEN = Object.freeze({ kind: 'forbidden' } as const);
const NEED = Object.freeze({ kind: 'need', need: OPENVPN_TCP_PREAMBLE_LEN } as const);
const TOO_LONG = Object.freeze({ kind: 'too-long' } as const);
const malformed = (reason: CodecReason) => Object.freeze({ kind: 'malformed', reason } as const);
// Literal strings (not CodecReason.*): see the import-cycle note in codec.ts.
const TRUNCATED = malformed('truncated');
const UNSUPPORTED = malformed('unsupported_opcode');
const ZERO_ID = malformed('zero_session_id');
const BAD_LENGTH = malformed('bad_length');

/**
 * The verdict on one OpenVPN packet. Empty or an unknown opcode (0, 12–31): not-mine (the listener is
 * OpenVPN's, so garbage is not mine). Opcodes 1/2: malformed unsupported_opcode. Data (6, 9, any key
 * id, any length): pinned. Control packets shorter than 9 bytes: malformed truncated; an all-zero
 * session id (OpenVPN's "undefined" id, which would merge every such client into one session):
 * malformed zero_session_id. Then from a client: 7/10 open, 3/4/5/11 session (never close: OpenVPN has
 * no clear-text close), 8 forbidden. From a server: 8 session, 7/10 forbidden — note a server's packets
 * carry the server's own session id, not the client's. Ids come back normalised (a new array).
 */
export function classifyOpenVpn(buf: Uint8Array, from: OpenVpnSender = 'client'): CodecVerdict {
  const b0 = buf[0];
  if (b0 === undefined) return NOT_MINE;
  const role = ROLE.get(b0 >>> 3);
  if (role === undefined) return NOT_MINE;
  if (role === 'obsolete') return UNSUPPORTED;
  if (role === 'data') return PINNED;
  if (buf.length < OPENVPN_CONTROL_MIN_LEN) return TRUNCATED;
  let zero = true;
  for (let i = 1; i < OPENVPN_CONTROL_MIN_LEN; i++) {
    if (buf[i] !== 0) {
      zero = false;
      break;
    }
  }
  if (zero) return ZERO_ID;
  const clientReset = role === 'open';
  const serverReset = role === 'server-reset';
  if ((from === 'client' && serverReset) || (from === 'server' && clientReset)) return FORBIDDEN;
  const sessionId = normaliseId(CodecTag.openvpn, buf.subarray(1, OPENVPN_CONTROL_MIN_LEN));
  return clientReset ? { kind: 'open', sessionId } : { kind: 'session', sessionId, close: false };
}

/**
 * The first packet of an OpenVPN-over-TCP stream ([u16 length][packet]…), from a client, decided as soon
 * as the bytes allow: at 3 bytes an unknown opcode → not-mine, opcode 1/2 → malformed
 * unsupported_opcode, a length < 9 or > `maxPacketLength` → malformed bad_length (the opcode is checked
 * first so non-OpenVPN bytes are not-mine); at 11 bytes the verdict of classifyOpenVpn on the packet's
 * first 9 bytes (open, session, pinned or forbidden; zero id → malformed), headerLength 11. Until then
 * 'need' 11, or 'too-long' once more than `maxBytes` bytes are buffered undecided. The session id is a
 * copy (stream buffers are reused).
 */
export function decodeOpenVpnPreamble(
  buf: Uint8Array,
  maxBytes: number,
  maxPacketLength: number = OPENVPN_TCP_MAX_PACKET_DEFAULT,
): PreambleDecision {
  const n = buf.length;
  const b2 = buf[2];
  if (b2 !== undefined) {
    const role = ROLE.get(b2 >>> 3);
    if (role === undefined) return NOT_MINE;
    if (role === 'obsolete') return UNSUPPORTED;
    const len = ((buf[0] ?? 0) << 8) | (buf[1] ?? 0);
    if (len < OPENVPN_CONTROL_MIN_LEN || len > maxPacketLength) return BAD_LENGTH;
  }
  if (n < OPENVPN_TCP_PREAMBLE_LEN) return n > maxBytes ? TOO_LONG : NEED;
  const verdict = classifyOpenVpn(buf.subarray(2, OPENVPN_TCP_PREAMBLE_LEN), 'client');
  if (verdict.kind === 'malformed' || verdict.kind === 'not-mine') return verdict;
  return { kind: 'ok', verdict, headerLength: OPENVPN_TCP_PREAMBLE_LEN };
}
