// Local ports recently given up by transparent forwarding, per node.
//
// With `backend.encapsulation: none` each session sends from its own upstream socket, and a backend keys
// its per-client state by that socket's address. When a session ends, its socket closes and the kernel
// may hand the same ephemeral port to the next session's socket; if that session goes to the same node
// while the node still holds the old client's state for the address (an OpenVPN server does until its
// keepalive ends it), the node takes the new client for the old one: OpenVPN refuses it ("TLS object CN
// attempted to change", AUTH_FAILED, and the client exits); a protocol that does not authenticate
// would hand one client's state to another. So a port a session gave up toward a node is not used
// toward that node again for `holdMs`; toward other nodes it is.
//
// Pure: the caller passes the time. Each node's map is kept in release order (a release deletes before
// it sets), so expired entries are the oldest and pruning stops at the first live one. A node's map holds
// at most one entry per port (65,536).

/** backend.port_quarantine_s by default: above the 240 s after which an OpenVPN server with `keepalive 10 120` drops a silent client. */
export const DEFAULT_PORT_QUARANTINE_MS = 300_000;

export class PortQuarantine {
  readonly holdMs: number;
  readonly #byNode = new Map<string, Map<number, number>>();

  constructor(holdMs: number) {
    if (!(holdMs >= 0)) throw new RangeError(`holdMs must be ≥ 0, got ${holdMs}`);
    this.holdMs = holdMs;
  }

  /** `port` was given up toward `node` at `now`. */
  release(node: string, port: number, now: number): void {
    if (this.holdMs === 0) return;
    let m = this.#byNode.get(node);
    if (m === undefined) this.#byNode.set(node, (m = new Map()));
    m.delete(port);
    m.set(port, now);
    this.#prune(node, m, now);
  }

  /** Whether `port` may not be used toward `node` at `now`. */
  held(node: string, port: number, now: number): boolean {
    const at = this.#byNode.get(node)?.get(port);
    return at !== undefined && now - at < this.holdMs;
  }

  /** Ports held now, over all nodes (expired entries are dropped first). */
  size(now: number): number {
    let n = 0;
    for (const [node, m] of this.#byNode) n += this.#prune(node, m, now);
    return n;
  }

  #prune(node: string, m: Map<number, number>, now: number): number {
    for (const [port, at] of m) {
      if (now - at < this.holdMs) break;
      m.delete(port);
    }
    if (m.size === 0) this.#byNode.delete(node);
    return m.size;
  }
}
