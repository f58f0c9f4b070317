// TableRecords (src/store/table-records.ts): the in-process store reading its records from the director's
// session table rows. The condition for using it: a MemoryStore holding its records there says exactly what
// a plain MemoryStore (columns of its own) says, whatever the table does meanwhile. A differential property
// runs the same store operations against both and, between them, changes the table alone (inserts, field
// changes of every kind the store reads, removals, row reuse, growth); after every step the two stores'
// answers (results, thrown TypeErrors, watch events, size) must be equal, and every few steps every id's
// record and every owner's list. Runs vary when the holder is bound (records written before stay apart), the
// table's record cache (tiny: records leave it and are made again), initial store contents, and whether a
// listener of the store applies its events to the table from inside the store's call (as a director
// following its own store does). The writes are mostly what a director writes: what its row says, or will
// say next (the admission, a transition with the row changed first or after the write, the end), and
// sometimes differ in one field. Examples pin the cases that matter by hand: a record equal to its row is
// kept once (apart 0), a table change never shows through, a removed row's record stays, another director's
// record and an upper-case id's record are returned exactly.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { TableRecords } from '../../src/store/table-records.js';
import { MemoryStore } from '../../src/store/memory.js';
import { SessionTable, newSessionRecord, type SessionRecord } from '../../src/session/table.js';
import type { SessionState } from '../../src/session/lifecycle.js';
import type { CasResult, GetResult, StoreEvent, StoredSession, UpdateWrite } from '../../src/store/store.js';
import type { Transport } from '../../src/codec/types.js';
import { parseHostPort, transportKey } from '../../src/codec/ip.js';
import { storedTransport } from '../../src/director/stored-transport.js';
import { TCP_LISTENER } from '../../src/director/outcomes.js';

// ---------------------------------------------------------------------------------------------------------
// Pools

/** Six lower-case hex ids (two share a long prefix), the upper-case text of the bytes of the second, a non-hex id. */
const LOWER = [
  '0123456789abcdef0123456789abcdef',
  'fedcba9876543210fedcba9876543210',
  '00000000000000000000000000000001',
  '00000000000000000000000000000002',
  'deadbeefdeadbeefdeadbeefdeadbeef',
  'a0a0a0a0b1b1b1b1c2c2c2c2d3d3d3d3',
] as const;
const UPPER = LOWER[1].toUpperCase();
const NON_HEX = 'not-a-hex-session-id';
const IDS: readonly string[] = [...LOWER, UPPER, NON_HEX];
/** Ids the table can hold (32 hex characters). */
const TABLE_IDS = IDS.length - 1;
/** Ids outside the pool, for the `fill` command (enough rows that the table's rows grow). */
const FILLERS: readonly string[] = Array.from({ length: 24 }, (_, i) => `f111${i.toString(16).padStart(28, '0')}`);
const ALL_IDS: readonly string[] = [...IDS, ...FILLERS];

const OWNERS = ['node-a', 'node-b', 'node-c'] as const;
const LIST_OWNERS = [...OWNERS, '', 'node-d'];
const DIRECTORS = ['dir-a', 'dir-a', 'dir-a', 'dir-a', 'dir-b', ''] as const;
const STATES: readonly SessionState[] = ['ATTACHED', 'FROZEN', 'TERMINATED'];
const STORE_TRANSPORTS: readonly (string | null)[] = [
  null,
  '192.0.2.1:1000',
  '192.0.2.1:0',
  '10.0.0.1:65535',
  '[2001:db8::1]:443',
  '[::ffff:1.2.3.4]:5',
  'tcp:192.0.2.1:1000',
  'tcp:[2001:db8::1]:443',
  '192.0.2.01:5',
  '[2001:DB8::1]:443',
  'tcp:',
  '',
];
const TABLE_TRANSPORTS: readonly Transport[] = [
  { family: 4, address: '192.0.2.1', port: 1000 },
  { family: 4, address: '10.0.0.1', port: 65535 },
  { family: 6, address: '2001:db8::1', port: 443 },
  { family: 6, address: '::ffff:1.2.3.4', port: 5 },
  { family: 4, address: '192.0.2.01', port: 5 },
  { family: 4, address: '192.0.2.1', port: 0 },
  // The same address as the first, another port: a row and a record that differ only there.
  { family: 4, address: '192.0.2.1', port: 1001 },
  { family: 4, address: '10.0.0.2', port: 65535 },
];
const LISTENERS = [0, 0, 1, TCP_LISTENER, 40_000];
const U32 = 2n ** 32n;
const U64_MAX = 2n ** 64n - 1n;
const VERSIONS: readonly bigint[] = [1n, 2n, 3n, 4n, 5n, U32 - 1n, U32, U32 + 1n, U64_MAX];
/** The table takes any bigint (it does not check); the store refuses 0 and over 2^64 - 1. */
const TABLE_VERSIONS: readonly bigint[] = [...VERSIONS, 0n, U64_MAX + 1n];
const INCARNATIONS = [0, 1, 2, 2, 2 ** 31 - 1, 2 ** 32 - 1, 2 ** 32, 2 ** 40];
/** Not lives (TypeErrors in the store); the table holds anything. */
const BAD_INCARNATIONS = [-1, 1.5];
const FIXED_EXPIRIES = [1000, 2000, 2000.5, 0, -0, Number.NaN, 1e15, 60_000];
const NOW0 = 1_000;
const TTL = 60_000;

const pick = <T>(xs: readonly T[], n: number): T => xs[n % xs.length] as T;

/** A deterministic hash key (a failure reproduces from its seed). */
function fixedKey(seed: number): Uint32Array {
  const k = new Uint32Array(8);
  for (let i = 0; i < k.length; i++) k[i] = (Math.imul(seed + i, 0x9e3779b1) ^ (0x85ebca6b * (i + 1))) >>> 0;
  return k;
}

// ---------------------------------------------------------------------------------------------------------
// Normal forms for comparing answers (bigint, -0, NaN, frozenness and the exact field set all count)

function num(x: unknown): string {
  if (typeof x !== 'number') return `${typeof x}:${String(x)}`;
  return Object.is(x, -0) ? '-0' : String(x);
}

function normRecord(r: StoredSession | null | undefined): unknown {
  if (r === null) return null;
  if (r === undefined) return 'undefined';
  return {
    keys: Object.keys(r).join(','),
    frozen: Object.isFrozen(r),
    id: r.id,
    owner: r.owner,
    version: typeof r.version === 'bigint' ? `${r.version}n` : `?${String(r.version)}`,
    state: r.state,
    transport: r.transport,
    director: r.director,
    expiresAt: num(r.expiresAt),
    incarnation: num(r.incarnation),
  };
}

function normCas(c: CasResult): unknown {
  if (c.ok) return { ok: true, record: normRecord(c.record) };
  if (c.reason === 'conflict') return { ok: false, reason: c.reason, current: normRecord(c.current) };
  return { ...c };
}

function normGet(g: GetResult): unknown {
  return g.ok ? { ok: true, record: normRecord(g.record) } : { ...g };
}

function normEvent(e: StoreEvent): unknown {
  return e.kind === 'put' ? { kind: 'put', record: normRecord(e.record), prev: normRecord(e.prev) } : { kind: 'delete', id: e.id, prev: normRecord(e.prev) };
}

/** An outcome: the value (normalised) or what was thrown (its class and message). */
type Outcome = { readonly value: unknown } | { readonly threw: string };

async function outcome<T>(f: () => Promise<T>, norm: (v: T) => unknown): Promise<Outcome> {
  try {
    return { value: norm(await f()) };
  } catch (err) {
    return { threw: err instanceof Error ? `${err.constructor.name}: ${err.message}` : `non-error: ${String(err)}` };
  }
}

const show = (x: unknown): string => JSON.stringify(x);

// ---------------------------------------------------------------------------------------------------------
// The two stores and the table

class Pair {
  readonly table: SessionTable;
  readonly holder: TableRecords;
  readonly rowStore: MemoryStore;
  readonly plain: MemoryStore;
  readonly rowEvents: unknown[] = [];
  readonly plainEvents: unknown[] = [];
  /** The live table records this run inserted, by id text (held here, as the director holds them). */
  readonly live = new Map<string, SessionRecord>();
  bound = false;
  now = NOW0;
  /** What happened, in concrete terms (a failure's message shows it). */
  readonly log: string[] = [];

  /**
   * `seeded`: initial contents of both stores (MemoryStoreOptions.records). `mirror`: a listener of the
   * table-records store applies each event to the table as it is delivered (inside the store's call), as a
   * director following its own store does: a put's fields to the row of its id, a delete's removal of the row.
   */
  constructor(seed: number, cacheRecords: number | undefined, seeded: readonly StoredSession[] = [], mirror = false) {
    this.table = new SessionTable({ max: 1000, idleTtlMs: TTL, tombstoneMs: 0, idKey: fixedKey(seed), ...(cacheRecords === undefined ? {} : { records: cacheRecords }) });
    this.holder = new TableRecords({ idKey: fixedKey(seed + 1) });
    this.rowStore = new MemoryStore({ holder: this.holder, idKey: fixedKey(seed + 2), records: seeded });
    this.plain = new MemoryStore({ idKey: fixedKey(seed + 2), records: seeded });
    if (seeded.length > 0) this.log.push(`both stores seeded with records: [${seeded.map(fmtRec).join(', ')}]`);
    this.rowStore.watch((e) => this.rowEvents.push(normEvent(e)));
    this.plain.watch((e) => this.plainEvents.push(normEvent(e)));
    if (mirror) this.rowStore.watch((e) => this.#mirror(e));
  }

  #mirror(e: StoreEvent): void {
    const id = e.kind === 'put' ? e.record.id : e.id;
    const r = this.row(id);
    if (r === undefined) return;
    if (e.kind === 'delete') {
      this.table.remove(r, this.now);
      this.live.delete(id);
      this.log.push(`  (listener) [table ${show(id)}] table.remove(rec, ${this.now})`);
      return;
    }
    const rec = e.record;
    const st = parseStored(rec.transport);
    if (!STATES.includes(rec.state) || st === undefined) return;
    this.table.setOwner(r, rec.owner);
    r.version = rec.version;
    r.incarnation = rec.incarnation;
    r.state = rec.state;
    r.transport = st.t;
    r.listener = st.listener;
    this.log.push(`  (listener) [table ${show(id)}] row := the put's record`);
  }

  bind(): void {
    if (this.bound) return;
    this.holder.bind(this.table, 'dir-a');
    this.bound = true;
    this.log.push(`holder.bind(table, 'dir-a')`);
  }

  /** The same store operation on both stores: equal outcomes and equal new events, or a failure naming both. */
  async both<T>(what: string, f: (s: MemoryStore) => Promise<T>, norm: (v: T) => unknown): Promise<Outcome> {
    this.log.push(what);
    const ra = this.rowEvents.length;
    const pa = this.plainEvents.length;
    const row = await outcome(() => f(this.rowStore), norm);
    const plain = await outcome(() => f(this.plain), norm);
    if (show(row) !== show(plain)) this.fail(`results differ\n  table-records store: ${show(row)}\n  plain store:         ${show(plain)}`);
    const re = this.rowEvents.slice(ra);
    const pe = this.plainEvents.slice(pa);
    if (show(re) !== show(pe)) this.fail(`watch events differ\n  table-records store: ${show(re)}\n  plain store:         ${show(pe)}`);
    this.checkSize();
    return plain;
  }

  checkSize(): void {
    if (this.rowStore.size !== this.plain.size) this.fail(`size differs: table-records store ${this.rowStore.size}, plain store ${this.plain.size}`);
    const apart = this.holder.apart;
    if (!Number.isInteger(apart) || apart < 0 || apart > this.plain.size) this.fail(`holder.apart ${apart} is not within 0..size (${this.plain.size})`);
  }

  /** One id's record and the size. */
  async checkId(id: string): Promise<void> {
    const row = await outcome(() => this.rowStore.get(id), normGet);
    const plain = await outcome(() => this.plain.get(id), normGet);
    if (show(row) !== show(plain)) this.fail(`get(${show(id)}) differs\n  table-records store: ${show(row)}\n  plain store:         ${show(plain)}`);
    this.checkSize();
  }

  /** Every id's record, every owner's list, the size. */
  async checkAll(): Promise<void> {
    for (const id of ALL_IDS) {
      const row = await outcome(() => this.rowStore.get(id), normGet);
      const plain = await outcome(() => this.plain.get(id), normGet);
      if (show(row) !== show(plain)) this.fail(`get(${show(id)}) differs (full check)\n  table-records store: ${show(row)}\n  plain store:         ${show(plain)}`);
    }
    for (const o of LIST_OWNERS) {
      const row = await this.rowStore.listByOwner(o);
      const plain = await this.plain.listByOwner(o);
      const n = (l: typeof row): unknown => (l.ok ? [...l.records].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map(normRecord) : l);
      if (show(n(row)) !== show(n(plain))) this.fail(`listByOwner(${show(o)}) differs (full check)\n  table-records store: ${show(n(row))}\n  plain store:         ${show(n(plain))}`);
      if (row.ok && show(row.records.map((r) => r.id)) !== show([...row.records.map((r) => r.id)].sort())) this.fail(`listByOwner(${show(o)}) of the table-records store is not in id order`);
    }
    this.checkSize();
  }

  /** Fails with the steps that named the ids the message names (all of them), and the last few steps. */
  fail(msg: string): never {
    const ids = new Set(ALL_IDS.filter((id) => msg.includes(`"${id}"`)).map((id) => id.toLowerCase()));
    const numbered = this.log.map((l, i) => `${String(i + 1).padStart(4)} ${l}`);
    const about = numbered.filter((l) => [...ids].some((id) => l.toLowerCase().includes(id))).slice(-80);
    const tail = numbered.slice(-12);
    throw new Error(
      `${msg}\n--- steps naming ${[...ids].join(', ') || 'no id'} (${about.length}) ---\n${about.join('\n')}\n--- last ${tail.length} of ${this.log.length} steps ---\n${tail.join('\n')}`,
    );
  }

  /** The live table record of the same bytes as `id` under another text (the other case of hex), if any. */
  lookAlike(id: string): SessionRecord | undefined {
    for (const [other, r] of this.live) if (other !== id && other.toLowerCase() === id.toLowerCase() && this.table.holds(r)) return r;
    return undefined;
  }

  /** The live table record of exactly this id text, if any. */
  row(id: string): SessionRecord | undefined {
    const r = this.live.get(id);
    return r !== undefined && this.table.holds(r) ? r : undefined;
  }
}

/** What a director writes for its row: the row's fields as a store record. */
function fromRow(r: SessionRecord, director = 'dir-a', expiresAt = r.storeExpiresAt): StoredSession {
  return { id: r.id, owner: r.owner, version: r.version, state: r.state, transport: storedTransport(transportKey(r.transport), r.listener), director, expiresAt, incarnation: r.incarnation };
}

/** A table transport and listener for a stored transport text (undefined: not an ip:port). */
function parseStored(text: string | null): { t: Transport; listener: number } | undefined {
  if (text === null) return undefined;
  const tcp = text.startsWith('tcp:');
  const t = parseHostPort(tcp ? text.slice(4) : text);
  return t === undefined ? undefined : { t, listener: tcp ? TCP_LISTENER : 0 };
}

const fmtRec = (r: StoredSession): string =>
  `{id:${show(r.id)},owner:${show(r.owner)},version:${String(r.version)}n,state:${show(r.state)},transport:${show(r.transport)},director:${show(r.director)},expiresAt:${num(r.expiresAt)},incarnation:${num(r.incarnation)}}`;
const fmtT = (t: Transport): string => `{family:${t.family},address:${show(t.address)},port:${t.port}}`;

// ---------------------------------------------------------------------------------------------------------
// Commands: abstract choices, made concrete against the state when they run (so they shrink freely)

type Tweak = 'none' | 'owner' | 'state' | 'transport' | 'director' | 'expiresAt' | 'incarnation' | 'version';
interface WriteSpec {
  readonly id: number;
  /** 0-1: the row as it is (what it says), 2: the row's next version, 3: the plain store's record's next version, 4: made up. */
  readonly base: number;
  readonly tweak: Tweak;
  readonly n: number;
  /** 0: expect version - 1 (the "+1" rule); 1: expect the version itself (a TypeError). */
  readonly off: boolean;
}
type Field = 'catchUp' | 'owner' | 'setOwner' | 'version' | 'incarnation' | 'state' | 'transport' | 'listener' | 'transport+listener' | 'storeExpiresAt' | 'touch' | 'formerOwner' | 'nextSeq' | 'servedHere' | 'pending';
type Cmd =
  | { readonly op: 'create'; readonly w: WriteSpec }
  | { readonly op: 'update'; readonly w: WriteSpec }
  | { readonly op: 'updateMany'; readonly ws: readonly WriteSpec[] }
  | { readonly op: 'refresh'; readonly id: number; readonly expect: number; readonly exp: number; readonly dir: number; readonly inc: number }
  | { readonly op: 'delete'; readonly id: number; readonly expect: number; readonly inc: number }
  | { readonly op: 'get'; readonly id: number }
  | { readonly op: 'list'; readonly owner: number }
  | { readonly op: 'insert'; readonly id: number; readonly fromStore: boolean; readonly n: number }
  | { readonly op: 'mutate'; readonly id: number; readonly field: Field; readonly fromStore: boolean; readonly n: number }
  | { readonly op: 'remove'; readonly id: number; readonly discard: boolean }
  | { readonly op: 'admit'; readonly id: number; readonly storeFirst: boolean; readonly n: number }
  | { readonly op: 'transition'; readonly id: number; readonly storeFirst: boolean; readonly n: number }
  | { readonly op: 'end'; readonly id: number; readonly storeFirst: boolean }
  | { readonly op: 'fill'; readonly n: number }
  | { readonly op: 'unfill'; readonly n: number; readonly alsoStore: boolean };

const idArb = fc.nat({ max: IDS.length - 1 });
const writeArb: fc.Arbitrary<WriteSpec> = fc.record({
  id: idArb,
  base: fc.nat({ max: 4 }),
  tweak: fc.oneof({ weight: 6, arbitrary: fc.constant<Tweak>('none') }, { weight: 4, arbitrary: fc.constantFrom<Tweak>('owner', 'state', 'transport', 'director', 'expiresAt', 'incarnation', 'version') }),
  n: fc.nat({ max: 1 << 20 }),
  off: fc.oneof({ weight: 30, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});
const fieldArb = fc.constantFrom<Field>('catchUp', 'catchUp', 'catchUp', 'owner', 'setOwner', 'version', 'version', 'incarnation', 'state', 'transport', 'listener', 'transport+listener', 'storeExpiresAt', 'touch', 'formerOwner', 'nextSeq', 'servedHere', 'pending');
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 5, arbitrary: writeArb.map((w): Cmd => ({ op: 'create', w })) },
  { weight: 7, arbitrary: writeArb.map((w): Cmd => ({ op: 'update', w })) },
  { weight: 2, arbitrary: fc.array(writeArb, { minLength: 1, maxLength: 3 }).map((ws): Cmd => ({ op: 'updateMany', ws })) },
  { weight: 3, arbitrary: fc.record({ id: idArb, expect: fc.nat({ max: 9 }), exp: fc.nat({ max: 99 }), dir: fc.nat({ max: 99 }), inc: fc.nat({ max: 19 }) }).map((c): Cmd => ({ op: 'refresh', ...c })) },
  { weight: 2, arbitrary: fc.record({ id: idArb, expect: fc.nat({ max: 9 }), inc: fc.nat({ max: 19 }) }).map((c): Cmd => ({ op: 'delete', ...c })) },
  { weight: 2, arbitrary: idArb.map((id): Cmd => ({ op: 'get', id })) },
  { weight: 1, arbitrary: fc.nat({ max: LIST_OWNERS.length - 1 }).map((owner): Cmd => ({ op: 'list', owner })) },
  { weight: 5, arbitrary: fc.record({ id: fc.nat({ max: TABLE_IDS - 1 }), fromStore: fc.boolean(), n: fc.nat({ max: 1 << 20 }) }).map((c): Cmd => ({ op: 'insert', ...c })) },
  { weight: 9, arbitrary: fc.record({ id: fc.nat({ max: TABLE_IDS - 1 }), field: fieldArb, fromStore: fc.boolean(), n: fc.nat({ max: 1 << 20 }) }).map((c): Cmd => ({ op: 'mutate', ...c })) },
  { weight: 2, arbitrary: fc.record({ id: fc.nat({ max: TABLE_IDS - 1 }), discard: fc.boolean() }).map((c): Cmd => ({ op: 'remove', ...c })) },
  { weight: 3, arbitrary: fc.record({ id: fc.nat({ max: TABLE_IDS - 1 }), storeFirst: fc.boolean(), n: fc.nat({ max: 1 << 20 }) }).map((c): Cmd => ({ op: 'admit', ...c })) },
  { weight: 6, arbitrary: fc.record({ id: fc.nat({ max: TABLE_IDS - 1 }), storeFirst: fc.boolean(), n: fc.nat({ max: 1 << 20 }) }).map((c): Cmd => ({ op: 'transition', ...c })) },
  { weight: 2, arbitrary: fc.record({ id: fc.nat({ max: TABLE_IDS - 1 }), storeFirst: fc.boolean() }).map((c): Cmd => ({ op: 'end', ...c })) },
  { weight: 1, arbitrary: fc.nat({ max: 1 << 20 }).map((n): Cmd => ({ op: 'fill', n })) },
  { weight: 1, arbitrary: fc.record({ n: fc.nat({ max: 1 << 20 }), alsoStore: fc.boolean() }).map((c): Cmd => ({ op: 'unfill', ...c })) },
);

/** A store record for one write, as the spec says: usually what the row of its id says (or will say next). */
function buildWrite(p: Pair, w: WriteSpec, stored: StoredSession | null, forCreate: boolean): { rec: StoredSession; expect: bigint } {
  const id = pick(IDS, w.id);
  const n = w.n;
  // The row of the id, or else (as often) a row holding the same bytes under the other case of hex: a record
  // equal to a look-alike row's fields must not be read from that row.
  const row = p.row(id) ?? p.lookAlike(id);
  let rec: StoredSession;
  if (w.base <= 1 && row !== undefined) rec = { ...fromRow(row), id };
  else if (w.base === 2 && row !== undefined) rec = { ...fromRow(row), id, version: row.version + 1n };
  else if (w.base === 3 && stored !== null) rec = { ...stored, version: stored.version + 1n, director: 'dir-a' };
  else {
    rec = {
      id,
      owner: pick(OWNERS, n),
      version: forCreate ? 1n : pick(VERSIONS, n >> 2),
      state: pick(STATES, n >> 4),
      transport: pick(STORE_TRANSPORTS, n >> 6),
      director: pick(DIRECTORS, n >> 9),
      expiresAt: pick(FIXED_EXPIRIES, n >> 12),
      incarnation: pick(INCARNATIONS, n >> 15),
    };
  }
  if (forCreate && !w.off) rec = { ...rec, version: 1n };
  const m = n >> 3;
  switch (w.tweak) {
    case 'owner':
      rec = { ...rec, owner: m % 13 === 0 ? '' : pick(OWNERS, m) };
      break;
    case 'state':
      rec = { ...rec, state: m % 11 === 0 ? ('WEIRD' as SessionState) : pick(STATES, m) };
      break;
    case 'transport':
      rec = { ...rec, transport: pick(STORE_TRANSPORTS, m) };
      break;
    case 'director':
      rec = { ...rec, director: pick(DIRECTORS, m) };
      break;
    case 'expiresAt':
      rec = { ...rec, expiresAt: m % 2 === 0 ? pick(FIXED_EXPIRIES, m >> 1) : rec.expiresAt + 1 };
      break;
    case 'incarnation':
      rec = { ...rec, incarnation: m % 9 === 0 ? pick(BAD_INCARNATIONS, m >> 4) : pick(INCARNATIONS, m) };
      break;
    case 'version':
      if (!forCreate) rec = { ...rec, version: m % 2 === 0 ? rec.version + 1n : pick(VERSIONS, m >> 1) };
      break;
    default:
      break;
  }
  const expect = w.off ? rec.version : rec.version - 1n;
  return { rec, expect };
}

async function storedOf(p: Pair, id: string): Promise<StoredSession | null> {
  const g = await p.plain.get(id);
  return g.ok ? g.record : null;
}

async function run(p: Pair, c: Cmd): Promise<void> {
  p.now += 7;
  switch (c.op) {
    case 'create': {
      const { rec } = buildWrite(p, c.w, await storedOf(p, pick(IDS, c.w.id)), true);
      await p.both(`create(${fmtRec(rec)})`, (s) => s.create(rec), normCas);
      return;
    }
    case 'update': {
      const { rec, expect } = buildWrite(p, c.w, await storedOf(p, pick(IDS, c.w.id)), false);
      await p.both(`update(${fmtRec(rec)}, ${expect}n)`, (s) => s.update(rec, expect), normCas);
      return;
    }
    case 'updateMany': {
      const writes: UpdateWrite[] = [];
      for (const w of c.ws) {
        const { rec, expect } = buildWrite(p, w, await storedOf(p, pick(IDS, w.id)), false);
        writes.push({ record: rec, expectVersion: expect });
      }
      await p.both(`updateMany([${writes.map((w) => `{record:${fmtRec(w.record)}, expectVersion:${w.expectVersion}n}`).join(', ')}])`, (s) => s.updateMany(writes), (rs) => rs.map(normCas));
      return;
    }
    case 'refresh': {
      const id = pick(IDS, c.id);
      const cur = await storedOf(p, id);
      const row = p.row(id);
      const expect = c.expect <= 6 && cur !== null ? cur.version : c.expect <= 7 && row !== undefined ? row.version : pick(VERSIONS, c.expect);
      const base = cur?.expiresAt ?? 2000;
      const exps = [base + 1000, base + 1000, base, base - 1, base + 0.5, row?.storeExpiresAt ?? 5, Number.NaN, -0];
      const expiresAt = pick(exps, c.exp);
      const director = c.dir < 70 ? 'dir-a' : pick(DIRECTORS, c.dir);
      const inc = c.inc <= 14 && cur !== null ? cur.incarnation : c.inc <= 16 && row !== undefined ? row.incarnation : c.inc === 19 ? -1 : pick(INCARNATIONS, c.inc);
      await p.both(`refresh(${show(id)}, ${expect}n, ${num(expiresAt)}, ${show(director)}, ${num(inc)})`, (s) => s.refresh(id, expect, expiresAt, director, inc), normCas);
      return;
    }
    case 'delete': {
      const id = pick(IDS, c.id);
      const cur = await storedOf(p, id);
      const expect = c.expect <= 6 && cur !== null ? cur.version : pick(VERSIONS, c.expect);
      const inc = c.inc <= 15 && cur !== null ? cur.incarnation : c.inc === 19 ? -1 : pick(INCARNATIONS, c.inc);
      await p.both(`delete(${show(id)}, ${expect}n, ${num(inc)})`, (s) => s.delete(id, expect, inc), normCas);
      return;
    }
    case 'get': {
      const id = pick(IDS, c.id);
      await p.both(`get(${show(id)})`, (s) => s.get(id), normGet);
      return;
    }
    case 'list': {
      const o = pick(LIST_OWNERS, c.owner);
      await p.both(`listByOwner(${show(o)})`, (s) => s.listByOwner(o), (l) => (l.ok ? { ok: true, records: l.records.map(normRecord) } : l));
      return;
    }
    case 'insert': {
      const id = pick(IDS, c.id);
      if (p.row(id) !== undefined) return;
      const cur = c.fromStore ? await storedOf(p, id) : null;
      const n = c.n;
      const parsed = parseStored(cur?.transport ?? null);
      const rec = newSessionRecord({
        id,
        owner: cur?.owner ?? pick(OWNERS, n),
        version: cur?.version ?? (n % 4 !== 0 ? 1n : pick(TABLE_VERSIONS, n >> 2)),
        incarnation: cur?.incarnation ?? pick(INCARNATIONS, n >> 5),
        state: cur !== null && STATES.includes(cur.state) ? cur.state : pick(STATES, n >> 8),
        transport: parsed?.t ?? pick(TABLE_TRANSPORTS, n >> 10),
        listener: parsed?.listener ?? pick(LISTENERS, n >> 13),
        now: p.now,
        idleTtlMs: TTL,
      });
      if (cur !== null && n % 2 === 0) rec.storeExpiresAt = cur.expiresAt;
      const ok = p.table.insert(rec);
      p.log.push(`table.insert(newSessionRecord({id:${show(id)},owner:${show(rec.owner)},version:${rec.version}n,incarnation:${num(rec.incarnation)},state:${show(rec.state)},transport:${fmtT(rec.transport)},listener:${rec.listener}})) -> ${ok}`);
      if (ok) p.live.set(id, rec);
      p.checkSize();
      return;
    }
    case 'mutate': {
      const id = pick(IDS, c.id);
      const r = p.row(id);
      if (r === undefined) return;
      const cur = c.fromStore ? await storedOf(p, id) : null;
      const n = c.n;
      const parsed = parseStored(cur?.transport ?? null);
      let what: string;
      switch (c.field) {
        case 'catchUp': {
          // The director applies the store's record to its row (a write settled, or another director's seen),
          // field by field, in an order of the command's choosing: the last change may make the row say the record.
          const src = cur ?? (await storedOf(p, id));
          if (src === null) {
            what = 'catch up: no record';
            break;
          }
          const st = parseStored(src.transport);
          const steps: [string, () => void][] = [
            [`owner = ${show(src.owner)}`, () => p.table.setOwner(r, src.owner)],
            [`version = ${src.version}n`, () => (r.version = src.version)],
            [`incarnation = ${num(src.incarnation)}`, () => (r.incarnation = src.incarnation)],
          ];
          if (STATES.includes(src.state)) steps.push([`state = ${show(src.state)}`, () => (r.state = src.state)]);
          if (st !== undefined) {
            steps.push([`transport = ${fmtT(st.t)}`, () => (r.transport = st.t)]);
            steps.push([`listener = ${st.listener}`, () => (r.listener = st.listener)]);
          }
          const k = n % steps.length;
          const order = [...steps.slice(k), ...steps.slice(0, k)];
          for (const [, f] of order) f();
          what = `catch up with the store: ${order.map(([w]) => w).join('; ')}`;
          break;
        }
        case 'owner': {
          const v = cur?.owner ?? pick(OWNERS, n);
          // Straight through the record's setter (the table's owner count is not the store's business).
          r.owner = v;
          what = `rec.owner = ${show(v)}`;
          break;
        }
        case 'setOwner': {
          const v = cur?.owner ?? pick(OWNERS, n);
          p.table.setOwner(r, v);
          what = `table.setOwner(rec, ${show(v)})`;
          break;
        }
        case 'version': {
          const v = cur !== null ? (n % 3 === 0 ? cur.version + 1n : cur.version) : n % 2 === 0 ? r.version + 1n : pick(TABLE_VERSIONS, n >> 1);
          r.version = v;
          what = `rec.version = ${v}n`;
          break;
        }
        case 'incarnation': {
          const v = cur?.incarnation ?? (n % 17 === 0 ? pick(BAD_INCARNATIONS, n >> 5) : pick(INCARNATIONS, n));
          r.incarnation = v;
          what = `rec.incarnation = ${num(v)}`;
          break;
        }
        case 'state': {
          const v = cur !== null && STATES.includes(cur.state) ? cur.state : pick(STATES, n);
          r.state = v;
          what = `rec.state = ${show(v)}`;
          break;
        }
        case 'transport': {
          const v = parsed?.t ?? pick(TABLE_TRANSPORTS, n);
          r.transport = v;
          what = `rec.transport = ${fmtT(v)}`;
          break;
        }
        case 'listener': {
          // Mostly a change between TCP and a datagram listener: the stored transport text changes with it.
          const v = n % 4 === 0 ? pick(LISTENERS, n >> 2) : r.listener === TCP_LISTENER ? pick([0, 1, 40_000], n >> 2) : TCP_LISTENER;
          r.listener = v;
          what = `rec.listener = ${v}`;
          break;
        }
        case 'transport+listener': {
          const t = parsed?.t ?? pick(TABLE_TRANSPORTS, n);
          const l = parsed?.listener ?? pick(LISTENERS, n >> 3);
          if (n % 2 === 0) {
            r.transport = t;
            r.listener = l;
            what = `rec.transport = ${fmtT(t)}; rec.listener = ${l}`;
          } else {
            r.listener = l;
            r.transport = t;
            what = `rec.listener = ${l}; rec.transport = ${fmtT(t)}`;
          }
          break;
        }
        case 'storeExpiresAt': {
          const v = cur?.expiresAt ?? pick(FIXED_EXPIRIES, n);
          r.storeExpiresAt = v;
          what = `rec.storeExpiresAt = ${num(v)}`;
          break;
        }
        case 'touch':
          p.table.touch(r, p.now);
          what = `table.touch(rec, ${p.now})`;
          break;
        case 'formerOwner': {
          const v = n % 2 === 0 ? null : pick(OWNERS, n >> 1);
          r.formerOwner = v;
          what = `rec.formerOwner = ${show(v)}`;
          break;
        }
        case 'nextSeq':
          r.nextSeq = r.nextSeq + 1;
          what = `rec.nextSeq++`;
          break;
        case 'servedHere':
          if (n % 2 === 0) p.table.notServedHere(r);
          else p.table.touch(r, p.now);
          what = n % 2 === 0 ? 'table.notServedHere(rec)' : `table.touch(rec, ${p.now})`;
          break;
        case 'pending':
          r.pending = r.pending === null ? 'transfer' : null;
          what = `rec.pending = ${show(r.pending)}`;
          break;
      }
      p.log.push(`[table ${show(id)}] ${what}`);
      p.checkSize();
      return;
    }
    case 'remove': {
      const id = pick(IDS, c.id);
      const r = p.row(id);
      if (r === undefined) return;
      if (c.discard) p.table.discard(r);
      else p.table.remove(r, p.now);
      p.live.delete(id);
      p.log.push(`[table ${show(id)}] table.${c.discard ? 'discard(rec)' : `remove(rec, ${p.now})`}`);
      p.checkSize();
      return;
    }
    case 'admit': {
      // The director's admission: a row at version 1 and the store's create of what it says (row first, as the
      // director does, or the create first).
      const id = pick(IDS, c.id);
      if (p.row(id) !== undefined) return;
      const n = c.n;
      const rec = newSessionRecord({ id, owner: pick(OWNERS, n), version: 1n, incarnation: pick(INCARNATIONS, n >> 2), state: 'ATTACHED', transport: pick(TABLE_TRANSPORTS, n >> 5), listener: pick(LISTENERS, n >> 8), now: p.now, idleTtlMs: TTL });
      const s = fromRow(rec, n % 7 === 0 ? 'dir-b' : 'dir-a');
      const insert = (): void => {
        const ok = p.table.insert(rec);
        p.log.push(`table.insert(newSessionRecord({id:${show(id)},owner:${show(rec.owner)},version:1n,incarnation:${num(rec.incarnation)},state:"ATTACHED",transport:${fmtT(rec.transport)},listener:${rec.listener}})) -> ${ok}`);
        if (ok) p.live.set(id, rec);
      };
      if (!c.storeFirst) insert();
      await p.both(`create(${fmtRec(s)})`, (st) => st.create(s), normCas);
      if (c.storeFirst) insert();
      p.checkSize();
      return;
    }
    case 'transition': {
      // The director's transition: the row's fields with one changed and the next version, written to the
      // store and applied to the row (row first, or the write first and the row after it succeeded).
      const id = pick(IDS, c.id);
      const r = p.row(id);
      if (r === undefined) return;
      const n = c.n;
      const t = pick(TABLE_TRANSPORTS, n >> 3);
      const l = pick(LISTENERS, n >> 6);
      const owner = pick(OWNERS, n >> 9);
      const state = pick(STATES, n >> 11);
      // 0 owner, 1 state, 2 transport, 3 transport and listener, 4 listener (TCP or not), 5 nothing but the version.
      const kind = n % 6;
      const l4 = r.listener === TCP_LISTENER ? 0 : TCP_LISTENER;
      const versionFirst = (n >> 13) % 2 === 0;
      const apply = (): void => {
        if (versionFirst) r.version = r.version + 1n;
        if (kind === 0) p.table.setOwner(r, owner);
        if (kind === 1) r.state = state;
        if (kind === 2) r.transport = t;
        if (kind === 3) {
          r.transport = t;
          r.listener = l;
        }
        if (kind === 4) r.listener = l4;
        if (!versionFirst) r.version = r.version + 1n;
        p.log.push(`[table ${show(id)}] ${versionFirst ? 'version += 1; ' : ''}${['owner = ' + show(owner), 'state = ' + show(state), 'transport = ' + fmtT(t), `transport = ${fmtT(t)}; listener = ${l}`, `listener = ${l4}`, ''][kind]}${versionFirst ? '' : '; version += 1'} (now ${r.version}n)`);
      };
      const before = fromRow(r, 'dir-a', r.storeExpiresAt + (n % 3) * 1000);
      if (c.storeFirst) {
        const next: StoredSession = {
          ...before,
          owner: kind === 0 ? owner : before.owner,
          state: kind === 1 ? state : before.state,
          transport: kind === 2 ? storedTransport(transportKey(t), r.listener) : kind === 3 ? storedTransport(transportKey(t), l) : kind === 4 ? storedTransport(transportKey(r.transport), l4) : before.transport,
          version: before.version + 1n,
        };
        const res = await p.both(`update(${fmtRec(next)}, ${before.version}n)`, (st) => st.update(next, before.version), normCas);
        if ('value' in res && (res.value as { ok: boolean }).ok) apply();
      } else {
        const expect = r.version;
        apply();
        const next = fromRow(r, 'dir-a', before.expiresAt);
        await p.both(`update(${fmtRec(next)}, ${expect}n)`, (st) => st.update(next, expect), normCas);
      }
      p.checkSize();
      return;
    }
    case 'end': {
      // The session ends: the store's delete of the row's version and life, and the row's removal (either first).
      const id = pick(IDS, c.id);
      const r = p.row(id);
      if (r === undefined) return;
      const version = r.version;
      const inc = r.incarnation;
      const remove = (): void => {
        p.table.remove(r, p.now);
        p.live.delete(id);
        p.log.push(`[table ${show(id)}] table.remove(rec, ${p.now})`);
      };
      if (!c.storeFirst) remove();
      await p.both(`delete(${show(id)}, ${version}n, ${num(inc)})`, (st) => st.delete(id, version, inc), normCas);
      if (c.storeFirst) remove();
      p.checkSize();
      return;
    }
    case 'fill': {
      // Up to 12 more sessions, each in the table and created in both stores as its row says: the rows grow.
      let added = 0;
      for (let k = 0; k < FILLERS.length && added < 12; k++) {
        const id = pick(FILLERS, c.n + k);
        if (p.row(id) !== undefined) continue;
        const rec = newSessionRecord({ id, owner: pick(OWNERS, c.n + k), version: 1n, incarnation: 1 + k, state: 'ATTACHED', transport: pick(TABLE_TRANSPORTS, k), listener: pick(LISTENERS, k), now: p.now, idleTtlMs: TTL });
        if (!p.table.insert(rec)) continue;
        p.live.set(id, rec);
        p.log.push(`table.insert(newSessionRecord({id:${show(id)},owner:${show(rec.owner)},version:1n,incarnation:${1 + k},state:"ATTACHED",transport:${fmtT(rec.transport)},listener:${rec.listener}}))`);
        const s = fromRow(rec);
        await p.both(`create(${fmtRec(s)})`, (st) => st.create(s), normCas);
        added++;
      }
      return;
    }
    case 'unfill': {
      // Takes up to 8 filler rows out of the table (and, when asked, their records out of both stores).
      let gone = 0;
      for (let k = 0; k < FILLERS.length && gone < 8; k++) {
        const id = pick(FILLERS, c.n + k);
        const r = p.row(id);
        if (r === undefined) continue;
        p.table.remove(r, p.now);
        p.live.delete(id);
        p.log.push(`[table ${show(id)}] table.remove(rec, ${p.now})`);
        gone++;
        if (c.alsoStore) {
          const cur = await storedOf(p, id);
          if (cur !== null) await p.both(`delete(${show(id)}, ${cur.version}n, ${cur.incarnation})`, (s) => s.delete(id, cur.version, cur.incarnation), normCas);
        }
      }
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------

const seedArb: fc.Arbitrary<StoredSession> = fc.record({ id: fc.nat({ max: IDS.length - 1 }), n: fc.nat({ max: 1 << 20 }) }).map(({ id, n }) => ({
  id: pick(IDS, id),
  owner: pick(OWNERS, n),
  version: pick(VERSIONS, n >> 2),
  state: pick(STATES, n >> 5),
  transport: pick(STORE_TRANSPORTS, n >> 7),
  director: pick(DIRECTORS, n >> 11),
  expiresAt: pick(FIXED_EXPIRIES, n >> 14),
  incarnation: pick(INCARNATIONS, n >> 17),
}));

describe('TableRecords: a MemoryStore reading its records from the session table says what a plain one says', () => {
  it('differential: the same store operations, with the table changing in between, give the same answers and events', async () => {
    const CHECK_EVERY = 10;
    await fc.assert(
      fc.asyncProperty(
        fc.array(cmdArb, { minLength: 50, maxLength: 150 }),
        fc.nat({ max: 0xffff }),
        // Bind at the start mostly; sometimes after records were written (those stay apart).
        fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 40 }) }),
        // The table's record cache: the default, or tiny (records leave it and are made again for their rows).
        fc.constantFrom<number | undefined>(undefined, undefined, 2),
        // Initial contents of both stores (kept apart: they come before `bind`), sometimes.
        fc.oneof({ weight: 4, arbitrary: fc.constant<StoredSession[]>([]) }, { weight: 1, arbitrary: fc.uniqueArray(seedArb, { maxLength: 4, selector: (r) => r.id }) }),
        // A listener of the table-records store applying its events to the table, sometimes.
        fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
        async (cmds, seed, bindAt, cacheRecords, seeded, mirror) => {
          const p = new Pair(seed, cacheRecords, seeded, mirror);
          if (mirror) p.log.push('(a listener of the table-records store applies its events to the table)');
          if (bindAt === 0) p.bind();
          for (let i = 0; i < cmds.length; i++) {
            if (i === bindAt) p.bind();
            await run(p, cmds[i] as Cmd);
            if (i % CHECK_EVERY === CHECK_EVERY - 1) await p.checkAll();
          }
          p.bind();
          await p.checkAll();
          // The table changing after the last write changes nothing either.
          for (const [id, r] of [...p.live]) {
            r.owner = 'node-z';
            p.log.push(`[table ${show(id)}] rec.owner = "node-z"`);
            await p.checkId(id);
            r.version = r.version + 1n;
            r.state = 'TERMINATED';
            r.listener = r.listener === TCP_LISTENER ? 0 : TCP_LISTENER;
            p.log.push(`[table ${show(id)}] version += 1, state = "TERMINATED", listener TCP <-> not`);
            await p.checkId(id);
            p.table.remove(r, p.now);
            p.live.delete(id);
            p.log.push(`[table ${show(id)}] table.remove(rec, ${p.now})`);
            await p.checkId(id);
          }
          await p.checkAll();
          if (show(p.rowEvents) !== show(p.plainEvents)) p.fail('whole event sequences differ');
        },
      ),
      { numRuns: 300 },
    );
  });
});

// ---------------------------------------------------------------------------------------------------------
// Examples

const A = LOWER[0];
const B = LOWER[1];

function setup(): { p: Pair; r: SessionRecord; rec: StoredSession } {
  const p = new Pair(7, undefined);
  p.bind();
  const r = newSessionRecord({ id: A, owner: 'node-a', version: 1n, incarnation: 7, state: 'ATTACHED', transport: { family: 4, address: '192.0.2.1', port: 1000 }, listener: 0, now: NOW0, idleTtlMs: TTL });
  expect(p.table.insert(r)).toBe(true);
  p.live.set(A, r);
  const rec: StoredSession = { id: A, owner: 'node-a', version: 1n, state: 'ATTACHED', transport: '192.0.2.1:1000', director: 'dir-a', expiresAt: r.storeExpiresAt, incarnation: 7 };
  expect(fromRow(r)).toEqual(rec);
  return { p, r, rec };
}

async function got(p: Pair, id: string): Promise<StoredSession | null> {
  const row = await p.rowStore.get(id);
  const plain = await p.plain.get(id);
  expect(normGet(row)).toEqual(normGet(plain));
  return row.ok ? row.record : null;
}

async function owned(p: Pair, owner: string): Promise<string[]> {
  const row = await p.rowStore.listByOwner(owner);
  const plain = await p.plain.listByOwner(owner);
  expect(row.ok && row.records.map(normRecord)).toEqual(plain.ok && plain.records.map(normRecord));
  return row.ok ? row.records.map((x) => x.id) : [];
}

describe('TableRecords: examples', () => {
  it('a record equal to its row is kept once; a row changed ahead of the store does not show; the write that catches up is kept once again', async () => {
    const { p, r, rec } = setup();
    await p.both('create', (s) => s.create(rec), normCas);
    expect(p.holder.apart).toBe(0);
    expect(await got(p, A)).toEqual(rec);

    // The director's transfer: its row says the new owner (and the next version) before the write settles.
    p.table.setOwner(r, 'node-b');
    r.version = 2n;
    expect(await got(p, A)).toEqual(rec);
    expect(await owned(p, 'node-a')).toEqual([A]);
    expect(await owned(p, 'node-b')).toEqual([]);
    expect(p.holder.apart).toBe(1);

    const next = { ...rec, owner: 'node-b', version: 2n };
    const res = await p.both('update', (s) => s.update(next, 1n), normCas);
    expect(res).toEqual({ value: normCas({ ok: true, record: Object.freeze(next) }) });
    expect(p.holder.apart).toBe(0);
    expect(await got(p, A)).toEqual(next);
    expect(await owned(p, 'node-a')).toEqual([]);
    expect(await owned(p, 'node-b')).toEqual([A]);
    await p.checkAll();
  });

  it('every field the store reads, changed in the row, leaves the record as written', async () => {
    const changes: readonly (readonly [string, (r: SessionRecord) => void])[] = [
      ['owner', (r) => (r.owner = 'node-c')],
      ['version', (r) => (r.version = 9n)],
      ['incarnation', (r) => (r.incarnation = 8)],
      ['state', (r) => (r.state = 'FROZEN')],
      ['transport', (r) => (r.transport = { family: 6, address: '2001:db8::1', port: 443 })],
      ['listener', (r) => (r.listener = TCP_LISTENER)],
    ];
    for (const [field, change] of changes) {
      const { p, r, rec } = setup();
      await p.both('create', (s) => s.create(rec), normCas);
      expect(p.holder.apart, field).toBe(0);
      change(r);
      expect(await got(p, A), field).toEqual(rec);
      expect(p.holder.apart, field).toBe(1);
      await p.checkAll();
    }
  });

  it('a row the table removes keeps its record in the store; the store deletes it; a reused row changes nothing', async () => {
    const { p, r, rec } = setup();
    await p.both('create', (s) => s.create(rec), normCas);
    expect(p.holder.apart).toBe(0);
    p.table.remove(r, NOW0 + 5);
    p.live.delete(A);
    expect(await got(p, A)).toEqual(rec);
    expect(p.holder.apart).toBe(1);
    // Another session takes the freed row.
    const other = newSessionRecord({ id: B, owner: 'node-c', version: 4n, incarnation: 3, state: 'FROZEN', transport: { family: 6, address: '2001:db8::1', port: 443 }, listener: 1, now: NOW0, idleTtlMs: TTL });
    expect(p.table.insert(other)).toBe(true);
    p.live.set(B, other);
    expect(await got(p, A)).toEqual(rec);
    expect(await got(p, B)).toBeNull();
    expect(await owned(p, 'node-a')).toEqual([A]);
    expect(await owned(p, 'node-c')).toEqual([]);

    const del = await p.both('delete', (s) => s.delete(A, 1n, 7), normCas);
    expect(del).toEqual({ value: normCas({ ok: true, record: Object.freeze({ ...rec }) }) });
    expect(await got(p, A)).toBeNull();
    expect(p.rowStore.size).toBe(0);
    expect(p.holder.apart).toBe(0);
    await p.checkAll();
  });

  it("a record another director wrote (or at another expiry) is returned exactly", async () => {
    const { p, r, rec } = setup();
    const theirs = { ...rec, director: 'dir-b' };
    await p.both('create', (s) => s.create(theirs), normCas);
    expect(await got(p, A)).toEqual(theirs);
    expect(await owned(p, 'node-a')).toEqual([A]);
    r.owner = 'node-b';
    expect(await got(p, A)).toEqual(theirs);
    const back = { ...rec, owner: 'node-b', version: 2n, expiresAt: -0 };
    r.version = 2n;
    await p.both('update', (s) => s.update(back, 1n), normCas);
    const g = await got(p, A);
    expect(g).toEqual(back);
    expect(Object.is(g?.expiresAt, -0)).toBe(true);
    const refreshed = await p.both('refresh', (s) => s.refresh(A, 2n, 5000, 'dir-b', 7), normCas);
    expect(refreshed).toEqual({ value: normCas({ ok: true, record: Object.freeze({ ...back, expiresAt: 5000, director: 'dir-b' }) }) });
    expect(await got(p, A)).toEqual({ ...back, expiresAt: 5000, director: 'dir-b' });
    await p.checkAll();
  });

  it('an upper-case id and the lower-case id of the same bytes are two records, as in the plain store', async () => {
    const p = new Pair(11, undefined);
    p.bind();
    const r = newSessionRecord({ id: B, owner: 'node-a', version: 1n, incarnation: 1, state: 'ATTACHED', transport: { family: 4, address: '192.0.2.1', port: 1000 }, listener: 0, now: NOW0, idleTtlMs: TTL });
    expect(p.table.insert(r)).toBe(true);
    p.live.set(B, r);
    const lower = fromRow(r);
    const upper = { ...lower, id: UPPER };
    await p.both('create upper', (s) => s.create(upper), normCas);
    expect(await got(p, B)).toBeNull();
    expect(await got(p, UPPER)).toEqual(upper);
    await p.both('create lower', (s) => s.create(lower), normCas);
    expect(await got(p, B)).toEqual(lower);
    expect(await got(p, UPPER)).toEqual(upper);
    expect(p.rowStore.size).toBe(2);
    expect(await owned(p, 'node-a')).toEqual([UPPER, B].sort());
    r.owner = 'node-b';
    expect(await got(p, B)).toEqual(lower);
    expect(await got(p, UPPER)).toEqual(upper);
    await p.both('delete upper', (s) => s.delete(UPPER, 1n, 1), normCas);
    expect(await got(p, UPPER)).toBeNull();
    expect(await got(p, B)).toEqual(lower);

    // And the other way round: the table holds the upper-case text, the store the lower-case one.
    p.table.remove(r, NOW0 + 1);
    p.live.delete(B);
    const ru = newSessionRecord({ id: UPPER, owner: 'node-c', version: 1n, incarnation: 1, state: 'ATTACHED', transport: { family: 4, address: '192.0.2.1', port: 1000 }, listener: 0, now: NOW0, idleTtlMs: TTL });
    expect(p.table.insert(ru)).toBe(true);
    p.live.set(UPPER, ru);
    expect(await got(p, B)).toEqual(lower);
    expect(await got(p, UPPER)).toBeNull();
    const up2 = fromRow(ru);
    await p.both('create upper again', (s) => s.create(up2), normCas);
    expect(await got(p, UPPER)).toEqual(up2);
    expect(await got(p, B)).toEqual(lower);
    await p.checkAll();

    // A lower-case record saying exactly what the upper-case row says is still its own record.
    await p.both('delete lower', (s) => s.delete(B, 1n, 1), normCas);
    await p.both('delete upper', (s) => s.delete(UPPER, 1n, 1), normCas);
    const alike = { ...fromRow(ru), id: B };
    await p.both('create lower like the upper row', (s) => s.create(alike), normCas);
    expect(await got(p, B)).toEqual(alike);
    expect(await got(p, UPPER)).toBeNull();
    expect(await owned(p, 'node-c')).toEqual([B]);
    ru.owner = 'node-a';
    expect(await got(p, B)).toEqual(alike);
    p.table.remove(ru, NOW0 + 2);
    p.live.delete(UPPER);
    expect(await got(p, B)).toEqual(alike);
    expect(await got(p, UPPER)).toBeNull();
    await p.checkAll();
  });
});
