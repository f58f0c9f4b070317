// Automatic failover with two directors on etcd: both probe the nodes and see a dead one at about the same
// moment, so both would fail it over — two drains racing on every session (the drain records that would
// hold one back reach it through the watch, too late). The failover is claimed in etcd first
// (`<prefix>failovers/<node>`, with the director's lease): exactly one director runs it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { ClientSession } from '../../src/client/client.js';
import { ReferenceNode } from '../../src/refnode/node.js';
import { Etcd3 } from 'etcd3';
import { etcdDirectorConfig, startDirector, tempDir, type DirectorProc } from '../helpers/director-proc.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { waitFor } from '../helpers/wait.js';

interface NodeJson {
  id: string;
  health: string;
  sessions: number;
}
interface DrainJson {
  id: string;
  node: string;
  state: string;
  director?: string;
}
interface AuditJson {
  event: string;
  cause: string;
  actor: string;
  from_owner: string | null;
  detail?: { drain?: string };
}

const get = async <T>(d: DirectorProc, path: string): Promise<T> => (await (await fetch(`${d.admin}${path}`)).json()) as T;

describe('automatic failover, two directors on etcd', () => {
  let etcd: EtcdCluster;
  const nodes: ReferenceNode[] = [];
  const directors: DirectorProc[] = [];
  const sessions: ClientSession[] = [];
  const dir = tempDir();
  let prefix = '';
  beforeAll(async () => {
    etcd = await startEtcdCluster({ members: 1 });
    for (const id of ['node-a', 'node-b', 'node-c']) {
      const n = new ReferenceNode({ id, listen: { family: 4, address: '127.0.0.1', port: 0 }, recordPath: join(dir, `${id}.jsonl`) });
      await n.start();
      nodes.push(n);
    }
    prefix = `/anchor-fo2-${randomBytes(4).toString('hex')}/`;
    for (const id of ['director-a', 'director-b']) {
      directors.push(
        await startDirector(
          etcdDirectorConfig(id, nodes.map((n, i) => [['node-a', 'node-b', 'node-c'][i] as string, n] as const), { endpoints: etcd.endpoints, prefix }, {
            health: { interval_ms: 100, timeout_ms: 150, rise: 1, fall: 2 },
            failover: { mode: 'auto', grace_s: 0.3 },
            revoke: { timeout_ms: 100, retries: 1 },
            audit: { path: join(dir, `${id}.audit.jsonl`) },
          }),
        ),
      );
    }
  });
  afterAll(async () => {
    await Promise.allSettled(sessions.map((s) => s.close()));
    for (const d of directors) {
      d.kill();
      await d.exited;
    }
    await Promise.allSettled(nodes.map((n) => n.close()));
    await etcd?.stop();
  });

  it('a node dies: one director claims and runs its failover, the other leaves it; every session moves once', async () => {
    const [a, b] = directors as [DirectorProc, DirectorProc];
    for (const d of [a, b]) await waitFor('every node healthy', async () => (await get<{ items: NodeJson[] }>(d, '/v1/nodes')).items.every((n) => n.health === 'healthy') || undefined);
    // Sessions through both directors; both tables hold them all.
    for (let i = 0; i < 40; i++) {
      const s = await ClientSession.open((i % 2 === 0 ? a : b).udp[0]!);
      sessions.push(s);
      await s.hello();
    }
    const onB = async (d: DirectorProc): Promise<number> => (await get<{ items: NodeJson[] }>(d, '/v1/nodes')).items.find((n) => n.id === 'node-b')!.sessions;
    await waitFor('both directors to hold every session', async () => ((await onB(a)) === (await onB(b)) && (await onB(a)) > 0) || undefined);
    const before = await onB(a);
    // A third director (the test) holds the claim of node-b's failover, with a lease of its own.
    const client = new Etcd3({ hosts: [...etcd.endpoints] });
    const lease = client.lease(30);
    try {
      await lease.put(`${prefix}failovers/node-b`).value(JSON.stringify({ director: 'director-x', claim: 'test' }));
      await nodes[1]!.close(); // node-b dies
      // Both directors find it held and leave it: node-b keeps its sessions, no failover starts.
      for (const d of [a, b]) await waitFor('the director to leave the failover to the claim holder', () => d.stdout.includes('automatic failover of the node left to the director that claimed it') || undefined, { timeoutMs: 15_000 });
      expect(await onB(a)).toBe(before);
      expect(await onB(b)).toBe(before);
      for (const d of [a, b]) expect((await get<{ items: AuditJson[] }>(d, '/v1/audit?limit=1000')).items.filter((l) => l.event === 'failover')).toEqual([]);
      // The holder goes (its lease ends): one of the two claims it and fails node-b over.
      await lease.revoke();
    } finally {
      client.close();
    }
    await waitFor('node-b empty on both directors', async () => ((await onB(a)) === 0 && (await onB(b)) === 0) || undefined, { timeoutMs: 20_000 });
    // One failover: one director's audit has it, with its drain; the other's has none.
    const failovers = [];
    for (const d of [a, b]) {
      const lines = (await get<{ items: AuditJson[] }>(d, '/v1/audit?limit=1000')).items;
      failovers.push(lines.filter((l) => l.event === 'failover' && l.cause === 'node_unhealthy' && l.from_owner === 'node-b'));
    }
    expect(failovers.flat()).toHaveLength(1);
    // And every session of node-b moved exactly once, by that failover (one transfer line each, across both audits).
    let moves = 0;
    for (const d of [a, b]) moves += (await get<{ items: AuditJson[] }>(d, '/v1/audit?limit=1000')).items.filter((l) => l.event === 'failover' && l.cause === 'failover' && l.from_owner === 'node-b').length;
    expect(moves).toBe(before);
    // The drain lists agree: one failover drain of node-b, completed (the node is empty a moment before its
    // drain says so, and the other director learns it when the record is shared next).
    for (const d of [a, b]) {
      const states = async (): Promise<string[]> => (await get<{ items: DrainJson[] }>(d, '/v1/drains')).items.filter((x) => x.node === 'node-b').map((x) => x.state);
      await waitFor('the failover drain completed', async () => ((await states()).includes('completed') ? true : undefined), { timeoutMs: 10_000 });
      expect(await states()).toEqual(['completed']);
    }
    // And its claim was released: another failover of node-b (by either director) may be claimed again.
    const check = new Etcd3({ hosts: [...etcd.endpoints] });
    try {
      await waitFor('the claim released', async () => ((await check.get(`${prefix}failovers/node-b`).string()) === null) || undefined);
    } finally {
      check.close();
    }
  });
});
