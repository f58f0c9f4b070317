// The in-process ownership store (DESIGN §5): the embedded default for a single director.
// Owns its records (in columns, see columns.ts, or, as a director's embedded store, in that director's
// session table rows, see table-records.ts: every read hands out a frozen record) and the watch
// fan-out. It never decides a transition (the caller names the version it expects) and never throws for
// an expected outcome — only for a programming error (a version that breaks the "+1" rule), as a TypeError.
import { SessionColumns } from './columns.js';
import { checkBigint, checkExpiry, checkIncarnation, checkUpdates, freezeRecord, sameLife, type CasResult, type GetResult, type OwnershipStore, type StoreEvent, type StoredSession, type UpdateWrite } from './store.js';

/**
 * What holds the store's records (MemoryStore never decides through it): SessionColumns (columns.ts) by
 * default; TableRecords (table-records.ts) for a director's embedded store, reading them from its table.
 * A handle (`slotOf`) is valid until the next `set` or `delete`, or change of the table.
 */
export interface StoreRecords {
  readonly size: number;
  has(id: string): boolean;
  /** A frozen record (a new object or one held), or undefined. */
  get(id: string): StoredSession | undefined;
  /** The handle of the record with `id`, or -1. */
  slotOf(id: string): number;
  versionIs(slot: number, v: bigint): boolean;
  incarnationAt(slot: number): number;
  recordAt(id: string, slot: number): StoredSession;
  /** Holds `r` in the place of the record at `slot` (version `version`), and gives that record back. */
  swapAt(slot: number, r: StoredSession, version: bigint): StoredSession;
  /** Holds `r` (checked and frozen by freezeRecord), replacing the record with its id if there is one. */
  set(r: StoredSession): void;
  delete(id: string): boolean;
  /** Every record of `owner`, in no particular order. */
  ownedBy(owner: string): StoredSession[];
}


export interface MemoryStoreOptions {
  /** Start unavailable with this message (the same as `setUnavailable(true, message)` right after construction). */
  readonly failWith?: string | null;
  /** Initial contents (any version ≥ 1) — to restore a snapshot or to seed a test. */
  readonly records?: Iterable<StoredSession>;
  /** Told about a watch listener that threw; the store and the other listeners carry on regardless. */
  readonly onListenerError?: (err: unknown, ev: StoreEvent) => void;
  /** Hash key of the id table (see hex-id-slots.ts); random when absent. It only places ids, never decides. */
  readonly idKey?: Uint32Array;
  /**
   * Records to make room for up front (columns.ts). Resident only as records are written; none when absent
   * (the columns grow). Not with `holder`.
   */
  readonly reserve?: number;
  /** What holds the records (`idKey` and `reserve` then do not apply); SessionColumns when absent. */
  readonly holder?: StoreRecords;
}

type ListResult = { ok: true; records: StoredSession[] } | { ok: false; reason: 'unavailable'; message: string };

/** One subscription (an object, so the same function subscribed twice is two subscriptions). */
interface Subscription {
  readonly fn: (ev: StoreEvent) => void;
}

export class MemoryStore implements OwnershipStore {
  /** The records by id (and scanned by owner for listByOwner). */
  readonly #records: StoreRecords;
  readonly #subs = new Set<Subscription>();
  /** The subscriptions as an array, rebuilt when they change (not copied per event). */
  #subList: readonly Subscription[] = [];
  readonly #onListenerError: ((err: unknown, ev: StoreEvent) => void) | undefined;
  #unavailable: string | null;
  #closed = false;
  /** Events committed but not yet delivered: a listener that writes must not overtake commit order. */
  readonly #pending: StoreEvent[] = [];
  #dispatching = false;

  constructor(opts: MemoryStoreOptions = {}) {
    this.#records = opts.holder ?? new SessionColumns(opts.idKey, opts.reserve ?? 0);
    this.#unavailable = opts.failWith ?? null;
    this.#onListenerError = opts.onListenerError;
    for (const r of opts.records ?? []) {
      const rec = freezeRecord(r);
      if (this.#records.has(rec.id)) throw new TypeError(`duplicate record id in initial contents: ${rec.id}`);
      this.#records.set(rec);
    }
  }

  /** Fault injection for tests of callers: while on, every call resolves `unavailable` and changes nothing. */
  setUnavailable(on: boolean, message = 'store unavailable (injected fault)'): void {
    this.#unavailable = on ? message : null;
  }

  /** Number of records held (for metrics and tests). */
  get size(): number {
    return this.#records.size;
  }

  async get(id: string): Promise<GetResult> {
    const down = this.#down();
    if (down !== null) return down;
    return { ok: true, record: this.#records.get(id) ?? null };
  }

  async listByOwner(owner: string): Promise<ListResult> {
    const down = this.#down();
    if (down !== null) return down;
    const records = this.#records.ownedBy(owner).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return { ok: true, records };
  }

  async create(record: StoredSession): Promise<CasResult> {
    const rec = freezeRecord(record);
    if (rec.version !== 1n) throw new TypeError(`create: record.version must be 1, got ${rec.version}`);
    const down = this.#down();
    if (down !== null) return down;
    const cols = this.#records;
    const slot = cols.slotOf(rec.id);
    if (slot !== -1) return { ok: false, reason: 'conflict', current: cols.recordAt(rec.id, slot) };
    cols.set(rec);
    this.#emit({ kind: 'put', record: rec, prev: null });
    return { ok: true, record: rec };
  }

  async update(record: StoredSession, expectVersion: bigint): Promise<CasResult> {
    const rec = freezeRecord(record);
    checkBigint(expectVersion, 'expectVersion');
    if (rec.version !== expectVersion + 1n) {
      throw new TypeError(`update: record.version must be expectVersion + 1 (${expectVersion + 1n}), got ${rec.version}`);
    }
    const down = this.#down();
    if (down !== null) return down;
    // One lookup of the id for the compare, the previous record and the write (as updateMany).
    const cols = this.#records;
    const slot = cols.slotOf(rec.id);
    if (slot === -1 || !cols.versionIs(slot, expectVersion) || !sameLife(cols.incarnationAt(slot), rec.incarnation)) {
      return { ok: false, reason: 'conflict', current: slot === -1 ? null : cols.recordAt(rec.id, slot) };
    }
    this.#emit({ kind: 'put', record: rec, prev: cols.swapAt(slot, rec, expectVersion) });
    return { ok: true, record: rec };
  }

  /** Each write as `update` would make it, in order, in one call (no promise per session). */
  async updateMany(writes: readonly UpdateWrite[]): Promise<CasResult[]> {
    const recs = checkUpdates(writes);
    const out = new Array<CasResult>(recs.length);
    const down = this.#down();
    if (down !== null) return out.fill(down);
    const cols = this.#records;
    for (let i = 0; i < recs.length; i++) {
      const rec = recs[i] as StoredSession;
      // Checked again per write: a listener of an earlier write may have closed the store.
      const gone = this.#down();
      if (gone !== null) {
        out[i] = gone;
        continue;
      }
      // One lookup of the id for the compare, the previous record and the write.
      const slot = cols.slotOf(rec.id);
      const expect = (writes[i] as UpdateWrite).expectVersion;
      if (slot === -1 || !cols.versionIs(slot, expect) || !sameLife(cols.incarnationAt(slot), rec.incarnation)) {
        out[i] = { ok: false, reason: 'conflict', current: slot === -1 ? null : cols.recordAt(rec.id, slot) };
        continue;
      }
      this.#emit({ kind: 'put', record: rec, prev: cols.swapAt(slot, rec, expect) });
      out[i] = { ok: true, record: rec };
    }
    return out;
  }

  async refresh(id: string, expectVersion: bigint, expiresAt: number, director: string, incarnation: number): Promise<CasResult> {
    checkBigint(expectVersion, 'expectVersion');
    checkExpiry(expiresAt);
    checkIncarnation(incarnation, 'incarnation');
    const down = this.#down();
    if (down !== null) return down;
    const current = this.#records.get(id);
    if (current === undefined || current.version !== expectVersion || !sameLife(current.incarnation, incarnation)) {
      return { ok: false, reason: 'conflict', current: current ?? null };
    }
    if (expiresAt <= current.expiresAt) return { ok: true, record: current };
    const rec = freezeRecord({ ...current, expiresAt, director });
    this.#records.set(rec);
    this.#emit({ kind: 'put', record: rec, prev: current });
    return { ok: true, record: rec };
  }

  /** On success `record` is the record that was deleted. */
  async delete(id: string, expectVersion: bigint, incarnation: number): Promise<CasResult> {
    checkBigint(expectVersion, 'expectVersion');
    checkIncarnation(incarnation, 'incarnation');
    const down = this.#down();
    if (down !== null) return down;
    const current = this.#records.get(id);
    if (current === undefined || current.version !== expectVersion || !sameLife(current.incarnation, incarnation)) {
      return { ok: false, reason: 'conflict', current: current ?? null };
    }
    this.#records.delete(id);
    this.#emit({ kind: 'delete', id, prev: current });
    return { ok: true, record: current };
  }

  /**
   * Listeners are called synchronously after a write commits and before its promise resolves, in
   * commit order (a write made from inside a listener is delivered after the current event).
   */
  watch(listener: (ev: StoreEvent) => void): () => void {
    const sub: Subscription = { fn: listener };
    if (!this.#closed) {
      this.#subs.add(sub);
      this.#subList = [...this.#subs];
    }
    return () => {
      if (this.#subs.delete(sub)) this.#subList = [...this.#subs];
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#subs.clear();
    this.#subList = [];
  }

  #down(): { ok: false; reason: 'unavailable'; message: string } | null {
    if (this.#closed) return { ok: false, reason: 'unavailable', message: 'store closed' };
    if (this.#unavailable !== null) return { ok: false, reason: 'unavailable', message: this.#unavailable };
    return null;
  }

  #emit(ev: StoreEvent): void {
    if (this.#dispatching) {
      this.#pending.push(ev); // the outer call below delivers it, after the event in progress
      return;
    }
    this.#dispatching = true;
    try {
      // The event itself is not queued: an array emptied (length 0) lets go of its storage, and a push per
      // write would take it again.
      this.#deliver(ev);
      for (let i = 0; i < this.#pending.length; i++) this.#deliver(this.#pending[i] as StoreEvent);
    } finally {
      if (this.#pending.length > 0) this.#pending.length = 0;
      this.#dispatching = false;
    }
  }

  #deliver(e: StoreEvent): void {
    // The list as it is now: one subscribed by a listener of this event hears the next event first.
    for (const sub of this.#subList) {
      if (!this.#subs.has(sub)) continue; // unsubscribed by an earlier listener of this event
      try {
        sub.fn(e);
      } catch (err) {
        try {
          this.#onListenerError?.(err, e);
        } catch {
          // the error hook itself failed; nothing more to tell
        }
      }
    }
  }
}
