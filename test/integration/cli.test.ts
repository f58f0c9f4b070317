// The command-line contract, through the real entry point: help, usage errors, config errors.
import { describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadNativeUdp } from '../../src/net/native/index.js';
import { spawnAnchor, tempDir } from '../helpers/director-proc.js';

async function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = spawnAnchor(args);
  const { code } = await p.exited;
  // Let the pipes drain.
  await new Promise((r) => setImmediate(r));
  return { code, stdout: p.stdout, stderr: p.stderr };
}

describe('anchor CLI', () => {
  it('prints help for every command and exits 0', async () => {
    for (const cmd of ['run', 'node', 'client', 'demo']) {
      const r = await run([cmd, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`anchor ${cmd}`);
    }
    const top = await run(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toContain('anchor run --config FILE');
  });

  it.each([
    [['run'], /--config is required/],
    [['run', '--config', 'x.yaml', '--verbose'], /--verbose/],
    [['node', '--id', 'n1', '--listen', '5001'], /--listen: expected HOST:PORT.*"5001"/],
    [['node', '--id', 'bad id!', '--listen', '127.0.0.1:0'], /--id: expected/],
    [['client', '--target', '127.0.0.1:4500', '--sessions', 'ten', '--rate', '1', '--duration', '1'], /--sessions: expected an integer.*"ten"/],
    [['client', '--target', '127.0.0.1:0', '--sessions', '1', '--rate', '1', '--duration', '1'], /--target: expected a port 1–65535, got "127.0.0.1:0"/],
    [['client', '--target', '127.0.0.1:4500', '--sessions', '1', '--rate', '-5', '--duration', '1'], /--rate/],
    [['client', '--target', '127.0.0.1:4500', '--sessions', '1', '--rate', '1', '--duration', '1', '--size', '4'], /--size: expected an integer ≥ 16/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['version', '--bogus'], /anchor version: takes no arguments, got "--bogus"/],
    [['run', '--config', 'a.yaml', '--config', 'b.yaml'], /anchor run: --config given more than once/],
    [['audit', 'verify'], /expected at least one FILE/],
    [['audit', 'verify', '/nonexistent/audit.jsonl'], /cannot read \/nonexistent\/audit\.jsonl: ENOENT/],
    [['audit', 'verify', '/'], /cannot read \/: EISDIR/],
    [['audit', 'verify', 'x', '--prev', 'abc'], /--prev: expected a SHA-256/],
    [['audit', 'verify', 'x', '--prev', '0'.repeat(64), '--continued'], /--prev and --continued exclude each other/],
    [['audit', 'verify', 'x', '--checkpoint', '12'], /--checkpoint: expected SEQ:SHA256.*"12"/],
    [['audit', 'verify', 'x', '--checkpoint', `0:${'a'.repeat(64)}`], /--checkpoint: expected SEQ:SHA256/],
    [['audit', 'verify', 'x', '--checkpoint', `3:${'a'.repeat(64)}`, '--checkpoint', `3:${'b'.repeat(64)}`], /two different hashes for seq 3/],
  ])('exits 2 naming the problem: %j', async (args, message) => {
    const r = await run(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  it('exits 2 on a bad config, naming the key path', async () => {
    const dir = tempDir();
    const path = join(dir, 'bad.yaml');
    writeFileSync(
      path,
      ['nodes:', '  - { id: a, address: "127.0.0.1:5001" }', '  - { id: b, address: "127.0.0.1:5002" }', '  - { id: c, address: "5001" }', 'session:', '  max: 0', '  colour: blue'].join('\n'),
    );
    const r = await run(['run', '--config', path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`config error in ${path}`);
    expect(r.stderr).toContain('nodes[2].address: expected HOST:PORT, got "5001"');
    expect(r.stderr).toContain('session.max: expected an integer ≥ 1, got 0');
    expect(r.stderr).toContain('session.colour: unknown key');
  });

  it('exits 2 with the usage on stderr when given no command', async () => {
    const r = await run([]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('anchor run --config FILE');
  });

  it('exits 2 naming the key when a file the director keeps is a directory, or in one that does not exist (audit.path, backend.port_quarantine_path)', async () => {
    const dir = tempDir();
    for (const [key, yaml] of [
      ['audit.path', `audit:\n  path: ${JSON.stringify(dir)}\n`],
      ['backend.port_quarantine_path', `backend:\n  encapsulation: none\n  port_quarantine_path: ${JSON.stringify(dir)}\naudit:\n  path: ${JSON.stringify(join(dir, 'audit.jsonl'))}\n`],
    ] as const) {
      const cfg = join(dir, 'anchor.yaml');
      writeFileSync(cfg, `listen:\n  udp: ["127.0.0.1:0"]\nadmin:\n  listen: 127.0.0.1:0\nnodes:\n  - id: a\n    address: 127.0.0.1:9\n${yaml}`);
      const r = await run(['run', '--config', cfg]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`${key}: ${JSON.stringify(dir)} is a directory, not a file`);
    }
    // A file in a directory that does not exist: the file would be created, the directory is not.
    const missing = join(dir, 'no-such-dir', 'audit.jsonl');
    const cfg = join(dir, 'anchor-missing.yaml');
    writeFileSync(cfg, `listen:\n  udp: ["127.0.0.1:0"]\nadmin:\n  listen: 127.0.0.1:0\nnodes:\n  - id: a\n    address: 127.0.0.1:9\naudit:\n  path: ${JSON.stringify(missing)}\n`);
    const r = await run(['run', '--config', cfg]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`audit.path: ${JSON.stringify(missing)}: its directory ${JSON.stringify(join(dir, 'no-such-dir'))} does not exist`);
  });

  it('demo exits 1 naming the reference node whose address is in use, instead of hanging on the nodes it had started', async () => {
    const busy = dgram.createSocket('udp4');
    await new Promise<void>((r) => busy.bind(0, '127.0.0.1', r));
    const free = dgram.createSocket('udp4');
    await new Promise<void>((r) => free.bind(0, '127.0.0.1', r));
    const freePort = free.address().port;
    free.close(); // node-a's: free, so node-a starts before node-b fails
    try {
      const dir = tempDir();
      const cfg = join(dir, 'demo.yaml');
      writeFileSync(cfg, `listen:\n  udp: ["127.0.0.1:0"]\nadmin:\n  listen: 127.0.0.1:0\nnodes:\n  - id: node-a\n    address: 127.0.0.1:${freePort}\n  - id: node-b\n    address: 127.0.0.1:${busy.address().port}\n`);
      const p = spawnAnchor(['demo', '--config', cfg]);
      const timer = setTimeout(() => p.kill(), 20_000); // a hang fails the test below (killed: no exit code)
      const { code } = await p.exited;
      clearTimeout(timer);
      expect(code).toBe(1);
      expect(p.stderr).toContain(`demo: the reference node node-b cannot listen on 127.0.0.1:${busy.address().port}: the address is in use`);
    } finally {
      busy.close();
    }
  });

  it('check exits 2 when the directory holds no records (nothing was proven)', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'empty.jsonl'), '');
    const r = await run(['check', '--records', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`anchor check: no records in ${dir}`);
    expect(r.stdout).toBe('');
  });

  it('exits 2 when the config file is missing', async () => {
    const r = await run(['run', '--config', '/nonexistent/anchor.yaml']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('/nonexistent/anchor.yaml');
  });

  // With the addon not built, `on` would refuse to start for that instead: skipped then.
  for (const native of ['on', 'off'] as const) {
    it.skipIf(native === 'on' && !loadNativeUdp().ok)(`exits 1 naming the address when a UDP listen port is taken (socket.native: ${native})`, async () => {
      const busy = dgram.createSocket('udp4');
      await new Promise<void>((resolve) => busy.bind(0, '127.0.0.1', resolve));
      try {
        const port = busy.address().port;
        const dir = tempDir();
        const cfg = join(dir, 'anchor.yaml');
        writeFileSync(cfg, `listen:\n  udp: ["127.0.0.1:${port}"]\nadmin:\n  listen: 127.0.0.1:0\nsocket:\n  native: "${native}"\nnodes:\n  - id: a\n    address: 127.0.0.1:9\n`);
        const r = await run(['run', '--config', cfg]);
        expect(r.code).toBe(1);
        expect(r.stderr).toContain('EADDRINUSE');
        expect(r.stderr).toContain(`127.0.0.1:${port}`);
      } finally {
        busy.close();
      }
    });
  }

  it('runs a reference node and a client against it directly', async () => {
    const node = spawnAnchor(['node', '--id', 'solo', '--listen', '127.0.0.1:0']);
    try {
      const deadline = Date.now() + 10_000;
      let port: number | undefined;
      while (port === undefined && Date.now() < deadline) {
        const m = /solo@127\.0\.0\.1:(\d+) listening/.exec(node.stderr);
        if (m) port = Number(m[1]);
        else await new Promise((r) => setTimeout(r, 20));
      }
      expect(port).toBeDefined();
      const r = await run(['client', '--target', `127.0.0.1:${port}`, '--sessions', '5', '--rate', '200', '--duration', '0.5', '--json']);
      expect(r.code).toBe(0);
      const report = JSON.parse(r.stdout) as { sessions: { opened: number }; sent: number; received: number; rtt_ms: { p50: number } };
      expect(report.sessions.opened).toBe(5);
      expect(report.sent).toBeGreaterThan(0);
      expect(report.received).toBe(report.sent);
      expect(report.rtt_ms.p50).toBeGreaterThan(0);
      node.kill('SIGTERM');
      expect((await node.exited).code).toBe(0);
    } finally {
      node.kill();
    }
  });
});

describe('anchor check', () => {
  const line = (node: string, session: string, version: number, seq: number) =>
    JSON.stringify({ node, session, version: String(version), seq: String(seq), flags: 0, type: 2, t: seq, accepted: true, dst: '127.0.0.1:4500' });
  const S1 = '11'.repeat(16);
  const S2 = '22'.repeat(16);

  it('passes a clean history and names the session of an interleaved one (exit 1)', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'node-a.jsonl'), [line('node-a', S1, 1, 1), line('node-a', S1, 1, 2), line('node-a', S2, 1, 1)].join('\n') + '\n');
    writeFileSync(join(dir, 'node-b.jsonl'), [line('node-b', S1, 4, 3)].join('\n') + '\n');
    const ok = await run(['check', '--records', dir]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^ok: 2 sessions, 4 packets/);
    // node-b now also received S2 at version 1, between node-a's packets: dual delivery.
    writeFileSync(join(dir, 'node-b.jsonl'), [line('node-b', S1, 4, 3), line('node-b', S2, 1, 2)].join('\n') + '\n');
    writeFileSync(join(dir, 'node-a.jsonl'), [line('node-a', S1, 1, 1), line('node-a', S1, 1, 2), line('node-a', S2, 1, 1), line('node-a', S2, 1, 3)].join('\n') + '\n');
    const bad = await run(['check', '--records', dir]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain(`session ${S2}`);
    expect(bad.stdout).not.toContain(`session ${S1}`);
  });

  it('a reader that goes away (`| head`) neither crashes it nor hides its status: exit 1 on a violation', async () => {
    const dir = tempDir();
    // 20,000 sessions each delivered twice to one node: a long report.
    const lines: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      const s = i.toString(16).padStart(32, '0');
      lines.push(line('node-a', s, 1, 1), line('node-a', s, 1, 1));
    }
    writeFileSync(join(dir, 'node-a.jsonl'), lines.join('\n') + '\n');
    const p = spawnAnchor(['check', '--records', dir]);
    p.child.stdout?.destroy(); // as `head` does once it has what it wants
    const { code } = await p.exited;
    expect(p.stderr).not.toContain('EPIPE');
    expect(code).toBe(1);
  });
});
