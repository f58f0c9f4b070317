// Owns weighted rendezvous hashing over an immutable node-set snapshot: the owner of a session id, and
// the delta between two snapshots. Must never do I/O, read a clock, hold module-level mutable state, or change a built snapshot.
import type { Hasher } from './hash.js';

/** A node as the ring sees it. `weight` must be finite and > 0; shares are proportional to it. */
export interface RingNode {
  readonly id: string;
  readonly weight: number;
}

/** One session whose owner differs between two snapshots (`undefined` = no node in that snapshot). */
export interface RingMove {
  readonly sessionId: Uint8Array;
  readonly from: string | undefined;
  readonly to: string | undefined;
}

/**
 * An immutable snapshot of the node set. A membership change builds a new snapshot (`with` / `without`)
 * and the caller swaps one reference; nothing here is ever mutated.
 */
export interface Ring {
  /** The nodes, in the order given (buildRing order; `with` appends, `without` keeps the rest in order). Frozen. */
  readonly nodes: readonly RingNode[];
  /** The owner of `sessionId`: the node with the highest score; `undefined` when the ring is empty. */
  pick(sessionId: Uint8Array): string | undefined;
  /** Every node id, best first (`rank(s)[0] === pick(s)`). Allocates; not for the per-packet path. */
  rank(sessionId: Uint8Array): string[];
  /** The best node not in `exclude`; `undefined` when every node is excluded (or the ring is empty). */
  pickExcluding(sessionId: Uint8Array, exclude: ReadonlySet<string>): string | undefined;
  /** A new snapshot without the given ids. Unknown ids are ignored; removing nothing returns this snapshot. */
  without(ids: Iterable<string>): Ring;
  /** A new snapshot with `node` added. Throws if its id is already present or its weight is invalid. */
  with(node: RingNode): Ring;
}

// Score for node n and session s (the rendezvous contract; golden vectors in test/unit/ring.test.ts pin it):
//   seed_n = xxh64(utf8(n.id), 0)            computed once per snapshot
//   h      = xxh64(s, seed_n)
//   u      = (top53(h) + 0.5) / 2^53          top53(h) = h >> 11, so u is in the open interval (0, 1)
//   score  = -weight_n / ln(u)               highest wins; exact ties go to the smallest id (UTF-16 code-unit order)
// -w/ln(u) is the weighted rendezvous score: P(n wins) = w_n / sum(w), and removing a node only moves
// the sessions it owned.
const TWO_POW_52 = 2 ** 52;
const TWO_POW_53 = 2 ** 53;
const INV_TWO_POW_53 = 2 ** -53;
const UTF8 = new TextEncoder(); // stateless encoder; not mutable state

/**
 * ln(u) for u = (top53 + 0.5) / 2^53, computed without rounding u. The literal expression
 * `(top53 + 0.5) / 2^53` rounds whenever top53 ≥ 2^52 (a double has 53 significant bits), and for
 * top53 = 2^53 - 1 it rounds to exactly 1, making ln(u) = 0 and the score -Infinity. So the upper half
 * is computed from 1 - u = (2^53 - top53 - 0.5) / 2^53, which is exact, through log1p.
 * Always returns a finite negative number.
 */
function lnUnit(h: bigint): number {
  const top53 = Number(h >> 11n);
  if (top53 < TWO_POW_52) return Math.log((top53 + 0.5) * INV_TWO_POW_53);
  return Math.log1p(-(TWO_POW_53 - top53 - 0.5) * INV_TWO_POW_53);
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function checkWeight(node: RingNode): void {
  const w = node.weight;
  if (typeof w !== 'number' || !Number.isFinite(w) || w <= 0) {
    throw new Error(`ring: node "${node.id}" has invalid weight ${String(w)} (must be a finite number > 0)`);
  }
}

/** A node plus its precomputed seed. */
interface Entry {
  readonly node: RingNode;
  readonly seed: bigint;
}

function makeEntry(hasher: Hasher, node: RingNode): Entry {
  checkWeight(node);
  const frozen: RingNode = Object.freeze({ id: node.id, weight: node.weight });
  return { node: frozen, seed: hasher.h64(UTF8.encode(node.id), 0n) };
}

class Snapshot implements Ring {
  readonly nodes: readonly RingNode[];
  readonly #hasher: Hasher;
  readonly #entries: readonly Entry[];
  // Parallel arrays sorted by id ascending, so "first strictly greater score wins" breaks exact ties
  // toward the smallest id without a string comparison in the loop.
  readonly #ids: readonly string[];
  readonly #seeds: readonly bigint[];
  readonly #weights: Float64Array;

  constructor(hasher: Hasher, entries: readonly Entry[]) {
    this.#hasher = hasher;
    this.#entries = entries;
    this.nodes = Object.freeze(entries.map((e) => e.node));
    const sorted = [...entries].sort((a, b) => compareIds(a.node.id, b.node.id));
    this.#ids = Object.freeze(sorted.map((e) => e.node.id));
    this.#seeds = Object.freeze(sorted.map((e) => e.seed));
    this.#weights = Float64Array.from(sorted, (e) => e.node.weight);
    Object.freeze(this);
  }

  pick(sessionId: Uint8Array): string | undefined {
    return this.#best(sessionId, undefined);
  }

  pickExcluding(sessionId: Uint8Array, exclude: ReadonlySet<string>): string | undefined {
    return this.#best(sessionId, exclude);
  }

  rank(sessionId: Uint8Array): string[] {
    const n = this.#ids.length;
    const scores = new Float64Array(n);
    const order: number[] = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      scores[i] = this.#score(sessionId, i);
      order[i] = i;
    }
    // Score descending; equal scores by index ascending, i.e. id ascending (the arrays are id-sorted).
    order.sort((a, b) => scores[b]! - scores[a]! || a - b);
    return order.map((i) => this.#ids[i]!);
  }

  without(ids: Iterable<string>): Ring {
    const drop = new Set(ids);
    const kept = this.#entries.filter((e) => !drop.has(e.node.id));
    return kept.length === this.#entries.length ? this : new Snapshot(this.#hasher, kept);
  }

  with(node: RingNode): Ring {
    if (this.#entries.some((e) => e.node.id === node.id)) {
      throw new Error(`ring: duplicate node id "${node.id}"`);
    }
    return new Snapshot(this.#hasher, [...this.#entries, makeEntry(this.#hasher, node)]);
  }

  // The admission hot path: one hash, one log and one division per node, no allocation besides the bigints.
  #best(sessionId: Uint8Array, exclude: ReadonlySet<string> | undefined): string | undefined {
    const ids = this.#ids;
    let best = -1;
    let bestScore = -Infinity;
    for (let i = 0; i < ids.length; i++) {
      if (exclude !== undefined && exclude.has(ids[i]!)) continue;
      const s = this.#score(sessionId, i);
      if (s > bestScore) {
        bestScore = s;
        best = i;
      }
    }
    return best < 0 ? undefined : ids[best];
  }

  #score(sessionId: Uint8Array, i: number): number {
    return -this.#weights[i]! / lnUnit(this.#hasher.h64(sessionId, this.#seeds[i]!));
  }
}

/**
 * Builds an immutable snapshot. Throws on a duplicate id or an invalid weight: those are programming
 * errors (config validation rejects them first). An empty node list is allowed; `pick` then returns undefined.
 */
export function buildRing(hasher: Hasher, nodes: Iterable<RingNode>): Ring {
  const seen = new Set<string>();
  const entries: Entry[] = [];
  for (const node of nodes) {
    if (seen.has(node.id)) throw new Error(`ring: duplicate node id "${node.id}"`);
    seen.add(node.id);
    entries.push(makeEntry(hasher, node));
  }
  return new Snapshot(hasher, entries);
}

/**
 * Which of `sessionIds` would change owner going from `before` to `after` (katran style: the delta is
 * returned, nothing is applied). Sessions whose owner is the same in both are left out; `from`/`to`
 * are `undefined` when that snapshot is empty. Order follows `sessionIds`.
 */
export function ringDelta(before: Ring, after: Ring, sessionIds: Iterable<Uint8Array>): RingMove[] {
  const moves: RingMove[] = [];
  if (before === after) return moves;
  for (const sessionId of sessionIds) {
    const from = before.pick(sessionId);
    const to = after.pick(sessionId);
    if (from !== to) moves.push({ sessionId, from, to });
  }
  return moves;
}
