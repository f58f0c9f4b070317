// The audit log on a disk that fills up mid-write: a real tmpfs of 64 KiB, in a mount namespace the test
// makes for the writer (test/helpers/audit-writer.mjs, over dist/), so that a write is cut short by the
// kernel (ENOSPC after part of a batch) and space can be freed again. Nothing is lost: the lines wait in
// memory, the file is tried again by itself, and the chain in the file(s) verifies whole.
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { verifyAuditChain } from '../../src/obs/audit-verify.js';
import { GENESIS, type AuditLine } from '../../src/obs/audit.js';
import { waitFor } from '../helpers/wait.js';

const WRITER = fileURLToPath(new URL('../helpers/audit-writer.mjs', import.meta.url));
/** The tmpfs: 16 pages, of which the filler takes 14 — the audit file gets about 8 KiB. */
const DISK = 64 * 1024;
const FILLER = 56 * 1024;

type Answer = { ok: boolean; error?: string } & Record<string, unknown>;

/** The writer in its own mount namespace, with the tmpfs at `dir`; commands over stdio. */
class Writer {
  readonly #waiting = new Map<number, (a: Answer) => void>();
  #next = 1;
  #exited: string | null = null;
  readonly ready: Promise<void>;
  constructor(readonly child: ChildProcess) {
    let onReady!: () => void;
    let onFail!: (e: Error) => void;
    this.ready = new Promise((res, rej) => {
      onReady = res;
      onFail = rej;
    });
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = JSON.parse(line) as Answer & { id?: number; ev?: string };
      if (m.ev === 'ready') onReady();
      else this.#waiting.get(m.id as number)?.(m);
    });
    child.once('exit', (code, signal) => {
      this.#exited = `the audit writer exited (${String(code ?? signal)}): ${stderr.trim()}`;
      onFail(new Error(this.#exited));
      for (const a of [...this.#waiting.values()]) a({ ok: false, error: this.#exited });
    });
  }
  async do(op: string, args: Record<string, unknown> = {}): Promise<Answer> {
    if (this.#exited !== null) throw new Error(this.#exited);
    const id = this.#next++;
    const answer = new Promise<Answer>((res) => this.#waiting.set(id, res));
    this.child.stdin!.write(`${JSON.stringify({ id, op, ...args })}\n`);
    const a = await answer;
    this.#waiting.delete(id);
    if (!a.ok) throw new Error(`${op}: ${String(a.error)}`);
    return a;
  }
  async state(): Promise<{ error: string | null; unwritten: { lines: number; bytes: number; lost: number }; retries: number }> {
    return (await this.do('state')) as unknown as { error: string | null; unwritten: { lines: number; bytes: number; lost: number }; retries: number };
  }
  /** Waits until the writer has tried the file `more` more times (each try fails while the disk is full). */
  async retried(more: number): Promise<void> {
    const from = (await this.state()).retries;
    await waitFor(`${more} more tries of the file`, async () => (await this.state()).retries >= from + more || undefined);
  }
  async read(name: string): Promise<string> {
    return (await this.do('read', { name })).text as string;
  }
}

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0).reverse()) f();
});

async function start(): Promise<Writer> {
  const dir = mkdtempSync(join(tmpdir(), 'anchor-audit-full-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  // As root a mount namespace of its own; otherwise in a user namespace too (mapped to root in it).
  const flags = process.getuid?.() === 0 ? ['-m'] : ['-r', '-m'];
  const child = spawn('unshare', [...flags, 'sh', '-c', 'mount -t tmpfs -o size="$1" tmpfs "$2" && exec "$3" "$4" "$2"', 'sh', String(DISK), dir, process.execPath, WRITER], { stdio: ['pipe', 'pipe', 'pipe'] });
  const w = new Writer(child);
  cleanup.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  await w.ready;
  return w;
}

const seqs = (text: string): number[] => text.split('\n').filter((l) => l.endsWith('}')).map((l) => (JSON.parse(l) as AuditLine).seq);
const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** Writes 5 lines that fit, fills the disk, then 100 lines that do not: the file ends in a cut line. */
async function fillMidWrite(w: Writer): Promise<string> {
  await w.do('write', { n: 5 });
  await waitFor('the first lines in the file', async () => seqs(await w.read('audit.jsonl')).length === 5 || undefined);
  await w.do('fill', { bytes: FILLER });
  await w.do('write', { n: 100 });
  await waitFor('the disk full', async () => (await w.state()).error === 'ENOSPC' || undefined);
  const cut = await w.read('audit.jsonl');
  // The kernel took part of the batch: more than the 5 lines, and the last one cut short. (If it took
  // none, this test would not test what it says.)
  expect(cut.length).toBeGreaterThan(5 * 200);
  expect(cut.endsWith('\n')).toBe(false);
  const st = await w.state();
  expect(st.unwritten.lines).toBe(100);
  expect(st.unwritten.lost).toBe(0);
  return cut;
}

describe('audit on a disk that fills up mid-write (tmpfs in a mount namespace)', () => {
  it('space freed: the retry opens the same file and completes the cut line; every line is in it once, the chain whole', async () => {
    const w = await start();
    await fillMidWrite(w);
    // Still full: the retries fail, the lines wait.
    await w.retried(3);
    expect((await w.state()).error).toBe('ENOSPC');
    expect((await w.state()).unwritten.lines).toBe(100);
    await w.do('free');
    await waitFor('the waiting lines written', async () => {
      const st = await w.state();
      return (st.error === null && st.unwritten.lines === 0) || undefined;
    });
    await w.do('write', { n: 1 });
    await w.do('close');
    const text = await w.read('audit.jsonl');
    expect(seqs(text)).toEqual(Array.from({ length: 106 }, (_, i) => i + 1));
    expect(verifyAuditChain(text)).toMatchObject({ ok: true, lines: 106, seq: 106, start: { prev: GENESIS, seq: 1 } });
  });

  it('the full file moved away, then space freed: the new file starts with the cut line whole, and goes on from the old file\'s last whole line', async () => {
    const w = await start();
    const cut = await fillMidWrite(w);
    // Tried again (and failed) a few times first, as a director does before an operator moves the file.
    await w.retried(3);
    await w.do('rotate');
    await w.do('free');
    await waitFor('the waiting lines written', async () => {
      const st = await w.state();
      return (st.error === null && st.unwritten.lines === 0) || undefined;
    });
    await w.do('close');
    const old = await w.read('audit.jsonl.1');
    expect(old).toBe(cut); // nothing more went to the moved file
    const whole = old.slice(0, old.lastIndexOf('\n') + 1);
    const now = await w.read('audit.jsonl');
    const before = seqs(whole);
    expect([...before, ...seqs(now)]).toEqual(Array.from({ length: 105 }, (_, i) => i + 1));
    // The old file's whole lines and the new file are one chain; the cut line is the new file's first.
    expect(verifyAuditChain(whole)).toMatchObject({ ok: true, lines: before.length });
    expect(verifyAuditChain(now, { start: { prev: sha256(whole.trimEnd().split('\n').at(-1) as string) } })).toMatchObject({ ok: true, seq: 105 });
    expect(verifyAuditChain(whole + now)).toMatchObject({ ok: true, lines: 105 });
  });

  it('the path unusable for a while between two tries of the same file (a directory there): the cut line is still completed where it was cut', async () => {
    const w = await start();
    await fillMidWrite(w);
    await w.retried(2);
    await w.do('block'); // the file moved aside and a directory at its path: the tries fail to open
    await waitFor('the open refused', async () => (await w.state()).error === 'EISDIR' || undefined);
    await w.retried(2);
    await w.do('unblock'); // the same file back at the path, still full
    await w.retried(2);
    await w.do('free');
    await waitFor('the waiting lines written', async () => {
      const st = await w.state();
      return (st.error === null && st.unwritten.lines === 0) || undefined;
    });
    await w.do('close');
    const text = await w.read('audit.jsonl');
    expect(seqs(text)).toEqual(Array.from({ length: 105 }, (_, i) => i + 1));
    expect(verifyAuditChain(text)).toMatchObject({ ok: true, lines: 105, start: { prev: GENESIS, seq: 1 } });
  });
});

// Fail loudly where the namespace cannot be made, rather than pass without testing (CI runs as root).
it('unshare is there', () => {
  expect(spawnSync('unshare', ['--version']).status).toBe(0);
});
