// Verifies an audit log's hash chain (`anchor audit verify`): every line is a JSON object in the form
// the writer (audit.ts) produces, seq runs 1, 2, 3…, and each `prev` is the SHA-256 of the line before.
// Pure except verifyAuditFile (which only reads the file). Reports the FIRST break; never repairs.
// A file is read in chunks and checked line by line: memory holds one line (at most maxLineBytes), never
// the file, so a log of any size verifies.
//
// What a hash chain alone cannot see: a change inside the LAST line (nothing hashes it yet) and whole
// lines cut from the end. Pass `head` — the SHA-256 of the last line, as the writer knew it — to cover both;
// or `checkpoints` — lines recorded earlier as (seq, SHA-256), e.g. from the director's GET /v1/audit/head —
// to prove that nothing up to each was cut or changed since, while the log goes on growing.
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
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

/** How a file is read (verifyAuditFile, verifyAuditFiles; the line cap also applies to verifyAuditBytes). */
export interface AuditReadOptions {
  /** Bytes read from the file at a time (default READ_CHUNK_BYTES). */
  readonly chunkBytes?: number;
  /**
   * The longest line checked, in bytes without its newline (default MAX_LINE_BYTES): a longer line fails
   * (`longer than … bytes`) without being held in memory.
   */
  readonly maxLineBytes?: number;
}

export const READ_CHUNK_BYTES = 1024 * 1024;
/** Far above any line the writer produces (a line is a few hundred bytes; its detail a few fields). */
export const MAX_LINE_BYTES = 16 * 1024 * 1024;

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

function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** How much of a value a message shows (UTF-16 units), before "…". */
const SHOWN = 80;

/** `s`, cut to its first SHOWN units and "…" when longer (never inside a surrogate pair). */
function clip(s: string): string {
  if (s.length <= SHOWN) return s;
  const c = s.charCodeAt(SHOWN - 1);
  return `${s.slice(0, c >= 0xd800 && c <= 0xdbff ? SHOWN - 1 : SHOWN)}…`;
}

/** `v` as JSON, for a message: clipped; described when it has no JSON text (nested too deeply for stringify). */
function shown(v: unknown): string {
  try {
    return clip(JSON.stringify(v));
  } catch {
    return typeof v === 'string' ? 'a string' : Array.isArray(v) ? 'an array' : 'an object';
  }
}

/** Why `value` (the parse of one line) is not an audit line, or null when its shape is right. */
function shapeProblem(value: unknown): string | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'is not a JSON object';
  const o = value as Record<string, unknown>;
  for (const [name, check, want] of FIELDS) {
    if (!Object.hasOwn(o, name)) return `has no "${name}" field`;
    if (!check(o[name])) return `field "${name}" must be ${want}, got ${shown(o[name])}`;
  }
  const d = o['detail'];
  if (d !== undefined && (d === null || typeof d !== 'object' || Array.isArray(d))) return 'field "detail" must be a JSON object when present';
  return null;
}

/**
 * The chain, checked one line at a time (pure): what verifyAuditChain (a whole text) and ByteCheck (bytes
 * in chunks) share. Lines go to `next` in order until one has a problem.
 */
class ChainCheck {
  readonly #opts: AuditVerifyOptions;
  readonly #givenPrev: string | undefined;
  readonly #givenSeq: number | undefined;
  readonly #fromStart: boolean;
  #prevHash: string;
  #seq: number;
  #start: ChainStart;
  /** Lines given to `next` so far. */
  #lines = 0;

  constructor(opts: AuditVerifyOptions) {
    this.#opts = opts;
    const given = opts.start ?? { prev: GENESIS, seq: 1 };
    // What the start leaves open (its prev for 'any', its seq for 'any' or a start without one) is the first line's.
    this.#givenPrev = given === 'any' ? undefined : given.prev;
    this.#givenSeq = given === 'any' ? undefined : (given as Partial<ChainStart>).seq;
    this.#fromStart = this.#givenPrev === GENESIS && this.#givenSeq === 1;
    this.#prevHash = this.#givenPrev ?? '';
    this.#seq = this.#givenSeq ?? 0;
    this.#start = { prev: this.#prevHash, seq: this.#seq };
  }

  /**
   * Checks the next line: `text` is its text, `raw` what its SHA-256 is taken of (its bytes, or `text`),
   * `cut` says it is the last line and no newline ends it. Its problem (after "line N: "), or null. Never
   * throws: whatever fails while checking the line (stringify of a value nested too deeply overflows the
   * stack) is that line's problem.
   */
  next(text: string, raw: string | Uint8Array, cut: boolean): string | null {
    this.#lines += 1;
    try {
      return this.#check(this.#lines, text, raw, cut);
    } catch (err) {
      return `cannot be checked (${clip(err instanceof Error ? err.message : String(err))})`;
    }
  }

  #check(no: number, lineText: string, raw: string | Uint8Array, cut: boolean): string | null {
    let value: unknown;
    try {
      value = JSON.parse(lineText);
    } catch (err) {
      if (cut) {
        // What a director sets aside at start (`.broken-…`): the lines before it are said as verified, with
        // their head, so that they can be held to a checkpoint or a recorded head.
        const before = no > 1 ? `; the ${no === 2 ? 'line' : `${no - 1} lines`} before it verif${no === 2 ? 'ies' : 'y'} (seq ${this.#seq - 1}, head ${this.#prevHash})` : '';
        return `the last line is cut short (no trailing newline and not valid JSON): a write was interrupted, e.g. by a crash${before}`;
      }
      if (lineText.length === 0) return 'is empty';
      return `is not valid JSON (${clip((err as Error).message)})`;
    }
    const shape = shapeProblem(value);
    if (shape !== null) return shape;
    // The writer emits JSON.stringify's output, a fixed point of parse∘stringify: anything else
    // (padding, re-escaped characters) was not written by it.
    if (JSON.stringify(value) !== lineText) return 'is not byte-for-byte what the writer produces (extra whitespace or re-encoded characters)';
    const line = value as { seq: number; prev: string };
    if (no === 1) {
      this.#prevHash = this.#givenPrev ?? line.prev;
      this.#seq = this.#givenSeq ?? line.seq;
      this.#start = { prev: this.#prevHash, seq: this.#seq };
    }
    if (line.prev !== this.#prevHash) {
      return no > 1
        ? `prev does not match the SHA-256 of line ${no - 1} (the chain is broken: a line was changed, removed or inserted)`
        : this.#fromStart
          ? 'prev is not GENESIS (64 zeros) although this is the first line (lines were removed from the start, or this is not the start of a log: a rotated file is checked after the one before it, or with --continued)'
          : `prev is not the SHA-256 of the last line before this file (${this.#prevHash}): lines were lost between the files, or they are not consecutive`;
    }
    if (line.seq !== this.#seq) return `seq is ${line.seq}, expected ${this.#seq} (seq must run on by one: a line was removed, inserted or moved)`;
    this.#prevHash = sha256(raw);
    const recorded = this.#opts.checkpoints?.get(this.#seq);
    if (recorded !== undefined && recorded !== this.#prevHash) {
      return `its SHA-256 is ${this.#prevHash}, not ${recorded} as the checkpoint of seq ${this.#seq} recorded: this line was changed, or the log replaced, since the checkpoint`;
    }
    this.#seq += 1;
    return null;
  }

  /** The result once every line passed `next` (`lines` of them). */
  done(lines: number): AuditVerifyResult {
    if (this.#lines === 0) return finish(lines, { prev: this.#givenPrev ?? GENESIS, seq: this.#givenSeq ?? 1 }, this.#opts.head);
    return finish(lines, this.#start, this.#opts.head, this.#prevHash, this.#seq - 1);
  }
}

/** Verifies the chain in `text` (the whole file). A trailing newline is expected but not required. */
export function verifyAuditChain(text: string, opts: AuditVerifyOptions = {}): AuditVerifyResult {
  const check = new ChainCheck(opts);
  if (text.length === 0) return check.done(0);
  const complete = text.endsWith('\n');
  const lines = (complete ? text.slice(0, -1) : text).split('\n');
  const n = lines.length;
  for (let i = 0; i < n; i++) {
    const lineText = lines[i] as string;
    const problem = check.next(lineText, lineText, i === n - 1 && !complete);
    if (problem !== null) return { ok: false, lines: n, line: i + 1, problem: `line ${i + 1}: ${problem}` };
  }
  return check.done(n);
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

/**
 * The chain check over bytes given in chunks (`push`, then `end`), as a file is read: splits at 0x0a,
 * decodes each line with a strict UTF-8 decoder, hashes its bytes. Holds at most one line, and of it at
 * most `max` bytes: a longer line is only decoded piece by piece (for the UTF-8 check) and fails. Chunks
 * are used before `push` returns (what must outlive it is copied): the caller may reuse its buffer.
 *
 * Invalid UTF-8 (which the writer never emits) is reported before any other problem, wherever it is, as
 * when the whole file was decoded at once: after the first other problem the rest is still decoded (not
 * checked), and after invalid UTF-8 only counted (`lines` is always the whole file's).
 */
class ByteCheck {
  readonly #check: ChainCheck;
  readonly #max: number;
  /** Decodes a whole line. */
  readonly #decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  /** Decodes a line piece by piece (one too long to hold, or any line after a problem). */
  readonly #stream = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  /** Lines ended so far. */
  #lines = 0;
  /**
   * The current line's bytes so far, while they are at most `max` and it is checked: copied into #held
   * (which grows up to `max`, kept from line to line), except a whole line inside one chunk (#direct, not
   * copied: used before `push` returns).
   */
  #held: Buffer = Buffer.alloc(0);
  #heldLength = 0;
  #direct: Uint8Array | null = null;
  /** How many bytes the current line has so far. */
  #length = 0;
  /** The current line goes to #stream, not to #pieces. */
  #streaming = false;
  #problem: { line: number; text: string } | null = null;
  /** The line of the first invalid UTF-8. */
  #badUtf8: number | null = null;

  constructor(opts: AuditVerifyOptions, max: number) {
    this.#check = new ChainCheck(opts);
    this.#max = max;
  }

  push(chunk: Uint8Array): void {
    let at = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, at);
      if (nl === -1) {
        if (at < chunk.length) this.#piece(chunk.subarray(at), true);
        return;
      }
      if (nl > at) this.#piece(chunk.subarray(at, nl), false);
      this.#endLine(false);
      at = nl + 1;
    }
  }

  end(): AuditVerifyResult {
    if (this.#length > 0) this.#endLine(true); // a last line with no newline after it
    const n = this.#lines;
    if (this.#badUtf8 !== null) return { ok: false, lines: n, line: this.#badUtf8, problem: `line ${this.#badUtf8}: is not valid UTF-8` };
    if (this.#problem !== null) return { ok: false, lines: n, line: this.#problem.line, problem: `line ${this.#problem.line}: ${this.#problem.text}` };
    return this.#check.done(n);
  }

  /** The next bytes of the current line (not empty); `keep`: they must be copied to be held. */
  #piece(bytes: Uint8Array, keep: boolean): void {
    this.#length += bytes.length;
    if (this.#badUtf8 !== null) return;
    if (!this.#streaming && (this.#problem !== null || this.#length > this.#max)) {
      this.#streaming = true;
      this.#decodePiece(this.#held.subarray(0, this.#heldLength));
      this.#heldLength = 0;
    }
    if (this.#streaming) this.#decodePiece(bytes);
    else if (!keep && this.#heldLength === 0) this.#direct = bytes;
    else this.#hold(bytes);
  }

  #hold(bytes: Uint8Array): void {
    const need = this.#heldLength + bytes.length; // at most #max
    if (need > this.#held.length) {
      const grown = Buffer.allocUnsafe(Math.min(this.#max, Math.max(need, 2 * this.#held.length, 64 * 1024)));
      this.#held.copy(grown, 0, 0, this.#heldLength);
      this.#held = grown;
    }
    this.#held.set(bytes, this.#heldLength);
    this.#heldLength = need;
  }

  #decodePiece(bytes: Uint8Array): void {
    if (this.#badUtf8 !== null) return;
    try {
      this.#stream.decode(bytes, { stream: true });
    } catch {
      this.#badUtf8 = this.#lines + 1;
    }
  }

  #endLine(cut: boolean): void {
    const no = ++this.#lines;
    const streaming = this.#streaming;
    const bytes = this.#direct ?? this.#held.subarray(0, this.#heldLength);
    this.#direct = null;
    this.#heldLength = 0;
    this.#length = 0;
    this.#streaming = false;
    if (this.#badUtf8 !== null) return;
    if (streaming) {
      try {
        this.#stream.decode(); // the end of the line: a sequence cut at it is invalid
      } catch {
        this.#badUtf8 = no;
        return;
      }
      this.#problem ??= { line: no, text: `longer than ${this.#max} bytes (far longer than any line the writer produces): not checked` };
      return;
    }
    if (this.#problem !== null) {
      // An empty line (nothing streamed) after the problem: valid UTF-8, nothing to check.
      return;
    }
    let text: string;
    try {
      text = this.#decoder.decode(bytes);
    } catch {
      this.#badUtf8 = no;
      return;
    }
    const problem = this.#check.next(text, bytes, cut);
    if (problem !== null) this.#problem = { line: no, text: problem };
  }
}

/** `value` of option `name`, a positive integer, or `fallback` when not given. */
function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}

/** Verifies raw bytes: invalid UTF-8 (which the writer never emits) is reported at its line. */
export function verifyAuditBytes(bytes: Uint8Array, opts: AuditVerifyOptions & Pick<AuditReadOptions, 'maxLineBytes'> = {}): AuditVerifyResult {
  const check = new ByteCheck(opts, positive('maxLineBytes', opts.maxLineBytes, MAX_LINE_BYTES));
  check.push(bytes);
  return check.end();
}

/**
 * Reads and verifies the audit file at `path`, a chunk at a time (memory: one chunk and one line, not the
 * file). Throws only if the file cannot be read.
 */
export async function verifyAuditFile(path: string, opts: AuditVerifyOptions & AuditReadOptions = {}): Promise<AuditVerifyResult> {
  const chunkBytes = positive('chunkBytes', opts.chunkBytes, READ_CHUNK_BYTES);
  const check = new ByteCheck(opts, positive('maxLineBytes', opts.maxLineBytes, MAX_LINE_BYTES));
  const file = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(chunkBytes);
    const { bytesRead: first } = await file.read(buf, 0, chunkBytes, null);
    if (first >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
      // gzip (logrotate's `compress`): read through it. No audit line starts with these bytes ('{' does).
      await pipeline(file.createReadStream({ start: 0, autoClose: false }), createGunzip(), async (src: AsyncIterable<Buffer>) => {
        for await (const chunk of src) check.push(chunk);
      }).catch((err: unknown) => {
        throw new Error(`not a whole gzip file (${(err as Error).message})`);
      });
      return check.end();
    }
    if (first > 0) check.push(buf.subarray(0, first));
    for (;;) {
      const { bytesRead } = await file.read(buf, 0, chunkBytes, null);
      if (bytesRead === 0) break;
      check.push(buf.subarray(0, bytesRead));
    }
  } finally {
    await file.close();
  }
  return check.end();
}

/**
 * Verifies files that are one chain in the order given (rotated files, oldest first): each goes on
 * from where the one before ended. `start` applies to the first file, `head` to the last. The first
 * failure is reported with its file; throws (naming the file) only if a file cannot be read.
 */
export async function verifyAuditFiles(
  paths: readonly string[],
  opts: AuditVerifyOptions & AuditReadOptions = {},
): Promise<{ ok: true; files: number; result: Extract<AuditVerifyResult, { ok: true }> } | { ok: false; file: string; result: Extract<AuditVerifyResult, { ok: false }> }> {
  let start = opts.start;
  if (paths.length === 0) throw new RangeError('no audit file to verify');
  let first: ChainStart | null = null;
  let lines = 0;
  let result: Extract<AuditVerifyResult, { ok: true }> | undefined;
  const checkpoints = opts.checkpoints !== undefined && opts.checkpoints.size > 0 ? { checkpoints: opts.checkpoints } : {};
  const read: AuditReadOptions = { ...(opts.chunkBytes !== undefined ? { chunkBytes: opts.chunkBytes } : {}), ...(opts.maxLineBytes !== undefined ? { maxLineBytes: opts.maxLineBytes } : {}) };
  for (const [i, path] of paths.entries()) {
    const r = await verifyAuditFile(path, { ...read, ...(start !== undefined ? { start } : {}), ...checkpoints, ...(i === paths.length - 1 && opts.head !== undefined ? { head: opts.head } : {}) }).catch((err: unknown) => {
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
