// Which sessions keep their PROXY v2 header ready (issue 7: memory per session). The shell caches a
// session's whole header on the record (`shellCache`, a header in a slab slot) so that a datagram
// costs a copy, not a build; with a million mostly idle sessions that cache alone was a third of the
// director's memory. Here at most `capacity` sessions hold one: the recently active ones, chosen by
// CLOCK (second chance): a cache used since the hand last passed it is skipped once, an unused one is
// taken back. Pure data structure: no clock, no I/O; it never decides routing, and a session whose
// cache was taken back only builds its header again on its next datagram.
// An entry belongs to its slot, not to a session: made the first time the slot is used, then handed to
// each session the slot is given to (`claim`), rewritten in place. A cache full of sessions coming and
// going makes no garbage, and the headers themselves sit in one slab (SessionHeaders), not in a buffer
// each: at 1,000,000 sessions the director's RSS fell by ~36 bytes per session (bench `memory`).

import { createPpv2Template, ppv2HeaderLength, writePpv2 } from '../codec/ppv2.js';
import type { Transport } from '../codec/types.js';
import { destInto } from '../net/native/addr.js';

/** What a cache entry carries for the slots: where it sits, and whether it was used since the hand passed. */
export interface SlotEntry {
  /** The slot the entry was given; only HeaderCacheSlots writes it. */
  slot: number;
  /** Set by the user on every use; cleared by the hand. */
  used: boolean;
}

/** A record that can hold one cache entry (a SessionRecord's `shellCache`). */
export interface CacheHolder {
  shellCache: unknown;
}

export class HeaderCacheSlots<E extends SlotEntry> {
  readonly #holders: (CacheHolder | null)[];
  /** Each slot's entry, made by `#make` the first time the slot is given. */
  readonly #entries: (E | undefined)[];
  readonly #make: (slot: number) => E;
  #hand = 0;
  #held = 0;
  #evicted = 0;

  constructor(
    readonly capacity: number,
    make: (slot: number) => E,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`header cache capacity must be an integer ≥ 1, got ${capacity}`);
    this.#holders = new Array<CacheHolder | null>(capacity).fill(null);
    this.#entries = new Array<E | undefined>(capacity);
    this.#make = make;
  }

  /** Slots that hold a record now (some of their entries may have been dropped by the record since). */
  get size(): number {
    return this.#held;
  }

  /** Entries taken back from a record to make room for another (a counter: never goes down). */
  get evicted(): number {
    return this.#evicted;
  }

  /**
   * The entry `rec` holds (`rec.shellCache`), for the caller to write: the one it holds now if that is one
   * of ours, else a free slot's or the one taken back from the least recently used holder (whose
   * `shellCache` is cleared first: no two records ever hold the same entry). Marked used.
   */
  claim(rec: CacheHolder): E {
    const now = this.#entryOf(rec);
    if (now !== null) {
      now.used = true;
      return now;
    }
    const slot = this.#take();
    let entry = this.#entries[slot];
    if (entry === undefined) {
      entry = this.#make(slot);
      entry.slot = slot;
      this.#entries[slot] = entry;
    }
    this.#holders[slot] = rec;
    entry.used = true;
    rec.shellCache = entry;
    return entry;
  }

  /** Forgets `rec`'s entry (its session ended): the slot is free and the record holds nothing. */
  release(rec: CacheHolder): void {
    const e = this.#entryOf(rec);
    if (e === null) return;
    this.#holders[e.slot] = null;
    this.#held--;
    rec.shellCache = undefined;
  }

  /** `rec`'s entry if it holds one of ours (in the slot the entry names), else null. */
  #entryOf(rec: CacheHolder): E | null {
    const e = rec.shellCache as E | undefined;
    if (e === undefined || e === null || typeof e.slot !== 'number') return null;
    return this.#holders[e.slot] === rec && this.#entries[e.slot] === e ? e : null;
  }

  /**
   * A slot for a new entry: the first one under the hand that is free, whose holder dropped its entry,
   * or whose entry was not used since the hand last passed (its entry is taken back). At most two turns.
   */
  #take(): number {
    const holders = this.#holders;
    const n = holders.length;
    for (let i = 0; i < 2 * n + 1; i++) {
      const slot = this.#hand;
      this.#hand = slot + 1 === n ? 0 : slot + 1;
      const h = holders[slot];
      if (h === null || h === undefined) {
        this.#held++;
        return slot;
      }
      const e = h.shellCache as E | undefined;
      if (e === undefined || e !== this.#entries[slot]) return slot; // the holder dropped it (or holds another slot's)
      if (e.used) {
        e.used = false;
        continue;
      }
      h.shellCache = undefined;
      this.#evicted++;
      return slot;
    }
    // Unreachable: the first turn clears every used bit, so the second finds an unused entry.
    throw new Error('header cache: no slot found in two turns');
  }
}

/**
 * Slab bytes per slot: a header of IPv4 addresses with an owner id of up to 52 bytes, or of IPv6 addresses
 * with one of up to 28, fits; a longer one gets a buffer of its own.
 */
export const HEADER_SLOT_BYTES = 128;

/**
 * A session's cached PROXY v2 header, for its bound transport and listener: the whole header (flags and seq
 * left 0) for one owner and version, which every forward copies and completes. Its first `prefixLength`
 * bytes are the address block (the part that depends on the transport only). Rewritten in place for each
 * session its slot is given to.
 */
export interface SessionHeader<U> extends SlotEntry {
  /** The bound transport the header is for (the core drops the cache when it binds another). */
  transport: Transport | null;
  listener: number;
  prefixLength: number;
  node: string;
  /** The upstream of `node` (so a forward to it needs no lookup). */
  up: U | null;
  version: bigint;
  /** The header: a view of the slot's part of the slab (a buffer of its own when longer than a slot). */
  template: Buffer;
  /** Where the numeric destination of `transport` (native replies) is: see DestState and SessionHeaders.destOf. */
  dest: DestState;
  /** Its six ints' place in SessionHeaders.dests (the slot's, fixed). */
  readonly destAt: number;
}

/** SessionHeader.dest: not written yet (no reply sent since the header was cached), in `dests`, or none. */
export const DestState = {
  UNKNOWN: 0,
  KNOWN: 1,
  /** The transport's address is not an IP literal (never the case for a socket-reported one). */
  NONE: 2,
} as const;
export type DestState = (typeof DestState)[keyof typeof DestState];

/** Ints of a numeric destination (FAMILY, PORT, ADDR words: net/native/addr.ts destInto). */
const DEST_INTS = 6;

const NO_HEADER = Buffer.alloc(0);

/** The director's header cache: HeaderCacheSlots of SessionHeader entries, their headers in one slab. */
export class SessionHeaders<U> {
  readonly #slots: HeaderCacheSlots<SessionHeader<U>>;
  /** HEADER_SLOT_BYTES per slot: memory the kernel hands out as slots are first written. */
  readonly #slab: Buffer;
  /**
   * Each slot's numeric reply destination, six ints at its entry's `destAt` (one array for all: an
   * Int32Array per slot cost ~136 bytes of heap beside its 24).
   */
  readonly dests: Int32Array;

  constructor(capacity: number) {
    this.#slots = new HeaderCacheSlots<SessionHeader<U>>(capacity, (slot) => ({ slot, used: false, transport: null, listener: 0, prefixLength: 0, node: '', up: null, version: 0n, template: NO_HEADER, dest: DestState.UNKNOWN, destAt: slot * DEST_INTS }));
    this.#slab = Buffer.alloc(capacity * HEADER_SLOT_BYTES);
    this.dests = new Int32Array(capacity * DEST_INTS);
  }

  /** Sessions holding a header now (see HeaderCacheSlots.size). */
  get size(): number {
    return this.#slots.size;
  }

  /** Headers taken back to make room (a counter). */
  get evicted(): number {
    return this.#slots.evicted;
  }

  /**
   * Caches `rec`'s header for `transport` and `listener` (whose address block is `prefix`), toward `node`
   * (`up`, `ownerBytes`) under `version`: in the entry it holds, or in one taken back from another session.
   */
  cache(rec: CacheHolder, transport: Transport, listener: number, prefix: Uint8Array, idBytes: Uint8Array, node: string, up: U, version: bigint, ownerBytes: Uint8Array): SessionHeader<U> {
    const e = this.#slots.claim(rec);
    try {
      this.#write(e, prefix, idBytes, node, up, version, ownerBytes);
    } catch (err) {
      // A header that cannot be written (a programming error: a version or owner out of range) leaves
      // the session holding no entry, not one half rewritten.
      this.#slots.release(rec);
      throw err;
    }
    e.transport = transport;
    e.listener = listener;
    e.prefixLength = prefix.length;
    e.dest = DestState.UNKNOWN;
    return e;
  }

  /**
   * Whether `e`'s transport has a numeric destination, in `dests` at `e.destAt`: written the first time it
   * is asked for (a reply), kept until the entry is cached for another transport.
   */
  destOf(e: SessionHeader<U>): boolean {
    if (e.dest === DestState.UNKNOWN) e.dest = e.transport !== null && destInto(e.transport, this.dests, e.destAt) !== null ? DestState.KNOWN : DestState.NONE;
    return e.dest === DestState.KNOWN;
  }

  /**
   * Writes `e`'s header again for another owner or version (a transfer): the address block stays. Throws
   * (a programming error, as `cache`) before changing anything but the slot's bytes past the address block,
   * which `e` then no longer names: its node and version stay the old ones, so the next use writes it again.
   */
  retarget(e: SessionHeader<U>, idBytes: Uint8Array, node: string, up: U, version: bigint, ownerBytes: Uint8Array): void {
    this.#write(e, e.template.subarray(0, e.prefixLength), idBytes, node, up, version, ownerBytes);
  }

  /** Forgets `rec`'s header (its session ended). */
  release(rec: CacheHolder): void {
    this.#slots.release(rec);
  }

  /** Writes the header into `e`'s slot (or a buffer of its own), then names its node and version. */
  #write(e: SessionHeader<U>, prefix: Uint8Array, idBytes: Uint8Array, node: string, up: U, version: bigint, ownerBytes: Uint8Array): void {
    const len = ppv2HeaderLength(prefix, ownerBytes);
    if (len <= HEADER_SLOT_BYTES) {
      const at = e.slot * HEADER_SLOT_BYTES;
      // `prefix` may be this very slot's address block (retarget): copied onto itself, unchanged.
      writePpv2(this.#slab, prefix, idBytes, version, ownerBytes, 0, 0, at);
      const t = e.template;
      if (t.length !== len || t.buffer !== this.#slab.buffer) e.template = Buffer.from(this.#slab.buffer, this.#slab.byteOffset + at, len);
    } else {
      e.template = createPpv2Template(prefix, idBytes, version, ownerBytes);
    }
    e.node = node;
    e.up = up;
    e.version = version;
  }
}
