// A node killed mid-run: no silent transfer (its sessions' packets are dropped and counted, their owner
// stays), explicit failover moves them, and `failover: auto` does the same after its grace period.
import { afterEach, describe, expect, it } from 'vitest';
import { ClientSession } from '../../src/client/client.js';
import { PacketType } from '../../src/codec/types.js';
import { ReferenceNode } from '../../src/refnode/node.js';
import { transportKey } from '../../src/codec/ip.js';
import { UdpPeer } from '../helpers/udp.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { metric } from '../helpers/director-proc.js';
import { waitFor } from '../helpers/wait.js';

interface SessionJson {
  id: string;
  owner: string;
  version: string;
}
interface NodeJson {
  id: string;
  health: string;
  sessions: number;
}
interface AuditJson {
  event: string;
  cause: string;
  actor: string;
  from_owner: string | null;
  time: string;
}

const HEALTH = { health: { interval_ms: 100, timeout_ms: 150, rise: 1, fall: 2 }, revoke: { timeout_ms: 100, retries: 1 } };

async function getJson<T>(c: Cluster, path: string): Promise<T> {
  return (await (await fetch(`${c.director.admin}${path}`)).json()) as T;
}

async function openSessions(c: Cluster, n: number): Promise<ClientSession[]> {
  const out: ClientSession[] = [];
  for (let i = 0; i < n; i++) {
    const s = await ClientSession.open(c.director.udp[0]!);
    out.push(s);
    await s.hello();
  }
  return out;
}

async function echoes(s: ClientSession, app: string, timeoutMs = 3000): Promise<boolean> {
  s.sendData(Buffer.from(app));
  return s
    .next((r) => r.type === PacketType.DATA && r.payload!.subarray(0, app.length).toString() === app, timeoutMs)
    .then(() => true)
    .catch(() => false);
}

describe('failover', () => {
  let c: Cluster | undefined;
  const sessions: ClientSession[] = [];
  afterEach(async () => {
    await Promise.all(sessions.splice(0).map((s) => s.close()));
    await c?.stop();
    c = undefined;
  });

  it('a dead node keeps its sessions until an operator fails it over; then they move and flow again', async () => {
    c = await startCluster({ family: 4, config: HEALTH });
    const cl = c;
    await waitFor('every node healthy', async () => (await getJson<{ items: NodeJson[] }>(cl, '/v1/nodes')).items.every((n) => n.health === 'healthy'));
    sessions.push(...(await openSessions(cl, 45)));
    const owners = new Map<string, string>();
    for (const s of sessions) owners.set(s.hex, (await getJson<SessionJson>(cl, `/v1/sessions/${s.hex}`)).owner);
    const victims = sessions.filter((s) => owners.get(s.hex) === 'node-a');
    const others = sessions.filter((s) => owners.get(s.hex) !== 'node-a');
    expect(victims.length).toBeGreaterThan(0);

    await cl.nodes[0]!.close(); // node-a dies
    await waitFor('node-a to be unhealthy', async () => (await getJson<{ items: NodeJson[] }>(cl, '/v1/nodes')).items.find((n) => n.id === 'node-a')!.health === 'unhealthy');
    expect((await fetch(`${cl.director.admin}/readyz`)).status).toBe(200); // two nodes are left

    // No silent transfer: the victims' packets are dropped and counted, their owner stays node-a.
    const dropped0 = await metric(cl.director.admin, 'anchor_client_datagrams_dropped_total', { reason: 'owner_unavailable' });
    expect(await echoes(victims[0]!, 'while-dead', 500)).toBe(false);
    await waitFor('the drop to be counted', async () => (await metric(cl.director.admin, 'anchor_client_datagrams_dropped_total', { reason: 'owner_unavailable' })) > dropped0);
    for (const v of victims) expect((await getJson<SessionJson>(cl, `/v1/sessions/${v.hex}`)).owner).toBe('node-a');
    expect(await echoes(others[0]!, 'others-fine')).toBe(true);
    // New sessions avoid the dead node.
    const fresh = await openSessions(cl, 10);
    sessions.push(...fresh);
    for (const s of fresh) expect((await getJson<SessionJson>(cl, `/v1/sessions/${s.hex}`)).owner).not.toBe('node-a');

    const r = await fetch(`${cl.director.admin}/v1/nodes/node-a/failover`, { method: 'POST' });
    expect(r.status).toBe(202);
    const fo = (await r.json()) as { id: string; cause: string; total: number };
    expect(fo.cause).toBe('failover');
    expect(fo.total).toBe(victims.length);
    const done = await waitFor('the failover to complete', async () => {
      const d = await getJson<{ state: string; moved: number }>(cl, `/v1/drains/${fo.id}`);
      return d.state === 'completed' ? d : undefined;
    });
    expect(done.moved).toBe(victims.length);
    for (const v of victims) {
      const rec = await getJson<SessionJson>(cl, `/v1/sessions/${v.hex}`);
      expect(rec.owner).not.toBe('node-a');
      expect(rec.version).toBe('4');
      expect(await echoes(v, `after-failover-${v.hex}`)).toBe(true);
    }
    const audit = (await getJson<{ items: AuditJson[] }>(cl, '/v1/audit?limit=1000')).items;
    expect(audit.filter((l) => l.event === 'failover' && l.from_owner === 'node-a').length).toBe(victims.length + 1); // one per session + the node's
    // The dead node never acknowledges its REVOKEs: each becomes a SECURITY_EVENT after the retries.
    await waitFor('unacknowledged REVOKEs to be reported', async () => (await metric(cl.director.admin, 'anchor_revokes_total', { outcome: 'unacknowledged' })) === victims.length);
  });

  it('an operator\'s failover of a healthy node moves its sessions and stops new ones going there until an undrain', async () => {
    c = await startCluster({ family: 4, config: HEALTH });
    const cl = c;
    await waitFor('every node healthy', async () => (await getJson<{ items: NodeJson[] }>(cl, '/v1/nodes')).items.every((n) => n.health === 'healthy'));
    sessions.push(...(await openSessions(cl, 12)));
    const r = await fetch(`${cl.director.admin}/v1/nodes/node-b/failover`, { method: 'POST' });
    expect(r.status).toBe(202);
    const fo = (await r.json()) as { id: string };
    await waitFor('the failover to complete', async () => (await getJson<{ state: string }>(cl, `/v1/drains/${fo.id}`)).state === 'completed' || undefined);
    const nodeB = async (): Promise<{ state: string; sessions: number }> => (await getJson<{ items: (NodeJson & { state: string })[] }>(cl, '/v1/nodes')).items.find((n) => n.id === 'node-b')!;
    expect(await nodeB()).toMatchObject({ state: 'draining', sessions: 0 });
    // Healthy, yet no new session lands there (30 sessions: with it eligible, ~10 would).
    const fresh = await openSessions(cl, 30);
    sessions.push(...fresh);
    for (const s of fresh) expect((await getJson<SessionJson>(cl, `/v1/sessions/${s.hex}`)).owner).not.toBe('node-b');
    expect((await nodeB()).sessions).toBe(0);
    expect((await fetch(`${cl.director.admin}/v1/nodes/node-b/undrain`, { method: 'POST' })).status).toBe(200);
    expect((await nodeB()).state).toBe('active');
  });

  it('failover: auto moves the sessions of a node unhealthy for grace_s, and says so in the audit', async () => {
    c = await startCluster({ family: 4, config: { ...HEALTH, failover: { mode: 'auto', grace_s: 0.5 } } });
    const cl = c;
    await waitFor('every node healthy', async () => (await getJson<{ items: NodeJson[] }>(cl, '/v1/nodes')).items.every((n) => n.health === 'healthy'));
    sessions.push(...(await openSessions(cl, 30)));
    const onB = (await getJson<{ items: SessionJson[] }>(cl, '/v1/sessions?node=node-b&limit=1000')).items;
    expect(onB.length).toBeGreaterThan(0);
    await cl.nodes[1]!.close(); // node-b dies
    await waitFor('node-b to be empty', async () => (await getJson<{ items: NodeJson[] }>(cl, '/v1/nodes')).items.find((n) => n.id === 'node-b')!.sessions === 0, {
      timeoutMs: 15_000,
    });
    const audit = (await getJson<{ items: AuditJson[] }>(cl, '/v1/audit?limit=1000')).items;
    const nodeLine = audit.find((l) => l.event === 'failover' && l.cause === 'node_unhealthy');
    expect(nodeLine).toMatchObject({ actor: 'auto-failover', from_owner: 'node-b' });
    expect(audit.filter((l) => l.event === 'failover' && l.cause === 'failover').length).toBe(onB.length);
    for (const s of sessions.filter((x) => onB.some((b) => b.id === x.hex))) expect(await echoes(s, 'auto')).toBe(true);
  });
  /**
   * A cluster with `failover: auto` moving `rate` sessions a second, 40 sessions open, node-b killed, and its
   * automatic failover running (still, for seconds: the sessions on node-b at that rate).
   */
  async function slowAutoFailoverOfB(rate: number): Promise<{ cl: Cluster; onB: SessionJson[]; address: ReferenceNode['address']; fo: { id: string } }> {
    c = await startCluster({ family: 4, config: { ...HEALTH, failover: { mode: 'auto', grace_s: 0.2 }, drain: { rate } } });
    const cl = c;
    await waitFor('every node healthy', async () => (await getJson<{ items: NodeJson[] }>(cl, '/v1/nodes')).items.every((n) => n.health === 'healthy'));
    sessions.push(...(await openSessions(cl, 40)));
    const onB = (await getJson<{ items: SessionJson[] }>(cl, '/v1/sessions?node=node-b&limit=1000')).items;
    expect(onB.length).toBeGreaterThan(3);
    const { address } = cl.nodes[1]!;
    await cl.nodes[1]!.close(); // node-b dies
    const fo = await waitFor('the automatic failover of node-b to run', async () =>
      (await getJson<{ items: { id: string; node: string; cause: string; state: string }[] }>(cl, '/v1/drains')).items.find((d) => d.node === 'node-b' && d.cause === 'failover' && d.state === 'running'),
    );
    return { cl, onB, address, fo };
  }

  it('failover: auto stops once the node is healthy again; the sessions not moved yet stay on it', async () => {
    // One move a second: the failover is still running when the node comes back.
    const { cl, onB, address, fo } = await slowAutoFailoverOfB(1);
    // node-b back on its address.
    const back = new ReferenceNode({ id: 'node-b', listen: address });
    await back.start();
    try {
      const done = await waitFor('the failover to stop', async () => {
        const d = await getJson<{ state: string; moved: number; remaining: number; last_error: string | null }>(cl, `/v1/drains/${fo.id}`);
        return d.state !== 'running' ? d : undefined;
      });
      expect(done.state).toBe('cancelled');
      expect(done.last_error).toMatch(/^cancelled: the node is healthy again/);
      // A batch past its freeze when the failover stopped may still land its move: the record counts it.
      const settled = await waitFor('node-b to hold what the failover did not move', async () => {
        const d = await getJson<{ moved: number }>(cl, `/v1/drains/${fo.id}`);
        const b = (await getJson<{ items: NodeJson[] }>(cl, '/v1/nodes')).items.find((n) => n.id === 'node-b')!;
        return b.sessions === onB.length - d.moved ? { moved: d.moved, node: b } : undefined;
      });
      expect(settled.moved).toBeLessThan(onB.length);
      expect(settled.node.health).toBe('healthy');
      expect(settled.node.sessions).toBeGreaterThan(0);
    } finally {
      await back.close();
    }
  });

  it('an operator\'s drain asked for while the automatic failover runs joins it, and goes on when the node is healthy again', async () => {
    const { cl, onB, address, fo } = await slowAutoFailoverOfB(2);
    // The operator takes node-b out for maintenance meanwhile: the failover running is that drain.
    const r = await fetch(`${cl.director.admin}/v1/nodes/node-b/drain`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"mode":"migrate"}' });
    expect(((await r.json()) as { id: string }).id).toBe(fo.id);
    const back = new ReferenceNode({ id: 'node-b', listen: address });
    await back.start();
    try {
      await waitFor('node-b healthy again', async () => (await getJson<{ items: NodeJson[] }>(cl, '/v1/nodes')).items.find((n) => n.id === 'node-b')!.health === 'healthy');
      // Still moving when the node came back (two moves a second): what follows tests the recovery.
      expect((await getJson<{ state: string }>(cl, `/v1/drains/${fo.id}`)).state).toBe('running');
      const done = await waitFor('the drain to end', async () => {
        const d = await getJson<{ state: string; moved: number }>(cl, `/v1/drains/${fo.id}`);
        return d.state !== 'running' ? d : undefined;
      }, { timeoutMs: 30_000 });
      expect(done).toMatchObject({ state: 'completed', moved: onB.length });
      const b = (await getJson<{ items: (NodeJson & { state: string })[] }>(cl, '/v1/nodes')).items.find((n) => n.id === 'node-b')!;
      expect({ state: b.state, sessions: b.sessions }).toEqual({ state: 'draining', sessions: 0 });
    } finally {
      await back.close();
    }
  }, 45_000);

  it('a node that has not answered a probe yet takes no new session: a director started beside a dead node places none there', async () => {
    const dead = await UdpPeer.open(4); // receives the probes, never answers
    try {
      c = await startCluster({ family: 4, config: { health: { interval_ms: 200, timeout_ms: 200, rise: 2, fall: 50 } }, extraNodes: [{ id: 'node-d', address: transportKey(dead.address) }] });
      const cl = c;
      // Right after start: the nodes that answered start()'s probe are healthy; node-d is unknown (fall 50:
      // not unhealthy for 10 s) and out of the ring.
      const nodes = (await getJson<{ items: NodeJson[] }>(cl, '/v1/nodes')).items;
      expect(nodes.map((n) => [n.id, n.health])).toEqual([
        ['node-a', 'healthy'],
        ['node-b', 'healthy'],
        ['node-c', 'healthy'],
        ['node-d', 'unknown'],
      ]);
      expect((await fetch(`${cl.director.admin}/readyz`)).status).toBe(200);
      sessions.push(...(await openSessions(cl, 40)));
      const onD = (await getJson<{ items: NodeJson[] }>(cl, '/v1/nodes')).items.find((n) => n.id === 'node-d')!;
      expect(onD.sessions).toBe(0);
    } finally {
      dead.close();
    }
  });
});
