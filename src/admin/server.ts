// The admin HTTP API: thin handlers over a narrow backend interface (DESIGN §6 JSON conventions).
// Owns routing, auth and JSON encoding; never reaches into the director's internals.
import http from 'node:http';
import { once } from 'node:events';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Transport } from '../codec/types.js';

export interface NodeView {
  readonly id: string;
  readonly address: string;
  readonly weight: number;
  readonly state: string;
  readonly health: string;
  readonly sessions: number;
}

export interface SessionView {
  readonly id: string;
  readonly owner: string;
  readonly version: string;
  readonly state: string;
  readonly transport: string;
  readonly last_seen: string;
}

export interface AdminBackend {
  ready(): { ready: boolean; reason?: string };
  metrics(): Promise<{ contentType: string; body: string }>;
  nodes(): NodeView[];
  hasNode(id: string): boolean;
  listSessions(q: { node?: string; limit: number; after?: string }): { items: SessionView[]; more: boolean };
  getSession(id: string): SessionView | undefined;
  audit(q: { session?: string; limit: number }): unknown[];
}

export interface AdminOptions {
  readonly listen: Transport;
  readonly token: string | null;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const SESSION_ID_RE = /^[0-9a-f]{32}$/;
const NODE_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;
export const LIST_LIMIT_DEFAULT = 100;
export const LIST_LIMIT_MAX = 1000;

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Constant-time bearer check (hashing first makes the compare independent of the token's length). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer (.+)$/.exec(header ?? '');
  const given = m?.[1] ?? '';
  return timingSafeEqual(digest(given), digest(token)) && m !== null;
}

function parseLimit(v: string | null): number {
  if (v === null) return LIST_LIMIT_DEFAULT;
  if (!/^\d{1,7}$/.test(v) || Number(v) < 1 || Number(v) > LIST_LIMIT_MAX) {
    throw new HttpError(400, 'bad_request', `limit: expected an integer from 1 to ${LIST_LIMIT_MAX}, got "${v}"`);
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
    this.#server = http.createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        const e = err instanceof HttpError ? err : new HttpError(500, 'internal', 'internal error');
        send(res, e.status, { error: { code: e.code, message: e.message } });
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
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin.invalid');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (path === '/healthz' || path === '/readyz' || path === '/metrics') {
      if (method !== 'GET' && method !== 'HEAD') throw new HttpError(405, 'method_not_allowed', `${method} ${path}: only GET is allowed`);
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
    if (path === '/v1' || path.startsWith('/v1/')) {
      if (this.#opts.token !== null && !bearerMatches(req.headers.authorization, this.#opts.token)) {
        res.setHeader('www-authenticate', 'Bearer');
        throw new HttpError(401, 'unauthorized', 'missing or wrong bearer token');
      }
      return this.#v1(method, path.slice(3), url.searchParams, res);
    }
    throw new HttpError(404, 'not_found', `no route ${path}`);
  }

  #v1(method: string, path: string, q: URLSearchParams, res: http.ServerResponse): void {
    const b = this.#backend;
    const get = (): void => {
      if (method !== 'GET') throw new HttpError(405, 'method_not_allowed', `${method} /v1${path}: only GET is allowed`);
    };
    if (path === '/nodes') {
      get();
      return send(res, 200, { items: b.nodes(), next_cursor: null });
    }
    if (path === '/sessions') {
      get();
      const node = q.get('node') ?? undefined;
      if (node !== undefined && !NODE_ID_RE.test(node)) throw new HttpError(400, 'bad_request', `node: expected a node id, got "${node}"`);
      if (node !== undefined && !b.hasNode(node)) throw new HttpError(404, 'node_not_found', `no node "${node}"`);
      const limit = parseLimit(q.get('limit'));
      const cursor = q.get('cursor') ?? undefined;
      if (cursor !== undefined && !SESSION_ID_RE.test(cursor)) throw new HttpError(400, 'bad_request', `cursor: expected a cursor from next_cursor, got "${cursor}"`);
      const page = b.listSessions({ node, limit, after: cursor });
      const last = page.items.at(-1);
      return send(res, 200, { items: page.items, next_cursor: page.more && last !== undefined ? last.id : null });
    }
    const m = /^\/sessions\/([^/]+)$/.exec(path);
    if (m !== null) {
      get();
      const id = (m[1] as string);
      if (!SESSION_ID_RE.test(id)) throw new HttpError(400, 'bad_request', `session id: expected 32 lowercase hex characters, got "${id}"`);
      const s = b.getSession(id);
      if (s === undefined) throw new HttpError(404, 'session_not_found', `no live session ${id}`);
      return send(res, 200, s);
    }
    if (path === '/audit') {
      get();
      const session = q.get('session') ?? undefined;
      if (session !== undefined && !SESSION_ID_RE.test(session)) throw new HttpError(400, 'bad_request', `session: expected 32 lowercase hex characters, got "${session}"`);
      return send(res, 200, { items: b.audit({ session, limit: parseLimit(q.get('limit')) }), next_cursor: null });
    }
    throw new HttpError(404, 'not_found', `no route /v1${path}`);
  }
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
