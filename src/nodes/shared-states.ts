// Node states shared by the directors of a cluster (`nodes/<id>` in the shared store): which of the
// store's events a director applies, so that every director ends with the state the store committed
// last. Pure: no I/O, no clock; the shell writes the entries and feeds back the store's events.
//
// A director applies its own change at once (an operator's drain stops admissions now, not after a
// round trip) and writes it; the store's watch then delivers every write, its own included, in commit
// order. Applying them all as they come would let the echo of an older own write undo a newer local one
// (drain, undrain, drain: the undrain's echo would cancel the second drain); ignoring every own echo
// instead leaves two directors that change one node at once disagreeing for good (each ends with the
// other's write, whichever the store committed last). The rule here: while a write of this director for a
// node is in flight (written, its echo not seen, no failure reported), nothing else for that node is
// applied — the write will come later in commit order than anything the watch delivers meanwhile, so it
// decides; the echo of the last one in flight is applied like any event (it is the state committed last so
// far). A write whose failure was reported but that the store committed anyway (an answer lost in a
// timeout) arrives as an event without a write in flight: applied, as it comes, in commit order.
import { NodeState } from './membership.js';

/** What a director writes under `nodes/<id>` (JSON). `write` names the write for its echo. */
export interface SharedNodeValue {
  readonly state: NodeState;
  readonly director: string;
  readonly write: string;
}

export class SharedNodeStates {
  readonly #director: string;
  /** This process's writes are `${#incarnation}-${n}`: a restarted director never mistakes a predecessor's write for its own. */
  readonly #incarnation: string;
  #next = 0;
  /** Per node, this director's writes in flight (written, neither echoed nor reported failed). */
  readonly #inFlight = new Map<string, Set<string>>();

  constructor(director: string, incarnation: string) {
    this.#director = director;
    this.#incarnation = incarnation;
  }

  /** A local change of `node` to `state`: the value to write (the caller has applied the state already). */
  wrote(node: string, state: NodeState): SharedNodeValue {
    const write = `${this.#incarnation}-${++this.#next}`;
    let s = this.#inFlight.get(node);
    if (s === undefined) this.#inFlight.set(node, (s = new Set()));
    s.add(write);
    return { state, director: this.#director, write };
  }

  /** The store refused or lost the write (`wrote`'s value): no echo is waited for any more. */
  failed(node: string, value: SharedNodeValue): void {
    this.#settle(node, value.write);
  }

  /** Whether `node` has a write of this director in flight. */
  inFlight(node: string): boolean {
    return this.#inFlight.has(node);
  }

  /**
   * The store delivered `value` for `node` (in commit order): the state to apply, or null when it is not a
   * node state (no known state in it) or a write of this director in flight decides later.
   */
  event(node: string, value: Readonly<Record<string, unknown>>): NodeState | null {
    const state = value['state'];
    if (value['director'] === this.#director && typeof value['write'] === 'string') this.#settle(node, value['write']);
    if (state !== NodeState.ACTIVE && state !== NodeState.DRAINING) return null;
    return this.#inFlight.has(node) ? null : state;
  }

  #settle(node: string, write: string): void {
    const s = this.#inFlight.get(node);
    if (s === undefined) return;
    s.delete(write);
    if (s.size === 0) this.#inFlight.delete(node);
  }
}
