// `anchor ctl` as an operator runs it: the real entry point as a child process against a real director
// (three reference nodes, live sessions): tables and --json, a drain followed to completion, undrain,
// failover, migrate, plan, audit (and --follow), refusals (exit 1 with the reason) and usage errors (exit 2).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import { sessionIdHex } from '../../src/codec/jv1.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { spawnAnchor, type Proc } from '../helpers/director-proc.js';
import { openSessions, UdpPeer } from '../helpers/udp.js';
import { waitFor } from '../helpers/wait.js';

const TOKEN = 'ctl-test-token-0123456789';
const SESSIONS = 60;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface NodeJson {
  id: string;
  state: string;
  health: string;
  weight: number;
  sessions: number;
}

// Every command is a new process: generous per-test bounds for a loaded 2-core machine.
describe('anchor ctl against a real director', { timeout: 180_000 }, () => {
  let c: Cluster;
  let peer: UdpPeer;
  const ids: string[] = [];
  const running = new Set<Proc>();

  /** Runs `anchor ctl ARGS --admin <director>` with the token in the environment; waits for its exit. */
  const ctl = async (args: string[], env: NodeJS.ProcessEnv = { ANCHOR_ADMIN_TOKEN: TOKEN }): Promise<Run> => {
    const p = spawnAnchor(['ctl', ...args, '--admin', c.director.admin], env);
    running.add(p);
    try {
      const { code } = await p.exited;
      await new Promise((r) => setImmediate(r));
      return { code, stdout: p.stdout, stderr: p.stderr };
    } finally {
      running.delete(p);
    }
  };
  const json = async <T>(args: string[]): Promise<T> => {
    const r = await ctl([...args, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout) as T;
  };
  const nodes = async (): Promise<NodeJson[]> => (await json<{ nodes: NodeJson[] }>(['status'])).nodes;

  beforeAll(async () => {
    c = await startCluster({
      family: 4,
      env: { ANCHOR_ADMIN_TOKEN: TOKEN },
      // Slow enough that a followed drain reports progress more than once; sessions outlive the test.
      config: { drain: { rate: 40, concurrency: 4 }, session: { idle_ttl_s: 600 } },
    });
    peer = await UdpPeer.open(4);
    ids.push(...(await openSessions(peer, c.director.udp[0]!, SESSIONS)).map(sessionIdHex));
    // Sessions may be admitted before the probes have called every node healthy (health unknown): the
    // status test below expects the settled view.
    await waitFor(
      'every node probed healthy',
      async () => {
        const res = await fetch(`${c.director.admin}/v1/nodes`, { headers: { authorization: `Bearer ${TOKEN}` } });
        const list = ((await res.json()) as { items: NodeJson[] }).items;
        return list.length === 3 && list.every((n) => n.health === 'healthy') ? true : undefined;
      },
      { timeoutMs: 20_000 },
    );
  }, 120_000);
  afterAll(async () => {
    for (const p of running) p.kill();
    await Promise.all([...running].map((p) => p.exited));
    peer?.close();
    await c?.stop();
  });

  it('status: every node with its state, health, weight and sessions, and readiness', async () => {
    const r = await ctl(['status']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe(`director: ready, ${SESSIONS} sessions on 3 nodes`);
    expect(lines[2]).toMatch(/^NODE +ADDRESS +STATE +HEALTH +WEIGHT +SESSIONS$/);
    for (const [i, id] of ['node-a', 'node-b', 'node-c'].entries()) {
      expect(lines[3 + i]).toMatch(new RegExp(`^${id} +127\\.0\\.0\\.1:\\d+ +active +healthy +1 +\\d+`));
    }
    const j = await json<{ ready: { ready: boolean }; nodes: NodeJson[]; drains: unknown[] }>(['status']);
    expect(j.ready).toEqual({ ready: true });
    expect(j.nodes.map((n) => n.id)).toEqual(['node-a', 'node-b', 'node-c']);
    expect(j.nodes.reduce((a, n) => a + n.sessions, 0)).toBe(SESSIONS);
    expect(j.drains).toEqual([]);
  });

  it('sessions and session: tables, --node and --limit, --json', async () => {
    const all = await json<{ items: { id: string }[]; next_cursor: string | null }>(['sessions', '--limit', '1000']);
    expect(all.items.map((s) => s.id)).toEqual([...ids].sort());
    expect(all.next_cursor).toBeNull();
    const onA = (await nodes()).find((n) => n.id === 'node-a')!.sessions;
    expect(onA).toBeGreaterThan(2);
    const r = await ctl(['sessions', '--node', 'node-a', '--limit', '2']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^SESSION +OWNER +VERSION +STATE +TRANSPORT +LAST SEEN$/);
    expect(lines.slice(1, 3).every((l) => / node-a +1 +ATTACHED +127\.0\.0\.1:\d+ /.test(l))).toBe(true);
    expect(lines[3]).toMatch(/^\(more: --cursor [0-9a-f]{32}\)$/);

    const one = await ctl(['session', ids[0]!]);
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(new RegExp(`^id +${ids[0]}$`, 'm'));
    expect(one.stdout).toMatch(/^version +1$/m);
    expect(one.stdout).toMatch(/^state +ATTACHED$/m);
    const s = await json<{ id: string; owner: string; version: string }>(['session', ids[0]!]);
    expect(s).toMatchObject({ id: ids[0], version: '1' });
  });

  it('plan: where draining a node would send its sessions, moving nothing', async () => {
    const before = await nodes();
    const onA = before.find((n) => n.id === 'node-a')!.sessions;
    expect(onA).toBeGreaterThan(3);
    const r = await ctl(['plan', 'node-a', '--limit', '3']);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(`draining node-a would move ${onA} sessions`);
    expect(r.stdout).toMatch(/^TO +SESSIONS$/m);
    // A page of 3 moves, then how to get the next page.
    expect(r.stdout.match(/^[0-9a-f]{32} +node-a +node-[bc] +1$/gm)).toHaveLength(3);
    const next = /^… more: anchor ctl plan node-a --cursor ([0-9a-f]{32}) /m.exec(r.stdout)?.[1];
    expect(next).toBeDefined();
    type Plan = { node: string; sessions: number; moves: { session: string; from: string; to: string }[]; unplaceable: string[]; next_cursor: string | null };
    const plan = await json<Plan>(['plan', 'node-a', '--limit', '1000']);
    expect(plan.sessions).toBe(onA);
    expect(plan.moves).toHaveLength(onA);
    expect(plan.next_cursor).toBeNull();
    expect(plan.moves.every((m) => m.from === 'node-a' && m.to !== 'node-a')).toBe(true);
    // The page after the cursor goes on where the first one stopped.
    const page2 = await json<Plan>(['plan', 'node-a', '--limit', '3', '--cursor', next!]);
    expect(page2.moves.map((m) => m.session)).toEqual(plan.moves.slice(3, 6).map((m) => m.session));
    expect(await nodes()).toEqual(before);
  });

  it('migrate: moves one session; refusals exit 1 with the director\'s reason', async () => {
    const s = await json<{ id: string; owner: string }>(['session', ids[1]!]);
    const to = s.owner === 'node-b' ? 'node-c' : 'node-b';
    const r = await ctl(['migrate', ids[1]!, '--to', to]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`session ${ids[1]} moved ${s.owner} → ${to}, now at version 4`);

    const unknown = await ctl(['migrate', ids[1]!, '--to', 'node-zz']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe(`anchor ctl migrate: refused by the director (HTTP 400 bad_target): no node "node-zz"\n`);
    const stale = await ctl(['migrate', ids[1]!, '--expect-version', '1']);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toContain('(HTTP 409 stale_version)');
    expect(stale.stderr).toContain('is at version 4');
    const gone = await ctl(['session', '0'.repeat(31) + '1']);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('(HTTP 404 session_not_found)');
    expect((await json<{ version: string; owner: string }>(['session', ids[1]!])).owner).toBe(to);
  });

  it('drain: follows to completion with plain progress lines (not a terminal) and exits 0; undrain brings the node back', async () => {
    const onA = (await nodes()).find((n) => n.id === 'node-a')!.sessions;
    const r = await ctl(['drain', 'node-a']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^drain \\(migrate\\) (dr-[0-9a-f]+) of node-a started: ${onA} sessions$`));
    const progress = lines.filter((l) => / of node-a: (running|completed) /.test(l));
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.every((l) => !l.includes('\r') && /\[[#.]{20}\]/.test(l))).toBe(true);
    expect(progress.at(-1)).toContain(`completed 100% [####################] ${onA}/${onA} moved, 0 remaining, 0 failed`);
    // The node's REVOKE acknowledgements may still be on their way when the drain completes: said, not hidden.
    expect(lines.at(-1)).toMatch(new RegExp(`^drain dr-[0-9a-f]+ of node-a completed in [0-9.]+s: ${onA} moved, 0 failed, 0 ended, 0 remaining(; [0-9]+ REVOKEs not yet acknowledged by the node)?$`));

    const after = await nodes();
    expect(after.find((n) => n.id === 'node-a')).toMatchObject({ state: 'draining', sessions: 0 });
    expect(after.reduce((a, n) => a + n.sessions, 0)).toBe(SESSIONS);

    // A draining node takes no session: a migration to it is refused.
    const victim = (await json<{ items: { id: string; owner: string }[] }>(['sessions', '--node', 'node-b', '--limit', '1'])).items[0]!;
    const refused = await ctl(['migrate', victim.id, '--to', 'node-a']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('refused by the director (HTTP 400 bad_target): node "node-a" takes no sessions (draining, unhealthy, or in a cluster its active state not yet in the store)');

    const un = await ctl(['undrain', 'node-a']);
    expect(un.code).toBe(0);
    expect(un.stdout.trim()).toBe('node-a is active: it takes new sessions again');
    expect((await nodes()).find((n) => n.id === 'node-a')!.state).toBe('active');
  });

  it('failover: moves every session of the node, followed to completion; --detach and --json', async () => {
    const onC = (await nodes()).find((n) => n.id === 'node-c')!.sessions;
    expect(onC).toBeGreaterThan(0);
    const r = await ctl(['failover', 'node-c', '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const d = JSON.parse(r.stdout) as { id: string; cause: string; state: string; moved: number; total: number; remaining: number };
    expect(d).toMatchObject({ cause: 'failover', state: 'completed', moved: onC, total: onC, remaining: 0 });
    expect((await nodes()).find((n) => n.id === 'node-c')!.sessions).toBe(0);

    const detached = await ctl(['failover', 'node-c', '--detach']);
    expect(detached.code).toBe(0);
    expect(detached.stdout).toMatch(/^failover fo-[0-9a-f]+ of node-c started: 0 sessions; see its progress with: anchor ctl status$/m);
  });

  it('audit: a session\'s events, as lines and as JSON lines', async () => {
    const r = await ctl(['audit', '--session', ids[1]!]);
    expect(r.code).toBe(0);
    const events = r.stdout
      .trim()
      .split('\n')
      .map((l) => l.split(' ')[2]);
    expect(events.slice(0, 4)).toEqual(['create', 'freeze', 'transfer', 'resume']);
    const j = await ctl(['audit', '--session', ids[1]!, '--json', '--limit', '4']);
    expect(j.code).toBe(0);
    const lines = j.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { session: string; event: string; seq: number });
    expect(lines).toHaveLength(4);
    expect(lines.every((l) => l.session === ids[1])).toBe(true);
    expect(lines.map((l) => l.seq)).toEqual([...lines.map((l) => l.seq)].sort((a, b) => a - b));
  });

  it('audit --follow prints new events as they happen', async () => {
    const p = spawnAnchor(['ctl', 'audit', '--follow', '--limit', '1', '--admin', c.director.admin], { ANCHOR_ADMIN_TOKEN: TOKEN });
    running.add(p);
    try {
      await waitFor('the latest audit line', () => p.stdout.split('\n').length > 1, { timeoutMs: 15_000 });
      const s = await json<{ owner: string }>(['session', ids[2]!]);
      const to = s.owner === 'node-a' ? 'node-b' : 'node-a';
      expect((await ctl(['migrate', ids[2]!, '--to', to])).code).toBe(0);
      await waitFor(
        'the migration to be followed',
        () => {
          const mine = p.stdout.split('\n').filter((l) => l.includes(ids[2]!));
          return ['freeze', 'transfer', 'resume'].every((e) => mine.some((l) => l.split(' ')[2] === e));
        },
        { timeoutMs: 15_000 },
      );
      expect(p.child.exitCode).toBeNull();
    } finally {
      p.kill();
      await p.exited;
      running.delete(p);
    }
  });

  it('a wrong token is refused: exit 1, unauthorized', async () => {
    const r = await ctl(['status', '--token', 'not-the-token'], {});
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('anchor ctl status: refused by the director (HTTP 401 unauthorized): missing or wrong bearer token\n');
    const none = await ctl(['sessions'], {});
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('unauthorized');
  });

  it('an unreachable director: exit 1 naming it', async () => {
    // A port nothing listens on: bind one, then close it.
    const srv = createServer();
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const port = (srv.address() as { port: number }).port;
    await new Promise<void>((resolve) => srv.close(() => resolve()));
    const p = spawnAnchor(['ctl', 'status', '--admin', `http://127.0.0.1:${port}`], { ANCHOR_ADMIN_TOKEN: TOKEN });
    const { code } = await p.exited;
    expect(code).toBe(1);
    expect(p.stderr).toContain(`cannot reach the director at http://127.0.0.1:${port}`);
  });

  it.each([
    [[], /anchor ctl: expected a command/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['drain'], /anchor ctl drain: expected NODE/],
    [['drain', 'node-a', '--mode', 'fast'], /--mode: expected migrate or wait, got "fast"/],
    [['drain', 'node-a', '--deadline', 'soon'], /--deadline: expected a number/],
    [['sessions', '--limit', '0'], /--limit: expected an integer/],
    [['session', 'NOT-AN-ID'], /ID: expected a session id/],
    [['migrate', '0'.repeat(32), '--to', 'bad node'], /--to: expected a node id/],
    [['status', '--bogus'], /--bogus/],
    [['status', '--follow'], /--follow is not an option of status/],
  ])('usage error %j: exit 2 naming the flag, nothing sent', async (args, message) => {
    const r = await ctl(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe('');
  });

  it('prints its help', async () => {
    const r = await ctl(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: anchor ctl COMMAND');
    const top = spawnAnchor(['--help']);
    await top.exited;
    expect(top.stdout).toContain('anchor ctl COMMAND');
  });
});
