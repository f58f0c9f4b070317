// Offset codec (issue 5): for protocols whose session id sits at a fixed position, the id is `length`
// bytes at `offset` of each datagram (or of a TCP stream's first bytes). Pure: no I/O, no clock; never
// throws on wire bytes (checkOffsetSpec throws on a bad spec, which is misuse).
//
// Such protocols have no distinct hello, so every packet is 'open' (it may create a session): the
// per-source admission rate limit and the session table cap are what bound session creation. There is
// no close signal either: sessions end by idle TTL (or terminate).
import { CodecTag, normaliseId } from './codec.js';
import type { CodecVerdict, PreambleDecision } from './codec.js';

export interface OffsetSpec {
  /** Byte position of the id, ≥ 0. */
  readonly offset: number;
  /** Id length in bytes, 1–13 (what fits a normalised id). */
  readonly length: number;
}

/** Largest id the offset codec reads (= MAX_CODEC_ID_LEN; a literal because of the import cycle). */
export const OFFSET_MAX_LENGTH = 13;

// Literal strings (not CodecReason.*): see the import-cycle note in codec.ts.
const TRUNCATED = Object.freeze({ kind: 'malformed', reason: 'truncated' } as const);
const ZERO_ID = Object.freeze({ kind: 'malformed', reason: 'zero_session_id' } as const);
const TOO_LONG = Object.freeze({ kind: 'too-long' } as const);

/** Throws RangeError unless offset is an integer ≥ 0 and length an integer 1–13. */
export function checkOffsetSpec(spec: OffsetSpec): void {
  const { offset, length } = spec;
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new RangeError(`offset codec: offset must be an integer ≥ 0, got ${offset}`);
  }
  if (!Number.isInteger(length) || length < 1 || length > OFFSET_MAX_LENGTH) {
    throw new RangeError(`offset codec: length must be an integer 1–${OFFSET_MAX_LENGTH}, got ${length}`);
  }
}

/** The id bytes as a verdict: all zero → malformed, else open with the normalised id (a new array). */
function idVerdict(buf: Uint8Array, spec: OffsetSpec): CodecVerdict {
  const end = spec.offset + spec.length;
  let zero = true;
  for (let i = spec.offset; i < end; i++) {
    if (buf[i] !== 0) {
      zero = false;
      break;
    }
  }
  if (zero) return ZERO_ID;
  return { kind: 'open', sessionId: normaliseId(CodecTag.offset, buf.subarray(spec.offset, end)) };
}

/**
 * One datagram: shorter than offset + length → malformed truncated (there is no magic, so nothing is
 * "not mine"); an all-zero id → malformed zero_session_id; else open. `spec` must have passed
 * checkOffsetSpec.
 */
export function classifyOffset(buf: Uint8Array, spec: OffsetSpec): CodecVerdict {
  if (buf.length < spec.offset + spec.length) return TRUNCATED;
  return idVerdict(buf, spec);
}

/**
 * A stream's first bytes: 'need' offset + length in total (or 'too-long' once more than `maxBytes` are
 * buffered undecided — a listener's preamble budget must cover offset + length); then the verdict as for
 * a datagram, headerLength = offset + length. The id is a copy.
 */
export function decodeOffsetPreamble(buf: Uint8Array, maxBytes: number, spec: OffsetSpec): PreambleDecision {
  const need = spec.offset + spec.length;
  if (buf.length < need) return buf.length > maxBytes ? TOO_LONG : { kind: 'need', need };
  const verdict = idVerdict(buf, spec);
  if (verdict.kind === 'malformed') return verdict;
  return { kind: 'ok', verdict, headerLength: need };
}
