// Health of nodes from active probe results, with rise/fall flap damping. Pure: no timers, no sockets, no
// clock (time comes in as `now`, monotonic ms), no logger. It never probes and never touches membership.
import { NodeHealth } from './membership.js';

/*
 * One tracker holds many nodes (keyed by node id), so the shell keeps a single object and the
 * thresholds are the same for every node.
 *
 * Rules (HAProxy's `rise`/`fall`):
 *   - a node starts UNKNOWN;
 *   - `rise` consecutive successes make it HEALTHY, `fall` consecutive failures make it UNHEALTHY
 *     (from UNKNOWN as well as from the other state); a timeout or a socket error is a failure;
 *   - a success resets the failure streak, a failure resets the success streak;
 *   - a result that does not complete a streak never changes the health.
 * So health flips only after at least `rise` (or `fall`) identical results in a row.
 */

export interface HealthTrackerOptions {
  /** Consecutive successes that make a node healthy (integer ≥ 1). */
  readonly rise: number;
  /** Consecutive failures that make a node unhealthy (integer ≥ 1). */
  readonly fall: number;
}

/** A node's health as the tracker sees it (a snapshot: later results do not change it). */
export interface HealthView {
  readonly health: NodeHealth;
  /** When the current health began (for UNKNOWN: when the node was added). */
  readonly since: number;
  /** When the health last changed; null while it never has. */
  readonly lastChange: number | null;
  /** Current streak of successes (0 when the last result was a failure). */
  readonly successes: number;
  /** Current streak of failures (0 when the last result was a success). */
  readonly failures: number;
}

export interface ProbeOutcome {
  /** True when this result changed the node's health. */
  readonly changed: boolean;
  readonly health: NodeHealth;
  readonly previous: NodeHealth;
  /** The streak this result extended (successes if ok, failures otherwise). */
  readonly consecutive: number;
}

interface Entry {
  health: NodeHealth;
  since: number;
  lastChange: number | null;
  successes: number;
  failures: number;
}

function threshold(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${name} must be an integer ≥ 1, got ${v}`);
  return v;
}

export class HealthTracker {
  readonly rise: number;
  readonly fall: number;
  readonly #nodes = new Map<string, Entry>();

  /** Throws RangeError when rise or fall is not an integer ≥ 1 (misuse, checked once). */
  constructor(opts: HealthTrackerOptions) {
    this.rise = threshold('rise', opts.rise);
    this.fall = threshold('fall', opts.fall);
  }

  /** Starts tracking a node as UNKNOWN since `now`; false (and no change) if it is already tracked. */
  add(nodeId: string, now: number): boolean {
    if (this.#nodes.has(nodeId)) return false;
    this.#nodes.set(nodeId, { health: NodeHealth.UNKNOWN, since: now, lastChange: null, successes: 0, failures: 0 });
    return true;
  }

  /** Stops tracking a node; false if it was not tracked. */
  remove(nodeId: string): boolean {
    return this.#nodes.delete(nodeId);
  }

  has(nodeId: string): boolean {
    return this.#nodes.has(nodeId);
  }

  ids(): string[] {
    return [...this.#nodes.keys()];
  }

  /**
   * Feeds one probe result (`ok` false for a failure, a timeout or a socket error). A node not yet
   * tracked is added at `now` first.
   */
  onProbeResult(nodeId: string, ok: boolean, now: number): ProbeOutcome {
    let e = this.#nodes.get(nodeId);
    if (e === undefined) {
      this.add(nodeId, now);
      e = this.#nodes.get(nodeId) as Entry;
    }
    const previous = e.health;
    let consecutive: number;
    let target: NodeHealth | undefined;
    if (ok) {
      e.failures = 0;
      consecutive = ++e.successes;
      // A node never probed before is healthy at its first answer: `rise` is how long one that failed
      // must answer before it takes sessions again (with health checks on, only healthy nodes take new ones).
      if (consecutive >= this.rise || previous === NodeHealth.UNKNOWN) target = NodeHealth.HEALTHY;
    } else {
      e.successes = 0;
      consecutive = ++e.failures;
      if (consecutive >= this.fall) target = NodeHealth.UNHEALTHY;
    }
    if (target === undefined || target === previous) return { changed: false, health: previous, previous, consecutive };
    e.health = target;
    e.since = now;
    e.lastChange = now;
    return { changed: true, health: target, previous, consecutive };
  }

  get(nodeId: string): HealthView | undefined {
    const e = this.#nodes.get(nodeId);
    return e === undefined ? undefined : { ...e };
  }

  /** Milliseconds since the node became unhealthy (for a failover grace period); 0 if it is not unhealthy. */
  unhealthyFor(nodeId: string, now: number): number {
    const e = this.#nodes.get(nodeId);
    if (e === undefined || e.health !== NodeHealth.UNHEALTHY) return 0;
    return Math.max(0, now - e.since);
  }
}
