// `anchor ctl` end to end over a scripted fetch: what reaches stdout/stderr and the exit codes, the drain
// follow loop (terminal and plain), refusals, an unreachable director. No sockets, no timers.
import { describe, expect, it } from 'vitest';
import { runCtl, type CtlIo } from '../../src/ctl/ctl.js';

type Answer = { status: number; body: unknown } | Error;
type Route = (method: string, path: string, body: unknown) => Answer;

function harness(route: Route, opts: { tty?: boolean; columns?: number } = {}) {
  let out = '';
  let err = '';
  const requests: { method: string; path: string; auth: string | null; body: unknown }[] = [];
  let clock = Date.parse('2026-01-01T12:00:00.000Z');
  const io: CtlIo = {
    stdout: { write: (s: string) => (out += s), isTTY: opts.tty ?? false, columns: opts.columns ?? 100 },
    stderr: { write: (s: string) => (err += s) },
    env: { ANCHOR_ADMIN_TOKEN: 'tok' },
    wallNow: () => (clock += 1000),
    sleep: async () => {},
    fetch: (async (input: string | URL | Request, init?: RequestInit) => {
      const url = new URL(String(input));
      const method = init?.method ?? 'GET';
      const body = typeof init?.body === 'string' ? JSON.parse(init.body) : undefined;
      const auth = new Headers(init?.headers).get('authorization');
      requests.push({ method, path: url.pathname + url.search, auth, body });
      const a = route(method, url.pathname + url.search, body);
      if (a instanceof Error) throw a;
      return new Response(JSON.stringify(a.body), { status: a.status, headers: { 'content-type': 'application/json' } });
    }) as typeof fetch,
  };
  return {
    run: (argv: string[]) => runCtl(argv, io),
    get out() {
      return out;
    },
    get err() {
      return err;
    },
    requests,
  };
}

const drain = (over: Record<string, unknown>) => ({
  id: 'dr-1',
  node: 'node-a',
  mode: 'migrate',
  cause: 'drain',
  state: 'running',
  total: 3,
  moved: 0,
  remaining: 3,
  failed: 0,
  ended: 0,
  rate: 10,
  eta_s: 0.3,
  started_at: '2026-01-01T12:00:00.000Z',
  deadline_at: null,
  finished_at: null,
  last_error: null,
  ...over,
});

/** A drain that moves one session per poll and ends in `end`. */
function drainRoute(end: Record<string, unknown>): Route {
  const steps = [drain({ moved: 1, remaining: 2 }), drain({ moved: 2, remaining: 1 }), drain({ moved: 3, remaining: 0, finished_at: '2026-01-01T12:00:01.500Z', ...end })];
  return (method, path) => {
    if (method === 'POST' && path === '/v1/nodes/node-a/drain') return { status: 202, body: drain({}) };
    if (method === 'GET' && path === '/v1/drains/dr-1') return { status: 200, body: steps.shift() ?? steps.at(-1) };
    return { status: 404, body: { error: { code: 'not_found', message: `no route ${path}` } } };
  };
}

describe('anchor ctl (scripted director)', () => {
  it('follows a drain with plain progress lines and exits 0 when it completes', async () => {
    const h = harness(drainRoute({ state: 'completed' }));
    expect(await h.run(['drain', 'node-a'])).toBe(0);
    const lines = h.out.trim().split('\n');
    expect(lines[0]).toBe('drain (migrate) dr-1 of node-a started: 3 sessions');
    expect(lines).toContain('drain dr-1 of node-a: running 33% [#######.............] 1/3 moved, 2 remaining, 0 failed, 10.0/s, ETA 1s');
    expect(lines.at(-1)).toBe('drain dr-1 of node-a completed in 1.5s: 3 moved, 0 failed, 0 ended, 0 remaining');
    expect(h.out).not.toContain('\r');
    expect(h.err).toBe('');
    expect(h.requests[0]).toEqual({ method: 'POST', path: '/v1/nodes/node-a/drain', auth: 'Bearer tok', body: { mode: 'migrate' } });
  });

  it('redraws one bar on a terminal', async () => {
    const h = harness(drainRoute({ state: 'completed' }), { tty: true, columns: 100 });
    expect(await h.run(['drain', 'node-a'])).toBe(0);
    const redraws = h.out.split('\r').slice(1);
    expect(redraws.length).toBe(4);
    expect(redraws[0]).toMatch(/^node-a running ▕ +▏ {2}0% {2}0\/3 moved.*\u001b\[K$/);
    expect(redraws.at(-1)).toMatch(/^node-a completed ▕█+▏100% {2}3\/3 moved, 0 remaining, 0 failed\u001b\[K\ndrain dr-1 of node-a completed in 1\.5s/);
  });

  it('exits 1 when the drain fails or is cancelled, saying so', async () => {
    const failed = harness(drainRoute({ state: 'failed', moved: 2, failed: 1, remaining: 1, last_error: 'resume: store unavailable' }));
    expect(await failed.run(['drain', 'node-a'])).toBe(1);
    expect(failed.out).toContain('(last error: resume: store unavailable)');
    expect(failed.err).toBe('anchor ctl drain: drain dr-1 failed: 1 sessions were not moved\n');
    const cancelled = harness(drainRoute({ state: 'cancelled', remaining: 1, moved: 2 }));
    expect(await cancelled.run(['drain', 'node-a'])).toBe(1);
    expect(cancelled.err).toContain('drain dr-1 was cancelled (undrain)');
    // Why it stopped, from the record: another director's undrain, or an automatic failover whose node came back.
    const why = 'cancelled: the node is healthy again, its automatic failover stopped (sessions moved stay moved)';
    const stopped = harness(drainRoute({ state: 'cancelled', remaining: 1, moved: 2, last_error: why }));
    expect(await stopped.run(['drain', 'node-a'])).toBe(1);
    expect(stopped.err).toBe(`anchor ctl drain: drain dr-1 was ${why}\n`);
    expect(stopped.out).toContain(`2 moved, 0 failed, 0 ended, 1 remaining (${why})`);
    const abandoned = harness(drainRoute({ state: 'abandoned', remaining: 1, moved: 2 }));
    expect(await abandoned.run(['drain', 'node-a'])).toBe(1);
    expect(abandoned.err).toContain('the director running it went away (drain or undrain node-a again)');
  });

  it('--json prints only the finished drain; --detach returns at once', async () => {
    const h = harness(drainRoute({ state: 'completed' }));
    expect(await h.run(['drain', 'node-a', '--json'])).toBe(0);
    expect(JSON.parse(h.out)).toMatchObject({ id: 'dr-1', state: 'completed', moved: 3 });
    const d = harness(drainRoute({ state: 'completed' }));
    expect(await d.run(['drain', 'node-a', '--detach', '--mode', 'wait', '--deadline', '30'])).toBe(0);
    expect(d.requests).toHaveLength(1);
    expect(d.requests[0]!.body).toEqual({ mode: 'wait', deadline_s: 30 });
    expect(d.out).toContain('started: 3 sessions; see its progress with: anchor ctl status');
  });

  it('prints the director\'s refusal and exits 1', async () => {
    const h = harness(() => ({ status: 409, body: { error: { code: 'stale_version', message: 'session x is at version 4, not 1' } } }));
    expect(await h.run(['migrate', '0'.repeat(32), '--expect-version', '1'])).toBe(1);
    expect(h.err).toBe('anchor ctl migrate: refused by the director (HTTP 409 stale_version): session x is at version 4, not 1\n');
    expect(h.out).toBe('');
    expect(h.requests[0]!.body).toEqual({ expect_version: '1' });
  });

  it('names an unreachable director, and gives up following after repeated failures', async () => {
    const refused = Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
    const h = harness(() => refused);
    expect(await h.run(['status', '--admin', 'http://127.0.0.1:9'])).toBe(1);
    expect(h.err).toBe('anchor ctl status: cannot reach the director at http://127.0.0.1:9: ECONNREFUSED\n');
    let polls = 0;
    const lost = harness((method) => (method === 'POST' ? { status: 202, body: drain({}) } : (polls++, refused)));
    expect(await lost.run(['drain', 'node-a'])).toBe(1);
    expect(polls).toBe(10);
    expect(lost.err).toContain('cannot reach the director');
  });

  it('says why a director on a port fetch refuses cannot be reached (the Fetch standard\'s bad ports)', async () => {
    const h = harness(() => Object.assign(new TypeError('fetch failed'), { cause: new Error('bad port') }));
    expect(await h.run(['status', '--admin', 'http://127.0.0.1:6000'])).toBe(1);
    expect(h.err).toBe('anchor ctl status: cannot reach the director at http://127.0.0.1:6000: its port is one fetch refuses to connect to (the Fetch standard\'s "bad ports"); give admin.listen another port\n');
  });

  it('undrain of an unhealthy node says it takes sessions again only once healthy', async () => {
    const answer = (health: string) => harness(() => ({ status: 200, body: { node: 'node-a', state: 'active', health, cancelled_drain: null } }));
    const sick = answer('unhealthy');
    expect(await sick.run(['undrain', 'node-a'])).toBe(0);
    expect(sick.out.trim()).toBe('node-a is active: it takes new sessions again once healthy (it is unhealthy)');
    const well = answer('healthy');
    expect(await well.run(['undrain', 'node-a'])).toBe(0);
    expect(well.out.trim()).toBe('node-a is active: it takes new sessions again');
  });

  it('a POST that times out says it may have been carried out; a GET that times out does not', async () => {
    const timeout = new DOMException('The operation was aborted due to timeout', 'TimeoutError');
    const h = harness(() => timeout);
    expect(await h.run(['migrate', 'ab'.repeat(16), '--to', 'node-b'])).toBe(1);
    expect(h.err).toMatch(/no answer from the director at .* within 5 s; POST \/v1\/sessions\/[ab]+\/migrate may have been carried out all the same/);
    const g = harness(() => timeout);
    expect(await g.run(['status'])).toBe(1);
    expect(g.err).toContain('no answer from the director');
    expect(g.err).not.toContain('carried out');
  });

  it('status: readiness from /readyz even when it answers 503', async () => {
    const h = harness((_, path) => {
      if (path === '/readyz') return { status: 503, body: { ready: false, reason: 'director draining' } };
      if (path === '/v1/nodes') return { status: 200, body: { items: [{ id: 'node-a', address: '127.0.0.1:1', weight: 1, state: 'active', health: 'healthy', sessions: 2 }] } };
      return { status: 200, body: { items: [drain({})] } };
    });
    expect(await h.run(['status'])).toBe(0);
    expect(h.out).toContain('director: NOT READY (director draining), 2 sessions on 1 nodes');
    expect(h.out).toContain('drain dr-1 of node-a: running 0%');
    const j = harness((_, path) => (path === '/readyz' ? { status: 200, body: { ready: true } } : { status: 200, body: { items: [] } }));
    expect(await j.run(['status', '--json'])).toBe(0);
    expect(JSON.parse(j.out)).toEqual({ ready: { ready: true }, nodes: [], drains: [] });
  });

  it('audit --follow prints each new event once, in order', async () => {
    const line = (seq: number) => ({ time: 'T', seq, session: 'ab', event: 'freeze', cause: 'migrate', from_version: '1', to_version: '2', from_owner: 'a', to_owner: 'a', actor: 'admin' });
    const pages = [[line(1), line(2)], [line(1), line(2), line(3)], [line(2), line(3), line(4), line(5)]];
    const h = harness(() => {
      const p = pages.shift();
      return p === undefined ? { status: 500, body: { error: { code: 'internal', message: 'stop' } } } : { status: 200, body: { items: p } };
    });
    expect(await h.run(['audit', '--follow', '--json'])).toBe(1);
    expect(h.out.trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq)).toEqual([1, 2, 3, 4, 5]);
    expect(h.requests.map((r) => r.path)).toEqual(['/v1/audit?limit=20', '/v1/audit?limit=1000', '/v1/audit?limit=1000', '/v1/audit?limit=1000']);
  });

  it('audit --follow --session: a poll with none of the session\'s lines (they left the recent ones) is not a restart; a lower sequence is', async () => {
    const line = (seq: number) => ({ time: 'T', seq, session: 'ab', event: 'freeze', cause: 'migrate', from_version: '1', to_version: '2', from_owner: 'a', to_owner: 'a', actor: 'admin' });
    const pages = [[line(7)], [], [line(7), line(8)], [line(1)]];
    const h = harness(() => {
      const p = pages.shift();
      return p === undefined ? { status: 500, body: { error: { code: 'internal', message: 'stop' } } } : { status: 200, body: { items: p } };
    });
    expect(await h.run(['audit', '--follow', '--json', '--session', 'ab'.repeat(16)])).toBe(1);
    expect(h.out.trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq)).toEqual([7, 8, 1]);
    expect(h.err.match(/went back/g)).toEqual(['went back']);
    expect(h.err).toContain('went back from 8 to 1');
  });
});

describe('answers ctl cannot use', () => {
  /** A harness whose fetch answers every request with `make()`. */
  function answering(make: () => Response) {
    let err = '';
    const io: CtlIo = {
      stdout: { write: () => true, isTTY: false, columns: 100 },
      stderr: { write: (s: string) => (err += s) },
      env: {},
      sleep: async () => {},
      fetch: (async () => make()) as typeof fetch,
    };
    return { run: (argv: string[]) => runCtl(argv, io), err: () => err };
  }

  it('an answer over 8 MiB is not read to its end: exit 1, saying so', async () => {
    const sent: number[] = [];
    const chunk = new Uint8Array(1024 * 1024).fill(0x20);
    const h = answering(() => {
      const k = sent.push(0) - 1;
      return new Response(
        new ReadableStream<Uint8Array>({
          pull(c) {
            sent[k] = (sent[k] as number) + chunk.length;
            if ((sent[k] as number) > 64 * 1024 * 1024) c.close(); // bounded, but far past the cap
            else c.enqueue(chunk);
          },
        }),
        { status: 200 },
      );
    });
    expect(await h.run(['status'])).toBe(1);
    expect(h.err()).toMatch(/the director's answer cannot be used: GET \/v1\/[a-z]+: the answer is over 8 MiB/);
    expect(sent.length).toBeGreaterThan(0);
    for (const n of sent) expect(n).toBeLessThan(16 * 1024 * 1024);
  });

  it('a 200 that is not JSON is named as such, not as a refusal', async () => {
    const h = answering(() => new Response('<html>hello</html>', { status: 200 }));
    expect(await h.run(['status'])).toBe(1);
    expect(h.err()).toMatch(/the director's answer cannot be used: .*the answer is not JSON/);
    expect(h.err()).not.toMatch(/refused by the director/);
  });
});
