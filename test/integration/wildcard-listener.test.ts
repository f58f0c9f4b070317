// A UDP listener on a wildcard address with PROXY v2 to the nodes: a datagram socket cannot tell which of
// the host's addresses a datagram arrived on, so the director says at start that nodes see the wildcard as
// the destination. The wildcard is bound in a network namespace this test makes (`unshare -n`: only its
// own loopback), so nothing listens on the machine's addresses; root only, like the OpenVPN tests.
import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import { MAIN, tempDir } from '../helpers/director-proc.js';
import { waitFor } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
const hasTools = spawnSync('sh', ['-c', 'command -v unshare && command -v ip'], { stdio: 'ignore' }).status === 0;

describe.skipIf(!isRoot || !hasTools)('a UDP listener on a wildcard address', () => {
  it('is named at start: nodes see the wildcard as the PROXY v2 destination; one on an address is not', async () => {
    const dir = tempDir();
    const config = join(dir, 'anchor.yaml');
    writeFileSync(
      config,
      dump({
        listen: { udp: ['0.0.0.0:4600', '127.0.0.1:4601'] },
        admin: { listen: '127.0.0.1:0' },
        nodes: [{ id: 'node-a', address: '127.0.0.1:9' }],
        health: { enabled: false },
        audit: { path: join(dir, 'audit.jsonl') },
      }),
    );
    const script = 'ip link set lo up && exec "$0" "$1" run --config "$2"';
    const child = spawn('unshare', ['-n', 'sh', '-c', script, process.execPath, MAIN, config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor('the director to start', () => {
        if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}: ${out}`);
        return out.includes('director started') || undefined;
      });
      const warned = out.split('\n').filter((l) => l.includes('UDP listener on a wildcard address'));
      expect(warned).toHaveLength(1);
      expect(JSON.parse(warned[0]!)).toMatchObject({ listener: '0.0.0.0:4600' });
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }, 30_000);
});
