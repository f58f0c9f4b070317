// backend.port_quarantine_path through createAnchor: with transparent forwarding a director keeps the file
// (a stop writes it); with PROXY v2 the key does nothing, and the director says so at start.
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAnchor } from '../../src/anchor.js';
import { parseConfig } from '../../src/config/load.js';
import { systemClock } from '../../src/util/clock.js';
import { captureLogs, inProcessYaml } from '../helpers/in-process.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const NO_EFFECT = 'backend.port_quarantine_path has no effect with backend.encapsulation: ppv2 (only transparent forwarding gives each session a port of its own)';

describe('backend.port_quarantine_path', () => {
  for (const encapsulation of ['none', 'ppv2'] as const) {
    it(`with encapsulation ${encapsulation}: ${encapsulation === 'none' ? 'a stop writes the file' : 'warned at start as having no effect; no file'}`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'anchor-pq-config-'));
      dirs.push(dir);
      const path = join(dir, 'ports.json');
      const yaml = inProcessYaml(join(dir, 'audit.jsonl'), { extra: `backend:\n  encapsulation: ${encapsulation}\n  port_quarantine_path: ${JSON.stringify(path)}\n` });
      const logs = captureLogs();
      const anchor = await createAnchor(parseConfig(yaml), { clock: systemClock, logger: logs.logger });
      await anchor.close();
      const warned = logs.lines().some((l) => l.level === 40 && l.msg === NO_EFFECT);
      if (encapsulation === 'none') {
        expect(warned).toBe(false);
        expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({ anchor_port_quarantine: 1, ports: [] });
      } else {
        expect(warned).toBe(true);
        expect(existsSync(path)).toBe(false);
      }
    });
  }
});
