// A director sharing a store whose wall clock was never set says so at start: sequence bases (the numbers
// of sessions read from the store, docs/cluster.md) and the store's expiries are wall-clock times. In
// process (createAnchor) over a MemoryStore standing in for etcd, with a clock the test sets.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAnchor } from '../../src/anchor.js';
import { parseConfig } from '../../src/config/load.js';
import { MemoryStore } from '../../src/store/memory.js';
import { systemClock } from '../../src/util/clock.js';
import { captureLogs, inProcessYaml } from '../helpers/in-process.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function startedWith(wall: number, kind: 'etcd' | 'memory'): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'anchor-wall-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const logs = captureLogs();
  const store = kind === 'etcd' ? 'store:\n  kind: etcd\n  etcd:\n    endpoints: ["http://127.0.0.1:9"]\n' : '';
  const anchor = await createAnchor(parseConfig(inProcessYaml(join(dir, 'audit.jsonl'), { extra: store })), { clock: { ...systemClock, wall: () => wall }, logger: logs.logger, store: new MemoryStore() });
  cleanup.push(() => anchor.close());
  return logs.lines().filter((l) => l['level'] === 40).map((l) => String(l['msg']));
}

describe('the wall clock at start', () => {
  it('a shared store and a clock reading 1970: a warning naming why it matters; a set clock, or the in-process store: none', async () => {
    const warned = await startedWith(45_000, 'etcd');
    expect(warned.filter((m) => m.startsWith('the wall clock reads before 2025'))).toHaveLength(1);
    expect(warned.join('\n')).toMatch(/sequence numbers of sessions read from the store may repeat/);
    expect((await startedWith(Date.UTC(2026, 10, 29), 'etcd')).filter((m) => m.includes('wall clock'))).toEqual([]);
    expect((await startedWith(45_000, 'memory')).filter((m) => m.includes('wall clock'))).toEqual([]);
  });
});
