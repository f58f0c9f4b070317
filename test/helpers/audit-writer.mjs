// An audit writer (dist/src/obs/audit.js) run in a mount namespace of its own with a small tmpfs at DIR, so
// that a test can fill the disk under it and free it again (`unshare -m sh -c 'mount -t tmpfs … DIR && exec
// node audit-writer.mjs DIR'`). Plain JavaScript with Node builtins and the built writer: it runs without
// the test's TypeScript loader.
//
// Argument: DIR (the tmpfs; the audit file is DIR/audit.jsonl). stdin, one JSON command per line; stdout,
// one JSON line answering each ({"id", "ok": true, ...} or {"id", "ok": false, "error"}):
//   {"id", "op": "fill", "bytes"}     a filler file of that many bytes (what does not fit is left out)
//   {"id", "op": "free"}              removes the filler
//   {"id", "op": "write", "n"}        n audit lines, in one turn of the event loop
//   {"id", "op": "state"}             {"error": code or null, "unwritten": {...}, "retries": tries of the file so far}
//   {"id", "op": "rotate"}            renames audit.jsonl to audit.jsonl.1 (the same disk: nothing freed)
//   {"id", "op": "block"}             renames audit.jsonl to audit.jsonl.1 and makes a directory at audit.jsonl (opens fail)
//   {"id", "op": "unblock"}           removes that directory and renames audit.jsonl.1 back (the same file again)
//   {"id", "op": "read", "name"}      {"text"}: a file of DIR
//   {"id", "op": "close"}             closes the writer
// The writer ends when stdin closes.
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmdirSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createAudit } from '../../dist/src/obs/audit.js';

const dir = process.argv[2];
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
let n = 0;
let retries = 0;
const audit = createAudit({ path: join(dir, 'audit.jsonl'), wallClock: () => 1_700_000_000_000 + n, retryMs: 30, onRetry: () => retries++ });

function event(i) {
  return { session: (i + 1).toString(16).padStart(32, '0'), event: 'transfer', cause: 'drain', from_version: String(i), to_version: String(i + 1), from_owner: 'node-a', to_owner: 'node-b', actor: 'test' };
}

const ops = {
  fill({ bytes }) {
    const fd = openSync(join(dir, 'filler'), 'w');
    try {
      writeSync(fd, Buffer.alloc(bytes, 0x2e));
    } catch {
      // full: what fit is there
    } finally {
      closeSync(fd);
    }
    return {};
  },
  free() {
    rmSync(join(dir, 'filler'));
    return {};
  },
  write({ n: count }) {
    for (let i = 0; i < count; i++) audit.write(event(n++));
    return {};
  },
  state() {
    return { error: audit.fileError === null ? null : (audit.fileError.code ?? audit.fileError.message), unwritten: audit.unwritten(), retries };
  },
  rotate() {
    renameSync(join(dir, 'audit.jsonl'), join(dir, 'audit.jsonl.1'));
    return {};
  },
  block() {
    renameSync(join(dir, 'audit.jsonl'), join(dir, 'audit.jsonl.1'));
    mkdirSync(join(dir, 'audit.jsonl'));
    return {};
  },
  unblock() {
    rmdirSync(join(dir, 'audit.jsonl'));
    renameSync(join(dir, 'audit.jsonl.1'), join(dir, 'audit.jsonl'));
    return {};
  },
  read({ name }) {
    return { text: readFileSync(join(dir, name), 'utf8') };
  },
  async close() {
    await audit.close();
    return {};
  },
};

createInterface({ input: process.stdin }).on('line', async (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
    out({ id: cmd.id, ok: true, ...(await ops[cmd.op](cmd)) });
  } catch (err) {
    out({ id: cmd?.id, ok: false, error: String(err) });
  }
}).on('close', () => process.exit(0));
out({ ev: 'ready' });
