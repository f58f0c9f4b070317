// The bounded session table: records indexed by id and by owner, tombstones, and idle expiry by sweep
// (one expiry-ordered heap, no timer per session). Pure data structure: time comes in as `now` (ms);
// it never decides lifecycle transitions (lifecycle.ts does) and never does I/O. The record itself is
// record.ts's (re-exported here).
import TinyQueue from 'tinyqueue';
import { ExpiryHeap } from './expiry-heap.js';
import { IdIndex, idIndexKey } from './id-index.js';
import type { SessionRecord } from './record.js';

export { type Candidate, newSessionRecord, type NewSessionFields, type SessionRecord } from './record.js';

export interface TableLimits {
  readonly max: number;
  readonly idleTtlMs: number;
  readonly tombstoneMs: number;
  /** Key of the id-bytes index (see id-index.ts); random when absent. It only places records, never decides. */
  readonly idKey?: Uint32Array;
}

export interface ListQuery {
  readonly owner?: string;
  readonly limit: number;
  /** Exclusive: only ids greater than this one. */
  readonly after?: string;
}

export class SessionTable {
  readonly #limits: TableLimits;
  readonly #byId = new Map<string, SessionRecord>();
  /** The same records by their 16 id bytes, for the per-datagram lookup straight from a packet. */
  readonly #byIdBytes: IdIndex<SessionRecord>;
  readonly #byOwner = new Map<string, Set<string>>();
  /**
   * Every live record once, by a deadline that is never later than its `expiresAt` (touch moves only
   * `expiresAt`; `dueForExpiry` moves the heap's deadline up to it lazily).
   */
  readonly #expiry = new ExpiryHeap<SessionRecord>();
  /** Tombstones: id → until. Inserted in `now` order, so a FIFO of (id, until) is also an expiry order. */
  readonly #tombstones = new Map<string, number>();
  // An entry is current only while the map still holds its `until` for that id: an id cleared by insert
  // and tombstoned again leaves an older, stale entry behind that must neither block nor evict.
  #tombFifo: { readonly id: string; readonly until: number }[] = [];
  #tombHead = 0;
  #tombstonesEvicted = 0;

  constructor(limits: TableLimits) {
    this.#limits = limits;
    this.#byIdBytes = new IdIndex(limits.idKey ?? idIndexKey());
  }

  get size(): number {
    return this.#byId.size;
  }
  get full(): boolean {
    return this.#byId.size >= this.#limits.max;
  }
  get tombstoneCount(): number {
    return this.#tombstones.size;
  }
  get tombstonesEvicted(): number {
    return this.#tombstonesEvicted;
  }
  get idleTtlMs(): number {
    return this.#limits.idleTtlMs;
  }

  get(id: string): SessionRecord | undefined {
    return this.#byId.get(id);
  }

  /**
   * Whether `rec` itself is live in this table: `get(rec.id) === rec`, answered from the record's own
   * place in the expiry heap (every live record is in it once, nothing else is) instead of the id map.
   */
  holds(rec: SessionRecord): boolean {
    return this.#expiry.has(rec);
  }

  /** The live record whose id is the 16 bytes at `buf[offset]` (a packet's JV1 header): no string built. */
  getByIdBytes(buf: Uint8Array, offset: number): SessionRecord | undefined {
    return this.#byIdBytes.get(buf, offset);
  }

  /** Until when `id` is a tombstone, if it is one at `now`. */
  tombstoneUntil(id: string, now: number): number | undefined {
    const until = this.#tombstones.get(id);
    return until !== undefined && until > now ? until : undefined;
  }

  /**
   * Adds a live record. The caller checked `full` and the tombstone first; false if it could not (also
   * for a record that is live in another table: a record belongs to one table at a time).
   */
  insert(rec: SessionRecord): boolean {
    if (this.full || this.#byId.has(rec.id) || rec.expirySlot !== -1) return false;
    if (!this.#byIdBytes.add(rec)) return false; // the same id bytes under another text form: never two records
    this.#byId.set(rec.id, rec);
    this.#ownerSet(rec.owner).add(rec.id);
    this.#tombstones.delete(rec.id);
    this.#expiry.push(rec, rec.expiresAt);
    return true;
  }

  /** Marks activity: the idle deadline moves; the heap entry is corrected lazily by `sweep`. */
  touch(rec: SessionRecord, now: number): void {
    rec.servedHere = true;
    rec.lastSeen = now;
    rec.expiresAt = now + this.#limits.idleTtlMs;
  }

  setOwner(rec: SessionRecord, owner: string): void {
    if (rec.owner === owner) return;
    this.#removeFromOwner(rec.owner, rec.id);
    rec.owner = owner;
    this.#ownerSet(owner).add(rec.id);
  }

  /** Removes a live record and leaves a tombstone until `now + tombstone_s`. */
  remove(rec: SessionRecord, now: number): void {
    if (this.#byId.get(rec.id) !== rec) return;
    this.#byId.delete(rec.id);
    this.#byIdBytes.delete(rec);
    this.#expiry.remove(rec);
    this.#removeFromOwner(rec.owner, rec.id);
    if (this.#limits.tombstoneMs > 0) this.#addTombstone(rec.id, now + this.#limits.tombstoneMs);
  }

  /** Removes a record that never became a session (its admission failed): no tombstone. */
  discard(rec: SessionRecord): void {
    if (this.#byId.get(rec.id) !== rec) return;
    this.#byId.delete(rec.id);
    this.#byIdBytes.delete(rec);
    this.#expiry.remove(rec);
    this.#removeFromOwner(rec.owner, rec.id);
  }

  countByOwner(owner: string): number {
    return this.#byOwner.get(owner)?.size ?? 0;
  }

  idsByOwner(owner: string): ReadonlySet<string> {
    return this.#byOwner.get(owner) ?? EMPTY;
  }

  /** Owners with at least one session, with their counts. */
  ownerCounts(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [owner, set] of this.#byOwner) if (set.size > 0) out.set(owner, set.size);
    return out;
  }

  values(): IterableIterator<SessionRecord> {
    return this.#byId.values();
  }

  /**
   * Returns up to `limit` records in id order after `after` (a stable cursor under churn).
   * O(n log limit) per page: it scans the table, keeping the smallest ids in a bounded heap.
   */
  list(q: ListQuery): { items: SessionRecord[]; more: boolean } {
    const source = q.owner !== undefined ? this.idsByOwner(q.owner) : this.#byId.keys();
    const keep = q.limit + 1;
    const heap = new TinyQueue<string>([], (a, b) => (a < b ? 1 : a > b ? -1 : 0)); // max-heap
    for (const id of source) {
      if (q.after !== undefined && id <= q.after) continue;
      if (heap.length < keep) heap.push(id);
      else if (id < (heap.peek() as string)) {
        heap.pop();
        heap.push(id);
      }
    }
    const ids = heap.data.slice().sort();
    const more = ids.length > q.limit;
    const items: SessionRecord[] = [];
    for (const id of ids.slice(0, q.limit)) {
      const rec = this.#byId.get(id);
      if (rec !== undefined) items.push(rec);
    }
    return { items, more };
  }

  /**
   * Returns the records idle at `now` (expiresAt ≤ now), at most `limit`, without removing them:
   * the caller runs the expire transition and then calls `remove`. Also forgets old tombstones.
   */
  dueForExpiry(now: number, limit = Infinity): SessionRecord[] {
    const due: SessionRecord[] = [];
    const heap = this.#expiry;
    while (due.length < limit && heap.peekDeadline() <= now) {
      const rec = heap.peek() as SessionRecord;
      if (rec.expiresAt > now) {
        heap.retop(rec.expiresAt); // touched since: its deadline catches up
        continue;
      }
      due.push(rec);
      // Re-queue so that a record the caller keeps (e.g. a failed transition) is seen again soon.
      heap.retop(now + Math.min(this.#limits.idleTtlMs, REQUEUE_MS));
    }
    this.#sweepTombstones(now);
    return due;
  }

  #addTombstone(id: string, until: number): void {
    while (this.#tombstones.size >= this.#limits.max) {
      const oldest = this.#tombFifo[this.#tombHead++];
      if (oldest === undefined) break;
      if (this.#tombstones.get(oldest.id) === oldest.until) {
        this.#tombstones.delete(oldest.id);
        this.#tombstonesEvicted++;
      }
    }
    this.#tombstones.set(id, until);
    this.#tombFifo.push({ id, until });
  }

  #sweepTombstones(now: number): void {
    while (this.#tombHead < this.#tombFifo.length) {
      const e = this.#tombFifo[this.#tombHead]!;
      // Only the current entry of an id counts; a stale one (the id was cleared and tombstoned again) is skipped.
      if (this.#tombstones.get(e.id) === e.until) {
        if (e.until > now) break;
        this.#tombstones.delete(e.id);
      }
      this.#tombHead++;
    }
    if (this.#tombHead > 1024 && this.#tombHead * 2 > this.#tombFifo.length) {
      this.#tombFifo = this.#tombFifo.slice(this.#tombHead);
      this.#tombHead = 0;
    }
  }

  #ownerSet(owner: string): Set<string> {
    let s = this.#byOwner.get(owner);
    if (s === undefined) {
      s = new Set();
      this.#byOwner.set(owner, s);
    }
    return s;
  }

  #removeFromOwner(owner: string, id: string): void {
    const s = this.#byOwner.get(owner);
    if (s === undefined) return;
    s.delete(id);
    if (s.size === 0) this.#byOwner.delete(owner);
  }
}

const EMPTY: ReadonlySet<string> = new Set();
/** How soon a record returned by `dueForExpiry` but kept by the caller is returned again (at most). */
const REQUEUE_MS = 1000;
