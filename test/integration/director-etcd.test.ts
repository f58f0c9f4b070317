// One director on the etcd store (a real three-member cluster on loopback): sessions are created,
// moved and ended by compare-and-swap in etcd, and what etcd holds matches what the director serves.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ClientSession } from '../../src/client/client.js';
import { PacketType } from '../../src/codec/types.js';
import { EtcdStore } from '../../src/store/etcd.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { waitFor } from '../helpers/wait.js';

describe('director on etcd', () => {
  let etcd: EtcdCluster;
  let c: Cluster;
  let view: EtcdStore;
  const prefix = `/anchor-test-${randomBytes(4).toString('hex')}/`;
  beforeAll(async () => {
    etcd = await startEtcdCluster({ members: 3 });
    c = await startCluster({ family: 4, config: { store: { kind: 'etcd', etcd: { endpoints: etcd.endpoints, prefix } } } });
    view = await EtcdStore.connect({ endpoints: etcd.endpoints, prefix, callTimeoutMs: 1000 });
  });
  afterAll(async () => {
    await view?.close();
    await c?.stop();
    await etcd?.stop();
  });

  it('admits, migrates and ends sessions through CAS in etcd', async () => {
    const sessions: ClientSession[] = [];
    try {
      for (let i = 0; i < 10; i++) {
        const s = await ClientSession.open(c.director.udp[0]!);
        sessions.push(s);
        await s.hello();
        s.sendData(Buffer.from(`data-${i}`));
        await s.next((r) => r.type === PacketType.DATA);
      }
      for (const s of sessions) {
        const r = await view.get(s.hex);
        expect(r.ok && r.record).toMatchObject({ id: s.hex, version: 1n, state: 'ATTACHED', director: 'anchor-test' });
      }
      const s0 = sessions[0]!;
      const before = await view.get(s0.hex);
      const owner = before.ok ? before.record!.owner : '';
      const to = c.nodeIds.find((n) => n !== owner)!;
      const m = await fetch(`${c.director.admin}/v1/sessions/${s0.hex}/migrate`, { method: 'POST', body: JSON.stringify({ to }) });
      expect(m.status).toBe(200);
      const after = await view.get(s0.hex);
      expect(after.ok && after.record).toMatchObject({ owner: to, version: 4n, state: 'ATTACHED' });
      s0.sendData(Buffer.from('after-move'));
      await s0.next((r) => r.type === PacketType.DATA && r.payload!.subarray(0, 10).toString() === 'after-move');
      const t = await fetch(`${c.director.admin}/v1/sessions/${s0.hex}/terminate`, { method: 'POST' });
      expect(t.status).toBe(200);
      // Ending is applied locally at once; the store's delete follows.
      await waitFor('the record to leave etcd', async () => {
        const gone = await view.get(s0.hex);
        return gone.ok && gone.record === null;
      });
    } finally {
      await Promise.all(sessions.map((s) => s.close()));
    }
  });
});
