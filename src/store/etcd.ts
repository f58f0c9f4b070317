// The etcd ownership store (DESIGN §5, issue 6): session records shared by several directors, one key
// per session under `${prefix}sessions/<id>`, JSON values (versions as decimal strings). Every
// transition is a transaction that compares the key's mod_revision (never etcd's per-key `version`,
// which restarts when a key is re-created). Every call has a deadline; a write whose outcome is unknown
// is re-read and resolved, never assumed. It never decides a transition (the caller names the version it
// expects) and never throws for an expected outcome.
import { InterceptingCall, type CallOptions, type Interceptor } from '@grpc/grpc-js';
import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, isBrokenCircuitError, noop, type IBackoff } from 'cockatiel';
import { Etcd3, isRecoverableError, type IKeyValue, type IRangeResponse, type Lease, type Watcher } from 'etcd3';
import { checkExpiry, checkIncarnation, checkUpdates, freezeRecord, sameLife, SHARED_KINDS, U64_MAX, type CasResult, type GetResult, type OwnershipStore, type SharedEvent, type SharedKind, type StoreEvent, type StoredSession, type UpdateWrite } from './store.js';
import { SessionState } from '../session/lifecycle.js';
import { inSlices, type SliceOptions } from '../util/slices.js';

const SESSION_STATES: readonly string[] = Object.values(SessionState);

/**
 * etcd's default `--max-txn-ops`: the most compares, and operations per branch, one transaction may
 * carry. `updateMany` writes in transactions of at most this many sessions.
 */
export const MAX_TXN_OPS = 128;


export interface EtcdStoreOptions {
  /** Client URLs, e.g. `http://127.0.0.1:2379`. */
  readonly endpoints: readonly string[];
  /** Every key this store reads or writes lives under it (e.g. `/anchor/`). */
  readonly prefix: string;
  /** Deadline of one etcd call (about 1 s). A write whose outcome is unknown gets a second one to re-read. */
  readonly callTimeoutMs: number;
  /**
   * Reserved for the director lease (self-fencing, a follow-up). Session keys carry no lease on purpose:
   * a director that dies must not take the sessions it wrote with it.
   */
  readonly leaseTtlS?: number;
  /** Told about a watch listener that threw, an undecodable value or a watch resync; the store carries on. */
  readonly onError?: (err: unknown, context: string) => void;
  /** How a listing is cut into slices with turns of the event loop between them (src/util/slices.ts; tests). */
  readonly listSlices?: SliceOptions;
}

type ListResult = { ok: true; records: StoredSession[] } | { ok: false; reason: 'unavailable'; message: string };
type Unavailable = { ok: false; reason: 'unavailable'; message: string; maybeApplied?: true };

/** A record as read, with the key's mod_revision (the CAS token). */
export interface Versioned {
  readonly record: StoredSession;
  readonly modRevision: bigint;
}

interface Subscription {
  readonly fn: (ev: StoreEvent) => void;
  /** Events committed before the subscription (at a revision below this) are not delivered to it. */
  readonly fromRevision: bigint;
}

class CallTimeout extends Error {
  constructor(what: string, ms: number) {
    super(`etcd ${what} timed out after ${ms} ms`);
    this.name = 'CallTimeout';
  }
}

/**
 * A read that failed fast (a dead member refused the connection) may succeed on another member; one
 * that timed out used the whole deadline, and one refused for want of a leader fails everywhere.
 */
function worthRetrying(err: unknown): boolean {
  return !(err instanceof CallTimeout) && !/no leader/i.test(errMessage(err));
}

/** Options of a write that may place a session on a node (create, update, updateMany): its node-state guard. */
export interface NodeStateGuard {
  /** The revision of the shared store the director's view is as of: by default, what its feed has delivered. */
  readonly nodeStateAsOf?: bigint;
}

type TxnCompare = NonNullable<Parameters<Etcd3['kv']['txn']>[0]['compare']>[number];

function staleNode(node: string, asOf: bigint, what: string): CasResult {
  return { ...unavailable(`node ${node}'s state was written after revision ${asOf}, the last this director had seen when it picked it: ${what}`), staleNodeState: true };
}

function unavailable(message: string): Unavailable {
  return { ok: false, reason: 'unavailable', message };
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---- record codec (pure) -------------------------------------------------------------------------



/**
 * How long after `now` the next lease keepalive goes: a fifth of the TTL after the last one was sent (at
 * once when its answer took longer than that), at least 100 ms apart. Pure.
 */
export function leaseDelay(sentAt: number, now: number, ttlMs: number): number {
  const every = Math.max(100, Math.floor(ttlMs / 5));
  return Math.max(0, sentAt + every - now);
}

/** JSON with the version as a decimal string (u64 does not fit a JSON number). */
export function encodeRecord(r: StoredSession): string {
  return JSON.stringify({
    id: r.id,
    owner: r.owner,
    version: r.version.toString(),
    state: r.state,
    transport: r.transport,
    director: r.director,
    expiresAt: r.expiresAt,
    incarnation: r.incarnation,
  });
}

/** Keys per page of a listing: ~250 bytes each, well under gRPC's 4 MiB message limit. */
export const RANGE_PAGE = 4096;

/** A session id as keys hold it: 32 lower-case hex characters. */
const SESSION_ID = /^[0-9a-f]{32}$/;

/**
 * The record a key's value holds (a value without an incarnation, written before lives were kept: 0).
 * Throws on a value Anchor did not write (the caller fails closed).
 */
export function decodeRecord(text: string): StoredSession {
  const o = JSON.parse(text) as Record<string, unknown>;
  const ok =
    o !== null &&
    typeof o === 'object' &&
    typeof o['id'] === 'string' &&
    typeof o['owner'] === 'string' &&
    typeof o['version'] === 'string' &&
    /^[1-9][0-9]{0,19}$/.test(o['version']) &&
    typeof o['state'] === 'string' &&
    SESSION_STATES.includes(o['state']) &&
    (o['transport'] === null || typeof o['transport'] === 'string') &&
    typeof o['director'] === 'string' &&
    typeof o['expiresAt'] === 'number' &&
    (o['incarnation'] === undefined || (typeof o['incarnation'] === 'number' && Number.isSafeInteger(o['incarnation']) && o['incarnation'] >= 0));
  if (!ok) throw new Error(`not an Anchor session record: ${text.slice(0, 200)}`);
  const version = BigInt(o['version'] as string);
  if (version > U64_MAX) throw new Error(`session version beyond u64: ${String(o['version'])}`);
  return Object.freeze({
    id: o['id'] as string,
    owner: o['owner'] as string,
    version,
    state: o['state'] as SessionState,
    transport: o['transport'] as string | null,
    director: o['director'] as string,
    expiresAt: o['expiresAt'] as number,
    incarnation: (o['incarnation'] as number | undefined) ?? 0,
  });
}

// ---- shared entries (pure) -----------------------------------------------------------------------

const SHARED_KEY = /^(nodes|drains|failovers)\/([A-Za-z0-9._-]{1,64})$/;

/** `kind/id` with a JSON object value as a shared event, or null for a key or value that is not one. */
export function sharedEvent(key: string, text: string): SharedEvent | null {
  const m = SHARED_KEY.exec(key);
  if (m === null) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  return { kind: m[1] as SharedKind, id: m[2] as string, value: value as Record<string, unknown> };
}

function sharedDeleted(key: string): SharedEvent | null {
  const m = SHARED_KEY.exec(key);
  return m === null ? null : { kind: m[1] as SharedKind, id: m[2] as string, value: null };
}

// ---- resolving a write whose outcome is unknown (pure) --------------------------------------------

export type WriteKind = 'create' | 'update' | 'delete';

/**
 * What a write whose answer never came (a timeout after sending, a dropped connection) did, decided
 * from a later linearizable re-read of its key:
 * - `applied`: the key shows our write (create/update: exactly our value; delete: the key is gone);
 * - `not-applied`: the key is exactly as it was when we compared it (same mod_revision, or still
 *   absent for a create) — the write did not apply *yet*; it may still be retried (the compare makes a
 *   retry safe) or reported `unavailable`;
 * - `conflict`: someone else's write is there (`current`, possibly null).
 * A delete that finds the key gone counts as applied: whoever removed it named the same version, and
 * the store holds exactly what we asked for.
 */
export type Resolution =
  | { readonly kind: 'applied' }
  | { readonly kind: 'not-applied' }
  | { readonly kind: 'conflict'; readonly current: StoredSession | null };

export function resolveUnknownWrite(
  kind: WriteKind,
  ourValue: string | null,
  comparedModRevision: bigint | null,
  reread: { readonly value: string; readonly record: StoredSession; readonly modRevision: bigint } | null,
): Resolution {
  if (kind === 'delete') {
    if (reread === null) return { kind: 'applied' };
    if (reread.modRevision === comparedModRevision) return { kind: 'not-applied' };
    return { kind: 'conflict', current: reread.record };
  }
  if (reread === null) return kind === 'create' ? { kind: 'not-applied' } : { kind: 'conflict', current: null };
  if (reread.value === ourValue && (comparedModRevision === null || reread.modRevision > comparedModRevision)) {
    return { kind: 'applied' };
  }
  if (kind === 'update' && reread.modRevision === comparedModRevision) return { kind: 'not-applied' };
  return { kind: 'conflict', current: reread.record };
}

// ---- the store -------------------------------------------------------------------------------------

/** Adds `hasleader: true` to every call and stream, so etcd fails them at once when it has no leader. */
const hasLeader: Interceptor = (options, nextCall) =>
  new InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set('hasleader', 'true');
      next(metadata, listener);
    },
  });

export class EtcdStore implements OwnershipStore {
  readonly #client: Etcd3;
  readonly #prefix: string;
  readonly #keyPrefix: string;
  readonly #timeoutMs: number;
  readonly #onError: ((err: unknown, context: string) => void) | undefined;
  readonly #slices: SliceOptions;
  readonly #subs = new Set<Subscription>();
  /** Records as last seen by the watch feed (for `prev` when etcd has none, and to diff on resync). */
  readonly #cache = new Map<string, StoredSession>();
  /** Shared entries as last seen by the watch feed: `nodes/<id>`, `drains/<id>` → the JSON text and the revision of its last write. */
  readonly #shared = new Map<string, { text: string; mod: bigint }>();
  readonly #sharedSubs = new Set<(ev: SharedEvent, revision: bigint) => void>();
  /** Highest revision this store knows to be committed (from any response header or event). */
  #knownRevision = 0n;
  /** mod_revision of the last event the feed applied (or the revision of the last listing). */
  #feedRevision = 0n;
  /**
   * The keys of the events applied at #feedRevision: one transaction (`updateMany`) writes many keys at
   * one revision, and each of them is an event of its own.
   */
  readonly #feedKeys = new Set<string>();
  #watcher: Watcher | null = null;
  #resyncTimer: NodeJS.Timeout | null = null;
  #closed = false;
  #listedOnce = false;
  /** Why the feed's last listing failed (said when `follow` cannot list). */
  #feedError: string | null = null;
  /** The watch stream dropped and not re-opened yet (etcd3 reconnects it; see #openWatcher). */
  #streamDown = false;
  /** The feed's listing in progress, if any (a resync and `follow` never run two). */
  #feedStarting: Promise<void> | null = null;
  // ---- the director's lease (self-fencing) ----
  #lease: Lease | null = null;
  /** The id of the lease while it is granted (shared entries written `withLease` carry it). */
  #leaseId: string | null = null;
  #leaseOkAt: number | null = null;
  #leaseTimer: NodeJS.Timeout | null = null;
  readonly leaseTtlMs: number | undefined;

  private constructor(client: Etcd3, opts: EtcdStoreOptions) {
    this.#client = client;
    this.#prefix = opts.prefix;
    this.#keyPrefix = `${opts.prefix}sessions/`;
    this.#timeoutMs = opts.callTimeoutMs;
    this.#onError = opts.onError;
    this.#slices = opts.listSlices ?? {};
    this.leaseTtlMs = opts.leaseTtlS === undefined ? undefined : opts.leaseTtlS * 1000;
  }

  /** Monotonic time (performance.now) at which the last successful lease keepalive was sent. */
  leaseOkAt(): number | null {
    return this.#leaseOkAt;
  }

  /**
   * Keeps the director's lease alive: a grant, then a keepalive every fifth of the TTL from when the last
   * one was sent (every 250 ms while
   * failing), each with the call deadline. The time recorded is when the request was SENT, so the
   * fence computed from it is never later than the server's view. A lease the server let expire is
   * granted anew.
   */
  #leaseTick(): Promise<void> {
    const ttlMs = this.leaseTtlMs;
    if (ttlMs === undefined || this.#closed) return Promise.resolve();
    const sent = performance.now();
    const attempt = async (): Promise<void> => {
      if (this.#lease === null) {
        const lease = this.#client.lease(Math.round(ttlMs / 1000), { autoKeepAlive: false });
        lease.on('lost', () => {
          if (this.#lease === lease) {
            this.#lease = null;
            this.#leaseId = null;
          }
        });
        this.#lease = lease;
        this.#leaseId = null;
        // The id whenever the grant answers, also after this call's deadline: the keepalives that follow
        // wait for that answer and then hold the lease alive, and claims and the drain records need its id.
        lease.grant().then(
          (id) => {
            if (this.#lease === lease) this.#leaseId = id;
          },
          () => undefined, // told by this call (or the next keepalive), and by 'lost'
        );
        await withTimeout(lease.grant(), this.#timeoutMs);
        return;
      }
      const res = await withTimeout(this.#lease.keepaliveOnce(), this.#timeoutMs);
      if (Number(res.TTL) <= 0) {
        this.#lease = null; // expired on the server: grant a new one next time
        this.#leaseId = null;
        throw new Error('lease expired');
      }
    };
    return attempt().then(
      () => {
        this.#leaseOkAt = sent;
        // A fifth of the TTL after this one was SENT, not after its answer: a slow answer must not push
        // every later keepalive back (at a TTL of 3 s, answers slower than 400 ms kept the fence near its
        // deadline — admissions refused — for part of every cycle).
        this.#scheduleLease(leaseDelay(sent, performance.now(), ttlMs));
      },
      (err: unknown) => {
        this.#onError?.(err, 'lease keepalive');
        this.#scheduleLease(250);
      },
    );
  }

  #scheduleLease(ms: number): void {
    if (this.#closed) return;
    this.#leaseTimer = setTimeout(() => void this.#leaseTick(), ms);
    this.#leaseTimer.unref();
  }

  /**
   * Builds the client (no automatic retries: a retried write may already have applied; a circuit
   * breaker per host; gRPC keepalive 10 s; `hasleader` on every call) and starts the watch feed
   * (list, then watch from the listing's revision + 1). Does not fail when etcd is down: calls answer
   * `unavailable` and the feed keeps trying until etcd answers.
   */
  static async connect(opts: EtcdStoreOptions): Promise<EtcdStore> {
    if (opts.endpoints.length === 0) throw new TypeError('EtcdStore: endpoints must not be empty');
    if (!(opts.callTimeoutMs > 0)) throw new TypeError('EtcdStore: callTimeoutMs must be > 0');
    const client = new Etcd3({
      hosts: [...opts.endpoints],
      dialTimeout: opts.callTimeoutMs,
      grpcOptions: {
        // 10 s: at 5 s etcd answers "too many pings" and drops the connection.
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': Math.max(1000, opts.callTimeoutMs),
        'grpc.keepalive_permit_without_calls': 1,
        // A watch answer carries a whole transaction's events (with their previous values): room for
        // the largest batch step, not gRPC's 4 MiB default. Listings are paged (#range).
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
        // Reconnect quickly once a member is back.
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1000,
      },
      // Interceptors on every call and on the watch stream; deadlines are set per call below.
      defaultCallOptions: { interceptors: [hasLeader] } as CallOptions,
      faultHandling: {
        // No retries by the client: this store retries only what is safe to retry (reads, and CAS
        // writes after a re-read proved they did not apply).
        global: noop,
        // A host that failed 3 times in a row is skipped for 1 s (a short half-open so a restored
        // member is used again quickly).
        host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(3) }),
        // Re-open a dropped watch within a second (the default backs off up to 30 s). etcd3's typings
        // ask for an IBackoff, but it calls `.next()` on what it gets: a factory is what works.
        watchBackoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }) as unknown as IBackoff<unknown>,
      },
    });
    const store = new EtcdStore(client, opts);
    await store.#startFeed();
    // The first grant is awaited (bounded by the call deadline): a director starts unfenced when etcd is up.
    await store.#leaseTick();
    return store;
  }

  resync(): void {
    if (this.#closed) return;
    // The watch in place (if any) is let go: the listing's watch starts after it, missing nothing.
    const w = this.#watcher;
    this.#watcher = null;
    if (w !== null) {
      w.removeAllListeners('data');
      void w.cancel().catch(() => undefined);
    }
    if (this.#resyncTimer !== null) clearTimeout(this.#resyncTimer);
    this.#resyncTimer = null;
    void this.#startFeed();
  }

  get following(): boolean {
    return !this.#closed && this.#listedOnce && this.#watcher !== null && !this.#streamDown && this.#resyncTimer === null && this.#feedStarting === null;
  }

  /** Number of records in the watch feed's cache (for metrics and tests). */
  get cachedSize(): number {
    return this.#cache.size;
  }

  #key(id: string): Buffer {
    return Buffer.from(this.#keyPrefix + id);
  }

  /** One etcd call with a deadline: the gRPC deadline, and a timer in case the client itself stalls. */
  async #call<T>(what: string, fn: (opts: CallOptions) => Promise<T>, timeoutMs: number): Promise<T> {
    if (this.#closed) throw new Error('store closed');
    const p = fn({ deadline: Date.now() + timeoutMs });
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new CallTimeout(what, timeoutMs)), timeoutMs + 50);
      timer.unref();
    });
    p.catch(() => undefined); // a late rejection after the timer fired is expected
    try {
      return await Promise.race([p, t]);
    } finally {
      clearTimeout(timer);
    }
  }

  #seen(header: { revision?: string | number } | undefined): void {
    if (header?.revision === undefined) return;
    const r = BigInt(header.revision);
    if (r > this.#knownRevision) this.#knownRevision = r;
  }

  /** An event's previous record; undefined when there is none, or it was not one Anchor can read. */
  #prevOf(kv: IKeyValue | undefined | null): StoredSession | undefined {
    if (kv === undefined || kv === null) return undefined;
    try {
      return this.#decodeKv(kv).record;
    } catch {
      return undefined;
    }
  }

  /**
   * The record under `kv`, or an Error naming the key: for a value Anchor did not write, and for one that
   * names another session than its key does (a record under `sessions/A` saying it is B would be mirrored
   * as B, and route B's packets by it).
   */
  #decodeKv(kv: IKeyValue): { value: string; record: StoredSession; modRevision: bigint } {
    const value = kv.value.toString('utf8');
    const key = kv.key.toString('utf8');
    let record;
    try {
      record = decodeRecord(value);
    } catch (err) {
      throw new Error(`${key}: ${errMessage(err)}`, { cause: err });
    }
    if (!SESSION_ID.test(record.id)) throw new Error(`${key}: the record's id "${record.id.slice(0, 64)}" is not a session id (32 lower-case hex characters)`);
    if (key !== this.#keyPrefix + record.id) throw new Error(`${key}: the record names session ${record.id}, not the one of its key`);
    return { value, record, modRevision: BigInt(kv.mod_revision) };
  }

  /**
   * A linearizable read of one key, retried (reads are safe to retry) while the deadline allows.
   * Throws when it cannot answer in time.
   */
  async #read(id: string, timeoutMs = this.#timeoutMs): Promise<{ value: string; record: StoredSession; modRevision: bigint } | null> {
    const until = Date.now() + timeoutMs;
    let last: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const left = until - Date.now();
      if (left <= 0) break;
      try {
        const res: IRangeResponse = await this.#call('range', (o) => this.#client.kv.range({ key: this.#key(id) }, o), left);
        this.#seen(res.header);
        const kv = res.kvs[0];
        return kv === undefined ? null : this.#decodeKv(kv);
      } catch (err) {
        if (last === undefined || !isBrokenCircuitError(err)) last = err; // keep the cause, not the breaker
        if (!worthRetrying(err) || this.#closed) break;
      }
    }
    throw last ?? new CallTimeout('range', timeoutMs);
  }

  /**
   * A linearizable read of several keys in one transaction (at most MAX_TXN_OPS), retried like #read.
   * Per key: what is there, null when absent, or the Error of a value Anchor did not write (the caller
   * fails that key closed). Throws when it cannot answer in time.
   */
  async #readMany(ids: readonly string[], timeoutMs = this.#timeoutMs): Promise<({ value: string; record: StoredSession; modRevision: bigint } | null | Error)[]> {
    const until = Date.now() + timeoutMs;
    const req = { success: ids.map((id) => ({ request_range: { key: this.#key(id) } })) };
    let last: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const left = until - Date.now();
      if (left <= 0) break;
      try {
        const res = await this.#call('txn', (o) => this.#client.kv.txn(req, o), left);
        this.#seen(res.header);
        return ids.map((_, k) => {
          const kv = res.responses[k]?.response_range?.kvs[0];
          if (kv === undefined) return null;
          try {
            return this.#decodeKv(kv);
          } catch (err) {
            return err instanceof Error ? err : new Error(String(err));
          }
        });
      } catch (err) {
        if (last === undefined || !isBrokenCircuitError(err)) last = err; // keep the cause, not the breaker
        if (!worthRetrying(err) || this.#closed) break;
      }
    }
    throw last ?? new CallTimeout('txn', timeoutMs);
  }

  /**
   * Every key under `prefix` (sessions, or the whole store prefix for the feed), at one revision: in pages
   * of RANGE_PAGE keys, each page read at the first one's revision (one answer holding every session
   * passed gRPC's message limit from about 18,000 sessions on: no director could start, and a resync
   * failed for good). Each page has the call deadline `timeoutMs`.
   */
  async #range(prefix: string, timeoutMs = this.#timeoutMs): Promise<{ kvs: IKeyValue[]; revision: bigint }> {
    const end = Buffer.from(prefix);
    end[end.length - 1] = (end[end.length - 1] as number) + 1; // the prefix's range end
    const kvs: IKeyValue[] = [];
    let from = Buffer.from(prefix);
    let revision: string | undefined;
    for (;;) {
      const res = await this.#rangePage(from, end, revision, timeoutMs);
      revision ??= res.header.revision;
      for (const kv of res.kvs) kvs.push(kv);
      const lastKv = res.kvs.at(-1);
      if (!res.more || lastKv === undefined) return { kvs, revision: BigInt(revision) };
      from = Buffer.concat([lastKv.key, Buffer.from([0])]); // the next key after the last one
    }
  }

  /** One page of a range (at `revision` when given), retried (reads are safe to retry) within `timeoutMs`. */
  async #rangePage(from: Buffer, end: Buffer, revision: string | undefined, timeoutMs: number): Promise<IRangeResponse> {
    const until = Date.now() + timeoutMs;
    let last: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const left = until - Date.now();
      if (left <= 0) break;
      try {
        const res = await this.#call('range', (o) => this.#client.kv.range({ key: from, range_end: end, limit: RANGE_PAGE, ...(revision === undefined ? {} : { revision }) }, o), left);
        this.#seen(res.header);
        return res;
      } catch (err) {
        if (last === undefined || !isBrokenCircuitError(err)) last = err; // keep the cause, not the breaker
        if (!worthRetrying(err) || this.#closed) break;
      }
    }
    throw last ?? new CallTimeout('range', timeoutMs);
  }

  /**
   * Every session record, at one revision. A value that is not one (or names another session than its
   * key) is reported and left out, as the watch feed does: one bad key must not make every listing fail
   * (no director could start, no drain list its node). That session itself fails closed: every call on
   * it is answered unavailable.
   */
  async #listAll(timeoutMs = this.#timeoutMs): Promise<{ records: StoredSession[]; revision: bigint }> {
    const { kvs, revision } = await this.#range(this.#keyPrefix, timeoutMs);
    const records: StoredSession[] = [];
    for (const kv of kvs) {
      const record = this.#listed(kv, 'list');
      if (record !== null) records.push(record);
    }
    return { records, revision };
  }

  /**
   * A listed session record, or null for a value that is not one (or names another session than its key):
   * reported (`what`: the listing) and left out, so that one bad key never fails a whole listing. That
   * session itself fails closed: every call on it is answered unavailable.
   */
  #listed(kv: IKeyValue, what: string): StoredSession | null {
    try {
      return this.#decodeKv(kv).record;
    } catch (err) {
      this.#report(err, `${what}: undecodable session record left out`);
      return null;
    }
  }

  /**
   * Writes a shared entry (`<prefix><kind>/<id>`, JSON). `withLease`: the entry carries this director's
   * lease, so it disappears when the director does (a running drain's record); without it, it stays
   * (node states). A plain put, last writer wins: these entries are advisory views and intents, never
   * ownership (which only ever changes by CAS on a session key).
   */
  async putShared(kind: SharedKind, id: string, value: object, opts: { withLease?: boolean } = {}): Promise<{ ok: true; revision: bigint } | Unavailable> {
    if (this.#closed) return unavailable('store closed');
    const key = this.#sharedKey('putShared', kind, id);
    const lease = opts.withLease === true ? this.#leaseId : null;
    if (opts.withLease === true && lease === null) return unavailable(`${kind}/${id} not written: this director holds no lease`);
    const req = { key, value: Buffer.from(JSON.stringify(value)), ...(lease === null ? {} : { lease }) };
    try {
      const res = await this.#call('put', (o) => this.#client.kv.put(req, o), this.#timeoutMs);
      this.#seen(res.header);
      return { ok: true, revision: BigInt(res.header.revision) };
    } catch (err) {
      // Sent (not refused by the closed store or the open circuit breaker): it may have been committed.
      if (this.#closed || isBrokenCircuitError(err)) return unavailable(`${kind}/${id} not written: ${errMessage(err)}`);
      return { ...unavailable(`${kind}/${id} perhaps not written (outcome unknown): ${errMessage(err)}`), maybeApplied: true };
    }
  }

  async claimShared(kind: SharedKind, id: string, value: object): Promise<{ ok: true; claimed: true; lease: string } | { ok: true; claimed: false; holder: Record<string, unknown> | null; lease: string | null } | Unavailable> {
    if (this.#closed) return unavailable('store closed');
    const key = this.#sharedKey('claimShared', kind, id);
    const lease = this.#leaseId;
    if (lease === null) return unavailable(`${kind}/${id} not claimed: this director holds no lease`);
    try {
      const res = await this.#call(
        'txn',
        (o) =>
          this.#client.kv.txn(
            {
              compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
              success: [{ request_put: { key, value: Buffer.from(JSON.stringify(value)), lease } }],
              failure: [{ request_range: { key } }],
            },
            o,
          ),
        this.#timeoutMs,
      );
      this.#seen(res.header);
      if (res.succeeded) return { ok: true, claimed: true, lease };
      // Held: by whom, when its value is a shared entry's JSON object (else by an unknown holder).
      const kv = res.responses[0]?.response_range?.kvs[0];
      const holder = kv === undefined ? null : (sharedEvent(`${kind}/${id}`, Buffer.from(kv.value).toString('utf8'))?.value ?? null);
      return { ok: true, claimed: false, holder, lease: kv === undefined || String(kv.lease) === '0' ? null : String(kv.lease) };
    } catch (err) {
      // Perhaps committed (the answer was lost): then it is held by this director's lease until it ends,
      // or until released (release compares the value: it finds this claim). Not sent: not held.
      if (isBrokenCircuitError(err)) return unavailable(`${kind}/${id} not claimed: ${errMessage(err)}`);
      return { ...unavailable(`${kind}/${id} perhaps not claimed (outcome unknown): ${errMessage(err)}`), maybeApplied: true };
    }
  }

  /** Whether `lease` (a claim's, claimShared) is still this store's lease: a lease that lapsed took its claims with it. */
  leaseHeld(lease: string): boolean {
    return this.#leaseId === lease;
  }

  async releaseShared(kind: SharedKind, id: string, value: object): Promise<{ ok: true; released: boolean } | Unavailable> {
    if (this.#closed) return unavailable('store closed');
    const key = this.#sharedKey('releaseShared', kind, id);
    try {
      const res = await this.#call(
        'txn',
        (o) => this.#client.kv.txn({ compare: [{ key, target: 'Value', result: 'Equal', value: Buffer.from(JSON.stringify(value)) }], success: [{ request_delete_range: { key } }], failure: [] }, o),
        this.#timeoutMs,
      );
      this.#seen(res.header);
      return { ok: true, released: res.succeeded };
    } catch (err) {
      return unavailable(`${kind}/${id} perhaps not released: ${errMessage(err)}`);
    }
  }

  /** The key of the shared entry `kind/id`; a kind that is not one is a programming error (`call` names the caller). */
  #sharedKey(call: string, kind: SharedKind, id: string): Buffer {
    if (!SHARED_KINDS.includes(kind)) throw new TypeError(`${call}: unknown kind "${String(kind)}"`);
    return Buffer.from(`${this.#prefix}${kind}/${id}`);
  }

  watchShared(listener: (ev: SharedEvent, revision: bigint) => void): () => void {
    if (this.#closed) return () => undefined;
    for (const [key, { text, mod }] of this.#shared) {
      const ev = sharedEvent(key, text);
      if (ev !== null) listener(ev, mod); // each at its last write's revision (SharedNodeStates guards by it)
    }
    this.#sharedSubs.add(listener);
    return () => {
      this.#sharedSubs.delete(listener);
    };
  }

  async get(id: string): Promise<GetResult> {
    if (this.#closed) return unavailable('store closed');
    try {
      const r = await this.#read(id);
      return { ok: true, record: r?.record ?? null };
    } catch (err) {
      return unavailable(`etcd get: ${errMessage(err)}`);
    }
  }

  /**
   * Ranges over every session and filters by owner: O(sessions) per call. An owner index key
   * (`owners/<owner>/<id>`, written in the same transaction) is the follow-up when drains get large.
   */
  async listByOwner(owner: string): Promise<ListResult> {
    if (this.#closed) return unavailable('store closed');
    try {
      const { records } = await this.#listAll();
      return { ok: true, records: records.filter((r) => r.owner === owner) }; // etcd returns keys in order
    } catch (err) {
      return unavailable(`etcd list: ${errMessage(err)}`);
    }
  }

  /**
   * `nodeStateAsOf`: the revision up to which this director has seen the shared store when it picked the
   * owner (by default the feed's: what its watch has delivered, and the director applied, so far). The
   * create is refused (`staleNodeState`) when the owner's node state (`nodes/<owner>`) was written after
   * it: a drain begun meanwhile on another director is never given a session it cannot see coming — its
   * director, once it has seen its own draining write come back, has seen every admission before it, and
   * none can commit after it. Without a feed yet (revision 0) and no revision given, the create is not
   * guarded.
   */
  async create(record: StoredSession, opts: NodeStateGuard = {}): Promise<CasResult> {
    const rec = freezeRecord(record);
    if (rec.version !== 1n) throw new TypeError(`create: record.version must be 1, got ${rec.version}`);
    if (this.#closed) return unavailable('store closed');
    const key = this.#key(rec.id);
    const value = encodeRecord(rec);
    const asOf = this.#nodeAsOf(rec.owner, this.#asOf(opts));
    const compare: TxnCompare[] = [{ key, target: 'Create', result: 'Equal', create_revision: 0 }];
    if (asOf !== null) compare.push(this.#nodeCompare(rec.owner, asOf));
    return this.#cas('create', rec.id, value, null, rec, {
      compare,
      success: [{ request_put: { key, value: Buffer.from(value) } }],
      failure: [{ request_range: { key } }],
    }, asOf === null ? null : () => staleNode(rec.owner, asOf, 'not admitted (the next HELLO is, under the state it sees then)'));
  }

  /** The revision a write that picks a node is guarded as of (see create), or null for none. */
  #asOf(opts: NodeStateGuard): bigint | null {
    return opts.nodeStateAsOf ?? (this.#feedRevision > 0n ? this.#feedRevision : null);
  }

  /** The guard of a write that places a session on `node`: what guardNodeViews says of the node, else `asOf`. */
  #nodeAsOf(node: string, asOf: bigint | null): bigint | null {
    return this.#nodeViews?.(node) ?? asOf;
  }

  #nodeViews: ((node: string) => bigint | undefined) | null = null;

  /**
   * How the director's view of a node's state stands against its feed: for a node whose state the director
   * holds differently from what the feed delivered last (a write of its own on its way, or one the store did
   * not take), `view` gives the revision to guard with instead (SharedNodeStates.placeGuard: lower than the
   * feed's, or the revision of its own write the store answered); undefined leaves the feed's (or the
   * caller's `nodeStateAsOf`).
   */
  guardNodeViews(view: (node: string) => bigint | undefined): void {
    this.#nodeViews = view;
  }

  /** The compare that `node`'s state (`nodes/<node>`) was last written at or before revision `asOf`. */
  #nodeCompare(node: string, asOf: bigint): TxnCompare {
    return { key: Buffer.from(`${this.#prefix}nodes/${node}`), target: 'Mod', result: 'Less', mod_revision: (asOf + 1n).toString() };
  }

  /**
   * A write that changes the session's owner (a transfer: a drain, a migration, a failover) is guarded
   * as a create is (`nodeStateAsOf`, `staleNodeState`): nothing moves onto a node whose drain began after
   * what this director had seen when it picked the node. Other writes are not guarded.
   */
  async update(record: StoredSession, expectVersion: bigint, opts: NodeStateGuard = {}): Promise<CasResult> {
    const rec = freezeRecord(record);
    if (typeof expectVersion !== 'bigint') throw new TypeError(`expectVersion must be a bigint, got ${typeof expectVersion}`);
    if (rec.version !== expectVersion + 1n) {
      throw new TypeError(`update: record.version must be expectVersion + 1 (${expectVersion + 1n}), got ${rec.version}`);
    }
    if (this.#closed) return unavailable('store closed');
    // The view the caller picked the owner from is the one it had when it called (its feed may go on
    // while the record is read).
    const viewAsOf = this.#nodeAsOf(rec.owner, this.#asOf(opts));
    let cur;
    try {
      cur = await this.#read(rec.id);
    } catch (err) {
      return unavailable(`etcd update: ${errMessage(err)}`);
    }
    if (cur === null || cur.record.version !== expectVersion || !sameLife(cur.record.incarnation, rec.incarnation)) return { ok: false, reason: 'conflict', current: cur?.record ?? null };
    const key = this.#key(rec.id);
    const value = encodeRecord(rec);
    const asOf = cur.record.owner !== rec.owner ? viewAsOf : null;
    const compare: TxnCompare[] = [{ key, target: 'Mod', result: 'Equal', mod_revision: cur.modRevision.toString() }];
    if (asOf !== null) compare.push(this.#nodeCompare(rec.owner, asOf));
    return this.#cas('update', rec.id, value, cur.modRevision, rec, {
      compare,
      success: [{ request_put: { key, value: Buffer.from(value) } }],
      failure: [{ request_range: { key } }],
    }, asOf === null ? null : () => staleNode(rec.owner, asOf, 'not moved there (a drain tries again under the state it sees then)'));
  }

  /**
   * The writes in transactions of at most MAX_TXN_OPS sessions (sent together): one read of the chunk's
   * keys, then one transaction comparing every key's mod_revision. When a compare fails, the failure
   * branch has read every key: the keys that changed are answered `conflict` with what is there, and the
   * others are sent again in a smaller transaction (each round drops at least one key). An unknown
   * outcome is resolved key by key from a re-read, as for one update.
   */
  async updateMany(writes: readonly UpdateWrite[], opts: NodeStateGuard = {}): Promise<CasResult[]> {
    const recs = checkUpdates(writes);
    const out = new Array<CasResult>(recs.length);
    if (this.#closed) return out.fill(unavailable('store closed'));
    // Each owner's guard as of the view the caller had when it called (see update).
    const asOf = this.#asOf(opts);
    const guards = new Map<string, bigint | null>();
    for (const r of recs) if (!guards.has(r.owner)) guards.set(r.owner, this.#nodeAsOf(r.owner, asOf));
    const chunks: Promise<void>[] = [];
    // A transaction compares each of its sessions' keys and, for the writes that change the owner, each
    // target node's state once: a chunk's sessions and the owners they name fit etcd's limit together.
    for (let from = 0; from < recs.length; ) {
      const owners = new Set<string>();
      let to = from;
      while (to < recs.length) {
        const owner = (recs[to] as StoredSession).owner;
        if (to - from + owners.size + (owners.has(owner) ? 1 : 2) > MAX_TXN_OPS) break;
        owners.add(owner);
        to++;
      }
      const at = from;
      const expects = writes.slice(at, to).map((w) => w.expectVersion);
      chunks.push(
        this.#updateChunk(recs.slice(at, to), expects, guards).then((res) => {
          for (let k = 0; k < res.length; k++) out[at + k] = res[k] as CasResult;
        }),
      );
      from = to;
    }
    await Promise.all(chunks);
    return out;
  }

  async #updateChunk(recs: readonly StoredSession[], expects: readonly bigint[], guards: ReadonlyMap<string, bigint | null>): Promise<CasResult[]> {
    const n = recs.length;
    const res = new Array<CasResult>(n);
    let cur;
    try {
      cur = await this.#readMany(recs.map((r) => r.id));
    } catch (err) {
      return res.fill(unavailable(`etcd update: ${errMessage(err)}`));
    }
    const keys = recs.map((r) => this.#key(r.id));
    const values = recs.map((r) => encodeRecord(r));
    const compared = new Array<bigint>(n).fill(0n);
    /** For a write that changes the owner (when guarded: `guards`): the node whose state guards it (see update). */
    const target = new Array<string | null>(n).fill(null);
    let live: number[] = [];
    for (let k = 0; k < n; k++) {
      const c = cur[k];
      const rec = recs[k] as StoredSession;
      if (c instanceof Error) res[k] = unavailable(`etcd update: ${c.message}`);
      else if (c === null || c === undefined || c.record.version !== expects[k] || !sameLife(c.record.incarnation, rec.incarnation)) res[k] = { ok: false, reason: 'conflict', current: c?.record ?? null };
      else {
        compared[k] = c.modRevision;
        if (c.record.owner !== rec.owner && guards.get(rec.owner) != null) target[k] = rec.owner;
        live.push(k);
      }
    }
    const ok = (k: number): CasResult => ({ ok: true, record: recs[k] as StoredSession });
    const until = Date.now() + this.#timeoutMs;
    let lastErr: unknown;
    let unknown = 0;
    /** Whether an attempt may have been sent and its outcome is unknown (not one the circuit breaker refused). */
    let maybeSent = false;
    while (live.length > 0) {
      const left = until - Date.now();
      if (left <= 0 || this.#closed || unknown >= 3) break;
      const nodes = [...new Set(live.map((k) => target[k]).filter((t): t is string => t !== null))];
      const nodeCompares = nodes.map((node) => this.#nodeCompare(node, guards.get(node) as bigint));
      const req = {
        compare: [...live.map((k): TxnCompare => ({ key: keys[k] as Buffer, target: 'Mod', result: 'Equal', mod_revision: (compared[k] as bigint).toString() })), ...nodeCompares],
        success: live.map((k) => ({ request_put: { key: keys[k] as Buffer, value: Buffer.from(values[k] as string) } })),
        // Every key compared, read back when a compare fails: the sessions', then the nodes'.
        failure: [...live.map((k) => ({ request_range: { key: keys[k] as Buffer } })), ...nodeCompares.map((c) => ({ request_range: { key: c.key as Buffer } }))],
      };
      try {
        const r = await this.#call('txn', (o) => this.#client.kv.txn(req, o), left);
        this.#seen(r.header);
        if (r.succeeded) {
          for (const k of live) res[k] = ok(k);
          return res;
        }
        // A compare failed: the keys whose mod_revision moved are conflicts; a write onto a node whose state
        // was written after its guard is refused as stale (see update); the others go again.
        const movedNodes = new Set<string>();
        nodes.forEach((node, j) => {
          const kv = r.responses[live.length + j]?.response_range?.kvs[0];
          if (kv !== undefined && BigInt(kv.mod_revision) > (guards.get(node) as bigint)) movedNodes.add(node);
        });
        const again: number[] = [];
        live.forEach((k, j) => {
          const kv = r.responses[j]?.response_range?.kvs[0];
          if (kv !== undefined && BigInt(kv.mod_revision) === compared[k]) {
            const node = target[k] as string | null;
            if (node !== null && movedNodes.has(node)) res[k] = staleNode(node, guards.get(node) as bigint, 'not moved there (a drain tries again under the state it sees then)');
            else again.push(k);
            return;
          }
          let current;
          try {
            current = kv === undefined ? null : this.#decodeKv(kv);
          } catch (err) {
            res[k] = unavailable(`etcd update: ${errMessage(err)}`); // a value Anchor did not write: fail closed
            return;
          }
          // After an attempt whose outcome was unknown, the moved key may be that attempt, landed since.
          if (maybeSent && resolveUnknownWrite('update', values[k] as string, compared[k] as bigint, current).kind === 'applied') res[k] = ok(k);
          else res[k] = { ok: false, reason: 'conflict', current: current?.record ?? null };
        });
        if (again.length === live.length) {
          // Every key read back as compared, yet the compare failed: nothing to learn from another round.
          for (const k of live) res[k] = unavailable('etcd update: the transaction failed with every key unchanged');
          return res;
        }
        live = again;
        continue;
      } catch (err) {
        if (lastErr === undefined || !isBrokenCircuitError(err)) lastErr = err; // keep the cause, not the breaker
        if (!isBrokenCircuitError(err)) maybeSent = true;
        unknown++;
      }
      // The outcome is unknown (all or nothing: one transaction): re-read and resolve key by key.
      let reread;
      try {
        reread = await this.#readMany(live.map((k) => (recs[k] as StoredSession).id), this.#timeoutMs);
      } catch (err) {
        for (const k of live) res[k] = maybeSent ? { ...unavailable(`etcd update: outcome unknown (${errMessage(lastErr)}); re-read failed: ${errMessage(err)}`), maybeApplied: true } : unavailable(`etcd update: ${errMessage(lastErr)}`);
        return res;
      }
      const again: number[] = [];
      live.forEach((k, j) => {
        const rr = reread[j];
        if (rr instanceof Error) {
          res[k] = unavailable(`etcd update: ${rr.message}`);
          return;
        }
        const resolved = resolveUnknownWrite('update', values[k] as string, compared[k] as bigint, rr ?? null);
        if (resolved.kind === 'applied') res[k] = ok(k);
        else if (resolved.kind === 'conflict') res[k] = { ok: false, reason: 'conflict', current: resolved.current };
        else again.push(k); // not applied (yet): try again while the deadline lasts
      });
      live = again;
    }
    // Transactions were sent (lastErr): a later one may still land. None (store closed): nothing was sent.
    for (const k of live) res[k] = lastErr === undefined ? unavailable('etcd update: store closed') : maybeSent ? { ...unavailable(`etcd update: ${errMessage(lastErr)}`), maybeApplied: true } : unavailable(`etcd update: ${errMessage(lastErr)}`);
    return res;
  }

  async refresh(id: string, expectVersion: bigint, expiresAt: number, director: string, incarnation: number): Promise<CasResult> {
    if (typeof expectVersion !== 'bigint') throw new TypeError(`expectVersion must be a bigint, got ${typeof expectVersion}`);
    checkExpiry(expiresAt);
    checkIncarnation(incarnation, 'incarnation');
    if (this.#closed) return unavailable('store closed');
    let cur;
    try {
      cur = await this.#read(id);
    } catch (err) {
      return unavailable(`etcd refresh: ${errMessage(err)}`);
    }
    if (cur === null || cur.record.version !== expectVersion || !sameLife(cur.record.incarnation, incarnation)) return { ok: false, reason: 'conflict', current: cur?.record ?? null };
    if (expiresAt <= cur.record.expiresAt) return { ok: true, record: cur.record };
    const rec = freezeRecord({ ...cur.record, expiresAt, director });
    const key = this.#key(id);
    const value = encodeRecord(rec);
    return this.#cas('update', id, value, cur.modRevision, rec, {
      compare: [{ key, target: 'Mod', result: 'Equal', mod_revision: cur.modRevision.toString() }],
      success: [{ request_put: { key, value: Buffer.from(value) } }],
      failure: [{ request_range: { key } }],
    });
  }

  /** On success `record` is the record that was deleted. */
  async delete(id: string, expectVersion: bigint, incarnation: number): Promise<CasResult> {
    if (typeof expectVersion !== 'bigint') throw new TypeError(`expectVersion must be a bigint, got ${typeof expectVersion}`);
    checkIncarnation(incarnation, 'incarnation');
    if (this.#closed) return unavailable('store closed');
    let cur;
    try {
      cur = await this.#read(id);
    } catch (err) {
      return unavailable(`etcd delete: ${errMessage(err)}`);
    }
    if (cur === null || cur.record.version !== expectVersion || !sameLife(cur.record.incarnation, incarnation)) return { ok: false, reason: 'conflict', current: cur?.record ?? null };
    const key = this.#key(id);
    return this.#cas('delete', id, null, cur.modRevision, cur.record, {
      compare: [{ key, target: 'Mod', result: 'Equal', mod_revision: cur.modRevision.toString() }],
      success: [{ request_delete_range: { key } }],
      failure: [{ request_range: { key } }],
    });
  }

  /**
   * Runs one compare-and-swap transaction within the call deadline. An answer settles it; an error
   * (timeout, dropped connection: the outcome is unknown) is resolved by a re-read with its own
   * deadline. A CAS that provably did not apply may be sent again while the first deadline lasts (the
   * compare makes that safe: at most one of the attempts can apply). When the outcome stays unknown the
   * answer is `unavailable`, and the caller fails closed (it acts as if nothing changed, and learns the
   * truth from the watch or its next read).
   */
  async #cas(
    kind: WriteKind,
    id: string,
    value: string | null,
    comparedModRevision: bigint | null,
    okRecord: StoredSession,
    req: Parameters<Etcd3['kv']['txn']>[0],
    /** A write guarded by a node state (#nodeCompare): its answer when the guard alone failed. */
    stale: (() => CasResult) | null = null,
  ): Promise<CasResult> {
    const until = Date.now() + this.#timeoutMs;
    let lastErr: unknown;
    /** Whether an attempt may have been sent and its outcome is unknown (not one the circuit breaker refused). */
    let maybeSent = false;
    for (let attempt = 0; attempt < 3; attempt++) {
      const left = until - Date.now();
      if (left <= 0 || this.#closed) break;
      try {
        const res = await this.#call('txn', (o) => this.#client.kv.txn(req, o), left);
        this.#seen(res.header);
        if (res.succeeded) return { ok: true, record: okRecord };
        const kv = res.responses[0]?.response_range?.kvs[0];
        let current;
        try {
          current = kv === undefined ? null : this.#decodeKv(kv);
        } catch (err) {
          return unavailable(`etcd ${kind}: ${errMessage(err)}`); // a value Anchor did not write: fail closed
        }
        if (maybeSent) {
          // An earlier attempt's outcome was unknown (re-read as not applied): it may have landed since,
          // and be what this attempt's compare failed on. The failure's read resolves it like the re-read.
          const r = resolveUnknownWrite(kind, value, comparedModRevision, current);
          if (r.kind === 'applied') return { ok: true, record: okRecord };
        }
        // Refused with the session's key as compared (absent for a create): the node state's compare failed.
        if (stale !== null && (comparedModRevision === null ? current === null : current?.modRevision === comparedModRevision)) return stale();
        return { ok: false, reason: 'conflict', current: current?.record ?? null };
      } catch (err) {
        if (lastErr === undefined || !isBrokenCircuitError(err)) lastErr = err; // keep the cause, not the breaker
        if (!isBrokenCircuitError(err)) maybeSent = true;
      }
      // The outcome is unknown: re-read (with its own deadline) and resolve.
      let reread;
      try {
        reread = await this.#read(id, this.#timeoutMs);
      } catch (err) {
        if (!maybeSent) return unavailable(`etcd ${kind}: ${errMessage(lastErr)}`);
        return { ...unavailable(`etcd ${kind}: outcome unknown (${errMessage(lastErr)}); re-read failed: ${errMessage(err)}`), maybeApplied: true };
      }
      const r = resolveUnknownWrite(kind, value, comparedModRevision, reread);
      if (r.kind === 'applied') return { ok: true, record: okRecord };
      if (r.kind === 'conflict') return { ok: false, reason: 'conflict', current: r.current };
      // not applied (yet): try again while the first deadline lasts
    }
    // Attempts were sent (lastErr): a later one may still land. None (store closed): nothing was sent.
    if (lastErr === undefined) return unavailable(`etcd ${kind}: store closed`);
    if (!maybeSent) return unavailable(`etcd ${kind}: ${errMessage(lastErr)}`); // every attempt refused by the circuit breaker
    return { ...unavailable(`etcd ${kind}: ${errMessage(lastErr)}`), maybeApplied: true };
  }

  /**
   * Events for writes committed after this call (from any director), in commit order, delivered
   * asynchronously once the watch reports them. After a watch gap that etcd cannot replay (compaction),
   * the store re-lists and delivers the difference as events.
   */
  watch(listener: (ev: StoreEvent) => void): () => void {
    const sub: Subscription = { fn: listener, fromRevision: this.#knownRevision + 1n };
    if (!this.#closed) this.#subs.add(sub);
    return () => {
      this.#subs.delete(sub);
    };
  }

  async follow(snapshot: (records: readonly StoredSession[]) => void, listener: (ev: StoreEvent) => void): Promise<{ ok: true; unsubscribe: () => void } | Unavailable> {
    if (this.#closed) return unavailable('store closed');
    if (!this.#listedOnce) {
      // The feed has not listed yet (etcd was unreachable when the store connected): list now, bounded.
      if (this.#resyncTimer !== null) clearTimeout(this.#resyncTimer);
      this.#resyncTimer = null;
      await this.#startFeed();
      if (!this.#listedOnce) return unavailable(`etcd: the sessions could not be listed: ${this.#feedError ?? 'store closed'}`);
    }
    // A listing being applied (a slice at a time) has told part of what changed to the subscribers it had:
    // the snapshot is taken once it is done, so that nothing it tells is missed.
    while (this.#feedStarting !== null && !this.#closed) await this.#feedStarting;
    if (this.#closed) return unavailable('store closed');
    // One synchronous step: the feed's records (all events up to #feedRevision applied), then the events
    // after them. A transaction's events at #feedRevision that are not applied yet still come (the feed
    // skips only the keys it applied at that revision).
    snapshot([...this.#cache.values()]);
    const sub: Subscription = { fn: listener, fromRevision: this.#feedRevision };
    this.#subs.add(sub);
    return {
      ok: true,
      unsubscribe: () => {
        this.#subs.delete(sub);
      },
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#subs.clear();
    this.#sharedSubs.clear();
    if (this.#leaseTimer !== null) clearTimeout(this.#leaseTimer);
    // Revoke the lease (bounded): what this director wrote with it (its drain records) goes at once.
    const lease = this.#lease;
    this.#lease = null;
    this.#leaseId = null;
    if (lease !== null) await withTimeout(lease.revoke({ deadline: Date.now() + this.#timeoutMs }), this.#timeoutMs).catch(() => lease.release());
    if (this.#resyncTimer !== null) clearTimeout(this.#resyncTimer);
    const w = this.#watcher;
    this.#watcher = null;
    if (w !== null) {
      w.removeAllListeners();
      w.on('error', () => undefined);
      await Promise.race([w.cancel().catch(() => undefined), new Promise((r) => setTimeout(r, this.#timeoutMs).unref())]);
    }
    this.#client.close();
  }

  // ---- watch feed ----

  /** List, then watch from the listing's revision + 1. On failure, tries again shortly. One at a time. */
  #startFeed(): Promise<void> {
    this.#feedStarting ??= this.#listAndWatch().finally(() => {
      this.#feedStarting = null;
    });
    return this.#feedStarting;
  }

  async #listAndWatch(): Promise<void> {
    if (this.#closed) return;
    let listing;
    const shared = new Map<string, { text: string; mod: bigint }>();
    // A listing is decoded and applied in slices with a turn of the event loop between them (inSlices): at
    // about 4 µs a record, a million sessions in one block kept the lease's keepalives waiting long enough
    // to lapse the lease again, and the relisting after a lapse (ResyncGate) came back again and again.
    const stop = (): boolean => this.#closed;
    try {
      const all = await this.#range(this.#prefix);
      const records: { record: StoredSession; created: bigint }[] = [];
      const decoded = await inSlices(
        all.kvs,
        (kv) => {
          const key = kv.key.toString('utf8').slice(this.#prefix.length);
          if (key.startsWith('sessions/')) {
            // A bad value is left out: the feed follows every other session (one bad key made every listing
            // fail, and the director stopped following the store while it still said ready).
            const record = this.#listed(kv, 'watch feed');
            if (record !== null) records.push({ record, created: BigInt(kv.create_revision) });
          } else if (sharedEvent(key, kv.value.toString('utf8')) !== null) shared.set(key, { text: kv.value.toString('utf8'), mod: BigInt(kv.mod_revision) });
        },
        stop,
        this.#slices,
      );
      if (!decoded) return;
      listing = { records, revision: all.revision };
    } catch (err) {
      this.#feedError = errMessage(err);
      this.#report(err, 'watch feed: listing failed, retrying');
      this.#scheduleResync();
      return;
    }
    if (this.#closed) return;
    const fresh = new Map(listing.records.map((r) => [r.record.id, r.record]));
    // Deliver what changed during the gap as events (at the listing's revision) — on the first listing
    // too, to a subscriber that came before it (every record is then news).
    // Nothing but the listing changes the cache meanwhile (no watch runs until it is applied); a store
    // closed between two slices stops here.
    const inSyncTo = this.#feedRevision;
    const gone = await inSlices(
      this.#cache,
      ([id, prev]) => {
        if (!fresh.has(id)) this.#dispatch({ kind: 'delete', id, prev }, listing.revision);
      },
      stop,
      this.#slices,
    );
    if (!gone) return;
    const changed = await inSlices(
      listing.records,
      ({ record: r, created }) => {
        const prev = this.#cache.get(r.id) ?? null;
        if (prev !== null && created > inSyncTo) {
          // Ended and admitted again during the gap (a client reusing its id): the end, then the new
          // session — one put on top of the old record would be an older version, ignored.
          this.#dispatch({ kind: 'delete', id: r.id, prev }, listing.revision);
          this.#dispatch({ kind: 'put', record: r, prev: null }, listing.revision);
        } else if (prev === null || encodeRecord(prev) !== encodeRecord(r)) this.#dispatch({ kind: 'put', record: r, prev }, listing.revision);
      },
      stop,
      this.#slices,
    );
    if (!changed) return;
    // An entry written since (also with the text it had: a write settles this director's own) at its last
    // write's revision (not the listing's: that counts writes to every key, and a node's state delivered at
    // it would let SharedNodeStates.placeGuard pass a write the node's key has had since); a deleted one at
    // the listing's (its delete is not known more closely).
    for (const key of this.#shared.keys()) if (!shared.has(key)) this.#dispatchShared(key, null, listing.revision);
    for (const [key, e] of shared) if (this.#shared.get(key)?.mod !== e.mod) this.#dispatchShared(key, e.text, e.mod);
    this.#cache.clear();
    for (const [id, r] of fresh) this.#cache.set(id, r);
    this.#shared.clear();
    for (const [key, e] of shared) this.#shared.set(key, e);
    this.#feedRevision = listing.revision;
    this.#feedKeys.clear();
    this.#listedOnce = true;
    this.#openWatcher();
  }

  #openWatcher(): void {
    const prefix = this.#keyPrefix;
    const w = this.#client
      .watch()
      .prefix(this.#prefix)
      .withPreviousKV()
      .startRevision((this.#feedRevision + 1n).toString())
      .watcher();
    this.#watcher = w;
    this.#streamDown = false;
    // etcd3 re-opens a dropped watch stream by itself, keeping the watcher: while it is down, the feed
    // follows nothing (`following` false) though no resync runs.
    w.on('disconnected', () => {
      if (this.#watcher === w) this.#streamDown = true;
    });
    w.on('connected', () => {
      if (this.#watcher === w) this.#streamDown = false;
    });
    // etcd3 resumes a reconnected watch from the last response header's revision, which can skip
    // events: resume from the last event this store applied + 1 instead.
    w.on('connecting', (req) => {
      (req as { start_revision?: string | number }).start_revision = (this.#feedRevision + 1n).toString();
    });
    w.on('data', (res) => {
      for (const ev of res.events) {
        const rev = BigInt(ev.kv.mod_revision);
        const fullKey = ev.kv.key.toString('utf8');
        // Already applied (a replay after a reconnect): an older revision, or this key at the latest one.
        if (rev < this.#feedRevision || (rev === this.#feedRevision && this.#feedKeys.has(fullKey))) continue;
        if (rev > this.#feedRevision) {
          this.#feedRevision = rev;
          this.#feedKeys.clear();
        }
        this.#feedKeys.add(fullKey);
        if (rev > this.#knownRevision) this.#knownRevision = rev;
        if (!fullKey.startsWith(prefix)) {
          // A shared entry (node state, drain record), or a key that is not Anchor's: no session event.
          const key = fullKey.slice(this.#prefix.length);
          const text = ev.type === 'Put' ? ev.kv.value.toString('utf8') : null;
          if (sharedEvent(key, text ?? '{}') === null) continue;
          if (text === null) this.#shared.delete(key);
          else this.#shared.set(key, { text, mod: rev });
          this.#dispatchShared(key, text, rev);
          continue;
        }
        const id = fullKey.slice(prefix.length);
        try {
          if (ev.type === 'Put') {
            const record = this.#decodeKv(ev.kv).record;
            const prev = this.#prevOf(ev.prev_kv) ?? null;
            this.#cache.set(id, record);
            this.#dispatch({ kind: 'put', record, prev }, rev);
          } else {
            const prev = this.#prevOf(ev.prev_kv) ?? this.#cache.get(id);
            this.#cache.delete(id);
            if (prev !== undefined) this.#dispatch({ kind: 'delete', id, prev }, rev);
          }
        } catch (err) {
          // The session's record is no longer one Anchor can read: it is not followed any more (a mirror
          // of its last known state would be a guess), and every call on it fails closed.
          this.#report(err, `watch: undecodable value at ${id}: no longer followed`);
          const prev = this.#cache.get(id);
          this.#cache.delete(id);
          if (ev.type === 'Put' && prev !== undefined) this.#dispatch({ kind: 'delete', id, prev }, rev);
        }
      }
    });
    // A watch etcd cancels (e.g. its start revision was compacted) emits `error`; without a listener
    // the process would exit. Resynchronise by listing again.
    w.on('error', (err) => {
      // etcd says why (a compaction past the revision it was to resume from) in fields etcd3 does not pass
      // on: say at least from which revision the feed was following, and that it lists anew.
      this.#report(err, `watch cancelled while following from revision ${this.#feedRevision + 1n} (compacted, if etcd compacted past it); resynchronising by listing again`);
      if (this.#watcher === w) this.#watcher = null;
      w.removeAllListeners('data');
      void w.cancel().catch(() => undefined);
      this.#scheduleResync();
    });
  }

  #scheduleResync(): void {
    if (this.#closed || this.#resyncTimer !== null) return;
    this.#resyncTimer = setTimeout(() => {
      this.#resyncTimer = null;
      void this.#startFeed();
    }, 200);
    this.#resyncTimer.unref();
  }

  #dispatch(ev: StoreEvent, revision: bigint): void {
    for (const sub of [...this.#subs]) {
      if (!this.#subs.has(sub) || revision < sub.fromRevision) continue;
      try {
        sub.fn(ev);
      } catch (err) {
        this.#report(err, 'watch listener threw');
      }
    }
  }

  #dispatchShared(key: string, text: string | null, revision: bigint): void {
    const ev = text === null ? sharedDeleted(key) : sharedEvent(key, text);
    if (ev === null) return;
    for (const fn of [...this.#sharedSubs]) {
      try {
        fn(ev, revision);
      } catch (err) {
        this.#report(err, 'shared watch listener threw');
      }
    }
  }

  #report(err: unknown, context: string): void {
    try {
      this.#onError?.(err, context);
    } catch {
      // the error hook itself failed; nothing more to tell
    }
  }
}

/** `p`, or a rejection once `ms` have passed (the call may still be in flight; the caller assumes nothing). */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    t.unref();
  });
  p.catch(() => undefined); // a late rejection after the timeout is not unhandled
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}
