// Self-fencing lease math (DESIGN §5): from the last keepalive of the director's store lease that
// succeeded, on the director's own monotonic clock, when it must stop changing ownership and when it must
// stop forwarding — before the store could expire the lease. Pure: time comes in as `now`.

export const FenceState = {
  /** The lease is fresh: every operation is allowed. */
  OK: 'ok',
  /** The deadline is near: no admission, reattach or drain step; forwarding goes on. */
  NEAR: 'near',
  /**
   * Past the self-fence deadline, or no lease granted yet (a director the store has never given a lease
   * is no member whose ownership could be proven): nothing is forwarded either.
   */
  EXPIRED: 'expired',
} as const;
export type FenceState = (typeof FenceState)[keyof typeof FenceState];

export interface FenceConfig {
  /** The lease TTL the store grants. */
  readonly ttlMs: number;
  /** Safety margin before the server could expire the lease (clock drift, a keepalive in flight). */
  readonly marginMs: number;
}

/** A margin of a quarter of the TTL, at least 1 s and less than half the TTL. */
export function defaultMargin(ttlMs: number): number {
  return Math.min(Math.max(1000, Math.floor(ttlMs / 4)), Math.floor(ttlMs / 2) - 1);
}

/**
 * The fence at `now` given the last successful keepalive (`null`: never — expired). Forwarding stops at
 * lastOk + ttl − margin (the lease cannot have expired on the server before then); ownership changes stop
 * at half the TTL, or one margin before that stop if it comes first, so that a transition started just
 * before is finished or refused in time while a short etcd election (keepalives every TTL/5) does not
 * fence anything.
 */
export function fenceAt(lastOkAt: number | null, now: number, cfg: FenceConfig): { state: FenceState; denyAt: number | null; stopAt: number | null } {
  if (lastOkAt === null) return { state: FenceState.EXPIRED, denyAt: null, stopAt: null };
  const stopAt = lastOkAt + cfg.ttlMs - cfg.marginMs;
  const denyAt = Math.min(lastOkAt + cfg.ttlMs / 2, stopAt - cfg.marginMs);
  return { state: fenceState(lastOkAt, now, cfg), denyAt, stopAt };
}

/** fenceAt's state alone, without allocating (it is asked on every packet). */
export function fenceState(lastOkAt: number | null, now: number, cfg: FenceConfig): FenceState {
  if (lastOkAt === null) return FenceState.EXPIRED;
  const stopAt = lastOkAt + cfg.ttlMs - cfg.marginMs;
  if (now >= stopAt) return FenceState.EXPIRED;
  return now >= Math.min(lastOkAt + cfg.ttlMs / 2, stopAt - cfg.marginMs) ? FenceState.NEAR : FenceState.OK;
}

/**
 * After the lease lapsed, what a director holds may be stale by any amount: while it was cut off its watch
 * may have missed ends, transfers and sessions admitted anew, and etcd may have compacted them away. Once
 * the lease is back, the data path sees the fence as still expired until the store has been listed again
 * (the store's `resync`, asked once: `wantsResync`, then `resyncAsked`) and follows. A lapse is seen from
 * the keepalives themselves — two successive ones further apart than the fence allows — so it is caught
 * whenever the gate is asked, however short. Pure: time comes in as `now`.
 */
export class ResyncGate {
  readonly #cfg: FenceConfig;
  #lastOk: number | null = null;
  /** The lease lapsed since the store was last listed: forwarding waits for a listing. */
  #stale = false;
  #asked = false;
  /** Whether the fence was expired at the last `gate` (the store is asked to list only once it answers again). */
  #expired = false;

  constructor(cfg: FenceConfig) {
    this.#cfg = cfg;
  }

  /** The fence the data path should see, from the last successful keepalive and whether the store follows. */
  gate(lastOkAt: number | null, now: number, following: boolean): FenceState {
    const f = fenceState(lastOkAt, now, this.#cfg);
    this.#expired = f === FenceState.EXPIRED;
    if (lastOkAt !== this.#lastOk) {
      if (this.#lastOk !== null && lastOkAt !== null && lastOkAt - this.#lastOk >= this.#cfg.ttlMs - this.#cfg.marginMs) this.#lapsed();
      this.#lastOk = lastOkAt;
    }
    if (f === FenceState.EXPIRED) {
      if (lastOkAt !== null) this.#lapsed(); // a director never granted a lease has listed nothing stale yet
      return f;
    }
    if (!this.#stale) return f;
    if (this.#asked && following) {
      this.#stale = false;
      this.#asked = false;
      return f;
    }
    return FenceState.EXPIRED;
  }

  /** Whether the store should be asked to list again now: the lease is back after a lapse, and it was not asked yet. */
  get wantsResync(): boolean {
    return this.#stale && !this.#asked && !this.#expired;
  }

  /** The store was asked to list again: the gate opens once it follows. */
  resyncAsked(): void {
    this.#asked = true;
  }

  #lapsed(): void {
    this.#stale = true;
    this.#asked = false;
  }
}
