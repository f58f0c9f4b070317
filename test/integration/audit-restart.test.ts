// The audit chain across director restarts (in process): the head recorded beside the file when the
// director stops lets a restart after the file was rotated away go on with the same chain (the rotated
// file and the new one verify as one), and a file that lost or changed lines while the director was away
// is reported — a SECURITY_EVENT line opening the new run, and an error log.
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAnchor, type Anchor } from '../../src/anchor.js';
import { encodeJv1 } from '../../src/codec/jv1.js';
import { PacketType } from '../../src/codec/types.js';
import { parseConfig } from '../../src/config/load.js';
import { headPath } from '../../src/obs/audit.js';
import { verifyAuditFiles } from '../../src/obs/audit-verify.js';
import { systemClock } from '../../src/util/clock.js';
import { captureLogs, inProcessYaml } from '../helpers/in-process.js';
import { UdpPeer } from '../helpers/udp.js';
import { waitFor } from '../helpers/wait.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const lineCount = (p: string): number => (existsSync(p) ? readFileSync(p, 'utf8').split('\n').length - 1 : 0);

describe('the audit chain across restarts', () => {
  it('goes on from the head recorded at stop when the file was rotated away meanwhile; reports a file that lost or changed lines while the director was away', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anchor-audit-restart-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const auditPath = join(dir, 'audit.jsonl');
    const config = parseConfig(inProcessYaml(auditPath));
    const peer = await UdpPeer.open(4);
    cleanup.push(() => peer.close());

    /** Runs a director until `sessions` HELLOs are audited (one create line each), then stops it (recording the head). */
    const run = async (sessions: number): Promise<Record<string, unknown>[]> => {
      const { logger, lines } = captureLogs();
      const anchor: Anchor = await createAnchor(config, { clock: systemClock, logger });
      let stopped = false;
      cleanup.push(async () => {
        if (!stopped) await anchor.close();
      });
      const target = anchor.udpAddresses[0]!;
      const admin = `http://127.0.0.1:${anchor.adminAddress.port}`;
      const start = ((await (await fetch(`${admin}/v1/audit/head`)).json()) as { seq: number }).seq;
      for (let i = 0; i < sessions; i++) {
        const hello = encodeJv1(PacketType.HELLO, randomBytes(16), Buffer.from('hi'));
        await waitFor(`session ${i + 1} audited`, async () => {
          const h = (await (await fetch(`${admin}/v1/audit/head`)).json()) as { seq: number };
          if (h.seq > start + i) return true;
          peer.send(hello, target);
          return undefined;
        });
      }
      await anchor.close();
      stopped = true;
      return lines();
    };

    await run(2);
    expect(lineCount(auditPath)).toBe(2);
    expect(JSON.parse(readFileSync(headPath(auditPath), 'utf8'))).toMatchObject({ seq: 2 });

    // Rotated while the director was stopped (logrotate's create: a new empty file).
    renameSync(auditPath, `${auditPath}.1`);
    writeFileSync(auditPath, '');
    const logs = await run(1);
    expect(logs.some((l) => String(l.msg).startsWith('audit file was empty or missing') && l.seq === 2)).toBe(true);
    expect(await verifyAuditFiles([`${auditPath}.1`, auditPath])).toMatchObject({ ok: true, files: 2, result: { lines: 3, seq: 3 } });

    // The last line removed while the director was away: the next run opens with a SECURITY_EVENT.
    await run(1); // seq 4
    const four = readFileSync(auditPath, 'utf8').trim().split('\n');
    expect(four).toHaveLength(2);
    writeFileSync(auditPath, `${four[0] as string}\n`); // seq 3 only; the head recorded at stop is seq 4
    const behind = await run(1);
    expect(behind.some((l) => l.level === 50 && l.file_seq === 3 && l.recorded_seq === 4)).toBe(true);
    const lines = readFileSync(auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[1]).toMatchObject({ seq: 4, event: 'SECURITY_EVENT', cause: 'audit_file_behind', detail: { file_seq: 3, recorded_seq: 4 } });
    // The chain in the files still verifies: the loss is told inside it, not by a break.
    expect((await verifyAuditFiles([`${auditPath}.1`, auditPath])).ok).toBe(true);

    // The last line changed while the director was away (same seq, another hash).
    const now = readFileSync(auditPath, 'utf8').trim().split('\n');
    writeFileSync(auditPath, [...now.slice(0, -1), (now.at(-1) as string).replace('"create"', '"cre8te"')].join('\n') + '\n');
    const changed = await run(1);
    expect(changed.some((l) => l.level === 50 && String(l.msg).includes('was changed while the director was away'))).toBe(true);
    expect(readFileSync(auditPath, 'utf8')).toContain('"cause":"audit_file_changed"');
  });

  it('a head that cannot be recorded beside the file is counted (anchor_audit_head_not_recorded_total) and logged', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anchor-audit-head-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const auditPath = join(dir, 'audit.jsonl');
    mkdirSync(headPath(auditPath)); // a directory where the head goes: recording it fails
    const { logger, lines } = captureLogs();
    const anchor: Anchor = await createAnchor(parseConfig(inProcessYaml(auditPath)), { clock: systemClock, logger });
    cleanup.push(() => anchor.close());
    expect(anchor.stats.auditHeadNotRecorded).toBe(1); // at its start
    const metrics = await (await fetch(`http://127.0.0.1:${anchor.adminAddress.port}/metrics`)).text();
    expect(metrics).toMatch(/^anchor_audit_head_not_recorded_total 1$/m);
    expect(lines().some((l) => String(l['msg']).startsWith('audit chain head not recorded beside the audit file'))).toBe(true);
  });
});
