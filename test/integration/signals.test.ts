// Process handling through the real entry point: SIGTERM drains (not ready, new sessions refused,
// existing ones served), then exits 0; a second SIGTERM exits at once with status 1.
import { afterEach, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { encodeJv1 } from '../../src/codec/jv1.js';
import { PacketType, RejectReason } from '../../src/codec/types.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { openSessions, UdpPeer } from '../helpers/udp.js';
import { waitFor } from '../helpers/wait.js';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { verifyAuditFile, verifyAuditFiles } from '../../src/obs/audit-verify.js';
import { metric, spawnAnchor, tempDir } from '../helpers/director-proc.js';
import net from 'node:net';
import { once } from 'node:events';
import { dump } from 'js-yaml';

describe('director signals', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });

  it('SIGTERM: not ready, new HELLOs get DIRECTOR_DRAINING, live sessions served, exit 0 when they end', async () => {
    const c: Cluster = await startCluster({ family: 4, config: { drain: { deadline_s: 20 } } });
    cleanup.push(() => c.stop());
    const peer = await UdpPeer.open(4);
    cleanup.push(() => peer.close());
    const target = c.director.udp[0]!;
    const live = randomBytes(16);
    peer.send(encodeJv1(PacketType.HELLO, live, Buffer.from('hi')), target);
    await peer.next((m) => m[3] === PacketType.HELLO);

    c.director.kill('SIGTERM');
    await waitFor('readyz to turn 503', async () => (await fetch(`${c.director.admin}/readyz`)).status === 503);
    peer.send(encodeJv1(PacketType.HELLO, randomBytes(16), Buffer.from('new session')), target);
    const rej = await peer.next((m) => m[3] === PacketType.REJECT);
    expect(rej[20]).toBe(RejectReason.DIRECTOR_DRAINING);
    peer.send(encodeJv1(PacketType.DATA, live, Buffer.from('still served')), target);
    const echo = await peer.next((m) => m[3] === PacketType.DATA);
    expect(echo.subarray(20).toString()).toBe('still served');
    expect(c.director.child.exitCode).toBeNull();

    peer.send(encodeJv1(PacketType.CLOSE, live, Buffer.from('bye')), target);
    const { code } = await c.director.exited;
    expect(code).toBe(0);
    // The audit log was flushed and its chain is intact, through the real CLI.
    const audit = join(c.dir, 'audit.jsonl');
    const v = await verifyAuditFile(audit);
    expect(v).toMatchObject({ ok: true, lines: 2 });
    const cli = spawnAnchor(['audit', 'verify', audit]);
    expect((await cli.exited).code).toBe(0);
    writeFileSync(audit, readFileSync(audit, 'utf8').replace('"create"', '"terminate"'));
    const broken = spawnAnchor(['audit', 'verify', audit]);
    expect((await broken.exited).code).toBe(1);
    expect(broken.stderr).toMatch(/line 2: prev does not match/);
  });

  it('SIGTERM: sessions still live at drain.deadline_s are ended and audited (cause director_shutdown), not left to vanish with the in-process store', async () => {
    const c: Cluster = await startCluster({ family: 4, config: { drain: { deadline_s: 0.5 } } });
    cleanup.push(() => c.stop());
    const peer = await UdpPeer.open(4);
    cleanup.push(() => peer.close());
    const ids = await openSessions(peer, c.director.udp[0]!, 3);
    c.director.kill('SIGTERM');
    const { code } = await c.director.exited;
    expect(code).toBe(0);
    const lines = readFileSync(join(c.dir, 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string; cause: string; session: string | null });
    const ended = lines.filter((l) => l.event === 'terminate');
    expect(ended.map((l) => l.session).sort()).toEqual(ids.map((id) => id.toString('hex')).sort());
    for (const l of ended) expect(l.cause).toBe('director_shutdown');
    expect(await verifyAuditFile(join(c.dir, 'audit.jsonl'))).toMatchObject({ ok: true, lines: 6 });
  });

  it('a SIGHUP while the director starts (logrotate\'s postrotate) does not kill it (the audit is reopened once the director is up)', async () => {
    // An "etcd" that accepts connections and never answers holds the start for call_timeout_ms: a window
    // of seconds in which the signal lands for certain (then the start fails, naming the store).
    const silent = net.createServer((sock) => sock.on('error', () => {}));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    cleanup.push(() => new Promise<void>((resolve) => silent.close(() => resolve())));
    const socks: net.Socket[] = [];
    silent.on('connection', (sock) => socks.push(sock));
    cleanup.push(() => socks.forEach((x) => x.destroy()));
    const dir = tempDir();
    const configPath = join(dir, 'anchor.yaml');
    const port = (silent.address() as net.AddressInfo).port;
    writeFileSync(
      configPath,
      dump({
        listen: { udp: ['127.0.0.1:0'] },
        admin: { listen: '127.0.0.1:0' },
        nodes: [{ id: 'node-a', address: '127.0.0.1:9' }],
        store: { kind: 'etcd', etcd: { endpoints: [`http://127.0.0.1:${port}`], call_timeout_ms: 1000 } },
        audit: { path: join(dir, 'audit.jsonl') },
        health: { enabled: false },
      }),
    );
    const d = spawnAnchor(['run', '--config', configPath]);
    cleanup.push(() => d.kill());
    // The director catches SIGHUP (its handler is installed: /proc says so) while it waits for the store.
    await waitFor('the director to catch SIGHUP', () => {
      const caught = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${d.child.pid}/status`, 'utf8'));
      return caught !== null && (BigInt(`0x${caught[1]}`) & 1n) === 1n ? true : undefined;
    });
    await waitFor('the director to reach the store', () => (socks.length > 0 ? true : undefined));
    d.kill('SIGHUP');
    const { code, signal } = await d.exited;
    expect(signal).toBeNull();
    expect(code).toBe(1);
    expect(d.stderr).toMatch(/etcd|store/i);
  });

  it('SIGHUP after a rotation: the audit goes on in a new file at the same path, the two verify as one chain (CLI included); a file that cannot be written makes the director not ready, its lines waiting, until the file can be written again (tried by itself)', async () => {
    const c: Cluster = await startCluster({ family: 4, config: { drain: { deadline_s: 20 } } });
    cleanup.push(() => c.stop());
    const peer = await UdpPeer.open(4);
    cleanup.push(() => peer.close());
    const target = c.director.udp[0]!;
    const audit = join(c.dir, 'audit.jsonl');
    const lines = (p: string): number => (existsSync(p) ? readFileSync(p, 'utf8').split('\n').length - 1 : 0);
    const hello = async (): Promise<void> => {
      peer.send(encodeJv1(PacketType.HELLO, randomBytes(16), Buffer.from('hi')), target);
      await peer.next((m) => m[3] === PacketType.HELLO);
    };
    await hello();
    await hello();
    await waitFor('two create lines in the file', () => lines(audit) === 2 || undefined);
    // A checkpoint as an operator's cron job would record it (the API, and ctl which prints it alone).
    const head = (await (await fetch(`${c.director.admin}/v1/audit/head`)).json()) as { seq: number; head: string; checkpoint: string };
    expect(head).toEqual({ seq: 2, head: createHash('sha256').update(readFileSync(audit, 'utf8').split('\n')[1] as string).digest('hex'), checkpoint: `2:${head.head}` });
    const ctl = spawnAnchor(['ctl', 'audit', '--head', '--admin', c.director.admin]);
    expect((await ctl.exited).code).toBe(0);
    expect(ctl.stdout.trim()).toBe(head.checkpoint);
    renameSync(audit, `${audit}.1`);
    c.director.kill('SIGHUP');
    await waitFor('the new audit file', () => existsSync(audit) || undefined);
    // It says what a SIGHUP does and does not do (an operator's `systemctl reload` changes no config).
    await waitFor('the SIGHUP log line', () => c.director.stdout.includes('SIGHUP: reopening the audit file; the config is not read again (a change to it takes a restart)') || undefined);
    await hello();
    await waitFor('the third line in the new file', () => lines(audit) === 1 || undefined);
    expect(lines(`${audit}.1`)).toBe(2);
    expect(await verifyAuditFiles([`${audit}.1`, audit])).toMatchObject({ ok: true, files: 2, result: { lines: 3, seq: 3 } });
    const both = spawnAnchor(['audit', 'verify', `${audit}.1`, audit]);
    expect((await both.exited).code).toBe(0);
    expect(both.stdout).toMatch(/ok: 2 files, 3 lines, chain intact/);
    const held = spawnAnchor(['audit', 'verify', `${audit}.1`, audit, '--checkpoint', head.checkpoint]);
    expect((await held.exited).code).toBe(0);
    expect(held.stdout).toMatch(/ok: 2 files, 3 lines, chain intact, 1 checkpoint held \(seq 3, head [0-9a-f]{64}\)/);
    // The newest file alone cannot show the checkpoint: it says which file to give.
    const without = spawnAnchor(['audit', 'verify', audit, '--continued', '--checkpoint', head.checkpoint]);
    expect((await without.exited).code).toBe(1);
    expect(without.stderr).toMatch(/checkpoint of seq 2 is before the first line given \(seq 3\)/);
    const alone = spawnAnchor(['audit', 'verify', audit, '--continued']);
    expect((await alone.exited).code).toBe(0);
    expect(alone.stdout).toMatch(/ok: 1 lines, from seq 3 \(prev [0-9a-f]{64}\), chain intact/);
    expect((await spawnAnchor(['audit', 'verify', audit]).exited).code).toBe(1); // not the start of a log

    // The audit path becomes a directory: the reopen fails, the director says so and is not ready.
    renameSync(audit, `${audit}.2`);
    mkdirSync(audit);
    c.director.kill('SIGHUP');
    await waitFor('readyz to turn 503', async () => (await fetch(`${c.director.admin}/readyz`)).status === 503);
    const why = (await (await fetch(`${c.director.admin}/readyz`)).json()) as { reason?: string };
    expect(why.reason).toMatch(/audit file cannot be written/);
    expect(await metric(c.director.admin, 'anchor_audit_write_errors_total')).toBe(1);
    expect(await metric(c.director.admin, 'anchor_audit_file_ok')).toBe(0); // what AnchorAuditNotWritten alerts on, for as long as it lasts
    // A session admitted meanwhile: its line waits in memory for the file.
    await hello();
    await waitFor('the line waiting', async () => (await metric(c.director.admin, 'anchor_audit_unwritten_lines')) === 1 || undefined);
    // Mended, with no SIGHUP: the director tries the file again by itself and writes the line that waited.
    rmSync(audit, { recursive: true });
    await waitFor('readyz to turn 200', async () => (await fetch(`${c.director.admin}/readyz`)).status === 200);
    expect(await metric(c.director.admin, 'anchor_audit_file_ok')).toBe(1);
    await waitFor('the waiting line in the file', () => lines(audit) === 1 || undefined);
    expect(await metric(c.director.admin, 'anchor_audit_unwritten_lines')).toBe(0);
    expect(await metric(c.director.admin, 'anchor_audit_lines_lost_total')).toBe(0);
    expect(await metric(c.director.admin, 'anchor_audit_write_errors_total')).toBe(1); // the retries that failed are not counted again
    await waitFor('the recovery logged', () => c.director.stdout.includes('audit file written again') || undefined);
    expect(await verifyAuditFiles([`${audit}.1`, `${audit}.2`, audit])).toMatchObject({ ok: true, files: 3, result: { lines: 4, seq: 4 } });
  });

  it('a stop with audit lines that never reached the file (it cannot be written) exits 1, saying how many', async () => {
    const c: Cluster = await startCluster({ family: 4, config: { drain: { deadline_s: 1 } } });
    cleanup.push(() => c.stop());
    const peer = await UdpPeer.open(4);
    cleanup.push(() => peer.close());
    const audit = join(c.dir, 'audit.jsonl');
    renameSync(audit, `${audit}.1`);
    mkdirSync(audit); // the reopen fails: lines wait in memory
    c.director.kill('SIGHUP');
    await waitFor('readyz to turn 503', async () => (await fetch(`${c.director.admin}/readyz`)).status === 503);
    peer.send(encodeJv1(PacketType.HELLO, randomBytes(16), Buffer.from('hi')), c.director.udp[0]!);
    await peer.next((m) => m[3] === PacketType.HELLO);
    await waitFor('the line waiting', async () => (await metric(c.director.admin, 'anchor_audit_unwritten_lines')) === 1 || undefined);
    c.director.kill('SIGTERM');
    expect((await c.director.exited).code).toBe(1);
    expect(c.director.stdout).toMatch(/"audit_unwritten":\{"waiting":[1-9][0-9]*,"lost":0\}/);
  });

  it('POST /v1/director/drain drains like SIGTERM and exits 0 once the sessions end', async () => {
    const c: Cluster = await startCluster({ family: 4, config: { drain: { deadline_s: 20 } } });
    cleanup.push(() => c.stop());
    const r = await fetch(`${c.director.admin}/v1/director/drain`, { method: 'POST' });
    expect(r.status).toBe(202);
    expect(((await r.json()) as { state: string }).state).toBe('draining');
    expect((await c.director.exited).code).toBe(0);
  });

  /** A director whose stop drains for up to 60 s, with one session live (admitted through a HELLO). */
  async function withLiveSession(): Promise<Cluster> {
    const c: Cluster = await startCluster({ family: 4, config: { drain: { deadline_s: 60 } } });
    cleanup.push(() => c.stop());
    const peer = await UdpPeer.open(4);
    cleanup.push(() => peer.close());
    peer.send(encodeJv1(PacketType.HELLO, randomBytes(16), Buffer.from('hi')), c.director.udp[0]!);
    await peer.next((m) => m[3] === PacketType.HELLO);
    return c;
  }

  it('a SIGTERM after POST /v1/director/drain joins that drain (said in the log), and the next signal exits at once', async () => {
    const c = await withLiveSession();
    expect((await fetch(`${c.director.admin}/v1/director/drain`, { method: 'POST' })).status).toBe(202);
    c.director.kill('SIGTERM');
    await waitFor('the signal to join the drain', () => c.director.stdout.includes('already draining') || undefined);
    expect(c.director.stdout).toMatch(/"why":"SIGTERM","draining_since":"admin api"/);
    // Still draining (its session lives): the admin API answers, not ready.
    expect((await fetch(`${c.director.admin}/readyz`)).status).toBe(503);
    c.director.kill('SIGTERM');
    expect((await c.director.exited).code).toBe(1);
  });

  it('a second SIGTERM exits at once with status 1', async () => {
    const c = await withLiveSession();
    c.director.kill('SIGTERM');
    await waitFor('readyz to turn 503', async () => (await fetch(`${c.director.admin}/readyz`)).status === 503);
    c.director.kill('SIGTERM');
    const { code } = await c.director.exited;
    expect(code).toBe(1);
  });
});
