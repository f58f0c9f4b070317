// Runs ownership transitions against the store: admission, reattach, freeze → transfer → revoke →
// resume (migration), termination, and REVOKE acknowledgement tracking. Every step is a CAS on the
// version the core planned; a lost or unavailable CAS changes nothing (fail closed) and is a
// SECURITY_EVENT. It never decides which session goes where (the core, the drain plan and the ring do).
import { randomInt } from 'node:crypto';
import Denque from 'denque';
import { transportKey } from '../codec/ip.js';
import { RejectReason, type Transport } from '../codec/types.js';
import { StoreUnavailableError } from '../errors.js';
import { FenceState } from '../store/fence.js';
import type { AuditSink } from '../obs/audit.js';
import { type DirectorStats, rejectLabel } from '../obs/stats.js';
import { idBytesInto } from '../session/id-index.js';
import { LifecycleEvent, SessionState } from '../session/lifecycle.js';
import type { Candidate, RecordWalk, SessionRecord } from '../session/table.js';
import { sameLife, type CasResult, type OwnershipStore, type StoreEvent, type StoredSession, type UpdateWrite } from '../store/store.js';
import type { Clock } from '../util/clock.js';
import type { DirectorCore, Forward, Planned, PlanRefusal, TransitionNote, ClientOutcome } from './core.js';
import { storedTransport, type ParsedTransport } from './stored-transport.js';
import { MAX_TIMER_MS } from '../util/timer.js';

/** What the ownership service needs from the data path (consumer-defined, narrow). */
export interface DataPath {
  forward(f: Forward): void;
  /** Answers a client outcome (REJECT) for a session whose admission just failed. */
  /** `countAs`: the label the REJECT is counted under when it is not its reason's (a refusal that is not an outage). */
  answer(outcome: ClientOutcome, rec: SessionRecord, countAs?: string): void;
  /** REVOKE(version) to `node` for `rec`, behind a PROXY v2 header naming that node. */
  revoke(rec: SessionRecord, node: string, version: bigint): void;
  /** REJECT to an unbound transport (within its 3× budget). */
  rejectCandidate(rec: SessionRecord, c: Candidate, reason: RejectReason): void;
  /** Node replies held while a reattach was decided, to the session's current transport. */
  relayHeld(rec: SessionRecord, replies: Buffer[]): void;
  /**
   * Runs `fn` and sends the datagrams it sent together at its end (a batch step's REVOKEs and replays:
   * a few system calls for the batch rather than one per datagram). Optional: without it each goes at once.
   */
  sendTogether?(fn: () => void): void;
}

const RESUME_RETRIES = 5;
/**
 * How far (ms) the expiry of this director's own write may come back later than written, through the wall
 * clock (Date.now() is whole milliseconds): within it, the watch's copy of our own write has nothing new.
 */
const OWN_ECHO_SLACK_MS = 2;
/** REVOKEs resent per turn of the event loop, at most. */
const REVOKE_BURST = 256;
const RESUME_BACKOFF_MS = 100;
/** Default `unknownWriteBoundMs`. */
const UNKNOWN_WRITE_BOUND_MS = 30_000;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

export interface OwnershipOptions {
  readonly directorId: string;
  /** After a freeze, how long the old owner's replies in flight may still reach the client (ms). */
  readonly quiesceMs: number;
  /** How long the first REVOKE waits for its acknowledgement (ms); each resend waits twice as long as the one before. */
  readonly revokeTimeoutMs: number;
  readonly revokeRetries: number;
  /**
   * The store is shared by several directors: refresh the store's expiry of the sessions served here in
   * coarse steps (about 1.5 writes per idle TTL while a session has traffic), so that every director
   * expires a session by the same clock. Needs `idleTtlMs`.
   */
  readonly refreshExpiry?: boolean;
  readonly idleTtlMs?: number;
  /** Refresh writes in flight at once. */
  readonly refreshConcurrency?: number;
  /**
   * How long a transfer whose answer was lost (it may have landed) still counts as in flight to its
   * target (`transfersInFlightTo`) when nothing shows which way it went: about as long as the store
   * could take to apply a write it was sent (default 30 s).
   */
  readonly unknownWriteBoundMs?: number;
  /** Draws a new session's incarnation (StoredSession.incarnation); default: 31 random bits, never 0 (a small integer in V8: no heap number per session). */
  readonly newIncarnation?: () => number;
}

export interface OwnershipDeps {
  readonly core: DirectorCore;
  readonly store: OwnershipStore;
  readonly audit: AuditSink;
  readonly stats: DirectorStats;
  readonly clock: Clock;
  /** Whether a node may receive sessions now (active and healthy). */
  readonly eligible: (nodeId: string) => boolean;
  readonly knownNode: (nodeId: string) => boolean;
  /**
   * Whether a session's server state can move between nodes. Sessions that cannot (transparent
   * forwarding, protocols like OpenVPN) are ended by a drain or failover instead of moved: the client's
   * own retry lands on a remaining node.
   */
  readonly movable?: (rec: SessionRecord) => boolean;
  /** The self-fence: ownership changes only while it is 'ok'. */
  readonly fence?: () => FenceState;
}

export type StepFailure = PlanRefusal | 'conflict' | 'unavailable' | 'no_target' | 'not_found' | 'bad_target' | 'unmovable' | 'cancelled';

export interface StepOptions {
  readonly cause: string;
  readonly expectVersion?: bigint;
  readonly toOwner?: string;
  readonly bind?: Candidate;
  readonly actor: string;
}

/** `maybeApplied` on a failure: the write was sent and its answer lost; it may have landed (or land later). */
export type StepResult = { readonly ok: true; readonly note: TransitionNote } | { readonly ok: false; readonly reason: StepFailure; readonly message: string; readonly maybeApplied?: true };

export interface MigrateRequest {
  readonly to?: string;
  readonly expectVersion?: bigint;
  /** `migrate` (an operator), `drain`, `failover`, … — recorded in the audit. */
  readonly cause: string;
  readonly actor: string;
  /**
   * Whether the migration is still wanted, asked before the transfer: a drain undrained or cancelled
   * meanwhile answers false, and its frozen sessions are thawed in place (`cancelled`) instead of moved.
   */
  readonly proceed?: () => boolean;
}

export type MigrateResult =
  | { readonly ok: true; readonly session: string; readonly from: string; readonly to: string; readonly version: bigint; readonly replayed: number }
  /**
   * `transferred`: the ownership moved (the transfer committed, the REVOKE went out) but the resume did
   * not: the session is on its new owner, frozen until the stale-freeze sweep resumes it.
   */
  | {
      readonly ok: false;
      readonly session: string;
      readonly reason: StepFailure;
      readonly message: string;
      readonly transferred?: true;
      /** The request named a target that cannot be one (no such node, or the session's own owner): the asker's mistake, not the fleet's. */
      readonly invalidTarget?: true;
    };

/**
 * The `result` label of anchor_migrations_total for `r`: ok, `transferred` (on its new owner, its resume
 * not written yet: the stale-freeze sweep resumes it), `invalid_target` (the request named no node, or the
 * session's own owner), or the failure reason.
 */
export function migrationResultLabel(r: MigrateResult): string {
  return r.ok ? 'ok' : r.transferred === true ? 'transferred' : r.invalidTarget === true ? 'invalid_target' : r.reason;
}

/** One session of a migration batch: where it is in the batch, where it goes. */
interface Move {
  readonly i: number;
  readonly rec: SessionRecord;
  readonly from: string;
  /** Picked when the migration starts; picked again before the transfer if it stopped taking sessions. */
  to: string;
  /** When a step of this migration last left it frozen (monotonic ms), NaN before (see #frozenAt). */
  frozenSince: number;
  /** `rec.transportKey` as made for `keyOf` (its transport then): every step writes it (see #moveKey). */
  keyOf: Transport | null;
  key: string;
}

/**
 * Whether the stored record `r` is of another life of the id than the session held here: one created
 * anew after the held one ended (or, while the held one's admission is in flight, another director's).
 */
function otherLife(held: SessionRecord, r: StoredSession): boolean {
  return !sameLife(held.incarnation, r.incarnation);
}

/** A transfer whose answer was lost: it may have landed, or land later (see Ownership's #unsureTransfers). */
interface UnsureTransfer {
  readonly from: string;
  readonly to: string;
  readonly toVersion: bigint;
  readonly until: number;
  /** Its migration's cause and actor: what its audit line says if it is seen landing later (#landedLate). */
  readonly cause: string;
  readonly actor: string;
}

/** The store's delete of a session ended here: of that life of the id, from that version. */
interface EndDelete {
  readonly id: string;
  readonly incarnation: number;
  readonly fromVersion: bigint;
  readonly toVersion: bigint;
  readonly attempts: number;
}

interface PendingRevoke {
  readonly rec: SessionRecord;
  readonly node: string;
  readonly version: bigint;
  /** Its key in #revokes: the session id, or — while another REVOKE of the session is pending — `id/version`. */
  readonly key: string;
  /** How often it was resent: the level of #revokes that holds it. */
  attempts: number;
  /** When to resend (or give up), monotonic ms. */
  due: number;
}

/**
 * The label an admission refused for a node state written meanwhile (a drain or undrain on any director)
 * is counted under — in admissions_failed and rejects_sent — apart from store outages, whose alerts it
 * must not fire: its REJECT is STORE_UNAVAILABLE all the same.
 */
export const NODE_STATE_CHANGED = 'node_state_changed';

export class Ownership {
  readonly #o: OwnershipOptions;
  readonly #d: OwnershipDeps;
  #path: DataPath | null = null;
  /**
   * Unacknowledged REVOKEs by how often they were resent (index = attempts), each map in due order: all
   * of one level wait the same time (revokeTimeoutMs × 2^attempts), so an entry moved up a level goes to
   * that level's end.
   */
  readonly #revokes: Map<string, PendingRevoke>[] = [];
  /** By node: REVOKEs pending now, and those given up unacknowledged since start (for drain records). */
  readonly #revokesPendingTo = new Map<string, number>();
  readonly #revokesUnackedTo = new Map<string, number>();
  /**
   * Pending REVOKEs keyed `id/version` (their session had a REVOKE pending already: it moved again before
   * the node acknowledged). Most are keyed by the session id alone, which needs no string made per REVOKE
   * nor per acknowledgement.
   */
  #versionKeyed = 0;
  #revokeTimer: NodeJS.Timeout | null = null;
  /** When the armed #revokeTimer fires (monotonic ms). */
  #revokeTimerAt = 0;
  /** Quiesce waits ending at the same instant share one timer (a drain freezes thousands at once). */
  readonly #quiesces = new Map<number, Promise<void>>();
  readonly #observers: ((rec: SessionRecord, note: TransitionNote) => void)[] = [];
  /** Sessions whose expiry refresh is in flight. */
  readonly #refreshing = new Set<string>();
  #expiring = 0;
  #endDeletes = 0;
  readonly #endQueue = new Denque<EndDelete>();
  /** Deletes of ended sessions the store could not take, by session, with when to try again (monotonic ms). */
  readonly #endRetries = new Map<string, EndDelete & { readonly due: number }>();
  #endRetryTimer: NodeJS.Timeout | null = null;
  /** When #endRetryTimer fires (monotonic ms). */
  #endRetryAt = 0;
  #closed = false;
  /** Resolves `settleEnds`' wait once no end delete is in flight or waiting. */
  #onEndsSettled: (() => void) | null = null;
  /** refreshExpiries' walk over the table, and when it last ran. */
  #refreshWalk: RecordWalk | null = null;
  #refreshAt: number | null = null;
  /**
   * Our own writes seen by the watch while a transition of that session was in flight (null: a delete).
   * A write whose answer never came may still have landed: once the transition settles, what the store
   * says wins over what the director assumed.
   */
  readonly #late = new Map<string, StoredSession | null>();
  /**
   * While the synchronous part of a store call writing transitions in flight runs (#startWrite): the
   * watch's copies of the writes it commits meanwhile (a store that tells its watch before its call
   * returns, as the in-process one does), kept aside rather than in #late; the plans that call writes, in
   * its order; how far the copies told so far came in them (a store tells its writes in the order given).
   */
  #echoes: StoredSession[] | null = null;
  #writing: readonly Planned[] = [];
  #echoed = 0;
  /** Sessions with a migration running here (frozen on purpose, e.g. during the quiesce). */
  readonly #migrating = new Set<string>();
  /** A migration's ring pick reads the session's id bytes from here (decoded for that pick, not kept). */
  readonly #pickId = new Uint8Array(16);
  /**
   * When each frozen session was last seen frozen (monotonic ms): stale freezes are thawed. A session a
   * migration running here freezes and transfers is entered when that migration ends, and only if it
   * left it frozen (migrateBatch): a drain moves thousands a second, each frozen for a moment.
   */
  readonly #frozenAt = new Map<string, number>();
  /** Per target node, the sessions whose transfer to it is being written (transfersInFlightTo). */
  readonly #transfersTo = new Map<string, number>();
  /**
   * Transfers whose answer was lost (they may have landed, or land later), by session: still counted in
   * transfersInFlightTo until the session is known at or past the transfer's version here (landed, thawed
   * or overtaken) or `unknownWriteBoundMs` has passed (#pruneUnsure; also from thawStale, so that none is
   * kept when no drain asks). Rare: empty but for a store's outage.
   */
  readonly #unsureTransfers = new Map<string, UnsureTransfer>();
  /** Migration batches waiting for their turn of the event loop (`#turn`). */
  readonly #turnWaiters: (() => void)[] = [];
  #turnScheduled = false;
  #parseTransport: ((key: string) => ParsedTransport | null) | null = null;
  /** By owner node: sessions of other directors the table could not hold (see notHeldOn). */
  readonly #notHeldBy = new Map<string, number>();

  constructor(opts: OwnershipOptions, deps: OwnershipDeps) {
    this.#o = opts;
    this.#d = deps;
  }

  attach(path: DataPath): void {
    this.#path = path;
  }

  get pendingRevokes(): number {
    let n = 0;
    for (const level of this.#revokes) n += level.size;
    return n;
  }

  /** The pending REVOKE keyed `key` (its level is `attempts`). */
  #pendingRevoke(key: string): PendingRevoke | undefined {
    for (const level of this.#revokes) {
      const p = level.get(key);
      if (p !== undefined) return p;
    }
    return undefined;
  }

  #revokeLevel(attempts: number): Map<string, PendingRevoke> {
    while (this.#revokes.length <= attempts) this.#revokes.push(new Map());
    return this.#revokes[attempts] as Map<string, PendingRevoke>;
  }

  /** The record a write of `rec` stores; `expiry`: its #expiryToStore (monotonic). */
  #stored(rec: SessionRecord, p: { version: bigint; state: string; owner: string; transport: string | null }, expiry: number): StoredSession {
    return {
      id: rec.id,
      owner: p.owner,
      version: p.version,
      state: p.state as StoredSession['state'],
      transport: p.transport,
      director: this.#o.directorId,
      expiresAt: this.#d.clock.toWall(expiry),
      incarnation: rec.incarnation,
    };
  }

  /** The expiry a write of `rec` carries (monotonic): our own deadline where we serve it, never earlier than the store's. */
  #expiryToStore(rec: SessionRecord): number {
    return rec.servedHere ? Math.max(rec.expiresAt, rec.storeExpiresAt) : rec.storeExpiresAt;
  }

  /** A wall-clock expiry read from the store, on this director's monotonic clock. */
  #monoExpiry(wall: number): number {
    return wall - this.#d.clock.wall() + this.#d.clock.now();
  }

  /** Called after every committed transition and every end (the TCP front closes or pauses connections). */
  onTransition(fn: (rec: SessionRecord, note: TransitionNote) => void): void {
    this.#observers.push(fn);
  }

  /** `migrating`: a step of a migration running here, which records the freeze itself (see #frozenAt). */
  #notify(rec: SessionRecord, note: TransitionNote, migrating = false): void {
    if (rec.state !== SessionState.FROZEN) this.#frozenAt.delete(rec.id);
    else if (!migrating) this.#frozenAt.set(rec.id, this.#d.clock.now());
    for (const fn of this.#observers) fn(rec, note);
  }

  /**
   * A new session: CAS-create it, then forward what was held (the HELLO first), or answer a REJECT
   * (`answer: false`: the caller answers, as the TCP front does). Resolves with the outcome.
   */
  async admit(rec: SessionRecord, opts: { answer?: boolean } = {}): Promise<{ ok: true } | { ok: false; reason: RejectReason; countAs?: string }> {
    const written = this.#expiryToStore(rec);
    // A life of its own (StoredSession.incarnation): no earlier session of this id had it.
    if (rec.incarnation === 0) rec.incarnation = this.#o.newIncarnation?.() ?? randomInt(1, 2 ** 31);
    const r = await this.#d.store.create(this.#stored(rec, { version: rec.version, state: rec.state, owner: rec.owner, transport: storedTransport(rec.transportKey, rec.listener) }, written));
    const core = this.#d.core;
    const now = this.#d.clock.now();
    if (r.ok) {
      rec.storeExpiresAt = written;
      const { note, forwards } = core.admitted(rec, now);
      this.#audit(rec, note, this.#o.directorId);
      this.#d.stats.admissions++;
      for (const f of forwards) this.#forward(f);
      // The watch's copy of this very create, told while it was in flight, has nothing to add (#applyRecord
      // knows this director's own writes).
      this.#settleLate(rec.id);
      this.#endIfClosed(rec);
      return { ok: true };
    }
    const reason = r.reason === 'unavailable' ? RejectReason.STORE_UNAVAILABLE : r.current?.state === SessionState.TERMINATED ? RejectReason.SESSION_TERMINATED : RejectReason.OWNERSHIP_CONFLICT;
    // A node state written meanwhile (a drain or undrain, on any director) after this director picked the
    // node: neither an attack nor an outage, so no SECURITY_EVENT, and counted apart (countAs). The client's
    // next HELLO is admitted under the state this director sees then.
    const countAs = r.reason === 'unavailable' && r.staleNodeState === true ? NODE_STATE_CHANGED : undefined;
    if (countAs !== undefined) this.#d.stats.admissionsStaleNodeState++;
    else this.#security(rec.id, r.reason === 'unavailable' ? 'admit_store_unavailable' : 'admit_conflict', { message: r.reason === 'unavailable' ? r.message : 'session exists in the store' });
    this.#d.stats.heldDiscarded += Math.max(0, (rec.held?.length ?? 0) - 1);
    this.#d.stats.admissionsFailed.inc(countAs ?? rejectLabel(reason));
    const answer = core.admissionFailed(rec, reason, now);
    if (opts.answer !== false) this.#path?.answer(answer, rec, countAs);
    this.#settleLate(rec.id);
    return countAs === undefined ? { ok: false, reason } : { ok: false, reason, countAs };
  }

  /** The owner answered BIND for a jump candidate: CAS the binding to it (version + 1). */
  async reattach(rec: SessionRecord, c: Candidate, bindVersion: bigint): Promise<StepResult> {
    const r = await this.step(rec, LifecycleEvent.REATTACH, { cause: 'bind', expectVersion: bindVersion, bind: c, actor: rec.owner });
    this.#relayHeldReplies(rec);
    // Packets from the bound transport held while the CAS was in flight go on now (step releases them on abort).
    if (r.ok) this.#forwardAll(this.#d.core.release(rec, this.#d.clock.now(), false));
    if (!r.ok && (r.reason === 'unavailable' || r.reason === 'conflict')) {
      this.#path?.rejectCandidate(rec, c, r.reason === 'unavailable' ? RejectReason.STORE_UNAVAILABLE : RejectReason.OWNERSHIP_CONFLICT);
    }
    return r;
  }

  /** One planned transition: plan → CAS → commit, or abort and say why. */
  async step(rec: SessionRecord, event: LifecycleEvent, opts: StepOptions): Promise<StepResult> {
    const p = this.#plan(rec, event, opts);
    if (!('session' in p)) return p;
    const written = this.#expiryToStore(rec);
    const { answer, echoes } = this.#write(p, written);
    const r = await answer;
    if (echoes.length > 0) this.#lateEchoes(echoes, [p], [r]);
    return this.#settle(p, r, opts.actor, written);
  }

  /** The plan of one transition, or why it may not start (the fence, or the core's refusal). */
  #plan(rec: SessionRecord, event: LifecycleEvent, opts: StepOptions): Planned | StepResult {
    if (this.#d.fence !== undefined && this.#d.fence() !== FenceState.OK) {
      // Near or past the lease deadline: no transition may start (fail closed), nothing changes.
      this.#security(rec.id, `${event}_refused`, { reason: 'fenced', version: rec.version.toString() });
      return { ok: false, reason: 'unavailable', message: 'the store lease is near its deadline: ownership changes are refused' };
    }
    const p = this.#d.core.plan(rec, event, opts);
    if (typeof p === 'string') return { ok: false, reason: p, message: refusalText(p, rec) };
    return p;
  }

  /** Starts the CAS of a planned transition (see #startWrite); `written`: the expiry it carries. */
  #write(p: Planned, written: number): { answer: Promise<CasResult>; echoes: StoredSession[] } {
    const w = this.#update(p, written);
    return this.#startWrite([p], () => this.#d.store.update(w.record, w.expectVersion));
  }

  /**
   * Starts the store call `write` of the transitions `plans`: its answer, and the watch's copies of its
   * writes (#echoes).
   */
  #startWrite<T>(plans: readonly Planned[], write: () => Promise<T>): { answer: Promise<T>; echoes: StoredSession[] } {
    // As they were before (a call made from a watch listener runs inside another).
    const outerEchoes = this.#echoes;
    const outerWriting = this.#writing;
    const outerEchoed = this.#echoed;
    const echoes: StoredSession[] = [];
    this.#echoes = echoes;
    this.#writing = plans;
    this.#echoed = 0;
    try {
      return { answer: write(), echoes };
    } finally {
      this.#echoes = outerEchoes;
      this.#writing = outerWriting;
      this.#echoed = outerEchoed;
    }
  }

  /**
   * Whether `r`, told by the watch during #startWrite, is the write of one of that call's plans (at its
   * new version, by this director): found from where the previous copy was, with no look-up of the
   * session (the store tells its writes in the order given).
   */
  #isEcho(r: StoredSession): boolean {
    const plans = this.#writing;
    for (let j = this.#echoed; j < plans.length; j++) {
      const p = plans[j] as Planned;
      if (p.session.id !== r.id) continue;
      if (r.version !== p.toVersion || r.director !== this.#o.directorId) return false;
      this.#echoed = j + 1;
      return true;
    }
    return false;
  }

  /**
   * The watch's copies of writes a store call committed (`echoes`), now that its answers are in: where
   * the answer is ok, the copy has nothing to add (#settle would drop it); where it is not (the answer
   * was lost, though the write landed), the copy goes to #late, as the watch's copy of any write does
   * while its transition is in flight — unless the watch said something since, which is newer.
   */
  #lateEchoes(echoes: readonly StoredSession[], plans: readonly Planned[], answers: readonly CasResult[]): void {
    let failed: Set<string> | null = null;
    for (let k = 0; k < answers.length; k++) if (!(answers[k] as CasResult).ok) (failed ??= new Set()).add((plans[k] as Planned).session.id);
    if (failed === null) return;
    for (const e of echoes) if (failed.has(e.id) && !this.#late.has(e.id)) this.#late.set(e.id, e);
  }

  /**
   * The store write of a planned transition: its record at the new version, on the version it expects.
   * `key`: the session's stored transport text (#moveKey) if the caller has it.
   */
  #update(p: Planned, expiry: number, key?: string): UpdateWrite {
    const rec = p.session;
    return { record: this.#stored(rec, { version: p.toVersion, state: p.toState, owner: p.toOwner, transport: p.bind !== null ? storedTransport(p.bind.key, p.bind.listener) : (key ?? storedTransport(rec.transportKey, rec.listener)) }, expiry), expectVersion: p.fromVersion };
  }

  /**
   * The stored transport text of a migrating session: made once for the three writes of its migration
   * rather than per write (a string each time), again only if its transport changed meanwhile (a
   * Transport's fields are readonly: another transport is another object, and a reattach that changes
   * the listener brings another transport).
   */
  #moveKey(m: Move): string {
    const t = m.rec.transport;
    if (m.keyOf !== t) {
      m.key = storedTransport(m.rec.transportKey, m.rec.listener);
      m.keyOf = t;
    }
    return m.key;
  }

  /**
   * What the store answered: commit (audited, observers told), or abort and release what was held.
   * `written` is the expiry the write carried (monotonic ms); `migrating`: a step of migrateBatch.
   */
  #settle(p: Planned, r: CasResult, actor: string, written: number, migrating = false): StepResult {
    const core = this.#d.core;
    const rec = p.session;
    if (r.ok && rec.version >= p.toVersion) {
      // Our write landed, but another director's write on top of it reached us first (the watch before
      // our answer): the record already shows what came after, and committing ours now would take it back
      // to an older version and state. The transition happened, so it is audited; the record stays.
      core.abort(p);
      const note: TransitionNote = { event: p.event, cause: p.cause, fromVersion: p.fromVersion, toVersion: p.toVersion, fromOwner: p.fromOwner, toOwner: p.toOwner };
      this.#audit(rec, note, actor);
      this.#settleLate(rec.id);
      if (rec.state === SessionState.ATTACHED && rec.pending === null && rec.closedBy === null) this.#forwardAll(core.release(rec, this.#d.clock.now(), false));
      this.#endIfClosed(rec);
      return { ok: true, note };
    }
    if (r.ok) {
      if (written > rec.storeExpiresAt) rec.storeExpiresAt = written;
      const note = core.commit(p, this.#d.clock.now());
      this.#audit(rec, note, actor);
      this.#notify(rec, note, migrating);
      // The watch's copy of this very write (the version just committed, written by this director) has
      // nothing to add: it is dropped rather than applied.
      if (this.#late.size > 0) {
        const late = this.#late.get(rec.id);
        if (late !== undefined && late !== null && late.version === rec.version && late.director === this.#o.directorId) this.#late.delete(rec.id);
        else this.#settleLate(rec.id);
      }
      this.#endIfClosed(rec);
      return { ok: true, note };
    }
    if (this.#late.size > 0) {
      // The answer was lost (or told otherwise) but the watch has this very write, by this director at
      // the planned version, owner and state: it landed. It is committed as written — audited, observers
      // told, and for a transfer the REVOKE sent by the caller — not applied as someone's late write.
      const late = this.#late.get(rec.id);
      if (late !== undefined && late !== null && late.version === p.toVersion && late.director === this.#o.directorId && late.owner === p.toOwner && late.state === p.toState) {
        return this.#settle(p, { ok: true, record: late }, actor, written, migrating);
      }
    }
    core.abort(p);
    this.#settleLate(rec.id);
    // A move onto a node whose state changed after this director picked it (another director began
    // draining it): neither an attack nor an outage — counted, not a SECURITY_EVENT. The caller thaws the
    // session in place and a drain tries it again under the state it sees then.
    if (r.reason === 'unavailable' && r.staleNodeState === true) this.#d.stats.transfersStaleNodeState++;
    else this.#abortEvent(p, r.reason, r.reason === 'unavailable' ? r.message : `stored version is ${r.current?.version ?? 'absent'}`);
    // Nothing changed: packets held while the CAS was in flight go on as if it had never been tried
    // (a session still frozen keeps them for its resume).
    if (rec.state === SessionState.ATTACHED && rec.closedBy === null) this.#forwardAll(core.release(rec, this.#d.clock.now(), false));
    this.#endIfClosed(rec);
    if (r.reason === 'unavailable') return r.maybeApplied === true ? { ok: false, reason: r.reason, message: `store unavailable: ${r.message}`, maybeApplied: true } : { ok: false, reason: r.reason, message: `store unavailable: ${r.message}` };
    return { ok: false, reason: r.reason, message: `lost the compare-and-swap (stored version ${r.current?.version ?? 'absent'}, expected ${p.fromVersion})` };
  }

  /**
   * One transition for the session of each of `moves` (the same event): planned together, written to the
   * store as one operation (`updateMany`: a CAS per session, with a result per session), settled one by
   * one. A drain moves thousands of sessions a second this way. A step of migrateBatch.
   */
  async #stepAll(moves: readonly Move[], event: LifecycleEvent, opts: StepOptions | ((m: Move) => StepOptions)): Promise<StepResult[]> {
    const n = moves.length;
    const out: StepResult[] = new Array<StepResult>(n);
    // Side by side, one entry per session planned (no object per session): where it is in `moves`, its
    // plan, its actor, the expiry its write carries, the write. Sized for all (trimmed below): not grown push by push.
    const at = new Array<number>(n);
    const plans = new Array<Planned>(n);
    const actors = new Array<string>(n);
    const written = new Array<number>(n);
    const writes = new Array<UpdateWrite>(n);
    let c = 0;
    for (let i = 0; i < n; i++) {
      const m = moves[i] as Move;
      const rec = m.rec;
      const o = typeof opts === 'function' ? opts(m) : opts;
      const p = this.#plan(rec, event, o);
      if (!('session' in p)) {
        out[i] = p;
        continue;
      }
      at[c] = i;
      plans[c] = p;
      actors[c] = o.actor;
      const expiry = this.#expiryToStore(rec);
      written[c] = expiry;
      writes[c++] = this.#update(p, expiry, this.#moveKey(m));
    }
    if (c === 0) return out;
    if (c < n) {
      plans.length = c;
      writes.length = c;
    }
    const { answer, echoes } = this.#startWrite(plans, () => this.#d.store.updateMany(writes));
    const answers = await answer;
    if (echoes.length > 0) this.#lateEchoes(echoes, plans, answers);
    for (let k = 0; k < plans.length; k++) out[at[k] as number] = this.#settle(plans[k] as Planned, answers[k] as CasResult, actors[k] as string, written[k] as number, true);
    return out;
  }

  /** freeze → transfer (owner and version in one CAS) → REVOKE to the old owner → resume → replay. */
  async migrate(id: string, req: MigrateRequest): Promise<MigrateResult> {
    return (await this.migrateBatch([id], req))[0] as MigrateResult;
  }

  /**
   * Moves each of `ids` off its owner (to `req.to`, or to its next node on the ring): freeze → transfer
   * (owner and version in one CAS) → REVOKE to the old owner → resume → replay, each step taken by the
   * whole batch at once — one wait for the store per step and one quiesce for all, instead of a chain of
   * waits per session (a drain moves thousands a second). Every session still goes through every step
   * with its own CAS and audit line; one that fails a step stops there as `migrate` would. Results in
   * the order of `ids`.
   */
  async migrateBatch(ids: readonly string[], req: MigrateRequest): Promise<MigrateResult[]> {
    const out = new Array<MigrateResult>(ids.length);
    // Batches (a drain runs several at once) take their steps one per turn of the event loop, with the
    // sockets read in between, rather than all at once when a shared quiesce ends.
    const yieldTurns = ids.length > 1;
    // The first step too waits for its turn: a drain tick launches many batches at once, and their
    // freezes one after another in one macrotask would keep the sockets unread for all of them.
    if (yieldTurns) await this.#turn();
    if (req.proceed !== undefined && !req.proceed()) {
      // Stopped (undrained, cancelled) before this batch's first step: nothing of it was touched.
      return ids.map((id) => ({ ok: false, session: id, reason: 'cancelled', message: 'the migration was cancelled before it started (the session stays with its owner)' }));
    }
    let moving: Move[] = [];
    const mine: Move[] = [];
    // The node a session leaves, as the set the ring excludes: one set per node, not one per session.
    const leaving = new Map<string, ReadonlySet<string>>();
    for (const [i, id] of ids.entries()) {
      const m = this.#prepareMove(i, id, req, leaving);
      if ('ok' in m) {
        out[i] = m;
        continue;
      }
      const migrating = this.#migrating.size;
      this.#migrating.add(id); // one look-up: added unless it was there already
      if (this.#migrating.size === migrating) out[i] = { ok: false, session: id, reason: 'busy', message: `session ${id} is being migrated already` };
      else {
        mine.push(m);
        moving.push(m);
      }
    }
    try {
      const fail = (m: Move, step: string, r: StepResult): void => {
        if (!r.ok) out[m.i] = { ok: false, session: m.rec.id, reason: r.reason, message: `${step}: ${r.message}` };
      };
      // A session already frozen with no migration of it running here (one cut short after its freeze, e.g.
      // by the fence) goes on from where it stopped: its quiesce is long over, the transfer CAS decides.
      const toFreeze = moving.filter((m) => m.rec.state !== SessionState.FROZEN || m.rec.pending !== null);
      // One options object for every session of a step that names no target.
      const stepOpts: StepOptions = { cause: req.cause, actor: req.actor };
      const frozen = await this.#stepAll(
        toFreeze,
        LifecycleEvent.FREEZE,
        req.expectVersion === undefined ? stepOpts : { cause: req.cause, expectVersion: req.expectVersion, actor: req.actor },
      );
      const notFrozen = new Set<Move>();
      const frozenAt = this.#d.clock.now();
      toFreeze.forEach((m, k) => {
        const r = frozen[k] as StepResult;
        if (!r.ok) {
          fail(m, 'freeze', r);
          notFrozen.add(m);
        } else m.frozenSince = frozenAt;
      });
      // The step's results (and the transition notes in them) are let go before the next wait: a drain has
      // thousands of sessions in flight, and whatever their batches hold across a wait, the garbage
      // collector copies.
      frozen.length = 0;
      moving = moving.filter((m) => !notFrozen.has(m));
      // Frozen, the old owner is still the owner: its replies to packets already sent reach the client.
      // Give them a moment before the transfer makes them replies from a former owner (dropped).
      if (this.#o.quiesceMs > 0 && toFreeze.length > notFrozen.size) await this.#quiesce();
      if (yieldTurns) await this.#turn();

      // The targets as they are now, not as they were before the freeze and the wait: a node that has
      // started draining or gone unhealthy meanwhile takes none of these sessions (its own drain could
      // otherwise finish while they land on it). A ring-picked target is picked again; a session with no
      // target left, or whose named target left, is thawed in place.
      const noTarget: Move[] = [];
      if (req.proceed !== undefined && !req.proceed()) {
        for (const m of moving) out[m.i] = { ok: false, session: m.rec.id, reason: 'cancelled', message: 'the migration was cancelled before its transfer (the session stays with its owner)' };
        noTarget.push(...moving);
        moving = [];
      }
      moving = moving.filter((m) => {
        if (this.#d.eligible(m.to)) return true;
        const again = req.to === undefined ? this.#d.core.ring.pickExcluding(idBytesInto(m.rec.id, this.#pickId), this.#leaving(leaving, m.from)) : undefined;
        if (again !== undefined) {
          m.to = again;
          return true;
        }
        out[m.i] =
          req.to === undefined
            ? { ok: false, session: m.rec.id, reason: 'no_target', message: 'no other active, healthy node to move to (its target stopped taking sessions)' }
            : { ok: false, session: m.rec.id, reason: 'bad_target', message: `node "${m.to}" stopped taking sessions (draining or unhealthy) before the transfer` };
        noTarget.push(m);
        return false;
      });
      for (const m of moving) this.#transfersTo.set(m.to, (this.#transfersTo.get(m.to) ?? 0) + 1);
      // One options object for the step, its target set per session as it is planned (the plan keeps none of it).
      const transferOpts = { cause: req.cause, toOwner: '', actor: req.actor };
      // The version each transfer is written on (a transfer whose answer is lost is told by it: see below).
      const transferFrom = moving.map((m) => m.rec.version);
      let transfers: StepResult[];
      try {
        transfers = await this.#stepAll(moving, LifecycleEvent.TRANSFER, (m) => {
          transferOpts.toOwner = m.to;
          return transferOpts;
        });
      } finally {
        for (const m of moving) {
          const n = (this.#transfersTo.get(m.to) ?? 1) - 1;
          if (n > 0) this.#transfersTo.set(m.to, n);
          else this.#transfersTo.delete(m.to);
        }
      }
      // A transfer whose answer was lost may still land on its target: it goes on counting (see #unsureTransfers).
      const until = this.#d.clock.now() + (this.#o.unknownWriteBoundMs ?? UNKNOWN_WRITE_BOUND_MS);
      moving.forEach((m, k) => {
        const r = transfers[k] as StepResult;
        if (!r.ok && r.maybeApplied === true) this.#unsureTransfers.set(m.rec.id, { from: m.from, to: m.to, toVersion: (transferFrom[k] as bigint) + 1n, until, cause: req.cause, actor: req.actor });
      });
      const aborted = [...noTarget, ...moving.filter((_, k) => !(transfers[k] as StepResult).ok)];
      const transferred = moving.filter((_, k) => (transfers[k] as StepResult).ok);
      const transferredAt = this.#d.clock.now();
      this.#together(() => {
        moving.forEach((m, k) => {
          const r = transfers[k] as StepResult;
          if (r.ok) {
            this.#revoke(m.rec, m.from, r.note.toVersion);
            m.frozenSince = transferredAt;
          } else fail(m, 'transfer', r);
        });
        this.#armRevokes();
      });
      transfers.length = 0; // let go before the next wait (see `frozen`)
      // Nothing moved for those: thaw in place so that each goes on with its owner.
      const thawed = await this.#stepAll(aborted, LifecycleEvent.RESUME, { cause: 'transfer_aborted', actor: req.actor });
      this.#together(() =>
        aborted.forEach((m, k) => {
          if ((thawed[k] as StepResult).ok) this.#forwardAll(this.#d.core.release(m.rec, this.#d.clock.now(), true));
        }),
      );
      moving = transferred;

      // Ownership has moved: keep trying to resume while the store is unreachable rather than leave a
      // session frozen for good.
      for (let attempt = 0; moving.length > 0; attempt++) {
        if (yieldTurns) await this.#turn();
        const resumed = await this.#stepAll(moving, LifecycleEvent.RESUME, stepOpts);
        const again: Move[] = [];
        const now = this.#d.clock.now();
        this.#together(() =>
          moving.forEach((m, k) => {
            const r = resumed[k] as StepResult;
            if (r.ok) {
              const replay = this.#d.core.release(m.rec, now, true);
              this.#forwardAll(replay);
              out[m.i] = { ok: true, session: m.rec.id, from: m.from, to: m.to, version: m.rec.version, replayed: replay.length };
            } else if (r.reason === 'unavailable' && attempt < RESUME_RETRIES) {
              again.push(m);
            } else {
              // Ownership moved but the session stays frozen (its packets are held): fail closed. The
              // stale-freeze sweep (`thawStale`) resumes it once the store answers again.
              if (!r.ok) out[m.i] = { ok: false, session: m.rec.id, reason: r.reason, message: `resume: ${r.message}`, transferred: true };
            }
          }),
        );
        resumed.length = 0;
        moving = again;
        if (moving.length > 0) await delay(RESUME_BACKOFF_MS * (attempt + 1));
      }
    } finally {
      for (const m of mine) {
        this.#migrating.delete(m.rec.id);
        // Left frozen by a step of this migration (a later step failed): the stale-freeze sweep now looks
        // at it, as seen frozen when that step committed (or later, if the watch saw it frozen since).
        if (!Number.isNaN(m.frozenSince) && m.rec.state === SessionState.FROZEN) {
          const seen = this.#frozenAt.get(m.rec.id);
          if (seen === undefined || seen < m.frozenSince) this.#frozenAt.set(m.rec.id, m.frozenSince);
        }
      }
    }
    return out;
  }

  /**
   * Checks one session of a migration and picks where it goes; a failure when it cannot move. `leaving`:
   * the sets `{node}` the ring's pick excludes, by node, shared by the sessions of a batch.
   */
  #prepareMove(i: number, id: string, req: MigrateRequest, leaving: Map<string, ReadonlySet<string>>): Move | MigrateResult {
    const core = this.#d.core;
    const rec = core.table.get(id);
    if (rec === undefined) return { ok: false, session: id, reason: 'not_found', message: `no live session ${id}` };
    if (req.expectVersion !== undefined && req.expectVersion !== rec.version) {
      return { ok: false, session: id, reason: 'stale_version', message: `session ${id} is at version ${rec.version}, not ${req.expectVersion}` };
    }
    if (this.#d.movable !== undefined && !this.#d.movable(rec)) {
      if (req.cause === 'migrate') {
        return { ok: false, session: id, reason: 'unmovable', message: `session ${id} cannot move: its protocol keeps its state on the node (end it with terminate)` };
      }
      // A drain or failover ends it on the old node; the client reconnects to a remaining node.
      const t = this.terminate(id, `${req.cause}_unmovable`, req.actor);
      return { ok: false, session: id, reason: 'gone', message: t.ok ? 'ended: cannot move' : t.message };
    }
    const from = rec.owner;
    const to = req.to;
    if (to !== undefined) {
      if (!this.#d.knownNode(to)) return { ok: false, session: id, reason: 'bad_target', message: `no node "${to}"`, invalidTarget: true };
      if (to === from) return { ok: false, session: id, reason: 'bad_target', message: `session ${id} is already on ${to}`, invalidTarget: true };
      if (!this.#d.eligible(to)) return { ok: false, session: id, reason: 'bad_target', message: `node "${to}" takes no sessions (draining, unhealthy, or in a cluster its active state not yet in the store)` };
      return { i, rec, from, to, frozenSince: Number.NaN, keyOf: null, key: '' };
    }
    const picked = core.ring.pickExcluding(idBytesInto(rec.id, this.#pickId), this.#leaving(leaving, from));
    if (picked === undefined) return { ok: false, session: id, reason: 'no_target', message: 'no other active, healthy node to move to' };
    return { i, rec, from, to: picked, frozenSince: Number.NaN, keyOf: null, key: '' };
  }

  /** The set `{from}` the ring's pick excludes, one per node for a whole batch (`leaving`). */
  #leaving(leaving: Map<string, ReadonlySet<string>>, from: string): ReadonlySet<string> {
    let exclude = leaving.get(from);
    if (exclude === undefined) {
      exclude = new Set([from]);
      leaving.set(from, exclude);
    }
    return exclude;
  }

  /**
   * Sessions whose transfer to `node` is being written now, or was written and its answer lost (until it
   * shows which way it went, or `unknownWriteBoundMs`): a drain of `node` does not finish while there are
   * any (they may land on it after it looked empty).
   */
  transfersInFlightTo(node: string): number {
    const n = this.#transfersTo.get(node) ?? 0;
    if (this.#unsureTransfers.size === 0) return n;
    this.#pruneUnsure(this.#d.clock.now());
    let unsure = 0;
    for (const u of this.#unsureTransfers.values()) if (u.to === node) unsure++;
    return n + unsure;
  }

  /**
   * Forgets the lost-answer transfers that have shown which way they went: the session the table holds
   * now is at or past the transfer's version (the watch brought the transfer, or the thaw on the same
   * version committed, or a later write did) — or the bound passed. A session gone from the table is not
   * proof (one ended here is deleted from the store later, and the transfer may land first): it waits
   * for the bound.
   */
  #pruneUnsure(now: number): void {
    for (const [id, u] of this.#unsureTransfers) {
      const rec = this.#d.core.table.get(id);
      if ((rec !== undefined && rec.version >= u.toVersion) || now >= u.until) this.#unsureTransfers.delete(id);
    }
  }

  /** Ends a session by operator or policy (version + 1, tombstone), audited. */
  terminate(id: string, cause: string, actor: string): StepResult {
    const rec = this.#d.core.table.get(id);
    if (rec === undefined) return { ok: false, reason: 'not_found', message: `no live session ${id}` };
    return this.terminateRecord(rec, cause, actor);
  }

  /**
   * `terminate` of this very record, for a caller that holds one (a TCP connection its session): not_found
   * once it is no longer live here — ended meanwhile, even if a session of the same id was admitted since.
   */
  terminateRecord(rec: SessionRecord, cause: string, actor: string): StepResult {
    const core = this.#d.core;
    if (!core.table.holds(rec)) return { ok: false, reason: 'not_found', message: `no live session ${rec.id}` };
    const t = core.terminate(rec, cause, this.#d.clock.now());
    if (typeof t === 'string') return { ok: false, reason: t, message: refusalText(t, rec) };
    this.ended(rec, t, actor);
    return { ok: true, note: t };
  }

  /** A session ended in the core (close, expire, terminate): audit it and remove it from the store. */
  ended(rec: SessionRecord, t: TransitionNote, actor = this.#o.directorId): void {
    this.#recordEnd(rec, t, actor);
    // Ending only ever takes ownership away, so it is applied locally first; the store follows.
    if (t.fromVersion !== null) this.#deleteStored({ id: rec.id, incarnation: rec.incarnation, fromVersion: t.fromVersion, toVersion: t.toVersion, attempts: 0 });
  }

  /**
   * The store's delete of an ended session, at most END_DELETES_IN_FLIGHT at once: past that they wait
   * in order (a mass end — every session terminated when the store comes back from a partition — must
   * not pile a million requests onto the store and into memory at once).
   */
  #deleteStored(e: EndDelete): void {
    const { id, incarnation, fromVersion, toVersion, attempts } = e;
    if (this.#endDeletes >= END_DELETES_IN_FLIGHT) {
      this.#endQueue.push(e);
      return;
    }
    this.#endDeletes++;
    const unreachable = (message: string): void => {
      // Ended here, still live in the store: other directors would keep serving it (and a restart bring it
      // back). Said once, then tried again until the store takes it or refuses it — or, once this director
      // is stopping, said as given up.
      if (this.#closed) return this.#endAbandoned(id, toVersion, message);
      if (attempts === 0) this.#security(id, 'end_not_stored', { reason: 'unavailable', message, version: toVersion.toString(), retrying: true });
      this.#retryEnd({ id, incarnation, fromVersion, toVersion, attempts: attempts + 1 });
    };
    // Of this life of the id only: a retry that comes after the session was ended elsewhere and admitted
    // anew (at version 1 again) must not delete the new one.
    void this.#d.store
      .delete(id, fromVersion, incarnation)
      .then(
        (r) => {
          if (r.ok) return;
          if (r.reason === 'unavailable') return unreachable(r.message);
          // Already gone: another director ended it too (both saw it expire, or both terminated it).
          if (!(r.reason === 'conflict' && r.current === null)) this.#security(id, 'end_not_stored', { reason: r.reason, version: toVersion.toString() });
        },
        (err: unknown) => unreachable(String(err)),
      )
      .finally(() => {
        this.#endDeletes--;
        if (this.#endDeletes === 0 && this.#endQueue.length === 0) this.#onEndsSettled?.();
        if (this.#closed) return;
        const next = this.#endQueue.shift();
        if (next !== undefined) this.#deleteStored(next);
      });
  }

  /** A delete the store could not take, tried again after END_RETRY_MIN_MS, doubling up to END_RETRY_MAX_MS. */
  #retryEnd(e: EndDelete): void {
    if (this.#closed) return;
    const due = this.#d.clock.now() + Math.min(END_RETRY_MAX_MS, END_RETRY_MIN_MS * 2 ** (e.attempts - 1));
    this.#endRetries.set(e.id, { ...e, due });
    // The timer may wait for a later retry (a longer wait): this one must not wait for it.
    if (this.#endRetryTimer !== null && due < this.#endRetryAt) {
      clearTimeout(this.#endRetryTimer);
      this.#endRetryTimer = null;
    }
    if (this.#endRetryTimer === null) this.#armEndRetries();
  }

  #armEndRetries(): void {
    let due = Infinity;
    for (const e of this.#endRetries.values()) if (e.due < due) due = e.due;
    if (due === Infinity) return;
    this.#endRetryAt = due;
    this.#endRetryTimer = setTimeout(
      () => {
        this.#endRetryTimer = null;
        const now = this.#d.clock.now();
        for (const [id, e] of this.#endRetries) {
          if (e.due > now) continue;
          this.#endRetries.delete(id);
          this.#deleteStored(e);
        }
        this.#armEndRetries();
      },
      Math.max(1, due - this.#d.clock.now()),
    );
    this.#endRetryTimer.unref();
  }

  /**
   * Before a stop: every end delete waiting (for room, or to be tried again) is sent now, and the store's
   * answers are awaited for at most `timeoutMs` — so that a director stopped right after ending sessions
   * (a drain's deadline, a client's CLOSE, a terminate) leaves none of them live in a shared store when
   * the store can take the deletes. What is still unanswered then is reported by `close`.
   */
  async settleEnds(timeoutMs: number): Promise<void> {
    if (this.#closed) return;
    if (this.#endRetryTimer !== null) clearTimeout(this.#endRetryTimer);
    this.#endRetryTimer = null;
    const retries = [...this.#endRetries.values()];
    this.#endRetries.clear();
    for (const e of retries) this.#deleteStored(e);
    if (this.#endDeletes === 0 && this.#endQueue.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.#onEndsSettled = resolve;
      timer = setTimeout(resolve, Math.max(0, Math.min(MAX_TIMER_MS, timeoutMs)));
    });
    clearTimeout(timer);
    this.#onEndsSettled = null;
  }

  /** An end the store never took, given up because this director stops: a SECURITY_EVENT (the session may live on in the store). */
  #endAbandoned(id: string, toVersion: bigint, message: string): void {
    this.#security(id, 'end_not_stored', { reason: 'director_stopped', message, version: toVersion.toString(), retrying: false });
  }

  /** Store deletes of ended sessions in flight, waiting for room, and waiting to be tried again (the store was unreachable). */
  get endDeletes(): { inFlight: number; waiting: number; retrying: number } {
    return { inFlight: this.#endDeletes, waiting: this.#endQueue.length, retrying: this.#endRetries.size };
  }

  /** The bookkeeping of every end made here: counted, held packets discarded, audited, observers told. */
  /**
   * The session's owner sent CLOSE while the transition that just settled was in flight (relayed to the
   * client then): the session ends now, as a node close (audited, deleted from the store, held packets
   * dropped). A migration that goes on finds it gone.
   */
  #endIfClosed(rec: SessionRecord): void {
    if (rec.closedBy === null) return;
    // The owner's replies held while a reattach was in flight, its CLOSE among them in its place, go to the
    // transport the CAS left bound before the session ends (ended first, they were dropped unseen).
    if (rec.pending === null) this.#relayHeldReplies(rec);
    const c = this.#d.core.closeDeferred(rec, this.#d.clock.now());
    if (c !== null) this.ended(rec, c.note, c.node);
  }

  /** The owner's replies held while a reattach was in flight, to the transport it left bound. */
  #relayHeldReplies(rec: SessionRecord): void {
    if (rec.heldReplies === null) return;
    const replies = this.#d.core.takeHeldReplies(rec);
    if (replies.length > 0) this.#path?.relayHeld(rec, replies);
  }

  #recordEnd(rec: SessionRecord, t: TransitionNote, actor: string): void {
    this.#d.stats.sessionsEnded.inc(t.cause);
    this.#d.stats.heldDiscarded += this.#d.core.discardHeld(rec);
    this.#audit(rec, t, actor);
    this.#notify(rec, t);
  }

  /**
   * Expires the idle sessions: each is deleted from the store on its version first, and ends here only
   * once that delete succeeded — so a session expires once in a cluster, on whichever director deletes
   * it (the others follow the delete). A delete that finds the session gone ends it here as a remote
   * end; one that finds a newer version, or no store, changes nothing (the next sweep looks again).
   * Starts at most `limit` expiries, and none while EXPIRE_IN_FLIGHT_MAX are in flight; returns how many
   * it started (`limit`: more may be due, the caller goes on soon).
   */
  expireIdle(now: number, limit = 10_000): number {
    const room = Math.min(limit, EXPIRE_IN_FLIGHT_MAX - this.#expiring);
    if (room <= 0) return 0;
    const due = this.#d.core.dueIdle(now, room);
    for (const rec of due) {
      this.#expiring++;
      void this.#expire(rec).finally(() => this.#expiring--);
    }
    return due.length;
  }

  /** Expiries whose store delete is in flight (at most EXPIRE_IN_FLIGHT_MAX). */
  get expiring(): number {
    return this.#expiring;
  }

  async #expire(rec: SessionRecord): Promise<void> {
    const core = this.#d.core;
    const p = core.plan(rec, LifecycleEvent.EXPIRE, { cause: 'idle_ttl' });
    if (typeof p === 'string') return;
    const r = await this.#d.store.delete(rec.id, p.fromVersion, rec.incarnation);
    const now = this.#d.clock.now();
    // What the watch said meanwhile: our life's end (null), or another life of the id, admitted after it
    // (so ours is gone too), which this director then mirrors once ours has ended here.
    const late = this.#late.get(rec.id);
    const next = late !== undefined && late !== null && otherLife(rec, late) ? late : null;
    if (r.ok) {
      this.#late.delete(rec.id);
      this.#recordEnd(rec, core.commit(p, now), this.#o.directorId);
      if (next !== null) this.#applyRecord(next);
      return;
    }
    if (r.reason === 'unavailable' && r.maybeApplied === true && (late === null || next !== null)) {
      // The delete was sent and its answer lost, and the watch said meanwhile that the session is gone
      // from the store: our delete on its version landed (the store's own rule for a lost delete,
      // resolveUnknownWrite). It is this director's expiry, audited as such — not a remote end that no
      // director would audit. (A delete never sent — its read failed — is not: the session was ended by
      // another director, who audits it.)
      this.#late.delete(rec.id);
      this.#recordEnd(rec, core.commit(p, now), this.#o.directorId);
      if (next !== null) this.#applyRecord(next);
      return;
    }
    core.abort(p);
    if (this.#late.has(rec.id)) {
      this.#settleLate(rec.id);
      return;
    }
    if (r.reason === 'conflict' && r.current === null) {
      // Another director deleted it first: it ends here as that director's end.
      this.#applyDelete(rec.id);
      return;
    }
    // A newer version elsewhere (the watch brings it) or no store: the session stays as it was.
    if (rec.state === SessionState.ATTACHED) this.#forwardAll(core.release(rec, now, false));
  }

  /**
   * Refreshes, in the store, the expiry of the sessions served here whose stored expiry comes within a
   * third of the idle TTL while their traffic has moved it later: one write per session about every
   * two thirds of the TTL, none for an idle session. Only for a store shared by several directors.
   */
  refreshExpiries(now: number): void {
    const ttl = this.#o.idleTtlMs;
    if (this.#o.refreshExpiry !== true || ttl === undefined) return;
    if (this.#d.fence !== undefined && this.#d.fence() !== FenceState.OK) return;
    const cap = this.#o.refreshConcurrency ?? 64;
    const lead = ttl / 3;
    // Not the whole table per call (at 1,000,000 sessions that held the event loop 0.8-1 s each time):
    // a walk carried from call to call, paced to look at every slot within a quarter of the lead, so a
    // session is looked at (twice, should a pass miss it while the table changes) before its stored
    // expiry is due.
    const table = this.#d.core.table;
    if (this.#refreshWalk === null || this.#refreshWalk.done) this.#refreshWalk = table.walkAll();
    const walk = this.#refreshWalk;
    const budget = { slots: refreshSlots(table.slots, this.#refreshAt === null ? Infinity : now - this.#refreshAt, lead / 4) };
    this.#refreshAt = now;
    // A record is made only for a session whose numbers say it may be due (most are not).
    const due = (served: boolean, expiresAt: number, storeExpiresAt: number): boolean => served && expiresAt > storeExpiresAt && storeExpiresAt - now <= lead;
    while (this.#refreshing.size < cap) {
      const rec = walk.nextWhere(budget, due);
      if (rec === undefined) break;
      if (!rec.servedHere || rec.pending !== null || rec.expiresAt <= rec.storeExpiresAt || rec.storeExpiresAt - now > lead) continue;
      if (this.#refreshing.has(rec.id)) continue;
      this.#refreshing.add(rec.id);
      const version = rec.version;
      const expiry = rec.expiresAt;
      void this.#d.store.refresh(rec.id, version, this.#d.clock.toWall(expiry), this.#o.directorId, rec.incarnation).then((r) => {
        this.#refreshing.delete(rec.id);
        this.#d.stats.expiryRefreshes.inc(r.ok ? 'ok' : r.reason);
        if (r.ok) {
          if (rec.version === version && expiry > rec.storeExpiresAt) rec.storeExpiresAt = expiry;
        } else if (r.reason === 'conflict' && r.current !== null && r.current.version === rec.version && sameLife(r.current.incarnation, rec.incarnation)) {
          // The store holds our version with another expiry (another director refreshed it): learn it.
          const stored = this.#monoExpiry(r.current.expiresAt);
          if (stored > rec.storeExpiresAt) rec.storeExpiresAt = stored;
        }
      });
    }
  }

  /** A node acknowledged REVOKE(version) for a session. */
  onRevokeAck(id: string, version: bigint, node: string): boolean {
    let p = this.#pendingRevoke(id);
    if ((p === undefined || p.version !== version) && this.#versionKeyed > 0) p = this.#pendingRevoke(`${id}/${version}`);
    if (p === undefined || p.version !== version || p.node !== node) return false;
    this.#forgetRevoke(p);
    this.#d.stats.revokes.inc('acknowledged');
    return true;
  }

  /**
   * Mirrors what the store's watch reports into the local table (never re-published): other directors'
   * writes, and our own writes whose answer never came but which landed (our own writes already
   * applied are older or equal versions, which the core ignores). While a transition of the session is
   * in flight here, our own events wait until it settles. `parseTransport` turns a stored transport into
   * the client transport and the listener to reply through.
   */
  followStore(parseTransport: (key: string) => ParsedTransport | null): () => void {
    this.#parseTransport = parseTransport;
    return this.#d.store.watch((ev) => this.#onStoreEvent(ev));
  }

  /**
   * Loads the sessions of `owners` the store holds and follows every later change (followStore), from one
   * consistent point where the store offers it (`follow`: etcd), so that a session deleted while the
   * listing was being answered is not loaded back; otherwise (the in-process store) by followStore and
   * loadFromStore. A StoreUnavailableError when the store cannot list its sessions.
   */
  async followAndLoad(owners: readonly string[], parseTransport: (key: string) => ParsedTransport | null): Promise<{ loaded: number; unfollow: () => void }> {
    const store = this.#d.store;
    if (store.follow === undefined) {
      const unfollow = this.followStore(parseTransport);
      try {
        return { loaded: await this.loadFromStore(owners, parseTransport), unfollow };
      } catch (err) {
        unfollow();
        throw err;
      }
    }
    this.#parseTransport = parseTransport;
    const wanted = new Set(owners);
    let loaded = 0;
    const r = await store.follow(
      (records) => {
        loaded = this.#load(
          records.filter((rec) => wanted.has(rec.owner)),
          parseTransport,
        );
      },
      (ev) => this.#onStoreEvent(ev),
    );
    if (!r.ok) throw new StoreUnavailableError(`cannot load the sessions from the store: ${r.message}`);
    return { loaded, unfollow: r.unsubscribe };
  }

  #onStoreEvent(ev: StoreEvent): void {
    // The very write of a transition in flight, committed by the store call still running: kept aside
    // until that call answers (#lateEchoes).
    if (this.#echoes !== null && ev.kind === 'put' && this.#isEcho(ev.record)) {
      this.#echoes.push(ev.record);
      return;
    }
    const local = this.#d.core.table.get(ev.kind === 'delete' ? ev.id : ev.record.id);
    if (ev.kind === 'delete' && local !== undefined && otherLife(local, ev.prev)) {
      // The end of another life of the id than the one held here: nothing here to end — but it undoes that
      // life's record kept aside while a transition is in flight (put, then deleted, before it settled).
      const late = this.#late.get(local.id);
      if (local.pending !== null && late !== undefined && late !== null && sameLife(late.incarnation, ev.prev.incarnation)) {
        // An admission in flight: the store held no life of ours then (nothing to apply once it settles);
        // any other transition: ours had ended in the store before that life was admitted.
        if (local.pending === LifecycleEvent.ADMIT) this.#late.delete(local.id);
        else this.#late.set(local.id, null);
      }
      return;
    }
    if (local !== undefined && local.pending !== null && (ev.kind === 'delete' || ev.record.director === this.#o.directorId || otherLife(local, ev.record))) {
      this.#late.set(local.id, ev.kind === 'delete' ? null : ev.record);
      return;
    }
    if (ev.kind === 'delete') this.#applyDelete(ev.id);
    else this.#applyRecord(ev.record);
  }

  /** What the watch said about a session while its transition was in flight, applied now that it settled. */
  #settleLate(id: string): void {
    if (this.#late.size === 0 || !this.#late.has(id)) return;
    const late = this.#late.get(id);
    this.#late.delete(id);
    if (late === null) this.#applyDelete(id);
    else if (late !== undefined) this.#applyRecord(late);
  }

  #applyDelete(id: string): void {
    // Our own ends are applied locally before their delete, which then finds nothing here.
    const rec = this.#d.core.removeRemote(id, this.#d.clock.now());
    if (rec !== null) {
      this.#d.stats.remoteChanges.inc('ended');
      this.#d.stats.heldDiscarded += this.#d.core.discardHeld(rec);
      this.#notify(rec, { event: LifecycleEvent.TERMINATE, cause: 'remote', fromVersion: rec.version, toVersion: rec.version + 1n, fromOwner: rec.owner, toOwner: null });
    }
  }

  #applyRecord(r: StoredSession): void {
    const core = this.#d.core;
    const now = this.#d.clock.now();
    const parse = this.#parseTransport;
    // Another life of the id (the one held here ended, its end not seen here — a watch gap — and the id
    // was admitted anew, at version 1 again): the one held here ends, then the new one is taken as any
    // session another director admitted. Versions of two lives are not comparable.
    const held = core.table.get(r.id);
    if (held !== undefined && otherLife(held, r)) this.#applyDelete(r.id);
    // A version this director already has (most often its own write coming back) can only bring news of
    // the expiry: its transport is not looked at, so it is not parsed.
    const local = core.table.get(r.id);
    // This director's own write coming back at a version committed here (a shared store's watch tells it
    // after the answer): its expiry is the one written, read back through the wall clock a fraction of a
    // millisecond off. Nothing to learn — applied, it counted as a refresh from the store and moved the
    // deadline. An expiry later by more than that is news (a refresh of ours whose answer was lost).
    if (local !== undefined && r.director === this.#o.directorId && local.version === r.version && sameLife(local.incarnation, r.incarnation) && this.#monoExpiry(r.expiresAt) <= local.storeExpiresAt + OWN_ECHO_SLACK_MS) return;
    const known = local !== undefined && local.version >= r.version;
    const out = core.applyRemote(
      { id: r.id, owner: r.owner, version: r.version, incarnation: r.incarnation, state: r.state, transport: known || r.transport === null || parse === null ? null : parse(r.transport), expiresAt: this.#monoExpiry(r.expiresAt) },
      now,
    );
    if (out.kind === 'ignored') return;
    if (out.kind === 'not_held') {
      this.#notHeld(r.owner);
      return;
    }
    if (out.kind === 'refreshed') {
      this.#d.stats.remoteChanges.inc('refreshed');
      return;
    }
    this.#d.stats.remoteChanges.inc(out.kind);
    if (r.director === this.#o.directorId) {
      this.#security(r.id, 'late_write_applied', { version: r.version.toString(), state: r.state, owner: r.owner });
      if (out.kind === 'updated') this.#landedLate(out.session, out.note);
    }
    this.#notify(out.session, out.note);
    // Packets held here while the session was frozen go on once it is attached again.
    if (out.kind === 'updated' && out.session.state === SessionState.ATTACHED && out.session.pending === null) {
      this.#forwardAll(core.release(out.session, now, true));
    }
  }

  /**
   * One of this director's transfers whose answer was lost (#unsureTransfers), seen landed only now — by
   * the watch, after the migration had given it up and its thaw lost to it: that transfer committing. It
   * is audited as the transfer it was (cause and actor of its migration) and the node it left gets its
   * REVOKE, as the migration would have done; the session stays frozen until the stale-freeze sweep
   * resumes it on its new owner. Before, ownership moved with neither (only a SECURITY_EVENT).
   */
  #landedLate(rec: SessionRecord, n: TransitionNote): void {
    const u = this.#unsureTransfers.get(rec.id);
    if (u === undefined || n.event !== LifecycleEvent.TRANSFER || rec.owner !== u.to || n.fromOwner !== u.from || rec.version < u.toVersion) return;
    this.#unsureTransfers.delete(rec.id);
    this.#audit(rec, { ...n, cause: u.cause }, u.actor);
    this.#revoke(rec, u.from, u.toVersion);
    this.#armRevokes();
    if (rec.state === SessionState.FROZEN && !this.#frozenAt.has(rec.id)) this.#frozenAt.set(rec.id, this.#d.clock.now());
  }

  /**
   * Resumes sessions frozen for longer than `staleMs` with no migration of them running here: a
   * migration cut short after its freeze (the store went away, the fence tripped) or run by a director
   * that died. A CAS like any other: if the migrating director is alive and moves on, one of the two
   * loses. Packets held meanwhile are replayed to the owner.
   */
  thawStale(now: number, staleMs: number): void {
    if (this.#unsureTransfers.size > 0) this.#pruneUnsure(now);
    if (this.#d.fence !== undefined && this.#d.fence() !== FenceState.OK) return;
    // Every frozen session is looked at (they are not kept in time order: see #frozenAt); few are frozen
    // outside a migration running here.
    for (const [id, at] of this.#frozenAt) {
      if (now - at < staleMs) continue;
      const rec = this.#d.core.table.get(id);
      if (rec === undefined || rec.state !== SessionState.FROZEN) {
        this.#frozenAt.delete(id);
        continue;
      }
      if (rec.pending !== null || this.#migrating.has(id)) continue;
      this.#frozenAt.set(id, now); // looked at again after another `staleMs` if this fails
      void this.step(rec, LifecycleEvent.RESUME, { cause: 'stale_freeze', actor: this.#o.directorId }).then((r) => {
        if (r.ok) this.#forwardAll(this.#d.core.release(rec, this.#d.clock.now(), true));
      });
    }
  }

  /**
   * Loads the sessions the store already holds (a director joining a cluster, or restarting), owner by
   * owner. Throws when the store cannot be read: a director that cannot know the sessions must not serve.
   */
  async loadFromStore(owners: readonly string[], parseTransport: (key: string) => ParsedTransport | null): Promise<number> {
    let n = 0;
    for (const owner of owners) {
      const r = await this.#d.store.listByOwner(owner);
      if (!r.ok) throw new StoreUnavailableError(`cannot load the sessions of ${owner} from the store: ${r.message}`);
      n += this.#load(r.records, parseTransport);
    }
    return n;
  }

  /** Another director's session on `owner` that the table could not hold (DirectorCore.applyRemote). */
  #notHeld(owner: string): void {
    this.#d.stats.remoteChanges.inc('not_held');
    this.#notHeldBy.set(owner, (this.#notHeldBy.get(owner) ?? 0) + 1);
  }

  /**
   * How many times the table could not hold a session of another director that was on `node` (full at
   * session.max, or a stored transport it could not read): 0 while this director's view of the node is
   * whole. Only grows.
   */
  notHeldOn(node: string): number {
    return this.#notHeldBy.get(node) ?? 0;
  }

  /**
   * How many live sessions the store has on `node` that this director's table does not hold: for a drain
   * about to complete once the table has had to leave some of the node's sessions out (notHeldOn). Nothing
   * is loaded: the listing is not in step with the watch (a session ended after it would come back).
   */
  async notHeldInStore(node: string): Promise<{ ok: true; notHeld: number } | { ok: false; message: string }> {
    const r = await this.#d.store.listByOwner(node);
    if (!r.ok) return { ok: false, message: r.message };
    const table = this.#d.core.table;
    let notHeld = 0;
    for (const rec of r.records) if (rec.state !== SessionState.TERMINATED && table.get(rec.id) === undefined) notHeld++;
    return { ok: true, notHeld };
  }

  /** Stored sessions into the table (as other directors' writes are): how many were new or newer here. */
  #load(records: readonly StoredSession[], parseTransport: (key: string) => ParsedTransport | null): number {
    let n = 0;
    const now = this.#d.clock.now();
    for (const rec of records) {
      const out = this.#d.core.applyRemote(
        { id: rec.id, owner: rec.owner, version: rec.version, incarnation: rec.incarnation, state: rec.state, transport: rec.transport === null ? null : parseTransport(rec.transport), expiresAt: this.#monoExpiry(rec.expiresAt) },
        now,
      );
      if (out.kind === 'ignored') continue;
      if (out.kind === 'not_held') {
        this.#notHeld(rec.owner);
        continue;
      }
      n++;
      // A session frozen by a director that is gone is thawed by the stale-freeze sweep.
      if (rec.state === SessionState.FROZEN) this.#frozenAt.set(rec.id, now);
    }
    return n;
  }

  /**
   * Stops every timer. What is left undone is said, session by session, as a SECURITY_EVENT: an end the
   * store has not taken (`end_not_stored`, reason `director_stopped`: waiting to be tried again or for
   * room; one in flight says so if its answer is a failure), and a REVOKE its old owner has not acknowledged
   * (`revoke_unacknowledged`, reason `director_stopped`: nothing resends it any more).
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#endRetryTimer !== null) clearTimeout(this.#endRetryTimer);
    this.#endRetryTimer = null;
    for (const e of this.#endRetries.values()) this.#endAbandoned(e.id, e.toVersion, 'the store had not taken the delete when the director stopped');
    this.#endRetries.clear();
    for (let e = this.#endQueue.shift(); e !== undefined; e = this.#endQueue.shift()) this.#endAbandoned(e.id, e.toVersion, 'the delete was never sent: the director stopped first');
    if (this.#revokeTimer !== null) clearTimeout(this.#revokeTimer);
    this.#revokeTimer = null;
    for (const level of this.#revokes) {
      for (const p of level.values()) {
        this.#d.stats.revokes.inc('unacknowledged');
        this.#security(p.rec.id, 'revoke_unacknowledged', { node: p.node, version: p.version.toString(), attempts: p.attempts + 1, reason: 'director_stopped' });
      }
    }
    this.#revokes.length = 0;
    this.#revokesPendingTo.clear();
    this.#versionKeyed = 0;
  }

  /**
   * REVOKE(version) to `node`, kept until acknowledged. `version` is one this director just committed (a
   * transfer), so no REVOKE of it can be pending already. The caller arms the resend timer (once for a batch).
   */
  #revoke(rec: SessionRecord, node: string, version: bigint): void {
    let key = rec.id;
    if (this.#pendingRevoke(key) !== undefined) {
      key = `${rec.id}/${version}`;
      this.#versionKeyed++;
    }
    this.#revokeLevel(0).set(key, { rec, node, version, key, attempts: 0, due: this.#d.clock.now() + this.#o.revokeTimeoutMs });
    this.#revokesPendingTo.set(node, (this.#revokesPendingTo.get(node) ?? 0) + 1);
    this.#sendRevoke(rec, node, version);
  }

  /** Drops the pending REVOKE `p` (acknowledged, or given up). */
  #forgetRevoke(p: PendingRevoke): void {
    (this.#revokes[p.attempts] as Map<string, PendingRevoke>).delete(p.key);
    if (p.key !== p.rec.id) this.#versionKeyed--;
    const left = (this.#revokesPendingTo.get(p.node) ?? 1) - 1;
    if (left > 0) this.#revokesPendingTo.set(p.node, left);
    else this.#revokesPendingTo.delete(p.node);
  }

  /**
   * REVOKEs to `node` not acknowledged yet, and those given up unacknowledged (after the resends) since
   * this director started: a drain that moved every session is not done with the node until the first
   * is 0, and the second says how many sessions the node was never confirmed to have let go of.
   */
  revokesTo(node: string): { pending: number; unacknowledged: number } {
    return { pending: this.#revokesPendingTo.get(node) ?? 0, unacknowledged: this.#revokesUnackedTo.get(node) ?? 0 };
  }

  /** Runs `fn` with the datagrams it sends sent together (see DataPath.sendTogether). */
  #together(fn: () => void): void {
    const path = this.#path;
    if (path?.sendTogether !== undefined) path.sendTogether(fn);
    else fn();
  }

  #sendRevoke(rec: SessionRecord, node: string, version: bigint): void {
    this.#d.stats.revokes.inc('sent');
    this.#path?.revoke(rec, node, version);
  }

  #armRevokes(): void {
    let due = Infinity;
    for (const level of this.#revokes) {
      const first = level.values().next();
      if (first.done !== true && first.value.due < due) due = first.value.due;
    }
    if (due === Infinity) return;
    // A new REVOKE (level 0) may fall due before the resend the timer waits for: then it is re-armed.
    if (this.#revokeTimer !== null) {
      if (this.#revokeTimerAt <= due) return;
      clearTimeout(this.#revokeTimer);
    }
    this.#revokeTimerAt = due;
    // At most the longest a timer waits (a longer one would fire at once): then it is armed again.
    this.#revokeTimer = setTimeout(() => this.#revokeTick(), Math.min(MAX_TIMER_MS, Math.max(1, due - this.#d.clock.now())));
    this.#revokeTimer.unref();
  }

  /**
   * Resends every REVOKE whose timeout passed, each time waiting twice as long (a node too busy to
   * acknowledge in time is not sent more and more of them); gives up (SECURITY_EVENT) after
   * `revokeRetries`. At most REVOKE_BURST per turn of the event loop: after a fast drain thousands fall
   * due together, and traffic is read between the bursts.
   */
  #revokeTick(): void {
    this.#together(() => this.#resendRevokes());
  }

  #resendRevokes(): void {
    this.#revokeTimer = null;
    const now = this.#d.clock.now();
    let n = 0;
    // From the highest level down: an entry moved up a level is not met again in this tick.
    for (let attempts = this.#revokes.length - 1; attempts >= 0; attempts--) {
      const level = this.#revokes[attempts] as Map<string, PendingRevoke>;
      for (const [key, p] of level) {
        if (p.due > now) break;
        if (n++ >= REVOKE_BURST) {
          this.#revokeTimerAt = now + 1;
          this.#revokeTimer = setTimeout(() => this.#revokeTick(), 1);
          this.#revokeTimer.unref();
          return;
        }
        if (p.attempts >= this.#o.revokeRetries) {
          this.#forgetRevoke(p);
          this.#revokesUnackedTo.set(p.node, (this.#revokesUnackedTo.get(p.node) ?? 0) + 1);
          this.#d.stats.revokes.inc('unacknowledged');
          this.#security(p.rec.id, 'revoke_unacknowledged', { node: p.node, version: p.version.toString(), attempts: p.attempts + 1 });
          continue;
        }
        level.delete(key);
        p.attempts++;
        p.due = now + this.#o.revokeTimeoutMs * 2 ** p.attempts;
        this.#revokeLevel(p.attempts).set(key, p); // to the end of its level: still in due order
        this.#sendRevoke(p.rec, p.node, p.version);
      }
    }
    this.#armRevokes();
  }

  /**
   * Resolves in a later turn of the event loop, one waiter per turn (in the order they asked), so that
   * I/O is polled between the steps of migration batches.
   */
  #turn(): Promise<void> {
    return new Promise((resolve) => {
      this.#turnWaiters.push(resolve);
      if (!this.#turnScheduled) {
        this.#turnScheduled = true;
        setImmediate(() => this.#nextTurn());
      }
    });
  }

  #nextTurn(): void {
    const waiter = this.#turnWaiters.shift();
    waiter?.();
    if (this.#turnWaiters.length > 0) setImmediate(() => this.#nextTurn());
    else this.#turnScheduled = false;
  }

  /** Resolves `quiesceMs` (up to a few ms more) from now; waits ending together share one timer. */
  #quiesce(): Promise<void> {
    const ms = this.#o.quiesceMs;
    const step = Math.max(1, Math.min(10, Math.floor(ms / 5)));
    const now = this.#d.clock.now();
    const at = Math.ceil((now + ms) / step) * step;
    let p = this.#quiesces.get(at);
    if (p === undefined) {
      p = new Promise<void>((resolve) => {
        setTimeout(() => {
          this.#quiesces.delete(at);
          resolve();
        }, at - now).unref();
      });
      this.#quiesces.set(at, p);
    }
    return p;
  }

  /** Sends a released held datagram on. */
  #forward(f: Forward): void {
    this.#d.stats.released++;
    // Sent before the end it brings (a held CLOSE) is handed on: on the session's own upstream socket, which the end closes.
    this.#path?.forward(f);
    if (f.transition !== null) this.ended(f.session, f.transition);
  }

  #forwardAll(fs: readonly Forward[]): void {
    for (const f of fs) this.#forward(f);
  }

  #audit(rec: SessionRecord, t: TransitionNote, actor: string): void {
    const event = t.event === LifecycleEvent.ADMIT ? 'create' : t.event === LifecycleEvent.TRANSFER && t.cause === 'failover' ? 'failover' : t.event;
    this.#d.stats.auditEvents.inc(event);
    const fromVersion = t.fromVersion === null ? null : t.fromVersion.toString();
    const toVersion = t.toVersion.toString();
    // One object of a fixed shape per line (no spread), `detail` only for a reattach.
    this.#d.audit.write(
      t.event === LifecycleEvent.REATTACH
        ? { session: rec.id, event, cause: t.cause, from_version: fromVersion, to_version: toVersion, from_owner: t.fromOwner, to_owner: t.toOwner, actor, detail: { transport: transportKey(rec.transport) } }
        : { session: rec.id, event, cause: t.cause, from_version: fromVersion, to_version: toVersion, from_owner: t.fromOwner, to_owner: t.toOwner, actor },
    );
  }

  #abortEvent(p: Planned, reason: string, message: string): void {
    this.#security(p.session.id, `${p.event}_aborted`, { reason, message, from_version: p.fromVersion.toString(), to_version: p.toVersion.toString(), to_owner: p.toOwner });
  }

  #security(session: string | null, cause: string, detail: Record<string, unknown>): void {
    this.security(session, cause, this.#o.directorId, detail);
  }

  /** For the data path: a SECURITY_EVENT seen on a packet (a BIND or reply from a non-owner…). */
  security(session: string | null, cause: string, actor: string, detail: Record<string, unknown> = {}): void {
    this.#d.stats.securityEvents.inc(cause);
    this.#d.stats.auditEvents.inc('SECURITY_EVENT');
    this.#d.audit.write({ session, event: 'SECURITY_EVENT', cause, from_version: null, to_version: null, from_owner: null, to_owner: null, actor, detail });
  }
}

function refusalText(r: PlanRefusal, rec: SessionRecord): string {
  switch (r) {
    case 'busy':
      return `session ${rec.id} has a transition in flight (${rec.pending ?? 'none'})`;
    case 'gone':
      return `session ${rec.id} has ended`;
    case 'stale_version':
      return `session ${rec.id} is at version ${rec.version}: the expected version is stale`;
    case 'invalid_transition':
      return `session ${rec.id} is ${rec.state}: that transition is not allowed`;
  }
}

/**
 * How many slots of the id index a call of refreshExpiries looks at: its share of a pass over all
 * `slots` that takes `passMs`, for `elapsedMs` since the previous call (Infinity: the first call, a whole
 * pass), at least REFRESH_MIN_SLOTS (a small table is looked at whole on every call), at most a pass.
 */
export function refreshSlots(slots: number, elapsedMs: number, passMs: number): number {
  if (slots <= 0) return 0;
  const share = passMs > 0 ? Math.ceil((slots * Math.max(0, elapsedMs)) / passMs) : slots;
  return Math.min(slots, Math.max(REFRESH_MIN_SLOTS, share));
}

const REFRESH_MIN_SLOTS = 4096;
/** Store deletes of sessions ended here (closed, terminated) in flight at most; the rest wait in order. */
const END_DELETES_IN_FLIGHT = 4096;
/** A delete of an ended session the store could not take is tried again after this, doubling each time up to END_RETRY_MAX_MS. */
const END_RETRY_MIN_MS = 1000;
const END_RETRY_MAX_MS = 30_000;
/** Expiries (store deletes) in flight at most: a mass expiry must not pile requests onto the store. */
const EXPIRE_IN_FLIGHT_MAX = 4096;
