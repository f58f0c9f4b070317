// The status page (GET /) of a real director with three reference nodes and live sessions: its auth and
// headers over HTTP, then in headless Chromium (Debian's, driven by playwright-core): it shows the nodes
// and their counts, and a drain started through the API appears, progresses and completes on the page.
// A screenshot taken during the drain is written to test-output/status-page-drain.png.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { encodeJv1 } from '../../src/codec/jv1.js';
import { PacketType } from '../../src/codec/types.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { openSessions, UdpPeer } from '../helpers/udp.js';
import { waitFor } from '../helpers/wait.js';

const TOKEN = 'status-page-token-0123456789';
const SESSIONS = 300;
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const OUTPUT = fileURLToPath(new URL('../../test-output/', import.meta.url));
// As root the pretest script installs chromium; elsewhere its absence skips the browser part.
const browserAvailable = existsSync(CHROMIUM) || process.getuid?.() === 0;

interface NodeJson {
  id: string;
  state: string;
  sessions: number;
}

let c: Cluster;
let peer: UdpPeer;
let ids: Buffer[] = [];
const auth = { authorization: `Bearer ${TOKEN}` };
const api = async <T>(path: string, init: RequestInit = {}): Promise<{ status: number; body: T }> => {
  const r = await fetch(`${c.director.admin}${path}`, { ...init, headers: { ...auth, 'content-type': 'application/json', ...(init.headers as Record<string, string>) } });
  return { status: r.status, body: (await r.json()) as T };
};

beforeAll(async () => {
  c = await startCluster({
    family: 4,
    env: { ANCHOR_ADMIN_TOKEN: TOKEN },
    // A slow drain (5 sessions/s of ~100 on a node: some 20 s) so that the page shows it in progress
    // with a few seconds of traffic on its chart; idle sessions outlive the test.
    config: { drain: { rate: 5, concurrency: 2 }, session: { idle_ttl_s: 600 } },
  });
  peer = await UdpPeer.open(4);
  ids = await openSessions(peer, c.director.udp[0]!, SESSIONS);
}, 120_000);

afterAll(async () => {
  peer?.close();
  await c?.stop();
});

describe('status page over HTTP', () => {
  it('needs the token, as a bearer header or ?token=, compared like /v1', async () => {
    const base = c.director.admin;
    const none = await fetch(`${base}/`);
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
    expect((await fetch(`${base}/?token=wrong`)).status).toBe(401);
    expect((await fetch(`${base}/?token=`)).status).toBe(401);
    expect((await fetch(`${base}/`, { headers: auth })).status).toBe(200);
    const ok = await fetch(`${base}/?token=${TOKEN}`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect((await fetch(`${base}/`, { method: 'POST', headers: auth })).status).toBe(405);
    // /v1 takes the bearer header only.
    expect((await fetch(`${base}/v1/nodes?token=${TOKEN}`)).status).toBe(401);
  });

  it('is self-contained under a strict Content-Security-Policy', async () => {
    const r = await fetch(`${c.director.admin}/`, { headers: auth });
    const csp = r.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/]+=*'(;|$)/);
    expect(csp).toMatch(/style-src 'sha256-[A-Za-z0-9+/]+=*'(;|$)/);
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toContain('unsafe');
    expect(r.headers.get('referrer-policy')).toBe('no-referrer');
    const html = await r.text();
    expect(html).not.toMatch(/<script[^>]+src=/);
    expect(html).not.toMatch(/<link[^>]+stylesheet/);
    // The only absolute URL is the SVG namespace (a name, never fetched).
    expect([...html.matchAll(/https?:\/\/[^\s'"]+/g)].map((m) => m[0])).toEqual(['http://www.w3.org/2000/svg']);
  });

  it('GET /v1/stats: the counters the chart plots, with the time they were read', async () => {
    const s = (await api<Record<string, unknown>>('/v1/stats')).body;
    expect(s.director).toBe('anchor-test');
    expect(Date.parse(s.time as string)).toBe(s.time_ms);
    expect(s.admissions_total).toBe(SESSIONS);
    expect(s.client_datagrams_received_total).toBeGreaterThanOrEqual(SESSIONS);
    expect(typeof s.client_datagrams_forwarded_total).toBe('number');
    expect(s.rejects_sent_total).toMatchObject({ unknown_session: 0, rate_limited: 0 });
  });
});

describe.skipIf(!browserAvailable)('status page in headless Chromium', () => {
  let ctx: BrowserContext | undefined;
  let profile: string;
  let page: Page;
  const problems: string[] = [];
  const requested: string[] = [];

  beforeAll(async () => {
    profile = mkdtempSync(join(tmpdir(), 'anchor-chromium-'));
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 900 },
      timeout: 60_000,
    });
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('request', (r) => requested.push(r.url()));
  }, 90_000);

  afterAll(async () => {
    await ctx?.close();
    if (profile !== undefined) rmSync(profile, { recursive: true, force: true });
  });

  /**
   * Traffic for the chart while the drain runs: DATA on 20 sessions (forwarded), a new session now and
   * then (admissions) and DATA for unknown sessions (rejects). An interval, stopped by the caller.
   */
  const startTraffic = (): (() => void) => {
    const target = c.director.udp[0]!;
    let tick = 0;
    const timer = setInterval(() => {
      tick++;
      for (const id of ids.slice(0, 20)) peer.send(encodeJv1(PacketType.DATA, id, Buffer.from('traffic')), target);
      if (tick % 5 === 0) peer.send(encodeJv1(PacketType.HELLO, randomBytes(16), Buffer.from('hi')), target);
      if (tick % 3 === 0) peer.send(encodeJv1(PacketType.DATA, randomBytes(16), Buffer.from('who?')), target);
      peer.inbox.length = 0; // the echoes and REJECTs are not looked at
    }, 100);
    return () => clearInterval(timer);
  };

  /** The page's figure for each node: its session count and state. */
  const pageNodes = (): Promise<NodeJson[]> =>
    page.$$eval('#nodes [data-node]', (els) =>
      els.map((e) => ({ id: e.getAttribute('data-node') ?? '', state: e.getAttribute('data-state') ?? '', sessions: Number(e.querySelector('.count')?.textContent) })),
    );

  it('shows the three nodes and their counts; a drain appears, progresses and completes', async () => {
    await page.goto(`${c.director.admin}/?token=${TOKEN}`);
    const nodes = (await api<{ items: NodeJson[] }>('/v1/nodes')).body.items;
    expect(nodes.reduce((a, n) => a + n.sessions, 0)).toBe(SESSIONS);
    await waitFor('the page to show every node with its count', async () => {
      const shown = await pageNodes();
      return JSON.stringify(shown) === JSON.stringify(nodes.map((n) => ({ id: n.id, state: n.state, sessions: n.sessions })));
    }, { timeoutMs: 30_000 });
    expect(await page.getAttribute('#ready', 'data-ready')).toBe('true');
    expect(await page.isHidden('#banner')).toBe(true);
    expect(await page.textContent('#nodes-total')).toBe(`${SESSIONS} sessions on 3 nodes`);
    // The chart gets a line per series once two samples have been taken.
    await waitFor('the chart to be drawn', async () => (await page.$$('#chart polyline')).length === 3, { timeoutMs: 30_000 });

    const onA = nodes.find((n) => n.id === 'node-a')!.sessions;
    expect(onA).toBeGreaterThan(20);
    const pointsBefore = Number(await page.getAttribute('#chart', 'data-points'));
    const stopTraffic = startTraffic();
    try {
      await drainOnPage(onA, pointsBefore);
    } finally {
      stopTraffic();
    }
    expect(problems).toEqual([]);
    const origin = new URL(c.director.admin).origin;
    expect(requested.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith('data:'))).toEqual([]);
  }, 180_000);

  const drainOnPage = async (onA: number, pointsBefore: number): Promise<void> => {
    const started = await api<{ id: string; total: number }>('/v1/nodes/node-a/drain', { method: 'POST', body: JSON.stringify({ mode: 'migrate' }) });
    expect(started.status).toBe(202);
    const row = `[data-drain="${started.body.id}"]`;

    // In progress on the page: running, some sessions moved, some left.
    await waitFor(
      'the drain in progress on the page',
      async () => {
        if ((await page.getAttribute(row, 'data-state').catch(() => null)) !== 'running') return false;
        const m = /^(\d+)\/(\d+) moved · (\d+) remaining/.exec((await page.textContent(`${row} .figures`)) ?? '');
        return m !== null && Number(m[1]) > 0 && Number(m[3]) > 0;
      },
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    // For the screenshot: the chart has plotted a few seconds of the traffic, and the drain still runs.
    await waitFor(
      'the traffic on the chart during the drain',
      async () =>
        Number(await page.getAttribute('#chart', 'data-points')) >= pointsBefore + 4 &&
        /^forwarded [1-9]/.test((await page.textContent('#legend [data-series="forwarded"]')) ?? '') &&
        (await page.getAttribute(row, 'data-state')) === 'running',
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    expect(await page.textContent(`${row} strong`)).toBe('Drain of node-a');
    expect((await pageNodes()).find((n) => n.id === 'node-a')!.state).toBe('draining');
    mkdirSync(OUTPUT, { recursive: true });
    const shot = join(OUTPUT, 'status-page-drain.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`status page during the drain: ${shot}`);
    expect(existsSync(shot)).toBe(true);

    // And it completes: the row says so, node-a shows no session, the other nodes carry them all.
    await waitFor('the drain to complete on the page', async () => (await page.getAttribute(row, 'data-state')) === 'completed', { timeoutMs: 90_000 });
    expect(await page.textContent(`${row} .figures`)).toMatch(new RegExp(`^${onA}/${onA} moved · 0 remaining · 0 failed`));
    await waitFor('node-a to show no session', async () => (await pageNodes()).find((n) => n.id === 'node-a')!.sessions === 0, { timeoutMs: 30_000 });
    expect((await pageNodes()).find((n) => n.id === 'node-a')!.state).toBe('draining');
    // The audit events on the page include the drain's.
    expect(await page.$$eval('#audit tr', (rows) => rows.map((r) => r.children[5]?.textContent))).toContain('drain');
  };

  it('says what is wrong when the token is missing from the page URL', async () => {
    const r = await page.goto(`${c.director.admin}/`);
    expect(r?.status()).toBe(401);
    expect(await page.textContent('body')).toContain('missing or wrong token: open /?token=TOKEN');
  });
});
