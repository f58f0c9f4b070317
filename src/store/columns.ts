// How the in-process store holds its records: one typed column per StoredSession field, a slot per
// session (issue 7: memory per session), instead of a frozen object per record and a Map by id.
// Owns the columns, the id → slot index and the interned names; it never decides a write (MemoryStore
// does) and hands out only frozen copies, so no caller ever sees a slot or the columns themselves.
//
// Per session: 44 bytes of columns — the id as its 16 bytes (hex-id-slots.ts; formatted again on read),
// owner and director as u16 numbers of interned names, state and the slot's form as a byte each, the
// version and the life (incarnation: directors draw 31 bits) as u32s, the expiry as a float64, the
// transport as a u32 address and a u16 port
// (transport-text.ts; formatted again on read; an IPv6 address takes 16 more bytes in a slab of its own)
// — times the columns' growth slack (up to 1.5×; none within a reservation), plus 4 bytes of id table per
// id at a load between 5/16 and 5/8: ≈ 58 bytes at 1,000,000 sessions, ≈ 60 in the memory bench's
// breakdown (200,000). It was ≈ 85 with an id → slot Map and a transport string per slot — ≈ 150 when nothing else holds that string —
// and ≈ 170 as a frozen object per record. The id text is not kept here (the session table keeps its
// own); a read makes the transport text anew, and the id text where the caller did not give it (ownedBy).
// Whatever does not fit is kept exactly as given, never altered: an id that is not 32 lowercase hex
// characters in a Map by its text, a transport text that would not format back to itself as that text,
// a version over 2^32 - 1 in a Map by slot, and a record with a life over 2^32 - 1, a field of another type (the interface
// allows any director, state, transport or expiry value) or too many distinct names as the frozen object
// it came as.
// Slots are reused, and the columns compacted when three quarters of them are free. `reserve` slots are
// made up front (a director's embedded store does, for the records it keeps apart from its table:
// table-records.ts): resident only once written, and no growth below it — no copy of every column and no
// freed old columns left as holes in the C heap. (A compaction still makes new columns, of the reserve's
// size: resident only for the records it moves.)
import type { StoredSession } from './store.js';
import { Names } from '../util/names.js';
import { reservedCapacity } from '../util/reserve.js';
import { ABSENT, HexIdSlots, NOT_HEX, hexIdKey } from './hex-id-slots.js';
import { formatV4Transport, formatV6Transport, parseV4Transport, parseV6Transport } from './transport-text.js';

const MIN_CAPACITY = 16;
/** Interned owner and director names a u16 column can number, and states a byte can. */
const MAX_NAME = 0xffff;
const MAX_STATE = 0xff;
const U32_MAX = 0xffff_ffff;

/**
 * A slot's form (one byte): whether it holds a record, how its id and transport are kept.
 * The low two bits are the transport's kind.
 */
const Form = {
  NULL_TRANSPORT: 0,
  V4: 1,
  /** #addr is an entry of the IPv6 slab. */
  V6: 2,
  /** In #transportText. */
  TEXT_TRANSPORT: 3,
  KIND: 3,
  /** The id is in #textIds (not 32 lowercase hex characters), not in #ids. */
  TEXT_ID: 4,
  /** The record is in #whole as given; the other columns of the slot mean nothing. */
  WHOLE: 8,
  /** The slot holds a record (a free slot's form is 0). */
  LIVE: 16,
  /** The version is over 2^32 - 1: in #bigVersion, not #version. */
  BIG_VERSION: 32,
} as const;

/** Whether every field of `r` has a type the columns hold (a string state and director, a number expiry...). */
function fits(r: StoredSession): boolean {
  return typeof r.director === 'string' && typeof r.state === 'string' && (r.transport === null || typeof r.transport === 'string') && typeof r.expiresAt === 'number' && r.incarnation <= U32_MAX;
}

export class SessionColumns {
  readonly #key: Uint32Array;
  /** 32-lowercase-hex id → slot, and each such slot's id bytes. */
  #ids: HexIdSlots;
  /** Any other id text → slot (rare: the director writes only hex ids). */
  #textIds = new Map<string, number>();
  /** Owner and director names. */
  readonly #names = new Names();
  readonly #states = new Names();
  #live = 0;
  /** Slots in use or free: the typed columns hold at least this many. */
  #slots = 0;
  #form: Uint8Array;
  #owner: Uint16Array;
  #director: Uint16Array;
  #state: Uint8Array;
  #version: Uint32Array;
  #expiresAt: Float64Array;
  /** The record's incarnation (a director draws 31 bits; a larger one keeps its record WHOLE). */
  #incarnation: Uint32Array;
  /** The IPv4 address, or the IPv6 slab entry. */
  #addr: Uint32Array;
  #port: Uint16Array;
  /** IPv6 addresses, 16 bytes per entry; entries below #v6Used not in use are in #v6Free. */
  #v6 = new Uint8Array(0);
  #v6Used = 0;
  #v6Free: number[] = [];
  /**
   * The IPv6 transport text last formatted for a read, of slot #readSlot (-1 once that slot changes):
   * written back unchanged, it is not parsed again.
   */
  #readSlot = -1;
  #readText: string | null = null;
  /** Formats IPv6 addresses (and parses them on write). */
  readonly #v6Scratch = new Uint8Array(16);
  /** An IPv4 address being parsed. */
  readonly #v4Scratch = new Uint32Array(1);
  /** Transports kept as text (TEXT_TRANSPORT). */
  #transportText = new Map<number, string>();
  /** Versions over 2^32 - 1 (BIG_VERSION; every transition adds 1, so in practice none). */
  #bigVersion = new Map<number, bigint>();
  /** Records kept whole (WHOLE): the frozen record itself. */
  #whole = new Map<number, StoredSession>();
  /** Free slots below #slots, reused before the columns grow. */
  #free: number[] = [];

  /** Slots made up front (at most MAX_RESERVED); the columns are never made smaller. */
  readonly #reserve: number;

  /**
   * `idKey`: the id table's hash key (hex-id-slots.ts); random when absent. It only places ids, never
   * decides. `reserve`: slots to make room for now (see the header).
   */
  constructor(idKey: Uint32Array = hexIdKey(), reserve = 0) {
    this.#key = idKey;
    const cap = reservedCapacity(reserve, MIN_CAPACITY);
    this.#reserve = cap;
    this.#form = new Uint8Array(cap);
    this.#owner = new Uint16Array(cap);
    this.#director = new Uint16Array(cap);
    this.#state = new Uint8Array(cap);
    this.#version = new Uint32Array(cap);
    this.#expiresAt = new Float64Array(cap);
    this.#incarnation = new Uint32Array(cap);
    this.#addr = new Uint32Array(cap);
    this.#port = new Uint16Array(cap);
    this.#ids = new HexIdSlots(idKey, cap);
  }

  get size(): number {
    return this.#live;
  }

  has(id: string): boolean {
    return this.slotOf(id) !== -1;
  }

  /** A frozen copy of the record with `id` (a new object on every call), or undefined. */
  get(id: string): StoredSession | undefined {
    const slot = this.slotOf(id);
    return slot === -1 ? undefined : this.#record(id, slot);
  }

  /**
   * The slot of the record with `id`, or -1: with `versionAt`, `recordAt` and `replaceAt`, a
   * compare-and-swap looks the id up once (the id table is the store's largest, and each lookup a cache miss).
   * A slot is valid until the next `set` or `delete`.
   */
  slotOf(id: string): number {
    const slot = this.#ids.lookup(id);
    if (slot !== NOT_HEX) return slot;
    return this.#textIds.get(id) ?? -1;
  }

  /** The version held in slot `slot` (from `slotOf`). */
  versionAt(slot: number): bigint {
    const form = this.#form[slot]!;
    if ((form & (Form.WHOLE | Form.BIG_VERSION)) === 0) return BigInt(this.#version[slot]!);
    return (form & Form.WHOLE) !== 0 ? (this.#whole.get(slot) as StoredSession).version : (this.#bigVersion.get(slot) as bigint);
  }

  /**
   * Whether the version held in slot `slot` is `v`, with no bigint made for a version in the u32 column
   * (a compare-and-swap's compare).
   */
  versionIs(slot: number, v: bigint): boolean {
    const form = this.#form[slot]!;
    // Number(v) is exact up to 2^53 and at least 2^32 for any v over U32_MAX: never equal to a u32 then.
    if ((form & (Form.WHOLE | Form.BIG_VERSION)) === 0) return this.#version[slot] === Number(v);
    return this.versionAt(slot) === v;
  }

  /** The incarnation of the record held in slot `slot` (from `slotOf`). */
  incarnationAt(slot: number): number {
    return (this.#form[slot]! & Form.WHOLE) !== 0 ? (this.#whole.get(slot) as StoredSession).incarnation : this.#incarnation[slot]!;
  }

  /** A frozen copy of the record `id` held in slot `slot` (from `slotOf(id)`). */
  recordAt(id: string, slot: number): StoredSession {
    return this.#record(id, slot);
  }

  /**
   * `replaceAt(slot, r)` and the record it replaced, as `recordAt(r.id, slot)` read before would give it:
   * a compare-and-swap's write and its watch event's `prev`. `version` is the version held there (the
   * compare's, checked by `versionIs`): not made again. An IPv4 transport that `r` keeps is not formatted
   * again either: the same numbers are the same canonical text, r's (see transport-text.ts).
   */
  swapAt(slot: number, r: StoredSession, version: bigint): StoredSession {
    const form = this.#form[slot]!;
    if ((form & Form.WHOLE) !== 0) {
      const whole = this.#whole.get(slot) as StoredSession;
      this.#replace(slot, r);
      return whole;
    }
    const names = this.#names;
    const owner = names.str(this.#owner[slot]!);
    const director = names.str(this.#director[slot]!);
    const state = this.#states.str(this.#state[slot]!) as StoredSession['state'];
    const expiresAt = this.#expiresAt[slot]!;
    const incarnation = this.#incarnation[slot]!;
    const v4 = (form & Form.KIND) === Form.V4;
    const addr = this.#addr[slot]!;
    const port = this.#port[slot]!;
    // Any other transport is read before the write frees it (an IPv6 one read so is kept unparsed, see #replace).
    let transport = v4 ? null : this.#transportAt(slot, form);
    this.#replace(slot, r);
    if (v4) transport = (this.#form[slot]! & (Form.WHOLE | Form.KIND)) === Form.V4 && this.#addr[slot] === addr && this.#port[slot] === port ? r.transport : formatV4Transport(addr, port);
    return Object.freeze({ id: r.id, owner, version, state, transport, director, expiresAt, incarnation });
  }

  /** Holds `r` in slot `slot`, the slot of the record with its id (from `slotOf(r.id)`), in its place. */
  replaceAt(slot: number, r: StoredSession): void {
    this.#replace(slot, r);
  }

  /**
   * Holds `r` (already checked and frozen by freezeRecord: a string id and owner, a u64 version),
   * replacing the record with its id if there is one.
   */
  set(r: StoredSession): void {
    const ids = this.#ids;
    let slot = ids.lookup(r.id);
    if (slot === NOT_HEX) {
      slot = this.#textIds.get(r.id) ?? ABSENT;
      if (slot === ABSENT) {
        slot = this.#allocate();
        this.#textIds.set(r.id, slot);
        this.#form[slot] = Form.LIVE | Form.TEXT_ID;
        this.#live++;
        this.#fill(slot, r, -1);
      } else this.#replace(slot, r);
    } else if (slot === ABSENT) {
      slot = this.#allocate();
      ids.addLooked(slot);
      this.#form[slot] = Form.LIVE;
      this.#live++;
      this.#fill(slot, r, -1);
    } else this.#replace(slot, r);
  }

  /** Holds `r` in live slot `slot` in place of the record there. */
  #replace(slot: number, r: StoredSession): void {
    // A compare-and-swap reads the record (formatting its transport), then writes it back with another
    // owner, state or version: the same IPv6 text keeps its numbers, unparsed (its parse formats it again
    // to compare). Not IPv4: its parse is cheaper than a compare of a concatenated text (`===` flattens both).
    const kept = slot === this.#readSlot && r.transport === this.#readText ? Form.V6 : -1;
    this.#release(slot, kept !== -1);
    this.#fill(slot, r, kept);
  }

  /**
   * Fills slot `slot` (live, released) with `r`; its form keeps LIVE and TEXT_ID. `kept`: the kind of the
   * transport left in the slot's columns by #release because it is r's, or -1.
   */
  #fill(slot: number, r: StoredSession, kept: number): void {
    const keep = this.#form[slot]! & (Form.LIVE | Form.TEXT_ID);
    if (fits(r)) {
      const names = this.#names;
      const owner = names.ref(r.owner);
      const director = names.ref(r.director);
      const state = this.#states.ref(r.state);
      if (owner <= MAX_NAME && director <= MAX_NAME && state <= MAX_STATE) {
        this.#owner[slot] = owner;
        this.#director[slot] = director;
        this.#state[slot] = state;
        let big = 0;
        const version = Number(r.version); // exact up to 2^53, so exact wherever it is at most U32_MAX
        if (version <= U32_MAX) this.#version[slot] = version;
        else {
          this.#bigVersion.set(slot, r.version);
          big = Form.BIG_VERSION;
        }
        this.#expiresAt[slot] = r.expiresAt;
        this.#incarnation[slot] = r.incarnation;
        this.#form[slot] = keep | big | (kept !== -1 ? kept : this.#putTransport(slot, r.transport));
        return;
      }
      names.unref(owner);
      names.unref(director);
      this.#states.unref(state);
    }
    if (kept !== -1) this.#dropTransport(slot, kept);
    this.#form[slot] = keep | Form.WHOLE;
    this.#whole.set(slot, r);
  }

  /** Writes transport `t` into slot `slot`'s columns; its kind (Form.KIND bits). */
  #putTransport(slot: number, t: string | null): number {
    if (t === null) return Form.NULL_TRANSPORT;
    const addr = this.#v4Scratch;
    const v4port = parseV4Transport(t, addr);
    if (v4port !== -1) {
      this.#addr[slot] = addr[0]!;
      this.#port[slot] = v4port;
      return Form.V4;
    }
    const scratch = this.#v6Scratch;
    const port = parseV6Transport(t, scratch);
    if (port !== -1) {
      const e = this.#v6Alloc();
      this.#v6.set(scratch, e * 16);
      this.#addr[slot] = e;
      this.#port[slot] = port;
      return Form.V6;
    }
    this.#transportText.set(slot, t);
    return Form.TEXT_TRANSPORT;
  }

  #transportAt(slot: number, form: number): string | null {
    switch (form & Form.KIND) {
      case Form.V4:
        return formatV4Transport(this.#addr[slot]!, this.#port[slot]!);
      case Form.V6: {
        const scratch = this.#v6Scratch;
        const at = this.#addr[slot]! * 16;
        const v6 = this.#v6;
        for (let i = 0; i < 16; i++) scratch[i] = v6[at + i]!;
        const t = formatV6Transport(scratch, this.#port[slot]!);
        this.#readSlot = slot;
        this.#readText = t;
        return t;
      }
      case Form.TEXT_TRANSPORT:
        return this.#transportText.get(slot) as string;
      default:
        return null;
    }
  }


  /** Frees what transport kind `kind` holds for slot `slot` outside its columns. */
  #dropTransport(slot: number, kind: number): void {
    if (kind === Form.V6) this.#v6Free.push(this.#addr[slot]!);
    else if (kind === Form.TEXT_TRANSPORT) this.#transportText.delete(slot);
  }

  /** Forgets the record with `id`; false when there is none. */
  delete(id: string): boolean {
    const slot = this.#ids.lookup(id);
    let at: number;
    if (slot === NOT_HEX) {
      at = this.#textIds.get(id) ?? ABSENT;
      if (at === ABSENT) return false;
      this.#textIds.delete(id);
    } else {
      if (slot === ABSENT) return false;
      at = slot;
      this.#ids.remove(at);
    }
    this.#release(at, false);
    this.#form[at] = 0;
    this.#free.push(at);
    this.#live--;
    if (this.#slots > 1024 && this.#live * 4 < this.#slots) this.#compact();
    return true;
  }

  /**
   * Every record of `owner`, in no particular order. Scans every record: it serves a director's start
   * (loading the sessions of each node) and tests, never a packet or a transition.
   */
  ownedBy(owner: string): StoredSession[] {
    const out: StoredSession[] = [];
    for (const r of this.#whole.values()) if (r.owner === owner) out.push(r);
    const n = this.#names.find(owner);
    if (n === undefined) return out;
    const form = this.#form;
    const owners = this.#owner;
    const plain = Form.LIVE | Form.TEXT_ID | Form.WHOLE;
    for (let slot = 0; slot < this.#slots; slot++) {
      // Hex ids here; the text ids below (the records kept whole are in already).
      if ((form[slot]! & plain) === Form.LIVE && owners[slot] === n) out.push(this.#record(this.#ids.idAt(slot), slot));
    }
    for (const [id, slot] of this.#textIds) {
      if ((form[slot]! & Form.WHOLE) === 0 && owners[slot] === n) out.push(this.#record(id, slot));
    }
    return out;
  }

  #record(id: string, slot: number): StoredSession {
    const form = this.#form[slot]!;
    if ((form & Form.WHOLE) !== 0) return this.#whole.get(slot) as StoredSession;
    const names = this.#names;
    return Object.freeze({
      id,
      owner: names.str(this.#owner[slot]!),
      version: (form & Form.BIG_VERSION) === 0 ? BigInt(this.#version[slot]!) : (this.#bigVersion.get(slot) as bigint),
      state: this.#states.str(this.#state[slot]!) as StoredSession['state'],
      transport: this.#transportAt(slot, form),
      director: names.str(this.#director[slot]!),
      expiresAt: this.#expiresAt[slot]!,
      incarnation: this.#incarnation[slot]!,
    });
  }

  /**
   * Drops what slot `slot` refers to (its names, its transport unless `keepTransport`, or its whole
   * record); the slot and its id stay.
   */
  #release(slot: number, keepTransport: boolean): void {
    this.#readSlot = -1;
    const form = this.#form[slot]!;
    if ((form & Form.WHOLE) !== 0) {
      this.#whole.delete(slot);
      return;
    }
    const names = this.#names;
    names.unref(this.#owner[slot]!);
    names.unref(this.#director[slot]!);
    this.#states.unref(this.#state[slot]!);
    if (!keepTransport) this.#dropTransport(slot, form & Form.KIND);
    if ((form & Form.BIG_VERSION) !== 0) this.#bigVersion.delete(slot);
  }

  /** A slot: a free one, or a new one at the end (the typed columns grow by half). */
  #allocate(): number {
    const reused = this.#free.pop();
    if (reused !== undefined) return reused;
    const slot = this.#slots++;
    if (slot === this.#form.length) this.#resize(slot + (slot >> 1));
    return slot;
  }

  /** An entry of the IPv6 slab (which doubles when full). */
  #v6Alloc(): number {
    const reused = this.#v6Free.pop();
    if (reused !== undefined) return reused;
    const e = this.#v6Used++;
    if (e * 16 === this.#v6.length) {
      const v6 = new Uint8Array(Math.max(16, e * 2) * 16);
      v6.set(this.#v6);
      this.#v6 = v6;
    }
    return e;
  }

  /** New typed columns of `capacity` slots (more than there are) holding the old ones. */
  #resize(capacity: number): void {
    const grow = <T extends Uint8Array | Uint16Array | Uint32Array | Float64Array>(from: T, to: T): T => {
      to.set(from);
      return to;
    };
    this.#form = grow(this.#form, new Uint8Array(capacity));
    this.#owner = grow(this.#owner, new Uint16Array(capacity));
    this.#director = grow(this.#director, new Uint16Array(capacity));
    this.#state = grow(this.#state, new Uint8Array(capacity));
    this.#version = grow(this.#version, new Uint32Array(capacity));
    this.#expiresAt = grow(this.#expiresAt, new Float64Array(capacity));
    this.#incarnation = grow(this.#incarnation, new Uint32Array(capacity));
    this.#addr = grow(this.#addr, new Uint32Array(capacity));
    this.#port = grow(this.#port, new Uint16Array(capacity));
    this.#ids.growSlots(capacity);
  }

  /**
   * Moves every record to the front (most slots are free), in slot order, into columns, an id table
   * and an IPv6 slab that fit.
   */
  #compact(): void {
    const n = this.#live;
    const cap = Math.max(this.#reserve, n + (n >> 1));
    const ids = new HexIdSlots(this.#key, cap, n);
    const form = new Uint8Array(cap);
    const owner = new Uint16Array(cap);
    const director = new Uint16Array(cap);
    const state = new Uint8Array(cap);
    const version = new Uint32Array(cap);
    const expiresAt = new Float64Array(cap);
    const incarnation = new Uint32Array(cap);
    const addr = new Uint32Array(cap);
    const port = new Uint16Array(cap);
    let v6Count = 0;
    for (let from = 0; from < this.#slots; from++) if ((this.#form[from]! & (Form.LIVE | Form.WHOLE | Form.KIND)) === (Form.LIVE | Form.V6)) v6Count++;
    const v6 = new Uint8Array(Math.max(16, v6Count + (v6Count >> 1)) * 16);
    let v6Used = 0;
    /** Old slot → new slot, for the maps keyed by slot. */
    const moved = new Int32Array(this.#slots);
    let to = 0;
    for (let from = 0; from < this.#slots; from++) {
      const f = this.#form[from]!;
      if ((f & Form.LIVE) === 0) continue;
      form[to] = f;
      owner[to] = this.#owner[from]!;
      director[to] = this.#director[from]!;
      state[to] = this.#state[from]!;
      version[to] = this.#version[from]!;
      expiresAt[to] = this.#expiresAt[from]!;
      incarnation[to] = this.#incarnation[from]!;
      addr[to] = this.#addr[from]!;
      port[to] = this.#port[from]!;
      if ((f & (Form.WHOLE | Form.KIND)) === Form.V6) {
        const at = this.#addr[from]! * 16;
        v6.set(this.#v6.subarray(at, at + 16), v6Used * 16);
        addr[to] = v6Used++;
      }
      if ((f & Form.TEXT_ID) === 0) this.#ids.copyInto(ids, from, to);
      moved[from] = to++;
    }
    const rekey = <V>(m: Map<number, V>): Map<number, V> => new Map([...m].map(([slot, v]) => [moved[slot]!, v]));
    for (const [id, slot] of this.#textIds) this.#textIds.set(id, moved[slot]!); // an existing key: size and order stay
    this.#whole = rekey(this.#whole);
    this.#transportText = rekey(this.#transportText);
    this.#bigVersion = rekey(this.#bigVersion);
    this.#ids = ids;
    this.#form = form;
    this.#owner = owner;
    this.#director = director;
    this.#state = state;
    this.#version = version;
    this.#expiresAt = expiresAt;
    this.#incarnation = incarnation;
    this.#addr = addr;
    this.#port = port;
    this.#v6 = v6;
    this.#v6Used = v6Used;
    this.#v6Free = [];
    this.#slots = n;
    this.#free = [];
    this.#readSlot = -1;
  }
}
