// session.header_cache over real sockets: with room for only 3 ready PROXY v2 headers, 30 sessions
// sending at once take headers back from each other all the time, and every datagram still reaches the
// ring's node behind a header naming its own session, version and sequence number.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runClient } from '../../src/client/client.js';
import { PacketType } from '../../src/codec/types.js';
import { checkRecords } from '../../src/refnode/checker.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
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
    const records = await waitFor('every session to be recorded with its CLOSE', () => {
      const r = c.records().filter((l) => ids.has(l.session));
      const closed = new Set(r.filter((l) => l.type === PacketType.CLOSE).map((l) => l.session));
      return closed.size === ids.size ? r : undefined;
    });
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
