// When automatic failover tries a node again (pure: the shell passes the time and what it sees). A
// failover that could not move every session — no other node to take them (a one-node fleet, all
// others down or draining), or the store refusing — ends failed while the node still owns sessions.
// Without this it was started again at every check (every 250 ms: an audit line, a drain record and a
// warning per session each time, the drain history flushed within seconds). Now a node is tried again
// after a wait that doubles from AUTO_RETRY_MIN_MS to AUTO_RETRY_MAX_MS, or at once when the ring changed
// (a node came back or was added: there may be somewhere to go now); healthy again, it starts afresh, and
// a failover of it still running is stopped (forget says which).

export const AUTO_RETRY_MIN_MS = 5_000;
export const AUTO_RETRY_MAX_MS = 300_000;

interface Tried {
  /** The drain record of the last failover started. */
  readonly id: string;
  /** Whether that failover is one the automatic failover created (not an operator's drain it made migrate now). */
  readonly created: boolean;
  /** The ring it was started under (any object that changes identity when the ring changes). */
  readonly ring: object;
  readonly delayMs: number;
  readonly notBefore: number;
}

export class FailoverBackoff {
  readonly #tried = new Map<string, Tried>();

  /**
   * Whether an automatic failover of `node` (unhealthy past its grace, still owning sessions) may start
   * now. `state`: the state of the last failover started for it (undefined if unknown or none).
   */
  due(node: string, now: number, ring: object, state: (id: string) => string | undefined): boolean {
    const t = this.#tried.get(node);
    if (t === undefined) return true;
    const s = state(t.id);
    if (s === 'running' || s === 'waiting') return false;
    return ring !== t.ring || now >= t.notBefore;
  }

  /**
   * A failover of `node` was started (drain record `id`) at `now` under `ring`; `created`: a failover of
   * its own (false: a waiting operator's drain of the node, made to migrate now).
   */
  started(node: string, id: string, now: number, ring: object, created = true): void {
    const t = this.#tried.get(node);
    const delayMs = t === undefined ? AUTO_RETRY_MIN_MS : Math.min(t.delayMs * 2, AUTO_RETRY_MAX_MS);
    this.#tried.set(node, { id, created, ring, delayMs, notBefore: now + delayMs });
  }

  /**
   * `node` is healthy again (or gone): its next failover is a first one. Returns the drain record of the
   * failover the automatic failover created for it, if any, for the shell to stop while it still runs:
   * a node that came back keeps the sessions not moved yet, and those admitted to it from now on. An
   * operator's drain it escalated is the operator's to stop (undefined).
   */
  forget(node: string): string | undefined {
    const t = this.#tried.get(node);
    this.#tried.delete(node);
    return t !== undefined && t.created ? t.id : undefined;
  }
}
