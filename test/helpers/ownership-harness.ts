// Test helper for the ownership engine: a manual clock, a recording DataPath (the test double of the
// socket layer), a store wrapper that lets a test run code (or fail) between the calls of a transition,
// and a harness wiring a real DirectorCore + Ownership + MemoryStore + in-memory audit together.
import { encodeJv1, sessionIdHex } from '../../src/codec/jv1.js';
import { transportKey } from '../../src/codec/ip.js';
import { PacketType, type RejectReason, type Transport } from '../../src/codec/types.js';
import { DirectorCore, type ClientOutcome, type CoreLimits, type Forward } from '../../src/director/core.js';
import { Ownership, type DataPath } from '../../src/director/ownership.js';
import { createAudit, type AuditLine, type AuditSink } from '../../src/obs/audit.js';
import { DirectorStats } from '../../src/obs/stats.js';
import type { Ring } from '../../src/ring/ring.js';
import type { Candidate, SessionRecord } from '../../src/session/table.js';
import { MemoryStore } from '../../src/store/memory.js';
import { TableRecords } from '../../src/store/table-records.js';
import { checkUpdates, type CasResult, type GetResult, type OwnershipStore, type StoreEvent, type StoredSession, type UpdateWrite } from '../../src/store/store.js';
import type { Clock } from '../../src/util/clock.js';

const WALL_BASE = Date.UTC(2025, 0, 1);

/** A clock that only moves when told to. */
export class ManualClock implements Clock {
  t = 0;
  now(): number {
    return this.t;
  }
  wall(): number {
    return WALL_BASE + this.t;
  }
  toWall(mono: number): number {
    return WALL_BASE + mono;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

/** What a forward looked like when it was handed to the data path (the record itself mutates later). */
export interface SentForward {
  readonly session: string;
  readonly node: string;
  readonly version: bigint;
  readonly seq: number;
  readonly flags: number;
  readonly type: number;
  readonly msg: Buffer;
  readonly src: string;
}

/** The socket layer as a recorder: every effect Ownership asks of it, in order. */
export class RecordingPath implements DataPath {
  readonly forwards: SentForward[] = [];
  readonly answers: { session: string; outcome: ClientOutcome; countAs?: string }[] = [];
  readonly revokes: { session: string; node: string; version: bigint; at: number }[] = [];
  /** For each of `revokes` and of `forwards`: the `sendTogether` call it was sent in (numbered from 1), or null. */
  readonly revokesTogether: (number | null)[] = [];
  readonly forwardsTogether: (number | null)[] = [];
  readonly candidateRejects: { session: string; transport: string; reason: RejectReason }[] = [];
  constructor(private readonly clock: Clock) {}

  forward(f: Forward): void {
    this.forwards.push({
      session: f.session.id,
      node: f.node,
      version: f.version,
      seq: f.seq,
      flags: f.flags,
      type: f.msg[3] ?? -1,
      msg: f.msg,
      src: transportKey(f.src),
    });
    this.forwardsTogether.push(this.#together);
  }
  answer(outcome: ClientOutcome, rec: SessionRecord, countAs?: string): void {
    this.answers.push({ session: rec.id, outcome, ...(countAs === undefined ? {} : { countAs }) });
  }
  revoke(rec: SessionRecord, node: string, version: bigint): void {
    this.revokes.push({ session: rec.id, node, version, at: this.clock.now() });
    this.revokesTogether.push(this.#together);
  }
  rejectCandidate(rec: SessionRecord, c: Candidate, reason: RejectReason): void {
    this.candidateRejects.push({ session: rec.id, transport: c.key, reason });
  }

  /** `sendTogether` calls so far; the number of the one running, if any. */
  togetherCalls = 0;
  #together: number | null = null;
  sendTogether(fn: () => void): void {
    if (this.#together !== null) return fn();
    this.#together = ++this.togetherCalls;
    try {
      fn();
    } finally {
      this.#together = null;
    }
  }

  readonly heldRelays: { session: string; transport: string; replies: number }[] = [];
  relayHeld(rec: SessionRecord, replies: Buffer[]): void {
    this.heldRelays.push({ session: rec.id, transport: rec.transportKey, replies: replies.length });
  }
}

type Hook<A extends unknown[]> = (...args: A) => CasResult | undefined | void | Promise<CasResult | undefined | void>;

/**
 * An OwnershipStore over a MemoryStore that records every write and lets a test intervene: a hook runs
 * before each create/update (it may inject packets, or return a result to answer instead of the store).
 */
export class ScriptedStore implements OwnershipStore {
  readonly updates: { record: StoredSession; expect: bigint; result: CasResult }[] = [];
  beforeUpdate: Hook<[record: StoredSession, expect: bigint, n: number]> | null = null;
  beforeCreate: Hook<[record: StoredSession]> | null = null;
  #n = 0;
  constructor(readonly inner: MemoryStore) {}

  get(id: string): Promise<GetResult> {
    return this.inner.get(id);
  }
  listByOwner(owner: string): ReturnType<OwnershipStore['listByOwner']> {
    return this.inner.listByOwner(owner);
  }
  async create(record: StoredSession): Promise<CasResult> {
    const forced = await this.beforeCreate?.(record);
    if (forced) return forced;
    return this.inner.create(record);
  }
  async update(record: StoredSession, expect: bigint): Promise<CasResult> {
    const forced = await this.beforeUpdate?.(record, expect, this.#n++);
    const result = forced ? forced : await this.inner.update(record, expect);
    this.updates.push({ record, expect, result });
    return result;
  }
  /** The sizes of the `updateMany` calls, in order (a drain's batch step is one call). */
  readonly batches: number[] = [];
  /** Each write through `update` (its hook, its entry in `updates`): a batch is what many updates would be. */
  updateMany(writes: readonly UpdateWrite[]): Promise<CasResult[]> {
    checkUpdates(writes);
    this.batches.push(writes.length);
    return Promise.all(writes.map((w) => this.update(w.record, w.expectVersion)));
  }
  refresh(id: string, expect: bigint, expiresAt: number, director: string, incarnation: number): Promise<CasResult> {
    return this.inner.refresh(id, expect, expiresAt, director, incarnation);
  }
  beforeDelete: Hook<[id: string, expect: bigint]> | null = null;
  async delete(id: string, expect: bigint, incarnation: number): Promise<CasResult> {
    const forced = await this.beforeDelete?.(id, expect);
    if (forced) return forced;
    return this.inner.delete(id, expect, incarnation);
  }
  watch(listener: (ev: StoreEvent) => void): () => void {
    return this.inner.watch(listener);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  /** The record as the store holds it now (throws if the store is down). */
  async record(id: string): Promise<StoredSession | null> {
    const r = await this.inner.get(id);
    if (!r.ok) throw new Error(`store unavailable: ${r.message}`);
    return r.record;
  }
}

export const TEST_LIMITS: CoreLimits = {
  sessionMax: 10_000,
  idleTtlMs: 3_600_000,
  tombstoneMs: 60_000,
  admissionRate: 1e9,
  admissionBurst: 1e9,
  rejectRate: 1e9,
  rejectBurst: 1e9,
  holdMax: 64,
};

/** Client transport number `i` (distinct port, and a distinct IPv4 address per 1000). */
export function clientTransport(i: number): Transport {
  return { family: 4, address: `198.51.${100 + Math.floor(i / 1000) % 100}.${(i % 250) + 1}`, port: 20000 + (i % 40000) };
}

/** A 16-byte session id from a counter (never all-zero). */
export function counterId(n: number): Uint8Array {
  const id = new Uint8Array(16);
  id[0] = 0xa5;
  new DataView(id.buffer).setUint32(12, n);
  return id;
}

/** `count` session ids that `ring` places on `node`. */
export function idsOwnedBy(ring: Ring, node: string, count: number, from = 1): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let n = from; out.length < count; n++) {
    const id = counterId(n);
    if (ring.pick(id) === node) out.push(id);
    if (n > from + count * 1000) throw new Error(`ring never picks ${node}`);
  }
  return out;
}

/** A client datagram whose payload carries a 4-byte counter (so tests can check order). */
export function packet(type: PacketType, id: Uint8Array, counter = 0): Buffer {
  const p = new Uint8Array(4);
  new DataView(p.buffer).setUint32(0, counter);
  return encodeJv1(type, id, p);
}

export function counterOf(msg: Buffer): number {
  return msg.readUInt32BE(20);
}

export interface Harness {
  readonly core: DirectorCore;
  readonly mem: MemoryStore;
  readonly store: ScriptedStore;
  readonly own: Ownership;
  readonly path: RecordingPath;
  /** What holds `mem`'s records: the table's rows (TableRecords), as in a director's embedded store. */
  readonly holder: TableRecords;
  readonly audit: AuditSink;
  readonly stats: DirectorStats;
  readonly clock: Clock;
  readonly nodes: Set<string>;
  /** A client datagram from `t`, handled the way the UDP shell does (forward / admit / hold / …). */
  client(msg: Buffer, t: Transport, listener?: number): ClientOutcome;
  /** HELLO from `t`, admitted through the store; returns the live record. */
  admit(id: Uint8Array, t: Transport): Promise<SessionRecord>;
  auditLines(session?: string): AuditLine[];
}

export function makeHarness(opts: {
  ring: Ring;
  clock?: Clock;
  limits?: Partial<CoreLimits>;
  records?: StoredSession[];
  revokeTimeoutMs?: number;
  revokeRetries?: number;
  eligible?: (node: string) => boolean;
  /** After a freeze, how long a migration waits before its transfer (default 0). */
  quiesceMs?: number;
  /** Ownership's `unknownWriteBoundMs` (its default when absent). */
  unknownWriteBoundMs?: number;
}): Harness {
  const clock = opts.clock ?? new ManualClock();
  const core = new DirectorCore({ ...TEST_LIMITS, ...opts.limits }, opts.ring);
  // The store as a director's embedded one: reading its records from the director's table rows (seeded
  // records stay apart). Every harness test so runs over TableRecords as well as over Ownership.
  const holder = new TableRecords();
  const mem = new MemoryStore(opts.records === undefined ? { holder } : { holder, records: opts.records });
  holder.bind(core.table, 'dir-test');
  const store = new ScriptedStore(mem);
  const audit = createAudit({ path: null, wallClock: () => clock.wall(), keep: 1_000_000 });
  const stats = new DirectorStats();
  const nodes = new Set(opts.ring.nodes.map((n) => n.id));
  const own = new Ownership(
    {
      directorId: 'dir-test',
      quiesceMs: opts.quiesceMs ?? 0,
      revokeTimeoutMs: opts.revokeTimeoutMs ?? 60_000,
      revokeRetries: opts.revokeRetries ?? 2,
      ...(opts.unknownWriteBoundMs !== undefined ? { unknownWriteBoundMs: opts.unknownWriteBoundMs } : {}),
    },
    { core, store, audit, stats, clock, eligible: opts.eligible ?? ((n) => nodes.has(n)), knownNode: (n) => nodes.has(n) },
  );
  const path = new RecordingPath(clock);
  own.attach(path);
  const client = (msg: Buffer, t: Transport, listener = 0): ClientOutcome => {
    const out = core.onClient(msg, t, transportKey(t), listener, clock.now());
    for (const n of core.expiredOnArrival.splice(0)) own.ended(n.session, n.transition);
    if (out.kind === 'forward') {
      if (out.transition !== null) own.ended(out.session, out.transition);
      path.forward(out);
    } else if (out.kind === 'admit') {
      void own.admit(out.session);
    }
    return out;
  };
  return {
    core,
    mem,
    store,
    own,
    path,
    holder,
    audit,
    stats,
    clock,
    nodes,
    client,
    async admit(id, t) {
      const out = core.onClient(encodeJv1(PacketType.HELLO, id, new Uint8Array(4)), t, transportKey(t), 0, clock.now());
      if (out.kind !== 'admit') throw new Error(`HELLO not admitted: ${JSON.stringify(out, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`);
      await own.admit(out.session);
      const rec = core.table.get(sessionIdHex(id));
      if (rec === undefined) throw new Error('admission failed');
      return rec;
    },
    auditLines(session) {
      return audit.recent(session === undefined ? { limit: 1_000_000 } : { session, limit: 1_000_000 });
    },
  };
}
