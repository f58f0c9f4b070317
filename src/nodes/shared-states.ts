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
// only the entry as it is: the echo may never come), or by a refusal the store reported. When the last
// write in flight settles, the latest state delivered is the one to hold (its own echo, or another
// director's later write). A write whose answer was lost (sent, outcome unknown: a timeout) stays in flight
// — it may have been committed after what is delivered meanwhile, and then it decides — until its echo, or
// until the shell gives up on it after a bound (`failed`: it cannot be committed so late); an echo that
// comes later still is applied like anyone's write, in commit order. A refused write, or one given up on,
// leaves the director's own state in place unless another write was delivered since it was made (the store
// holds that one, or a later one still to come): then that is applied.
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

interface Write {
  /** Its revision once the store answered; null before (or when the answer was lost). */
  at: bigint | null;
  /** The revision of the latest state delivered when it was made (-1 for none). */
  readonly since: bigint;
}

export class SharedNodeStates {
  readonly #director: string;
  /** This process's writes are `${#incarnation}-${n}`: a restarted director never mistakes a predecessor's write for its own. */
  readonly #incarnation: string;
  #next = 0;
  /** Per node, this director's writes in flight, by their `write` name. */
  readonly #inFlight = new Map<string, Map<string, Write>>();
  /** Per node, the latest node state the store delivered. */
  readonly #last = new Map<string, Delivered>();
  /** Per node, the state this director holds: its own latest write, or the latest state returned to apply. */
  readonly #held = new Map<string, NodeState>();
  /** Per node, the name of this director's latest write (`wrote`). */
  readonly #newest = new Map<string, string>();

  constructor(director: string, incarnation: string) {
    this.#director = director;
    this.#incarnation = incarnation;
  }

  /** A local change of `node` to `state`: the value to write (the caller has applied the state already). */
  wrote(node: string, state: NodeState): SharedNodeValue {
    const write = `${this.#incarnation}-${++this.#next}`;
    let m = this.#inFlight.get(node);
    if (m === undefined) this.#inFlight.set(node, (m = new Map()));
    m.set(write, { at: null, since: this.#last.get(node)?.revision ?? -1n });
    this.#held.set(node, state);
    this.#newest.set(node, write);
    return { state, director: this.#director, write };
  }

  /**
   * The write (`wrote`'s value) was not committed: the store refused it, or its answer was lost (sent,
   * outcome unknown) and a bound past the call's deadline has passed without its echo. Until then the
   * shell leaves a lost answer's write in flight: the store may have committed it after what is delivered
   * meanwhile, and then it decides (its echo settles it). With no other write in flight, a state delivered
   * since the write was made is returned, to apply (the store holds it or a later one); else null (the
   * director keeps its own state; also when the echo came first).
   */
  failed(node: string, value: SharedNodeValue): SharedNodeChange | null {
    const w = this.#inFlight.get(node)?.get(value.write);
    if (w === undefined) return null; // settled already (its echo came)
    this.#settle(node, value.write);
    const last = this.#last.get(node);
    if (this.#inFlight.has(node) || last === undefined || last.revision <= w.since) return null;
    return this.#apply(node, last);
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
      m.get(value.write)!.at = revision; // its echo, or an event past it, settles it
      return null;
    }
    this.#settle(node, value.write);
    return this.#inFlight.has(node) ? null : this.#apply(node, last);
  }

  /** The latest state of `node` the store delivered (whoever wrote it), or undefined before any. */
  delivered(node: string): NodeState | undefined {
    return this.#last.get(node)?.state;
  }

  /** Whether `node` has a write of this director in flight. */
  inFlight(node: string): boolean {
    return this.#inFlight.has(node);
  }

  /**
   * How a store write that places a session on `node` (an admission, a transfer to it) is guarded: the
   * latest revision at which the node's state may have been written for the write to go through
   * (EtcdStore.guardNodeViews). Undefined while the state this director holds for the node is the one the
   * store delivered last, with no write of its own in flight: then what the director's feed has delivered is
   * the guard. Otherwise — its own write on its way (the states delivered meanwhile wait: see the top of this
   * file), or a write of its own the store did not take, the director keeping its state — it places by a
   * state the store may not hold, and nothing is placed on the node until the two agree again: the revision
   * before the latest state delivered (0 with none: the node's state must never have been written). Except
   * when the store answered the latest of its writes in flight, an undrain, at revision R: the state it
   * holds is the store's at R, so R (nothing written since).
   */
  placeGuard(node: string): bigint | undefined {
    const m = this.#inFlight.get(node);
    const last = this.#last.get(node);
    if (m === undefined && this.#held.get(node) === last?.state) return undefined;
    // The write that set the state held: still in flight and answered (a node is placed on only when active).
    const newest = m?.get(this.#newest.get(node) ?? '');
    if (newest !== undefined && newest.at !== null && this.#held.get(node) === NodeState.ACTIVE) return newest.at;
    return last === undefined ? 0n : last.revision - 1n;
  }

  /**
   * Whether this director holds `node` active while placeGuard would refuse every placement on it: its
   * undrain not yet answered by the store, or refused (written again later) while the store holds another
   * state. The shell takes the node out of its ring meanwhile (Membership.setPlacementHeld), so that new
   * sessions are placed on another node instead of being refused. False once the store answered the
   * undrain (placeGuard then lets placements through, guarded by its revision).
   */
  placementsUnproven(node: string): boolean {
    if (this.#held.get(node) !== NodeState.ACTIVE) return false;
    const m = this.#inFlight.get(node);
    // Nothing in flight: unproven only when the store holds another state (a write of ours it refused).
    // With none at all the node is active everywhere, as every node starts.
    if (m === undefined) return (this.#last.get(node)?.state ?? NodeState.ACTIVE) !== NodeState.ACTIVE;
    const newest = m.get(this.#newest.get(node) ?? '');
    return newest === undefined || newest.at === null;
  }

  /** Whether the write `value` (wrote's) is still in flight: neither answered and echoed nor failed. */
  pending(node: string, value: SharedNodeValue): boolean {
    return this.#inFlight.get(node)?.has(value.write) === true;
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
    const delivered = { state, director, revision };
    this.#last.set(node, delivered);
    const m = this.#inFlight.get(node);
    if (m !== undefined) {
      // Writes the store answered at this revision or before: past (their echo was left out of a gap).
      for (const [write, w] of m) if (w.at !== null && w.at <= revision) m.delete(write);
      if (m.size === 0) this.#inFlight.delete(node);
    }
    return this.#inFlight.has(node) ? null : this.#apply(node, delivered);
  }

  /** `d` is the state to apply: the one this director holds from now on. */
  #apply(node: string, d: Delivered): SharedNodeChange {
    this.#held.set(node, d.state);
    return { state: d.state, director: d.director };
  }

  #settle(node: string, write: string): void {
    const m = this.#inFlight.get(node);
    if (m === undefined) return;
    m.delete(write);
    if (m.size === 0) this.#inFlight.delete(node);
  }
}
