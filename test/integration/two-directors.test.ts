// Two director processes sharing ownership through a real three-member etcd cluster, in front of three
// reference nodes: a session admitted through one director continues (after a jump) through the other
// with its owner; two directors racing on one session produce one winner and one OWNERSHIP_CONFLICT.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { ClientSession } from '../../src/client/client.js';
import { decodeJv1, decodeReject, encodeJv1 } from '../../src/codec/jv1.js';
import { PacketType, RejectReason } from '../../src/codec/types.js';
import { checkRecords } from '../../src/refnode/checker.js';
import { ReferenceNode } from '../../src/refnode/node.js';
import { readRecords } from '../../src/refnode/records.js';
import { etcdDirectorConfig, startDirector, tempDir, type DirectorProc } from '../helpers/director-proc.js';
import { readPrefix, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { waitFor } from '../helpers/wait.js';
import { closedBy, tcpHello } from '../helpers/tcp.js';
import { UdpPeer } from '../helpers/udp.js';
import { sealPacket } from '../../src/refnode/keys.js';

interface SessionJson {
  owner: string;
  version: string;
  transport: string;
}

describe('two directors on etcd', () => {
  let etcd: EtcdCluster;
  const nodes: ReferenceNode[] = [];
  let a: DirectorProc;
  let b: DirectorProc;
  const dir = tempDir();
  let config: (id: string) => Record<string, unknown>;
  const prefix = `/anchor-2d-${randomBytes(4).toString('hex')}/`;
  beforeAll(async () => {
    etcd = await startEtcdCluster({ members: 3 });
    for (const id of ['node-a', 'node-b', 'node-c']) {
      const n = new ReferenceNode({ id, listen: { family: 4, address: '127.0.0.1', port: 0 }, recordPath: join(dir, `${id}.jsonl`) });
      await n.start();
      nodes.push(n);
    }
    config = (id: string) =>
      etcdDirectorConfig(id, nodes.map((n, i) => [['node-a', 'node-b', 'node-c'][i] as string, n] as const), { endpoints: etcd.endpoints, prefix }, { listen: { udp: ['127.0.0.1:0'], tcp: ['127.0.0.1:0'] } });
    a = await startDirector(config('director-a'));
    b = await startDirector(config('director-b'));
  });
  afterAll(async () => {
    for (const d of [a, b]) {
      d?.kill();
      await d?.exited;
    }
    await Promise.allSettled(nodes.map((n) => n.close()));
    await etcd?.stop();
  });

  const session = async (d: DirectorProc, id: string): Promise<SessionJson | undefined> => {
    const r = await fetch(`${d.admin}/v1/sessions/${id}`);
    return r.status === 200 ? ((await r.json()) as SessionJson) : undefined;
  };

  it('a session admitted through A continues through B after a jump, keeping its owner', async () => {
    const first = await ClientSession.open(a.udp[0]!);
    try {
      const key = await first.hello();
      first.sendData(Buffer.from('via-a'));
      await first.next((r) => r.type === PacketType.DATA);
      const onA = (await session(a, first.hex))!;
      // B learns of the session from the store's watch.
      const onB = await waitFor('director B to see the session', () => session(b, first.hex));
      expect(onB).toMatchObject({ owner: onA.owner, version: '1' });
      const jumped = await ClientSession.open(b.udp[0]!, { id: first.id, key });
      try {
        jumped.sendData(Buffer.from('via-b'));
        const echo = await jumped.next((r) => r.type === PacketType.DATA && r.payload!.subarray(0, 5).toString() === 'via-b');
        expect(echo.local.port).toBe(jumped.transport.port);
        const afterB = (await session(b, first.hex))!;
        expect(afterB).toMatchObject({ owner: onA.owner, version: '2', transport: `127.0.0.1:${jumped.transport.port}` });
        // A follows: same owner, the new version and transport.
        await waitFor('director A to follow', async () => (await session(a, first.hex))?.version === '2');
        expect((await session(a, first.hex))!.owner).toBe(onA.owner);
      } finally {
        await jumped.close();
      }
    } finally {
      await first.close();
    }
  });

  it('a session over TCP through A is a TCP session on B too: a datagram from its ip:port is a jump there, which closes the connection on A', async () => {
    const id = randomBytes(16);
    const hex = id.toString('hex');
    const first = await tcpHello(a.tcp[0]!, id);
    const port = first.sock.localPort!;
    const closed = closedBy(first.sock, 10_000);
    // The same ip:port over UDP: on a session bound to datagrams it would be its transport (forwarded as
    // bound, nothing validated); bound to a TCP connection it is a jump that the owner validates and BINDs.
    const peer = await UdpPeer.open(4, port);
    try {
      const onA = (await session(a, hex))!;
      expect(onA).toMatchObject({ version: '1', transport: `127.0.0.1:${port}` });
      await waitFor('director B to see the session', () => session(b, hex));
      peer.send(sealPacket(first.key, encodeJv1(PacketType.DATA, id, Buffer.from('jump-b'))), b.udp[0]!);
      await peer.next((m) => decodeJv1(m).kind === 'ok');
      expect(await session(b, hex)).toMatchObject({ owner: onA.owner, version: '2', transport: `127.0.0.1:${port}` });
      // A follows, and its connection is not the session's transport any more.
      await closed;
      await waitFor('director A to follow', async () => (await session(a, hex))?.version === '2' || undefined);
    } finally {
      peer.close();
      first.sock.destroy();
    }
  });

  it('a director that joins later loads the sessions the store already holds', async () => {
    const s = await ClientSession.open(a.udp[0]!);
    try {
      await s.hello();
      const c = await startDirector(config('director-c'));
      try {
        const onC = await session(c, s.hex);
        expect(onC).toMatchObject({ owner: (await session(a, s.hex))!.owner, version: '1' });
      } finally {
        c.kill();
        await c.exited;
      }
    } finally {
      await s.close();
    }
  });

  it('SIGTERM on a director that serves none of the cluster\'s sessions: it drains at once (the ones it only mirrors are not its to wait for)', async () => {
    const s = await ClientSession.open(a.udp[0]!);
    const c = await startDirector({ ...config('director-c'), drain: { deadline_s: 600 } });
    try {
      await s.hello();
      await waitFor('director C to mirror the session', () => session(c, s.hex));
      let code: number | null | undefined;
      void c.exited.then((x) => (code = x.code));
      c.kill('SIGTERM');
      // Waiting for the mirrored session would hold C to its 600 s deadline.
      await waitFor('director C to exit', () => (code !== undefined ? true : undefined), { timeoutMs: 30_000 });
      expect(code).toBe(0);
      const drained = c.stdout.split('\n').find((l) => l.includes('director drained'));
      expect(JSON.parse(drained!)).toMatchObject({ remaining: 0 });
      expect(await session(a, s.hex)).toMatchObject({ version: '1' }); // A still serves it
    } finally {
      c.kill();
      await c.exited;
      await s.close();
    }
  });

  it('killing the etcd leader: both directors keep serving after the election', async () => {
    const s = await ClientSession.open(a.udp[0]!);
    try {
      await s.hello();
      const leader = await etcd.leader();
      await etcd.members.find((m) => m.name === leader)!.kill();
      // New sessions are admitted again on both directors once a new leader is elected (bounded wait).
      for (const d of [a, b]) {
        await waitFor(
          `an admission through ${d === a ? 'A' : 'B'}`,
          async () => {
            const n = await ClientSession.open(d.udp[0]!);
            try {
              await n.hello({ timeoutMs: 1000, attempts: 1 });
              return true;
            } catch {
              return undefined;
            } finally {
              await n.close();
            }
          },
          { timeoutMs: 20_000, intervalMs: 200 },
        );
      }
      s.sendData(Buffer.from('after-election'));
      await s.next((r) => r.type === PacketType.DATA && r.payload!.subarray(0, 14).toString() === 'after-election');
      await etcd.members.find((m) => m.name === leader)!.restart();
    } finally {
      await s.close();
    }
  });

  it('two directors racing on one session: one winner, one REJECT OWNERSHIP_CONFLICT; the checker passes', async () => {
    const s = await ClientSession.open(a.udp[0]!);
    const extra: ClientSession[] = [];
    try {
      // Both directors ready (their leases fresh after the previous test's election), then the race.
      for (const d of [a, b]) await waitFor('readyz', async () => (await fetch(`${d.admin}/readyz`)).status === 200);
      const key = await s.hello();
      await waitFor('director B to see the session', () => session(b, s.hex));
      const viaA = await ClientSession.open(a.udp[0]!, { id: s.id, key });
      const viaB = await ClientSession.open(b.udp[0]!, { id: s.id, key });
      extra.push(viaA, viaB);
      viaA.sendData(Buffer.from('race-a'));
      viaB.sendData(Buffer.from('race-b'));
      const loser = await Promise.any(
        [viaA, viaB].map(async (x) => {
          const r = await x.next((m) => m.type === PacketType.REJECT, 5000);
          return { x, reason: decodeReject(r.payload!)?.reason };
        }),
      );
      expect(loser.reason).toBe(RejectReason.OWNERSHIP_CONFLICT);
      const winner = loser.x === viaA ? viaB : viaA;
      await waitFor('both directors to agree on the winner', async () => {
        const [x, y] = await Promise.all([session(a, s.hex), session(b, s.hex)]);
        const want = `127.0.0.1:${winner.transport.port}`;
        return x?.transport === want && y?.transport === want && x.version === '2' && y.version === '2';
      });
      expect(loser.x.inbox.filter((m) => m.type === PacketType.REJECT)).toEqual([]);
      const verdict = checkRecords(await readRecords(dir));
      expect(verdict.violations).toEqual([]);
    } finally {
      await Promise.all([s, ...extra].map((x) => x.close()));
    }
  });

  it('a drain started through director A moves the sessions served by director B', async () => {
    const viaB: ClientSession[] = [];
    try {
      for (let i = 0; i < 12; i++) {
        const s = await ClientSession.open(b.udp[0]!);
        viaB.push(s);
        await s.hello();
      }
      await waitFor('A to see B\'s sessions', async () => (await Promise.all(viaB.map((s) => session(a, s.hex)))).every((x) => x !== undefined));
      const owners = await Promise.all(viaB.map(async (s) => (await session(b, s.hex))!.owner));
      const node = owners[0]!;
      const moving = viaB.filter((_, i) => owners[i] === node);
      const r = await fetch(`${a.admin}/v1/nodes/${node}/drain`, { method: 'POST', body: '{"mode":"migrate"}' });
      expect(r.status).toBe(202);
      const drain = (await r.json()) as { id: string };
      const done = await waitFor('the drain on A to complete', async () => {
        const d = (await (await fetch(`${a.admin}/v1/drains/${drain.id}`)).json()) as { state: string; moved: number };
        return d.state === 'completed' ? d : undefined;
      });
      expect(done.moved).toBeGreaterThanOrEqual(moving.length); // earlier tests left sessions on it too
      for (const s of moving) {
        const onB = await waitFor('B to follow the move', async () => {
          const x = await session(b, s.hex);
          return x !== undefined && x.owner !== node ? x : undefined;
        });
        expect(onB.version).toBe('4');
        s.sendData(Buffer.from('moved-by-a'));
        await s.next((r2) => r2.type === PacketType.DATA && r2.payload!.subarray(0, 10).toString() === 'moved-by-a');
      }
      expect(checkRecords(await readRecords(dir)).violations).toEqual([]);
      // The node's draining state is shared: B stops admitting to it too.
      await waitFor('B to see the node draining', async () => {
        const nodes = (await (await fetch(`${b.admin}/v1/nodes`)).json()) as { items: { id: string; state: string }[] };
        return nodes.items.find((n) => n.id === node)?.state === 'draining';
      });
      for (let i = 0; i < 6; i++) {
        const n = await ClientSession.open(b.udp[0]!);
        viaB.push(n);
        await n.hello();
        expect((await session(b, n.hex))!.owner).not.toBe(node);
      }
      await fetch(`${a.admin}/v1/nodes/${node}/undrain`, { method: 'POST' });
      await waitFor('B to see the node active again', async () => {
        const nodes = (await (await fetch(`${b.admin}/v1/nodes`)).json()) as { items: { id: string; state: string }[] };
        return nodes.items.find((n) => n.id === node)?.state === 'active';
      });
    } finally {
      await Promise.all(viaB.map((s) => s.close()));
    }
  });

  it('every director lists every drain; one drain per node in the cluster; an undrain on B cancels a drain running on A', async () => {
    const s = await ClientSession.open(a.udp[0]!);
    try {
      await s.hello();
      const node = (await waitFor('A to know the session', () => session(a, s.hex)))!.owner;
      // `wait` mode keeps the drain in progress (waiting for the node's sessions to end) until cancelled.
      const r = await fetch(`${a.admin}/v1/nodes/${node}/drain`, { method: 'POST', body: '{"mode":"wait","deadline_s":600}' });
      expect(r.status).toBe(202);
      const started = (await r.json()) as { id: string; director: string; state: string };
      expect(started).toMatchObject({ director: 'director-a', state: 'waiting' });
      type Drain = { id: string; director: string; state: string; node: string };
      const onB = await waitFor('B to list the drain running on A', async () => {
        const list = (await (await fetch(`${b.admin}/v1/drains`)).json()) as { items: Drain[] };
        return list.items.find((d) => d.id === started.id);
      });
      expect(onB).toMatchObject({ node, director: 'director-a', state: 'waiting' });
      expect(((await (await fetch(`${b.admin}/v1/drains/${started.id}`)).json()) as Drain).director).toBe('director-a');
      // A second wait drain of the node through B is answered with the one already running on A; a migrate
      // drain is A's to start (it would escalate A's waiting drain there): refused, naming A.
      const again = await fetch(`${b.admin}/v1/nodes/${node}/drain`, { method: 'POST', body: '{"mode":"wait"}' });
      expect(again.status).toBe(200);
      expect(((await again.json()) as Drain).id).toBe(started.id);
      const migrate = await fetch(`${b.admin}/v1/nodes/${node}/drain`, { method: 'POST', body: '{"mode":"migrate"}' });
      expect(migrate.status).toBe(409);
      expect(((await migrate.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'drain_elsewhere', message: expect.stringContaining(`(${started.id}) is waiting on director director-a`) });
      // A failover of it through B is that director's to do: refused, naming it (no second drain races it).
      const fo = await fetch(`${b.admin}/v1/nodes/${node}/failover`, { method: 'POST' });
      expect(fo.status).toBe(409);
      expect(((await fo.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'drain_elsewhere', message: expect.stringContaining(`(${started.id}) is waiting on director director-a`) });
      expect(((await (await fetch(`${b.admin}/v1/drains`)).json()) as { items: Drain[] }).items.filter((d) => d.node === node && (d.state === 'waiting' || d.state === 'running'))).toHaveLength(1);
      // Undrain through B: A cancels its drain, both list it cancelled, both admit to the node again.
      const u = (await (await fetch(`${b.admin}/v1/nodes/${node}/undrain`, { method: 'POST' })).json()) as { cancelled_drain: Drain | null };
      expect(u.cancelled_drain?.id).toBe(started.id);
      for (const d of [a, b]) {
        await waitFor(`${d === a ? 'A' : 'B'} to show the drain cancelled`, async () => {
          const x = (await (await fetch(`${d.admin}/v1/drains/${started.id}`)).json()) as Drain;
          return x.state === 'cancelled';
        });
        await waitFor('the node to be active again', async () => {
          const nodes = (await (await fetch(`${d.admin}/v1/nodes`)).json()) as { items: { id: string; state: string }[] };
          return nodes.items.find((n) => n.id === node)?.state === 'active';
        });
      }
    } finally {
      await s.close();
    }
  });

  it('a director restarted with the same id keeps the node states it shared (a node it drained stays draining there)', async () => {
    type Nodes = { items: { id: string; state: string }[] };
    const stateOn = async (d: DirectorProc, node: string): Promise<string | undefined> => ((await (await fetch(`${d.admin}/v1/nodes`)).json()) as Nodes).items.find((n) => n.id === node)?.state;
    const r = await fetch(`${a.admin}/v1/nodes/node-c/drain`, { method: 'POST', body: '{"mode":"wait","deadline_s":600}' });
    expect(r.status).toBe(202);
    await waitFor('B to see node-c draining', async () => (await stateOn(b, 'node-c')) === 'draining' || undefined);
    a.kill('SIGKILL');
    await a.exited;
    a = await startDirector(config('director-a'));
    expect(await stateOn(a, 'node-c')).toBe('draining');
    // Undrained through the restarted director: both admit to it again.
    expect((await fetch(`${a.admin}/v1/nodes/node-c/undrain`, { method: 'POST' })).status).toBe(200);
    for (const d of [a, b]) await waitFor('node-c active again', async () => (await stateOn(d, 'node-c')) === 'active' || undefined);
  });

  it('a drain through A and an undrain through B at once: both directors end with the state etcd committed last, A\'s drain stopped only if that is active', async () => {
    type Nodes = { items: { id: string; state: string }[] };
    const node = 'node-b';
    const stateOn = async (d: DirectorProc): Promise<string | undefined> => ((await (await fetch(`${d.admin}/v1/nodes`)).json()) as Nodes).items.find((n) => n.id === node)?.state;
    const drainState = async (id: string): Promise<string> => ((await (await fetch(`${a.admin}/v1/drains/${id}`)).json()) as { state: string }).state;
    const inEtcd = async (): Promise<string | undefined> => {
      const kv = (await readPrefix(etcd.endpoints[0]!, `${prefix}nodes/${node}`)).find((x) => x.key === `${prefix}nodes/${node}`);
      return kv === undefined ? undefined : ((JSON.parse(kv.value) as { state: string }).state);
    };
    for (let round = 0; round < 6; round++) {
      const [dr, un] = await Promise.all([
        fetch(`${a.admin}/v1/nodes/${node}/drain`, { method: 'POST', body: '{"mode":"wait","deadline_s":600}' }),
        fetch(`${b.admin}/v1/nodes/${node}/undrain`, { method: 'POST' }),
      ]);
      expect([200, 202]).toContain(dr.status);
      const drain = ((await dr.json()) as { id: string }).id;
      expect(un.status).toBe(200);
      const final = await waitFor(`round ${round}: A, B and etcd to agree on ${node}`, async () => {
        const [onA, onB, committed] = await Promise.all([stateOn(a), stateOn(b), inEtcd()]);
        return onA !== undefined && onA === onB && onA === committed ? onA : undefined;
      });
      // A's drain stopped (cancelled by B's undrain) exactly when the node ended active; it runs (or, with
      // no session of the node left to wait for, completed) when the node ended draining.
      await waitFor(`round ${round}: A's drain to agree with ${node} ${final}`, async () => {
        const st = await drainState(drain);
        const inProgress = st === 'waiting' || st === 'running';
        return (final === 'draining' ? st !== 'cancelled' : !inProgress) || undefined;
      });
      expect((await fetch(`${a.admin}/v1/nodes/${node}/undrain`, { method: 'POST' })).status).toBe(200);
      for (const d of [a, b]) await waitFor(`${node} active again`, async () => (await stateOn(d)) === 'active' || undefined);
    }
  });

  it('a director restarted on its address numbers the sessions it served above what it sent before, on its bound and jump paths, so no (version, seq) reaches a node twice', async () => {
    const s = await ClientSession.open(a.udp[0]!);
    let jumped: ClientSession | undefined;
    try {
      const key = await s.hello();
      for (let i = 0; i < 3; i++) {
        s.sendData(Buffer.from(`before-${i}`));
        await s.next((r) => r.type === PacketType.DATA && r.payload!.subarray(0, 8).toString() === `before-${i}`);
      }
      await waitFor('director B to see the session', () => session(b, s.hex));
      const dst = `127.0.0.1:${a.udp[0]!.port}`;
      // Killed and started again on the same address: its clients keep sending there; it reads their
      // sessions back from the store, at the version it numbered them under before.
      a.kill('SIGKILL');
      await a.exited;
      a = await startDirector({ ...config('director-a'), listen: { udp: [dst], tcp: ['127.0.0.1:0'] } });
      await waitFor('A ready', async () => (await fetch(`${a.admin}/readyz`)).status === 200 || undefined);
      for (let i = 0; i < 3; i++) {
        s.sendData(Buffer.from(`after--${i}`));
        await s.next((r) => r.type === PacketType.DATA && r.payload!.subarray(0, 8).toString() === `after--${i}`);
      }
      expect((await session(a, s.hex))!.version).toBe('1');
      // Then a jump through it (a candidate, the owner's BIND): version 2.
      jumped = await ClientSession.open(a.udp[0]!, { id: s.id, key });
      jumped.sendData(Buffer.from('jumped'));
      await jumped.next((r) => r.type === PacketType.DATA && r.payload!.subarray(0, 6).toString() === 'jumped');
      expect((await session(a, s.hex))!.version).toBe('2');
      const records = await readRecords(dir);
      expect(checkRecords(records).violations).toEqual([]);
      const mine = records.filter((r) => r.session === s.hex && r.dst === dst && r.accepted !== false && r.type !== PacketType.REVOKE);
      const seqs = mine.map((r) => Number(r.seq));
      // HELLO and three DATA from the first run, numbered 1…4; the second run's all above them, rising.
      expect(seqs.slice(0, 4)).toEqual([1, 2, 3, 4]);
      expect(seqs.length).toBeGreaterThanOrEqual(8);
      expect(seqs.slice(4).every((n, i, a) => n > 4 && (i === 0 || n > (a[i - 1] as number)))).toBe(true);
    } finally {
      await jumped?.close();
      await s.close();
    }
  });

  it('a director killed: its sessions continue through the other director', async () => {
    const s = await ClientSession.open(a.udp[0]!);
    try {
      const key = await s.hello();
      await waitFor('director B to see the session', () => session(b, s.hex));
      a.kill('SIGKILL');
      await a.exited;
      const moved = await ClientSession.open(b.udp[0]!, { id: s.id, key });
      try {
        moved.sendData(Buffer.from('after-a-died'));
        await moved.next((r) => r.type === PacketType.DATA && r.payload!.subarray(0, 12).toString() === 'after-a-died');
        expect((await session(b, s.hex))!.version).toBe('2');
      } finally {
        await moved.close();
      }
      expect(checkRecords(await readRecords(dir)).violations).toEqual([]);
    } finally {
      await s.close();
    }
  });
});
