// The audit log: one JSON line per ownership change, each carrying the SHA-256 of the previous line
// (a hash chain that `anchor audit verify` checks). Owns the file; never decides what is audited.
import { createHash, hash as oneShotHash } from 'node:crypto';
import { closeSync, createWriteStream, fstatSync, openSync, readSync, renameSync, type WriteStream } from 'node:fs';
import { once } from 'node:events';

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

/** The ASCII bytes of the constant parts of a line. */
const K = (() => {
  const enc = (t: string): Uint8Array => new Uint8Array(Buffer.from(t, 'latin1'));
  return {
    time: enc('{"time":'),
    seq: enc(',"seq":'),
    session: enc(',"session":'),
    event: enc(',"event":'),
    cause: enc(',"cause":'),
    fromVersion: enc(',"from_version":'),
    toVersion: enc(',"to_version":'),
    fromOwner: enc(',"from_owner":'),
    toOwner: enc(',"to_owner":'),
    actor: enc(',"actor":'),
    detail: enc(',"detail":'),
    prev: enc(',"prev":'),
    null: enc('null'),
  } as const;
})();

/** Copies the constant `k` into `buf` at `at`; the offset after it. */
function putConst(buf: Buffer, at: number, k: Uint8Array): number {
  for (let i = 0; i < k.length; i++) buf[at + i] = k[i] as number;
  return at + k.length;
}

/**
 * `s` as JSON.stringify writes it, in UTF-8, into `buf` at `at`; the offset after it. Most audit fields
 * (ids, versions, node names, causes) are printable ASCII with nothing to escape: copied byte by byte as
 * they are checked; any other string goes through JSON.stringify.
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
  return s === null ? putConst(buf, at, K.null) : putString(buf, at, s);
}

/**
 * The most bytes `encodeLine` writes for `line` (`detail`: its JSON text, or null): 6 bytes per UTF-16
 * unit of a string field (an escape as \uXXXX), 3 per unit of the detail JSON, and the constants.
 */
function lineBound(line: AuditLine, detail: string | null): number {
  const len = (v: string | null): number => (v === null ? 4 : v.length);
  const strings =
    line.time.length + len(line.session) + line.event.length + line.cause.length + len(line.from_version) + len(line.to_version) + len(line.from_owner) + len(line.to_owner) + line.actor.length + line.prev.length;
  return 192 + 24 + 6 * strings + 3 * (detail?.length ?? 0);
}

/**
 * Writes the text of an audit line, as UTF-8, into `buf` at `at` (room for `lineBound` bytes) and returns
 * the offset after it: exactly `JSON.stringify` of the line with its keys in the documented order (time,
 * seq, session, event, cause, from_version, to_version, from_owner, to_owner, actor, detail, prev). A
 * drain writes three lines per session moved: written straight as bytes, each line is encoded once (no
 * JSON of a spread object, no string of the line to concatenate and convert for hashing and the file).
 */
function encodeLine(buf: Buffer, at: number, line: AuditLine, detail: string | null): number {
  let o = putConst(buf, at, K.time);
  o = putString(buf, o, line.time);
  o = putConst(buf, o, K.seq);
  o += buf.write(Number.isFinite(line.seq) ? `${line.seq}` : 'null', o, 'latin1');
  o = putConst(buf, o, K.session);
  o = putStringOrNull(buf, o, line.session);
  o = putConst(buf, o, K.event);
  o = putString(buf, o, line.event);
  o = putConst(buf, o, K.cause);
  o = putString(buf, o, line.cause);
  o = putConst(buf, o, K.fromVersion);
  o = putStringOrNull(buf, o, line.from_version);
  o = putConst(buf, o, K.toVersion);
  o = putStringOrNull(buf, o, line.to_version);
  o = putConst(buf, o, K.fromOwner);
  o = putStringOrNull(buf, o, line.from_owner);
  o = putConst(buf, o, K.toOwner);
  o = putStringOrNull(buf, o, line.to_owner);
  o = putConst(buf, o, K.actor);
  o = putString(buf, o, line.actor);
  if (detail !== null) {
    o = putConst(buf, o, K.detail);
    o += buf.write(detail, o, 'utf8');
  }
  o = putConst(buf, o, K.prev);
  o = putString(buf, o, line.prev);
  buf[o] = 0x7d; // }
  return o + 1;
}

/** The text of an audit line: exactly `JSON.stringify` of the line, keys in the documented order (see encodeLine). */
export function lineText(line: AuditLine): string {
  const detail = line.detail === undefined ? null : JSON.stringify(line.detail);
  const buf = Buffer.allocUnsafe(lineBound(line, detail));
  return buf.toString('utf8', 0, encodeLine(buf, 0, line, detail));
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
 * Where the writer puts line bytes: each line is encoded once, into a shared buffer, and both hashed and
 * written to the file from there. Bytes handed to the file stream are never written over: a full buffer
 * is left to the stream and a new one taken.
 */
const SLAB_BYTES = 256 * 1024;

export interface AuditSink {
  write(ev: AuditEvent): void;
  /** Recent lines kept in memory for the admin API. */
  recent(filter?: { session?: string; limit?: number }): AuditLine[];
  flush(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Where an existing audit file's chain ends: the last line's seq and SHA-256, read from the file's tail
 * (the whole chain is checked by `anchor audit verify`, not at every start). `broken` when the last
 * line is cut short or unreadable (a crash mid-write): the caller starts a new file.
 */
export function readChainTail(path: string): { seq: number; hash: string } | 'empty' | 'missing' | 'broken' {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return 'missing';
  }
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return 'empty';
    const len = Math.min(size, 256 * 1024);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    const text = buf.toString('utf8');
    if (!text.endsWith('\n')) return 'broken';
    const body = text.slice(0, -1);
    const last = body.slice(body.lastIndexOf('\n') + 1);
    if (last.length === len - 1 && size > len) return 'broken'; // one line longer than the tail window
    try {
      const l = JSON.parse(last) as { seq?: unknown };
      if (typeof l.seq !== 'number' || !Number.isSafeInteger(l.seq)) return 'broken';
      return { seq: l.seq, hash: createHash('sha256').update(last).digest('hex') };
    } catch {
      return 'broken';
    }
  } finally {
    closeSync(fd);
  }
}

export interface AuditOptions {
  readonly path: string | null;
  /** Told when an existing audit file could not be continued and was moved aside. */
  readonly onRotate?: (movedTo: string) => void;
  readonly wallClock: () => number;
  /** Called for every line (e.g. to log it when there is no file). */
  readonly onLine?: (line: AuditLine) => void;
  readonly keep?: number;
}

export function createAudit(opts: AuditOptions): AuditSink {
  const keep = opts.keep ?? 10_000;
  // The latest `keep` lines, in a fixed circular buffer: O(1) per write whatever its size.
  const ring: (AuditLine | undefined)[] = new Array<AuditLine | undefined>(keep);
  let written = 0;
  let prev = GENESIS;
  let seq = 0;
  if (opts.path !== null) {
    // Continue the chain of a file a previous run left, so that one file is one chain.
    const tail = readChainTail(opts.path);
    if (typeof tail === 'object') {
      prev = tail.hash;
      seq = tail.seq;
    } else if (tail === 'broken') {
      const movedTo = `${opts.path}.broken-${new Date(opts.wallClock()).toISOString().replace(/[:.]/g, '-')}`;
      renameSync(opts.path, movedTo);
      opts.onRotate?.(movedTo);
    }
  }
  let stream: WriteStream | null = opts.path !== null ? createWriteStream(opts.path, { flags: 'a' }) : null;
  let streamError: Error | null = null;
  stream?.on('error', (e) => {
    streamError = e;
  });
  // Lines written in one turn of the event loop go to the file in one write (a drain writes thousands):
  // the bytes of `slab` from `from` to `at`, plus any full slabs before it.
  let slab = Buffer.allocUnsafe(SLAB_BYTES);
  let from = 0;
  let at = 0;
  const full: Buffer[] = [];
  let scheduled = false;
  const writeBatch = (): void => {
    scheduled = false;
    if (stream === null || streamError !== null) {
      full.length = 0;
      from = at = 0; // nothing refers to these bytes: the slab is reused from its start
      return;
    }
    if (at > from) full.push(slab.subarray(from, at));
    from = at;
    if (full.length === 0) return;
    if (full.length === 1) stream.write(full[0] as Buffer);
    else stream.write(Buffer.concat(full));
    full.length = 0;
  };
  // The ISO time of the last millisecond seen (many lines share one).
  let lastMs = Number.NaN;
  let lastIso = '';
  return {
    write(ev) {
      seq += 1;
      const ms = opts.wallClock();
      if (ms !== lastMs) {
        lastMs = ms;
        lastIso = new Date(ms).toISOString();
      }
      const line = lineOf(prev, seq, lastIso, ev);
      const detail = ev.detail === undefined ? null : JSON.stringify(ev.detail);
      const toFile = stream !== null && streamError === null;
      if (!toFile) from = at = 0; // no file: the bytes are only hashed, and the slab reused at once
      const bound = lineBound(line, detail) + 1; // and the newline
      if (slab.length - at < bound) {
        if (at > from) full.push(slab.subarray(from, at));
        slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, bound));
        from = at = 0;
      }
      const end = encodeLine(slab, at, line, detail);
      prev = oneShotHash('sha256', slab.subarray(at, end), 'hex');
      slab[end] = 0x0a;
      at = end + 1;
      ring[written % keep] = line;
      written++;
      if (toFile && !scheduled) {
        scheduled = true;
        setImmediate(writeBatch);
      }
      opts.onLine?.(line);
    },
    recent(filter) {
      const lim = filter?.limit ?? 100;
      const out: AuditLine[] = [];
      for (let i = written - 1; i >= Math.max(0, written - keep) && out.length < lim; i--) {
        const l = ring[i % keep] as AuditLine;
        if (filter?.session === undefined || l.session === filter.session) out.push(l);
      }
      return out.reverse();
    },
    async flush() {
      writeBatch();
      if (stream === null || streamError !== null) return;
      if (stream.writableNeedDrain) await once(stream, 'drain');
    },
    async close() {
      writeBatch();
      const s = stream;
      stream = null;
      if (s === null) return;
      await new Promise<void>((resolve) => s.end(() => resolve()));
    },
  };
}
