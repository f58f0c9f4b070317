// The bounded session table: live records indexed by id, counted by owner, tombstones, and idle expiry
// by sweep (one expiry-ordered heap, no timer per session). Pure data structure: time comes in as `now`
// (ms); it never decides lifecycle transitions (lifecycle.ts does) and never does I/O. The record itself
// is record.ts's (re-exported here).
//
// Memory per live session (issue 7; 64-bit V8 without pointer compression): 77-79 bytes at 200,000
// sessions in the memory bench's breakdown (152-154 with a Map by id text and a Set of ids per owner
// beside the id index).
// - The id index (id-index.ts), the only index by id: a record reference, the 16 id bytes and a 2-byte
//   owner tag per slot, 26 bytes, at 1.6-3.2 slots per session (power-of-two capacity, at most 5/8 full):
//   42-83 bytes, 54 at 1,000,000 sessions. `get(id text)` reads the id words from the text and probes it.
// - The expiry heap (expiry-heap.ts): a record reference and an 8-byte deadline, 16-28 bytes with the
//   arrays' spare room.
// - Owners: a count per owner and the slots' owner tags. An owner's records are found by a walk over the
//   id index (walkOwner, list by owner: O(capacity), other owners' records skipped by their tag unread),
//   which only drains and the admin API do.
// - Tombstones: a Map entry and a FIFO entry per removed session, for tombstone_s.
import TinyQueue from 'tinyqueue';
import { ExpiryHeap } from './expiry-heap.js';
import { IdIndex, idBytesFromHex, idIndexKey, isLowerHexId } from './id-index.js';
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
  /**
   * Every live record once, by its 16 id bytes: the per-datagram lookup straight from a packet, and the
   * lookup by id text (which decodes the text). The table's one index by id.
   */
  readonly #byId: IdIndex<SessionRecord>;
  /** How many live records each owner has (an owner with none is left out). Its records: `walkOwner`. */
  readonly #owners = new Map<string, number>();
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
  /** Live records with `servedHere` (see servedCount). */
  #served = 0;
  /**
   * Live records whose id text is not 32 lowercase hex characters (upper-case hex from outside, never
   * what sessionIdHex writes): while there is one, id order is not byte order and `list` compares texts.
   */
  #oddIds = 0;
  /**
   * A tag per owner (1–65535; 0 once they run out: such records are read to learn their owner), kept with
   * each record's slot in the id index so that a walk or a page for one owner skips the others' records
   * without reading them. Owners are node ids: a handful, never given back.
   */
  readonly #ownerTags = new Map<string, number>();

  constructor(limits: TableLimits) {
    this.#limits = limits;
    this.#byId = new IdIndex(limits.idKey ?? idIndexKey());
  }

  get size(): number {
    return this.#byId.size;
  }
  /** Live records this director serves (`servedHere`): the sessions a stopping director waits for. */
  get servedCount(): number {
    return this.#served;
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

  /**
   * The live record whose id is the text `id` (exactly: the record of the same bytes under another case
   * of hex is not it); undefined for any other text. No allocation: the id words are read from the text
   * (32 characters read: to ask whether a record in hand is live, `holds` is cheaper).
   */
  get(id: string): SessionRecord | undefined {
    const rec = this.#byId.getByHex(id);
    return rec !== undefined && rec.id === id ? rec : undefined;
  }

  /**
   * Whether `rec` itself is live in this table: `get(rec.id) === rec`, answered from the record's own
   * place in the expiry heap (every live record is in it once, nothing else is): no id lookup.
   */
  holds(rec: SessionRecord): boolean {
    return this.#expiry.has(rec);
  }

  /** The live record whose id is the 16 bytes at `buf[offset]` (a packet's JV1 header): no string built. */
  getByIdBytes(buf: Uint8Array, offset: number): SessionRecord | undefined {
    return this.#byId.get(buf, offset);
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
    if (this.full || rec.expirySlot !== -1) return false;
    if (!this.#byId.add(rec, this.#tagFor(rec.owner))) return false; // the same id bytes (under any text form): never two records
    this.#count(rec.owner, 1);
    if (rec.servedHere) this.#served++;
    if (!isLowerHexId(rec.id)) this.#oddIds++;
    this.#tombstones.delete(rec.id);
    this.#expiry.push(rec, rec.expiresAt);
    return true;
  }

  /** Marks activity: the idle deadline moves; the heap entry is corrected lazily by `sweep`. */
  touch(rec: SessionRecord, now: number): void {
    if (!rec.servedHere) {
      rec.servedHere = true;
      if (this.holds(rec)) this.#served++;
    }
    rec.lastSeen = now;
    rec.expiresAt = now + this.#limits.idleTtlMs;
  }

  /** Changes the record's owner (counted under the new one if the record is live here). */
  setOwner(rec: SessionRecord, owner: string): void {
    if (rec.owner === owner) return;
    if (this.holds(rec)) {
      this.#count(rec.owner, -1);
      this.#count(owner, 1);
      this.#byId.retag(rec, this.#tagFor(owner));
    }
    rec.owner = owner;
  }

  /** Removes a live record and leaves a tombstone until `now + tombstone_s`. */
  remove(rec: SessionRecord, now: number): void {
    if (!this.holds(rec)) return;
    this.#forget(rec);
    if (this.#limits.tombstoneMs > 0) this.#addTombstone(rec.id, now + this.#limits.tombstoneMs);
  }

  /** Removes a record that never became a session (its admission failed): no tombstone. */
  discard(rec: SessionRecord): void {
    if (this.holds(rec)) this.#forget(rec);
  }

  countByOwner(owner: string): number {
    return this.#owners.get(owner) ?? 0;
  }

  /**
   * A walk over `owner`'s records that a caller carries on over many calls while the table changes (the
   * drain coordinator's cursor), looking at a bounded number of slots per call. See OwnerWalk for what a
   * pass meets.
   */
  walkOwner(owner: string): OwnerWalk {
    return new OwnerSlotWalk(owner, this.#tagOf(owner), this.#byId);
  }

  /** The same walk over every record (any owner): for work spread over many calls (see OwnerWalk). */
  walkAll(): RecordWalk {
    return new SlotWalk(null, 0, this.#byId);
  }

  /** Slots of the id index (a walk looks at this many in a pass): about 1.6 to 3.2 per record. */
  get slots(): number {
    return this.#byId.capacity;
  }

  /** Owners with at least one session, with their counts. */
  ownerCounts(): Map<string, number> {
    return new Map(this.#owners);
  }

  /** Every live record once, in no particular order. The table must not change while this runs (copy it first). */
  values(): IterableIterator<SessionRecord> {
    return this.#byId.values();
  }

  /**
   * Returns up to `limit` records in id order after `after` (a stable cursor under churn).
   * One pass over the id index per page, comparing the id words in place (IdIndex.smallest): no record
   * is read unless its id would be on the page so far (for an owner, only those are asked their owner).
   * At 1,000,000 sessions a page costs ~20 ms of event loop where a scan of the records cost 0.7-1 s
   * (bench/README.md, `memory`'s admin figures).
   * An `after` that is not a session id's text, or a table holding an id text that is not lower case,
   * takes the scan that compares texts (the same answer, slower).
   */
  list(q: ListQuery): { items: SessionRecord[]; more: boolean } {
    if (q.owner !== undefined && !this.#owners.has(q.owner)) return { items: [], more: false };
    if (this.#oddIds === 0 && (q.after === undefined || isLowerHexId(q.after))) {
      const owner = q.owner;
      const recs = this.#byId.smallest(q.limit + 1, q.after === undefined ? null : idBytesFromHex(q.after), owner === undefined ? null : (r) => r.owner === owner, owner === undefined ? null : this.#tagOf(owner));
      return { items: recs.slice(0, q.limit), more: recs.length > q.limit };
    }
    return this.#listByText(q);
  }

  /** `list` by comparing id texts over every record: O(n log limit), a record read per slot. */
  #listByText(q: ListQuery): { items: SessionRecord[]; more: boolean } {
    const keep = q.limit + 1;
    const heap = new TinyQueue<SessionRecord>([], (a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)); // max-heap by id
    for (const rec of this.#byId.values()) {
      if (q.owner !== undefined && rec.owner !== q.owner) continue;
      if (q.after !== undefined && rec.id <= q.after) continue;
      if (heap.length < keep) heap.push(rec);
      else if (rec.id < (heap.peek() as SessionRecord).id) {
        heap.pop();
        heap.push(rec);
      }
    }
    const recs = heap.data.slice().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return { items: recs.slice(0, q.limit), more: recs.length > q.limit };
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

  /** Takes a live record out of every index (no tombstone). */
  #forget(rec: SessionRecord): void {
    this.#byId.delete(rec);
    this.#expiry.remove(rec);
    this.#count(rec.owner, -1);
    if (rec.servedHere) this.#served--;
    if (!isLowerHexId(rec.id)) this.#oddIds--;
  }

  /** Another director serves `rec` now (it bound the client's new transport): no longer one served here. */
  notServedHere(rec: SessionRecord): void {
    if (!rec.servedHere) return;
    rec.servedHere = false;
    if (this.holds(rec)) this.#served--;
  }

  /** The tag of `owner`'s records, made for it now if it has none and some are left (else 0). */
  #tagFor(owner: string): number {
    let t = this.#ownerTags.get(owner);
    if (t === undefined) {
      t = this.#ownerTags.size < MAX_OWNER_TAG ? this.#ownerTags.size + 1 : 0;
      if (t !== 0) this.#ownerTags.set(owner, t);
    }
    return t;
  }

  /** The tag `owner`'s records carry: -1 (no slot's) for an owner that never had one, whose records carry 0. */
  #tagOf(owner: string): number {
    return this.#ownerTags.get(owner) ?? -1;
  }

  /** Adds `by` to `owner`'s count; an owner whose count reaches 0 is left out. */
  #count(owner: string, by: number): void {
    const n = (this.#owners.get(owner) ?? 0) + by;
    if (n > 0) this.#owners.set(owner, n);
    else this.#owners.delete(owner);
  }
}

/**
 * A walk over one owner's records, carried on over many calls while the table changes. No set of ids per
 * owner is kept (issue 7): a pass looks at every slot of the id index once, from the top down, and
 * returns the records of the owner it meets. What a pass meets while the table changes under it:
 * - A record there with this owner for the whole pass is met, unless the table moves it past the walk.
 *   Inserts and owner changes never move a record between slots. A removal pulls later records of its
 *   probe run back into the hole (to lower slots, in probe order), which keeps a record the walk has not
 *   reached yet ahead of it, except across the wrap from slot 0 to the top slot: a record crosses that
 *   at most once per placement (it only moves back toward its home slot). A growth of the index places
 *   every record anew (a few times in the table's life). A record missed so is met by a later pass.
 * - A record may be met twice in a pass (pulled back below the walk after it was met): callers skip what
 *   they have in hand.
 * So a caller that starts new passes while the owner has records (countByOwner > 0) meets each of them,
 * and every pass ends, after the index's capacity (at its start) in slots.
 */
export interface OwnerWalk extends RecordWalk {
  readonly owner: string;
}

/** A walk over the table's records (an owner's: OwnerWalk), carried on over many calls. */
export interface RecordWalk {
  /** Whether this pass has looked at every slot: start another walk to go on. */
  readonly done: boolean;
  /**
   * The next record (of the owner, for an OwnerWalk) in this pass, looking at no more than
   * `budget.slots` slots (each one looked at is taken off it); undefined when the pass is done or the
   * budget ran out first.
   */
  next(budget: { slots: number }): SessionRecord | undefined;
}

class SlotWalk implements RecordWalk {
  /** The owner whose records the walk returns; null: every record. */
  readonly #match: string | null;
  /** Its records' tag in the index (see SessionTable #ownerTags): a slot of another nonzero tag is skipped unread. */
  readonly #tag: number;
  readonly #index: IdIndex<SessionRecord>;
  /** The next slot to look at, going down; -1 once the pass is done. */
  #slot: number;

  constructor(match: string | null, tag: number, index: IdIndex<SessionRecord>) {
    this.#match = match;
    this.#tag = tag;
    this.#index = index;
    this.#slot = index.capacity - 1;
  }

  get done(): boolean {
    return this.#slot < 0;
  }

  next(budget: { slots: number }): SessionRecord | undefined {
    const index = this.#index;
    while (this.#slot >= 0 && budget.slots > 0) {
      budget.slots--;
      const slot = this.#slot--;
      if (this.#match !== null) {
        const t = index.tagAt(slot);
        if (t !== this.#tag && t !== 0) continue;
      }
      const rec = index.at(slot);
      if (rec !== null && (this.#match === null || rec.owner === this.#match)) return rec;
    }
    return undefined;
  }
}

class OwnerSlotWalk extends SlotWalk implements OwnerWalk {
  readonly owner: string;

  constructor(owner: string, tag: number, index: IdIndex<SessionRecord>) {
    super(owner, tag, index);
    this.owner = owner;
  }
}

/** Owner tags there are (Uint16 slots; 0 means none). */
const MAX_OWNER_TAG = 65_535;
/** How soon a record returned by `dueForExpiry` but kept by the caller is returned again (at most). */
const REQUEUE_MS = 1000;
