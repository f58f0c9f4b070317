// Node states shared by the directors of a cluster (`nodes/<id>` in the shared store): which of the
// store's events a director applies, so that every director ends with the state the store committed
// last. Pure: no I/O, no clock; the shell writes the entries and feeds back the store's answers and events.
//
// A director applies its own change at once (an operator's drain stops admissions now, not after a
// round trip) and writes it; the store's watch then delivers every write, its own included, in commit
// order, each with its revision. Applying them all as they come would let the echo of an older own write
// undo a newer local one (drain, undrain, drain: the undrain's echo would cancel the second drain);
// ignoring every own echo instead leaves two directors that change one node at once disagreeing for good
// (each ends with the other's write, whichever the store committed last). The rule here: while a write of
// this director for a node is in flight (written, and its revision not yet passed by what the store
// delivered), nothing else for that node is applied — the write comes later in commit order than anything
// delivered meanwhile, so it decides. A write is settled by its echo, or by an event at its revision or
// later once its answer gave that revision (after a gap the store could not replay, the store delivers
// only the entry as it is: the echo may never come), or by a failure the store reported. When the last
// write in flight settles, the latest state delivered is the one to hold (its own echo, or another
// director's later write). A write reported failed that the store committed anyway (an answer lost in a
// timeout) comes as an event without a write in flight: applied, as it comes, in commit order.
import { NodeState } from './membership.js';

/** What a director writes under `nodes/<id>` (JSON). `write` names the write for its echo. */
export interface SharedNodeValue {
  readonly state: NodeState;
  readonly director: string;
  readonly write: string;
}

/** A state to apply, and the director that wrote it (another director's undrain cancels a drain here). */
export interface SharedNodeChange {
  readonly state: NodeState;
  readonly director: string | null;
}

interface Delivered extends SharedNodeChange {
  readonly revision: bigint;
}

export class SharedNodeStates {
  readonly #director: string;
  /** This process's writes are `${#incarnation}-${n}`: a restarted director never mistakes a predecessor's write for its own. */
  readonly #incarnation: string;
  #next = 0;
  /** Per node, this director's writes in flight: write → its revision once the store answered (null before). */
  readonly #inFlight = new Map<string, Map<string, bigint | null>>();
  /** Per node, the latest node state the store delivered. */
  readonly #last = new Map<string, Delivered>();

  constructor(director: string, incarnation: string) {
    this.#director = director;
    this.#incarnation = incarnation;
  }

  /** A local change of `node` to `state`: the value to write (the caller has applied the state already). */
  wrote(node: string, state: NodeState): SharedNodeValue {
    const write = `${this.#incarnation}-${++this.#next}`;
    let m = this.#inFlight.get(node);
    if (m === undefined) this.#inFlight.set(node, (m = new Map()));
    m.set(write, null);
    return { state, director: this.#director, write };
  }

  /** The store refused or lost the write (`wrote`'s value): no echo is waited for any more. */
  failed(node: string, value: SharedNodeValue): void {
    this.#settle(node, value.write);
  }

  /**
   * The store took the write (`wrote`'s value) at `revision`. If what it delivered already reached that
   * revision (the echo came first, or a gap left it out), the write is settled now: then, with no other in
   * flight, the latest state delivered is returned, to apply; else null.
   */
  answered(node: string, value: SharedNodeValue, revision: bigint): SharedNodeChange | null {
    const m = this.#inFlight.get(node);
    if (m === undefined || !m.has(value.write)) return null;
    const last = this.#last.get(node);
    if (last === undefined || last.revision < revision) {
      m.set(value.write, revision); // its echo, or an event past it, settles it
      return null;
    }
    this.#settle(node, value.write);
    return this.#inFlight.has(node) ? null : { state: last.state, director: last.director };
  }

  /** Whether `node` has a write of this director in flight. */
  inFlight(node: string): boolean {
    return this.#inFlight.has(node);
  }

  /**
   * The store delivered `value` for `node` at `revision` (in commit order): the state to apply, or null
   * when it is not a node state (no known state in it) or a write of this director in flight decides later.
   */
  event(node: string, value: Readonly<Record<string, unknown>>, revision: bigint): SharedNodeChange | null {
    const state = value['state'];
    const director = typeof value['director'] === 'string' ? value['director'] : null;
    if (director === this.#director && typeof value['write'] === 'string') this.#settle(node, value['write']);
    if (state !== NodeState.ACTIVE && state !== NodeState.DRAINING) return null;
    this.#last.set(node, { state, director, revision });
    const m = this.#inFlight.get(node);
    if (m !== undefined) {
      // Writes the store answered at this revision or before: past (their echo was left out of a gap).
      for (const [write, at] of m) if (at !== null && at <= revision) m.delete(write);
      if (m.size === 0) this.#inFlight.delete(node);
    }
    return this.#inFlight.has(node) ? null : { state, director };
  }

  #settle(node: string, write: string): void {
    const m = this.#inFlight.get(node);
    if (m === undefined) return;
    m.delete(write);
    if (m.size === 0) this.#inFlight.delete(node);
  }
}
