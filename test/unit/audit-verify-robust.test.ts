// `anchor audit verify` on what a review fed it: a file read in small chunks (lines, CRLF and multi-byte
// characters cut between chunks) verifies exactly as the whole text does; a line over the cap fails at its
// line without being read whole; a value nested too deeply for JSON.stringify fails its line (it used to
// escape as "cannot read"); a huge value is clipped in the message, not echoed whole.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chainLine, GENESIS } from '../../src/obs/audit.js';
import type { AuditEvent } from '../../src/obs/audit.js';
import { verifyAuditBytes, verifyAuditChain, verifyAuditFile, verifyAuditFiles } from '../../src/obs/audit-verify.js';

const T0 = Date.UTC(2024, 5, 1, 12, 0, 0);
const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'anchor-audit-verify-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Text with 1-, 2-, 3- and 4-byte UTF-8 characters, so that small chunks cut through every kind. */
const WIDE = 'drain é ✓ 𝄞 node-b';

function event(i: number, detail?: Record<string, unknown>): AuditEvent {
  return {
    session: (i + 1).toString(16).padStart(32, '0'),
    event: i === 0 ? 'create' : 'transfer',
    cause: i % 2 === 0 ? 'hello' : WIDE,
    from_version: i === 0 ? null : String(i),
    to_version: String(i + 1),
    from_owner: i === 0 ? null : 'node-a',
    to_owner: 'node-b',
    actor: 'dir-1',
    ...(detail !== undefined ? { detail } : i % 3 === 0 ? { detail: { transport: '[2001:db8::1]:443', note: WIDE } } : {}),
  };
}

/** The lines (no newlines) of a chain of `n` events built with the writer's own line function. */
function chain(n: number, detailOf: (i: number) => Record<string, unknown> | undefined = () => undefined): string[] {
  let prev = GENESIS;
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const { text, hash } = chainLine(prev, i + 1, new Date(T0 + i * 1000).toISOString(), event(i, detailOf(i)));
    lines.push(text);
    prev = hash;
  }
  return lines;
}

const join1 = (lines: readonly string[]): string => lines.map((l) => `${l}\n`).join('');

let files = 0;
async function file(content: string | Uint8Array): Promise<string> {
  const path = join(dir, `log-${++files}.jsonl`);
  await writeFile(path, content);
  return path;
}

/** Chunk sizes that cut lines, newlines and characters everywhere (1: every byte its own chunk). */
const CHUNKS = [1, 3, 7, 64, 4096] as const;

describe('verifyAuditFile reads a file in chunks: lines straddling chunks verify exactly as the whole text', () => {
  const lines = chain(7);
  const text = join1(lines);
  const tampered = [...lines];
  tampered[3] = (tampered[3] as string).replace('"to_owner":"node-b"', '"to_owner":"node-c"');

  it('the chain has characters of every UTF-8 width, so small chunks split multi-byte characters', () => {
    const bytes = Buffer.from(text, 'utf8');
    expect(bytes.length).toBeGreaterThan(text.length); // multi-byte characters present
    expect(text).toContain('𝄞'); // 4 bytes
    expect(text).toContain('✓'); // 3 bytes
    expect(text).toContain('é'); // 2 bytes
  });

  const cases: ReadonlyArray<readonly [what: string, content: string, expected: Record<string, unknown>]> = [
    ['a whole log', text, { ok: true, lines: 7, seq: 7, head: sha256(lines[6] as string) }],
    ['a last line without a trailing newline', text.slice(0, -1), { ok: true, lines: 7, seq: 7 }],
    ['CRLF line ends (\\r and \\n in different chunks at some sizes)', lines.map((l) => `${l}\r\n`).join(''), { ok: false, lines: 7, line: 1, problem: expect.stringMatching(/^line 1: is not byte-for-byte what the writer produces/) }],
    ['a changed line (reported at the next, with the whole file\'s line count)', join1(tampered), { ok: false, lines: 7, line: 5, problem: expect.stringMatching(/^line 5: prev does not match the SHA-256 of line 4/) }],
    ['a last line cut short', text.slice(0, -25), { ok: false, lines: 7, line: 7, problem: expect.stringMatching(/^line 7: the last line is cut short/) }],
    ['an empty line', join1([...lines.slice(0, 3), '', ...lines.slice(3)]), { ok: false, lines: 8, line: 4, problem: 'line 4: is empty' }],
    ['an empty file', '', { ok: true, lines: 0, seq: 0, head: GENESIS }],
  ];

  it.each(cases)('%s', async (_what, content, expected) => {
    const path = await file(content);
    const whole = verifyAuditChain(content);
    expect(whole).toMatchObject(expected);
    for (const chunkBytes of CHUNKS) {
      expect(await verifyAuditFile(path, { chunkBytes }), `chunkBytes ${chunkBytes}`).toEqual(whole);
    }
    expect(verifyAuditBytes(Buffer.from(content, 'utf8'))).toEqual(whole);
  });

  it('with --head, --checkpoint and --continued (start "any") in small chunks: the same answers as the whole text', async () => {
    const path = await file(join1(lines.slice(3)));
    const opts = { start: 'any' as const, head: sha256(lines[6] as string), checkpoints: new Map([[5, sha256(lines[4] as string)]]) };
    const whole = verifyAuditChain(join1(lines.slice(3)), opts);
    expect(whole).toMatchObject({ ok: true, lines: 4, seq: 7, start: { seq: 4, prev: sha256(lines[2] as string) } });
    for (const chunkBytes of CHUNKS) expect(await verifyAuditFile(path, { ...opts, chunkBytes })).toEqual(whole);
    const wrongHead = { ...opts, head: sha256('another') };
    for (const chunkBytes of CHUNKS) expect(await verifyAuditFile(path, { ...wrongHead, chunkBytes })).toEqual(verifyAuditChain(join1(lines.slice(3)), wrongHead));
  });

  it('several files as one chain, read in small chunks', async () => {
    const older = await file(join1(lines.slice(0, 3)));
    const newer = await file(join1(lines.slice(3)).slice(0, -1)); // and no trailing newline
    for (const chunkBytes of CHUNKS) {
      expect(await verifyAuditFiles([older, newer], { chunkBytes, head: sha256(lines[6] as string) })).toMatchObject({ ok: true, files: 2, result: { lines: 7, seq: 7 } });
      expect(await verifyAuditFiles([newer, older], { chunkBytes })).toMatchObject({ ok: false, file: newer, result: { line: 1 } });
    }
  });

  it('invalid UTF-8 is reported at its line, also when it is a multi-byte character cut short across chunks, and before an earlier break (as before)', async () => {
    const bytes = Buffer.from(join1(tampered), 'utf8'); // chain broken at line 5
    const line6 = bytes.indexOf(Buffer.from(lines[5] as string, 'utf8'));
    const clef = bytes.indexOf(Buffer.from('𝄞', 'utf8'), line6);
    expect(clef).toBeGreaterThan(line6);
    bytes[clef + 3] = 0x41; // 𝄞's last continuation byte replaced: a 4-byte sequence cut short
    const path = await file(bytes);
    const expected = { ok: false, lines: 7, line: 6, problem: 'line 6: is not valid UTF-8' };
    for (const chunkBytes of CHUNKS) expect(await verifyAuditFile(path, { chunkBytes })).toEqual(expected);
    expect(verifyAuditBytes(bytes)).toEqual(expected);
    // The last line ending inside a multi-byte character (no newline after it).
    const cutChar = Buffer.concat([Buffer.from(join1(lines.slice(0, 2)), 'utf8'), Buffer.from('{"time":"𝄞', 'utf8').subarray(0, -2)]);
    const cutPath = await file(cutChar);
    for (const chunkBytes of CHUNKS) expect(await verifyAuditFile(cutPath, { chunkBytes })).toEqual({ ok: false, lines: 3, line: 3, problem: 'line 3: is not valid UTF-8' });
  });
});

describe('a line longer than the cap fails at its line, without being read whole', () => {
  const lines = chain(6, (i) => (i === 2 ? { note: WIDE.repeat(200) } : undefined));
  const long = Buffer.byteLength(lines[2] as string);

  it('a small cap set through the options: the line is named, the file\'s lines are all counted', async () => {
    expect(long).toBeGreaterThan(4000);
    const path = await file(join1(lines));
    expect(verifyAuditChain(join1(lines))).toMatchObject({ ok: true, lines: 6 }); // a valid log otherwise
    for (const chunkBytes of [7, 64, 1 << 20]) {
      expect(await verifyAuditFile(path, { chunkBytes, maxLineBytes: 1000 })).toEqual({ ok: false, lines: 6, line: 3, problem: expect.stringMatching(/^line 3: longer than 1000 bytes/) });
    }
    expect(await verifyAuditFiles([path], { maxLineBytes: 1000 })).toMatchObject({ ok: false, file: path, result: { line: 3, problem: expect.stringMatching(/^line 3: longer than 1000 bytes/) } });
    expect(verifyAuditBytes(Buffer.from(join1(lines), 'utf8'), { maxLineBytes: 1000 })).toMatchObject({ ok: false, line: 3 });
    // A line of exactly the cap is checked as usual.
    expect(await verifyAuditFile(path, { chunkBytes: 64, maxLineBytes: long })).toMatchObject({ ok: true, lines: 6 });
    expect(await verifyAuditFile(path, { chunkBytes: 64, maxLineBytes: long - 1 })).toMatchObject({ ok: false, line: 3 });
  });

  it('the last line over the cap, with no newline after it', async () => {
    const path = await file(join1(lines.slice(0, 3)).slice(0, -1));
    expect(await verifyAuditFile(path, { chunkBytes: 100, maxLineBytes: 1000 })).toEqual({ ok: false, lines: 3, line: 3, problem: expect.stringMatching(/^line 3: longer than 1000 bytes/) });
  });

  it('by default a line over 16 MiB fails as too long (the message does not echo it)', async () => {
    const huge = Buffer.alloc(16 * 1024 * 1024 + 1, 0x61); // "aaaa…": not JSON either, but its length is what is reported
    const path = await file(Buffer.concat([Buffer.from(join1(lines.slice(0, 1)), 'utf8'), huge, Buffer.from('\n')]));
    const r = await verifyAuditFile(path);
    expect(r).toEqual({ ok: false, lines: 2, line: 2, problem: expect.stringMatching(/^line 2: longer than 16777216 bytes/) });
    expect(!r.ok && r.problem.length).toBeLessThan(200);
  });
});

describe('whatever fails while checking a line is that line\'s failure', () => {
  const lines = chain(3);
  const DEPTH = 20_000;
  const nested = `${'{"a":'.repeat(DEPTH)}1${'}'.repeat(DEPTH)}`;

  it('a detail nested 20,000 levels (too deep for JSON.stringify) fails its line, not the whole file as "cannot read"', async () => {
    const deep = (lines[1] as string).replace(',"prev":', `,"detail":${nested},"prev":`);
    const text = join1([lines[0] as string, deep, lines[2] as string]);
    const expected = { ok: false, lines: 3, line: 2, problem: expect.stringMatching(/^line 2: cannot be checked \(Maximum call stack size exceeded\)/) };
    expect(verifyAuditChain(text)).toEqual(expected);
    const path = await file(text);
    expect(await verifyAuditFiles([path])).toEqual({ ok: false, file: path, result: expected });
  });

  it('a required field nested 20,000 levels deep is named, not echoed', async () => {
    const deep = (lines[1] as string).replace(/"time":"[^"]*"/, `"time":${nested}`);
    const path = await file(join1([lines[0] as string, deep]));
    expect(await verifyAuditFiles([path])).toMatchObject({ ok: false, file: path, result: { line: 2, problem: 'line 2: field "time" must be a string, got an object' } });
  });
});

describe('messages clip the values they echo', () => {
  const lines = chain(2);
  const BIG = 5_000_000;

  it.each([
    ['a 5 MB "time" (an array)', (l: string) => l.replace(/"time":"[^"]*"/, `"time":["${'x'.repeat(BIG)}"]`), /^line 2: field "time" must be a string, got \["x{78}…$/],
    ['a 5 MB "seq" (a string)', (l: string) => l.replace(/"seq":\d+/, `"seq":"${'1'.repeat(BIG)}"`), /^line 2: field "seq" must be a positive integer, got "1{79}…$/],
    ['a 5 MB "to_owner" (an object of 4-byte characters)', (l: string) => l.replace(/"to_owner":"[^"]*"/, `"to_owner":{"k":"x${'𝄞'.repeat(BIG / 4)}"}`), /^line 2: field "to_owner" must be a string or null, got \{"k":"x(𝄞)+…$/], // cut before a pair, not inside it
  ] as const)('%s: the message shows 80 characters and "…"', async (_what, change, problem) => {
    const path = await file(join1([lines[0] as string, change(lines[1] as string)]));
    const r = await verifyAuditFiles([path]);
    expect(r).toMatchObject({ ok: false, file: path, result: { line: 2, problem: expect.stringMatching(problem) } });
    expect(!r.ok && r.result.problem.length).toBeLessThan(160);
  });

  it('short values are echoed whole, as before', () => {
    const text = join1([(lines[0] as string).replace('"to_owner":"node-b"', '"to_owner":7')]);
    expect(verifyAuditChain(text)).toMatchObject({ ok: false, line: 1, problem: 'line 1: field "to_owner" must be a string or null, got 7' });
  });
});
