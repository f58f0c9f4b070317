// Node membership: each configured node's state and health, and the ring snapshot built from the nodes
// that may take new sessions. Swapping the snapshot never moves an existing session (invariant 3).
import { buildRing, type Ring } from '../ring/ring.js';
import type { Hasher } from '../ring/hash.js';
import type { Transport } from '../codec/types.js';

export const NodeState = { ACTIVE: 'active', DRAINING: 'draining' } as const;
export type NodeState = (typeof NodeState)[keyof typeof NodeState];
export const NodeHealth = { UNKNOWN: 'unknown', HEALTHY: 'healthy', UNHEALTHY: 'unhealthy' } as const;
export type NodeHealth = (typeof NodeHealth)[keyof typeof NodeHealth];

export interface MemberNode {
  readonly id: string;
  readonly address: Transport;
  readonly weight: number;
  state: NodeState;
  health: NodeHealth;
  /**
   * Set while this director holds the node active but cannot show that the cluster does (a cluster only:
   * its undrain is on its way to the shared store, or the store refused it and it is written again later):
   * the node takes no new sessions meanwhile (SharedNodeStates.placementsUnproven). Its state stays.
   */
  placementHeld: boolean;
}

/**
 * Takes new sessions: active and healthy (DESIGN §4) — with health checks on (`checked`), a node not yet
 * answered (unknown) takes none: placed there, a session stays on a node that may be dead; without health
 * checks, any node not known to be unhealthy — and not held out of placements (MemberNode.placementHeld).
 */
export function eligible(n: MemberNode, checked = false): boolean {
  return n.state === NodeState.ACTIVE && !n.placementHeld && (checked ? n.health === NodeHealth.HEALTHY : n.health !== NodeHealth.UNHEALTHY);
}

export class Membership {
  readonly #hasher: Hasher;
  readonly #nodes = new Map<string, MemberNode>();
  #ring: Ring;
  readonly #onRing: (ring: Ring) => void;
  /** Whether health checks run: then only healthy nodes take new sessions (see eligible). */
  readonly #checked: boolean;

  constructor(hasher: Hasher, nodes: readonly { id: string; address: Transport; weight: number }[], onRing: (ring: Ring) => void = () => {}, opts: { readonly healthChecked?: boolean } = {}) {
    this.#hasher = hasher;
    this.#checked = opts.healthChecked === true;
    for (const n of nodes) this.#nodes.set(n.id, { ...n, state: NodeState.ACTIVE, health: NodeHealth.UNKNOWN, placementHeld: false });
    this.#onRing = onRing;
    this.#ring = this.#build();
  }

  get ring(): Ring {
    return this.#ring;
  }
  get(id: string): MemberNode | undefined {
    return this.#nodes.get(id);
  }
  list(): MemberNode[] {
    return [...this.#nodes.values()];
  }
  /** Whether packets of existing sessions may go to this node. */
  reachable(id: string): boolean {
    const n = this.#nodes.get(id);
    return n !== undefined && n.health !== NodeHealth.UNHEALTHY;
  }

  setHealth(id: string, health: NodeHealth): boolean {
    return this.#change(id, 'health', health);
  }

  /** Holds `id` out of new placements, or lets it take them again (see MemberNode.placementHeld); whether that changed anything. */
  setPlacementHeld(id: string, held: boolean): boolean {
    return this.#change(id, 'placementHeld', held);
  }

  /** Whether `id` is in the ring: it takes new sessions now. */
  takesSessions(id: string): boolean {
    return this.#ring.nodes.some((n) => n.id === id);
  }

  setState(id: string, state: NodeState): boolean {
    return this.#change(id, 'state', state);
  }

  /** Sets `key` of node `id` to `value` and rebuilds the ring; whether that changed anything (an unknown node: no). */
  #change<K extends 'state' | 'health' | 'placementHeld'>(id: string, key: K, value: MemberNode[K]): boolean {
    const n = this.#nodes.get(id);
    if (n === undefined || n[key] === value) return false;
    n[key] = value;
    this.#rebuild();
    return true;
  }

  #build(): Ring {
    return buildRing(this.#hasher, this.#eligibleNodes());
  }
  #eligibleNodes(): { id: string; weight: number }[] {
    return [...this.#nodes.values()].filter((n) => eligible(n, this.#checked)).map((n) => ({ id: n.id, weight: n.weight }));
  }
  /**
   * A new ring only when the nodes that take sessions changed: a change that leaves them as they were (a
   * node healthy after unknown with health checks off, one draining while unhealthy) keeps the ring, whose
   * identity says "the same nodes" (the automatic failover's backoff retries at once on a new ring).
   */
  #rebuild(): void {
    const next = this.#eligibleNodes();
    const now = this.#ring.nodes;
    if (next.length === now.length && next.every((n) => now.some((m) => m.id === n.id && m.weight === n.weight))) return;
    this.#ring = buildRing(this.#hasher, next);
    this.#onRing(this.#ring);
  }
}
