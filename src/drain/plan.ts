// The drain plan: which sessions of a node would go where, computed from a ring snapshot without moving
// anything (katran style: return the delta, never apply it). Pure: no I/O, no clock.
import type { Ring } from '../ring/ring.js';

/** The longest deadline of a `wait` drain, in seconds (a year): the admin API, the CLI and the coordinator hold to it. */
export const MAX_DEADLINE_S = 31_536_000;

export interface PlanSession {
  readonly id: string;
  readonly idBytes: Uint8Array;
  readonly owner: string;
  readonly version: bigint;
}

export interface PlannedMove {
  readonly session: string;
  readonly from: string;
  readonly to: string;
  readonly version: bigint;
}

export interface DrainPlan {
  readonly node: string;
  readonly moves: PlannedMove[];
  /** Sessions with no other eligible node to go to. */
  readonly unplaceable: string[];
  /** Moves per target node. */
  readonly byTarget: Record<string, number>;
}

/**
 * Where each session of `node` would go: the ring's best node other than `node` (the ring holds only
 * nodes that take new sessions). Sessions are listed in id order.
 */
export function planDrain(node: string, sessions: Iterable<PlanSession>, ring: Ring): DrainPlan {
  const sorted = [...sessions].filter((s) => s.owner === node).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const counts = new PlanCounts(node, ring);
  for (const s of sorted) counts.add(s.idBytes);
  return { node, ...planPage(node, sorted, ring), byTarget: counts.byTarget };
}

/** The moves of a page of `node`'s sessions (given in the order to list them) and those with nowhere to go. */
export function planPage(node: string, page: readonly PlanSession[], ring: Ring): { moves: PlannedMove[]; unplaceable: string[] } {
  const exclude = new Set([node]);
  const moves: PlannedMove[] = [];
  const unplaceable: string[] = [];
  for (const s of page) {
    const to = ring.pickExcluding(s.idBytes, exclude);
    if (to === undefined) unplaceable.push(s.id);
    else moves.push({ session: s.id, from: node, to, version: s.version });
  }
  return { moves, unplaceable };
}

/**
 * Where `node`'s sessions would go, counted one session at a time (a caller can spread a count over
 * many turns): per target node, and those with no other node to go to.
 */
export class PlanCounts {
  readonly node: string;
  /** Sessions counted. */
  sessions = 0;
  unplaceable = 0;
  /** No prototype: a node may be named like one of Object's properties (`constructor`, `__proto__`). */
  readonly byTarget: Record<string, number> = Object.create(null) as Record<string, number>;
  readonly #ring: Ring;
  readonly #exclude: ReadonlySet<string>;

  constructor(node: string, ring: Ring) {
    this.node = node;
    this.#ring = ring;
    this.#exclude = new Set([node]);
  }

  /** Counts the session whose id bytes are `id`. */
  add(id: Uint8Array): void {
    this.sessions++;
    const to = this.#ring.pickExcluding(id, this.#exclude);
    if (to === undefined) this.unplaceable++;
    else this.byTarget[to] = (this.byTarget[to] ?? 0) + 1;
  }
}

/** Progress figures of a drain (pure arithmetic for the admin API and the status page). */
export function drainProgress(p: {
  total: number;
  moved: number;
  failed: number;
  remaining: number;
  migratingSinceMs: number | null;
  nowMs: number;
  configuredRate: number;
}): { rate: number; eta_s: number | null } {
  const elapsed = p.migratingSinceMs === null ? 0 : (p.nowMs - p.migratingSinceMs) / 1000;
  const observed = elapsed > 0.5 ? p.moved / elapsed : 0;
  const rate = observed > 0 ? observed : p.migratingSinceMs === null ? 0 : p.configuredRate;
  if (p.remaining === 0) return { rate: round1(rate), eta_s: 0 };
  if (rate <= 0) return { rate: 0, eta_s: null };
  return { rate: round1(rate), eta_s: round1(p.remaining / rate) };
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
