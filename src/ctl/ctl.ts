// `anchor ctl`: runs one command against a director's admin API and prints the answer (tables, or the
// JSON with --json). Owns the requests, the polling loops (drain follow, audit follow) and exit codes;
// what is printed is built by format.ts. Never touches `process`: the entry point passes its streams in.
import { CTL_HELP, parseCtlArgs, type CtlCommand, type CtlConnection } from './args.js';
import { AdminClient, type ApiResult } from './client.js';
import { cancelReason, drainActive, drainProgressLine, drainSummary, formatAuditLine, formatMigrated, formatPlan, formatSession, formatSessions, formatStatus, list, num, obj, str } from './format.js';

export interface CtlOutput {
  write(s: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export interface CtlIo {
  readonly stdout: CtlOutput;
  readonly stderr: { write(s: string): unknown };
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Injected for tests; the global fetch by default. */
  readonly fetch?: typeof fetch;
  /** Wall-clock milliseconds (for "migrates the rest in …"); Date.now by default. */
  readonly wallNow?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
  /** Milliseconds between polls while following a drain (default 500; the audit follows at twice that). */
  readonly pollMs?: number;
}

export const EXIT = { OK: 0, REFUSED: 1, USAGE: 2 } as const;

/** Consecutive failed polls (director unreachable) before a follow gives up. */
const FOLLOW_FAILURES_MAX = 10;
/** A plain progress line is printed when the counts change, and at least this often while waiting. */
const PLAIN_HEARTBEAT_MS = 30_000;
const PLAIN_MIN_INTERVAL_MS = 1000;
const AUDIT_FOLLOW_FETCH = 1000;

/** Runs `anchor ctl ARGV`; resolves with the exit status. Usage errors are thrown (UsageError, exit 2). */
export async function runCtl(argv: readonly string[], io: CtlIo): Promise<number> {
  const args = parseCtlArgs(argv, io.env);
  if (args.help) {
    io.stdout.write(CTL_HELP + '\n');
    return EXIT.OK;
  }
  return new Ctl(args.conn, io).run(args.command);
}

class Ctl {
  readonly #api: AdminClient;
  readonly #conn: CtlConnection;
  readonly #io: CtlIo;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #now: () => number;
  readonly #pollMs: number;
  #cmd = '';

  constructor(conn: CtlConnection, io: CtlIo) {
    this.#conn = conn;
    this.#io = io;
    this.#api = new AdminClient({ base: conn.admin, token: conn.token, timeoutMs: conn.timeoutMs, fetch: io.fetch });
    this.#sleep = io.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.#now = io.wallNow ?? Date.now;
    this.#pollMs = io.pollMs ?? 500;
  }

  async run(c: CtlCommand): Promise<number> {
    this.#cmd = c.cmd === 'audit-head' ? 'audit' : c.cmd;
    switch (c.cmd) {
      case 'status':
        return this.#status();
      case 'sessions': {
        const q = new URLSearchParams({ limit: String(c.limit) });
        if (c.node !== undefined) q.set('node', c.node);
        if (c.cursor !== undefined) q.set('cursor', c.cursor);
        return this.#show(await this.#api.get(`/v1/sessions?${q}`), formatSessions);
      }
      case 'session':
        return this.#show(await this.#api.get(`/v1/sessions/${c.id}`), formatSession);
      case 'plan': {
        const q = new URLSearchParams({ limit: String(c.limit) });
        if (c.cursor !== undefined) q.set('cursor', c.cursor);
        return this.#show(await this.#api.get(`/v1/nodes/${c.node}/drain-plan?${q}`), formatPlan);
      }
      case 'migrate': {
        const body: Record<string, unknown> = {};
        if (c.to !== undefined) body.to = c.to;
        if (c.expectVersion !== undefined) body.expect_version = c.expectVersion;
        return this.#show(await this.#api.post(`/v1/sessions/${c.session}/migrate`, body), formatMigrated);
      }
      case 'undrain':
        return this.#show(await this.#api.post(`/v1/nodes/${c.node}/undrain`), (u) => {
          const d = obj(u).cancelled_drain;
          const health = obj(u).health;
          const takes = health === undefined || health === null || health === 'healthy' ? 'it takes new sessions again' : `it takes new sessions again once healthy (it is ${str(health)})`;
          return `${str(obj(u).node)} is ${str(obj(u).state)}: ${takes}${d !== null && d !== undefined ? ` (cancelled drain ${str(obj(d).id)} after ${str(obj(d).moved)} of ${str(obj(d).total)} sessions moved)` : ''}`;
        });
      case 'drain': {
        const body: Record<string, unknown> = { mode: c.mode };
        if (c.deadlineS !== undefined) body.deadline_s = c.deadlineS;
        return this.#startAndFollow(await this.#api.post(`/v1/nodes/${c.node}/drain`, body), c.detach);
      }
      case 'failover':
        return this.#startAndFollow(await this.#api.post(`/v1/nodes/${c.node}/failover`), c.detach);
      case 'audit':
        return this.#audit(c.session, c.limit, c.follow);
      case 'audit-head':
        // The checkpoint alone on stdout (or the JSON), so that a cron job can append it to its record.
        return this.#show(await this.#api.get('/v1/audit/head'), (h) => str(obj(h).checkpoint));
    }
  }

  #out(s: string): void {
    this.#io.stdout.write(s.endsWith('\n') ? s : s + '\n');
  }

  #refused(r: ApiResult): number {
    if (r.ok) return EXIT.OK;
    const what = r.status === 0 ? r.message : r.code === 'bad_answer' ? `the director's answer cannot be used: ${r.message}` : `refused by the director (HTTP ${r.status} ${r.code}): ${r.message}`;
    this.#io.stderr.write(`anchor ctl ${this.#cmd}: ${what}\n`);
    return EXIT.REFUSED;
  }

  #show(r: ApiResult, human: (body: unknown) => string): number {
    if (!r.ok) return this.#refused(r);
    this.#out(this.#conn.json ? JSON.stringify(r.body) : human(r.body));
    return EXIT.OK;
  }

  async #status(): Promise<number> {
    // /readyz answers 503 (with its reason) when not ready: that is an answer, not a refusal.
    const [ready, nodes, drains] = await Promise.all([this.#api.get('/readyz'), this.#api.get('/v1/nodes'), this.#api.get('/v1/drains')]);
    if (!nodes.ok) return this.#refused(nodes);
    if (!drains.ok) return this.#refused(drains);
    if (!ready.ok && ready.status !== 503) return this.#refused(ready);
    const readyBody = ready.ok ? ready.body : (ready.body ?? { ready: false, reason: ready.message });
    if (this.#conn.json) {
      this.#out(JSON.stringify({ ready: readyBody, nodes: list(obj(nodes.body).items), drains: list(obj(drains.body).items).filter(drainActive) }));
    } else {
      this.#out(formatStatus(readyBody, nodes.body, drains.body, this.#now()));
    }
    return EXIT.OK;
  }

  async #startAndFollow(r: ApiResult, detach: boolean): Promise<number> {
    if (!r.ok) return this.#refused(r);
    const d = r.body;
    const v = obj(d);
    const how = v.cause === 'failover' ? 'failover' : `drain (${str(v.mode)})`;
    const started = `${how} ${str(v.id)} of ${str(v.node)} ${r.status === 200 ? 'already in progress' : 'started'}: ${str(v.total)} sessions`;
    if (detach) {
      this.#out(this.#conn.json ? JSON.stringify(d) : `${started}; see its progress with: anchor ctl status`);
      return EXIT.OK;
    }
    if (!this.#conn.json) this.#out(started);
    return this.#follow(d);
  }

  /** Polls the drain until it ends: a redrawn bar on a terminal, plain lines otherwise. */
  async #follow(first: unknown): Promise<number> {
    const id = str(obj(first).id);
    const tty = this.#io.stdout.isTTY === true && !this.#conn.json;
    let d = first;
    let lastKey = '';
    let lastPlainAt = Number.NEGATIVE_INFINITY;
    let failures = 0;
    for (;;) {
      if (!this.#conn.json) {
        const now = this.#now();
        if (tty) {
          this.#io.stdout.write(`\r${drainProgressLine(d, { nowMs: now, tty: true, columns: this.#io.stdout.columns })}\x1b[K`);
        } else {
          const v = obj(d);
          const key = `${str(v.state)}|${str(v.moved)}|${str(v.remaining)}|${str(v.failed)}`;
          const due = key !== lastKey ? now - lastPlainAt >= PLAIN_MIN_INTERVAL_MS || !drainActive(d) : now - lastPlainAt >= PLAIN_HEARTBEAT_MS;
          if (due) {
            this.#out(drainProgressLine(d, { nowMs: now, tty: false }));
            lastKey = key;
            lastPlainAt = now;
          }
        }
      }
      if (!drainActive(d)) break;
      await this.#sleep(this.#pollMs);
      const r = await this.#api.get(`/v1/drains/${encodeURIComponent(id)}`);
      if (!r.ok) {
        if (r.status === 0 && ++failures < FOLLOW_FAILURES_MAX) continue;
        if (tty) this.#io.stdout.write('\n');
        return this.#refused(r);
      }
      failures = 0;
      d = r.body;
    }
    if (tty) this.#io.stdout.write('\n');
    const state = obj(d).state;
    this.#out(this.#conn.json ? JSON.stringify(d) : drainSummary(d));
    if (state === 'completed') return EXIT.OK;
    const why =
      state === 'cancelled'
        ? `drain ${id} was ${cancelReason(d) ?? 'cancelled (undrain)'}`
        : state === 'abandoned'
          ? `drain ${id} was abandoned: the director running it went away (drain or undrain ${str(obj(d).node)} again)`
          : `drain ${id} ${str(state)}: ${str(obj(d).failed)} sessions were not moved`;
    this.#io.stderr.write(`anchor ctl ${this.#cmd}: ${why}\n`);
    return EXIT.REFUSED;
  }

  async #audit(session: string | undefined, limit: number, follow: boolean): Promise<number> {
    const path = (n: number): string => `/v1/audit?${new URLSearchParams({ limit: String(n), ...(session !== undefined ? { session } : {}) })}`;
    const first = await this.#api.get(path(limit));
    if (!first.ok) return this.#refused(first);
    const print = (line: unknown): void => this.#out(this.#conn.json ? JSON.stringify(line) : formatAuditLine(line));
    let lastSeq = 0;
    for (const line of list(obj(first.body).items)) {
      print(line);
      lastSeq = Math.max(lastSeq, num(obj(line).seq) ?? 0);
    }
    if (!follow) return EXIT.OK;
    let failures = 0;
    for (;;) {
      await this.#sleep(this.#pollMs * 2);
      const r = await this.#api.get(path(AUDIT_FOLLOW_FETCH));
      if (!r.ok) {
        if (r.status === 0 && ++failures < FOLLOW_FAILURES_MAX) continue;
        return this.#refused(r);
      }
      failures = 0;
      const items = list(obj(r.body).items);
      const seqs = items.map((l) => num(obj(l).seq) ?? 0);
      const newest = seqs.length === 0 ? 0 : Math.max(...seqs);
      // None at all is no news (a session's lines may have left the director's recent ones): not a restart.
      if (items.length > 0 && newest < lastSeq) {
        // A director that restarted without an audit file starts its sequence anew.
        this.#io.stderr.write(`anchor ctl audit: the audit sequence went back from ${lastSeq} to ${newest} (director restarted?)\n`);
        lastSeq = 0;
      }
      const fresh = items.filter((_, i) => (seqs[i] as number) > lastSeq);
      const oldest = fresh.length === 0 ? 0 : Math.min(...fresh.map((l) => num(obj(l).seq) ?? 0));
      if (session === undefined && lastSeq > 0 && fresh.length === items.length && items.length >= AUDIT_FOLLOW_FETCH && oldest > lastSeq + 1) {
        this.#io.stderr.write(`anchor ctl audit: ${oldest - lastSeq - 1} events not shown (more than ${AUDIT_FOLLOW_FETCH} between two polls)\n`);
      }
      for (const line of fresh) print(line);
      lastSeq = Math.max(lastSeq, newest);
    }
  }
}
