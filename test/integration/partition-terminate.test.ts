// store.partition_policy `terminate` with thousands of sessions, in process: when the store's lease comes
// back after the fence expired, every session it served ends (not those mirrored from other directors) (audited, cause partition), then the director
// admits again. (That the ends go a slice per turn, behind a fence kept expired meanwhile, is SliceEnder's
// unit test and anchor.ts's `ending`.) The store is the in-process one with a lease the test controls (the
// fence only reads leaseOkAt).
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAnchor, type Anchor } from '../../src/anchor.js';
import { encodeJv1 } from '../../src/codec/jv1.js';
import { PacketType, RejectReason } from '../../src/codec/types.js';
import { parseConfig } from '../../src/config/load.js';
import { MemoryStore } from '../../src/store/memory.js';
import { systemClock } from '../../src/util/clock.js';
import { captureLogs, inProcessYaml } from '../helpers/in-process.js';
import { UdpPeer } from '../helpers/udp.js';
import { waitFor } from '../helpers/wait.js';

/** The in-process store with a lease the fence reads: kept alive (renewed now) unless the test says it was lost. */
class LeasedStore extends MemoryStore {
  /** When the lease was last renewed before it was lost; null: it is renewed (now). */
  lostAt: number | null = null;
  readonly leaseTtlMs = 3000;
  leaseOkAt(): number | null {
    return this.lostAt ?? systemClock.now();
  }
}

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

describe('store.partition_policy: terminate, with thousands of sessions', () => {
  it('ends every session it served when the store came back (one audit line each, cause partition), not those it mirrors from other directors, logs when the fence expired and when the last ended, then admits again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anchor-partition-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const auditPath = join(dir, 'audit.jsonl');
    const config = parseConfig(
      inProcessYaml(auditPath, {
        extra: `
admission:
  per_source_rate: 1000000
  per_source_burst: 1000000
store:
  kind: memory
  partition_policy: terminate`,
      }),
    );
    const { logger, lines } = captureLogs();
    const logged = (msg: string): Record<string, unknown> | undefined => lines().find((l) => typeof l.msg === 'string' && l.msg.startsWith(msg));
    const store = new LeasedStore();
    const anchor: Anchor = await createAnchor(config, { clock: systemClock, logger, store });
    cleanup.push(() => anchor.close());
    const admin = `http://127.0.0.1:${anchor.adminAddress.port}`;
    const sessions = async (): Promise<number> => ((await (await fetch(`${admin}/v1/nodes`)).json()) as { items: { sessions: number }[] }).items[0]!.sessions;
    const peer = await UdpPeer.open(4);
    cleanup.push(() => peer.close());
    const target = anchor.udpAddresses[0]!;
    const n = 3000;
    // In batches of 100, each sent again until all of it is admitted (a datagram can be lost on a busy
    // machine; a HELLO again from the bound transport of a live session is not a second session).
    for (let b = 0; b < n / 100; b++) {
      const batch = Array.from({ length: 100 }, () => encodeJv1(PacketType.HELLO, randomBytes(16), Buffer.from('hi')));
      await waitFor(
        `sessions ${b * 100 + 1}-${b * 100 + 100}`,
        async () => {
          if ((await sessions()) >= (b + 1) * 100) return true;
          for (const m of batch) peer.send(m, target);
          return undefined;
        },
        { timeoutMs: 20_000, intervalMs: 100 },
      );
    }
    expect(await sessions()).toBe(n);
    // A session another director admitted and serves, mirrored here: not this director's to end.
    const foreign = randomBytes(16).toString('hex');
    await store.create({ id: foreign, owner: 'node-a', version: 1n, state: 'ATTACHED', transport: '198.51.100.7:4000', director: 'director-b', expiresAt: Date.now() + 120_000, incarnation: 0 });
    await waitFor('the other director\'s session mirrored here', async () => (await sessions()) === n + 1 || undefined);

    store.lostAt = systemClock.now() - 60_000; // the lease lost long ago: the fence expires
    await waitFor('readyz: fence expired', async () => {
      const r = await fetch(`${admin}/readyz`);
      return (r.status === 503 && ((await r.json()) as { reason: string }).reason.includes('expired')) || undefined;
    });
    await waitFor('the director to log the expired fence', () => logged('store lease fence expired'));
    // An operator's terminate now would change ownership without the store: refused, nothing changes.
    const some = ((await (await fetch(`${admin}/v1/sessions?limit=1`)).json()) as { items: { id: string }[] }).items[0]!.id;
    const refused = await fetch(`${admin}/v1/sessions/${some}/terminate`, { method: 'POST' });
    expect(refused.status).toBe(503);
    expect(JSON.stringify(await refused.json())).toMatch(/store unreachable/);
    expect((await fetch(`${admin}/v1/sessions/${some}`)).status).toBe(200);
    store.lostAt = null; // the store is back
    await waitFor('every session served here ended', async () => (await sessions()) === 1 || undefined, { timeoutMs: 20_000 });
    await waitFor('ready again', async () => (await fetch(`${admin}/readyz`)).status === 200 || undefined);
    expect(logged('every session served here when the store came back has ended')?.sessions).toBe(n);
    expect((await fetch(`${admin}/v1/sessions/${foreign}`)).status).toBe(200);
    expect(await store.get(foreign)).toMatchObject({ ok: true, record: { version: 1n, director: 'director-b' } });
    await anchor.reopenAudit(); // flushes what was written to the old stream
    await waitFor('the audit lines in the file', () => readFileSync(auditPath, 'utf8').split('\n').filter((l) => l.includes('"cause":"partition"')).length === n || undefined);
    // Ended: a datagram of one of them gets SESSION_TERMINATED; a new session is admitted again.
    const line = readFileSync(auditPath, 'utf8').split('\n').find((l) => l.includes('"cause":"partition"'))!;
    const ended = Buffer.from((JSON.parse(line) as { session: string }).session, 'hex');
    peer.send(encodeJv1(PacketType.DATA, ended, Buffer.from('after')), target);
    const rej = await peer.next((m) => m[3] === PacketType.REJECT);
    expect(rej[20]).toBe(RejectReason.SESSION_TERMINATED);
    peer.send(encodeJv1(PacketType.HELLO, randomBytes(16), Buffer.from('new')), target);
    await waitFor('a new session', async () => (await sessions()) === 1 || undefined);
  });
});
