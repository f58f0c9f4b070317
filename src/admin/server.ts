// The admin HTTP API: thin handlers over a narrow backend interface (DESIGN §6 JSON conventions).
// Owns routing, auth and JSON encoding; never reaches into the director's internals.
import http from 'node:http';
import { once } from 'node:events';
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { isLoopback } from '../codec/ip.js';
import type { Transport } from '../codec/types.js';
import { isLowerHexId } from '../session/id-index.js';
import { MAX_DEADLINE_S } from '../drain/plan.js';
import { statusPage } from './status-page.js';
import type { StatsView } from './stats-view.js';
import type { ChainHead } from '../obs/audit.js';

export interface NodeView {
  readonly id: string;
  readonly address: string;
  readonly weight: number;
  readonly state: string;
  readonly health: string;
  readonly sessions: number;
  /** Whether new sessions are placed on it now (active, healthy or not checked, and in a cluster its active state in the store). */
  readonly takes_sessions: boolean;
}

export interface SessionView {
  readonly id: string;
  readonly owner: string;
  readonly version: string;
  readonly state: string;
  readonly transport: string;
  readonly last_seen: string;
}

/** An operation's refusal, mapped to an HTTP status by the server. */
export interface Refusal {
  readonly status: number;
  readonly code: string;
  readonly message: string;
}
export type OpResult<T> = { readonly ok: true; readonly value: T; readonly status?: number } | { readonly ok: false; readonly error: Refusal };

export interface AdminBackend {
  ready(): { ready: boolean; reason?: string };
  metrics(): Promise<{ contentType: string; body: string }>;
  nodes(): NodeView[];
  hasNode(id: string): boolean;
  listSessions(q: { node?: string; limit: number; after?: string }): { items: SessionView[]; more: boolean };
  getSession(id: string): SessionView | undefined;
  audit(q: { session?: string; limit: number }): unknown[];
  /** The audit chain's last line: its seq and SHA-256 (seq 0 and GENESIS before any). */
  auditHead(): ChainHead;
  migrate(id: string, req: { to?: string; expectVersion?: bigint }): Promise<OpResult<unknown>>;
  terminate(id: string): OpResult<unknown>;
  drain(node: string, req: { mode: 'migrate' | 'wait'; deadlineS?: number }): OpResult<unknown>;
  undrain(node: string): OpResult<unknown>;
  failover(node: string): OpResult<unknown>;
  /** A page of the dry run (every session counted; `limit` of them listed after `after`, in id order). */
  drainPlan(node: string, page: { limit: number; after?: string; signal?: AbortSignal }): Promise<OpResult<unknown>>;
  getDrain(id: string): unknown | undefined;
  listDrains(): unknown[];
  drainDirector(): OpResult<unknown>;
  /** GET /v1/stats: the main counters and when they were read (the status page's chart). */
  stats(): StatsView;
}

export interface AdminOptions {
  readonly listen: Transport;
  readonly token: string | null;
  /** Where a request that failed inside the server (500) is logged, with its error. */
  readonly logger?: Logger;
  /** Told of each request refused for who sent it: `unauthorized` (401: no or a wrong token) or `forbidden` (403: another site's page, a host name without a token). */
  readonly onRefused?: (code: 'unauthorized' | 'forbidden' | 'too_many_connections') => void;
}

/**
 * Whether an admin API on `listen` without a token is open to more than this host: any address but a
 * loopback one (127.0.0.0/8, ::1, ::ffff:127.x). Pure.
 */
export function exposedWithoutToken(listen: Transport, token: string | null): boolean {
  return token === null && !isLoopback(listen.address);
}

/** Admin connections open at once at most (operators, Prometheus, the status page): more are refused by the kernel's accept, then closed. */
export const ADMIN_MAX_CONNECTIONS = 128;
/**
 * Admin connections open at once from one address at most: a peer holding connections open (requests
 * sent a byte at a time) cannot take every place, and the probes and Prometheus from elsewhere still get in.
 */
export const ADMIN_MAX_CONNECTIONS_PER_PEER = 32;

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** 405: the methods the route takes (the Allow header). */
    readonly allow?: string,
  ) {
    super(message);
  }
}

const NODE_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;
const U64_MAX = (1n << 64n) - 1n;
export const LIST_LIMIT_DEFAULT = 100;
export const LIST_LIMIT_MAX = 1000;

function checkSessionId(id: string): string {
  if (!isLowerHexId(id)) throw new HttpError(400, 'bad_request', `session id: expected 32 lowercase hex characters, got "${short(id)}"`);
  return id;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Constant-time bearer check (hashing first makes the compare independent of the token's length); the scheme's name in any case (RFC 9110). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer (.+)$/i.exec(header ?? '');
  const given = m?.[1] ?? '';
  return timingSafeEqual(digest(given), digest(token)) && m !== null;
}

/** The same constant-time check for a token given as a query parameter (`/?token=…`: the status page). */
export function queryTokenMatches(given: string | null, token: string): boolean {
  return timingSafeEqual(digest(given ?? ''), digest(token)) && given !== null;
}

/** A request's Host header names an IP address or localhost (with or without a port). */
function hostIsLiteral(host: string): boolean {
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d*$/, '');
  return name.toLowerCase() === 'localhost' || isIP(name) !== 0;
}

/**
 * Why a request a web page may have made must be refused, or null. A browser sends `Origin` with every
 * cross-site POST, `no-cors` included, and CORS never stops such a request from running: one whose Origin
 * is not the admin API's own (its Host) is refused (cross-site request forgery). Without a token, a page
 * whose host name an attacker points at the director's address (DNS rebinding) would also be same-origin:
 * then only requests addressed to an IP address or localhost are served. Pure.
 */
export function browserRefusal(host: string | undefined, origin: string | undefined, tokenSet: boolean): string | null {
  if (origin !== undefined) {
    let originHost: string | null = null;
    try {
      originHost = origin === 'null' ? null : new URL(origin).host;
    } catch {
      originHost = null;
    }
    // Host names are case-insensitive (URL lower-cases the origin's; a client may send Host in capitals).
    if (originHost === null || originHost !== host?.toLowerCase()) return `a request from another origin (${short(origin)}) is refused: the admin API takes requests from its own page and from clients that send no Origin (curl, anchor ctl)`;
  }
  if (!tokenSet && (host === undefined || !hostIsLiteral(host))) {
    return `Host "${short(host ?? '')}" is refused: without admin.token the admin API answers only requests addressed to an IP address or localhost (a page could otherwise reach it by DNS rebinding); set admin.token to use a host name`;
  }
  return null;
}

/** `s` cut to 80 characters for an error message (an id or value echoed back). */
function short(s: string): string {
  return s.length <= 80 ? s : `${s.slice(0, 77)}…`;
}

/**
 * A value from a request body as an error message shows it: its JSON, cut short — a number as it is (JSON
 * cannot write back one that parsed as Infinity, as 1e400 does: it would say null).
 */
function shown(v: unknown): string {
  return short(typeof v === 'number' ? String(v) : String(JSON.stringify(v)));
}

/** A page's `cursor` query parameter: a session id from `next_cursor`, or undefined for the first page. */
function parseCursor(v: string | null): string | undefined {
  if (v !== null && !isLowerHexId(v)) throw new HttpError(400, 'bad_request', `cursor: expected a cursor from next_cursor, got "${short(v)}"`);
  return v ?? undefined;
}

function parseLimit(v: string | null): number {
  if (v === null) return LIST_LIMIT_DEFAULT;
  if (!/^\d{1,7}$/.test(v) || Number(v) < 1 || Number(v) > LIST_LIMIT_MAX) {
    throw new HttpError(400, 'bad_request', `limit: expected an integer from 1 to ${LIST_LIMIT_MAX}, got "${short(v)}"`);
  }
  return Number(v);
}

export class AdminServer {
  readonly #backend: AdminBackend;
  readonly #opts: AdminOptions;
  readonly #server: http.Server;
  #address: Transport;

  constructor(opts: AdminOptions, backend: AdminBackend) {
    this.#opts = opts;
    this.#backend = backend;
    this.#address = opts.listen;
    // Requests whose headers or body are not in within their timeouts are looked for every second (Node's
    // default, 30 s, let a half-sent request hold its place for up to 40 s).
    this.#server = http.createServer({ connectionsCheckingInterval: 1000 }, (req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        const e = err instanceof HttpError ? err : new HttpError(500, 'internal', 'internal error');
        if (e.status === 401 || e.status === 403) opts.onRefused?.(e.status === 401 ? 'unauthorized' : 'forbidden');
        if (res.destroyed) return; // the client went away: no one to answer
        if (!(err instanceof HttpError)) opts.logger?.error({ err, method: req.method, path: (req.url ?? '').split('?')[0] }, 'admin API request failed');
        // An answer already under way cannot become an error answer (setting a header would throw here).
        if (res.headersSent) return void res.destroy();
        if (e.status === 405 && e.allow !== undefined) res.setHeader('allow', e.allow);
        send(res, e.status, { error: { code: e.code, message: e.message } });
      });
    });
    // A request Node cannot parse (headers over its limit, a malformed line, no Host) is answered in the
    // API's error shape too, not with Node's empty default answer; then the connection is closed.
    this.#server.on('clientError', (err: NodeJS.ErrnoException, sock: Duplex) => {
      if (err.code === 'ECONNRESET' || !sock.writable) return void sock.destroy();
      const [status, code, message] =
        err.code === 'HPE_HEADER_OVERFLOW'
          ? [431, 'headers_too_large', 'the request\'s headers (or its target) are over the limit']
          : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? [408, 'request_timeout', 'the request did not arrive in time']
            : [400, 'bad_request', `the request could not be read as HTTP/1.1 (${err.code ?? 'malformed'})`];
      const body = JSON.stringify({ error: { code, message } });
      sock.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    });
    this.#server.maxConnections = ADMIN_MAX_CONNECTIONS;
    const perPeer = new Map<string, number>();
    this.#server.on('connection', (sock) => {
      const peer = sock.remoteAddress ?? '';
      const n = (perPeer.get(peer) ?? 0) + 1;
      if (n > ADMIN_MAX_CONNECTIONS_PER_PEER) {
        opts.onRefused?.('too_many_connections');
        sock.destroy();
        return;
      }
      perPeer.set(peer, n);
      sock.once('close', () => {
        const left = (perPeer.get(peer) ?? 1) - 1;
        if (left <= 0) perPeer.delete(peer);
        else perPeer.set(peer, left);
      });
    });
    this.#server.keepAliveTimeout = 5_000;
    this.#server.headersTimeout = 10_000;
    this.#server.requestTimeout = 15_000;
  }

  get address(): Transport {
    return this.#address;
  }

  async start(): Promise<void> {
    this.#server.listen(this.#opts.listen.port, this.#opts.listen.address);
    await once(this.#server, 'listening');
    const a = this.#server.address() as AddressInfo;
    this.#address = { family: this.#opts.listen.family, address: a.address, port: a.port };
    if (exposedWithoutToken(this.#opts.listen, this.#opts.token)) {
      // Anyone who reaches this address can drain nodes, end sessions and stop the director.
      this.#opts.logger?.warn({ listen: `${a.address}:${a.port}` }, 'admin API listens beyond loopback without admin.token (ANCHOR_ADMIN_TOKEN): every host that reaches it can drain nodes, end sessions and stop the director');
    }
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let url: URL;
    try {
      // Only the path and query of the request target count (an absolute-form target's host is not ours to route on).
      url = new URL(req.url ?? '/', 'http://admin.invalid');
      if (!(req.url ?? '/').startsWith('/')) url = new URL(`${url.pathname}${url.search}`, 'http://admin.invalid');
    } catch {
      throw new HttpError(400, 'bad_request', `request target "${short(req.url ?? '')}" is not a path`);
    }
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (path === '/healthz' || path === '/readyz' || path === '/metrics') {
      if (method !== 'GET' && method !== 'HEAD') throw new HttpError(405, 'method_not_allowed', `${method} ${path}: only GET is allowed`, 'GET, HEAD');
      if (path === '/healthz') return send(res, 200, { status: 'ok' });
      if (path === '/readyz') {
        const r = this.#backend.ready();
        return send(res, r.ready ? 200 : 503, r.ready ? { ready: true } : { ready: false, reason: r.reason ?? 'not ready' });
      }
      const m = await this.#backend.metrics();
      res.writeHead(200, { 'content-type': m.contentType });
      res.end(m.body);
      return;
    }
    // The status page and the API (not the probes, which read nothing a page could use): never for another site's page.
    const refusal = browserRefusal(req.headers.host, req.headers.origin, this.#opts.token !== null);
    if (refusal !== null) throw new HttpError(403, 'forbidden', refusal);
    if (path === '/') {
      // The status page. A browser cannot send a bearer header on a navigation: the token may come as ?token=.
      if (method !== 'GET' && method !== 'HEAD') throw new HttpError(405, 'method_not_allowed', `${method} /: only GET is allowed`, 'GET, HEAD');
      if (this.#opts.token !== null && !bearerMatches(req.headers.authorization, this.#opts.token) && !queryTokenMatches(url.searchParams.get('token'), this.#opts.token)) {
        res.setHeader('www-authenticate', 'Bearer');
        throw new HttpError(401, 'unauthorized', 'missing or wrong token: open /?token=TOKEN, or send Authorization: Bearer TOKEN');
      }
      const page = statusPage();
      res.writeHead(200, page.headers);
      res.end(method === 'HEAD' ? undefined : page.html);
      return;
    }
    if (path === '/v1' || path.startsWith('/v1/')) {
      if (this.#opts.token !== null && !bearerMatches(req.headers.authorization, this.#opts.token)) {
        res.setHeader('www-authenticate', 'Bearer');
        throw new HttpError(401, 'unauthorized', 'missing or wrong bearer token');
      }
      return this.#v1(method, path.slice(3), url.searchParams, req, res);
    }
    throw new HttpError(404, 'not_found', `no route ${path}`);
  }

  async #v1(method: string, path: string, q: URLSearchParams, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const b = this.#backend;
    // The method, then the query's parameters: one a route does not take is refused, not ignored (a
    // filter misspelt would otherwise answer the whole unfiltered list).
    const get = (params: readonly string[] = []): void => {
      // HEAD is GET without the body (node:http leaves it out).
      if (method !== 'GET' && method !== 'HEAD') throw new HttpError(405, 'method_not_allowed', `${method} /v1${short(path)}: only GET is allowed`, 'GET, HEAD');
      onlyParams(q, params);
    };
    const post = (): void => {
      if (method !== 'POST') throw new HttpError(405, 'method_not_allowed', `${method} /v1${short(path)}: only POST is allowed`, 'POST');
      onlyParams(q, []);
    };
    const sessionAction = /^\/sessions\/([^/]+)\/(migrate|terminate)$/.exec(path);
    if (sessionAction !== null) {
      post();
      const id = checkSessionId(sessionAction[1] as string);
      const body = await readJson(req);
      if (sessionAction[2] === 'terminate') {
        onlyKeys(body, []);
        return sendResult(res, b.terminate(id));
      }
      onlyKeys(body, ['to', 'expect_version']);
      const to = body.to;
      if (to !== undefined && to !== null && (typeof to !== 'string' || !NODE_ID_RE.test(to))) throw new HttpError(400, 'bad_request', `to: expected a node id, got ${shown(to)}`);
      const ev = body.expect_version;
      let expectVersion: bigint | undefined;
      if (ev !== undefined && ev !== null) {
        if (!((typeof ev === 'string' && /^\d{1,20}$/.test(ev)) || (typeof ev === 'number' && Number.isSafeInteger(ev) && ev >= 0))) {
          throw new HttpError(400, 'bad_request', `expect_version: expected a version as a decimal string, got ${shown(ev)}`);
        }
        expectVersion = BigInt(ev);
        if (expectVersion > U64_MAX) throw new HttpError(400, 'bad_request', `expect_version: expected a version (at most 2^64 - 1), got ${shown(ev)}`);
      }
      return sendResult(res, await b.migrate(id, { to: typeof to === 'string' ? to : undefined, expectVersion }));
    }
    const nodeAction = /^\/nodes\/([^/]+)\/(drain|undrain|failover|drain-plan)$/.exec(path);
    if (nodeAction !== null) {
      const node = nodeAction[1] as string;
      const action = nodeAction[2];
      // The method first: a wrong one is a 405 whatever the node.
      if (action === 'drain-plan') get(['limit', 'cursor']);
      else post();
      if (!NODE_ID_RE.test(node)) throw new HttpError(400, 'bad_request', `node: expected a node id, got "${short(node)}"`);
      if (!b.hasNode(node)) throw new HttpError(404, 'node_not_found', `no node "${node}"`);
      if (action === 'drain-plan') {
        const limit = parseLimit(q.get('limit'));
        const cursor = parseCursor(q.get('cursor'));
        // A dry run takes a while at a million sessions: it stops when its client goes away.
        const gone = new AbortController();
        res.on('close', () => {
          if (!res.writableFinished) gone.abort(new HttpError(499, 'client_gone', 'the client went away'));
        });
        return sendResult(res, await b.drainPlan(node, { limit, ...(cursor !== undefined ? { after: cursor } : {}), signal: gone.signal }));
      }
      post();
      const body = await readJson(req);
      if (action === 'drain') {
        onlyKeys(body, ['mode', 'deadline_s']);
        const mode = body.mode ?? 'migrate';
        if (mode !== 'migrate' && mode !== 'wait') throw new HttpError(400, 'bad_request', `mode: expected "migrate" or "wait", got ${shown(mode)}`);
        const dl = body.deadline_s;
        if (dl !== undefined && dl !== null && (typeof dl !== 'number' || !Number.isFinite(dl) || dl < 0 || dl > MAX_DEADLINE_S)) {
          throw new HttpError(400, 'bad_request', `deadline_s: expected a number of seconds from 0 to ${MAX_DEADLINE_S} (a year), got ${shown(dl)}`);
        }
        if (dl !== undefined && dl !== null && mode === 'migrate') throw new HttpError(400, 'bad_request', 'deadline_s applies to mode "wait" only (a "migrate" drain moves the sessions now)');
        return sendResult(res, b.drain(node, { mode, deadlineS: typeof dl === 'number' ? dl : undefined }), 202);
      }
      onlyKeys(body, []);
      if (action === 'undrain') return sendResult(res, b.undrain(node));
      return sendResult(res, b.failover(node), 202);
    }
    if (path === '/drains') {
      get();
      return send(res, 200, { items: b.listDrains(), next_cursor: null });
    }
    // Any one segment: an id of another shape is a drain that does not exist, not a route that does not.
    const drainGet = /^\/drains\/([^/]+)$/.exec(path);
    if (drainGet !== null) {
      get();
      const id = drainGet[1] as string;
      const d = /^[A-Za-z0-9-]{1,64}$/.test(id) ? b.getDrain(id) : undefined;
      if (d === undefined) throw new HttpError(404, 'drain_not_found', `no drain ${JSON.stringify(id.slice(0, 80))}`);
      return send(res, 200, d);
    }
    if (path === '/director/drain') {
      post();
      onlyKeys(await readJson(req), []);
      return sendResult(res, b.drainDirector(), 202);
    }
    if (path === '/stats') {
      get();
      return send(res, 200, b.stats());
    }
    if (path === '/nodes') {
      get();
      return send(res, 200, { items: b.nodes(), next_cursor: null });
    }
    if (path === '/sessions') {
      get(['node', 'limit', 'cursor']);
      const node = q.get('node') ?? undefined;
      if (node !== undefined && !NODE_ID_RE.test(node)) throw new HttpError(400, 'bad_request', `node: expected a node id, got "${short(node)}"`);
      if (node !== undefined && !b.hasNode(node)) throw new HttpError(404, 'node_not_found', `no node "${node}"`);
      const limit = parseLimit(q.get('limit'));
      const cursor = parseCursor(q.get('cursor'));
      const page = b.listSessions({ node, limit, after: cursor });
      const last = page.items.at(-1);
      return send(res, 200, { items: page.items, next_cursor: page.more && last !== undefined ? last.id : null });
    }
    const m = /^\/sessions\/([^/]+)$/.exec(path);
    if (m !== null) {
      get();
      const id = checkSessionId(m[1] as string);
      const s = b.getSession(id);
      if (s === undefined) throw new HttpError(404, 'session_not_found', `no live session ${id}`);
      return send(res, 200, s);
    }
    if (path === '/audit/head') {
      get();
      const h = b.auditHead();
      return send(res, 200, { seq: h.seq, head: h.hash, checkpoint: `${h.seq}:${h.hash}` });
    }
    if (path === '/audit') {
      get(['session', 'limit']);
      const session = q.get('session') ?? undefined;
      if (session !== undefined && !isLowerHexId(session)) throw new HttpError(400, 'bad_request', `session: expected 32 lowercase hex characters, got "${short(session)}"`);
      return send(res, 200, { items: b.audit({ session, limit: parseLimit(q.get('limit')) }), next_cursor: null });
    }
    throw new HttpError(404, 'not_found', `no route /v1${path}`);
  }
}

const BODY_MAX = 64 * 1024;

/** Reads a JSON object body (empty body = {}); 400/413 on anything else. */
async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > BODY_MAX) throw new HttpError(413, 'payload_too_large', `request body over ${BODY_MAX} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'bad_request', 'request body: expected a JSON object');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new HttpError(400, 'bad_request', 'request body: expected a JSON object');
  // JSON.parse keeps the last of a repeated field: `{"to":"a","to":"b"}` is refused rather than read as one of them.
  const twice = repeatedKey(text);
  if (twice !== undefined) throw new HttpError(400, 'bad_request', `${short(twice)}: field given more than once`);
  return v as Record<string, unknown>;
}

/**
 * The first key the top-level object of `text` (valid JSON: JSON.parse took it) has more than once, or
 * undefined. Pure; strings are stepped over whole, escapes included, so no brace or quote inside one counts.
 */
export function repeatedKey(text: string): string | undefined {
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c ? 2 : 1;
      if (depth === 1) {
        let k = j + 1;
        while (k < text.length && (text.charCodeAt(k) === 0x20 || text.charCodeAt(k) === 0x09 || text.charCodeAt(k) === 0x0a || text.charCodeAt(k) === 0x0d)) k++;
        if (text.charCodeAt(k) === 0x3a) {
          const key = JSON.parse(text.slice(i, j + 1)) as string;
          if (seen.has(key)) return key;
          seen.add(key);
        }
      }
      i = j;
    } else if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return undefined;
}

function onlyParams(q: URLSearchParams, allowed: readonly string[]): void {
  const seen = new Set<string>();
  for (const k of q.keys()) {
    if (!allowed.includes(k)) throw new HttpError(400, 'bad_request', `${short(k)}: unknown query parameter (allowed: ${allowed.join(', ') || 'none'})`);
    // One value each: `?node=a&node=b` is refused rather than read as one of them.
    if (seen.has(k)) throw new HttpError(400, 'bad_request', `${short(k)}: query parameter given more than once`);
    seen.add(k);
  }
}

function onlyKeys(body: Record<string, unknown>, allowed: readonly string[]): void {
  for (const k of Object.keys(body)) {
    if (!allowed.includes(k)) throw new HttpError(400, 'bad_request', `${k}: unknown field (allowed: ${allowed.join(', ') || 'none'})`);
  }
}

function sendResult(res: http.ServerResponse, r: OpResult<unknown>, okStatus = 200): void {
  if (r.ok) return send(res, r.status ?? okStatus, r.value);
  throw new HttpError(r.error.status, r.error.code, r.error.message);
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
