// The bounded session table: live sessions indexed by id, counted by owner, tombstones, and idle expiry
// by sweep (one expiry-ordered heap, no timer per session). Pure data structure: time comes in as `now`
// (ms); it never decides lifecycle transitions (lifecycle.ts does) and never does I/O. The record itself
// is record.ts's (re-exported here).
//
// Memory per live session (issue 7; 64-bit V8 without pointer compression): no JavaScript object per
// session. Each is a row of typed columns (rows.ts, 73 bytes, reserved up front or growing by half); the
// id index keeps a row number and an owner tag per slot (6 bytes at 1.6-3.2 slots per session); the expiry
// heap a row number and a deadline (12 bytes, and the arrays' spare room).
// Records (record.ts) are views of rows. The table keeps the records of the sessions in use in a cache
// (`records`, CLOCK, 16,384 by default; the director gives session.header_cache): a lookup of a cached
// session makes nothing. A record that leaves the cache is still the record of its row for as long as
// anything holds it (a WeakRef by row finds it again), so a session has one record at a time, and a
// record held across a store write reads and writes its row. A record holding out-of-line state (a
// transition in flight, held packets or replies, jump candidates) is kept apart, in a map by row, until it
// holds none (the cache's hand moves it there when it meets it), so the cache never holds more than its
// size and never loses that state. Removal gives the record its row's fields as its own and frees the
// row, so a record kept after it reads what it last was. Walks that need only ids or a few numbers
// (`nextId`, `nextWhere`) make no record for the sessions they skip.
// - Owners: a count per owner and the slots' owner tags. An owner's records are found by a walk over the
//   id index (walkOwner, list by owner: O(capacity), other owners' rows skipped by their tag unread),
//   which only drains and the admin API do.
// - Tombstones: a Map entry and a FIFO entry per removed session, for tombstone_s.
import TinyQueue from 'tinyqueue';
import { ExpiryHeap } from './expiry-heap.js';
import { hexWords, IdIndex, idBytesFromHex, idIndexKey, isLowerHexId } from './id-index.js';
import { attachRecord, detachRecord, ownFields, recordForRow, recordPinned, rowOfRecord, rowsOfRecord, type SessionRecord } from './record.js';
import { PINNED, SessionRows, type RowStoreHooks } from './rows.js';

export { type Candidate, newSessionRecord, type NewSessionFields, type SessionRecord } from './record.js';

export interface TableLimits {
  readonly max: number;
  readonly idleTtlMs: number;
  readonly tombstoneMs: number;
  /** Key of the id-bytes index (see id-index.ts); random when absent. It only places records, never decides. */
  readonly idKey?: Uint32Array;
  /** Records kept for the sessions in use (see the header); 16,384 when absent. */
  readonly records?: number;
  /**
   * Rows made up front (capped at MAX_RESERVED, util/reserve.ts), and room in the expiry heap for as many: the
   * director reserves `max`. Resident only as sessions use them; none when absent (the columns grow).
   */
  readonly reserve?: number;
  /** Where the sequence numbers of the sessions a director did not admit start (CoreLimits.seqBase); 0 when absent. */
  readonly seqBase?: number;
}

/** A removed session's id, refused until `until` (tombstone_s); the life that ended, and its version then. */
export interface Tombstone {
  readonly id: string;
  readonly until: number;
  readonly life: number;
  readonly version: bigint;
}

/** TableLimits.records when absent. */
export const DEFAULT_RECORD_CACHE = 16_384;

/** Sessions as `SessionTable.snapshot` found them: session i's id bytes at ids[16i], its life at lives[i]. */
export interface SessionSnapshot {
  readonly count: number;
  readonly ids: Uint8Array;
  readonly lives: Float64Array;
}

export interface ListQuery {
  readonly owner?: string;
  readonly limit: number;
  /** Exclusive: only ids greater than this one. */
  readonly after?: string;
}

export class SessionTable {
  readonly #limits: TableLimits;
  readonly #rows: SessionRows;
  /**
   * Every live row once, by its 16 id bytes: the per-datagram lookup straight from a packet, and the
   * lookup by id text (which decodes the text). The table's one index by id.
   */
  readonly #byId: IdIndex;
  /** How many live records each owner has (an owner with none is left out). Its records: `walkOwner`. */
  readonly #owners = new Map<string, number>();
  /**
   * Every live row once, by a deadline that is never later than its `expiresAt` (touch moves only
   * `expiresAt`; `dueForExpiry` moves the heap's deadline up to it lazily).
   */
  readonly #expiry: ExpiryHeap;
  /**
   * Tombstones: id → its entry (until when, and the life that ended). Inserted in `now` order, so the FIFO
   * of entries is also an expiry order.
   */
  readonly #tombstones = new Map<string, Tombstone>();
  // An entry is current only while the map still holds it for that id: an id cleared by insert and
  // tombstoned again leaves an older, stale entry behind that must neither block nor evict.
  #tombFifo: Tombstone[] = [];
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
   * A tag per owner (1–65535; 0 once they run out: such rows are read to learn their owner), kept with
   * each row's slot in the id index so that a walk or a page for one owner skips the others' rows
   * without reading them. Owners are node ids: a handful, never given back.
   */
  readonly #ownerTags = new Map<string, number>();
  // The record cache (see the header): records by cache slot (a row's slot is rows.cacheSlot), a CLOCK
  // reference bit per slot, the free slots, the hand.
  readonly #cache: (SessionRecord | null)[] = [];
  #cacheRef = new Uint8Array(64);
  readonly #cacheFree: number[] = [];
  #hand = 0;
  readonly #cacheMax: number;
  /**
   * Records holding out-of-line state, by row (rows.cacheSlot PINNED), out of the CLOCK ring: the hand
   * moves such a record here when it meets it, and the record goes back to the ring when it holds nothing
   * out of line any more. So the ring never holds more than its size, and the hand never passes one twice.
   */
  readonly #pinned = new Map<number, SessionRecord>();
  /** Records that left the cache, by row, while something may still hold them. */
  readonly #left = new Map<number, WeakRef<SessionRecord>>();
  readonly #gone = new FinalizationRegistry<number>((row) => {
    const w = this.#left.get(row);
    if (w !== undefined && w.deref() === undefined) this.#left.delete(row);
  });
  /** insert's id words (nothing kept between calls). */
  readonly #words = new Int32Array(4);

  constructor(limits: TableLimits) {
    this.#limits = limits;
    this.#cacheMax = Math.max(1, limits.records ?? DEFAULT_RECORD_CACHE);
    this.#rows = new SessionRows(limits.reserve ?? 0);
    this.#rows.seqBase = limits.seqBase ?? 0;
    this.#byId = new IdIndex(limits.idKey ?? idIndexKey(), this.#rows);
    this.#expiry = new ExpiryHeap(this.#rows, this.#rows.capacity);
    this.#rows.onPinned = (row) => this.#pin(row);
    this.#rows.onUnpinned = (row) => this.#unpin(row);
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
    const row = this.#byId.getByHex(id);
    if (row === -1) return undefined;
    const rec = this.#recordAt(row);
    return rec.id === id ? rec : undefined;
  }

  /**
   * Whether `rec` itself is live in this table: `get(rec.id) === rec`, answered from the record itself
   * (a record is a view of one of the table's rows exactly while it is live here): no id lookup.
   */
  holds(rec: SessionRecord): boolean {
    return rowsOfRecord(rec) === this.#rows;
  }

  /** The live record whose id is the 16 bytes at `buf[offset]` (a packet's JV1 header): no string built. */
  getByIdBytes(buf: Uint8Array, offset: number): SessionRecord | undefined {
    const row = this.#byId.get(buf, offset);
    return row === -1 ? undefined : this.#recordAt(row);
  }

  /** The record of live row `row`: the cached one (no allocation), the one still held, or a new one. */
  #recordAt(row: number): SessionRecord {
    const slot = this.#rows.cacheSlot[row]!;
    if (slot >= 0) {
      this.#cacheRef[slot] = 1;
      return this.#cache[slot]!;
    }
    if (slot === PINNED) return this.#pinned.get(row)!;
    const w = this.#left.get(row);
    let rec = w?.deref();
    if (w !== undefined) this.#left.delete(row);
    if (rec !== undefined) this.#gone.unregister(rec);
    else rec = recordForRow(this.#rows, row, this.#rows.idText(row));
    this.#cacheIn(row, rec);
    return rec;
  }

  /** Puts `rec` (the record of `row`, in no cache slot) into the cache, making room by CLOCK if it is full. */
  #cacheIn(row: number, rec: SessionRecord): void {
    let slot = this.#cacheFree.pop();
    if (slot === undefined) slot = this.#cache.length < this.#cacheMax ? this.#cache.length : this.#evict();
    if (slot >= this.#cacheRef.length) {
      const ref = new Uint8Array(Math.max(slot + 1, this.#cacheRef.length * 2));
      ref.set(this.#cacheRef);
      this.#cacheRef = ref;
    }
    this.#cache[slot] = rec;
    this.#cacheRef[slot] = 1;
    this.#rows.cacheSlot[row] = slot;
  }

  /**
   * A cache slot made free by CLOCK: the first record met that holds out-of-line state moves to #pinned,
   * or else the first met without its reference bit leaves the cache (kept findable by a WeakRef while
   * something holds it). At most one turn and a step: the first turn clears every reference bit.
   */
  #evict(): number {
    const cache = this.#cache;
    const ref = this.#cacheRef;
    const n = cache.length;
    for (;;) {
      const slot = this.#hand;
      this.#hand = slot + 1 === n ? 0 : slot + 1;
      const rec = cache[slot];
      if (rec === null || rec === undefined) return slot;
      const row = rowOfRecord(rec);
      if (recordPinned(rec)) {
        this.#pinned.set(row, rec);
        this.#rows.cacheSlot[row] = PINNED;
      } else if (ref[slot] === 1) {
        ref[slot] = 0;
        continue;
      } else {
        this.#rows.cacheSlot[row] = -1;
        this.#left.set(row, new WeakRef(rec));
        this.#gone.register(rec, row, rec);
      }
      cache[slot] = null;
      return slot;
    }
  }

  /** The record of `row`, out of the cache, now holds out-of-line state: into #pinned (it is alive: it is being written). */
  #pin(row: number): void {
    const rec = this.#left.get(row)?.deref();
    if (rec === undefined) return; // unreachable: a record out of the cache and alive is in #left
    this.#left.delete(row);
    this.#gone.unregister(rec);
    this.#pinned.set(row, rec);
    this.#rows.cacheSlot[row] = PINNED;
  }

  /** The record of PINNED `row` holds nothing out of line any more: back into the cache. */
  #unpin(row: number): void {
    const rec = this.#pinned.get(row);
    if (rec === undefined) return;
    this.#pinned.delete(row);
    this.#rows.cacheSlot[row] = -1;
    this.#cacheIn(row, rec);
  }

  /** Until when `id` is a tombstone, if it is one at `now`. */
  tombstoneUntil(id: string, now: number): number | undefined {
    return this.tombstone(id, now)?.until;
  }

  /** The tombstone of `id` if it is one at `now`: with the life that ended and its version then. */
  tombstone(id: string, now: number): Tombstone | undefined {
    const t = this.#tombstones.get(id);
    return t !== undefined && t.until > now ? t : undefined;
  }

  /**
   * Adds a live record. The caller checked `full` and the tombstone first; false if it could not (also
   * for a record that is live in another table: a record belongs to one table at a time).
   */
  insert(rec: SessionRecord): boolean {
    const own = ownFields(rec); // TypeError for a record newSessionRecord did not make
    if (this.full || own === null) return false;
    const w = this.#words;
    if (!hexWords(rec.id, w)) return false;
    if (this.#byId.find(w[0]!, w[1]!, w[2]!, w[3]!) !== -1) return false; // the same id bytes (under any text form): never two records
    const odd = !isLowerHexId(rec.id);
    const rows = this.#rows;
    const row = rows.alloc(w, odd ? rec.id : null, own);
    attachRecord(rec, rows, row);
    this.#byId.add(row, this.#tagFor(own.owner));
    this.#count(own.owner, 1);
    if (own.servedHere) this.#served++;
    if (odd) this.#oddIds++;
    this.#tombstones.delete(rec.id);
    this.#expiry.push(row, own.expiresAt);
    this.#cacheIn(row, rec);
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
      this.#byId.retag(rowOfRecord(rec), this.#tagFor(owner));
    }
    rec.owner = owner;
  }

  /** Removes a live record and leaves a tombstone until `now + tombstone_s`. */
  remove(rec: SessionRecord, now: number): void {
    if (!this.holds(rec)) return;
    this.#forget(rec);
    if (this.#limits.tombstoneMs > 0) this.#addTombstone({ id: rec.id, until: now + this.#limits.tombstoneMs, life: rec.incarnation, version: rec.version });
  }

  /** Removes a record that never became a session (its admission failed): no tombstone. */
  discard(rec: SessionRecord): void {
    if (this.holds(rec)) this.#forget(rec);
  }

  /**
   * For the in-process store that reads its records from this table's rows (store/table-records.ts): the
   * rows, whose changes to what the store reads are told to `hooks` (RowStoreHooks), and the live row whose
   * id text is `id` exactly (32 lower-case hex characters; -1 for any other text, or none). One store at a time.
   */
  bindStore(hooks: RowStoreHooks): { readonly rows: SessionRows; rowOf(id: string): number } {
    const rows = this.#rows;
    if (rows.storeHooks !== null) throw new Error('the session table already holds a store\'s records');
    rows.storeHooks = hooks;
    const index = this.#byId;
    return {
      rows,
      rowOf(id: string): number {
        if (!isLowerHexId(id)) return -1;
        const row = index.getByHex(id);
        return row === -1 || rows.hasOwnIdText(row) ? -1 : row;
      },
    };
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
    return new OwnerSlotWalk(owner, this.#tagOf(owner), this.#byId, this.#rows, this.#at);
  }

  /** The same walk over every record (any owner): for work spread over many calls (see OwnerWalk). */
  walkAll(): RecordWalk {
    return new SlotWalk(null, 0, this.#byId, this.#rows, this.#at);
  }

  /** Rows the columns have room for without growing (at least `reserve`, up to MAX_RESERVED). */
  get rowCapacity(): number {
    return this.#rows.capacity;
  }

  /** Slots of the id index (a walk looks at this many in a pass): about 1.6 to 3.2 per record. */
  get slots(): number {
    return this.#byId.capacity;
  }

  /** Owners with at least one session, with their counts. */
  ownerCounts(): Map<string, number> {
    return new Map(this.#owners);
  }

  /**
   * Which sessions there are now (those `want` accepts by their numbers, read from their rows: every one
   * when absent), as ids and lives in two typed arrays: no record made, ~24 bytes per session, where a
   * copy of `values()` made a record per session (at 1,000,000: +524 MB of RSS and 4.7 s in one turn of the
   * event loop; this, 140 ms and +24 MB). Each stays findable by `snapshotted` for as long as it lives.
   */
  snapshot(want?: (servedHere: boolean, expiresAt: number, storeExpiresAt: number) => boolean): SessionSnapshot {
    const rows = this.#rows;
    const index = this.#byId;
    const ids = new Uint8Array(this.size * 16);
    const lives = new Float64Array(this.size);
    let n = 0;
    for (let i = 0; i < index.capacity; i++) {
      const row = index.at(i);
      if (row === -1 || (want !== undefined && !want(rows.servedOf(row), rows.expiresAt[row]!, rows.storeExpiresAt[row]!))) continue;
      rows.idBytesInto(row, ids, n * 16);
      lives[n++] = rows.incarnationOf(row);
    }
    return { count: n, ids, lives };
  }

  /**
   * Session `i` of `snap`, if it is still in the table in the same life (not one of its id admitted anew:
   * lives are drawn at random per admission, 31 bits; two sessions of life 0, from directors before lives
   * were kept, are not told apart).
   */
  snapshotted(snap: SessionSnapshot, i: number): SessionRecord | undefined {
    const row = this.#byId.get(snap.ids, i * 16);
    return row === -1 || this.#rows.incarnationOf(row) !== snap.lives[i] ? undefined : this.#recordAt(row);
  }

  /** Every live record once, in no particular order. The table must not change while this runs (copy it first). */
  *values(): IterableIterator<SessionRecord> {
    const index = this.#byId;
    for (let i = 0; i < index.capacity; i++) {
      const row = index.at(i);
      if (row !== -1) yield this.#recordAt(row);
    }
  }

  /** #recordAt for the walks. */
  readonly #at = (row: number): SessionRecord => this.#recordAt(row);

  /**
   * Returns up to `limit` records in id order after `after` (a stable cursor under churn).
   * One pass over the rows' id column per page (SessionRows.smallest): a row's owner is read only when
   * its id would be on the page so far, and records are made only for the page. At 1,000,000 sessions a
   * page costs ~8 ms of event loop where a scan of the records cost 0.3-1 s (bench/README.md, `memory`'s
   * admin figures).
   * An `after` that is not a session id's text, or a table holding an id text that is not lower case,
   * takes the scan that compares texts (the same answer, slower).
   */
  list(q: ListQuery): { items: SessionRecord[]; more: boolean } {
    if (q.owner !== undefined && !this.#owners.has(q.owner)) return { items: [], more: false };
    if (this.#oddIds === 0 && (q.after === undefined || isLowerHexId(q.after))) {
      const owner = q.owner;
      const rows = this.#rows;
      const found = rows.smallest(q.limit + 1, q.after === undefined ? null : idBytesFromHex(q.after), owner ?? null);
      const recs = found.slice(0, q.limit).map(this.#at);
      return { items: recs, more: found.length > q.limit };
    }
    return this.#listByText(q);
  }

  /** `list` by comparing id texts over every record: O(n log limit), a record read per slot. */
  #listByText(q: ListQuery): { items: SessionRecord[]; more: boolean } {
    const keep = q.limit + 1;
    const heap = new TinyQueue<SessionRecord>([], (a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)); // max-heap by id
    for (const rec of this.values()) {
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
    const expiresAt = this.#rows.expiresAt;
    while (due.length < limit && heap.peekDeadline() <= now) {
      const row = heap.peek();
      if (expiresAt[row]! > now) {
        heap.retop(expiresAt[row]!); // touched since: its deadline catches up
        continue;
      }
      due.push(this.#recordAt(row));
      // Re-queue so that a record the caller keeps (e.g. a failed transition) is seen again soon.
      heap.retop(now + Math.min(this.#limits.idleTtlMs, REQUEUE_MS));
    }
    this.#sweepTombstones(now);
    return due;
  }

  #addTombstone(t: Tombstone): void {
    while (this.#tombstones.size >= this.#limits.max) {
      const oldest = this.#tombFifo[this.#tombHead++];
      if (oldest === undefined) break;
      if (this.#tombstones.get(oldest.id) === oldest) {
        this.#tombstones.delete(oldest.id);
        this.#tombstonesEvicted++;
      }
    }
    this.#tombstones.set(t.id, t);
    this.#tombFifo.push(t);
  }

  #sweepTombstones(now: number): void {
    while (this.#tombHead < this.#tombFifo.length) {
      const e = this.#tombFifo[this.#tombHead]!;
      // Only the current entry of an id counts; a stale one (the id was cleared and tombstoned again) is skipped.
      if (this.#tombstones.get(e.id) === e) {
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

  /**
   * Takes a live record out of every index (no tombstone) and out of the cache; the record keeps its
   * row's fields as its own, and the row is freed.
   */
  #forget(rec: SessionRecord): void {
    const rows = this.#rows;
    const row = rowOfRecord(rec);
    this.#byId.delete(row);
    this.#expiry.remove(row);
    this.#count(rec.owner, -1);
    if (rec.servedHere) this.#served--;
    if (!isLowerHexId(rec.id)) this.#oddIds--;
    const slot = rows.cacheSlot[row]!;
    if (slot >= 0) {
      this.#cache[slot] = null;
      this.#cacheFree.push(slot);
    } else if (slot === PINNED) this.#pinned.delete(row);
    if (this.#left.delete(row)) this.#gone.unregister(rec);
    detachRecord(rec);
    rows.release(row);
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
  /**
   * `next` for callers that want only some sessions: a session's record is made (or found) only when
   * `want` accepts its numbers, read from its row (no record is made for the others).
   */
  nextWhere(budget: { slots: number }, want: (servedHere: boolean, expiresAt: number, storeExpiresAt: number) => boolean): SessionRecord | undefined;
  /**
   * `next` for callers that need only the ids: writes the next session's 16 id bytes into `out` and
   * returns a number that stays that session's for as long as it lives (its row: a later session may get
   * it once it ends), or -1 when the pass is done or the budget ran out first. No record is made.
   */
  nextId(budget: { slots: number }, out: Uint8Array): number;
}

class SlotWalk implements RecordWalk {
  /** The owner whose records the walk returns; null: every record. */
  readonly #match: string | null;
  /** Its rows' tag in the index (see SessionTable #ownerTags): a slot of another nonzero tag is skipped unread. */
  readonly #tag: number;
  readonly #index: IdIndex;
  readonly #rows: SessionRows;
  readonly #record: (row: number) => SessionRecord;
  /** The next slot to look at, going down; -1 once the pass is done. */
  #slot: number;

  constructor(match: string | null, tag: number, index: IdIndex, rows: SessionRows, record: (row: number) => SessionRecord) {
    this.#match = match;
    this.#tag = tag;
    this.#index = index;
    this.#rows = rows;
    this.#record = record;
    this.#slot = index.capacity - 1;
  }

  get done(): boolean {
    return this.#slot < 0;
  }

  next(budget: { slots: number }): SessionRecord | undefined {
    const row = this.#nextRow(budget);
    return row === -1 ? undefined : this.#record(row);
  }

  nextWhere(budget: { slots: number }, want: (servedHere: boolean, expiresAt: number, storeExpiresAt: number) => boolean): SessionRecord | undefined {
    const rows = this.#rows;
    for (let row = this.#nextRow(budget); row !== -1; row = this.#nextRow(budget)) {
      if (want(rows.servedOf(row), rows.expiresAt[row]!, rows.storeExpiresAt[row]!)) return this.#record(row);
    }
    return undefined;
  }

  nextId(budget: { slots: number }, out: Uint8Array): number {
    const row = this.#nextRow(budget);
    if (row !== -1) this.#rows.idBytesInto(row, out);
    return row;
  }

  /** The next row of the walk's owner (any, for a walk of all), -1 when the pass is done or the budget ran out. */
  #nextRow(budget: { slots: number }): number {
    const index = this.#index;
    while (this.#slot >= 0 && budget.slots > 0) {
      budget.slots--;
      const slot = this.#slot--;
      if (this.#match !== null) {
        const t = index.tagAt(slot);
        if (t !== this.#tag && t !== 0) continue;
      }
      const row = index.at(slot);
      if (row !== -1 && (this.#match === null || this.#rows.ownerOf(row) === this.#match)) return row;
    }
    return -1;
  }
}

class OwnerSlotWalk extends SlotWalk implements OwnerWalk {
  readonly owner: string;

  constructor(owner: string, tag: number, index: IdIndex, rows: SessionRows, record: (row: number) => SessionRecord) {
    super(owner, tag, index, rows, record);
    this.owner = owner;
  }
}

/** Owner tags there are (Uint16 slots; 0 means none). */
const MAX_OWNER_TAG = 65_535;
/** How soon a record returned by `dueForExpiry` but kept by the caller is returned again (at most). */
const REQUEUE_MS = 1000;
