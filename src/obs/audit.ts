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

/** A JSON string or null, as JSON.stringify writes it. */
function jsonOrNull(v: string | null): string {
  return v === null ? 'null' : JSON.stringify(v);
}

/**
 * The text of an audit line: exactly `JSON.stringify` of the line with its keys in the documented order
 * (time, seq, session, event, cause, from_version, to_version, from_owner, to_owner, actor, detail, prev),
 * written field by field. A drain writes three lines per session moved; stringifying a spread object cost
 * most of that, while each field's JSON (a short string) is cheap.
 */
export function lineText(line: AuditLine): string {
  const detail = line.detail === undefined ? '' : `,"detail":${JSON.stringify(line.detail)}`;
  return (
    `{"time":${JSON.stringify(line.time)},"seq":${JSON.stringify(line.seq)},"session":${jsonOrNull(line.session)}` +
    `,"event":${JSON.stringify(line.event)},"cause":${JSON.stringify(line.cause)}` +
    `,"from_version":${jsonOrNull(line.from_version)},"to_version":${jsonOrNull(line.to_version)}` +
    `,"from_owner":${jsonOrNull(line.from_owner)},"to_owner":${jsonOrNull(line.to_owner)}` +
    `,"actor":${JSON.stringify(line.actor)}${detail},"prev":${JSON.stringify(line.prev)}}`
  );
}

/** Pure: the next line of the chain (its text, without the newline, and the hash to chain from). */
export function chainLine(prevHash: string, seq: number, time: string, ev: AuditEvent): { line: AuditLine; text: string; hash: string } {
  const line: AuditLine = {
    time,
    seq,
    session: ev.session,
    event: ev.event,
    cause: ev.cause,
    from_version: ev.from_version,
    to_version: ev.to_version,
    from_owner: ev.from_owner,
    to_owner: ev.to_owner,
    actor: ev.actor,
    ...(ev.detail === undefined ? {} : { detail: ev.detail }),
    prev: prevHash,
  };
  const text = lineText(line);
  return { line, text, hash: oneShotHash('sha256', text, 'hex') };
}

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
  // Lines written in one turn of the event loop go to the file in one write (a drain writes thousands).
  let batch = '';
  let scheduled = false;
  const writeBatch = (): void => {
    scheduled = false;
    const text = batch;
    batch = '';
    if (text.length > 0 && stream !== null && streamError === null) stream.write(text);
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
      const { line, text, hash } = chainLine(prev, seq, lastIso, ev);
      prev = hash;
      ring[written % keep] = line;
      written++;
      if (stream !== null && streamError === null) {
        batch += text + '\n';
        if (!scheduled) {
          scheduled = true;
          setImmediate(writeBatch);
        }
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
