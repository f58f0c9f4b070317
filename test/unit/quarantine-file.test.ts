import { afterEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { captureLogs } from '../helpers/in-process.js';
import { waitFor } from '../helpers/wait.js';
import { QuarantineFile } from '../../src/net/quarantine-file.js';
import type { HeldPort } from '../../src/net/port-quarantine.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function source(entries: HeldPort[]): { quarantineEntries: () => HeldPort[]; restoreQuarantine: (e: readonly HeldPort[]) => void; restored: HeldPort[][] } {
  const restored: HeldPort[][] = [];
  return { quarantineEntries: () => entries.slice(), restoreQuarantine: (e) => restored.push([...e]), restored };
}

describe('QuarantineFile (backend.port_quarantine_path)', () => {
  it('writes while running (what a crash would leave), once more at close, and the next start holds it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anchor-pq-'));
    dirs.push(dir);
    const path = join(dir, 'ports.json');
    const logs = captureLogs();
    const live = [{ node: 'a', port: 40_001, ageMs: 0 }];
    const first = new QuarantineFile(path, source(live), { wall: () => 1_000, director: 'd1', logger: logs.logger });
    first.start(new Set(['a']), 10);
    await waitFor('a periodic write', () => {
      try {
        return readFileSync(path, 'utf8').includes('40001');
      } catch {
        return false;
      }
    });
    live.push({ node: 'a', port: 40_002, ageMs: 5 });
    await first.close();
    expect(logs.lines().some((l) => l.msg === 'held ports written for the next run' && l.ports === 2)).toBe(true);

    const next = source([]);
    const second = new QuarantineFile(path, next, { wall: () => 1_100, director: 'd1', logger: logs.logger });
    second.start(new Set(['a']), 60_000);
    await second.close();
    expect(next.restored).toEqual([
      [
        { node: 'a', port: 40_001, ageMs: 100 },
        { node: 'a', port: 40_002, ageMs: 105 },
      ],
    ]);
  });

  it('no file: a first start, said nothing; a file not understood or not writable: warned, and the director runs on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anchor-pq-'));
    dirs.push(dir);
    const logs = captureLogs();
    const none = source([]);
    const fresh = new QuarantineFile(join(dir, 'absent.json'), none, { wall: () => 0, director: 'd1', logger: logs.logger });
    fresh.start(new Set(['a']), 60_000);
    expect(none.restored).toEqual([]);
    expect(logs.lines().filter((l) => l.level === 40)).toEqual([]);
    await fresh.close();

    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"anchor_port_quarantine":7}');
    const q = new QuarantineFile(bad, source([]), { wall: () => 0, director: 'd1', logger: logs.logger });
    q.start(new Set(['a']), 60_000);
    await q.close();
    expect(logs.lines().some((l) => l.level === 40 && l.msg === 'port quarantine file not understood: ports the previous run used are not held' && String(l.reason).includes('version 1'))).toBe(true);

    let tries = 0;
    const counted = { quarantineEntries: () => (tries++, [{ node: 'a', port: 1, ageMs: 0 }]), restoreQuarantine: () => undefined };
    const unwritable = new QuarantineFile(join(dir, 'no-such-dir', 'ports.json'), counted, { wall: () => 0, director: 'd1', logger: logs.logger });
    unwritable.start(new Set(['a']), 5);
    await waitFor('three periodic writes to have failed', () => tries >= 4);
    await unwritable.close();
    // Said once per run of failures, not at every try.
    expect(logs.lines().filter((l) => String(l.msg).startsWith('port quarantine file not written: after a crash'))).toHaveLength(1);
    expect(logs.lines().some((l) => l.level === 40 && l.msg === 'port quarantine file not written: the next run will not hold the ports this one used')).toBe(true);
  });

  it('a path that is not a regular file is not read; writes that fail leave no temporary file; a failure after a success is said again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anchor-pq-'));
    dirs.push(dir);
    const logs = captureLogs();
    const path = join(dir, 'ports.json');
    mkdirSync(path); // a directory where the file should be: not read, and no write can replace it
    const src = source([{ node: 'a', port: 1, ageMs: 0 }]);
    let tries = 0;
    const counted = { quarantineEntries: () => (tries++, src.quarantineEntries()), restoreQuarantine: src.restoreQuarantine };
    const q = new QuarantineFile(path, counted, { wall: () => 0, director: 'd1', logger: logs.logger });
    q.start(new Set(['a']), 5);
    expect(logs.lines().some((l) => l.msg === 'port quarantine file not read: ports the previous run used are not held' && String((l.err as { message?: string })?.message).includes('not a regular file'))).toBe(true);
    const crashWarnings = (): number => logs.lines().filter((l) => String(l.msg).startsWith('port quarantine file not written: after a crash')).length;
    await waitFor('a failed periodic write', () => crashWarnings() === 1 && tries >= 2);
    // The path becomes writable: the next write works; made a directory again, the failure is said again.
    rmSync(path, { recursive: true });
    await waitFor('a periodic write to succeed', () => {
      try {
        return readFileSync(path, 'utf8').includes('"director":"d1"');
      } catch {
        return false;
      }
    });
    rmSync(path);
    mkdirSync(path);
    await waitFor('the failure said again', () => crashWarnings() === 2);
    await q.close();
    expect(readdirSync(dir).filter((f) => f !== 'ports.json')).toEqual([]); // no temporary file left
  });

  it('a stop while a periodic write is in flight waits for it, then writes last', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anchor-pq-'));
    dirs.push(dir);
    const logs = captureLogs();
    const path = join(dir, 'ports.json');
    const entries = [{ node: 'a', port: 1, ageMs: 0 }];
    let calls = 0;
    const src = { quarantineEntries: () => (calls++, entries.slice()), restoreQuarantine: () => undefined };
    const q = new QuarantineFile(path, src, { wall: () => 0, director: 'd1', logger: logs.logger });
    q.start(new Set(['a']), 1);
    await waitFor('a periodic write started', () => calls >= 1);
    entries.push({ node: 'a', port: 2, ageMs: 0 });
    await q.close();
    // Whatever the periodic write left, the stop's write is the file now.
    expect(JSON.parse(readFileSync(path, 'utf8')).ports).toEqual([
      ['a', 1, 0],
      ['a', 2, 0],
    ]);
    expect(readdirSync(dir).filter((f) => f !== 'ports.json')).toEqual([]); // no temporary file left
  });
});
