// Verifies an audit log's hash chain (`anchor audit verify`): every line is a JSON object in the form
// the writer (audit.ts) produces, seq runs 1, 2, 3…, and each `prev` is the SHA-256 of the line before.
// Pure except verifyAuditFile (which only reads the file). Reports the FIRST break; never repairs.
//
// What a hash chain alone cannot see: a change inside the LAST line (nothing hashes it yet) and whole
// lines cut from the end. Pass `head` — the SHA-256 of the last line, as the writer knew it — to cover both.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { GENESIS } from './audit.js';

export type AuditVerifyResult =
  /** `head` is the SHA-256 of the last line (GENESIS when there is none): what a writer chains from next. */
  | { ok: true; lines: number; head: string }
  | { ok: false; lines: number; line: number; problem: string };

export interface AuditVerifyOptions {
  /** The expected SHA-256 (hex) of the last line, e.g. recorded by the writer elsewhere. */
  readonly head?: string;
}

const HEX64 = /^[0-9a-f]{64}$/;

type FieldCheck = (v: unknown) => boolean;
const str: FieldCheck = (v) => typeof v === 'string';
const strOrNull: FieldCheck = (v) => v === null || typeof v === 'string';

/** The fields every line carries, in the order they are checked, with what each must hold. */
const FIELDS: ReadonlyArray<readonly [name: string, check: FieldCheck, want: string]> = [
  ['time', str, 'a string'],
  ['seq', (v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1, 'a positive integer'],
  ['session', strOrNull, 'a string or null'],
  ['event', str, 'a string'],
  ['cause', str, 'a string'],
  ['from_version', strOrNull, 'a string or null'],
  ['to_version', strOrNull, 'a string or null'],
  ['from_owner', strOrNull, 'a string or null'],
  ['to_owner', strOrNull, 'a string or null'],
  ['actor', str, 'a string'],
  ['prev', (v) => typeof v === 'string' && HEX64.test(v), '64 lowercase hex characters'],
];

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Why `value` (the parse of one line) is not an audit line, or null when its shape is right. */
function shapeProblem(value: unknown): string | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'is not a JSON object';
  const o = value as Record<string, unknown>;
  for (const [name, check, want] of FIELDS) {
    if (!Object.hasOwn(o, name)) return `has no "${name}" field`;
    if (!check(o[name])) return `field "${name}" must be ${want}, got ${JSON.stringify(o[name])}`;
  }
  const d = o['detail'];
  if (d !== undefined && (d === null || typeof d !== 'object' || Array.isArray(d))) return 'field "detail" must be a JSON object when present';
  return null;
}

/** Verifies the chain in `text` (the whole file). A trailing newline is expected but not required. */
export function verifyAuditChain(text: string, opts: AuditVerifyOptions = {}): AuditVerifyResult {
  if (text.length === 0) return finish(0, GENESIS, opts.head);
  const complete = text.endsWith('\n');
  const lines = (complete ? text.slice(0, -1) : text).split('\n');
  const n = lines.length;
  const fail = (line: number, problem: string): AuditVerifyResult => ({ ok: false, lines: n, line, problem: `line ${line}: ${problem}` });

  let prevHash = GENESIS;
  for (let i = 0; i < n; i++) {
    const no = i + 1;
    const lineText = lines[i] as string;
    let value: unknown;
    try {
      value = JSON.parse(lineText);
    } catch (err) {
      if (no === n && !complete) {
        return fail(no, 'the last line is cut short (no trailing newline and not valid JSON): a write was interrupted, e.g. by a crash');
      }
      if (lineText.length === 0) return fail(no, 'is empty');
      return fail(no, `is not valid JSON (${(err as Error).message})`);
    }
    const shape = shapeProblem(value);
    if (shape !== null) return fail(no, shape);
    // The writer emits JSON.stringify's output, a fixed point of parse∘stringify: anything else
    // (padding, re-escaped characters) was not written by it.
    if (JSON.stringify(value) !== lineText) {
      return fail(no, 'is not byte-for-byte what the writer produces (extra whitespace or re-encoded characters)');
    }
    const line = value as { seq: number; prev: string };
    if (line.prev !== prevHash) {
      return fail(
        no,
        no === 1
          ? 'prev is not GENESIS (64 zeros) although this is the first line (lines were removed from the start, or this is not the start of a log)'
          : `prev does not match the SHA-256 of line ${no - 1} (the chain is broken: a line was changed, removed or inserted)`,
      );
    }
    if (line.seq !== no) {
      return fail(no, `seq is ${line.seq}, expected ${no} (seq must run 1, 2, 3…: a line was removed, inserted or moved)`);
    }
    prevHash = sha256(lineText);
  }
  return finish(n, prevHash, opts.head);
}

function finish(n: number, head: string, expected: string | undefined): AuditVerifyResult {
  if (expected !== undefined && expected !== head) {
    return {
      ok: false,
      lines: n,
      line: n,
      problem:
        n === 0
          ? 'the log is empty but a head was expected (the log was emptied or replaced)'
          : `line ${n}: its SHA-256 is not the expected head (the last line was changed, or lines were cut from the end)`,
    };
  }
  return { ok: true, lines: n, head };
}

/** Verifies raw bytes: invalid UTF-8 (which the writer never emits) is reported at its line. */
export function verifyAuditBytes(bytes: Uint8Array, opts: AuditVerifyOptions = {}): AuditVerifyResult {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return utf8Problem(bytes);
  }
  return verifyAuditChain(text, opts);
}

/** Finds the line of the first invalid UTF-8 sequence (called only when there is one). */
function utf8Problem(bytes: Uint8Array): AuditVerifyResult {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let start = 0;
  let line = 1;
  const total = countLines(bytes);
  while (start <= bytes.length) {
    let end = bytes.indexOf(0x0a, start);
    if (end === -1) end = bytes.length;
    try {
      decoder.decode(bytes.subarray(start, end));
    } catch {
      return { ok: false, lines: total, line, problem: `line ${line}: is not valid UTF-8` };
    }
    start = end + 1;
    line += 1;
  }
  return { ok: false, lines: total, line: total, problem: `line ${total}: is not valid UTF-8` };
}

function countLines(bytes: Uint8Array): number {
  if (bytes.length === 0) return 0;
  let n = 0;
  for (const b of bytes) if (b === 0x0a) n += 1;
  return bytes[bytes.length - 1] === 0x0a ? n : n + 1;
}

/** Reads and verifies the audit file at `path`. Throws only if the file cannot be read. */
export async function verifyAuditFile(path: string, opts: AuditVerifyOptions = {}): Promise<AuditVerifyResult> {
  return verifyAuditBytes(await readFile(path), opts);
}
