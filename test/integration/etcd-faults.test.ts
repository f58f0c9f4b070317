// A director on etcd through a quorum loss, with traffic flowing: admissions stop within the call
// deadline (REJECT STORE_UNAVAILABLE), /readyz turns false, forwarding stops once the self-fence
// deadline of its lease passes, no session is mutated, nothing hangs; when quorum returns the director
// serves again without a restart.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { ClientSession, ClientRejectedError } from '../../src/client/client.js';
import { PacketType, RejectReason } from '../../src/codec/types.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { waitFor } from '../helpers/wait.js';

describe('director on etcd: losing and regaining quorum', () => {
  let etcd: EtcdCluster;
  let c: Cluster;
  beforeAll(async () => {
    etcd = await startEtcdCluster({ members: 3 });
    c = await startCluster({
      family: 4,
      config: { store: { kind: 'etcd', etcd: { endpoints: etcd.endpoints, prefix: `/anchor-f-${randomBytes(4).toString('hex')}/`, lease_ttl_s: 3, call_timeout_ms: 500 } } },
    });
  });
  afterAll(async () => {
    await c?.stop();
    await etcd?.stop();
  });

  it('fails closed within the deadlines and recovers by itself', async () => {
    const live = await ClientSession.open(c.director.udp[0]!);
    try {
      await live.hello();
      const version = async () => ((await (await fetch(`${c.director.admin}/v1/sessions/${live.hex}`)).json()) as { version: string }).version;
      expect(await version()).toBe('1');
      // Traffic flows: an echo every 50 ms.
      let lastEcho = performance.now();
      let stop = false;
      const pump = (async () => {
        let i = 0;
        while (!stop) {
          live.sendData(Buffer.from(`tick-${i++}`));
          const got = await live.next((r) => r.type === PacketType.DATA, 100).then(() => true, () => false);
          if (got) lastEcho = performance.now();
          await new Promise((r) => setTimeout(r, 50));
        }
      })();

      // Lose quorum: two of three members down.
      const lostAt = performance.now();
      await Promise.all([etcd.members[1]!.kill(), etcd.members[2]!.kill()]);
      // New sessions are refused with STORE_UNAVAILABLE within the deadline (nothing hangs).
      const refused = await waitFor(
        'an admission to be refused',
        async () => {
          const s = await ClientSession.open(c.director.udp[0]!);
          try {
            await s.hello({ timeoutMs: 1500, attempts: 1 });
            return undefined;
          } catch (err) {
            return err instanceof ClientRejectedError && err.reason === RejectReason.STORE_UNAVAILABLE ? performance.now() : undefined;
          } finally {
            await s.close();
          }
        },
        { timeoutMs: 10_000, intervalMs: 100 },
      );
      await waitFor('readyz to turn 503', async () => (await fetch(`${c.director.admin}/readyz`)).status === 503, { timeoutMs: 10_000 });
      // Forwarding stops once the fence passes (lease 3 s): no echo for a while.
      await waitFor('forwarding to stop', () => performance.now() - lastEcho > 1500, { timeoutMs: 10_000, intervalMs: 100 });
      const lastForwarded = lastEcho;
      expect(await metric('anchor_client_datagrams_dropped_total{reason="fenced"}')).toBeGreaterThan(0);

      // Restore quorum: the director serves again without a restart.
      const restoredAt = performance.now();
      await Promise.all([etcd.members[1]!.restart(), etcd.members[2]!.restart()]);
      const firstAdmission = await waitFor(
        'an admission to succeed again',
        async () => {
          const s = await ClientSession.open(c.director.udp[0]!);
          try {
            await s.hello({ timeoutMs: 1000, attempts: 1 });
            return performance.now();
          } catch {
            return undefined;
          } finally {
            await s.close();
          }
        },
        { timeoutMs: 20_000, intervalMs: 100 },
      );
      await waitFor('echoes to flow again', () => performance.now() - lastEcho < 500, { timeoutMs: 10_000, intervalMs: 100 });
      stop = true;
      await pump;
      // The lease lapsed: the director listed the store again before it forwarded anything.
      expect(c.director.stdout).toContain('listing the store again before forwarding');
      // The live session was never mutated through the outage.
      expect(await version()).toBe('1');
      console.log(
        `etcd quorum loss: admissions refused after ${Math.round(refused - lostAt)} ms, last forwarded packet ${Math.round(lastForwarded - lostAt)} ms after the loss; ` +
          `first admission ${Math.round(firstAdmission - restoredAt)} ms after quorum was restored`,
      );
    } finally {
      await live.close();
    }
  });

  async function metric(series: string): Promise<number> {
    const text = await (await fetch(`${c.director.admin}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(series + ' '));
    return line === undefined ? 0 : Number(line.split(' ').at(-1));
  }
});

describe('store.partition_policy: terminate', () => {
  let etcd: EtcdCluster;
  let c: Cluster;
  beforeAll(async () => {
    etcd = await startEtcdCluster({ members: 3 });
    c = await startCluster({
      family: 4,
      config: {
        store: {
          kind: 'etcd',
          partition_policy: 'terminate',
          etcd: { endpoints: etcd.endpoints, prefix: `/anchor-p-${randomBytes(4).toString('hex')}/`, lease_ttl_s: 3, call_timeout_ms: 500 },
        },
      },
    });
  });
  afterAll(async () => {
    await c?.stop();
    await etcd?.stop();
  });

  it('ends every session deterministically when the store returns after the fence expired', async () => {
    const live = await ClientSession.open(c.director.udp[0]!);
    try {
      await live.hello();
      await Promise.all([etcd.members[1]!.kill(), etcd.members[2]!.kill()]);
      await waitFor('the fence to expire', async () => {
        const r = await fetch(`${c.director.admin}/readyz`);
        return r.status === 503 && ((await r.json()) as { reason: string }).reason.includes('expired');
      }, { timeoutMs: 10_000, intervalMs: 100 });
      await Promise.all([etcd.members[1]!.restart(), etcd.members[2]!.restart()]);
      await waitFor('the session to be ended', async () => (await fetch(`${c.director.admin}/v1/sessions/${live.hex}`)).status === 404, {
        timeoutMs: 20_000,
        intervalMs: 100,
      });
      const audit = (await (await fetch(`${c.director.admin}/v1/audit?session=${live.hex}`)).json()) as { items: { event: string; cause: string }[] };
      expect(audit.items.map((l) => [l.event, l.cause])).toContainEqual(['terminate', 'partition']);
      // A datagram for an unknown session is dropped unanswered until the director follows the store's
      // feed again (store_not_following): send until the REJECT comes, for at most 10 s.
      let rej: Awaited<ReturnType<typeof live.next>> | undefined;
      for (let i = 0; i < 20 && rej === undefined; i++) {
        live.sendData(Buffer.from('after'));
        rej = await live.next((r) => r.type === PacketType.REJECT, 500).catch(() => undefined);
      }
      expect(rej?.payload?.[0]).toBe(RejectReason.SESSION_TERMINATED);
    } finally {
      await live.close();
    }
  });
});
