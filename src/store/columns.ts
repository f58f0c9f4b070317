// How the in-process store holds its records: one column per StoredSession field, a slot per session
// (issue 7: memory per session), instead of a frozen object per record plus an owner index of Sets.
// Owns the columns, the id → slot map and the interned names; it never decides a write (MemoryStore
// does) and hands out only frozen copies, so no caller ever sees a slot or the columns themselves.
//
// Per session: the id → slot map entry (the id is its key), a transport reference, owner/director/state
// as numbers of interned strings (few distinct values), the version as a u64 and the expiry as a float64
// (≈85 bytes instead of ≈170). A record whose fields do not fit the columns (the interface allows any
// director, state, transport or expiry value) is kept whole, as the frozen object it came as. Slots are
// reused, and the columns compacted when three quarters of them are free.
import type { StoredSession } from './store.js';

const MIN_CAPACITY = 16;
/** A slot with no interned name (a record kept whole). */
const NONE = -1;

/** Interned strings with reference counts: a name is forgotten when nothing refers to it any more. */
export class Names {
  readonly #num = new Map<string, number>();
  readonly #str: (string | null)[] = [];
  readonly #refs: number[] = [];
  readonly #free: number[] = [];

  /** How many distinct names are held. */
  get size(): number {
    return this.#num.size;
  }

  /** The number of `s`, adding one reference to it. */
  ref(s: string): number {
    let n = this.#num.get(s);
    if (n === undefined) {
      n = this.#free.pop() ?? this.#str.length;
      this.#num.set(s, n);
      this.#str[n] = s;
      this.#refs[n] = 0;
    }
    this.#refs[n]!++;
    return n;
  }

  /** Drops one reference to name `n` (from `ref`). */
  unref(n: number): void {
    if (--this.#refs[n]! > 0) return;
    this.#num.delete(this.#str[n]!);
    this.#str[n] = null;
    this.#free.push(n);
  }

  /** The string of name `n`, which must be referenced. */
  str(n: number): string {
    return this.#str[n] as string;
  }

  /** The number of `s` if it is referenced (no reference added). */
  find(s: string): number | undefined {
    return this.#num.get(s);
  }
}

/** Whether every field of `r` fits the columns (strings where they are strings, a number expiry). */
function fits(r: StoredSession): boolean {
  return typeof r.director === 'string' && typeof r.state === 'string' && (r.transport === null || typeof r.transport === 'string') && typeof r.expiresAt === 'number';
}

export class SessionColumns {
  /** id → slot: the only place a slot's id is kept (the map's key). */
  readonly #slotOf = new Map<string, number>();
  readonly #names = new Names();
  /** Slots in use or free: the typed columns hold at least this many. */
  #slots = 0;
  #transport: (string | null)[] = [];
  #owner = new Int32Array(MIN_CAPACITY);
  #director = new Int32Array(MIN_CAPACITY);
  /** Slot → state name, or NONE for a record kept whole. */
  #state = new Int32Array(MIN_CAPACITY);
  #version = new BigUint64Array(MIN_CAPACITY);
  #expiresAt = new Float64Array(MIN_CAPACITY);
  /** Slots whose record does not fit the columns: the frozen record itself (its owner is in #owner still). */
  #whole = new Map<number, StoredSession>();
  /** Free slots below #slots, reused before the columns grow. */
  #free: number[] = [];

  get size(): number {
    return this.#slotOf.size;
  }

  has(id: string): boolean {
    return this.#slotOf.has(id);
  }

  /** A frozen copy of the record with `id` (a new object on every call), or undefined. */
  get(id: string): StoredSession | undefined {
    const slot = this.#slotOf.get(id);
    return slot === undefined ? undefined : this.#record(id, slot);
  }

  /**
   * The slot of the record with `id`, or -1: with `versionAt`, `recordAt` and `replaceAt`, a
   * compare-and-swap looks the id up once (the id map is the store's largest, and each lookup a cache miss).
   * A slot is valid until the next `set` or `delete`.
   */
  slotOf(id: string): number {
    return this.#slotOf.get(id) ?? -1;
  }

  /** The version held in slot `slot` (from `slotOf`). */
  versionAt(slot: number): bigint {
    const state = this.#state[slot]!;
    return state === NONE ? (this.#whole.get(slot) as StoredSession).version : this.#version[slot]!;
  }

  /** A frozen copy of the record `id` held in slot `slot` (from `slotOf(id)`). */
  recordAt(id: string, slot: number): StoredSession {
    return this.#record(id, slot);
  }

  /** Holds `r` in slot `slot`, the slot of the record with its id (from `slotOf(r.id)`), in its place. */
  replaceAt(slot: number, r: StoredSession): void {
    this.#release(slot);
    this.#fill(slot, r);
  }

  /**
   * Holds `r` (already checked and frozen by freezeRecord: a string id and owner, a u64 version),
   * replacing the record with its id if there is one.
   */
  set(r: StoredSession): void {
    let slot = this.#slotOf.get(r.id);
    if (slot === undefined) {
      slot = this.#allocate();
      this.#slotOf.set(r.id, slot);
    } else {
      this.#release(slot);
    }
    this.#fill(slot, r);
  }

  #fill(slot: number, r: StoredSession): void {
    const names = this.#names;
    this.#owner[slot] = names.ref(r.owner);
    this.#version[slot] = r.version;
    if (fits(r)) {
      this.#director[slot] = names.ref(r.director);
      this.#state[slot] = names.ref(r.state);
      this.#transport[slot] = r.transport;
      this.#expiresAt[slot] = r.expiresAt;
    } else {
      this.#director[slot] = NONE;
      this.#state[slot] = NONE;
      this.#whole.set(slot, r);
    }
  }

  /** Forgets the record with `id`; false when there is none. */
  delete(id: string): boolean {
    const slot = this.#slotOf.get(id);
    if (slot === undefined) return false;
    this.#slotOf.delete(id);
    this.#release(slot);
    this.#free.push(slot);
    if (this.#slots > 1024 && this.#slotOf.size * 4 < this.#slots) this.#compact();
    return true;
  }

  /**
   * Every record of `owner`, in no particular order. Scans every record: it serves a director's start
   * (loading the sessions of each node) and tests, never a packet or a transition.
   */
  ownedBy(owner: string): StoredSession[] {
    const n = this.#names.find(owner);
    const out: StoredSession[] = [];
    if (n === undefined) return out;
    const owners = this.#owner;
    for (const [id, slot] of this.#slotOf) if (owners[slot] === n) out.push(this.#record(id, slot));
    return out;
  }

  #record(id: string, slot: number): StoredSession {
    const state = this.#state[slot]!;
    if (state === NONE) return this.#whole.get(slot) as StoredSession;
    const names = this.#names;
    return Object.freeze({
      id,
      owner: names.str(this.#owner[slot]!),
      version: this.#version[slot]!,
      state: names.str(state) as StoredSession['state'],
      transport: this.#transport[slot] as string | null,
      director: names.str(this.#director[slot]!),
      expiresAt: this.#expiresAt[slot]!,
    });
  }

  /** Drops what slot `slot` refers to (its names, its transport or its whole record); the slot stays. */
  #release(slot: number): void {
    const names = this.#names;
    const state = this.#state[slot]!;
    if (state === NONE) this.#whole.delete(slot);
    else {
      names.unref(this.#director[slot]!);
      names.unref(state);
    }
    names.unref(this.#owner[slot]!);
    this.#transport[slot] = null;
  }

  /** A slot: a free one, or a new one at the end (the typed columns grow by half). */
  #allocate(): number {
    const reused = this.#free.pop();
    if (reused !== undefined) return reused;
    const slot = this.#slots++;
    if (slot === this.#owner.length) this.#resize(slot + (slot >> 1));
    this.#transport.push(null);
    return slot;
  }

  /** New typed columns of `capacity` slots holding the first #slots slots of the old ones. */
  #resize(capacity: number): void {
    const n = this.#slots;
    const int32 = (a: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> => {
      const b = new Int32Array(capacity);
      b.set(a.subarray(0, n));
      return b;
    };
    this.#owner = int32(this.#owner);
    this.#director = int32(this.#director);
    this.#state = int32(this.#state);
    const version = new BigUint64Array(capacity);
    version.set(this.#version.subarray(0, n));
    this.#version = version;
    const expiresAt = new Float64Array(capacity);
    expiresAt.set(this.#expiresAt.subarray(0, n));
    this.#expiresAt = expiresAt;
  }

  /** Moves every record to the front (most slots are free), in id-map order, into columns that fit. */
  #compact(): void {
    const n = this.#slotOf.size;
    const cap = Math.max(MIN_CAPACITY, n + (n >> 1));
    const owner = new Int32Array(cap);
    const director = new Int32Array(cap);
    const state = new Int32Array(cap);
    const version = new BigUint64Array(cap);
    const expiresAt = new Float64Array(cap);
    const transport: (string | null)[] = [];
    const whole = new Map<number, StoredSession>();
    let to = 0;
    for (const [id, from] of this.#slotOf) {
      owner[to] = this.#owner[from]!;
      director[to] = this.#director[from]!;
      state[to] = this.#state[from]!;
      version[to] = this.#version[from]!;
      expiresAt[to] = this.#expiresAt[from]!;
      transport.push(this.#transport[from] ?? null);
      const w = this.#whole.get(from);
      if (w !== undefined) whole.set(to, w);
      this.#slotOf.set(id, to++); // an existing key: the map's order and size stay
    }
    this.#owner = owner;
    this.#director = director;
    this.#state = state;
    this.#version = version;
    this.#expiresAt = expiresAt;
    this.#transport = transport;
    this.#whole = whole;
    this.#slots = n;
    this.#free = [];
  }
}
