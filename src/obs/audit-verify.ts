// Verifies an audit log's hash chain (`anchor audit verify`): every line is a JSON object in the form
// the writer (audit.ts) produces, seq runs 1, 2, 3…, and each `prev` is the SHA-256 of the line before.
// Pure except verifyAuditFile (which only reads the file). Reports the FIRST break; never repairs.
//
// What a hash chain alone cannot see: a change inside the LAST line (nothing hashes it yet) and whole
// lines cut from the end. Pass `head` — the SHA-256 of the last line, as the writer knew it — to cover both;
// or `checkpoints` — lines recorded earlier as (seq, SHA-256), e.g. from the director's GET /v1/audit/head —
// to prove that nothing up to each was cut or changed since, while the log goes on growing.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { GENESIS } from './audit.js';

export type AuditVerifyResult =
  /**
   * `head` is the SHA-256 of the last line (the start's hash when there is none): what a writer chains
   * from next; `seq` the last line's seq (the start's seq − 1 when there is none); `start` where the
   * chain began: GENESIS and seq 1 for the start of a log.
   */
  | { ok: true; lines: number; head: string; seq: number; start: { prev: string; seq: number } }
  | { ok: false; lines: number; line: number; problem: string };

/** Where a chain starts: the hash its first line carries as `prev`, and that line's seq. */
export interface ChainStart {
  readonly prev: string;
  readonly seq: number;
}

export interface AuditVerifyOptions {
  /** The expected SHA-256 (hex) of the last line, e.g. recorded by the writer elsewhere. */
  readonly head?: string;
  /**
   * Lines recorded earlier, seq → the SHA-256 the writer gave that line (GET /v1/audit/head): each line of
   * the chain with one of these seqs must have that hash. (verifyAuditFiles also fails a checkpoint that no
   * line given has: past the end, lines were cut; before the first, its file was not given.)
   */
  readonly checkpoints?: ReadonlyMap<number, string>;
  /**
   * Where the chain starts: the start of a log (GENESIS, seq 1; the default); `{prev, seq}` for a file
   * that goes on from an earlier one (after a rotation: the earlier file's head and last seq + 1; without
   * `seq`, the first line's), or `'any'`: whatever the first line says (a file whose predecessors are
   * gone), reported as `start`.
   */
  readonly start?: ChainStart | { readonly prev: string } | 'any';
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
  const given = opts.start ?? { prev: GENESIS, seq: 1 };
  // What the start leaves open (its prev for 'any', its seq for 'any' or a start without one) is the first line's.
  const givenPrev: string | undefined = given === 'any' ? undefined : given.prev;
  const givenSeq: number | undefined = given === 'any' ? undefined : (given as Partial<ChainStart>).seq;
  if (text.length === 0) return finish(0, { prev: givenPrev ?? GENESIS, seq: givenSeq ?? 1 }, opts.head);
  const complete = text.endsWith('\n');
  const lines = (complete ? text.slice(0, -1) : text).split('\n');
  const n = lines.length;
  const fail = (line: number, problem: string): AuditVerifyResult => ({ ok: false, lines: n, line, problem: `line ${line}: ${problem}` });
  const fromStart = givenPrev === GENESIS && givenSeq === 1;

  let prevHash = givenPrev ?? '';
  let seq = givenSeq ?? 0;
  let start: ChainStart = { prev: prevHash, seq };
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
    if (no === 1) {
      prevHash = givenPrev ?? line.prev;
      seq = givenSeq ?? line.seq;
      start = { prev: prevHash, seq };
    }
    if (line.prev !== prevHash) {
      return fail(
        no,
        no > 1
          ? `prev does not match the SHA-256 of line ${no - 1} (the chain is broken: a line was changed, removed or inserted)`
          : fromStart
            ? 'prev is not GENESIS (64 zeros) although this is the first line (lines were removed from the start, or this is not the start of a log: a rotated file is checked after the one before it, or with --continued)'
            : `prev is not the SHA-256 of the last line before this file (${prevHash}): lines were lost between the files, or they are not consecutive`,
      );
    }
    if (line.seq !== seq) {
      return fail(no, `seq is ${line.seq}, expected ${seq} (seq must run on by one: a line was removed, inserted or moved)`);
    }
    prevHash = sha256(lineText);
    const recorded = opts.checkpoints?.get(seq);
    if (recorded !== undefined && recorded !== prevHash) {
      return fail(no, `its SHA-256 is ${prevHash}, not ${recorded} as the checkpoint of seq ${seq} recorded: this line was changed, or the log replaced, since the checkpoint`);
    }
    seq += 1;
  }
  return finish(n, start, opts.head, prevHash, seq - 1);
}

function finish(n: number, start: ChainStart, expected: string | undefined, head = start.prev, seq = start.seq - 1): AuditVerifyResult {
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
  return { ok: true, lines: n, head, seq, start };
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

/**
 * Verifies files that are one chain in the order given (rotated files, oldest first): each goes on
 * from where the one before ended. `start` applies to the first file, `head` to the last. The first
 * failure is reported with its file; throws (naming the file) only if a file cannot be read.
 */
export async function verifyAuditFiles(
  paths: readonly string[],
  opts: AuditVerifyOptions = {},
): Promise<{ ok: true; files: number; result: Extract<AuditVerifyResult, { ok: true }> } | { ok: false; file: string; result: Extract<AuditVerifyResult, { ok: false }> }> {
  let start = opts.start;
  if (paths.length === 0) throw new RangeError('no audit file to verify');
  let first: ChainStart | null = null;
  let lines = 0;
  let result: Extract<AuditVerifyResult, { ok: true }> | undefined;
  const checkpoints = opts.checkpoints !== undefined && opts.checkpoints.size > 0 ? { checkpoints: opts.checkpoints } : {};
  for (const [i, path] of paths.entries()) {
    const r = await verifyAuditFile(path, { ...(start !== undefined ? { start } : {}), ...checkpoints, ...(i === paths.length - 1 && opts.head !== undefined ? { head: opts.head } : {}) }).catch((err: unknown) => {
      throw new Error(`cannot read ${path}: ${(err as Error).message}`);
    });
    if (!r.ok) return { ok: false, file: path, result: r };
    first ??= r.start;
    lines += r.lines;
    result = { ...r, lines, start: first };
    start = { prev: r.head, seq: r.seq + 1 };
  }
  const done = result as Extract<AuditVerifyResult, { ok: true }>;
  const missing = checkpointOutside(opts.checkpoints, done.start.seq, done.seq);
  if (missing !== null) {
    return { ok: false, file: paths[missing.after ? paths.length - 1 : 0] as string, result: { ok: false, lines: done.lines, line: missing.after ? done.lines : 1, problem: missing.problem } };
  }
  return { ok: true, files: paths.length, result: done };
}

/**
 * The first checkpoint (in seq order) that lines `firstSeq`..`lastSeq` do not hold, and why; null when
 * they hold every one. Pure.
 */
export function checkpointOutside(checkpoints: ReadonlyMap<number, string> | undefined, firstSeq: number, lastSeq: number): { after: boolean; problem: string } | null {
  if (checkpoints === undefined) return null;
  for (const seq of [...checkpoints.keys()].sort((a, b) => a - b)) {
    if (seq < firstSeq) {
      return { after: false, problem: `the checkpoint of seq ${seq} is before the first line given (seq ${firstSeq}): give the rotated file that holds it too (oldest first), or leave that checkpoint out` };
    }
    if (seq > lastSeq) {
      return { after: true, problem: `the checkpoint of seq ${seq} is past the last line (seq ${lastSeq}): lines were cut from the end since it was recorded (or a newer file was not given)` };
    }
  }
  return null;
}
