// Stream preambles (DESIGN §2 "Over TCP the same header opens the stream"): an incremental decoder for the
// JV1 header that opens a TCP stream. Pure: no I/O, no clock; never throws on wire bytes. It decides as
// soon as the bytes present allow, so a stream fed in any split reaches the same decision at the same byte.
import { isPacketType, JV1_HEADER_LEN, JV1_VERSION } from './jv1.js';
import { MalformedReason, type PacketType } from './types.js';

export type PreambleResult =
  /** Undecided: the buffer must grow to `need` bytes in total (not `need` more) before deciding. */
  | { readonly kind: 'need'; readonly need: number }
  | {
      readonly kind: 'ok';
      readonly type: PacketType;
      /** A copy (16 bytes): stream buffers are reused and concatenated, so no view is handed out. */
      readonly sessionId: Uint8Array;
      /** The opaque stream starts here. */
      readonly headerLength: typeof JV1_HEADER_LEN;
    }
  | { readonly kind: 'not-mine' }
  | { readonly kind: 'malformed'; readonly reason: MalformedReason }
  /** Still undecided past `maxBytes`: the caller stops buffering (a peer must not make it hold more). */
  | { readonly kind: 'too-long' };

const NOT_MINE: PreambleResult = Object.freeze({ kind: 'not-mine' });
const TOO_LONG: PreambleResult = Object.freeze({ kind: 'too-long' });
const NEED_HEADER: PreambleResult = Object.freeze({ kind: 'need', need: JV1_HEADER_LEN });
const MALFORMED: Readonly<Record<MalformedReason, PreambleResult>> = Object.freeze(
  Object.fromEntries(
    Object.values(MalformedReason).map((reason) => [reason, Object.freeze({ kind: 'malformed', reason })]),
  ) as Record<MalformedReason, PreambleResult>,
);


/**
 * Decides what the bytes received so far at the start of a stream say about its JV1 header, checking
 * each field as soon as its byte is present: a byte 0 or 1 other than "JV" → not-mine (at 1 or 2 bytes);
 * byte 2 ≠ 1 → malformed bad_version (at 3); byte 3 not a JV1 type → malformed bad_type (at 4); an
 * all-zero session id → malformed zero_session_id (only decidable at 20). Until then 'need' (total 20),
 * or 'too-long' when `buf.length > maxBytes` and still undecided (impossible for maxBytes ≥ 20; kept so
 * every preamble codec has the same contract). Which types a stream may open with is the caller's policy.
 */
export function decodeJv1Preamble(buf: Uint8Array, maxBytes: number): PreambleResult {
  const n = buf.length;
  if (n >= 1 && buf[0] !== 0x4a) return NOT_MINE;
  if (n >= 2 && buf[1] !== 0x56) return NOT_MINE;
  if (n >= 3 && buf[2] !== JV1_VERSION) return MALFORMED[MalformedReason.BAD_VERSION];
  const type = buf[3];
  if (type !== undefined && !isPacketType(type)) return MALFORMED[MalformedReason.BAD_TYPE];
  if (n < JV1_HEADER_LEN) return n > maxBytes ? TOO_LONG : NEED_HEADER;
  let zero = true;
  for (let i = 4; i < JV1_HEADER_LEN; i++) {
    if (buf[i] !== 0) {
      zero = false;
      break;
    }
  }
  if (zero) return MALFORMED[MalformedReason.ZERO_SESSION_ID];
  // isPacketType narrowed `type` only inside the check; n ≥ 20 here, so it is defined and valid.
  // new Uint8Array(view) copies (Buffer#slice would not).
  const sessionId = new Uint8Array(buf.subarray(4, JV1_HEADER_LEN));
  return { kind: 'ok', type: type as PacketType, sessionId, headerLength: JV1_HEADER_LEN };
}
