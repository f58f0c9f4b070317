// `socket.native: on` and `tcp.native: on` refuse to start a director without their addon, naming the
// key and why, before anything is opened (no socket, no audit file); `auto` runs on node:dgram and Node
// streams and says so. The addons are always built here, so the loader is the one createAnchor is given.
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAnchor, type Anchor } from '../../src/anchor.js';
import { parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { systemClock } from '../../src/util/clock.js';
import { captureLogs, inProcessYaml } from '../helpers/in-process.js';

const MISSING = {
  udp: () => ({ ok: false as const, reason: 'test: the UDP addon is missing' }),
  tcp: () => ({ ok: false as const, reason: 'test: the TCP pump is missing' }),
};

const dirs: string[] = [];
const started: Anchor[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((a) => a.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(native: { socket: string; tcp: string }): { yaml: string; auditPath: string } {
  const dir = mkdtempSync(join(tmpdir(), 'anchor-native-refusal-'));
  dirs.push(dir);
  const auditPath = join(dir, 'audit.jsonl');
  const yaml = inProcessYaml(auditPath, {
    listen: '  tcp: ["127.0.0.1:0"]',
    extra: `
socket:
  native: ${native.socket}
tcp:
  native: ${native.tcp}`,
  });
  return { yaml, auditPath };
}

describe('native data paths that are missing', () => {
  for (const key of ['socket', 'tcp'] as const) {
    it(`${key}.native: on refuses to start, naming ${key}.native and why, and opens nothing`, async () => {
      const { yaml, auditPath } = setup({ socket: key === 'socket' ? 'on' : 'off', tcp: key === 'tcp' ? 'on' : 'off' });
      const { logger } = captureLogs();
      const err = await createAnchor(parseConfig(yaml), { clock: systemClock, logger, loadNative: MISSING }).then(
        (a) => {
          started.push(a);
          return null;
        },
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConfigError);
      const issues = (err as ConfigError).issues;
      expect(issues).toHaveLength(1);
      expect(issues[0]?.path).toBe(`${key}.native`);
      expect(issues[0]?.message).toContain(key === 'socket' ? 'test: the UDP addon is missing' : 'test: the TCP pump is missing');
      expect(existsSync(auditPath), 'the audit file a refused start would have opened').toBe(false);
    });
  }

  it('auto runs on node:dgram and Node streams, and says so', async () => {
    const { yaml } = setup({ socket: 'auto', tcp: 'auto' });
    const { logger, lines } = captureLogs();
    const a = await createAnchor(parseConfig(yaml), { clock: systemClock, logger, loadNative: MISSING });
    started.push(a);
    const msgs = lines().map((l) => l.msg);
    expect(msgs).toContain('native UDP I/O not available: using node:dgram');
    expect(msgs).toContain('native TCP splice pump not available: using Node streams');
    const started_ = lines().find((l) => l.msg === 'director started');
    expect(started_).toMatchObject({ udp_io: 'dgram', tcp_io: 'stream' });
  });
});
