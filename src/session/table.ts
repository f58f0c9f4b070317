// The bounded session table: records indexed by id and by owner, tombstones, and idle expiry by sweep
// (one expiry-ordered heap, no timer per session). Pure data structure: time comes in as `now` (ms);
// it never decides lifecycle transitions (lifecycle.ts does) and never does I/O.
import TinyQueue from 'tinyqueue';
import type { Transport } from '../codec/types.js';
import type { SessionState } from './lifecycle.js';
import { IdIndex, idIndexKey } from './id-index.js';

export interface SessionRecord {
  /** 32 lowercase hex characters. */
  readonly id: string;
  /** The 16 id bytes (own copy, never a view into a packet buffer). */
  readonly idBytes: Uint8Array;
  owner: string;
  version: bigint;
  state: SessionState;
  /** The bound client transport; replies go here. */
  transport: Transport;
  transportKey: string;
  /** Index of the director listener the bound transport talks to. */
  listener: number;
  /** Next PROXY v2 sequence number (starts at 1, never restarts). */
  nextSeq: number;
  readonly createdAt: number;
  lastSeen: number;
  /** Absolute idle deadline: lastSeen + idle TTL. */
  expiresAt: number;
  /** Owned by the shell (e.g. a pre-encoded PROXY v2 prefix); the table never reads it. */
  shellCache: unknown;
  /** The transition whose store write is in flight (one at a time per session), or null. */
  pending: string | null;
  /** Packets from the bound transport held while a transition is in flight or the session is frozen. */
  held: Buffer[] | null;
  /** Transports that sent packets for this session without being bound (jump candidates), bounded. */
  candidates: Map<string, Candidate> | null;
  /** The owner before the last transfer: its late replies are expected, not a security event. */
  formerOwner: string | null;
  /** Node replies that arrived while a reattach was being CASed: they go to the transport that wins. */
  heldReplies: Buffer[] | null;
  /**
   * Whether this director serves the session (admitted it, or saw its client's traffic). A session only
   * mirrored from another director's writes expires here by the store's expiry (plus a grace), not by
   * this director's idle deadline.
   */
  servedHere: boolean;
  /**
   * The idle expiry the store holds, as far as this director knows (monotonic ms). The director that
   * serves the session refreshes it in coarse steps; every other director expires the session by it.
   */
  storeExpiresAt: number;
}

/** A client transport that sent packets of a session without being bound to it. */
export interface Candidate {
  readonly transport: Transport;
  readonly key: string;
  listener: number;
  /** Bytes received from it and sent to it (only REJECTs), so that we never send it more than 3×. */
  bytesIn: number;
  bytesOut: number;
  /** Set while a reattach CAS binds this transport (a second BIND for it is a duplicate, not a rival). */
  binding?: boolean;
}

/** A new record with the bookkeeping fields empty. */
export function newSessionRecord(f: {
  id: string;
  idBytes: Uint8Array;
  owner: string;
  version: bigint;
  state: SessionState;
  transport: Transport;
  transportKey: string;
  listener: number;
  now: number;
  idleTtlMs: number;
}): SessionRecord {
  return {
    id: f.id,
    idBytes: f.idBytes,
    owner: f.owner,
    version: f.version,
    state: f.state,
    transport: f.transport,
    transportKey: f.transportKey,
    listener: f.listener,
    nextSeq: 1,
    createdAt: f.now,
    lastSeen: f.now,
    expiresAt: f.now + f.idleTtlMs,
    shellCache: undefined,
    pending: null,
    held: null,
    candidates: null,
    formerOwner: null,
    heldReplies: null,
    servedHere: true,
    storeExpiresAt: f.now + f.idleTtlMs,
  };
}

export interface TableLimits {
  readonly max: number;
  readonly idleTtlMs: number;
  readonly tombstoneMs: number;
  /** Key of the id-bytes index (see id-index.ts); random when absent. It only places records, never decides. */
  readonly idKey?: Uint32Array;
}

interface ExpiryEntry {
  deadline: number;
  rec: SessionRecord;
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
  readonly #expiry = new TinyQueue<ExpiryEntry>([], (a, b) => a.deadline - b.deadline);
  /** The one heap entry that speaks for each live record; any other entry for it is stale and skipped. */
  readonly #entryOf = new WeakMap<SessionRecord, ExpiryEntry>();
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

  /** The live record whose id is the 16 bytes at `buf[offset]` (a packet's JV1 header): no string built. */
  getByIdBytes(buf: Uint8Array, offset: number): SessionRecord | undefined {
    return this.#byIdBytes.get(buf, offset);
  }

  /** Until when `id` is a tombstone, if it is one at `now`. */
  tombstoneUntil(id: string, now: number): number | undefined {
    const until = this.#tombstones.get(id);
    return until !== undefined && until > now ? until : undefined;
  }

  /** Adds a live record. The caller checked `full` and the tombstone first; false if it could not. */
  insert(rec: SessionRecord): boolean {
    if (this.full || this.#byId.has(rec.id)) return false;
    if (!this.#byIdBytes.add(rec)) return false; // the same id bytes under another text form: never two records
    this.#byId.set(rec.id, rec);
    this.#ownerSet(rec.owner).add(rec.id);
    this.#tombstones.delete(rec.id);
    const entry: ExpiryEntry = { deadline: rec.expiresAt, rec };
    this.#entryOf.set(rec, entry);
    this.#expiry.push(entry);
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
    this.#removeFromOwner(rec.owner, rec.id);
    if (this.#limits.tombstoneMs > 0) this.#addTombstone(rec.id, now + this.#limits.tombstoneMs);
  }

  /** Removes a record that never became a session (its admission failed): no tombstone. */
  discard(rec: SessionRecord): void {
    if (this.#byId.get(rec.id) !== rec) return;
    this.#byId.delete(rec.id);
    this.#byIdBytes.delete(rec);
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
    while (due.length < limit) {
      const top = this.#expiry.peek();
      if (top === undefined || top.deadline > now) break;
      this.#expiry.pop();
      const rec = top.rec;
      // Removed or replaced since, or an older entry of a record removed and inserted again.
      if (this.#byId.get(rec.id) !== rec || this.#entryOf.get(rec) !== top) continue;
      if (rec.expiresAt > now) {
        top.deadline = rec.expiresAt;
        this.#expiry.push(top);
        continue;
      }
      due.push(rec);
      // Re-queue so that a record the caller keeps (e.g. a failed transition) is seen again soon.
      top.deadline = now + Math.min(this.#limits.idleTtlMs, REQUEUE_MS);
      this.#expiry.push(top);
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
