// The ownership store interface (DESIGN §5): the authority on every session's owner and version.
// Every write is a compare-and-swap on the version the caller expects; outcomes are values, not
// exceptions. Implementations: memory.ts (one director, the default) and etcd (several directors).
import type { SessionState } from '../session/lifecycle.js';

/** A session as the store keeps it. Immutable: a transition writes a new record. */
export interface StoredSession {
  /** 32 lowercase hex characters. */
  readonly id: string;
  readonly owner: string;
  readonly version: bigint;
  readonly state: SessionState;
  /** The bound client transport (`ip:port` / `[ip6]:port`), or null when none is bound. */
  readonly transport: string | null;
  /** The director that wrote this record last (a transition, or an expiry refresh). */
  readonly director: string;
  /** Wall-clock ms after which the session counts as idle-expired (refreshed in coarse steps). */
  readonly expiresAt: number;
  /**
   * Which life of the session id this record is of: chosen by whoever creates the record, a number no
   * earlier life of the id had (the director draws one at random, 31 bits, per admission), and the same on
   * every later write of that life. A write names the life it is for (`update`: its record's; `refresh`,
   * `delete`: an argument) and is a conflict for any other, even at the version it expects: a session
   * ended and admitted anew starts again at version 1, and a write meant for the old one must not land on
   * the new one. 0 for a record written before lives were kept (an older director's): a life not known,
   * which any write may name (see sameLife).
   */
  readonly incarnation: number;
}

export type CasResult =
  | { readonly ok: true; readonly record: StoredSession }
  /** The stored version is not the expected one (or the record exists / is gone); `current` is what is there. */
  | { readonly ok: false; readonly reason: 'conflict'; readonly current: StoredSession | null }
  /**
   * The store could not be reached or did not answer in time; nothing is known to have changed.
   * `maybeApplied`: the write was sent and its outcome is unknown (it may have applied, or apply later);
   * without it, it was never sent. `staleNodeState` (a create, or a write that changes the owner, in a
   * store shared by directors): nothing changed because the new owner's node state changed after the last
   * this director had seen — it picked the node from a view the cluster has left (another director began
   * draining it).
   */
  | { readonly ok: false; readonly reason: 'unavailable'; readonly message: string; readonly maybeApplied?: true; readonly staleNodeState?: true };

/** One write of `updateMany`: the arguments of one `update`. */
export interface UpdateWrite {
  readonly record: StoredSession;
  readonly expectVersion: bigint;
}

export type StoreEvent =
  | { readonly kind: 'put'; readonly record: StoredSession; readonly prev: StoredSession | null }
  | { readonly kind: 'delete'; readonly id: string; readonly prev: StoredSession };

export type GetResult =
  | { readonly ok: true; readonly record: StoredSession | null }
  | { readonly ok: false; readonly reason: 'unavailable'; readonly message: string };

export interface OwnershipStore {
  /** What the store holds for `id` now. */
  get(id: string): Promise<GetResult>;
  /** Every session whose owner is `owner`, in id order. */
  listByOwner(owner: string): Promise<{ ok: true; records: StoredSession[] } | { ok: false; reason: 'unavailable'; message: string }>;
  /**
   * Creates `record` only if no record with its id exists. `record.version` must be 1. A store shared by
   * directors also refuses it (`staleNodeState`) when the state of its owner's node changed after what
   * this director has seen of the shared store: no session lands on a node whose drain began meanwhile.
   */
  create(record: StoredSession): Promise<CasResult>;
  /**
   * Replaces the record with `id = record.id` only if its stored version is `expectVersion` and it is of
   * `record.incarnation`; `record.version` must be `expectVersion + 1` (every transition adds exactly 1).
   * A write that changes the owner is guarded by the new owner's node state as `create` is
   * (`staleNodeState`): no session moves onto a node whose drain began meanwhile.
   */
  update(record: StoredSession, expectVersion: bigint): Promise<CasResult>;
  /**
   * Several `update`s as one store operation (a drain's batch step): each write keeps exactly the
   * semantics of `update` for its own session and gets its own result, in the order given — a write whose
   * compare fails is `conflict` (with what is there) and the others still apply. Not atomic across
   * sessions; every success is a `put` event of its own. The same id twice in one call, or a version that
   * breaks the "+1" rule, is a programming error (a TypeError, before anything is written).
   */
  updateMany(writes: readonly UpdateWrite[]): Promise<CasResult[]>;
  /**
   * Moves a live session's idle expiry later (the coarse TTL refresh of a session with traffic), only if
   * its stored version is `expectVersion` and it is of `incarnation`. Owner, version, state and transport stay; `director` becomes
   * the refreshing director. An expiry not later than the stored one writes nothing and answers ok with
   * the stored record. A success is a `put` event like any other write.
   */
  refresh(id: string, expectVersion: bigint, expiresAt: number, director: string, incarnation: number): Promise<CasResult>;
  /** Deletes the record only if its stored version is `expectVersion` and it is of `incarnation`. */
  delete(id: string, expectVersion: bigint, incarnation: number): Promise<CasResult>;
  /** Change events for every successful write, in commit order. Returns an unsubscribe function. */
  watch(listener: (ev: StoreEvent) => void): () => void;
  /**
   * Whether the store's change feed is followed now (listed, watch open): false while it lists again after
   * a watch gap or cannot list. Absent for a store whose changes cannot be missed (the in-process one).
   */
  readonly following?: boolean;
  /**
   * Lists the store again — what changed since it was last followed is delivered as events, as after a
   * watch gap — and watches from there: `following` is false from the call until that is done. For a
   * director whose lease lapsed (what it holds may be stale by any amount). Absent where nothing can be
   * missed (the in-process store).
   */
  resync?(): void;
  /**
   * Every record the store holds, then every change after them, from one consistent point: the records
   * go to `snapshot` (once, before any event), the changes committed after that point to `listener`, in
   * commit order — nothing in between is missed or delivered twice, as a listing followed by a watch
   * could (a session deleted while the listing was answered came back with it). Waits (bounded by the
   * store's call deadline) for the store to have read its records once. Absent for a store whose listing
   * and watch cannot race (the in-process one: `listByOwner` and `watch` do).
   */
  follow?(snapshot: (records: readonly StoredSession[]) => void, listener: (ev: StoreEvent) => void): Promise<{ ok: true; unsubscribe: () => void } | { ok: false; reason: 'unavailable'; message: string }>;
  close(): Promise<void>;
  /**
   * A store shared by several directors holds a lease per director: the monotonic time (ms, the
   * director's clock) at which the last successful keepalive was sent, or null before the first.
   * Absent for a store that cannot be lost (the in-process one).
   */
  leaseOkAt?(): number | null;
  /** The TTL of that lease. */
  readonly leaseTtlMs?: number;
  /**
   * State shared by the directors of a cluster, beside the sessions: node states (a drain or undrain
   * started on any director is seen by all) and drain records (every director lists every drain).
   * Absent for a store of one director. `maybeApplied` (as for sessions): the write was sent and its
   * answer lost; it may have been committed, or be committed yet.
   */
  putShared?(kind: SharedKind, id: string, value: object, opts?: { withLease?: boolean }): Promise<{ ok: true; revision: bigint } | { ok: false; reason: 'unavailable'; message: string; maybeApplied?: true }>;
  /**
   * Delivers every shared entry the store knows now (synchronously, as `put`s), then every change
   * (from any director, in commit order), each with the revision of the entry's last write — also for
   * the entries known now, and after a gap the store could not replay (the writes in between are then not
   * delivered, only the entry as it is; an entry deleted meanwhile comes at the revision of the listing
   * that found it gone). An entry written `withLease` is deleted when its
   * director's lease ends (the director died or was partitioned away). Returns an unsubscribe function.
   */
  watchShared?(listener: (ev: SharedEvent, revision: bigint) => void): () => void;
  /**
   * Writes the shared entry `kind/id` with this director's lease only if there is none (a claim: one
   * director at a time does what it names; it goes with the lease when its director dies, or lets it
   * lapse). `lease`: the lease it is held with (leaseHeld). `claimed: false` with what is there when
   * another director holds it, and the lease that holds it (null: none). Unavailable without a lease;
   * `maybeApplied` when it was sent and its answer lost (it may be held: release it).
   */
  claimShared?(kind: SharedKind, id: string, value: object): Promise<{ ok: true; claimed: true; lease: string } | { ok: true; claimed: false; holder: Record<string, unknown> | null; lease: string | null } | { ok: false; reason: 'unavailable'; message: string; maybeApplied?: true }>;
  /** Whether `lease` (a claim's) is still this director's lease: false once it lapsed (its claims went with it). */
  leaseHeld?(lease: string): boolean;
  /** Deletes the entry `kind/id` if it is still `value` (this director's claim): true when deleted. */
  releaseShared?(kind: SharedKind, id: string, value: object): Promise<{ ok: true; released: boolean } | { ok: false; reason: 'unavailable'; message: string }>;
  /**
   * For a store that guards the writes placing a session on a node by that node's state (`staleNodeState`):
   * `view(node)` names the revision the node's state must not have been written after, for a node whose
   * state this director holds differently from what the store delivered last (undefined: the delivered
   * state is the director's, and the store's own feed is the guard).
   */
  guardNodeViews?(view: (node: string) => bigint | undefined): void;
}

/**
 * What directors share beside sessions: `nodes/<id>` (admission state), `drains/<id>` (drain records) and
 * `failovers/<node>` (the claim of the director running the automatic failover of a node).
 */
export type SharedKind = 'nodes' | 'drains' | 'failovers';
export const SHARED_KINDS: readonly SharedKind[] = ['nodes', 'drains', 'failovers'];

/** A shared entry written (`value`: the parsed JSON object) or deleted (`value: null`). */
export interface SharedEvent {
  readonly kind: SharedKind;
  readonly id: string;
  readonly value: Record<string, unknown> | null;
}

/** The largest state_version (u64 on the wire). */
export const U64_MAX = (1n << 64n) - 1n;

/** A bigint argument, or a TypeError naming it (a programming error, not a store outcome). */
export function checkBigint(v: unknown, what: string): bigint {
  if (typeof v !== 'bigint') throw new TypeError(`${what} must be a bigint, got ${typeof v}`);
  return v;
}

/** A version within 1..2^64-1, or a TypeError naming it. */
export function checkVersion(v: unknown, what: string): bigint {
  const b = checkBigint(v, what);
  if (b < 1n || b > U64_MAX) throw new TypeError(`${what} must be within 1..2^64-1, got ${b}`);
  return b;
}

/**
 * The writes of an `updateMany`, checked as `update` checks one (frozen copies; a TypeError for a version
 * that breaks the "+1" rule) and for an id named twice. Throws before anything is written.
 */
export function checkUpdates(writes: readonly UpdateWrite[]): StoredSession[] {
  if (!Array.isArray(writes)) throw new TypeError('updateMany: writes must be an array');
  const out = new Array<StoredSession>(writes.length);
  const ids = new Set<string>();
  for (let i = 0; i < writes.length; i++) {
    const w = writes[i] as UpdateWrite;
    const rec = freezeRecord(w.record);
    checkBigint(w.expectVersion, 'expectVersion');
    if (rec.version !== w.expectVersion + 1n) {
      throw new TypeError(`update: record.version must be expectVersion + 1 (${w.expectVersion + 1n}), got ${rec.version}`);
    }
    if (ids.has(rec.id)) throw new TypeError(`updateMany: session ${rec.id} is written twice in one call`);
    ids.add(rec.id);
    out[i] = rec;
  }
  return out;
}

/** An expiry (wall-clock ms), or a TypeError naming it. */
export function checkExpiry(v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new TypeError(`expiresAt must be a finite number of ms, got ${String(v)}`);
  return v;
}

/**
 * Every store keeps frozen copies holding exactly the StoredSession fields (all primitives, so freezing
 * is deep): callers can never mutate what a store holds. Throws a TypeError on a malformed record.
 */
export function freezeRecord(r: StoredSession): StoredSession {
  if (r === null || typeof r !== 'object') throw new TypeError('record must be an object');
  if (typeof r.id !== 'string' || r.id.length === 0) throw new TypeError('record.id must be a non-empty string');
  if (typeof r.owner !== 'string') throw new TypeError('record.owner must be a string');
  checkVersion(r.version, 'record.version');
  checkIncarnation(r.incarnation, 'record.incarnation');
  return Object.freeze({
    id: r.id,
    owner: r.owner,
    version: r.version,
    state: r.state,
    transport: r.transport,
    director: r.director,
    expiresAt: r.expiresAt,
    incarnation: r.incarnation,
  });
}

/**
 * Whether a write naming life `named` may land on a record of life `stored`: the same life — or either is
 * 0, a life not known (a record written by a director from before lives were kept, which drops the field
 * when it rewrites a record: a cluster rolled one director at a time mixes them for a while).
 */
export function sameLife(stored: number, named: number): boolean {
  return stored === named || stored === 0 || named === 0;
}

/** An incarnation (a non-negative safe integer), or a TypeError naming it. */
export function checkIncarnation(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new TypeError(`${what} must be a non-negative safe integer, got ${String(v)}`);
  return v;
}
