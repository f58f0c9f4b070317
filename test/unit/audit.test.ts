// The audit hash chain: a log written by createAudit verifies; every kind of tampering is reported at
// the line where the chain breaks; fast-check: a single changed byte never goes unnoticed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { chainLine, chainStart, createAudit, GENESIS, readRecordedHead, resumeAt, sameFile } from '../../src/obs/audit.js';
import type { AuditEvent, AuditLine, AuditSink, AuditStart } from '../../src/obs/audit.js';
import { waitFor } from '../helpers/wait.js';
import { checkpointOutside, verifyAuditBytes, verifyAuditChain, verifyAuditFile, verifyAuditFiles } from '../../src/obs/audit-verify.js';

const FC = { seed: 20240612, numRuns: 300 } as const;
const T0 = Date.UTC(2024, 5, 1, 12, 0, 0);

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'anchor-audit-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** Whether this process has /dev/full open (an audit stream on a path linked to it has opened). */
const openOnDevFull = (): boolean =>
  readdirSync('/proc/self/fd').some((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === '/dev/full';
    } catch {
      return false;
    }
  });

/** A path in the fresh directory `name` of the test's dir, linked to /dev/full (every write fails: ENOSPC). */
function fullDiskPath(name: string, file = 'audit.log'): string {
  const sub = join(dir, name);
  mkdirSync(sub, { recursive: true });
  const path = join(sub, file);
  symlinkSync('/dev/full', path);
  return path;
}

/** A writer on `path` that tries a failing file again only at a reopen or its close, and what it said did not reach the file. */
function closingWriter(path: string): { audit: ReturnType<typeof createAudit>; unwritten: { lines: number; lost: number }[] } {
  const unwritten: { lines: number; lost: number }[] = [];
  return { audit: createAudit({ path, wallClock: () => T0, onUnwritten: (u) => unwritten.push(u), retryMs: 3_600_000 }), unwritten };
}

function event(i: number): AuditEvent {
  const kinds = ['create', 'freeze', 'transfer', 'resume', 'reattach', 'close'] as const;
  return {
    session: (i + 1).toString(16).padStart(32, '0'),
    event: kinds[i % kinds.length] as string,
    cause: i % 2 === 0 ? 'hello' : 'drain ✓ node-b',
    from_version: i === 0 ? null : String(i),
    to_version: String(i + 1),
    from_owner: i === 0 ? null : 'node-a',
    to_owner: 'node-b',
    actor: 'dir-1',
    ...(i % 3 === 0 ? { detail: { transport: '[2001:db8::1]:443', n: i } } : {}),
  };
}

/** Writes `count` events through the real writer into a fresh file; returns its path and text. */
async function writeLog(name: string, count: number): Promise<{ path: string; text: string; lines: string[] }> {
  const path = join(dir, name);
  let t = T0;
  const audit = createAudit({ path, wallClock: () => (t += 1000) });
  for (let i = 0; i < count; i++) audit.write(event(i));
  await audit.close();
  const text = await readFile(path, 'utf8');
  return { path, text, lines: text.slice(0, -1).split('\n') };
}

const join1 = (lines: readonly string[]): string => lines.map((l) => l + '\n').join('');

/** Builds a chain of `events` in memory with the writer's own line function. */
function buildChain(events: readonly AuditEvent[]): string {
  let prev = GENESIS;
  let text = '';
  events.forEach((ev, i) => {
    const { text: line, hash } = chainLine(prev, i + 1, new Date(T0 + i).toISOString(), ev);
    prev = hash;
    text += line + '\n';
  });
  return text;
}

describe('verifyAuditChain on a log written by createAudit', () => {
  it('a fresh log verifies, and head is the SHA-256 of its last line', async () => {
    const { path, text, lines } = await writeLog('ok.log', 10);
    expect(lines).toHaveLength(10);
    const head = sha256(lines[9] as string);
    const ok = { ok: true, lines: 10, head, seq: 10, start: { prev: GENESIS, seq: 1 } };
    expect(verifyAuditChain(text)).toEqual(ok);
    expect(await verifyAuditFile(path)).toEqual(ok);
    expect(verifyAuditChain(text, { head })).toEqual(ok);
    // A missing final newline alone is tolerated (the last line is whole).
    expect(verifyAuditChain(text.slice(0, -1))).toEqual(ok);
  });

  it('an empty log is ok with 0 lines', async () => {
    const path = join(dir, 'empty.log');
    await writeFile(path, '');
    expect(await verifyAuditFile(path)).toEqual({ ok: true, lines: 0, head: GENESIS, seq: 0, start: { prev: GENESIS, seq: 1 } });
    expect(verifyAuditChain('', { head: sha256('x') })).toMatchObject({ ok: false, lines: 0 });
  });

  it('a changed field is reported at the next line (whose prev no longer matches)', async () => {
    const { lines } = await writeLog('field.log', 10);
    const tampered = [...lines];
    tampered[3] = (lines[3] as string).replace('"to_owner":"node-b"', '"to_owner":"node-x"');
    expect(tampered[3]).not.toBe(lines[3]);
    expect(verifyAuditChain(join1(tampered))).toEqual({
      ok: false,
      lines: 10,
      line: 5,
      problem: 'line 5: prev does not match the SHA-256 of line 4 (the chain is broken: a line was changed, removed or inserted)',
    });
  });

  it('a changed seq is reported at its own line', async () => {
    const { lines } = await writeLog('seq.log', 10);
    const tampered = [...lines];
    tampered[3] = (lines[3] as string).replace('"seq":4,', '"seq":40,');
    expect(verifyAuditChain(join1(tampered))).toMatchObject({ ok: false, line: 4, problem: expect.stringMatching(/^line 4: seq is 40, expected 4/) });
  });

  it('a deleted line is reported where it was', async () => {
    const { lines } = await writeLog('delete.log', 10);
    const tampered = lines.filter((_, i) => i !== 3);
    expect(verifyAuditChain(join1(tampered))).toMatchObject({ ok: false, lines: 9, line: 4, problem: expect.stringMatching(/^line 4: prev does not match the SHA-256 of line 3/) });
  });

  it('the first line deleted: the chain does not start at GENESIS', async () => {
    const { lines } = await writeLog('delete-first.log', 5);
    expect(verifyAuditChain(join1(lines.slice(1)))).toMatchObject({ ok: false, line: 1, problem: expect.stringMatching(/^line 1: prev is not GENESIS/) });
  });

  it('two swapped lines are reported at the first of them', async () => {
    const { lines } = await writeLog('swap.log', 10);
    const tampered = [...lines];
    tampered[2] = lines[3] as string;
    tampered[3] = lines[2] as string;
    expect(verifyAuditChain(join1(tampered))).toMatchObject({ ok: false, line: 3, problem: expect.stringMatching(/^line 3: prev does not match/) });
  });

  it('an inserted line is reported: a copy at once, a well-forged one at the line after it', async () => {
    const { lines } = await writeLog('insert.log', 10);
    // A duplicate of line 2 inserted after it.
    const dup = [...lines.slice(0, 2), lines[1] as string, ...lines.slice(2)];
    expect(verifyAuditChain(join1(dup))).toMatchObject({ ok: false, lines: 11, line: 3, problem: expect.stringMatching(/^line 3: prev does not match the SHA-256 of line 2/) });
    // A forged line 7 that chains correctly from line 6 and carries seq 7: the old line 7 (now 8) betrays it.
    const forged = chainLine(sha256(lines[5] as string), 7, new Date(T0).toISOString(), event(99)).text;
    const ins = [...lines.slice(0, 6), forged, ...lines.slice(6)];
    expect(verifyAuditChain(join1(ins))).toMatchObject({ ok: false, lines: 11, line: 8, problem: expect.stringMatching(/^line 8: prev does not match the SHA-256 of line 7/) });
  });

  it('a last line cut short (a crash mid-write) is reported', async () => {
    const { path, text } = await writeLog('cut.log', 10);
    const cut = text.slice(0, text.length - 20);
    await writeFile(path, cut);
    expect(await verifyAuditFile(path)).toMatchObject({ ok: false, lines: 10, line: 10, problem: expect.stringMatching(/^line 10: the last line is cut short/) });
    // The intact lines before it are said, with their head (what a checkpoint or a recorded head is held to).
    const ninth = sha256(text.split('\n')[8] as string);
    expect((await verifyAuditFile(path)).ok === false && (await verifyAuditFile(path) as { problem: string }).problem.endsWith(`; the 9 lines before it verify (seq 9, head ${ninth})`)).toBe(true);
  });

  it('whole lines cut from the end pass the chain alone, and are caught with the expected head', async () => {
    const { lines } = await writeLog('tail.log', 10);
    const head = sha256(lines[9] as string);
    const cut = join1(lines.slice(0, 7));
    expect(verifyAuditChain(cut)).toMatchObject({ ok: true, lines: 7 });
    expect(verifyAuditChain(cut, { head })).toMatchObject({ ok: false, lines: 7, line: 7, problem: expect.stringMatching(/^line 7: its SHA-256 is not the expected head/) });
  });

  it('a change inside the last line is only visible with the expected head', async () => {
    const { lines } = await writeLog('last.log', 10);
    const head = sha256(lines[9] as string);
    const tampered = [...lines];
    tampered[9] = (lines[9] as string).replace('"to_owner":"node-b"', '"to_owner":"node-x"');
    expect(verifyAuditChain(join1(tampered))).toMatchObject({ ok: true });
    expect(verifyAuditChain(join1(tampered), { head })).toMatchObject({ ok: false, line: 10 });
  });

  it('reports lines that are not audit lines, with what is wrong', () => {
    const good = buildChain([event(0), event(1)]);
    const [l1, l2] = good.slice(0, -1).split('\n') as [string, string];
    const cases: Array<[string, number, RegExp]> = [
      [`${l1}\n\n${l2}\n`, 2, /^line 2: is empty$/],
      [`${l1}\nnot json\n`, 2, /^line 2: is not valid JSON/],
      [`${l1}\n[1,2]\n`, 2, /^line 2: is not a JSON object$/],
      [`${l1}\n${l2.replace('"actor":"dir-1",', '')}\n`, 2, /^line 2: has no "actor" field$/],
      [`${l1.replace('"seq":1', '"seq":"1"')}\n`, 1, /^line 1: field "seq" must be a positive integer, got "1"$/],
      [`${l1.replace(/"prev":"0+"/, `"prev":"${'0'.repeat(63)}"`)}\n`, 1, /^line 1: field "prev" must be 64 lowercase hex characters/],
      [`${l1.replace('"to_owner":"node-b"', '"to_owner":7')}\n`, 1, /^line 1: field "to_owner" must be a string or null, got 7$/],
      [`${l1.replace('"seq":1,', '"seq": 1,')}\n`, 1, /^line 1: is not byte-for-byte what the writer produces/],
      [`${l1} \n`, 1, /^line 1: is not byte-for-byte/],
    ];
    for (const [text, line, problem] of cases) {
      const r = verifyAuditChain(text);
      expect(r.ok, text).toBe(false);
      if (!r.ok) {
        expect(r.line, text).toBe(line);
        expect(r.problem, text).toMatch(problem);
      }
    }
  });

  it('reports invalid UTF-8 at its line', async () => {
    const text = buildChain([event(0), event(1), event(2)]);
    const bytes = Buffer.from(text, 'utf8');
    const at = text.indexOf('\n', text.indexOf('\n') + 1) + 5; // inside line 3
    bytes[at] = 0xff;
    const path = join(dir, 'utf8.log');
    await writeFile(path, bytes);
    expect(await verifyAuditFile(path)).toEqual({ ok: false, lines: 3, line: 3, problem: 'line 3: is not valid UTF-8' });
  });
});

/** Audit events with arbitrary text fields (up to `textMax` UTF-16 units, any code point) and `events`. */
function auditEvents(textMax: number, events: readonly string[]): fc.Arbitrary<AuditEvent> {
  const text = fc.string({ unit: 'binary', maxLength: textMax });
  return fc.record(
    {
      session: fc.option(fc.stringMatching(/^[0-9a-f]{32}$/), { nil: null }),
      event: fc.constantFrom(...events),
      cause: text,
      from_version: fc.option(fc.bigInt({ min: 1n, max: 2n ** 64n - 1n }).map(String), { nil: null }),
      to_version: fc.option(fc.bigInt({ min: 1n, max: 2n ** 64n - 1n }).map(String), { nil: null }),
      from_owner: fc.option(text, { nil: null }),
      to_owner: fc.option(text, { nil: null }),
      actor: text,
      detail: fc.dictionary(text, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
    },
    { requiredKeys: ['session', 'event', 'cause', 'from_version', 'to_version', 'from_owner', 'to_owner', 'actor'] },
  ) as fc.Arbitrary<AuditEvent>;
}

describe('verifyAuditChain properties', () => {
  const ev = auditEvents(12, ['create', 'transfer', 'expire', 'SECURITY_EVENT']);
  const chain = fc.array(ev, { minLength: 1, maxLength: 6 }).map(buildChain);

  it('a line\'s text is exactly JSON.stringify of the line, keys in the documented order', () => {
    fc.assert(
      fc.property(ev, fc.stringMatching(/^[0-9a-f]{64}$/), fc.nat(), (e, prev, seq) => {
        const { line, text: written } = chainLine(prev, seq, new Date(T0 + seq).toISOString(), e);
        const order = ['time', 'seq', 'session', 'event', 'cause', 'from_version', 'to_version', 'from_owner', 'to_owner', 'actor', 'detail', 'prev'];
        const expected = JSON.stringify(Object.fromEntries(order.filter((k) => k in line).map((k) => [k, (line as unknown as Record<string, unknown>)[k]])));
        expect(written).toBe(expected);
        expect(JSON.parse(written)).toEqual(line);
      }),
      FC,
    );
  });

  it('every chain built by the writer verifies', () => {
    fc.assert(
      fc.property(chain, (t) => {
        const r = verifyAuditChain(t);
        expect(r).toMatchObject({ ok: true });
        expect(verifyAuditBytes(Buffer.from(t, 'utf8'))).toEqual(r);
      }),
      FC,
    );
  });

  it('a single changed byte outside the last line is detected, at its line or the next', () => {
    fc.assert(
      fc.property(chain, fc.nat(), fc.integer({ min: 1, max: 255 }), (t, p, x) => {
        const bytes = Buffer.from(t, 'utf8');
        const lastStart = bytes.lastIndexOf(0x0a, bytes.length - 2) + 1;
        // Any byte before the last line, or the final newline.
        let pos = p % (lastStart + 1);
        if (pos === lastStart) pos = bytes.length - 1;
        const lineOf = bytes.subarray(0, pos).filter((b) => b === 0x0a).length + 1;
        bytes[pos] = (bytes[pos] as number) ^ x;
        const r = verifyAuditBytes(bytes);
        expect(r.ok).toBe(false);
        if (!r.ok) expect([lineOf, lineOf + 1]).toContain(r.line);
      }),
      FC,
    );
  });

  it('with the expected head, a single changed byte anywhere is detected', () => {
    fc.assert(
      fc.property(chain, fc.nat(), fc.integer({ min: 1, max: 255 }), (t, p, x) => {
        const head = verifyAuditChain(t);
        if (!head.ok) throw new Error(head.problem);
        const bytes = Buffer.from(t, 'utf8');
        const pos = p % bytes.length;
        bytes[pos] = (bytes[pos] as number) ^ x;
        expect(verifyAuditBytes(bytes, { head: head.head }).ok).toBe(false);
      }),
      FC,
    );
  });
});

describe('createAudit writes exactly the chain chainLine builds', () => {
  it('property: the file is the chain of the same events, byte for byte, whether lines are flushed one turn at a time or in one', async () => {
    const ev = auditEvents(40, ['create', 'freeze', 'transfer', 'SECURITY_EVENT']);
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(ev, { minLength: 1, maxLength: 12 }), fc.boolean(), async (events, yieldBetween) => {
        const path = join(dir, `prop-${n++}.log`);
        let t = T0;
        const a = createAudit({ path, wallClock: () => t++ });
        for (const e of events) {
          a.write(e);
          if (yieldBetween) await new Promise((r) => setImmediate(r));
        }
        await a.close();
        let prev = GENESIS;
        let want = '';
        events.forEach((e, i) => {
          const c = chainLine(prev, i + 1, new Date(T0 + i).toISOString(), e);
          prev = c.hash;
          want += c.text + '\n';
        });
        expect(await readFile(path, 'utf8')).toBe(want);
        expect(a.recent({ limit: 100 }).at(-1)?.prev).toBe(events.length === 1 ? GENESIS : sha256(want.split('\n').at(-3) as string));
      }),
      { seed: FC.seed, numRuns: 60 },
    );
  });

  it('a burst of lines larger than the write buffer (and one line larger than it) in one turn verifies', async () => {
    const path = join(dir, 'burst.log');
    const a = createAudit({ path, wallClock: () => T0 });
    const long = 'x'.repeat(300 * 1024);
    for (let i = 0; i < 3000; i++) a.write({ ...event(i), ...(i === 1500 ? { detail: { long } } : {}) });
    await a.close();
    const text = await readFile(path, 'utf8');
    expect(verifyAuditChain(text)).toMatchObject({ ok: true, lines: 3000 });
    expect(text).toContain(long);
  });

  /** The lines chainLine builds for `events` written at T0, T0 + 1 ms, … (the writers below tick 1 ms a line). */
  function chainOf(events: readonly AuditEvent[]): { lines: AuditLine[]; text: string } {
    let prev = GENESIS;
    const lines: AuditLine[] = [];
    let text = '';
    events.forEach((e, i) => {
      const c = chainLine(prev, i + 1, new Date(T0 + i).toISOString(), e);
      prev = c.hash;
      lines.push(c.line);
      text += c.text + '\n';
    });
    return { lines, text };
  }

  it('fields that repeat from line to line, and change back and forth among more values than the writer keeps, are written exactly', async () => {
    // A drain's lines share their event, cause, nodes and actor; other traffic cycles through many. Twelve
    // (event, cause) pairs and twelve (from, to, actor) triples, some needing escapes, the same text
    // sometimes as another string object.
    const causes = ['drain', 'migrate', 'hello', 'ünïcode', 'quote"d', 'back\\slash', 'tab\t', '', 'failover', 'idle_ttl', 'bind', 'x'.repeat(40)];
    const nodes = ['node-a', 'node-b', null, 'nöde-c', 'node "d"', 'node-e'];
    const events: AuditEvent[] = [];
    for (let i = 0; i < 400; i++) {
      const k = (i * 7) % 12;
      events.push({
        session: i % 17 === 0 ? null : (i + 1).toString(16).padStart(32, '0'),
        event: ['freeze', 'transfer', 'resume'][i % 3] as string,
        cause: i % 5 === 0 ? Array.from(causes[k] as string).join('') : (causes[k] as string),
        from_version: i % 11 === 0 ? null : String(i),
        to_version: String(i + 1),
        from_owner: nodes[k % 6] as string | null,
        to_owner: nodes[(k + 1) % 6] as string | null,
        actor: `drain:dr-${k % 4}`,
        ...(i % 50 === 0 ? { detail: { transport: '[2001:db8::1]:443', n: i } } : {}),
      });
    }
    const path = join(dir, 'parts.log');
    let t = T0;
    const a = createAudit({ path, wallClock: () => t++ });
    for (const [i, e] of events.entries()) {
      a.write(e);
      if (i % 97 === 0) await new Promise((r) => setImmediate(r));
    }
    await a.close();
    expect(await readFile(path, 'utf8')).toBe(chainOf(events).text);
  });

  it('lines written over several turns, crossing write buffers within a turn and between turns, are the chain, in order', async () => {
    const path = join(dir, 'turns.log');
    let t = T0;
    const a = createAudit({ path, wallClock: () => t++ });
    const events: AuditEvent[] = [];
    for (let turn = 0; turn < 6; turn++) {
      // 300 to 1800 lines a turn: a write buffer holds a few hundred.
      for (let i = 0; i < 300 * (turn + 1); i++) {
        const e = event(events.length);
        events.push(e);
        a.write(e);
      }
      await new Promise((r) => setImmediate(r));
    }
    await a.close();
    const text = await readFile(path, 'utf8');
    expect(verifyAuditChain(text)).toMatchObject({ ok: true, lines: events.length });
    expect(text).toBe(chainOf(events).text);
  });

  it('recent() gives the latest lines as written, with or without a file, after the kept lines wrapped around', async () => {
    const events = Array.from({ length: 23 }, (_, i) => event(i));
    const want = chainOf(events).lines;
    const seen: AuditLine[] = [];
    for (const path of [join(dir, 'recent.log'), null]) {
      let t = T0;
      const a = createAudit({ path, wallClock: () => t++, keep: 7, ...(path === null ? { onLine: (l: AuditLine) => seen.push(l) } : {}) });
      for (const e of events.slice(0, 10)) a.write(e);
      // Read once before the ring wraps again: the lines it returned stay right afterwards.
      expect(a.recent({ limit: 3 })).toEqual(want.slice(7, 10));
      for (const e of events.slice(10)) a.write(e);
      expect(a.recent()).toEqual(want.slice(16));
      expect(a.recent({ limit: 2 })).toEqual(want.slice(21));
      expect(a.recent()).toEqual(want.slice(16)); // asked twice: the same
      const s = want[18]!.session as string;
      expect(a.recent({ session: s })).toEqual([want[18]]);
      expect(a.recent({ session: 'f'.repeat(32) })).toEqual([]);
      await a.close();
    }
    // Without a file, each line is also handed to onLine as it is written.
    expect(seen).toEqual(want);
  });
});

describe('createAudit continues an existing file', () => {
  const ev = (n: number) => ({ session: null, event: 'create', cause: `c${n}`, from_version: null, to_version: '1', from_owner: null, to_owner: 'n', actor: 't' });

  it('appends to the chain a previous run left, so one file verifies as one chain', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anchor-audit-'));
    const path = join(dir, 'audit.jsonl');
    for (let run = 0; run < 3; run++) {
      const a = createAudit({ path, wallClock: () => 1_700_000_000_000 + run });
      for (let i = 0; i < 4; i++) a.write(ev(i));
      await a.close();
    }
    const r = verifyAuditChain(readFileSync(path, 'utf8'));
    expect(r).toMatchObject({ ok: true, lines: 12 });
  });

  it('moves a file that ends in a cut-short line aside and starts a new chain', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anchor-audit-'));
    const path = join(dir, 'audit.jsonl');
    const a = createAudit({ path, wallClock: () => 1_700_000_000_000 });
    a.write(ev(1));
    await a.close();
    appendFileSync(path, '{"time":"2023-');
    const moved: string[] = [];
    const b = createAudit({ path, wallClock: () => 1_700_000_000_001, onRotate: (m) => moved.push(m) });
    b.write(ev(2));
    await b.close();
    expect(moved).toHaveLength(1);
    expect(readFileSync(moved[0]!, 'utf8')).toContain('{"time":"2023-');
    expect(verifyAuditChain(readFileSync(path, 'utf8'))).toMatchObject({ ok: true, lines: 1 });
  });
});

describe('rotation: createAudit reopens its file, the chain goes on across files', () => {
  it('lines before reopen() are in the moved file, lines after in the new one; the files verify as one chain, and each alone from its start', async () => {
    const path = join(dir, 'rot.log');
    let t = T0;
    const audit = createAudit({ path, wallClock: () => (t += 1000) });
    for (let i = 0; i < 5; i++) audit.write(event(i));
    await audit.flush();
    await waitFor('the first 5 lines in the file', () => (existsSync(path) && readFileSync(path, 'utf8').split('\n').length === 6) || undefined);
    renameSync(path, `${path}.1`); // what logrotate does (create mode) before it sends SIGHUP
    audit.write(event(5)); // written after the move, before the reopen: still the old file's (its descriptor)
    const err = audit.reopen();
    audit.write(event(6)); // while the new file opens: queued for it
    expect(await err).toBeNull();
    for (let i = 7; i < 10; i++) audit.write(event(i));
    await audit.close();
    const old = readFileSync(`${path}.1`, 'utf8');
    const now = readFileSync(path, 'utf8');
    expect(old.trimEnd().split('\n').map((l) => (JSON.parse(l) as AuditLine).seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(now.trimEnd().split('\n').map((l) => (JSON.parse(l) as AuditLine).seq)).toEqual([7, 8, 9, 10]);
    // Together they are the chain one file would have been.
    expect(verifyAuditChain(old + now)).toMatchObject({ ok: true, lines: 10 });
    const both = await verifyAuditFiles([`${path}.1`, path]);
    expect(both).toMatchObject({ ok: true, files: 2, result: { lines: 10, seq: 10, start: { prev: GENESIS, seq: 1 } } });
    const oldHead = sha256(old.trimEnd().split('\n').at(-1) as string);
    // The new file alone: from its own first line (--continued), or from the old file's head (--prev).
    expect(verifyAuditChain(now)).toMatchObject({ ok: false, line: 1 });
    expect(verifyAuditChain(now, { start: 'any' })).toMatchObject({ ok: true, lines: 4, seq: 10, start: { prev: oldHead, seq: 7 } });
    expect(verifyAuditChain(now, { start: { prev: oldHead } })).toMatchObject({ ok: true, lines: 4, start: { prev: oldHead, seq: 7 } });
    expect(verifyAuditChain(now, { start: { prev: sha256('another') } })).toMatchObject({ ok: false, line: 1, problem: expect.stringContaining('lines were lost between the files') });
    // In the wrong order, or with a file left out, the chain is broken where they meet.
    expect(await verifyAuditFiles([path, `${path}.1`])).toMatchObject({ ok: false, file: path });
    // Rotated and compressed (logrotate's `compress`): read through gzip, by its bytes, whatever its name.
    writeFileSync(`${path}.1.gz`, gzipSync(old, { level: 1 }));
    expect(await verifyAuditFiles([`${path}.1.gz`, path])).toMatchObject({ ok: true, files: 2, result: { lines: 10, seq: 10 } });
    expect(await verifyAuditFile(`${path}.1.gz`, { chunkBytes: 7 })).toMatchObject({ ok: true, lines: 6, seq: 6 });
    // A changed line inside the archive is found as in the plain file; a cut archive cannot be read.
    writeFileSync(`${path}.2.gz`, gzipSync(old.replace('"seq":3', '"seq":33')));
    expect(await verifyAuditFile(`${path}.2.gz`)).toMatchObject({ ok: false, line: 3 });
    const gz = gzipSync(old);
    writeFileSync(`${path}.3.gz`, gz.subarray(0, gz.length - 12));
    await expect(verifyAuditFiles([`${path}.3.gz`, path])).rejects.toThrow(/^cannot read .*\.3\.gz: not a whole gzip file/);
  });

  it('a file that cannot be written: onError once, fileError says why, lines wait in memory; a reopen that works writes them first, the chain unbroken', async () => {
    const sub = join(dir, 'gone');
    mkdirSync(sub);
    const path = join(sub, 'audit.log');
    const errors: Error[] = [];
    let recovered = 0;
    let t = T0;
    // retryMs long: only the reopens below open the file.
    const audit = createAudit({ path, wallClock: () => (t += 1000), onError: (e) => errors.push(e), onRecover: () => recovered++, retryMs: 3_600_000 });
    audit.write(event(0));
    await audit.flush();
    await waitFor('the first line in the file', () => (existsSync(path) && readFileSync(path, 'utf8').length > 0) || undefined);
    expect(audit.fileError).toBeNull();
    const first = readFileSync(path, 'utf8');
    rmSync(sub, { recursive: true });
    expect(await audit.reopen()).toBeInstanceOf(Error); // the directory is gone: ENOENT
    expect(audit.fileError).toBeInstanceOf(Error);
    expect(errors).toHaveLength(1);
    audit.write(event(1));
    audit.write(event(2));
    await audit.flush();
    expect(await audit.reopen()).toBeInstanceOf(Error); // still gone
    expect(errors).toHaveLength(1); // once per failure, not per try
    expect(audit.recent({ limit: 10 }).map((l) => l.seq)).toEqual([1, 2, 3]);
    expect(audit.unwritten()).toMatchObject({ lines: 2, lost: 0 });
    mkdirSync(sub);
    expect(await audit.reopen()).toBeNull();
    // Good again once the first waiting batch is written (a full disk opens, and fails the write).
    await waitFor('the file written again', () => audit.fileError === null || undefined);
    audit.write(event(3));
    await audit.close();
    expect(recovered).toBe(1);
    expect(audit.unwritten()).toEqual({ lines: 0, bytes: 0, lost: 0 });
    // Lines 2 and 3 waited and went to the new file before line 4: with the first file, one chain.
    const text = readFileSync(path, 'utf8');
    expect(text.trimEnd().split('\n').map((l) => (JSON.parse(l) as AuditLine).seq)).toEqual([2, 3, 4]);
    expect(verifyAuditChain(first + text)).toMatchObject({ ok: true, lines: 4 });
  });

  it('a disk that is full (/dev/full): lines wait, the file is tried again by itself, and once it can be written every line is in it, from the first', async () => {
    const path = fullDiskPath('retry'); // every write fails: ENOSPC
    const errors: Error[] = [];
    let recovered = 0;
    let t = T0;
    const audit = createAudit({ path, wallClock: () => (t += 1000), onError: (e) => errors.push(e), onRecover: () => recovered++, retryMs: 20 });
    for (let i = 0; i < 50; i++) audit.write(event(i));
    await waitFor('the write error', () => audit.fileError ?? undefined);
    expect((audit.fileError as NodeJS.ErrnoException).code).toBe('ENOSPC');
    for (let i = 50; i < 60; i++) audit.write(event(i));
    // Some retries fail too (the link is still there): told once all the same.
    await waitFor('a few failed retries', () => audit.unwritten().lines === 60 || undefined);
    await new Promise((r) => setTimeout(r, 0));
    expect(errors).toHaveLength(1);
    expect(recovered).toBe(0);
    // Space is back: the path is a regular file again.
    writeFileSync(`${path}.fresh`, '');
    renameSync(`${path}.fresh`, path);
    await waitFor('the waiting lines written', () => (audit.fileError === null && audit.unwritten().lines === 0) || undefined);
    expect(recovered).toBe(1);
    audit.write(event(60));
    await audit.close();
    expect(errors).toHaveLength(1);
    const r = await verifyAuditFile(path);
    expect(r).toMatchObject({ ok: true, lines: 61, seq: 61, start: { prev: GENESIS, seq: 1 } });
  });

  it('the wait is bounded (backlogBytes): lines beyond it are lost to the file and counted, told once; the file then shows the gap', async () => {
    const path = fullDiskPath('bounded');
    const full: number[] = [];
    const unwritten: { lines: number; lost: number }[] = [];
    let t = T0;
    const audit = createAudit({ path, wallClock: () => (t += 1000), onBacklogFull: (b) => full.push(b), onUnwritten: (u) => unwritten.push(u), backlogBytes: 4096, retryMs: 3_600_000 });
    audit.write(event(0));
    await waitFor('the write error', () => audit.fileError ?? undefined);
    // One batch per turn: each waits while it fits in 4,096 bytes.
    for (let i = 1; i < 40; i++) {
      audit.write(event(i));
      await new Promise((r) => setImmediate(r));
    }
    const u = audit.unwritten();
    expect(u.bytes).toBeLessThanOrEqual(4096);
    expect(u.lost).toBeGreaterThan(0);
    expect(u.lines + u.lost).toBe(40);
    expect(full).toHaveLength(1);
    rmSync(path);
    expect(await audit.reopen()).toBeNull();
    await audit.close();
    expect(unwritten).toEqual([{ lines: 0, lost: u.lost }]);
    const text = readFileSync(path, 'utf8');
    const seqs = text.trimEnd().split('\n').map((l) => (JSON.parse(l) as AuditLine).seq);
    // The lines that waited (the first ones), then the gap.
    expect(seqs).toEqual(Array.from({ length: u.lines }, (_, i) => i + 1));
    expect(verifyAuditChain(text)).toMatchObject({ ok: true, lines: u.lines });
  });

  it('a reopen of a good file holds no line to the bound (backlogBytes 0): none lost, none told', async () => {
    const path = join(dir, 'bound0.log');
    const full: number[] = [];
    let t = T0;
    const audit = createAudit({ path, wallClock: () => (t += 1000), backlogBytes: 0, onBacklogFull: (b) => full.push(b) });
    for (let i = 0; i < 5; i++) audit.write(event(i));
    const r = audit.reopen();
    for (let i = 5; i < 10; i++) audit.write(event(i));
    await new Promise((res) => setImmediate(res)); // a batch written while the reopen runs
    expect(await r).toBeNull();
    await audit.close();
    expect(audit.unwritten().lost).toBe(0);
    expect(full).toEqual([]);
    expect(await verifyAuditFile(path)).toMatchObject({ ok: true, lines: 10 });
  });

  it('a reopen asked while close() runs (a SIGHUP during a stop) takes nothing from it: the lines that waited are written', async () => {
    const path = fullDiskPath('close-race');
    const { audit, unwritten } = closingWriter(path);
    for (let i = 0; i < 7; i++) audit.write(event(i));
    await waitFor('the write error', () => audit.fileError ?? undefined);
    rmSync(path); // writable again, not yet tried
    const closing = audit.close();
    expect(await audit.reopen()).toBeNull();
    await closing;
    expect(unwritten).toEqual([]);
    expect(await verifyAuditFile(path)).toMatchObject({ ok: true, lines: 7 });
  });

  it('close() with a file that still cannot be written tries it once more, then says how many lines did not reach it', async () => {
    const path = fullDiskPath('closing');
    const { audit, unwritten } = closingWriter(path);
    for (let i = 0; i < 7; i++) audit.write(event(i));
    await waitFor('the write error', () => audit.fileError ?? undefined);
    await audit.close();
    expect(unwritten).toEqual([{ lines: 7, lost: 0 }]);
    // And when it can be written by then, the lines are in it.
    const path2 = fullDiskPath('closing', 'audit2.log');
    const { audit: b, unwritten: unwritten2 } = closingWriter(path2);
    for (let i = 0; i < 7; i++) b.write(event(i));
    await waitFor('the write error', () => b.fileError ?? undefined);
    rmSync(path2);
    await b.close();
    expect(unwritten2).toEqual([]);
    expect(await verifyAuditFile(path2)).toMatchObject({ ok: true, lines: 7 });
  });

  it('close() right after a write that fails (its error not told yet) still tries the file once more: the lines reach it', async () => {
    const path = fullDiskPath('closing-window');
    const { audit, unwritten } = closingWriter(path);
    await waitFor('the audit stream open on /dev/full', () => openOnDevFull() || undefined);
    for (let i = 0; i < 7; i++) audit.write(event(i));
    // The lines go to /dev/full when close() hands them over; the path is writable for the last try.
    rmSync(path);
    expect(audit.fileError).toBeNull();
    await audit.close();
    expect(unwritten).toEqual([]);
    expect(await verifyAuditFile(path)).toMatchObject({ ok: true, lines: 7 });
  });

  it('what is written is synced to the disk every syncMs (a file that cannot be synced, /dev/null, says so once: onSyncError)', async () => {
    const sub = join(dir, 'sync');
    mkdirSync(sub);
    const path = join(sub, 'audit.log');
    symlinkSync('/dev/null', path); // writes succeed, fdatasync fails: EINVAL
    const syncErrors: Error[] = [];
    const audit = createAudit({ path, wallClock: () => T0, onSyncError: (e) => syncErrors.push(e), syncMs: 10, retryMs: 3_600_000 });
    audit.write(event(0));
    await waitFor('the periodic sync', () => syncErrors.length > 0 || undefined);
    expect((syncErrors[0] as NodeJS.ErrnoException).code).toBe('EINVAL');
    expect(audit.fileError).toBeNull(); // the lines are written: only their sync failed
    audit.write(event(1));
    await audit.flush(); // queued for the stream
    await waitFor('the second line written', () => audit.unwritten().lines === 0 || undefined);
    expect(syncErrors).toHaveLength(1); // told once while it keeps failing
  });

  it('the file is synced when it is closed', async () => {
    const sub = join(dir, 'sync-close');
    mkdirSync(sub);
    const path = join(sub, 'audit.log');
    symlinkSync('/dev/null', path);
    const syncErrors: Error[] = [];
    const audit = createAudit({ path, wallClock: () => T0, onSyncError: (e) => syncErrors.push(e), syncMs: 3_600_000, retryMs: 3_600_000 });
    audit.write(event(0));
    await audit.flush();
    await waitFor('the line written', () => audit.unwritten().lines === 0 || undefined);
    expect(syncErrors).toHaveLength(0); // no periodic sync within the hour
    await audit.close();
    expect(syncErrors.map((e) => (e as NodeJS.ErrnoException).code)).toEqual(['EINVAL']);
  });

  it('a reopen of a file that was not moved (a reload): lines after it never overtake lines before it; a second reopen waits for the first', async () => {
    // The old stream still writing a drain's worth of lines while the new one appends to the same file.
    for (let run = 0; run < 5; run++) {
      const path = join(dir, `same-${run}.log`);
      let t = T0;
      const audit = createAudit({ path, wallClock: () => (t += 1) });
      audit.write(event(0));
      await audit.flush();
      for (let i = 1; i <= 20_000; i++) audit.write(event(i));
      await new Promise((r) => setImmediate(r)); // handed to the stream, not yet written
      const first = audit.reopen();
      for (let i = 0; i < 10; i++) audit.write(event(i));
      const second = audit.reopen();
      audit.write(event(11));
      expect(await first).toBeNull();
      expect(await second).toBeNull();
      audit.write(event(12));
      await audit.close();
      const r = await verifyAuditFile(path);
      expect(r).toMatchObject({ ok: true, seq: 20_013 });
    }
  });

  it('a write error of the stream a reopen replaced is told (onError), not swallowed', async () => {
    const path = fullDiskPath('full'); // every write fails: ENOSPC
    const errors: Error[] = [];
    const audit = createAudit({ path, wallClock: () => T0, onError: (e) => errors.push(e) });
    await waitFor('the audit stream open on /dev/full', () => openOnDevFull() || undefined);
    for (let i = 0; i < 5; i++) audit.write(event(i)); // handed to the stream at the end of this turn
    renameSync(path, `${path}.1`);
    expect(await audit.reopen()).toBeNull();
    expect(errors.map((e) => (e as NodeJS.ErrnoException).code)).toEqual(['ENOSPC']);
    audit.write(event(5));
    await audit.close();
    expect(audit.fileError).toBeNull(); // the new file is fine
  });

  it('flush() resolves when the file cannot be written (the error goes to onError and fileError): a drain then stops cleanly', async () => {
    const path = fullDiskPath('full2');
    const errors: Error[] = [];
    const audit = createAudit({ path, wallClock: () => T0, onError: (e) => errors.push(e) });
    await waitFor('the audit stream open on /dev/full', () => openOnDevFull() || undefined);
    for (let i = 0; i < 2000; i++) audit.write(event(i));
    await expect(audit.flush()).resolves.toBeUndefined();
    await waitFor('the error told', () => errors.length > 0 || undefined);
    expect(audit.fileError).toBeInstanceOf(Error);
    await expect(audit.close()).resolves.toBeUndefined();
  });

  it('a line whose detail JSON cannot encode is refused before it takes a seq: no gap in the chain', async () => {
    const path = join(dir, 'bigint.log');
    const audit = createAudit({ path, wallClock: () => T0 });
    audit.write(event(0));
    expect(() => audit.write({ ...event(1), detail: { version: 7n } })).toThrow(/BigInt/);
    audit.write(event(2));
    await audit.close();
    const r = await verifyAuditFile(path);
    expect(r).toMatchObject({ ok: true, lines: 2, seq: 2 });
  });

  it('without a file there is nothing to reopen', async () => {
    const audit = createAudit({ path: null, wallClock: () => T0 });
    audit.write(event(0));
    expect(await audit.reopen()).toBeNull();
    expect(audit.fileError).toBeNull();
  });
});

describe('checkpoints: lines recorded from the writer (head()) that a later verify holds the log to', () => {
  /** A log written in two parts with a checkpoint (the writer's head) taken between them, as a cron job would from GET /v1/audit/head. */
  async function logWithCheckpoint(name: string, before: number, after: number) {
    const path = join(dir, name);
    let t = T0;
    const audit = createAudit({ path, wallClock: () => (t += 1000) });
    expect(audit.head()).toEqual({ seq: 0, hash: GENESIS });
    for (let i = 0; i < before; i++) audit.write(event(i));
    const cp = audit.head();
    for (let i = before; i < before + after; i++) audit.write(event(i));
    const end = audit.head();
    await audit.close();
    const text = await readFile(path, 'utf8');
    return { path, text, lines: text.slice(0, -1).split('\n'), cp, end };
  }

  it('head() is the last line\'s seq and SHA-256: the log verifies with it as a checkpoint and as the head', async () => {
    const { path, lines, cp, end } = await logWithCheckpoint('cp-ok.jsonl', 5, 4);
    expect(cp).toEqual({ seq: 5, hash: sha256(lines[4] as string) });
    expect(end).toEqual({ seq: 9, hash: sha256(lines[8] as string) });
    const r = await verifyAuditFiles([path], { checkpoints: new Map([[cp.seq, cp.hash], [end.seq, end.hash]]), head: end.hash });
    expect(r).toMatchObject({ ok: true, result: { lines: 9, seq: 9 } });
  });

  it('lines cut from the end past a checkpoint fail (the chain alone still verifies)', async () => {
    const { path, lines, cp } = await logWithCheckpoint('cp-cut.jsonl', 6, 3);
    await writeFile(path, join1(lines.slice(0, 4)));
    expect((await verifyAuditFiles([path])).ok).toBe(true);
    const r = await verifyAuditFiles([path], { checkpoints: new Map([[cp.seq, cp.hash]]) });
    expect(r).toMatchObject({ ok: false, file: path });
    expect(!r.ok && r.result.problem).toMatch(/checkpoint of seq 6 is past the last line \(seq 4\): lines were cut from the end/);
    // Cut after the checkpoint: what it recorded is still there.
    await writeFile(path, join1(lines.slice(0, 7)));
    expect((await verifyAuditFiles([path], { checkpoints: new Map([[cp.seq, cp.hash]]) })).ok).toBe(true);
  });

  it('the checkpoint\'s own line changed (it is the last line, which no prev covers): reported at that line', async () => {
    const { path, lines, cp } = await logWithCheckpoint('cp-last.jsonl', 4, 0);
    const forged = (lines[3] as string).replace('"dir-1"', '"dir-2"');
    await writeFile(path, join1([...lines.slice(0, 3), forged]));
    expect((await verifyAuditFiles([path])).ok).toBe(true);
    const r = await verifyAuditFiles([path], { checkpoints: new Map([[cp.seq, cp.hash]]) });
    expect(r).toMatchObject({ ok: false, result: { line: 4 } });
    expect(!r.ok && r.result.problem).toMatch(/line 4: its SHA-256 is [0-9a-f]{64}, not [0-9a-f]{64} as the checkpoint of seq 4 recorded/);
  });

  it('a log replaced by another chain of the same length fails its checkpoint', async () => {
    const a = await logWithCheckpoint('cp-a.jsonl', 3, 2);
    const other = buildChain([event(7), event(8), event(9), event(10), event(11)]);
    await writeFile(a.path, other);
    expect((await verifyAuditFiles([a.path])).ok).toBe(true);
    expect((await verifyAuditFiles([a.path], { checkpoints: new Map([[a.cp.seq, a.cp.hash]]) })).ok).toBe(false);
  });

  it('across rotated files: a checkpoint in the older file holds; one before the first file given fails and says to give it', async () => {
    const { path, lines, cp } = await logWithCheckpoint('cp-rot.jsonl', 3, 5);
    await writeFile(`${path}.1`, join1(lines.slice(0, 4)));
    await writeFile(path, join1(lines.slice(4)));
    const checkpoints = new Map([[cp.seq, cp.hash]]);
    expect(await verifyAuditFiles([`${path}.1`, path], { checkpoints })).toMatchObject({ ok: true, files: 2, result: { lines: 8, seq: 8 } });
    const alone = await verifyAuditFiles([path], { start: 'any', checkpoints });
    expect(alone).toMatchObject({ ok: false, file: path });
    expect(!alone.ok && alone.result.problem).toMatch(/checkpoint of seq 3 is before the first line given \(seq 5\): give the rotated file/);
  });

  it('property: every head the writer reported holds for the whole log; cutting the log anywhere before one fails', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.array(fc.nat(), { minLength: 1, maxLength: 5 }), fc.nat(), (n, picks, cutAt) => {
        const text = buildChain(Array.from({ length: n }, (_, i) => event(i)));
        const lines = text.slice(0, -1).split('\n');
        const checkpoints = new Map(picks.map((p) => [(p % n) + 1, sha256(lines[p % n] as string)] as [number, string]));
        expect(verifyAuditChain(text, { checkpoints }).ok).toBe(true);
        const keep = cutAt % (n + 1); // 0..n lines kept
        const cut = verifyAuditChain(join1(lines.slice(0, keep)), { checkpoints });
        // The chain of what is left verifies; whether a checkpoint is past its end is verifyAuditFiles' (checkpointOutside's) to say.
        expect(cut.ok).toBe(true);
        const last = Math.max(...checkpoints.keys());
        expect(checkpointOutside(checkpoints, 1, cut.ok ? cut.seq : 0) === null).toBe(keep >= last);
      }),
      FC,
    );
  });
});

describe('the head recorded beside the file, and where a restarted writer goes on from', () => {
  const h = (seq: number, c: string): { seq: number; hash: string } => ({ seq, hash: c.repeat(64) });
  it.each([
    ['a file alone', h(5, 'a'), null, 'file', 5, null],
    ['a file ahead of the recorded head (lines after it: a crash)', h(7, 'a'), h(5, 'b'), 'file', 7, null],
    ['a file at the recorded head', h(5, 'a'), h(5, 'a'), 'file', 5, null],
    ['a file behind the recorded head', h(4, 'a'), h(5, 'b'), 'file', 4, 'behind'],
    ['a file at the recorded seq with another hash', h(5, 'a'), h(5, 'b'), 'file', 5, 'changed'],
    ['no file, a recorded head', 'missing', h(5, 'b'), 'recorded', 5, null],
    ['an empty file, a recorded head', 'empty', h(5, 'b'), 'recorded', 5, null],
    ['a broken file (moved aside), a recorded head', 'broken', h(5, 'b'), 'genesis', 0, null],
    ['a broken file whose last complete line is past the recorded head (a crash mid-write)', { broken: true, lastComplete: h(7, 'a') }, h(5, 'b'), 'genesis', 0, null],
    ['a broken file whose last complete line is behind the recorded head (lines cut, a partial one added)', { broken: true, lastComplete: h(3, 'a') }, h(5, 'b'), 'genesis', 0, 'behind'],
    ['a broken file whose last complete line is the recorded seq with another hash', { broken: true, lastComplete: h(5, 'a') }, h(5, 'b'), 'genesis', 0, 'changed'],
    ['a broken file with no complete line, a recorded head (cut inside its first line, or replaced)', { broken: true, lastComplete: null }, h(5, 'b'), 'genesis', 0, 'behind'],
    ['a broken file whose only line is one begun at the seq after the recorded head (a crash writing it)', { broken: true, lastComplete: null, cutSeq: 6 }, h(5, 'b'), 'genesis', 0, null],
    ['a broken file whose only line was begun at another seq', { broken: true, lastComplete: null, cutSeq: 3 }, h(5, 'b'), 'genesis', 0, 'behind'],
    ['a broken file with no complete line, nothing recorded (or a head at 0)', { broken: true, lastComplete: null }, null, 'genesis', 0, null],
    ['a broken file with no complete line, a head recorded before any line', { broken: true, lastComplete: null }, { seq: 0, hash: GENESIS }, 'genesis', 0, null],
    ['no file, nothing recorded', 'missing', null, 'genesis', 0, null],
    ['an empty file, a head recorded before any line', 'empty', { seq: 0, hash: GENESIS }, 'genesis', 0, null],
  ] as const)('chainStart: %s', (_what, tail, recorded, from, seq, anomaly) => {
    const s = chainStart(tail, recorded);
    expect(s.from).toBe(from);
    expect(s.head.seq).toBe(seq);
    expect(s.anomaly?.kind ?? null).toBe(anomaly);
    if (from === 'genesis') expect(s.head.hash).toBe(GENESIS);
  });

  let wall = T0;
  /** Writes events `from`..`to - 1` through a writer on `path` and stops it (its head recorded). */
  async function writeStopped(path: string, from: number, to: number): Promise<void> {
    const a = createAudit({ path, wallClock: () => (wall += 1000) });
    for (let i = from; i < to; i++) a.write(event(i));
    await a.close();
  }
  /** Starts a writer on `path` (writing `then` events after its start), stops it: where it started, and where the file went if set aside. */
  async function restart(path: string, then: readonly AuditEvent[] = []): Promise<{ start: AuditStart | null; movedTo: string }> {
    let start: AuditStart | null = null;
    let movedTo = '';
    const a = createAudit({ path, wallClock: () => (wall += 1000), onStart: (st) => (start = st), onRotate: (m) => (movedTo = m) });
    for (const ev of then) a.write(ev);
    await a.close();
    return { start, movedTo };
  }
  /** Starts a writer on `path` that writes `n` events and "crashes" (its lines flushed, never closed). */
  async function restartCrashed(path: string, n: number): Promise<{ start: AuditStart | null; writer: AuditSink }> {
    let start: AuditStart | null = null;
    const a = createAudit({ path, wallClock: () => (wall += 1000), onStart: (st) => (start = st) });
    for (let i = 0; i < n; i++) a.write(event(i));
    await a.flush();
    await waitFor(`${n} lines`, () => readFileSync(path, 'utf8').split('\n').length === n + 1 || undefined);
    return { start, writer: a };
  }
  /** `path` keeping only its first `n` lines, then `tail`. */
  const keepLines = (path: string, n: number, tail: string): void => writeFileSync(path, readFileSync(path, 'utf8').split('\n').slice(0, n).join('\n') + '\n' + tail);

  it('lines cut from the file while the writer was stopped and a partial line added: set aside as broken, and still reported as behind the recorded head', async () => {
    const path = join(dir, 'cut-partial.jsonl');
    await writeStopped(path, 0, 10); // head recorded: seq 10
    keepLines(path, 5, '{"partial');
    const { start, movedTo } = await restart(path);
    expect(movedTo).not.toBe('');
    expect(start).toMatchObject({ from: 'genesis', anomaly: { kind: 'behind', file: { seq: 5 }, recorded: { seq: 10 } } });
  });

  it('a file cut inside its first line, or replaced by what is no audit line, while the writer was stopped: reported as behind the recorded head', async () => {
    for (const [name, tail] of [['first-line', null], ['garbage', 'x'], ['garbage-line', 'garbage\n']] as const) {
      const path = join(dir, `altered-${name}.jsonl`);
      await writeStopped(path, 0, 10); // head recorded: seq 10
      writeFileSync(path, tail ?? readFileSync(path, 'utf8').slice(0, 30));
      const { start, movedTo } = await restart(path);
      expect(movedTo).not.toBe('');
      expect(start).toMatchObject({ from: 'genesis', anomaly: { kind: 'behind', file: { seq: 0 }, recorded: { seq: 10 } } });
    }
  });

  it('a crash while writing the first line after the recorded head (a rotated file): no anomaly; and a second crash after a new chain reports nothing either', async () => {
    const path = join(dir, 'crash-first.jsonl');
    await writeStopped(path, 0, 4); // head recorded: seq 4
    renameSync(path, `${path}.1`); // rotated away; the next line (seq 5) begins the new file
    writeFileSync(path, `{"time":"2026-11-29T00:00:00.000Z","seq":5,"ev`);
    const first = await restartCrashed(path, 3);
    expect(first.start).toMatchObject({ from: 'genesis', anomaly: null });
    // That run crashed too, mid-line, after three whole lines of its new chain.
    appendFileSync(path, '{"time":"2026-11-29T00:00:01.000Z","seq":4,');
    const second = await restart(path);
    expect(second.start).toMatchObject({ from: 'genesis', anomaly: null });
    await first.writer.close(); // the "crashed" run's stream, let go only now
  });

  it('an alteration found at start is found again by the next start if this run dies before its stop (its head is not recorded at start)', async () => {
    const path = join(dir, 'altered-crash.jsonl');
    await writeStopped(path, 0, 10); // head recorded: seq 10
    keepLines(path, 5, '');
    let start: AuditStart | null = null;
    const crashed = createAudit({ path, wallClock: () => (wall += 1000), onStart: (st) => (start = st) });
    expect(start).toMatchObject({ anomaly: { kind: 'behind', file: { seq: 5 }, recorded: { seq: 10 } } });
    expect((await restart(path)).start).toMatchObject({ anomaly: { kind: 'behind', file: { seq: 5 }, recorded: { seq: 10 } } });
    await crashed.close();
  });

  it('a crash mid-write (a partial line after the recorded head): set aside, no anomaly', async () => {
    const path = join(dir, 'crash-partial.jsonl');
    await writeStopped(path, 0, 3); // head recorded: seq 3
    const a = createAudit({ path, wallClock: () => (wall += 1000) });
    for (let i = 3; i < 6; i++) a.write(event(i));
    await a.flush();
    await waitFor('six lines', () => readFileSync(path, 'utf8').split('\n').length === 7 || undefined);
    appendFileSync(path, '{"seq":7,"ti'); // what a crash leaves (no close: no head recorded since seq 3)
    expect((await restart(path)).start).toMatchObject({ from: 'genesis', anomaly: null });
  });

  it('a complete last line that is not an audit line, after the recorded head: set aside, its last audit line is the head (no anomaly)', async () => {
    const path = join(dir, 'garbage-last.jsonl');
    await writeStopped(path, 0, 4); // head recorded: seq 4
    appendFileSync(path, 'not json\n');
    expect((await restart(path)).start).toMatchObject({ from: 'genesis', anomaly: null });
    // The same with a line cut from before it: behind.
    const cut = join(dir, 'garbage-last-cut.jsonl');
    await writeStopped(cut, 0, 4);
    keepLines(cut, 3, 'not json\n');
    expect((await restart(cut)).start).toMatchObject({ from: 'genesis', anomaly: { kind: 'behind', file: { seq: 3 }, recorded: { seq: 4 } } });
  });

  it('a last line longer than any fixed window (300 KiB) is read whole: the chain goes on in the file', async () => {
    const path = join(dir, 'long-last.jsonl');
    const a = createAudit({ path, wallClock: () => (wall += 1000) });
    a.write(event(0));
    a.write({ ...event(1), detail: { message: 'm'.repeat(300 * 1024) } });
    await a.close();
    const { start, movedTo } = await restart(path, [event(2)]);
    expect(movedTo).toBe('');
    expect(start).toMatchObject({ from: 'file', head: { seq: 2 }, anomaly: null });
    expect(await verifyAuditFile(path)).toMatchObject({ ok: true, lines: 3 });
  });

  it('close() and reopen() record the head beside the file; a writer started after the file was rotated away goes on with the chain', async () => {
    const path = join(dir, 'head-rot.jsonl');
    let t = T0;
    const a = createAudit({ path, wallClock: () => (t += 1000) });
    for (let i = 0; i < 3; i++) a.write(event(i));
    await a.flush();
    await waitFor('three lines in the file', () => (existsSync(path) && readFileSync(path, 'utf8').split('\n').length === 4) || undefined);
    renameSync(path, `${path}.1`);
    expect(await a.reopen()).toBeNull();
    expect(readRecordedHead(path)).toEqual(a.head()); // recorded at the reopen: seq 3
    a.write(event(3));
    await a.close();
    expect(readRecordedHead(path)).toEqual({ seq: 4, hash: sha256(readFileSync(path, 'utf8').trim()) });
    // Rotated again while stopped; the next writer's first line goes on from seq 4.
    renameSync(`${path}.1`, `${path}.2`);
    renameSync(path, `${path}.1`);
    const starts: AuditStart[] = [];
    const b = createAudit({ path, wallClock: () => (t += 1000), onStart: (s) => starts.push(s) });
    expect(starts.map((s) => [s.from, s.head.seq])).toEqual([['recorded', 4]]);
    b.write(event(4));
    await b.close();
    expect(await verifyAuditFiles([`${path}.2`, `${path}.1`, path])).toMatchObject({ ok: true, files: 3, result: { lines: 5, seq: 5 } });
  });

  it('a head that cannot be recorded is told (onHeadNotRecorded), and the log is unharmed', async () => {
    const sub = join(dir, 'head-blocked');
    mkdirSync(sub);
    const path = join(sub, 'audit.jsonl');
    mkdirSync(`${path}.head`); // a directory where the head goes: the rename over it fails
    const errors: Error[] = [];
    const a = createAudit({ path, wallClock: () => T0, onHeadNotRecorded: (e) => errors.push(e) });
    a.write(event(0));
    await a.close();
    expect(errors).toHaveLength(2); // at its start, and at its close
    expect((await verifyAuditFiles([path])).ok).toBe(true);
  });
});

describe('resumeAt: where a writer goes on with a batch a failed write cut', () => {
  const lines = fc.array(fc.string({ minLength: 0, maxLength: 40 }).map((x) => x.replace(/\n/g, ' ')), { minLength: 1, maxLength: 12 });
  it('into the same file: from the first byte not written, so the file holds the batch exactly once', () => {
    fc.assert(
      fc.property(lines, fc.nat(), (ls, k) => {
        const batch = Buffer.from(ls.map((l) => `${l}\n`).join(''));
        const written = k % batch.length;
        const from = resumeAt(batch, written, true);
        expect(Buffer.concat([batch.subarray(0, written), batch.subarray(from)]).equals(batch)).toBe(true);
      }),
    );
  });
  it('into another file: from the start of the cut line, so the new file starts with whole lines and loses none', () => {
    fc.assert(
      fc.property(lines, fc.nat(), (ls, k) => {
        const batch = Buffer.from(ls.map((l) => `${l}\n`).join(''));
        const written = k % batch.length;
        const from = resumeAt(batch, written, false);
        expect(from).toBeLessThanOrEqual(written);
        // A line starts there: the batch's start, or just after a newline.
        expect(from === 0 || batch[from - 1] === 0x0a).toBe(true);
        // And no whole line lies between it and the cut: the old file has every line before `from` whole.
        expect(batch.subarray(from, written).includes(0x0a)).toBe(false);
      }),
    );
  });
  it('nothing written: from the start, whichever file', () => {
    expect(resumeAt(Buffer.from('a\nb\n'), 0, true)).toBe(0);
    expect(resumeAt(Buffer.from('a\nb\n'), 0, false)).toBe(0);
  });
  it('sameFile: device and inode both, unknown never the same', () => {
    expect(sameFile({ dev: 1, ino: 2 }, { dev: 1, ino: 2 })).toBe(true);
    expect(sameFile({ dev: 1, ino: 2 }, { dev: 1, ino: 3 })).toBe(false);
    expect(sameFile({ dev: 1, ino: 2 }, { dev: 2, ino: 2 })).toBe(false);
    expect(sameFile(null, { dev: 1, ino: 2 })).toBe(false);
    expect(sameFile(null, null)).toBe(false);
  });
});
