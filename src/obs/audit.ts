// The audit log: one JSON line per ownership change, each carrying the SHA-256 of the previous line
// (a hash chain that `anchor audit verify` checks). Owns the file; never decides what is audited.
import { createHash, hash as oneShotHash } from 'node:crypto';
import { closeSync, createWriteStream, fdatasync, fdatasyncSync, fstatSync, openSync, readFileSync, readSync, renameSync, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import writeFileAtomic from 'write-file-atomic';

export interface AuditEvent {
  readonly session: string | null;
  /** create, close, expire, terminate, freeze, transfer, resume, reattach, failover, SECURITY_EVENT … */
  readonly event: string;
  readonly cause: string;
  readonly from_version: string | null;
  readonly to_version: string | null;
  readonly from_owner: string | null;
  readonly to_owner: string | null;
  readonly actor: string;
  readonly detail?: Record<string, unknown>;
}

export interface AuditLine extends AuditEvent {
  readonly time: string;
  readonly seq: number;
  /** SHA-256 (hex) of the previous line's exact text, or 64 zeros for the first line. */
  readonly prev: string;
}

export const GENESIS = '0'.repeat(64);

/** The JSON text of `s`, or null. */
function json(s: string | null): string {
  return s === null ? 'null' : JSON.stringify(s);
}

/** The UTF-8 bytes of `text`. */
function utf8(text: string): Buffer {
  return Buffer.from(text, 'utf8');
}

/** The bytes of the constant parts of a line. */
const K = {
  session: utf8(',"session":'),
  toVersion: utf8(',"to_version":'),
  detail: utf8(',"detail":'),
  prev: utf8(',"prev":'),
  null: utf8('null'),
} as const;

/** Copies `bytes` into `buf` at `at`; the offset after them (a few bytes one by one: cheaper than a call to set). */
function put(buf: Buffer, at: number, bytes: Uint8Array): number {
  const n = bytes.length;
  if (n > 16) buf.set(bytes, at);
  else for (let i = 0; i < n; i++) buf[at + i] = bytes[i] as number;
  return at + n;
}

/**
 * `s` as JSON.stringify writes it, in UTF-8, into `buf` at `at`; the offset after it. Sessions and
 * versions are printable ASCII with nothing to escape: copied byte by byte as they are checked; any other
 * string goes through JSON.stringify.
 */
function putString(buf: Buffer, at: number, s: string): number {
  buf[at] = 0x22;
  let o = at + 1;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return at + buf.write(JSON.stringify(s), at, 'utf8');
    buf[o++] = c;
  }
  buf[o] = 0x22;
  return o + 1;
}

function putStringOrNull(buf: Buffer, at: number, s: string | null): number {
  return s === null ? put(buf, at, K.null) : putString(buf, at, s);
}

/** `n` as JSON writes it (decimal digits for a non-negative safe integer), into `buf` at `at`; the offset after it. */
function putNumber(buf: Buffer, at: number, n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) return at + buf.write(JSON.stringify(n), at, 'latin1');
  let digits = 1;
  for (let x = n; x >= 10; x = Math.floor(x / 10)) digits++;
  let o = at + digits;
  for (let x = n; o > at; x = Math.floor(x / 10)) buf[--o] = 0x30 + (x % 10);
  return at + digits;
}

/** The length of `s`, or of `null`. */
function lengthOrNull(s: string | null): number {
  return s === null ? 4 : s.length;
}

/** Parts of lines made from fields that repeat from line to line, kept for this many field values. */
const PARTS_KEPT = 8;

interface Part {
  readonly a: string | null;
  readonly b: string | null;
  readonly c: string | null;
  readonly bytes: Buffer;
}

/** The part made of fields (a, b, c) if it is kept in `parts`. */
function findPart(parts: readonly Part[], a: string | null, b: string | null, c: string | null): Buffer | undefined {
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] as Part;
    if (p.a === a && p.b === b && p.c === c) return p.bytes;
  }
  return undefined;
}

function keepPart(parts: Part[], part: Part): Buffer {
  if (parts.length >= PARTS_KEPT) parts.shift();
  parts.push(part);
  return part.bytes;
}

/**
 * Encodes audit lines as UTF-8 bytes: exactly `JSON.stringify` of the line with its keys in the
 * documented order (time, seq, session, event, cause, from_version, to_version, from_owner, to_owner,
 * actor, detail, prev). A drain writes three lines per session moved, and lines written together share
 * most fields (time, event, cause, nodes, actor): the bytes of those parts are made once (with
 * JSON.stringify) and copied whole; only seq, the session, the versions and prev are encoded per line.
 * No line object, no string of the line: each line is encoded once, straight into the writer's buffer.
 */
class LineEncoder {
  /** `{"time":…,"seq":` for the time `#time`. */
  #time: string | null = null;
  #head: Buffer = utf8('');
  /** `,"event":…,"cause":…,"from_version":` by (event, cause). */
  readonly #mids: Part[] = [];
  /** `,"from_owner":…,"to_owner":…,"actor":…` by (from_owner, to_owner, actor). */
  readonly #tails: Part[] = [];

  /**
   * The most bytes `encode` writes for these fields (`detail`: its JSON text, or null): 6 bytes per UTF-16
   * unit of a string field (an escape as \uXXXX), 3 per unit of the detail JSON, and the constants.
   */
  static bound(time: string, ev: AuditEvent, detail: string | null, prev: string): number {
    const strings =
      time.length + lengthOrNull(ev.session) + ev.event.length + ev.cause.length + lengthOrNull(ev.from_version) + lengthOrNull(ev.to_version) + lengthOrNull(ev.from_owner) + lengthOrNull(ev.to_owner) + ev.actor.length + prev.length;
    return 192 + 24 + 6 * strings + 3 * (detail?.length ?? 0);
  }

  /**
   * Writes the line of `ev` at `seq` and `time`, chained from `prev` (`detail`: the JSON text of
   * `ev.detail`, or null), into `buf` at `at` (room for `bound` bytes); the offset after it.
   * `prevIsHash`: `prev` is a hex SHA-256 (the writer's own), copied as it is.
   */
  encode(buf: Buffer, at: number, time: string, seq: number, ev: AuditEvent, detail: string | null, prev: string, prevIsHash: boolean): number {
    if (time !== this.#time) {
      this.#time = time;
      this.#head = utf8(`{"time":${JSON.stringify(time)},"seq":`);
    }
    let o = put(buf, at, this.#head);
    o = putNumber(buf, o, seq);
    o = put(buf, o, K.session);
    o = putStringOrNull(buf, o, ev.session);
    o = put(buf, o, this.#mid(ev.event, ev.cause));
    o = putStringOrNull(buf, o, ev.from_version);
    o = put(buf, o, K.toVersion);
    o = putStringOrNull(buf, o, ev.to_version);
    o = put(buf, o, this.#tail(ev.from_owner, ev.to_owner, ev.actor));
    if (detail !== null) {
      o = put(buf, o, K.detail);
      o += buf.write(detail, o, 'utf8');
    }
    o = put(buf, o, K.prev);
    if (prevIsHash) {
      buf[o] = 0x22;
      o += 1 + buf.write(prev, o + 1, 'latin1');
      buf[o++] = 0x22;
    } else {
      o = putString(buf, o, prev);
    }
    buf[o] = 0x7d; // }
    return o + 1;
  }

  #mid(event: string, cause: string): Buffer {
    return findPart(this.#mids, event, cause, null) ?? keepPart(this.#mids, { a: event, b: cause, c: null, bytes: utf8(`,"event":${JSON.stringify(event)},"cause":${JSON.stringify(cause)},"from_version":`) });
  }

  #tail(from: string | null, to: string | null, actor: string): Buffer {
    return findPart(this.#tails, from, to, actor) ?? keepPart(this.#tails, { a: from, b: to, c: actor, bytes: utf8(`,"from_owner":${json(from)},"to_owner":${json(to)},"actor":${JSON.stringify(actor)}`) });
  }
}

/** The text of an audit line: exactly `JSON.stringify` of the line, keys in the documented order (see LineEncoder). */
export function lineText(line: AuditLine): string {
  const detail = line.detail === undefined ? null : JSON.stringify(line.detail);
  const buf = Buffer.allocUnsafe(LineEncoder.bound(line.time, line, detail, line.prev));
  return buf.toString('utf8', 0, new LineEncoder().encode(buf, 0, line.time, line.seq, line, detail, line.prev, false));
}

/** The line of `ev` (no spread: one object of a fixed shape, `detail` only when there is one). */
function lineOf(prevHash: string, seq: number, time: string, ev: AuditEvent): AuditLine {
  if (ev.detail === undefined) {
    return { time, seq, session: ev.session, event: ev.event, cause: ev.cause, from_version: ev.from_version, to_version: ev.to_version, from_owner: ev.from_owner, to_owner: ev.to_owner, actor: ev.actor, prev: prevHash };
  }
  return { time, seq, session: ev.session, event: ev.event, cause: ev.cause, from_version: ev.from_version, to_version: ev.to_version, from_owner: ev.from_owner, to_owner: ev.to_owner, actor: ev.actor, detail: ev.detail, prev: prevHash };
}

/** Pure: the next line of the chain (its text, without the newline, and the hash to chain from). */
export function chainLine(prevHash: string, seq: number, time: string, ev: AuditEvent): { line: AuditLine; text: string; hash: string } {
  const line = lineOf(prevHash, seq, time, ev);
  const text = lineText(line);
  return { line, text, hash: oneShotHash('sha256', text, 'hex') };
}

/**
 * Where the writer puts line bytes: each line is encoded once, into a shared buffer, written to the file
 * and kept for `recent` from there. Bytes are never written over (the file stream and the recent lines
 * refer to them): a full buffer is left to them and a new one taken.
 */
const SLAB_BYTES = 256 * 1024;
/** An empty write (see handedSettled). */
const EMPTY = Buffer.alloc(0);

export interface AuditSink {
  write(ev: AuditEvent): void;
  /** Recent lines kept in memory for the admin API. */
  recent(filter?: { session?: string; limit?: number }): AuditLine[];
  flush(): Promise<void>;
  close(): Promise<void>;
  /**
   * Opens the file at the audit path again (after a log rotation moved it away: SIGHUP), the chain going
   * on where it was (the new file's first line carries the hash of the old file's last). Every line
   * before the call goes to the old file, every line after to the new one — except, while the file
   * cannot be written, the lines waiting for it, which go to the new one first. Resolves once the new file
   * is open, with the error when it could not be opened (`fileError` then says so too). Nothing to do
   * without a file, or once closing.
   */
  reopen(): Promise<Error | null>;
  /**
   * Why the audit file cannot be written now, null when it can. Meanwhile lines wait in memory (up to
   * AuditOptions.backlogBytes) and the file is tried again every retryMs: once it can be written (space
   * freed, a permission mended), they are written to it in order, the chain unbroken.
   */
  readonly fileError: Error | null;
  /**
   * Lines not yet known to be in the file (written to it, or waiting while it cannot be written) and their
   * bytes; `lost`: lines that will never be, since the wait was full (counted since the start).
   */
  unwritten(): { lines: number; bytes: number; lost: number };
  /**
   * Where the chain is: the last line's seq and its SHA-256 (seq 0 and GENESIS before any). Recorded
   * elsewhere, it is a checkpoint `anchor audit verify --checkpoint` holds the file to later.
   */
  head(): ChainHead;
}

/** The longest last line readTail reads (a longer one counts as unreadable). */
const MAX_TAIL_LINE = 64 * 1024 * 1024;
/** How much of the file readTail reads at a time, backwards from its end. */
const TAIL_CHUNK = 64 * 1024;

/**
 * Where an existing audit file's chain ends: the last line's seq and SHA-256, read from the file's tail
 * (the whole chain is checked by `anchor audit verify`, not at every start). `broken` when the last line
 * is cut short or unreadable (a crash mid-write; the caller starts a new file), with the last complete
 * line before it (null when there is none): what a crash left is at or after the head recorded at the
 * last stop, lines cut from the file before a partial line was added are not.
 */
export function readTail(path: string): ChainHead | 'empty' | 'missing' | BrokenTail {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return 'missing';
  }
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return 'empty';
    const one = Buffer.alloc(1);
    readSync(fd, one, 0, 1, size - 1);
    if (one[0] === 0x0a) {
      const last = lineBefore(fd, size - 1);
      const head = last === null ? null : headOf(last);
      if (head !== null) return head;
      // Not an audit line: the complete one before it ends at the newline before its first byte.
      return broken(last === null ? null : completeBefore(fd, size - 1 - last.length), last);
    }
    // Cut short: the file's last newline ends the last complete line (if it is one).
    return broken(completeBefore(fd, size), lineBefore(fd, size));
  } finally {
    closeSync(fd);
  }
}

/** A file whose last line is cut short or not an audit line (readTail). */
export interface BrokenTail {
  readonly broken: true;
  /** The head of the last complete audit line before it, if any. */
  readonly lastComplete: ChainHead | null;
  /** The seq its last line was begun with, when that much of it is there (`{"time":"…","seq":N,`). */
  readonly cutSeq?: number;
}

function broken(lastComplete: ChainHead | null, last: Buffer | null): BrokenTail {
  const m = last === null ? null : /^\{"time":"[^"]*","seq":([0-9]{1,15}),/.exec(last.toString('latin1', 0, Math.min(last.length, 96)));
  return m === null ? { broken: true, lastComplete } : { broken: true, lastComplete, cutSeq: Number(m[1]) };
}

/** The head of the last complete line ending before byte `end` (its newline at end - 1), or null. */
function completeBefore(fd: number, end: number): ChainHead | null {
  const nl = newlineBefore(fd, end);
  if (nl < 0) return null;
  const line = lineBefore(fd, nl);
  return line === null ? null : headOf(line);
}

/** The bytes of the line that ends at byte `end` (exclusive: its newline, or the end), or null when longer than MAX_TAIL_LINE. */
function lineBefore(fd: number, end: number): Buffer | null {
  const nl = newlineBefore(fd, end);
  if (nl === TOO_LONG) return null;
  const start = nl + 1;
  const buf = Buffer.alloc(end - start);
  readSync(fd, buf, 0, buf.length, start);
  return buf;
}

/** newlineBefore's answer for a line longer than MAX_TAIL_LINE. */
const TOO_LONG = -2;

/**
 * The position of the last newline before byte `end`, -1 when there is none (the line starts the file),
 * or TOO_LONG: read backwards a chunk at a time, at most MAX_TAIL_LINE bytes.
 */
function newlineBefore(fd: number, end: number): number {
  const buf = Buffer.alloc(TAIL_CHUNK);
  for (let pos = end; pos > 0; ) {
    if (end - pos > MAX_TAIL_LINE) return TOO_LONG;
    const n = Math.min(TAIL_CHUNK, pos);
    readSync(fd, buf, 0, n, pos - n);
    const i = buf.subarray(0, n).lastIndexOf(0x0a);
    if (i >= 0) return pos - n + i;
    pos -= n;
  }
  return end > MAX_TAIL_LINE ? TOO_LONG : -1;
}

/** A line's seq and SHA-256, or null when it is not an audit line. */
function headOf(line: Buffer): ChainHead | null {
  try {
    const l = JSON.parse(line.toString('utf8')) as { seq?: unknown };
    if (typeof l.seq !== 'number' || !Number.isSafeInteger(l.seq)) return null;
    return { seq: l.seq, hash: createHash('sha256').update(line).digest('hex') };
  } catch {
    return null;
  }
}

/** A chain's head: the last line's seq and SHA-256 (seq 0 and GENESIS before any line). */
export interface ChainHead {
  readonly seq: number;
  readonly hash: string;
}

/** Where the writer records its head beside the audit file, when it starts (unless it found the file altered), stops or reopens the file. */
export function headPath(path: string): string {
  return `${path}.head`;
}

/** The head recorded beside `path` (headPath), or null when there is none or it is not a head. */
export function readRecordedHead(path: string): ChainHead | null {
  try {
    const v = JSON.parse(readFileSync(headPath(path), 'utf8')) as { seq?: unknown; hash?: unknown };
    if (typeof v.seq === 'number' && Number.isSafeInteger(v.seq) && v.seq >= 0 && typeof v.hash === 'string' && /^[0-9a-f]{64}$/.test(v.hash)) return { seq: v.seq, hash: v.hash };
  } catch {
    // absent or unreadable: as if none
  }
  return null;
}

/** Records `head` beside `path` (a new file, synced, renamed over the old: never half written, not even after a power loss). */
function recordHead(path: string, head: ChainHead): void {
  writeFileAtomic.sync(headPath(path), `${JSON.stringify({ seq: head.seq, hash: head.hash })}\n`);
}

/**
 * Where a writer's chain starts, from its file's tail and the head it recorded when it last started,
 * stopped or reopened the file. Pure. The file's tail wins when there is one (lines written after the
 * recorded head — a crash — are normal); the tail behind the recorded head, or at its seq with another
 * hash, means the file lost or changed lines while the writer was away (`anomaly`). With no tail (the file
 * was rotated away while the writer was stopped) the chain goes on from the recorded head.
 */
export function chainStart(
  tail: ChainHead | 'empty' | 'missing' | 'broken' | BrokenTail,
  recorded: ChainHead | null,
): { from: 'file' | 'recorded' | 'genesis'; head: ChainHead; anomaly: null | { kind: 'behind' | 'changed'; file: ChainHead; recorded: ChainHead } } {
  const anomalyOf = (file: ChainHead): { kind: 'behind' | 'changed'; file: ChainHead; recorded: ChainHead } | null =>
    recorded === null ? null : recorded.seq > file.seq ? { kind: 'behind', file, recorded } : recorded.seq === file.seq && recorded.hash !== file.hash ? { kind: 'changed', file, recorded } : null;
  if (typeof tail === 'object' && 'broken' in tail) {
    // A broken file is set aside and a new chain starts; its last complete line is still held to the
    // recorded head (a crash leaves it at or after that head; lines cut before a partial line was added
    // do not: that must not pass as a crash). With no complete line at all, a recorded head past 0 is
    // met only by a crash while writing the line right after it (its seq is the first thing written);
    // a file cut inside its first line, or replaced by something else, is behind it.
    const genesis = { seq: 0, hash: GENESIS };
    if (tail.lastComplete !== null) return { from: 'genesis', head: genesis, anomaly: anomalyOf(tail.lastComplete) };
    const crashed = recorded === null || recorded.seq === 0 || tail.cutSeq === recorded.seq + 1;
    return { from: 'genesis', head: genesis, anomaly: crashed ? null : { kind: 'behind', file: genesis, recorded } };
  }
  if (typeof tail === 'object') return { from: 'file', head: tail, anomaly: anomalyOf(tail) };
  if (tail !== 'broken' && recorded !== null && recorded.seq > 0) return { from: 'recorded', head: recorded, anomaly: null };
  return { from: 'genesis', head: { seq: 0, hash: GENESIS }, anomaly: null };
}

/** Where a writer's chain started (chainStart's answer). */
export type AuditStart = ReturnType<typeof chainStart>;

export interface AuditOptions {
  readonly path: string | null;
  /** Told when an existing audit file could not be continued and was moved aside. */
  readonly onRotate?: (movedTo: string) => void;
  readonly wallClock: () => number;
  /** Told when the audit file cannot be opened or written: once per failure (not for each retry), until lines reach it again (onRecover). */
  readonly onError?: (err: Error) => void;
  /** Called for every line (e.g. to log it when there is no file). */
  readonly onLine?: (line: AuditLine) => void;
  readonly keep?: number;
  /** Told where the chain starts (see chainStart), before any line is written. */
  readonly onStart?: (start: AuditStart) => void;
  /** Told when the head could not be recorded beside the file (headPath): a restart may then start a new chain. */
  readonly onHeadNotRecorded?: (err: Error) => void;
  /**
   * Bytes of lines kept in memory while the file cannot be written (DEFAULT_AUDIT_BACKLOG_BYTES): lines
   * beyond them are lost to the file (the chain in it then has a gap, which verify reports) and counted.
   */
  readonly backlogBytes?: number;
  /** How often a file that cannot be written is tried again (DEFAULT_AUDIT_RETRY_MS). */
  readonly retryMs?: number;
  /**
   * How often what was written to the file is synced to the disk (fdatasync; DEFAULT_AUDIT_SYNC_MS): a
   * power loss or a kernel crash loses at most the lines of the last interval. The file is also synced
   * when it is closed or reopened.
   */
  readonly syncMs?: number;
  /** Told when the file could not be synced (once, until a sync works again; and at a close or reopen): lines written to it may not be on the disk. */
  readonly onSyncError?: (err: Error) => void;
  /** Told once per failure when the wait is full: from then on lines are lost to the file until it can be written. */
  readonly onBacklogFull?: (bytes: number) => void;
  /** Told when lines reach the file again after onError (those that waited are written first). */
  readonly onRecover?: () => void;
  /** Told each time a file that cannot be written is tried again (`attempt`: 1, 2, … within one failure). */
  readonly onRetry?: (attempt: number) => void;
  /** Told at close when lines did not reach the file: still waiting (the file could not be written at the end), or lost. */
  readonly onUnwritten?: (u: { lines: number; lost: number }) => void;
}

/** AuditOptions.backlogBytes by default: some 250,000 lines, most of a 100,000-session drain. */
export const DEFAULT_AUDIT_BACKLOG_BYTES = 64 * 1024 * 1024;
/** AuditOptions.retryMs by default. */
export const DEFAULT_AUDIT_RETRY_MS = 1000;
/** AuditOptions.syncMs by default. */
export const DEFAULT_AUDIT_SYNC_MS = 1000;

export function createAudit(opts: AuditOptions): AuditSink {
  const keep = opts.keep ?? 10_000;
  const backlogBytes = opts.backlogBytes ?? DEFAULT_AUDIT_BACKLOG_BYTES;
  const retryMs = opts.retryMs ?? DEFAULT_AUDIT_RETRY_MS;
  const syncMs = opts.syncMs ?? DEFAULT_AUDIT_SYNC_MS;
  // The latest `keep` lines, in a fixed circular buffer: O(1) per write whatever its size. A line is kept
  // as where its bytes are (its buffer, start, end) and its session (for `recent`'s filter), not as an
  // object: a drain writes hundreds of thousands of lines, each kept long enough to outlive the young
  // generation, and the garbage collector would copy an object (and its strings) per line. `recent`
  // parses the lines it returns (once: `ringLine`).
  const ringSlab: (Buffer | undefined)[] = new Array<Buffer | undefined>(keep);
  const ringStart = new Uint32Array(keep);
  const ringEnd = new Uint32Array(keep);
  const ringSession: (string | null)[] = new Array<string | null>(keep).fill(null);
  const ringLine: (AuditLine | undefined)[] = new Array<AuditLine | undefined>(keep);
  let written = 0;
  let prev = GENESIS;
  let seq = 0;
  /** The start found the file altered (chainStart's anomaly). */
  let altered = false;
  if (opts.path !== null) {
    // Continue the chain of a file a previous run left, so that one file is one chain; or, when that file
    // was rotated away meanwhile, the chain it ended (the head recorded beside it), so that the rotated
    // file and the new one are one chain.
    const tail = readTail(opts.path);
    const start = chainStart(tail, readRecordedHead(opts.path));
    altered = start.anomaly !== null;
    prev = start.head.hash;
    seq = start.head.seq;
    if (typeof tail === 'object' && 'broken' in tail) {
      const movedTo = `${opts.path}.broken-${new Date(opts.wallClock()).toISOString().replace(/[:.]/g, '-')}`;
      renameSync(opts.path, movedTo);
      opts.onRotate?.(movedTo);
    }
    opts.onStart?.(start);
  }
  /** Records the head beside the file (at start, and when the file is set aside or closed). */
  const keepHead = (): void => {
    if (opts.path === null) return;
    try {
      recordHead(opts.path, { seq, hash: prev });
    } catch (err) {
      opts.onHeadNotRecorded?.(err as Error);
    }
  };
  // Where this run starts, recorded at once: a new chain (the file set aside) is what the next start
  // compares with — not the head of the run before, which after a second crash would report this run's own
  // lines as removed or changed. Not when the file was found altered: until this run's SECURITY_EVENT line
  // is in the file (its stop or reopen records the head), a crash must leave the next start to find and
  // report the alteration again.
  if (!altered) keepHead();
  /** A stream on the audit path, appending, and what is known of what it wrote. */
  interface Out {
    readonly s: WriteStream;
    /** Bytes its write callbacks confirmed: what it wrote beyond them is the cut part of a batch a failed write left. */
    confirmed: number;
    /** The file it writes (device and inode, once open): a retry into the same file completes a cut line. */
    file: FileId | null;
    /** Its descriptor while open, else -1. */
    fd: number;
    /** `confirmed` when the file was last synced. */
    synced: number;
    /** Its write or open failed: it takes nothing more. */
    failed: boolean;
  }
  let out: Out | null = null;
  /**
   * Why the file cannot be written (lines wait in the queue meanwhile): from an error told (onError) until a
   * stream writes again (onRecover); null when it can.
   */
  let streamError: Error | null = null;
  let closed = false;
  // Lines not yet known to be in the file, oldest first, as batches of whole lines (subarrays of slabs,
  // which are never written over). The first `handed` batches are with `out`'s stream; the others wait for
  // a reopen or retry to finish, or for the file to be writable again. A failed write leaves its batch and
  // every later one here: they are written to the file that is opened next, none lost, none twice.
  const qBuf: (Buffer | undefined)[] = [];
  const qLines: number[] = [];
  let qHead = 0;
  let handed = 0;
  let queuedBytes = 0;
  let queuedLines = 0;
  /** Lines never to be in the file: the queue was full (backlogBytes) while the file could not be written. */
  let lost = 0;
  let lostTold = false;
  // The first queued batch when a failed write left part of it in a file (a disk that filled up mid-write):
  // its first `headWritten` bytes are there, the last line cut short unless they end with a newline, in
  // the file `headFile`. Kept until the batch is written whole, whatever the tries between: every open
  // goes on from it (resumeAt). `headFrom`: where in the batch the current stream was handed it.
  let headWritten = 0;
  let headFile: FileId | null = null;
  let headFrom = 0;
  const dropHead = (): void => {
    headWritten = 0;
    headFile = null;
    headFrom = 0;
    queuedBytes -= (qBuf[qHead] as Buffer).length;
    queuedLines -= qLines[qHead] as number;
    qBuf[qHead] = undefined;
    qHead++;
    if (handed > 0) handed--;
    if (qHead === qBuf.length) {
      qBuf.length = 0;
      qLines.length = 0;
      qHead = 0;
    } else if (qHead >= 1024 && qHead * 2 >= qBuf.length) {
      qBuf.splice(0, qHead);
      qLines.splice(0, qHead);
      qHead = 0;
    }
  };
  /**
   * Lines reach the file again (a stream opened after the failure wrote the first waiting batch, or nothing
   * waits): `fileError` is null from here, not from the open (a full disk opens, and fails the write).
   */
  /** Tries of the file since it failed (onRetry's count). */
  let attempts = 0;
  const recovered = (): void => {
    if (streamError === null) return;
    lostTold = false;
    attempts = 0;
    streamError = null;
    opts.onRecover?.();
  };
  /** The probe in flight (see handWaiting): settled once its write is done or failed. */
  let probe: Promise<void> | null = null;
  /** Hands the queue's batch `i` (the next one not handed) to `o`'s stream; the callback takes it off the queue once written. */
  const hand = (o: Out, i: number): void => {
    const b = i === qHead && headFrom > 0 ? (qBuf[i] as Buffer).subarray(headFrom) : (qBuf[i] as Buffer);
    handed++;
    let settle: (() => void) | null = null;
    if (streamError !== null) probe = new Promise<void>((resolve) => (settle = resolve));
    o.s.write(b, (err) => {
      if (!err) {
        o.confirmed += b.length;
        dropHead();
        if (streamError !== null && o === out) {
          recovered();
          handWaiting(); // the probe went through: the others follow
        }
      } // else the stream failed: the batch stays queued for the next file (see reopenNow)
      if (settle !== null) {
        probe = null;
        (settle as () => void)();
      }
    });
  };
  /**
   * Hands the waiting batches to the stream, when it can take them. While the file is failing, a stream
   * opened to try it gets one batch (a probe) until that one is written: a disk still full costs a write,
   * not one per waiting batch.
   */
  const handWaiting = (): void => {
    const o = out;
    if (o === null || o.failed || o.s.destroyed || o.fd < 0 || switching !== null) return;
    if (streamError !== null) {
      if (qHead === qBuf.length) recovered(); // nothing waits
      else if (handed === 0) hand(o, qHead);
      return;
    }
    const end = qBuf.length;
    for (let i = qHead + handed; i < end; i++) hand(o, i);
  };
  const enqueue = (b: Buffer, lines: number): void => {
    const now = out !== null && streamError === null && switching === null;
    // Only a file that cannot be written holds lines to the bound: not a slow disk, nor a reopen of a good file.
    if (streamError !== null && queuedBytes + b.length > backlogBytes) {
      lost += lines;
      if (!lostTold) {
        lostTold = true;
        opts.onBacklogFull?.(queuedBytes);
      }
      return;
    }
    qBuf.push(b);
    qLines.push(lines);
    queuedBytes += b.length;
    queuedLines += lines;
    if (now) hand(out as Out, qBuf.length - 1);
  };
  let retryTimer: NodeJS.Timeout | null = null;
  const scheduleRetry = (): void => {
    if (retryTimer !== null || closed) return;
    retryTimer = setTimeout(() => {
      retryTimer = null;
      if (streamError === null || closed) return;
      opts.onRetry?.(++attempts);
      void switchFile(false);
    }, retryMs);
    retryTimer.unref();
  };
  /**
   * A write stream on the audit path, appending. Its error (the latest) is `fileError` while it is the
   * current stream, and the file is tried again after retryMs; the first error of a failure is told
   * (onError: logged and counted), not every retry's.
   */
  const open = (path: string): Out => {
    const s = createWriteStream(path, { flags: 'a' });
    const o: Out = { s, confirmed: 0, file: null, fd: -1, synced: 0, failed: false };
    s.once('close', () => (o.fd = -1));
    s.once('open', (fd: number) => {
      o.fd = fd;
      try {
        const st = fstatSync(fd);
        o.file = { dev: st.dev, ino: st.ino };
      } catch {
        // unknown: taken for another file (a cut line is then written whole)
      }
    });
    s.on('error', (e) => {
      o.failed = true;
      if (o !== out) return;
      const first = streamError === null;
      streamError = e; // the latest
      if (first) opts.onError?.(e);
      scheduleRetry();
    });
    return o;
  };
  /**
   * Settles once every write handed to `o` so far is done or failed, and a failure's error event has been
   * emitted: an empty write's callback comes after those of the writes before it (with an error, if the
   * stream failed meanwhile), and the error event is emitted on a tick after the failed write's callback.
   */
  const handedSettled = (o: Out): Promise<void> =>
    new Promise((resolve) => {
      if (o.s.destroyed) {
        resolve();
        return;
      }
      o.s.write(EMPTY, () => setImmediate(resolve));
    });
  /** Ends `s` once what was handed to it is written (or failed), synced to the disk before its descriptor closes. */
  const endStream = (o: Out): Promise<void> =>
    new Promise((resolve) => {
      const s = o.s;
      if (s.closed) {
        resolve(); // already failed and closed (or ended before)
        return;
      }
      // 'finish': everything handed to it is written, and its descriptor is still open (closed after).
      s.once('finish', () => {
        if (o.fd < 0) return;
        try {
          fdatasyncSync(o.fd);
        } catch (err) {
          opts.onSyncError?.(err as Error);
        }
      });
      s.once('close', () => resolve());
      s.end();
    });
  /**
   * Syncs the current stream's file every syncMs when something was written to it since the last sync (on
   * the thread pool: the event loop and the writes go on meanwhile).
   */
  let syncing = false;
  let syncFailing = false;
  const syncTimer = opts.path === null ? null : setInterval(() => {
    const o = out;
    if (o === null || syncing || o.failed || o.fd < 0 || o.confirmed === o.synced) return;
    const upTo = o.confirmed;
    syncing = true;
    fdatasync(o.fd, (err) => {
      syncing = false;
      if (err === null) {
        o.synced = upTo;
        syncFailing = false;
      } else if (o === out && o.fd >= 0 && !syncFailing) {
        // (Not a descriptor closed meanwhile.) Told once, until a sync works again.
        syncFailing = true;
        opts.onSyncError?.(err);
      }
    });
  }, syncMs);
  syncTimer?.unref();
  /** The reopen or retry in progress (another one waits for it); while it runs, batches wait in the queue. */
  let switching: Promise<Error | null> | null = null;
  /**
   * Ends the current stream once what it was handed is written (or failed), then opens the audit path
   * again and goes on where the file stopped. The old stream writes everything it was handed before the new
   * one gets a byte: when the file was not moved (a reload, a retry after space was freed), both append to
   * one file, and two streams writing at once could put later lines before earlier ones.
   */
  const reopenNow = async (recordHead: boolean): Promise<Error | null> => {
    const old = out;
    if (old === null || opts.path === null) return null; // closed meanwhile
    if (recordHead) keepHead();
    await endStream(old);
    // A failed write leaves batches unconfirmed; the first may be partly in the old file (a disk that
    // filled up mid-write): how much, the stream counted (past what its callbacks confirmed).
    if (handed > 0) {
      let k = Math.max(0, old.s.bytesWritten - old.confirmed);
      handed = 0;
      while (qHead < qBuf.length && k >= (qBuf[qHead] as Buffer).length - headFrom) {
        k -= (qBuf[qHead] as Buffer).length - headFrom;
        dropHead(); // whole in the file, though its callback did not say so
      }
      if (k > 0 && qHead < qBuf.length) {
        headWritten = headFrom + k;
        headFile = old.file;
      }
      // (k = 0: the cut part, if any, is where it was.)
    }
    headFrom = 0;
    if (out !== old) return null; // closed meanwhile
    const o = open(opts.path);
    out = o;
    try {
      await once(o.s, 'open');
    } catch (err) {
      return err as Error; // the error handler made it fileError and will try again
    }
    // On from the cut: in the same file, its next byte; in another, the cut line whole.
    if (headWritten > 0 && qHead < qBuf.length) headFrom = resumeAt(qBuf[qHead] as Buffer, headWritten, sameFile(headFile, o.file));
    return null;
  };
  /** reopenNow, after any reopen or retry in progress; lines written before the call go to the current stream. */
  const switchFile = (recordHead: boolean): Promise<Error | null> => {
    if (switching === null) writeOut();
    const before = switching;
    const p = before === null ? reopenNow(recordHead) : before.then(() => reopenNow(recordHead));
    switching = p;
    void p.finally(() => {
      if (switching !== p) return;
      switching = null;
      handWaiting();
    });
    return p;
  };
  if (opts.path !== null) out = open(opts.path);
  // Lines written in one turn of the event loop go to the file together (a drain writes thousands): the
  // bytes of `slab` from `from` to `at` in one write at the end of the turn, and a buffer that fills up
  // before in a write of its own (no copy of them into one).
  let slab = Buffer.allocUnsafe(SLAB_BYTES);
  let from = 0;
  let at = 0;
  let batchLines = 0;
  let scheduled = false;
  /** Queues the lines of this batch for the file (none without one: their bytes stay for `recent`). */
  function writeOut(): void {
    if (at > from && out !== null) enqueue(slab.subarray(from, at), batchLines);
    from = at;
    batchLines = 0;
  }
  const writeBatch = (): void => {
    scheduled = false;
    writeOut();
  };
  // The ISO time of the last millisecond seen (many lines share one).
  let lastMs = Number.NaN;
  let lastIso = '';
  const encoder = new LineEncoder();
  return {
    write(ev) {
      const ms = opts.wallClock();
      if (ms !== lastMs) {
        lastMs = ms;
        lastIso = new Date(ms).toISOString();
      }
      // What may throw (a detail JSON cannot encode: a bigint, a cycle) before the line takes its seq: a
      // line refused leaves no gap in the chain.
      const detail = ev.detail === undefined ? null : JSON.stringify(ev.detail);
      seq += 1;
      const bound = LineEncoder.bound(lastIso, ev, detail, prev) + 1; // and the newline
      if (slab.length - at < bound) {
        writeOut();
        slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, bound));
        from = at = 0;
      }
      const start = at;
      const end = encoder.encode(slab, start, lastIso, seq, ev, detail, prev, true);
      const line = opts.onLine === undefined ? undefined : lineOf(prev, seq, lastIso, ev);
      prev = oneShotHash('sha256', slab.subarray(start, end), 'hex');
      slab[end] = 0x0a;
      at = end + 1;
      batchLines++;
      const k = written % keep;
      ringSlab[k] = slab;
      ringStart[k] = start;
      ringEnd[k] = end;
      ringSession[k] = ev.session;
      ringLine[k] = undefined;
      written++;
      if (out === null) from = at; // no file: nothing waits to be written
      else if (!scheduled) {
        scheduled = true;
        setImmediate(writeBatch);
      }
      if (line !== undefined) opts.onLine?.(line);
    },
    recent(filter) {
      const lim = filter?.limit ?? 100;
      const res: AuditLine[] = [];
      for (let i = written - 1; i >= Math.max(0, written - keep) && res.length < lim; i--) {
        const k = i % keep;
        if (filter?.session !== undefined && ringSession[k] !== filter.session) continue;
        let l = ringLine[k];
        if (l === undefined) {
          // The writer's text is JSON.stringify of the line: parsing it gives the line back.
          l = JSON.parse((ringSlab[k] as Buffer).toString('utf8', ringStart[k], ringEnd[k])) as AuditLine;
          ringLine[k] = l;
        }
        res.push(l);
      }
      return res.reverse();
    },
    async flush() {
      while (switching !== null) await switching;
      writeBatch();
      const o = out;
      if (o === null || streamError !== null || !o.s.writableNeedDrain) return;
      const s = o.s;
      // Never rejects: a write error is told through onError and `fileError`.
      await new Promise<void>((resolve) => {
        const done = (): void => {
          s.off('drain', done);
          s.off('error', done);
          s.off('close', done);
          resolve();
        };
        s.on('drain', done);
        s.on('error', done);
        s.on('close', done);
      });
    },
    async close() {
      closed = true;
      if (syncTimer !== null) clearInterval(syncTimer);
      if (retryTimer !== null) clearTimeout(retryTimer);
      retryTimer = null;
      while (switching !== null) await switching;
      writeBatch();
      // What the stream was handed is written, or has failed, before the last try is decided: a write that
      // failed just now tells its error only a callback later.
      if (out !== null && streamError === null) await handedSettled(out);
      // A file that could not be written gets one more try: what waits for it is written if it can be now.
      if (out !== null && (streamError !== null || out.s.errored !== null)) {
        await switchFile(false);
        // A probe that goes through hands the rest to the stream before it is ended.
        if (probe !== null) await probe;
      }
      const o = out;
      out = null;
      if (o === null) return;
      await endStream(o);
      if (queuedLines > 0 || lost > 0) opts.onUnwritten?.({ lines: queuedLines, lost });
      keepHead();
    },
    reopen() {
      // Once closing, the close has the last try.
      if (opts.path === null || out === null || closed) return Promise.resolve(null);
      return switchFile(true);
    },
    get fileError() {
      return streamError;
    },
    unwritten() {
      return { lines: queuedLines, bytes: queuedBytes, lost };
    },
    head() {
      return { seq, hash: prev };
    },
  };
}

/** A file's identity: its device and inode. */
export interface FileId {
  readonly dev: number;
  readonly ino: number;
}

/** Whether two opened files are one (unknown counts as not). */
export function sameFile(a: FileId | null, b: FileId | null): boolean {
  return a !== null && b !== null && a.dev === b.dev && a.ino === b.ino;
}

/**
 * Where a writer goes on with a batch of whole lines of which a failed write left the first `written`
 * bytes in the old file (a disk that filled up mid-write). Pure. Into the same file: from the first byte
 * not written, so that the cut line is completed where it was cut. Into another (the old one was moved
 * away meanwhile): from the start of the cut line, which the new file then has whole — the old file ends
 * with it cut short. `written` is within the batch (0 ≤ written < its length).
 */
export function resumeAt(batch: Uint8Array, written: number, sameFileAgain: boolean): number {
  if (written <= 0) return 0;
  if (sameFileAgain) return written;
  return batch.lastIndexOf(0x0a, written - 1) + 1;
}
