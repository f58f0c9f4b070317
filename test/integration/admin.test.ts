// The admin HTTP API against a real director: auth, nodes, sessions (pagination), probes, errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { encodeJv1, sessionIdHex } from '../../src/codec/jv1.js';
import { PacketType } from '../../src/codec/types.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { UdpPeer } from '../helpers/udp.js';
import { waitFor } from '../helpers/wait.js';

const TOKEN = 'test-token-0123456789abcdef';

describe('admin API', () => {
  let c: Cluster;
  let peer: UdpPeer;
  const ids: string[] = [];
  const auth = { authorization: `Bearer ${TOKEN}` };
  const get = (path: string, headers: Record<string, string> = auth): Promise<Response> => fetch(`${c.director.admin}${path}`, { headers });

  beforeAll(async () => {
    c = await startCluster({ family: 4, env: { ANCHOR_ADMIN_TOKEN: TOKEN } });
    peer = await UdpPeer.open(4);
    const target = c.director.udp[0]!;
    for (let i = 0; i < 25; i++) {
      const id = randomBytes(16);
      ids.push(sessionIdHex(id));
      peer.send(encodeJv1(PacketType.HELLO, id, Buffer.from('hi')), target);
      await peer.next((m) => m[3] === PacketType.HELLO && m.subarray(4, 20).equals(id));
    }
  });
  afterAll(async () => {
    peer?.close();
    await c?.stop();
  });

  it('requires the bearer token on /v1 but not on probes', async () => {
    expect((await get('/v1/nodes', {})).status).toBe(401);
    const wrong = await get('/v1/nodes', { authorization: 'Bearer nope' });
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
    expect((await get('/healthz', {})).status).toBe(200);
    expect((await get('/readyz', {})).status).toBe(200);
    const m = await get('/metrics', {});
    expect(m.status).toBe(200);
    const text = await m.text();
    expect(text).toContain('anchor_client_datagrams_received_total');
    // The two refused requests above are counted.
    expect(text).toContain('anchor_admin_requests_refused_total{reason="unauthorized"} 2');
  });

  it('lists nodes with their session counts', async () => {
    const r = await get('/v1/nodes');
    expect(r.status).toBe(200);
    const body = (await r.json()) as { items: { id: string; address: string; weight: number; state: string; health: string; sessions: number }[]; next_cursor: null };
    expect(body.items.map((n) => n.id)).toEqual(['node-a', 'node-b', 'node-c']);
    expect(body.items.reduce((a, n) => a + n.sessions, 0)).toBe(25);
    for (const n of body.items) {
      expect(n.state).toBe('active');
      expect(n.address).toMatch(/^127\.0\.0\.1:\d+$/);
    }
  });

  it('pages through sessions with a cursor, filtered by node', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r = await get(`/v1/sessions?limit=10${cursor !== null ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      const body = (await r.json()) as { items: { id: string }[]; next_cursor: string | null };
      seen.push(...body.items.map((s) => s.id));
      cursor = body.next_cursor;
      pages++;
    } while (cursor !== null && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual([...ids].sort());

    const nodes = (await (await get('/v1/nodes')).json()) as { items: { id: string; sessions: number }[] };
    for (const n of nodes.items) {
      const r = (await (await get(`/v1/sessions?node=${n.id}&limit=1000`)).json()) as { items: { owner: string }[] };
      expect(r.items.length).toBe(n.sessions);
      expect(r.items.every((s) => s.owner === n.id)).toBe(true);
    }
  });

  it('shows one session as {id, owner, version, state, transport, last_seen}', async () => {
    const r = await get(`/v1/sessions/${ids[0]}`);
    expect(r.status).toBe(200);
    const s = (await r.json()) as Record<string, string>;
    expect(Object.keys(s).sort()).toEqual(['id', 'last_seen', 'owner', 'state', 'transport', 'version']);
    expect(s.id).toBe(ids[0]);
    expect(s.version).toBe('1');
    expect(s.state).toBe('ATTACHED');
    expect(s.transport).toBe(`127.0.0.1:${peer.address.port}`);
    expect(Number.isNaN(Date.parse(s.last_seen!))).toBe(false);
  });

  it('answers errors as JSON with a code and a message', async () => {
    const cases: [string, number, string][] = [
      [`/v1/sessions/${'0'.repeat(31)}1`, 404, 'session_not_found'],
      ['/v1/sessions/NOT-AN-ID', 400, 'bad_request'],
      ['/v1/sessions?limit=0', 400, 'bad_request'],
      ['/v1/sessions?cursor=zz', 400, 'bad_request'],
      ['/v1/sessions?node=nope', 404, 'node_not_found'],
      ['/v1/nothing', 404, 'not_found'],
      ['/elsewhere', 404, 'not_found'],
    ];
    for (const [path, status, code] of cases) {
      const r = await get(path);
      expect([path, r.status]).toEqual([path, status]);
      const body = (await r.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe(code);
      expect(body.error.message.length).toBeGreaterThan(0);
    }
    const post = await fetch(`${c.director.admin}/v1/nodes`, { method: 'POST', headers: auth });
    expect(post.status).toBe(405);
  });

  it('returns the audit trail of a session', async () => {
    const r = await waitFor('the audit line', async () => {
      const body = (await (await get(`/v1/audit?session=${ids[0]}`)).json()) as { items: { event: string; to_version: string; to_owner: string }[] };
      return body.items.length > 0 ? body : undefined;
    });
    expect(r.items[0]!.event).toBe('create');
    expect(r.items[0]!.to_version).toBe('1');
  });

  /** The bytes `request` (anything, not only HTTP) sent on a connection of its own, and all it got back until closed. */
  const rawBytes = (request: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const u = new URL(c.director.admin);
      const s = net.connect(Number(u.port), u.hostname, () => s.write(request));
      let text = '';
      s.on('data', (d: Buffer) => (text += d.toString()));
      s.on('close', () => resolve(text));
      s.on('error', reject);
      s.setTimeout(5000, () => s.destroy(new Error('no answer within 5 s')));
    });

  /** One request with exactly these headers (fetch would add or refuse some), and its answer. */
  const raw = (method: string, target: string, headers: Record<string, string>, body?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> =>
    new Promise((resolve, reject) => {
      const u = new URL(c.director.admin);
      const req = http.request({ host: u.hostname, port: u.port, method, path: target, headers: { ...headers, ...(body !== undefined ? { 'content-length': Buffer.byteLength(body) } : {}) }, setHost: headers.host === undefined }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      });
      req.on('error', reject);
      req.end(body);
    });

  it('refuses what another site\'s page could send (a foreign Origin), also with the token; its own origin and clients without one are served', async () => {
    const host = new URL(c.director.admin).host;
    const evil = await raw('POST', '/v1/director/drain', { ...auth, host, origin: 'https://evil.example', 'content-type': 'text/plain' }, '');
    expect(evil.status).toBe(403);
    expect(JSON.parse(evil.body)).toMatchObject({ error: { code: 'forbidden' } });
    expect(JSON.parse(evil.body).error.message).toMatch(/another origin \(https:\/\/evil\.example\)/);
    expect(await (await get('/metrics', {})).text()).toContain('anchor_admin_requests_refused_total{reason="forbidden"} 1');
    expect((await get('/readyz')).status).toBe(200); // not draining
    const own = await raw('POST', '/v1/nodes/node-a/undrain', { ...auth, host, origin: `http://${host}` }, '');
    expect(own.status).toBe(200);
    expect((await raw('GET', '/v1/nodes', { ...auth, host })).status).toBe(200);
    // The probes answer anyone (they are open by design).
    expect((await raw('GET', '/healthz', { host: 'rebind.evil.example', origin: 'https://evil.example' })).status).toBe(200);
  });

  it('the bearer scheme in any case; a request target that is not a path is a 400; a 405 says which method; a wait drain of over a year is refused', async () => {
    expect((await get('/v1/nodes', { authorization: `bearer ${TOKEN}` })).status).toBe(200);
    const target = await raw('GET', 'http://[x/v1/nodes', auth);
    expect(target.status).toBe(400);
    expect(JSON.parse(target.body).error.message).toMatch(/is not a path/);
    const m = await raw('DELETE', '/v1/nodes', auth);
    expect(m.status).toBe(405);
    expect(m.headers.allow).toBe('GET, HEAD');
    const year = await raw('POST', '/v1/nodes/node-a/drain', { ...auth, 'content-type': 'application/json' }, JSON.stringify({ mode: 'wait', deadline_s: 1e13 }));
    expect(year.status).toBe(400);
    expect(JSON.parse(year.body).error.message).toMatch(/deadline_s: expected a number of seconds from 0 to 31536000/);
    const migrateDeadline = await raw('POST', '/v1/nodes/node-a/drain', { ...auth, 'content-type': 'application/json' }, JSON.stringify({ mode: 'migrate', deadline_s: 5 }));
    expect(migrateDeadline.status).toBe(400);
    expect(JSON.parse(migrateDeadline.body).error.message).toMatch(/deadline_s applies to mode "wait" only/);
    expect((await get('/v1/drains')).status).toBe(200);
    // A drain id of any shape that names no drain is that, not a route that does not exist.
    for (const id of ['d-0123456789', 'bad_id']) {
      const none = await get(`/v1/drains/${id}`);
      expect(none.status).toBe(404);
      expect(((await none.json()) as { error: { code: string } }).error.code).toBe('drain_not_found');
    }
    // What Node's HTTP parser refuses is answered in the API's error shape too.
    for (const [request, status, code] of [
      [`GET /v1/nodes HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'headers_too_large'],
      ['GARBAGE\r\n\r\n', 400, 'bad_request'],
    ] as const) {
      const answer = await rawBytes(request);
      expect(answer).toMatch(new RegExp(`^HTTP/1.1 ${status} `));
      expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).error.code).toBe(code);
    }
    // A query parameter a route does not take is refused, not ignored (a misspelt filter is no filter).
    const owner = await get('/v1/sessions?owner=node-a');
    expect(owner.status).toBe(400);
    expect(((await owner.json()) as { error: { message: string } }).error.message).toBe('owner: unknown query parameter (allowed: node, limit, cursor)');
    expect((await get('/v1/nodes?limit=5')).status).toBe(400);
    expect((await get('/v1/audit?session_id=x')).status).toBe(400);
    // One value per parameter: a second one is refused, not ignored.
    for (const q of ['node=node-a&node=zzz', 'limit=1&limit=99999']) {
      const twice = await get(`/v1/sessions?${q}`);
      expect(twice.status).toBe(400);
      expect(((await twice.json()) as { error: { message: string } }).error.message).toMatch(/: query parameter given more than once$/);
    }
    // One value per field of a body too: a second one is refused, not read as the last.
    const twiceField = await raw('POST', '/v1/nodes/node-a/drain', { ...auth, 'content-type': 'application/json' }, '{"mode": "wait", "mode": "migrate"}');
    expect(twiceField.status).toBe(400);
    expect(JSON.parse(twiceField.body).error.message).toBe('mode: field given more than once');
    // A number JSON reads as Infinity is shown as such, not as null.
    const huge = await raw('POST', '/v1/nodes/node-a/drain', { ...auth, 'content-type': 'application/json' }, '{"mode": "wait", "deadline_s": 1e400}');
    expect(huge.status).toBe(400);
    expect(JSON.parse(huge.body).error.message).toMatch(/got Infinity$/);
    // Every field's value is shown that way, cut short: a mode that is a number, a target 5,000 characters long.
    const modeNumber = await raw('POST', '/v1/nodes/node-a/drain', { ...auth, 'content-type': 'application/json' }, '{"mode": 1e400}');
    expect(JSON.parse(modeNumber.body).error.message).toBe('mode: expected "migrate" or "wait", got Infinity');
    const longTo = await raw('POST', `/v1/sessions/${'a'.repeat(32)}/migrate`, { ...auth, 'content-type': 'application/json' }, JSON.stringify({ to: 'x'.repeat(5000) }));
    expect(longTo.status).toBe(400);
    expect(JSON.parse(longTo.body).error.message).toMatch(/^to: expected a node id, got "x{76}…$/);
  });

  it('one address holding connections open takes 32 places at most: the next is closed at once and counted; the probes still answer others', async () => {
    const u = new URL(c.director.admin);
    const held: net.Socket[] = [];
    try {
      // Requests never finished (no blank line): each holds its connection until the headers timeout.
      for (let i = 0; i < 32; i++) {
        const s = net.connect({ host: u.hostname, port: Number(u.port) });
        held.push(s);
        s.on('error', () => undefined);
        await new Promise((r) => s.once('connect', r));
        s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
      }
      const extra = net.connect({ host: u.hostname, port: Number(u.port) });
      held.push(extra);
      extra.on('error', () => undefined);
      let answered = '';
      extra.on('data', (d) => (answered += d.toString()));
      extra.on('connect', () => extra.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'));
      await new Promise((r) => extra.once('close', r));
      expect(answered).toBe('');
      // Another address of this host gets in.
      const other = await new Promise<number>((resolve, reject) => {
        const req = http.request({ host: u.hostname, port: u.port, path: '/healthz', localAddress: '127.0.0.2' }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
      expect(other).toBe(200);
    } finally {
      for (const s of held) s.destroy();
    }
    const metrics = await (await get('/metrics')).text();
    expect(metrics).toMatch(/^anchor_admin_requests_refused_total\{reason="too_many_connections"\} [1-9]/m);
    // The places are given back: the same address is answered again.
    await waitFor('127.0.0.1 to get in again', async () => (await get('/healthz')).status === 200 || undefined);
  });

  it('HEAD works where GET does; the method is checked before the node; a missing session is session_not_found on every route; an expect_version over u64 is a 400; echoed input is cut short', async () => {
    const head = await raw('HEAD', '/v1/nodes', auth);
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expect((await raw('GET', '/v1/nodes/zzz/drain', auth)).status).toBe(405);
    const missing = '0'.repeat(31) + '1';
    const t = await raw('POST', `/v1/sessions/${missing}/terminate`, auth, '');
    expect(t.status).toBe(404);
    expect(JSON.parse(t.body).error.code).toBe('session_not_found');
    const m = await raw('POST', `/v1/sessions/${missing}/migrate`, { ...auth, 'content-type': 'application/json' }, JSON.stringify({ expect_version: '99999999999999999999' }));
    expect(m.status).toBe(400);
    expect(JSON.parse(m.body).error.message).toMatch(/at most 2\^64 - 1/);
    const long = await raw('GET', `/v1/sessions/${'a'.repeat(3000)}`, auth);
    expect(long.status).toBe(400);
    expect(JSON.parse(long.body).error.message.length).toBeLessThan(200);
  });

  it('a migrate drain with no other node to move to is refused (409 no_target, nothing changed); a migrate drain that escalates a waiting one is 202 and says migrate', async () => {
    const post = async (path: string, body?: object): Promise<{ status: number; json: Record<string, unknown> }> => {
      const r = await fetch(`${c.director.admin}${path}`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: body === undefined ? '' : JSON.stringify(body) });
      return { status: r.status, json: (await r.json()) as Record<string, unknown> };
    };
    const nodeA = async (): Promise<{ state: string; sessions: number }> => ((await (await get('/v1/nodes')).json()) as { items: { id: string; state: string; sessions: number }[] }).items.find((n) => n.id === 'node-a')!;
    expect((await nodeA()).sessions).toBeGreaterThan(0);
    try {
      for (const n of ['node-b', 'node-c']) expect((await post(`/v1/nodes/${n}/drain`, { mode: 'wait', deadline_s: 3600 })).status).toBe(202);
      const refused = await post('/v1/nodes/node-a/drain', { mode: 'migrate' });
      expect(refused.status).toBe(409);
      expect(refused.json).toMatchObject({ error: { code: 'no_target' } });
      expect((refused.json.error as { message: string }).message).toMatch(/^no other active, healthy node to move the \d+ sessions of node-a to: nothing was changed/);
      expect((await nodeA()).state).toBe('active');
      expect(((await (await get('/v1/drains')).json()) as { items: { node: string; state: string }[] }).items.filter((d) => d.node === 'node-a' && d.state !== 'cancelled')).toEqual([]);
      // With node-b back, a wait drain of node-a, then a migrate drain asked for: that drain migrates now.
      expect((await post('/v1/nodes/node-b/undrain')).status).toBe(200);
      const waiting = await post('/v1/nodes/node-a/drain', { mode: 'wait', deadline_s: 3600 });
      expect(waiting).toMatchObject({ status: 202, json: { mode: 'wait', state: 'waiting' } });
      const now = await post('/v1/nodes/node-a/drain', { mode: 'migrate' });
      expect(now).toMatchObject({ status: 202, json: { id: waiting.json.id, mode: 'migrate' } });
      await waitFor('node-a empty', async () => (await nodeA()).sessions === 0 || undefined);
    } finally {
      for (const n of ['node-a', 'node-b', 'node-c']) await post(`/v1/nodes/${n}/undrain`);
    }
  });
});
