// Node drains and failovers: takes a node out of admission and moves its sessions, rate limited and
// with bounded concurrency, in batches through Ownership.migrateBatch (freeze → transfer → revoke →
// resume, each step for the whole batch at once).
// `wait` drains let sessions end until the deadline, then move the rest. Owns the drain records the
// admin API reports; never moves a session by any other path.
import { randomBytes } from 'node:crypto';
import type { Logger } from '../obs/logger.js';
import type { DirectorStats } from '../obs/stats.js';
import type { DirectorCore } from '../director/core.js';
import { migrationResultLabel, type MigrateResult, type Ownership } from '../director/ownership.js';
import type { OwnerWalk } from '../session/table.js';
import type { Clock } from '../util/clock.js';
import type { SessionRecord } from '../session/record.js';
import { LifecycleEvent } from '../session/lifecycle.js';
import { drainProgress, PlanCounts, planPage, type PlannedMove, MAX_DEADLINE_S } from './plan.js';

export const DrainMode = { MIGRATE: 'migrate', WAIT: 'wait' } as const;
export type DrainMode = (typeof DrainMode)[keyof typeof DrainMode];
export type DrainCause = 'drain' | 'failover';
/**
 * `abandoned`: seen on another director only — the director running the drain went away (its lease
 * ended) before the drain finished; the node stays draining until an operator drains or undrains it again.
 */
export type DrainState = 'waiting' | 'running' | 'completed' | 'failed' | 'cancelled' | 'abandoned';

export interface DrainView {
  readonly id: string;
  readonly node: string;
  readonly mode: DrainMode;
  readonly cause: DrainCause;
  readonly state: DrainState;
  /** The director running it (drains are visible from every director of a cluster). */
  readonly director: string;
  readonly total: number;
  readonly moved: number;
  readonly remaining: number;
  readonly failed: number;
  /** Sessions that ended by themselves (closed or expired) while the drain ran. */
  readonly ended: number;
  readonly rate: number;
  readonly eta_s: number | null;
  /**
   * REVOKEs to the node not acknowledged yet (the node's, across drains), and those given up unacknowledged
   * since this drain started: `completed` means every session moved; the old node has confirmed letting
   * them go once `revokes_pending` is 0, and never did for `revokes_unacknowledged` of them.
   */
  readonly revokes_pending: number;
  readonly revokes_unacknowledged: number;
  readonly started_at: string;
  readonly deadline_at: string | null;
  readonly finished_at: string | null;
  readonly last_error: string | null;
}

/** A dry run (DrainCoordinator.plan): every session counted, a page of them listed. */
export interface DrainPlanView {
  readonly node: string;
  /** The node's sessions counted. */
  readonly sessions: number;
  /** How many would go to each node. */
  readonly byTarget: Record<string, number>;
  /** How many have no other node to go to. */
  readonly unplaceable_count: number;
  /** This page's sessions that would move, in id order. */
  readonly moves: PlannedMove[];
  /** This page's sessions with no other node to go to. */
  readonly unplaceable: string[];
  /** The id to pass as `after` for the next page; null on the last one. */
  readonly next_cursor: string | null;
}

/** A dry run's count gives the event loop back after this long (ms) ... */
const PLAN_SLICE_MS = 4;
/** ... or after looking at this many slots of the id index. */
const PLAN_SLICE_SLOTS = 65_536;
/** Sets the records a dry run has counted are kept in (a power of two). */
const PLAN_SEEN_SHARDS = 64;

export interface DrainOptions {
  /** Sessions moved per second at most. */
  readonly rate: number;
  /** Migrations in flight at once. */
  readonly concurrency: number;
  /** Attempts per session before it counts as failed (a busy session is tried again). */
  readonly attempts?: number;
  readonly tickMs?: number;
  /** This director's id (named in every drain record). */
  readonly directorId?: string;
  /** How often a running drain's record is published to the other directors (ms). */
  readonly publishEveryMs?: number;
  /**
   * The data path comes first: while the event loop let a turn wait longer than this (ms; 0 = never
   * hold back) since the previous tick, new moves start at a tenth of `rate`. Moves in flight go on.
   */
  readonly maxLoopLagMs?: number;
}

export interface DrainDeps {
  readonly core: DirectorCore;
  readonly ownership: Ownership;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly stats: DirectorStats;
  /** Takes the node out of (or back into) admission. */
  readonly setDraining: (node: string, on: boolean) => void;
  /** Shares a drain record with the other directors of a cluster: at start, while it runs, at its end. */
  readonly publish?: (view: DrainView) => void;
  /**
   * How late (ms) the event loop ran this tick: by default how much later than `tickMs` after the
   * previous tick it came (a test may read it from elsewhere).
   */
  readonly loopLag?: () => number;
  /**
   * Whether the node's draining state is settled in the shared store: no write of this director for it
   * in flight, and the state the watch delivered last is draining — so every session admitted to the node
   * before that state, by any director, has come through the watch too, into the table the drain looks
   * at, and admissions after it are refused (a create is conditional on the node state its director has
   * seen). A drain that stops admissions completes only then: before, another director's admission
   * committed just before the state could still be on its way, and the drain would leave it on the node;
   * a draining state the store refused would let the others admit on. Absent: always (one director, an
   * in-process store).
   */
  readonly nodeStateSettled?: (node: string) => boolean;
}


interface Drain {
  readonly id: string;
  readonly node: string;
  /** `wait` until a migrate drain or a failover escalates it (#migrateNow). */
  mode: DrainMode;
  /** It took the node out of admission (setDraining): it completes once that is settled in the shared store. */
  stopsAdmissions: boolean;
  /** Logged once: every session is off the node, and the drain waits for its node state to be settled. */
  toldUnsettled: boolean;
  /**
   * Ownership.notHeldOn(node) when the store last showed every session of the node held here (see
   * #holdsAll); -1 before any such answer.
   */
  heldAsOf: number;
  /** Whether the store is being asked for the node's sessions (#holdsAll), and not before when (monotonic ms) again. */
  asking: boolean;
  askAfter: number;
  /** The node's sessions the store has and this director's table does not hold, at the last answer. */
  unheld: number;
  /** What the last answer of #holdsAll put in lastError (null: nothing). */
  holdMessage: string | null;
  /** `drain`, or `failover` from the start or once a failover escalated it (its moves then say so). */
  cause: DrainCause;
  /** The node's REVOKEs given up unacknowledged before this drain started (its view counts those after). */
  readonly unackedBefore: number;
  readonly actor: string;
  state: DrainState;
  readonly total: number;
  moved: number;
  failed: number;
  /** The node's sessions that ended (closed, expired, terminated; here or on another director) while it was in progress. */
  ended: number;
  /** Of `moved`, those moved off the node by something else (an operator's migrate, another director). */
  movedByOthers: number;
  readonly startedAt: number;
  readonly deadlineAt: number | null;
  migratingSince: number | null;
  finishedAt: number | null;
  /**
   * The node's sessions when the drain finished (taken again when its last batch settles after the
   * finish): a finished drain's figures stay what they were, whatever the node receives later.
   */
  remainingAtFinish: number | null;
  lastError: string | null;
  budget: number;
  lastTick: number;
  lastPublished: number;
  readonly inFlight: Set<string>;
  readonly attempts: Map<string, number>;
  readonly gaveUp: Set<string>;
  /**
   * Where the previous tick stopped in its walk over the node's sessions: the next tick goes on from there
   * rather than walking again past the sessions in flight. Null: start a new pass.
   */
  cursor: OwnerWalk | null;
  /** A refill of the places of settled batches, waiting for its turn of the event loop (see #refillSoon). */
  refill: NodeJS.Immediate | null;
}

const KEEP_FINISHED = 100;
/** How often (ms) a drain asks the store again for the node's sessions (#holdsAll) while that cannot settle. */
const HOLD_CHECK_EVERY_MS = 1000;
/** Sessions per migration batch (one store wait per step for all of them). */
const BATCH = 256;
/**
 * Table slots a running drain looks at per tick at most, in its walk over the node's sessions: bounds a
 * tick's work when the node's sessions are few among many (a slot costs a record read when it holds one).
 */
const SCAN_SLOTS = 65_536;

export class DrainCoordinator {
  readonly #o: Required<DrainOptions>;
  readonly #d: DrainDeps;
  readonly #drains = new Map<string, Drain>();
  /** Drains other directors run, as their shared records last said (bounded; oldest dropped first). */
  readonly #remote = new Map<string, DrainView>();
  #timer: NodeJS.Timeout | null = null;
  /** When the previous tick ran (monotonic ms): how late a tick comes is the event loop's lag. */
  #lastTickAt = 0;
  /** The share of `rate` the previous tick let drains move at (a tenth while the event loop ran late). */
  #share = 1;

  constructor(opts: DrainOptions, deps: DrainDeps) {
    this.#o = { attempts: 3, tickMs: 20, directorId: 'director', publishEveryMs: 1000, maxLoopLagMs: 0, ...opts };
    this.#d = deps;
    // Ends counted as they happen: a count made by subtraction (total − moved − remaining) took the
    // sessions another drain or director moved off the node, or an operator's migrate, for ends. Those
    // moves count as moved (the drain's own are counted as they settle, #done), so that total = moved +
    // failed + ended + remaining whoever moved them.
    deps.ownership.onTransition((_rec, note) => {
      if (note.fromOwner === null || this.#drains.size === 0) return;
      // Only ends and moves to another node count (a drain's freezes and resumes pass here at no cost).
      const ended = note.toOwner === null;
      if (!ended && (note.event !== LifecycleEvent.TRANSFER || note.toOwner === note.fromOwner)) return;
      const d = this.#active(note.fromOwner);
      if (d === undefined) return;
      if (ended) d.ended++;
      else if (note.cause !== d.cause) {
        d.moved++;
        d.movedByOthers++; // not the drain's own pace (rate, ETA)
      }
    });
  }

  /**
   * Starts draining `node`. A drain already running for it is returned as it is — except that a failover
   * of a node whose drain is still waiting (mode `wait`) makes that drain migrate its sessions now
   * (`escalated`): a failover never waits; and a drain in mode `migrate` asked for then makes it migrate
   * now too, as its deadline would (`escalated`; its cause stays `drain`).
   */
  start(node: string, req: { mode: DrainMode; deadlineS: number; cause: DrainCause; actor: string; stopAdmissions?: boolean }): { view: DrainView; created: boolean; escalated?: boolean } {
    const running = this.#active(node);
    // A drain, and an operator's failover, stop the node taking new sessions (marked draining until an
    // undrain); an automatic failover leaves that to the node's health, which brings it back by itself.
    const stopAdmissions = req.cause === 'drain' || req.stopAdmissions === true;
    const now = this.#d.clock.now();
    if (running !== undefined && running.state === 'waiting' && req.cause === 'failover') {
      if (stopAdmissions) {
        this.#d.setDraining(node, true);
        running.stopsAdmissions = true;
      }
      // From here its moves are the failover's: audited with cause failover (the id stays the drain's).
      running.cause = 'failover';
      return this.#migrateNow(running, now, req.actor, 'failover: the waiting drain migrates its sessions now');
    }
    if (running !== undefined && running.state === 'waiting' && req.cause === 'drain' && req.mode === DrainMode.MIGRATE) {
      return this.#migrateNow(running, now, req.actor, 'drain: the waiting drain migrates its sessions now (a migrate drain was asked for)');
    }
    if (running !== undefined) {
      // A drain (or an operator's failover) asked for while a failover of the node runs is that failover —
      // and the node still stops taking new sessions, as asked.
      if (stopAdmissions && running.cause === 'failover') {
        this.#d.setDraining(node, true);
        running.stopsAdmissions = true;
      }
      return { view: this.#view(running), created: false };
    }
    // A deadline past a year is refused by the admin API and the CLI; here it is bounded so that no date
    // made from it is invalid (a drain record with one could not be shown or published).
    const deadlineS = Number.isFinite(req.deadlineS) ? Math.min(Math.max(0, req.deadlineS), MAX_DEADLINE_S) : MAX_DEADLINE_S;
    const d: Drain = {
      id: `${req.cause === 'failover' ? 'fo' : 'dr'}-${randomBytes(6).toString('hex')}`,
      node,
      mode: req.mode,
      cause: req.cause,
      unackedBefore: this.#d.ownership.revokesTo(node).unacknowledged,
      actor: req.actor,
      state: req.mode === DrainMode.WAIT ? 'waiting' : 'running',
      total: this.#d.core.table.countByOwner(node),
      moved: 0,
      failed: 0,
      ended: 0,
      movedByOthers: 0,
      startedAt: now,
      deadlineAt: req.mode === DrainMode.WAIT ? now + deadlineS * 1000 : null,
      migratingSince: req.mode === DrainMode.WAIT ? null : now,
      finishedAt: null,
      remainingAtFinish: null,
      lastError: null,
      budget: 0,
      lastTick: now,
      lastPublished: now,
      inFlight: new Set(),
      attempts: new Map(),
      gaveUp: new Set(),
      cursor: null,
      refill: null,
      stopsAdmissions: stopAdmissions,
      toldUnsettled: false,
      heldAsOf: -1,
      asking: false,
      askAfter: 0,
      unheld: 0,
      holdMessage: null,
    };
    if (stopAdmissions) this.#d.setDraining(node, true);
    this.#drains.set(d.id, d);
    this.#trim();
    this.#d.logger.info({ drain: d.id, node, mode: d.mode, cause: d.cause, total: d.total, actor: req.actor }, 'drain started');
    this.#ensureTimer();
    const view = this.#view(d);
    this.#d.publish?.(view);
    return { view, created: true };
  }

  /** A waiting drain escalated: it migrates its sessions from now on (said, and shared). */
  #migrateNow(d: Drain, now: number, actor: string, message: string): { view: DrainView; created: boolean; escalated: true } {
    d.state = 'running';
    d.mode = DrainMode.MIGRATE; // its record says what it does now (deadline_at keeps the wait's deadline)
    d.migratingSince = now;
    d.lastTick = now;
    this.#d.logger.info({ drain: d.id, node: d.node, actor }, message);
    const view = this.#view(d);
    this.#d.publish?.(view);
    return { view, created: false, escalated: true };
  }

  /** Stops any drain of `node` and lets it take new sessions again. Moved sessions stay where they are. */
  undrain(node: string): DrainView | undefined {
    const d = this.#active(node);
    if (d !== undefined) this.#cancel(d, 'cancelled: the node was undrained');
    this.#d.setDraining(node, false);
    return d === undefined ? undefined : this.#view(d);
  }

  /** Whether a drain of `node` in progress here took it out of admission. */
  stopsAdmissions(node: string): boolean {
    return this.#active(node)?.stopsAdmissions === true;
  }

  /**
   * Stops a drain of `node` running here (cancelled) without touching the node's state: another director
   * undrained it (the state is shared already), its automatic failover stopped. `why` is the record's
   * `last_error`, so that whoever follows it reads why it stopped.
   */
  cancel(node: string, why: string): DrainView | undefined {
    const d = this.#active(node);
    if (d === undefined) return undefined;
    this.#cancel(d, why);
    return this.#view(d);
  }

  #cancel(d: Drain, why: string): void {
    if (d.state !== 'waiting' && d.state !== 'running') return;
    d.lastError = why;
    this.#finish(d, 'cancelled');
  }

  /**
   * A drain record another director shared (`value`), or its deletion (`null`: the record went with that
   * director's lease — a drain still in progress then shows `abandoned`). Our own records are ignored.
   */
  applyShared(id: string, value: Record<string, unknown> | null): void {
    if (value === null) {
      const prev = this.#remote.get(id);
      if (prev !== undefined && inProgress(prev)) this.#remote.set(id, { ...prev, state: 'abandoned', eta_s: null });
      return;
    }
    const view = parseDrainView(value);
    if (view === null || view.director === this.#o.directorId) return;
    this.#remote.delete(id);
    this.#remote.set(id, view);
    while (this.#remote.size > KEEP_FINISHED) {
      const oldest = this.#remote.keys().next();
      if (oldest.done === true) break;
      this.#remote.delete(oldest.value);
    }
  }

  /** A drain of `node` in progress on another director, as last shared. */
  activeElsewhere(node: string): DrainView | undefined {
    for (const d of this.#remote.values()) if (d.node === node && inProgress(d)) return d;
    return undefined;
  }

  /** A drain of this director or, with a shared store, of another one. */
  get(id: string): DrainView | undefined {
    const d = this.#drains.get(id);
    return d === undefined ? this.#remote.get(id) : this.#view(d);
  }

  /** Every drain this director knows, its own and other directors', oldest first. */
  list(): DrainView[] {
    return [...[...this.#drains.values()].map((d) => this.#view(d)), ...this.#remote.values()].sort((a, b) => a.started_at.localeCompare(b.started_at));
  }

  /**
   * The dry run: where the node's sessions would go now (the ring as it is when the call starts), moving
   * nothing. Every session is counted (per target node, and those with no other node to go to); the
   * sessions themselves are listed a page at a time, in id order after `after`. The count walks the
   * table in slices of at most PLAN_SLICE_MS (or PLAN_SLICE_SLOTS slots), giving the event loop back
   * between them, so that a dry run over a million sessions never holds forwarding up for long: a session
   * admitted or ended while it counts may or may not be in the counts.
   */
  async plan(node: string, page: { readonly limit: number; readonly after?: string; readonly signal?: AbortSignal }): Promise<DrainPlanView> {
    page.signal?.throwIfAborted();
    const { table } = this.#d.core;
    const ring = this.#d.core.ring;
    const clock = this.#d.clock;
    const listed = table.list({ owner: node, limit: page.limit, ...(page.after !== undefined ? { after: page.after } : {}) });
    const counts = new PlanCounts(node, ring);
    // A walk may meet a session twice while the table changes. The sessions met (by the walk's number
    // for each: no record is made for a count) are kept in many small sets, by bytes from all over the
    // id: one set of a million stalls the loop for tens of ms each time it grows (measured: 13, 23, 47 ms
    // at 65,536, 131,072 and 262,144 records).
    const seen = Array.from({ length: PLAN_SEEN_SHARDS }, () => new Set<number>());
    const walk = table.walkOwner(node);
    const id = new Uint8Array(16); // the shard and the ring's pick read it
    while (!walk.done) {
      const until = clock.now() + PLAN_SLICE_MS;
      const budget = { slots: PLAN_SLICE_SLOTS };
      for (let met = walk.nextId(budget, id); met !== -1; met = walk.nextId(budget, id)) {
        const shard = seen[(id[0]! ^ id[3]! ^ id[6]! ^ id[9]! ^ id[12]! ^ id[15]!) & (PLAN_SEEN_SHARDS - 1)]!;
        if (!shard.has(met)) {
          shard.add(met);
          counts.add(id);
        }
        if (clock.now() >= until) break;
      }
      if (!walk.done) {
        await new Promise((resolve) => setImmediate(resolve));
        // The one who asked went away (its HTTP connection closed): the rest of the walk is for no one.
        page.signal?.throwIfAborted();
      }
    }
    const items = listed.items;
    const last = items[items.length - 1];
    return {
      node,
      sessions: counts.sessions,
      byTarget: counts.byTarget,
      unplaceable_count: counts.unplaceable,
      ...planPage(node, items, ring),
      next_cursor: listed.more && last !== undefined ? last.id : null,
    };
  }

  /** Whether a drain or failover of `node` is in progress. */
  active(node: string): DrainView | undefined {
    const d = this.#active(node);
    return d === undefined ? undefined : this.#view(d);
  }

  close(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    for (const d of this.#drains.values()) {
      if (d.refill !== null) clearImmediate(d.refill);
      d.refill = null;
    }
  }

  #active(node: string): Drain | undefined {
    for (const d of this.#drains.values()) if (d.node === node && (d.state === 'waiting' || d.state === 'running')) return d;
    return undefined;
  }

  #ensureTimer(): void {
    if (this.#timer !== null) return;
    this.#lastTickAt = this.#d.clock.now();
    this.#timer = setInterval(() => this.#tick(), this.#o.tickMs);
    this.#timer.unref();
  }

  #tick(): void {
    const now = this.#d.clock.now();
    // Read every tick (the meter measures since its previous call), decided on only by running drains.
    // How late this tick came: a turn of the event loop that long kept the sockets unread. Not the loop's
    // utilization: a drain running flat out keeps the loop busy while every turn stays short (each batch
    // step takes a turn of its own), which starves nothing; a long turn — a slow step, or the process
    // descheduled on a contended machine — is what lets receive buffers overflow.
    const lag = this.#d.loopLag?.() ?? Math.max(0, now - this.#lastTickAt - this.#o.tickMs);
    this.#lastTickAt = now;
    const holdBack = this.#o.maxLoopLagMs > 0 && lag > this.#o.maxLoopLagMs;
    this.#share = holdBack ? 0.1 : 1;
    let busy = false;
    for (const d of this.#drains.values()) {
      if (d.state === 'waiting') {
        busy = true;
        if (this.#d.core.table.countByOwner(d.node) === 0 && this.#d.ownership.transfersInFlightTo(d.node) === 0 && this.#settled(d) && this.#holdsAll(d, now)) this.#finish(d, 'completed');
        else if (d.deadlineAt !== null && now >= d.deadlineAt) {
          d.state = 'running';
          d.mode = DrainMode.MIGRATE; // as #migrateNow: its record says what it does now
          d.migratingSince = now;
          d.lastTick = now;
          this.#d.logger.info({ drain: d.id, node: d.node }, 'drain deadline reached: migrating the rest');
        }
      } else if (d.state === 'running') {
        busy = true;
        if (holdBack) this.#d.stats.drainBackoffs++;
        // While the data path needs the thread, the drain goes on at a tenth of its rate (never stalls).
        this.#step(d, now, this.#share);
      }
      if ((d.state === 'waiting' || d.state === 'running') && now - d.lastPublished >= this.#o.publishEveryMs) {
        d.lastPublished = now;
        this.#d.publish?.(this.#view(d));
      }
    }
    if (!busy) this.close();
  }

  /** Starts what the budget and the free places allow; `refill`: along the current pass of the walk only. */
  #step(d: Drain, now: number, share: number, refill = false): void {
    const rate = this.#o.rate * share;
    d.budget = Math.min(d.budget + ((now - d.lastTick) / 1000) * rate, Math.max(1, rate * 0.1));
    d.lastTick = now;
    const table = this.#d.core.table;
    let batch: string[] = [];
    // The walk over the node's sessions goes on where the previous tick stopped, at most SCAN_SLOTS table
    // slots per tick. A pass that ends starts over while the node has sessions: those that failed a move
    // and stay are tried again, and one that a pass missed (it moved in the table under the walk) is met
    // by a later pass (see OwnerWalk). A pass may meet a session twice: those in hand are skipped.
    const scan = { slots: SCAN_SLOTS };
    // While every session the node has may be one in flight or given up, nothing could start: the walk
    // waits for the batches in flight to end instead of looking at slots for nothing.
    const left = table.countByOwner(d.node);
    const mayStart = d.inFlight.size === 0 || left > d.inFlight.size + d.gaveUp.size;
    let restarted = false;
    while (mayStart && d.budget >= 1 && d.inFlight.size < this.#o.concurrency) {
      if (d.cursor === null) {
        if (refill) break; // a new pass starts at a tick
        d.cursor = table.walkOwner(d.node);
      }
      const rec = d.cursor.next(scan);
      if (rec === undefined) {
        if (!d.cursor.done) break; // this tick's slots are spent
        d.cursor = null;
        if (refill || restarted || table.countByOwner(d.node) === 0) break; // one whole pass in this tick found nothing more to start
        restarted = true;
        continue;
      }
      const id = rec.id;
      if (d.inFlight.has(id) || d.gaveUp.has(id)) continue;
      d.budget -= 1;
      d.inFlight.add(id);
      batch.push(id);
      if (batch.length >= BATCH) {
        this.#launch(d, batch);
        batch = [];
      }
    }
    if (batch.length > 0) this.#launch(d, batch);
    // Not while another migration's transfer to this node is being written: it may land after the node
    // looked empty (the next tick moves it on).
    if (d.inFlight.size === 0 && this.#onlyGaveUpLeft(d) && this.#d.ownership.transfersInFlightTo(d.node) === 0 && this.#settled(d) && this.#holdsAll(d, now)) this.#finish(d, d.failed > 0 ? 'failed' : 'completed');
  }

  /**
   * Whether the table, where the drain looks for the node's sessions, holds every one the store has.
   * Always, until the table has had to leave out a session of the node that another director wrote (full
   * at session.max, or a stored transport it could not read: Ownership.notHeldOn). From then on the drain
   * asks the store how many of the node's sessions the table lacks before it completes (at most once a
   * second), and again only if the table leaves out another of the node's sessions. Sessions it lacks keep
   * a waiting drain waiting; a migrating drain fails once two answers in a row say so (one could count a
   * session that ended while the store was listing): this director cannot move them, and the node is not
   * empty. Nothing is loaded into the table (a listing is not in step with the watch).
   */
  #holdsAll(d: Drain, now: number): boolean {
    const notHeld = this.#d.ownership.notHeldOn(d.node);
    if (notHeld === 0 || d.heldAsOf === notHeld) return true;
    if (d.asking || now < d.askAfter) return false;
    d.asking = true;
    void this.#d.ownership.notHeldInStore(d.node).then(
      (r) => {
        d.asking = false;
        d.askAfter = this.#d.clock.now() + HOLD_CHECK_EVERY_MS;
        if (d.finishedAt !== null) return;
        // Logged when what it says changes, not at every ask; cleared only if it is this check's own.
        const tell = (message: string | null, log: () => void): void => {
          if (message !== null && d.lastError !== message) log();
          if (message !== null) d.lastError = message;
          else if (d.lastError === d.holdMessage) d.lastError = null;
          d.holdMessage = message;
        };
        if (!r.ok) {
          tell(`cannot list the node's sessions in the store (this director's table has had to leave some out, so the drain asks the store before it completes): ${r.message}`, () =>
            this.#d.logger.warn({ drain: d.id, node: d.node, err: r.message }, 'drain: cannot ask the store for the node\'s sessions this director does not hold; asked again every second'),
          );
          return;
        }
        const before = d.unheld;
        d.unheld = r.notHeld;
        if (r.notHeld > 0) {
          tell(`${r.notHeld} session(s) of ${d.node} are in the store but not in this director's table (session.max reached): this director cannot move them`, () =>
            this.#d.logger.warn({ drain: d.id, node: d.node, not_held: r.notHeld }, 'drain: the store has sessions on the node that this director\'s table cannot hold (session.max reached)'),
          );
          if (d.state === 'running' && before > 0) {
            d.failed += r.notHeld;
            this.#finish(d, 'failed');
          }
          return;
        }
        tell(null, () => undefined);
        d.heldAsOf = notHeld;
      },
      (err: unknown) => {
        d.asking = false;
        d.askAfter = this.#d.clock.now() + HOLD_CHECK_EVERY_MS;
        this.#d.logger.warn({ drain: d.id, node: d.node, err: String(err) }, 'drain: the check of the store for sessions of the node failed');
      },
    );
    return false;
  }

  /** Whether `d`'s node state is settled in the shared store (see DrainDeps.nodeStateSettled), when it stops admissions. */
  #settled(d: Drain): boolean {
    if (!d.stopsAdmissions || (this.#d.nodeStateSettled?.(d.node) ?? true)) return true;
    if (!d.toldUnsettled) {
      d.toldUnsettled = true;
      this.#d.logger.info({ drain: d.id, node: d.node }, 'drain: no session left on the node; it completes once the node\'s draining state is shared with the other directors');
    }
    return false;
  }

  /** Whether every session the node still has is one this drain gave up on (also when it has none). */
  #onlyGaveUpLeft(d: Drain): boolean {
    const table = this.#d.core.table;
    const left = table.countByOwner(d.node);
    if (left > d.gaveUp.size) return false;
    let gaveUpLeft = 0;
    for (const id of d.gaveUp) if (table.get(id)?.owner === d.node) gaveUpLeft++;
    return gaveUpLeft === left;
  }

  /** Moves a batch of the node's sessions (each step of the migration taken by the batch at once). */
  #launch(d: Drain, batch: readonly string[]): void {
    // An undrain or cancel while the batch is frozen stops it before its transfer (thawed in place).
    void this.#d.ownership.migrateBatch(batch, { cause: d.cause, actor: `${d.cause}:${d.id}`, proceed: () => d.finishedAt === null }).then(
      (results) => {
        for (const [i, id] of batch.entries()) this.#done(d, id, results[i] ?? { ok: false, session: id, reason: 'unavailable', message: 'no result' });
        this.#refillSoon(d);
      },
      (err: unknown) => {
        for (const id of batch) this.#done(d, id, { ok: false, session: id, reason: 'unavailable', message: String(err) });
      },
    );
  }

  /**
   * The places of a settled batch are taken again in the next turn of the event loop, not at the next
   * tick: a drain with the budget for it keeps its batches in flight (measured, 100,000 moves without
   * sockets at concurrency 4096: 2.1 s when places waited for a tick, the event loop idle a fifth of the
   * time between quiesces; 1.8 s with this). A turn of its own: the sockets are read first, and batches
   * that settle at once (every session refused) never chain in one turn. A refill only goes on along the
   * current pass of the walk; a new pass (where sessions that failed are tried again) starts at a tick,
   * so a session is retried no more often than before.
   */
  #refillSoon(d: Drain): void {
    if (d.refill !== null || d.state !== 'running') return;
    d.refill = setImmediate(() => {
      d.refill = null;
      if (d.state === 'running' && this.#timer !== null) this.#step(d, this.#d.clock.now(), this.#share, true);
    });
  }

  #done(d: Drain, id: string, r: MigrateResult): void {
    d.inFlight.delete(id);
    this.#d.stats.migrations.inc(migrationResultLabel(r));
    // Settled after the drain finished (an undrain, a cancel): the record shared with the other
    // directors says what became of its last batches too, once they are all in.
    if (d.finishedAt !== null && d.inFlight.size === 0) {
      queueMicrotask(() => {
        d.remainingAtFinish = this.#d.core.table.countByOwner(d.node) + d.unheld;
        this.#d.publish?.(this.#view(d));
      });
    }
    // Transferred but not resumed (the stale-freeze sweep resumes it on its new owner): it left the node.
    if (r.ok || r.transferred === true) {
      d.moved++;
      return;
    }
    if (r.reason === 'not_found' || r.reason === 'gone') return; // it ended by itself meanwhile
    const n = (d.attempts.get(id) ?? 0) + 1;
    d.attempts.set(id, n);
    // Busy (a transition in flight) and unavailable (the store or the fence, usually for a moment) are tried
    // again for longer than a refusal that will not change by itself.
    if ((r.reason === 'busy' || r.reason === 'unavailable') && n < this.#o.attempts * 10) return;
    if (r.reason !== 'busy' && n < this.#o.attempts && r.reason !== 'no_target') return;
    d.gaveUp.add(id);
    d.failed++;
    d.lastError = r.message;
    this.#d.logger.warn({ drain: d.id, session: id, reason: r.reason, message: r.message }, 'drain: session not moved');
  }

  #finish(d: Drain, state: DrainState): void {
    if (d.state !== 'waiting' && d.state !== 'running') return;
    d.state = state;
    d.finishedAt = this.#d.clock.now();
    d.remainingAtFinish = this.#d.core.table.countByOwner(d.node) + d.unheld;
    this.#d.stats.drainsFinished.inc(state);
    this.#d.logger.info({ drain: d.id, node: d.node, state, moved: d.moved, failed: d.failed }, 'drain finished');
    this.#d.publish?.(this.#view(d));
  }

  #trim(): void {
    const finished = [...this.#drains.values()].filter((d) => d.finishedAt !== null);
    for (const d of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) this.#drains.delete(d.id);
  }

  #view(d: Drain): DrainView {
    const now = d.finishedAt ?? this.#d.clock.now();
    const remaining = d.remainingAtFinish ?? this.#d.core.table.countByOwner(d.node) + d.unheld;
    const p = drainProgress({ total: d.total, moved: d.moved - d.movedByOthers, failed: d.failed, remaining, migratingSinceMs: d.migratingSince, nowMs: now, configuredRate: this.#o.rate });
    const wall = (mono: number): string => new Date(this.#d.clock.toWall(mono)).toISOString();
    const revokes = this.#d.ownership.revokesTo(d.node);
    return {
      id: d.id,
      node: d.node,
      mode: d.mode,
      cause: d.cause,
      state: d.state,
      director: this.#o.directorId,
      total: d.total,
      moved: d.moved,
      remaining,
      failed: d.failed,
      // Sessions that failed to move are still on the node, so they are part of `remaining`.
      ended: d.ended,
      rate: p.rate,
      eta_s: d.state === 'running' || d.state === 'waiting' ? p.eta_s : 0,
      revokes_pending: revokes.pending,
      revokes_unacknowledged: revokes.unacknowledged - d.unackedBefore,
      started_at: wall(d.startedAt),
      deadline_at: d.deadlineAt === null ? null : wall(d.deadlineAt),
      finished_at: d.finishedAt === null ? null : wall(d.finishedAt),
      last_error: d.lastError,
    };
  }
}

function inProgress(d: DrainView): boolean {
  return d.state === 'running' || d.state === 'waiting';
}

const DRAIN_STATES: readonly string[] = ['waiting', 'running', 'completed', 'failed', 'cancelled', 'abandoned'];

/** A drain record another director shared, checked field by field; null when it is not one. */
export function parseDrainView(v: Record<string, unknown>): DrainView | null {
  const str = (k: string): boolean => typeof v[k] === 'string';
  const strOrNull = (k: string): boolean => v[k] === null || typeof v[k] === 'string';
  const count = (k: string): boolean => typeof v[k] === 'number' && Number.isSafeInteger(v[k]) && (v[k] as number) >= 0;
  const ok =
    str('id') &&
    str('node') &&
    (v['mode'] === DrainMode.MIGRATE || v['mode'] === DrainMode.WAIT) &&
    (v['cause'] === 'drain' || v['cause'] === 'failover') &&
    typeof v['state'] === 'string' &&
    DRAIN_STATES.includes(v['state']) &&
    str('director') &&
    ['total', 'moved', 'remaining', 'failed', 'ended'].every(count) &&
    typeof v['rate'] === 'number' &&
    Number.isFinite(v['rate']) &&
    (v['eta_s'] === null || (typeof v['eta_s'] === 'number' && Number.isFinite(v['eta_s']))) &&
    str('started_at') &&
    strOrNull('deadline_at') &&
    strOrNull('finished_at') &&
    strOrNull('last_error');
  if (!ok) return null;
  return {
    id: v['id'] as string,
    node: v['node'] as string,
    mode: v['mode'] as DrainMode,
    cause: v['cause'] as DrainCause,
    state: v['state'] as DrainState,
    director: v['director'] as string,
    total: v['total'] as number,
    moved: v['moved'] as number,
    remaining: v['remaining'] as number,
    failed: v['failed'] as number,
    ended: v['ended'] as number,
    rate: v['rate'] as number,
    eta_s: v['eta_s'] as number | null,
    // Absent from the records of directors before these fields: 0.
    revokes_pending: count('revokes_pending') ? (v['revokes_pending'] as number) : 0,
    revokes_unacknowledged: count('revokes_unacknowledged') ? (v['revokes_unacknowledged'] as number) : 0,
    started_at: v['started_at'] as string,
    deadline_at: v['deadline_at'] as string | null,
    finished_at: v['finished_at'] as string | null,
    last_error: v['last_error'] as string | null,
  };
}
