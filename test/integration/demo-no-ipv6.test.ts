// `npm start` (`anchor demo --config config/anchor.yaml`) on a host without IPv6: the demo leaves out the
// bundled config's [::1] listeners, says so, and serves on 127.0.0.1; `anchor run` with the same config
// still refuses to start. The host without IPv6 is a network namespace this test makes (`unshare -n`,
// IPv6 turned off on its loopback): root only, like the OpenVPN tests.
import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { MAIN } from '../helpers/director-proc.js';
import { waitFor } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
const hasTools = spawnSync('sh', ['-c', 'command -v unshare && command -v nsenter && command -v ip'], { stdio: 'ignore' }).status === 0;
const CONFIG = fileURLToPath(new URL('../../config/anchor.yaml', import.meta.url));

/** Runs `anchor CMD --config config/anchor.yaml` alone in a new network namespace whose loopback has no IPv6. */
function inNamespaceWithoutIpv6(cmd: 'demo' | 'run') {
  const script = `ip link set lo up && sysctl -qw net.ipv6.conf.lo.disable_ipv6=1 && exec "$0" "$1" ${cmd} --config "$2"`;
  const child = spawn('unshare', ['-n', 'sh', '-c', script, process.execPath, MAIN, CONFIG], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out.stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out.stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, out, exited };
}

describe.skipIf(!isRoot || !hasTools)('anchor demo on a host without IPv6', () => {
  it('leaves out the [::1] listeners, names them, and serves clients on 127.0.0.1', async () => {
    const demo = inNamespaceWithoutIpv6('demo');
    try {
      await waitFor(
        'the demo to start',
        () => {
          if (demo.child.exitCode !== null) throw new Error(`demo exited ${demo.child.exitCode}: ${demo.out.stderr}${demo.out.stdout}`);
          return demo.out.stderr.includes('Anchor is running');
        },
        { timeoutMs: 20_000 },
      );
      const warned = demo.out.stdout.split('\n').filter((l) => l.includes('left out'));
      expect(warned).toHaveLength(2);
      expect(warned[0]).toContain('listen.udp[1] ([::1]:4500) left out: this host has no such address (EADDRNOTAVAIL)');
      expect(warned[1]).toContain('listen.tcp[1] ([::1]:4500)');
      expect(demo.out.stderr).toContain('Send JV1 traffic (UDP) to: 127.0.0.1:4500\n');
      // A client in the same namespace gets its echoes through the demo (its nodes start healthy after two probes).
      const pid = String(demo.child.pid);
      const report = await waitFor(
        'a client to get echoes through the demo',
        () => {
          const r = spawnSync('nsenter', ['-t', pid, '-n', process.execPath, MAIN, 'client', '--target', '127.0.0.1:4500', '--sessions', '3', '--rate', '30', '--duration', '1', '--json'], { encoding: 'utf8', timeout: 15_000 });
          if (r.status !== 0) throw new Error(`client exited ${r.status}: ${r.stderr}`);
          const rep = JSON.parse(r.stdout) as { sent: number; received: number };
          return rep.received > 0 ? rep : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 200 },
      );
      expect(report.received).toBeGreaterThan(0);
      demo.child.kill('SIGINT');
      expect(await demo.exited).toBe(0);
    } finally {
      if (demo.child.exitCode === null && demo.child.signalCode === null) demo.child.kill('SIGKILL');
    }
  }, 60_000);

  it('anchor run with the same config still refuses: an operator asked for that listener', async () => {
    const run = inNamespaceWithoutIpv6('run');
    try {
      expect(await run.exited).toBe(1);
      expect(run.out.stderr).toMatch(/EADDRNOTAVAIL.*\[::1\]:4500/);
    } finally {
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
    }
  }, 30_000);
});
