// session.header_cache over real sockets: with room for only 3 ready PROXY v2 headers, 30 sessions
// sending at once take headers back from each other all the time, and every datagram still reaches the
// ring's node behind a header naming its own session, version and sequence number.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runClient } from '../../src/client/client.js';
import { PacketType } from '../../src/codec/types.js';
import { checkRecords } from '../../src/refnode/checker.js';
import { closedRecords, startCluster, type Cluster } from '../helpers/cluster.js';
import { metric } from '../helpers/director-proc.js';
import { waitFor } from '../helpers/wait.js';

const CAPACITY = 3;

describe('UDP director with a small header cache (session.header_cache: 3)', () => {
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster({ family: 4, config: { session: { header_cache: CAPACITY } } });
  });
  afterAll(async () => {
    await c?.stop();
  });

  it('30 sessions at once: every echo comes back, every record checks out, headers are taken back and rebuilt', async () => {
    const target = c.director.udp.find((t) => t.family === 4);
    expect(target).toBeDefined();
    const report = await runClient({ target: target!, sessions: 30, rate: 600, durationS: 1, size: 64, drainMs: 2000 });
    expect(report.sessions.opened).toBe(30);
    expect(report.sent).toBeGreaterThanOrEqual(300);
    expect(report.received).toBe(report.sent);

    const ids = new Set(report.session_ids);
    const records = await closedRecords(c, ids);
    // One node per session, versions and sequence numbers in order: a header built again after it was
    // taken back names the same session, version and the next seq.
    const check = checkRecords(records);
    expect(check.violations).toEqual([]);
    expect(check).toMatchObject({ ok: true, sessions: 30 });
    expect(records.every((l) => l.seq !== null && l.version === '1')).toBe(true);

    const admin = c.director.admin;
    expect(await metric(admin, 'anchor_header_cache_evictions_total')).toBeGreaterThan(0);
    // Every session ended (its CLOSE): every header went with it. (Before 2026-11-29 a CLOSE was sent after
    // its session's end had given the header back, and took a slot again for the ended session.)
    expect(await metric(admin, 'anchor_header_cache_sessions')).toBe(0);
  });
});

// The same small cache bounds the session records the table keeps ready (src/session/table.ts): with 4,
// a drain under live traffic keeps records across its store writes while the traffic of 300 other
// sessions pushes them out of the cache; each must stay its session's one record (found again while
// held), or a move would write another session's row.
describe('a node drain with live traffic and room for 4 records (session.header_cache: 4)', () => {
  let c: Cluster;
  afterAll(async () => {
    await c?.stop();
  });

  it('every session of the drained node moves, none is lost, and the checker passes', async () => {
    c = await startCluster({ family: 4, config: { session: { header_cache: 4, hold_max_packets: 256 }, drain: { rate: 2000, concurrency: 64, quiesce_ms: 300 } } });
    const target = c.director.udp[0]!;
    const admin = c.director.admin;
    const traffic = runClient({ target, sessions: 300, rate: 1500, durationS: 4, size: 64, drainMs: 3000 });
    await waitFor('300 sessions', async () => (await metric(admin, 'anchor_sessions_active')) === 300, { timeoutMs: 20_000 });
    const started = await fetch(`${admin}/v1/nodes/node-a/drain`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ mode: 'migrate' }) });
    expect(started.status).toBe(202);
    const { id, total } = (await started.json()) as { id: string; total: number };
    expect(total).toBeGreaterThan(0);
    const done = await waitFor(
      'the drain to complete',
      async () => {
        const d = (await (await fetch(`${admin}/v1/drains/${id}`)).json()) as { state: string; moved: number; failed: number; remaining: number; total: number };
        return d.state !== 'running' ? d : undefined;
      },
      { timeoutMs: 20_000 },
    );
    expect(done).toMatchObject({ state: 'completed', failed: 0, remaining: 0 });
    expect(done.moved).toBe(done.total);
    // The embedded store reads its records from the table's rows again once the moves settled: none left apart.
    await waitFor('the store to read every record from its row', async () => (await metric(admin, 'anchor_store_records', { held: 'apart' })) === 0, { timeoutMs: 5_000 });
    expect(await metric(admin, 'anchor_store_records', { held: 'row' })).toBe(await metric(admin, 'anchor_sessions_active'));
    const report = await traffic;
    expect(report.sessions.opened).toBe(300);
    const overflow = await metric(admin, 'anchor_client_datagrams_dropped_total', { reason: 'hold_overflow' });
    const formerOwner = await metric(admin, 'anchor_node_datagrams_dropped_total', { reason: 'node_former_owner' });
    expect(report.lost).toBeLessThanOrEqual(overflow + formerOwner);
    const ids = new Set(report.session_ids);
    const records = await closedRecords(c, ids);
    const verdict = checkRecords(records);
    expect(verdict.violations).toEqual([]);
    expect(verdict).toMatchObject({ ok: true, sessions: 300 });
    // node-a holds none of them any more, and every one of its sessions got its REVOKE.
    const onA = new Set(records.filter((l) => l.node === 'node-a' && l.type !== PacketType.REVOKE).map((l) => l.session));
    for (const s of onA) expect(records.some((l) => l.session === s && l.node === 'node-a' && l.type === PacketType.REVOKE)).toBe(true);
    expect(onA.size).toBe(done.total);
    // Every session ended: the store holds nothing, in rows or apart (an end leaves nothing behind).
    await waitFor('the store to be empty', async () => (await metric(admin, 'anchor_store_records', { held: 'row' })) + (await metric(admin, 'anchor_store_records', { held: 'apart' })) === 0, { timeoutMs: 10_000 });
  });
});
