// Idle expiry across two director processes on a real etcd cluster: while a session has traffic through
// one director, its coarse expiry refreshes keep it alive on the other; idle, it expires once (one audit
// line across both); a session whose director died is expired by the survivor.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { ClientSession } from '../../src/client/client.js';
import { PacketType } from '../../src/codec/types.js';
import { ReferenceNode } from '../../src/refnode/node.js';
import { etcdDirectorConfig, startDirector, type DirectorProc } from '../helpers/director-proc.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { waitFor } from '../helpers/wait.js';

const IDLE_TTL_S = 2;

describe('idle expiry across two directors on etcd', () => {
  let etcd: EtcdCluster;
  let raw: Etcd3;
  const nodes: ReferenceNode[] = [];
  let a: DirectorProc;
  let b: DirectorProc;
  const prefix = `/anchor-ttl-${randomBytes(4).toString('hex')}/`;
  beforeAll(async () => {
    etcd = await startEtcdCluster({ members: 3 });
    raw = new Etcd3({ hosts: etcd.endpoints });
    for (const id of ['node-a', 'node-b']) {
      const n = new ReferenceNode({ id, listen: { family: 4, address: '127.0.0.1', port: 0 } });
      await n.start();
      nodes.push(n);
    }
    const config = (id: string): Record<string, unknown> =>
      etcdDirectorConfig(id, nodes.map((n, i) => [['node-a', 'node-b'][i] as string, n] as const), { endpoints: etcd.endpoints, prefix }, { session: { idle_ttl_s: IDLE_TTL_S } });
    a = await startDirector(config('director-a'));
    b = await startDirector(config('director-b'));
  });
  afterAll(async () => {
    for (const d of [a, b]) {
      d?.kill();
      await d?.exited;
    }
    raw?.close();
    await Promise.allSettled(nodes.map((n) => n.close()));
    await etcd?.stop();
  });

  const has = async (d: DirectorProc, id: string): Promise<boolean> => (await fetch(`${d.admin}/v1/sessions/${id}`)).status === 200;
  const inEtcd = async (id: string): Promise<boolean> => (await raw.get(`${prefix}sessions/${id}`).string()) !== null;
  const auditEvents = async (d: DirectorProc, id: string): Promise<{ event: string; actor: string }[]> =>
    ((await (await fetch(`${d.admin}/v1/audit?session=${id}`)).json()) as { items: { event: string; actor: string }[] }).items;
  const metric = async (d: DirectorProc, series: string): Promise<number> => {
    const text = await (await fetch(`${d.admin}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(series + ' '));
    return line === undefined ? 0 : Number(line.split(' ').at(-1));
  };

  it('traffic through A keeps the session on B with a few refreshes; idle, it expires once, everywhere', async () => {
    const s = await ClientSession.open(a.udp[0]!);
    try {
      await s.hello();
      await waitFor('B to mirror the session', () => has(b, s.hex));
      // Traffic through A for 2.5 idle TTLs, one packet in flight at a time.
      const until = Date.now() + IDLE_TTL_S * 2500;
      let sent = 0;
      while (Date.now() < until) {
        const tag = `t${sent++}`;
        s.sendData(Buffer.from(tag));
        // Closed loop: the next packet goes when this one's echo is back (or lost: UDP).
        await s.next((r) => r.type === PacketType.DATA && r.payload!.subarray(0, tag.length).toString() === tag, 2000).catch(() => undefined);
      }
      expect(await has(b, s.hex)).toBe(true);
      expect(await inEtcd(s.hex)).toBe(true);
      const refreshes = await metric(a, 'anchor_expiry_refreshes_total{result="ok"}');
      expect(refreshes).toBeGreaterThanOrEqual(2);
      expect(refreshes).toBeLessThan(sent / 3); // coarse steps, not a write per packet
      // Idle now: it ends on both directors and in etcd, with one expire in the audit across both.
      await waitFor('both directors and etcd to drop the idle session', async () => !(await has(a, s.hex)) && !(await has(b, s.hex)) && !(await inEtcd(s.hex)), {
        timeoutMs: (IDLE_TTL_S + 6) * 1000,
      });
      const expires = [...(await auditEvents(a, s.hex)), ...(await auditEvents(b, s.hex))].filter((e) => e.event === 'expire');
      expect(expires).toHaveLength(1);
      const security = [...(await auditEvents(a, s.hex)), ...(await auditEvents(b, s.hex))].filter((e) => e.event === 'SECURITY_EVENT');
      expect(security).toEqual([]);
    } finally {
      await s.close();
    }
  });

  it('a director killed: the survivor expires the sessions it left, once their store expiry has passed', async () => {
    const s = await ClientSession.open(a.udp[0]!);
    try {
      await s.hello();
      await waitFor('B to mirror the session', () => has(b, s.hex));
      a.kill('SIGKILL');
      await a.exited;
      await waitFor('B to expire the dead director\'s session, in etcd too', async () => !(await has(b, s.hex)) && !(await inEtcd(s.hex)), {
        timeoutMs: (IDLE_TTL_S + 6) * 1000,
      });
      expect((await auditEvents(b, s.hex)).filter((e) => e.event === 'expire')).toEqual([expect.objectContaining({ actor: 'director-b' })]);
    } finally {
      await s.close();
    }
  });
});
