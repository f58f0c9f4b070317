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

/** A held (node, port) pair and how long ago its port was given up. */
export interface HeldPort {
  readonly node: string;
  readonly port: number;
  readonly ageMs: number;
}

/**
 * What a director keeps in backend.port_quarantine_path (version 1): the ports it holds and those of its
 * open session sockets, written while it runs and at its stop.
 */
export interface QuarantineFileData {
  readonly anchor_port_quarantine: 1;
  /** The director that wrote it (director.id): a file is one director's. */
  readonly director: string;
  /** Wall-clock ms when it was written: the entries age by the time since. */
  readonly written_at: number;
  readonly ports: readonly (readonly [node: string, port: number, ageMs: number])[];
}

/** The file's text for `entries`, written by `director` at wall-clock `wallNow`. */
export function quarantineFileText(entries: readonly HeldPort[], wallNow: number, director: string): string {
  const f: QuarantineFileData = { anchor_port_quarantine: 1, director, written_at: wallNow, ports: entries.map((e) => [e.node, e.port, e.ageMs] as const) };
  return JSON.stringify(f) + '\n';
}

/**
 * The entries of a file's text, aged by the wall-clock time since it was written, keeping those of
 * `nodes` only. A clock set back between the write and now ages nothing (a port stays held at least as
 * long as it had left); one stepped forward ages the entries by the step, releasing them early (the
 * wall clock is all that spans two runs). Throws an Error naming what is wrong for a text that is not such
 * a file, or is another director's (`director`: this one's id).
 */
export function parseQuarantineFile(text: string, wallNow: number, nodes: ReadonlySet<string>, director: string): HeldPort[] {
  let f: unknown;
  try {
    f = JSON.parse(text);
  } catch (err) {
    throw new Error(`not JSON: ${(err as Error).message}`);
  }
  const o = f as Partial<QuarantineFileData> | null;
  if (typeof o !== 'object' || o === null || o.anchor_port_quarantine !== 1) throw new Error('not a port quarantine file of version 1');
  if (o.director !== director) throw new Error(`written by director ${JSON.stringify(o.director ?? null)}, not by this one (${JSON.stringify(director)}): give each director a file of its own`);
  if (typeof o.written_at !== 'number' || !Number.isFinite(o.written_at)) throw new Error('written_at: expected a number');
  if (!Array.isArray(o.ports)) throw new Error('ports: expected a list');
  const since = Math.max(0, wallNow - o.written_at);
  const out: HeldPort[] = [];
  for (const [i, e] of o.ports.entries()) {
    const ok = Array.isArray(e) && e.length === 3 && typeof e[0] === 'string' && Number.isInteger(e[1]) && e[1] > 0 && e[1] < 65_536 && typeof e[2] === 'number' && Number.isFinite(e[2]) && e[2] >= 0;
    if (!ok) throw new Error(`ports[${i}]: expected [node, port 1–65535, age ms ≥ 0]`);
    if (nodes.has(e[0])) out.push({ node: e[0], port: e[1], ageMs: e[2] + since });
  }
  return out;
}

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

  /** Every pair held at `now`, with how long ago it was released (for a restart to hold them still). */
  heldEntries(now: number): HeldPort[] {
    const out: HeldPort[] = [];
    for (const [node, m] of this.#byNode) {
      this.#prune(node, m, now);
      for (const [port, at] of m) out.push({ node, port, ageMs: now - at });
    }
    return out;
  }

  /** Holds `entries` (from `heldEntries` of an earlier run, aged meanwhile) as released `ageMs` before `now`. */
  restore(entries: readonly HeldPort[], now: number): void {
    // Oldest first: each node's map stays in release order, and of a pair given twice the younger wins.
    for (const e of [...entries].sort((a, b) => b.ageMs - a.ageMs)) {
      if (e.ageMs < this.holdMs) this.release(e.node, e.port, now - Math.max(0, e.ageMs));
    }
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
