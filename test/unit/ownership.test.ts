// Ownership over a real DirectorCore, a real MemoryStore and a real (in-memory) audit, with a recording
// DataPath standing for the sockets: admission, migration (freeze → transfer → REVOKE → resume → replay),
// its refusals and failures (fail closed), REVOKE acknowledgement and retries, reattach by BIND, and a
// property over random interleavings of client packets and migrations.
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { encodeBind, encodeJv1, sessionIdHex } from '../../src/codec/jv1.js';
import { transportKey } from '../../src/codec/ip.js';
import { PP2_FLAG } from '../../src/codec/ppv2.js';
import { TCP_LISTENER } from '../../src/director/outcomes.js';
import { PacketType, RejectReason } from '../../src/codec/types.js';
import { createHasher, type Hasher } from '../../src/ring/hash.js';
import { buildRing, type Ring } from '../../src/ring/ring.js';
import { LifecycleEvent, SessionState } from '../../src/session/lifecycle.js';
import type { SessionRecord } from '../../src/session/table.js';
import type { CasResult, StoredSession } from '../../src/store/store.js';
import { migrationResultLabel } from '../../src/director/ownership.js';
import {
  clientTransport,
  counterId,
  counterOf,
  idsOwnedBy,
  makeHarness,
  ManualClock,
  packet,
  type Harness,
} from '../helpers/ownership-harness.js';
import { sid } from '../helpers/packet-builder.js';
import { waitFor } from '../helpers/wait.js';

const NODES = ['node-a', 'node-b', 'node-c'] as const;
let hasher: Hasher;
let ring: Ring;

beforeAll(async () => {
  hasher = await createHasher();
  ring = buildRing(
    hasher,
    NODES.map((id) => ({ id, weight: 1 })),
  );
});

const A = clientTransport(1);
const B = clientTransport(2);
const C = clientTransport(3);
const SID = sid(0x42);
const ID = sessionIdHex(SID);

let harnesses: Harness[] = [];
function harness(opts: Partial<Parameters<typeof makeHarness>[0]> = {}): Harness {
  const h = makeHarness({ ring, ...opts });
  harnesses.push(h);
  return h;
}
afterEach(() => {
  for (const h of harnesses) h.own.close();
  harnesses = [];
  vi.useRealTimers();
});

function other(owner: string, not: string[] = []): string {
  const n = NODES.find((x) => x !== owner && !not.includes(x));
  if (n === undefined) throw new Error('no other node');
  return n;
}

function stored(id: string, f: Partial<StoredSession> = {}): StoredSession {
  return { id, owner: 'node-b', version: 5n, state: SessionState.ATTACHED, transport: '192.0.2.1:1000', director: 'dir-x', expiresAt: Date.now() + 60_000, incarnation: 0, ...f };
}

const unavailable = (message = 'injected'): CasResult => ({ ok: false, reason: 'unavailable', message });

// ------------------------------------------------------------------------------------------ expiry
describe('Ownership.expireIdle', () => {
  it('starts at most `limit` expiries per call and none past 4,096 store deletes in flight; the rest go as deletes complete', async () => {
    const clock = new ManualClock();
    const h = harness({ clock, limits: { sessionMax: 10_000, idleTtlMs: 1000 } });
    for (let i = 0; i < 5000; i++) await h.admit(counterId(i + 1), clientTransport(i));
    expect(h.core.table.size).toBe(5000);
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    h.store.beforeDelete = () => gate.then(() => undefined);
    clock.advance(2000);
    expect(h.own.expireIdle(clock.now(), 300)).toBe(300);
    expect(h.own.expiring).toBe(300);
    expect(h.own.expireIdle(clock.now())).toBe(4096 - 300);
    expect(h.own.expireIdle(clock.now())).toBe(0); // the store has 4,096 deletes to answer first
    expect(h.own.expiring).toBe(4096);
    expect(h.core.table.size).toBe(5000); // a session ends here only once the store deleted it
    open();
    await waitFor('the deletes answered', () => h.own.expiring === 0 || undefined);
    expect(h.core.table.size).toBe(5000 - 4096);
    expect(h.own.expireIdle(clock.now())).toBe(5000 - 4096);
    await waitFor('every session expired', () => h.core.table.size === 0 || undefined);
    expect(h.auditLines().filter((l) => l.event === 'expire')).toHaveLength(5000);
  });
});

describe('Ownership.ended (store deletes)', () => {
  it('a mass end: sessions end here at once, their store deletes go at most 4,096 at a time, the rest in order as room frees up', async () => {
    const h = harness({ limits: { sessionMax: 10_000 } });
    const ids: string[] = [];
    for (let i = 0; i < 5000; i++) ids.push((await h.admit(counterId(i + 1), clientTransport(i))).id);
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const deleted: string[] = [];
    h.store.beforeDelete = async (id) => {
      await gate;
      deleted.push(id);
    };
    for (const id of ids) expect(h.own.terminate(id, 'partition', 'dir-test').ok).toBe(true);
    expect(h.core.table.size).toBe(0); // ended here at once
    expect(h.own.endDeletes).toEqual({ inFlight: 4096, waiting: 5000 - 4096, retrying: 0 });
    open();
    await waitFor('every delete done', () => (h.own.endDeletes.inFlight === 0 && h.own.endDeletes.waiting === 0) || undefined);
    expect(deleted).toEqual(ids); // in the order the sessions ended
    for (const id of ids.slice(0, 50)) expect(await h.store.get(id)).toMatchObject({ ok: true, record: null });
    expect(h.auditLines().filter((l) => l.event === 'SECURITY_EVENT')).toHaveLength(0);
  });

  it('a store whose delete throws or is unreachable: one SECURITY_EVENT end_not_stored, the room given back, and the delete tried again until the store takes it', async () => {
    const clock = new ManualClock();
    const h = harness({ clock });
    const rec = await h.admit(counterId(7), clientTransport(7));
    let tries = 0;
    h.store.beforeDelete = () => {
      tries++;
      if (tries === 1) throw new Error('connection reset');
      if (tries === 2) return { ok: false, reason: 'unavailable', message: 'no leader' };
      return undefined; // the store is back: the delete goes through
    };
    expect(h.own.terminate(rec.id, 'operator', 'op').ok).toBe(true);
    await waitFor('the first delete settled', () => (h.own.endDeletes.inFlight === 0 && h.own.endDeletes.retrying === 1) || undefined);
    const sec = h.auditLines().filter((l) => l.event === 'SECURITY_EVENT');
    expect(sec).toHaveLength(1);
    expect(sec[0]).toMatchObject({ session: rec.id, cause: 'end_not_stored', detail: { reason: 'unavailable', message: 'Error: connection reset', retrying: true } });
    expect(await h.store.get(rec.id)).toMatchObject({ ok: true, record: { version: 1n } }); // still there
    clock.advance(1000); // tried again after 1 s …
    await waitFor('the second try', () => (tries === 2 && h.own.endDeletes.inFlight === 0 && h.own.endDeletes.retrying === 1) || undefined, { timeoutMs: 5000 });
    clock.advance(2000); // … then after 2 s
    await waitFor('deleted at the third try', () => (tries === 3 && h.own.endDeletes.retrying === 0 && h.own.endDeletes.inFlight === 0) || undefined, { timeoutMs: 5000 });
    expect(await h.store.get(rec.id)).toEqual({ ok: true, record: null });
    expect(tries).toBe(3);
    expect(h.auditLines().filter((l) => l.event === 'SECURITY_EVENT')).toHaveLength(1); // said once
  });
});

describe('Ownership: lives of a session id (StoredSession.incarnation)', () => {
  it('an end delete retried after the session was ended elsewhere and admitted anew (at version 1 again) leaves the new one alone', async () => {
    const clock = new ManualClock();
    const h = harness({ clock });
    const rec = await h.admit(counterId(8), clientTransport(8));
    const life = rec.incarnation;
    expect(life).toBeGreaterThan(0); // drawn at admission
    let tries = 0;
    h.store.beforeDelete = () => (++tries === 1 ? { ok: false, reason: 'unavailable', message: 'partition' } : undefined);
    expect(h.own.terminate(rec.id, 'operator', 'op').ok).toBe(true);
    await waitFor('the delete waiting to be tried again', () => (h.own.endDeletes.retrying === 1 && h.own.endDeletes.inFlight === 0) || undefined);
    // Meanwhile another director expired it in the store, and the client's HELLO there admitted it anew.
    expect((await h.mem.delete(rec.id, 1n, life)).ok).toBe(true);
    const anew = stored(rec.id, { version: 1n, owner: 'node-c', director: 'dir-b', incarnation: life + 1 });
    expect((await h.mem.create(anew)).ok).toBe(true);
    clock.advance(1000);
    await waitFor('the retry settled', () => (tries === 2 && h.own.endDeletes.retrying === 0 && h.own.endDeletes.inFlight === 0) || undefined, { timeoutMs: 5000 });
    expect(await h.mem.get(rec.id)).toEqual({ ok: true, record: anew }); // not deleted
  });

  it('a write planned on a session whose id the store holds in another life is a conflict, even at the version it expects', async () => {
    const h = harness();
    const rec = await h.admit(counterId(9), clientTransport(9));
    // Behind this director's back (its watch not following): ended and admitted anew at version 1.
    const anew = stored(rec.id, { version: 1n, owner: rec.owner, director: 'dir-b', incarnation: rec.incarnation + 1 });
    h.store.beforeUpdate = async () => {
      h.store.beforeUpdate = null;
      expect((await h.store.inner.delete(rec.id, 1n, rec.incarnation)).ok).toBe(true);
      expect((await h.store.inner.create(anew)).ok).toBe(true);
      return undefined;
    };
    const r = await h.own.step(rec, LifecycleEvent.FREEZE, { cause: 'migrate', actor: 'test' });
    expect(r.ok).toBe(false);
    expect(await h.mem.get(rec.id)).toEqual({ ok: true, record: anew }); // untouched
  });

  it('the watch telling of another life of an id held here: the held session ends (remote), the new one is mirrored', async () => {
    const h = harness();
    const rec = await h.admit(counterId(10), clientTransport(10));
    // Its end in the store and the id's admission anew elsewhere were never seen here (a watch gap: no
    // watch yet); the next write of the new life is (another director refreshing its expiry).
    const anew = stored(rec.id, { version: 1n, owner: other(rec.owner), director: 'dir-b', incarnation: rec.incarnation + 1 });
    await h.mem.delete(rec.id, 1n, rec.incarnation);
    await h.mem.create(anew);
    h.own.followStore(() => ({ t: clientTransport(11), key: transportKey(clientTransport(11)), listener: 0 }));
    expect((await h.mem.refresh(rec.id, 1n, anew.expiresAt + 60_000, 'dir-b', anew.incarnation)).ok).toBe(true);
    await waitFor('the new life held here', () => (h.core.table.get(rec.id)?.incarnation === anew.incarnation ? true : undefined));
    const now = h.core.table.get(rec.id)!;
    expect(now).not.toBe(rec);
    expect(now).toMatchObject({ owner: anew.owner, version: 1n, servedHere: false });
    expect(h.core.table.holds(rec)).toBe(false);
    // Told as another director's changes (which that director audits): the old life's end, the new one.
    expect(Object.fromEntries([...h.stats.remoteChanges.values].filter(([, n]) => n > 0))).toEqual({ ended: 1, created: 1 });
  });
});

describe('Ownership: lives of an id told while a transition is in flight (review)', () => {
  const parse = (key: string) => {
    const [a, port] = key.split(':');
    const t = { family: 4 as const, address: a as string, port: Number(port) };
    return { t, key: transportKey(t), listener: 0 };
  };

  it('an expiry whose delete lands, the id admitted anew elsewhere before the answer: the new life is mirrored here, not dropped', async () => {
    const clock = new ManualClock();
    const h = harness({ clock, limits: { idleTtlMs: 1000, tombstoneMs: 60_000 } });
    const rec = await h.admit(counterId(21), clientTransport(21));
    h.own.followStore(parse);
    const anew = stored(rec.id, { version: 1n, incarnation: rec.incarnation + 1, transport: '192.0.2.9:1000', expiresAt: h.clock.toWall(clock.now() + 3_600_000) });
    h.store.beforeDelete = async (id, ev) => {
      h.store.beforeDelete = null;
      const r = await h.store.inner.delete(id, ev, rec.incarnation); // our expiry lands …
      expect((await h.store.inner.create(anew)).ok).toBe(true); // … and the id is admitted anew elsewhere
      return r;
    };
    clock.advance(2000);
    expect(h.own.expireIdle(clock.now())).toBe(1);
    await waitFor('expired', () => (h.own.expiring === 0 ? true : undefined));
    expect(h.auditLines(rec.id).map((l) => l.event)).toEqual(['create', 'expire']); // ours, audited
    expect(h.core.table.get(rec.id)).toMatchObject({ incarnation: anew.incarnation, owner: anew.owner, servedHere: false });
  });

  it('another life put and deleted while a transition is in flight: nothing of it is left once the transition settles', async () => {
    const h = harness();
    const rec = await h.admit(counterId(22), clientTransport(22));
    h.own.followStore(parse);
    const anew = stored(rec.id, { version: 1n, owner: other(rec.owner), incarnation: rec.incarnation + 1 });
    h.store.beforeUpdate = async () => {
      h.store.beforeUpdate = null;
      expect((await h.store.inner.delete(rec.id, 1n, rec.incarnation)).ok).toBe(true);
      expect((await h.store.inner.create(anew)).ok).toBe(true);
      expect((await h.store.inner.delete(rec.id, 1n, anew.incarnation)).ok).toBe(true);
      return undefined;
    };
    const r = await h.own.step(rec, LifecycleEvent.FREEZE, { cause: 'migrate', actor: 'test' });
    expect(r.ok).toBe(false);
    expect(await h.mem.get(rec.id)).toEqual({ ok: true, record: null });
    await waitFor('no session left here', () => (h.core.table.get(rec.id) === undefined ? true : undefined));
  });

  it('another life put and deleted while our admission of the id is in flight: our session lives on, alone, and is the store\'s', async () => {
    const h = harness();
    // Our own create's copy comes after its answer (as etcd's watch brings it): held until the admission settled.
    const ours: (() => void)[] = [];
    let holdOurs = true;
    const feed = h.mem.watch.bind(h.mem);
    h.mem.watch = (l) => feed((ev) => (holdOurs && ev.kind === 'put' && ev.record.director === 'dir-test' ? ours.push(() => l(ev)) : l(ev)));
    h.own.followStore(parse);
    const id = counterId(23);
    const hex = sessionIdHex(id);
    let theirs: StoredSession | null = null;
    h.store.beforeCreate = async (record) => {
      h.store.beforeCreate = null;
      // Another director admitted the id (another life) and ended it, both told by the watch meanwhile.
      theirs = stored(hex, { version: 1n, owner: other(record.owner), director: 'dir-b', incarnation: record.incarnation + 1 });
      expect((await h.store.inner.create(theirs)).ok).toBe(true);
      expect((await h.store.inner.delete(hex, 1n, theirs.incarnation)).ok).toBe(true);
      return undefined;
    };
    const rec = await h.admit(id, clientTransport(23));
    holdOurs = false;
    expect(ours).toHaveLength(1);
    for (const deliver of ours.splice(0)) deliver();
    expect(theirs).not.toBeNull();
    expect(h.core.table.get(hex)).toBe(rec);
    expect(rec).toMatchObject({ version: 1n, state: SessionState.ATTACHED, servedHere: true });
    expect(await h.mem.get(hex)).toMatchObject({ ok: true, record: { incarnation: rec.incarnation, owner: rec.owner, director: 'dir-test' } });
    // The other life's delete ended nothing here (it is not ours): no remote end, and the session serves on.
    expect(h.stats.remoteChanges.values.get('ended') ?? 0).toBe(0);
    expect(h.auditLines(hex).map((l) => l.event)).toEqual(['create']);
    expect((await h.own.step(rec, LifecycleEvent.FREEZE, { cause: 'test', actor: 'test' })).ok).toBe(true);
  });
});

describe('Ownership: a director from before lives were kept (a rolling upgrade)', () => {
  it('its rewrite of a session (no life: read as 0) is the same session, not another life: nothing ends here, and our next write lands', async () => {
    const h = harness();
    const rec = await h.admit(counterId(24), clientTransport(24));
    const st = (await h.mem.get(rec.id)) as { ok: true; record: StoredSession };
    h.own.followStore((key) => {
      const [a, port] = key.split(':');
      const t = { family: 4 as const, address: a as string, port: Number(port) };
      return { t, key: transportKey(t), listener: 0 };
    });
    // What an old director's expiry refresh leaves in the store: the same version, its fields without the life.
    expect((await h.mem.refresh(rec.id, 1n, st.record.expiresAt + 60_000, 'dir-old', 0)).ok).toBe(true);
    const legacy = { ...st.record, incarnation: 0, director: 'dir-old', expiresAt: st.record.expiresAt + 60_000 };
    await h.mem.update({ ...legacy, version: 2n, state: SessionState.FROZEN }, 1n); // an old director's freeze, say
    await waitFor('the freeze mirrored', () => (rec.version === 2n ? true : undefined));
    expect(h.core.table.holds(rec)).toBe(true);
    expect(h.stats.remoteChanges.values.get('ended') ?? 0).toBe(0);
    expect((await h.own.step(rec, LifecycleEvent.RESUME, { cause: 'test', actor: 'test' })).ok).toBe(true);
  });
});

describe('Ownership stopping: settleEnds and close', () => {
  it('settleEnds tries the waiting deletes now and waits for the answers: a store that is back takes them all', async () => {
    const clock = new ManualClock();
    const h = harness({ clock });
    const recs = [await h.admit(counterId(1), clientTransport(1)), await h.admit(counterId(2), clientTransport(2))];
    let down = true;
    h.store.beforeDelete = () => (down ? { ok: false, reason: 'unavailable', message: 'no leader' } : undefined);
    for (const r of recs) expect(h.own.terminate(r.id, 'operator', 'op').ok).toBe(true);
    await waitFor('both deletes waiting to be tried again', () => (h.own.endDeletes.retrying === 2 && h.own.endDeletes.inFlight === 0) || undefined);
    down = false; // the store is back, but the retry is a second away (the clock does not move)
    await h.own.settleEnds(5000);
    expect(h.own.endDeletes).toEqual({ inFlight: 0, waiting: 0, retrying: 0 });
    for (const r of recs) expect(await h.store.get(r.id)).toEqual({ ok: true, record: null });
    h.own.close();
    expect(h.auditLines().filter((l) => l.event === 'SECURITY_EVENT' && l.detail?.['reason'] === 'director_stopped')).toHaveLength(0);
  });

  it('a store still unreachable: settleEnds returns once the answers are in, and close says each end given up (SECURITY_EVENT, reason director_stopped)', async () => {
    const clock = new ManualClock();
    const h = harness({ clock });
    const rec = await h.admit(counterId(3), clientTransport(3));
    let tries = 0;
    h.store.beforeDelete = () => {
      tries++;
      return { ok: false, reason: 'unavailable', message: 'no leader' };
    };
    expect(h.own.terminate(rec.id, 'operator', 'op').ok).toBe(true);
    await waitFor('the delete waiting to be tried again', () => (h.own.endDeletes.retrying === 1 && h.own.endDeletes.inFlight === 0) || undefined);
    await h.own.settleEnds(5000);
    expect(tries).toBe(2);
    h.own.close();
    const sec = h.auditLines(rec.id).filter((l) => l.event === 'SECURITY_EVENT');
    expect(sec.map((l) => [l.cause, l.detail?.['reason'], l.detail?.['retrying']])).toEqual([
      ['end_not_stored', 'unavailable', true],
      ['end_not_stored', 'director_stopped', false],
    ]);
    expect(h.own.endDeletes).toEqual({ inFlight: 0, waiting: 0, retrying: 0 });
    clock.advance(60_000);
    expect(tries).toBe(2); // nothing tried after close
  });

  it('a delete in flight at close that then fails is said given up, not "retrying"; deletes waiting for room are never sent', async () => {
    const h = harness({ limits: { sessionMax: 10_000 } });
    const ids: string[] = [];
    for (let i = 0; i < 4100; i++) ids.push((await h.admit(counterId(i + 1), clientTransport(i))).id);
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    let sent = 0;
    h.store.beforeDelete = async () => {
      sent++;
      await gate;
      return { ok: false, reason: 'unavailable', message: 'no leader' };
    };
    for (const id of ids) expect(h.own.terminate(id, 'operator', 'op').ok).toBe(true);
    expect(h.own.endDeletes).toMatchObject({ inFlight: 4096, waiting: 4 });
    h.own.close();
    const stopped = () => h.auditLines().filter((l) => l.cause === 'end_not_stored' && l.detail?.['reason'] === 'director_stopped');
    expect(stopped().map((l) => l.session)).toEqual(ids.slice(4096)); // the four never sent
    open();
    await waitFor('the in-flight deletes answered', () => h.own.endDeletes.inFlight === 0 || undefined);
    expect(sent).toBe(4096);
    expect(stopped()).toHaveLength(4100);
    expect(h.auditLines().filter((l) => l.cause === 'end_not_stored' && l.detail?.['retrying'] === true)).toHaveLength(0);
  });
});

// ------------------------------------------------------------------------------------------ admission
describe('Ownership.admit', () => {
  it("own writes told by the watch after their answers (as a shared store tells them) are not counted as refreshes; a later expiry of its own still is", async () => {
    const clock = new (class extends ManualClock {
      override wall(): number {
        return super.wall() - 0.5; // Date.now() behind performance's wall time, as above
      }
    })();
    const h = harness({ clock });
    // Every event one turn after the write that caused it: after its answer, as etcd's watch delivers.
    h.store.watch = (listener) => h.mem.watch((ev) => void setImmediate(() => listener(ev)));
    h.own.followStore((key) => ({ t: clientTransport(1), key, listener: 0 }));
    const recs: SessionRecord[] = [];
    for (let i = 0; i < 10; i++) recs.push(await h.admit(counterId(i + 1), clientTransport(i)));
    const moved = await h.own.migrateBatch(
      recs.map((r) => r.id),
      { cause: 'drain', actor: 'test' },
    );
    expect(moved.every((m) => m.ok)).toBe(true);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(h.stats.remoteChanges.values.get('refreshed') ?? 0).toBe(0);
    for (const r of recs) expect(clock.toWall(r.storeExpiresAt)).toBe(((await h.mem.get(r.id)) as { ok: true; record: StoredSession }).record.expiresAt);
    // A write of this director's that the store holds with a later expiry than known here (its answer lost):
    // the expiry is learned.
    const r0 = recs[0] as SessionRecord;
    const held = ((await h.mem.get(r0.id)) as { ok: true; record: StoredSession }).record;
    expect((await h.mem.refresh(r0.id, held.version, held.expiresAt + 10_000, 'dir-test', held.incarnation)).ok).toBe(true);
    await waitFor('the refresh learned', () => (h.stats.remoteChanges.values.get('refreshed') === 1 ? true : undefined));
    expect(clock.toWall(r0.storeExpiresAt)).toBe(held.expiresAt + 10_000 + 0.5);
  });

  it("the watch's copy of the director's own create is not applied back: no refresh counted, the deadline not moved (the wall clock a fraction of a millisecond off)", async () => {
    // wall() half a millisecond behind toWall's origin, as Date.now() (whole milliseconds) is behind
    // performance.timeOrigin + performance.now() about half the time: an expiry read back from the store
    // lands half a millisecond later than it was written.
    const clock = new (class extends ManualClock {
      override wall(): number {
        return super.wall() - 0.5;
      }
    })();
    const h = harness({ clock });
    h.own.followStore((key) => ({ t: clientTransport(1), key, listener: 0 }));
    const recs: SessionRecord[] = [];
    for (let i = 0; i < 20; i++) recs.push(await h.admit(counterId(i + 1), clientTransport(i)));
    expect(h.stats.remoteChanges.values.get('refreshed') ?? 0).toBe(0);
    for (const r of recs) {
      const stored = (await h.mem.get(r.id)) as { ok: true; record: StoredSession };
      expect(clock.toWall(r.storeExpiresAt)).toBe(stored.record.expiresAt); // as written: no round trip through the wall clock
    }
  });

  it('HELLO → admit outcome → store create (version 1) → HELLO forwarded with seq 1, audit create', async () => {
    const h = harness();
    const out = h.core.onClient(packet(PacketType.HELLO, SID, 7), A, transportKey(A), 0, h.clock.now());
    expect(out.kind).toBe('admit');
    if (out.kind !== 'admit') return;
    // Nothing forwarded before the store has accepted it.
    expect(h.path.forwards).toHaveLength(0);
    await h.own.admit(out.session);

    const owner = ring.pick(SID)!;
    expect(h.path.forwards).toHaveLength(1);
    const f = h.path.forwards[0]!;
    expect(f).toMatchObject({ session: ID, node: owner, version: 1n, seq: 1, flags: 0, type: PacketType.HELLO, src: transportKey(A) });
    expect(counterOf(f.msg)).toBe(7);

    const s = await h.store.record(ID);
    expect(s).toMatchObject({ id: ID, owner, version: 1n, state: 'ATTACHED', transport: transportKey(A), director: 'dir-test' });
    const rec = h.core.table.get(ID)!;
    expect(rec.version).toBe(1n);
    expect(rec.pending).toBeNull();

    const lines = h.auditLines(ID);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ event: 'create', cause: 'hello', from_version: null, to_version: '1', from_owner: null, to_owner: owner, actor: 'dir-test' });
    expect(h.stats.admissions).toBe(1);
    expect(h.path.answers).toHaveLength(0);
  });

  it('packets sent while the create is in flight are held and follow the HELLO in order', async () => {
    const h = harness();
    h.store.beforeCreate = () => {
      expect(h.client(packet(PacketType.DATA, SID, 1), A).kind).toBe('hold');
      expect(h.client(packet(PacketType.DATA, SID, 2), A).kind).toBe('hold');
    };
    await h.admit(SID, A);
    expect(h.path.forwards.map((f) => [f.type, f.seq, f.flags])).toEqual([
      [PacketType.HELLO, 1, 0],
      [PacketType.DATA, 2, 0],
      [PacketType.DATA, 3, 0],
    ]);
    expect(h.path.forwards.slice(1).map((f) => counterOf(f.msg))).toEqual([1, 2]);
  });

  it('a shared store refusing the create for a stale node state (a drain begun on another director) → REJECT STORE_UNAVAILABLE, counted, no SECURITY_EVENT; the next HELLO is admitted', async () => {
    const h = harness();
    h.store.beforeCreate = () => ({ ok: false, reason: 'unavailable', message: "node node-a's state was written after revision 7", staleNodeState: true });
    const out = h.client(packet(PacketType.HELLO, SID), A);
    expect(out.kind).toBe('admit');
    await vi.waitFor(() => expect(h.path.answers).toHaveLength(1));
    // The REJECT is counted apart from outages (rejects_sent{reason="node_state_changed"}).
    expect(h.path.answers[0]).toMatchObject({ outcome: { kind: 'reject', reason: RejectReason.STORE_UNAVAILABLE }, countAs: 'node_state_changed' });
    expect(h.path.forwards).toHaveLength(0);
    expect(h.core.table.get(ID)).toBeUndefined();
    expect(h.auditLines(ID).filter((l) => l.event === 'SECURITY_EVENT')).toEqual([]);
    expect(h.stats.securityEvents.get('admit_store_unavailable')).toBe(0);
    expect(h.stats.admissionsStaleNodeState).toBe(1);
    // Counted apart from store outages (which AnchorStoreUnavailable alerts on).
    expect(h.stats.admissionsFailed.get('node_state_changed')).toBe(1);
    expect(h.stats.admissionsFailed.get('store_unavailable')).toBe(0);
    h.store.beforeCreate = null;
    const rec = await h.admit(SID, A);
    expect(rec.version).toBe(1n);
  });

  it('store unavailable → REJECT STORE_UNAVAILABLE answered, no session in table or store, SECURITY_EVENT', async () => {
    const h = harness();
    h.mem.setUnavailable(true);
    const out = h.client(packet(PacketType.HELLO, SID), A);
    expect(out.kind).toBe('admit');
    await vi.waitFor(() => expect(h.path.answers).toHaveLength(1));
    expect(h.path.answers[0]!.outcome).toMatchObject({ kind: 'reject', reason: RejectReason.STORE_UNAVAILABLE });
    expect(h.path.forwards).toHaveLength(0);
    expect(h.core.table.get(ID)).toBeUndefined();
    expect(h.core.table.size).toBe(0);
    h.mem.setUnavailable(false);
    expect(await h.store.record(ID)).toBeNull();
    expect(h.mem.size).toBe(0);
    const sec = h.auditLines(ID).filter((l) => l.event === 'SECURITY_EVENT');
    expect(sec.map((l) => l.cause)).toEqual(['admit_store_unavailable']);
    expect(h.auditLines(ID).some((l) => l.event === 'create')).toBe(false);
    expect(h.stats.securityEvents.get('admit_store_unavailable')).toBe(1);
    expect(h.stats.admissionsFailed.get('store_unavailable')).toBe(1);
    // No tombstone was left: once the store is back, the same HELLO is admitted.
    const rec = await h.admit(SID, A);
    expect(rec.version).toBe(1n);
  });

  it.each([
    ['ATTACHED elsewhere', SessionState.ATTACHED, RejectReason.OWNERSHIP_CONFLICT, 'ownership_conflict'],
    ['TERMINATED', SessionState.TERMINATED, RejectReason.SESSION_TERMINATED, 'session_terminated'],
  ] as const)('an id the store already has (%s) → REJECT %s, nothing changes', async (_d, state, reason, label) => {
    const seed = stored(ID, { state });
    const h = harness({ records: [seed] });
    h.client(packet(PacketType.HELLO, SID), A);
    await vi.waitFor(() => expect(h.path.answers).toHaveLength(1));
    expect(h.path.answers[0]!.outcome).toMatchObject({ kind: 'reject', reason });
    expect(h.core.table.get(ID)).toBeUndefined();
    expect(await h.store.record(ID)).toEqual(seed);
    expect(h.path.forwards).toHaveLength(0);
    expect(h.auditLines(ID).map((l) => [l.event, l.cause])).toEqual([['SECURITY_EVENT', 'admit_conflict']]);
    expect(h.stats.admissionsFailed.get(label)).toBe(1);
  });
});

// ------------------------------------------------------------------------------------------ migrate
describe('Ownership.migrate', () => {
  async function live(h: Harness) {
    const rec = await h.admit(SID, A);
    h.client(packet(PacketType.DATA, SID, 1), A);
    return rec;
  }

  it('freeze (1→2), transfer (2→3, owner moves in one CAS), REVOKE(3) to the old owner, resume (3→4)', async () => {
    const h = harness();
    const rec = await live(h);
    const from = rec.owner;
    const to = other(from);
    const puts: { version: bigint; owner: string; prevOwner: string | null }[] = [];
    h.mem.watch((ev) => {
      if (ev.kind === 'put') puts.push({ version: ev.record.version, owner: ev.record.owner, prevOwner: ev.prev?.owner ?? null });
    });

    const r = await h.own.migrate(ID, { to, cause: 'migrate', actor: 'op:alice' });
    expect(r).toEqual({ ok: true, session: ID, from, to, version: 4n, replayed: 0 });

    // The store saw exactly three CASes; the owner changed only in the one that wrote version 3.
    expect(h.store.updates.map((u) => [u.expect, u.record.version, u.record.state, u.record.owner])).toEqual([
      [1n, 2n, 'FROZEN', from],
      [2n, 3n, 'FROZEN', to],
      [3n, 4n, 'ATTACHED', to],
    ]);
    expect(puts.filter((p) => p.owner !== p.prevOwner && p.prevOwner !== null)).toEqual([{ version: 3n, owner: to, prevOwner: from }]);

    expect(await h.store.record(ID)).toMatchObject({ owner: to, version: 4n, state: 'ATTACHED', transport: transportKey(A) });
    expect(rec).toMatchObject({ owner: to, version: 4n, state: 'ATTACHED', pending: null, formerOwner: from });
    expect(h.core.table.get(ID)).toBe(rec); // live, under its new owner
    expect(h.core.table.countByOwner(from)).toBe(0);
    expect(h.core.table.countByOwner(to)).toBe(1);
    // The store reads the record from the session's table row again (TableRecords): nothing kept apart.
    expect(h.holder.apart).toBe(0);
    expect(h.holder.size).toBe(1);

    expect(h.path.revokes).toEqual([{ session: ID, node: from, version: 3n, at: expect.any(Number) }]);
    expect(h.stats.revokes.get('sent')).toBe(1);
    expect(h.own.pendingRevokes).toBe(1);

    const steps = h.auditLines(ID).filter((l) => l.event !== 'create');
    expect(steps.map((l) => ({ event: l.event, cause: l.cause, fv: l.from_version, tv: l.to_version, fo: l.from_owner, to: l.to_owner, actor: l.actor }))).toEqual([
      { event: 'freeze', cause: 'migrate', fv: '1', tv: '2', fo: from, to: from, actor: 'op:alice' },
      { event: 'transfer', cause: 'migrate', fv: '2', tv: '3', fo: from, to, actor: 'op:alice' },
      { event: 'resume', cause: 'migrate', fv: '3', tv: '4', fo: to, to, actor: 'op:alice' },
    ]);

    // Packets after the move go to the new owner at version 4, seq continuing.
    h.client(packet(PacketType.DATA, SID, 2), A);
    expect(h.path.forwards.at(-1)).toMatchObject({ node: to, version: 4n, seq: 3, flags: 0 });
  });

  it('packets sent while frozen are held and replayed IN ORDER to the new owner, flagged REPLAYED', async () => {
    const h = harness();
    const rec = await live(h);
    const from = rec.owner;
    const to = other(from);
    let counter = 100;
    const outcomes: string[] = [];
    // Inject client packets during each of the three CASes (freeze, transfer, resume in flight).
    h.store.beforeUpdate = () => {
      for (let i = 0; i < 2; i++) outcomes.push(h.client(packet(PacketType.DATA, SID, counter++), A).kind);
      // A packet from a new transport while frozen is not a jump candidate: dropped.
      outcomes.push(h.client(packet(PacketType.DATA, SID, 999), B).kind);
    };
    const before = h.path.forwards.length;
    const r = await h.own.migrate(ID, { to, cause: 'migrate', actor: 'op' });
    expect(r).toMatchObject({ ok: true, version: 4n, replayed: 6 });
    expect(outcomes).toEqual(['hold', 'hold', 'drop', 'hold', 'hold', 'drop', 'hold', 'hold', 'drop']);
    const replay = h.path.forwards.slice(before);
    expect(replay.map((f) => counterOf(f.msg))).toEqual([100, 101, 102, 103, 104, 105]);
    for (const f of replay) expect(f).toMatchObject({ node: to, version: 4n, flags: PP2_FLAG.REPLAYED, src: transportKey(A) });
    expect(replay.map((f) => f.seq)).toEqual([3, 4, 5, 6, 7, 8]);
    expect(rec.held).toBeNull();
    expect(rec.candidates).toBeNull();
  });

  it('the hold buffer is bounded: overflow is dropped (hold_overflow), the rest replayed', async () => {
    const h = harness({ limits: { holdMax: 3 } });
    const rec = await live(h);
    const to = other(rec.owner);
    const outcomes: string[] = [];
    h.store.beforeUpdate = (_r, _e, n) => {
      if (n !== 1) return;
      for (let i = 0; i < 5; i++) {
        const o = h.client(packet(PacketType.DATA, SID, 200 + i), A);
        outcomes.push(o.kind === 'drop' ? `drop:${o.reason}` : o.kind);
      }
    };
    const before = h.path.forwards.length;
    const r = await h.own.migrate(ID, { to, cause: 'migrate', actor: 'op' });
    expect(r).toMatchObject({ ok: true, replayed: 3 });
    expect(outcomes).toEqual(['hold', 'hold', 'hold', 'drop:hold_overflow', 'drop:hold_overflow']);
    expect(h.path.forwards.slice(before).map((f) => counterOf(f.msg))).toEqual([200, 201, 202]);
  });

  it('a CLOSE held while frozen ends the session when it is replayed (to the new owner, then tombstone)', async () => {
    const h = harness();
    const rec = await live(h);
    const to = other(rec.owner);
    h.store.beforeUpdate = (_r, _e, n) => {
      if (n === 1) {
        h.client(packet(PacketType.DATA, SID, 1), A);
        h.client(packet(PacketType.CLOSE, SID, 2), A);
        h.client(packet(PacketType.DATA, SID, 3), A);
      }
    };
    const r = await h.own.migrate(ID, { to, cause: 'migrate', actor: 'op' });
    expect(r).toMatchObject({ ok: true, replayed: 2 });
    const last = h.path.forwards.slice(-2);
    expect(last.map((f) => [f.type, f.node, f.version])).toEqual([
      [PacketType.DATA, to, 4n],
      [PacketType.CLOSE, to, 4n],
    ]);
    expect(h.core.table.get(ID)).toBeUndefined();
    expect(h.auditLines(ID).at(-1)).toMatchObject({ event: 'close', from_version: '4', to_version: '5', from_owner: to });
    await vi.waitFor(async () => expect(await h.store.record(ID)).toBeNull());
    expect(h.stats.heldDiscarded).toBe(1);
  });

  describe('refusals change nothing', () => {
    async function refused(h: Harness, req: Parameters<Harness['own']['migrate']>[1], reason: string) {
      const rec = h.core.table.get(ID)!;
      const snap = { owner: rec.owner, version: rec.version, state: rec.state };
      const storedBefore = await h.store.record(ID);
      const auditBefore = h.auditLines().length;
      const fwdBefore = h.path.forwards.length;
      const r = await h.own.migrate(ID, req);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.reason).toBe(reason);
      expect({ owner: rec.owner, version: rec.version, state: rec.state }).toEqual(snap);
      expect(rec.pending).toBeNull();
      expect(await h.store.record(ID)).toEqual(storedBefore);
      expect(h.store.updates).toHaveLength(0);
      expect(h.path.revokes).toHaveLength(0);
      expect(h.path.forwards.length).toBe(fwdBefore);
      return { r, newAudit: h.auditLines().slice(auditBefore) };
    }

    it('a stale expect_version', async () => {
      const h = harness();
      await live(h);
      const { r, newAudit } = await refused(h, { expectVersion: 7n, cause: 'migrate', actor: 'op' }, 'stale_version');
      if (!r.ok) expect(r.message).toMatch(/version 1/);
      expect(newAudit).toHaveLength(0);
      // The right version is accepted.
      expect(await h.own.migrate(ID, { expectVersion: 1n, cause: 'migrate', actor: 'op' })).toMatchObject({ ok: true, version: 4n });
    });

    // The asker's mistakes (no such node, the owner itself) are counted apart from a target that stopped
    // taking sessions (the fleet's), so that AnchorMigrationsFailing does not fire on a typo.
    it('to = the current owner', async () => {
      const h = harness();
      const rec = await live(h);
      const { r } = await refused(h, { to: rec.owner, cause: 'migrate', actor: 'op' }, 'bad_target');
      expect(migrationResultLabel(r)).toBe('invalid_target');
    });

    it('to = an unknown node', async () => {
      const h = harness();
      await live(h);
      const { r } = await refused(h, { to: 'node-zz', cause: 'migrate', actor: 'op' }, 'bad_target');
      expect(migrationResultLabel(r)).toBe('invalid_target');
    });

    it('to = a node that takes no sessions', async () => {
      let blocked = '';
      const h = harness({ eligible: (n) => n !== blocked });
      const rec = await live(h);
      blocked = other(rec.owner);
      const { r } = await refused(h, { to: blocked, cause: 'migrate', actor: 'op' }, 'bad_target');
      expect(migrationResultLabel(r)).toBe('bad_target');
    });

    it('no other node → no_target', async () => {
      const h = harness();
      const rec = await live(h);
      h.core.setRing(buildRing(hasher, [{ id: rec.owner, weight: 1 }]));
      await refused(h, { cause: 'migrate', actor: 'op' }, 'no_target');
    });

    it('an unknown session → not_found', async () => {
      const h = harness();
      const r = await h.own.migrate('ff'.repeat(16), { cause: 'migrate', actor: 'op' });
      expect(r).toMatchObject({ ok: false, reason: 'not_found' });
    });
  });

  it('without `to`, the target is the ring’s best other node', async () => {
    const h = harness();
    const rec = await live(h);
    const from = rec.owner;
    const r = await h.own.migrate(ID, { cause: 'migrate', actor: 'op' });
    expect(r).toMatchObject({ ok: true, from, to: ring.pickExcluding(SID, new Set([from])) });
  });

  it('store unavailable at freeze → nothing changes, SECURITY_EVENT freeze_aborted', async () => {
    const h = harness();
    const rec = await live(h);
    const from = rec.owner;
    h.mem.setUnavailable(true);
    const r = await h.own.migrate(ID, { to: other(from), cause: 'migrate', actor: 'op' });
    expect(r).toMatchObject({ ok: false, reason: 'unavailable' });
    expect(rec).toMatchObject({ owner: from, version: 1n, state: 'ATTACHED', pending: null });
    h.mem.setUnavailable(false);
    expect(await h.store.record(ID)).toMatchObject({ owner: from, version: 1n, state: 'ATTACHED' });
    expect(h.path.revokes).toHaveLength(0);
    const lines = h.auditLines(ID).filter((l) => l.event !== 'create');
    expect(lines.map((l) => [l.event, l.cause])).toEqual([['SECURITY_EVENT', 'freeze_aborted']]);
    expect(lines[0]!.detail).toMatchObject({ reason: 'unavailable', from_version: '1', to_version: '2' });
    // The session goes on as before.
    h.client(packet(PacketType.DATA, SID, 5), A);
    expect(h.path.forwards.at(-1)).toMatchObject({ node: from, version: 1n, flags: 0 });
  });

  it('packets held while a failed freeze CAS was in flight go on to the owner, in order, before later ones', async () => {
    const h = harness();
    const rec = await live(h);
    const from = rec.owner;
    h.store.beforeUpdate = () => {
      h.client(packet(PacketType.DATA, SID, 10), A);
      h.client(packet(PacketType.DATA, SID, 11), A);
      return unavailable();
    };
    const before = h.path.forwards.length;
    const r = await h.own.migrate(ID, { to: other(from), cause: 'migrate', actor: 'op' });
    expect(r).toMatchObject({ ok: false, reason: 'unavailable' });
    h.store.beforeUpdate = null;
    h.client(packet(PacketType.DATA, SID, 12), A);
    const sent = h.path.forwards.slice(before);
    expect(sent.map((f) => counterOf(f.msg))).toEqual([10, 11, 12]);
    for (const f of sent) expect(f).toMatchObject({ node: from, version: 1n, flags: 0 });
    expect(rec.held === null || rec.held.length === 0).toBe(true);
  });

  it.each(['unavailable', 'conflict'] as const)(
    'the transfer CAS fails (%s) → thawed in place: same owner, version +2, held packets released to the old owner',
    async (kind) => {
      const h = harness();
      const rec = await live(h);
      const from = rec.owner;
      const to = other(from);
      h.store.beforeUpdate = async (record, _e, n) => {
        if (n === 0) {
          h.client(packet(PacketType.DATA, SID, 50), A);
          return undefined;
        }
        if (n === 1) {
          expect(record.owner).toBe(to);
          h.client(packet(PacketType.DATA, SID, 51), A);
          if (kind === 'unavailable') return unavailable();
          const cur = await h.store.record(ID);
          return { ok: false, reason: 'conflict', current: cur };
        }
        return undefined;
      };
      const before = h.path.forwards.length;
      const r = await h.own.migrate(ID, { to, cause: 'migrate', actor: 'op' });
      expect(r).toMatchObject({ ok: false, reason: kind });
      expect(rec).toMatchObject({ owner: from, version: 3n, state: 'ATTACHED', pending: null });
      expect(await h.store.record(ID)).toMatchObject({ owner: from, version: 3n, state: 'ATTACHED' });
      expect(h.core.table.get(ID)).toBe(rec);
      expect(h.core.table.countByOwner(from)).toBe(1);
      expect(h.path.revokes).toHaveLength(0);
      const released = h.path.forwards.slice(before);
      expect(released.map((f) => counterOf(f.msg))).toEqual([50, 51]);
      for (const f of released) expect(f).toMatchObject({ node: from, version: 3n, flags: PP2_FLAG.REPLAYED });
      const lines = h.auditLines(ID).filter((l) => l.event !== 'create');
      expect(lines.map((l) => ({ e: l.event, c: l.cause, fv: l.from_version, tv: l.to_version, fo: l.from_owner, to: l.to_owner }))).toEqual([
        { e: 'freeze', c: 'migrate', fv: '1', tv: '2', fo: from, to: from },
        { e: 'SECURITY_EVENT', c: 'transfer_aborted', fv: null, tv: null, fo: null, to: null },
        { e: 'resume', c: 'transfer_aborted', fv: '2', tv: '3', fo: from, to: from },
      ]);
      expect(lines[1]!.detail).toMatchObject({ reason: kind, from_version: '2', to_version: '3', to_owner: to });
    },
  );

  it('a second migration while one is in flight is refused as busy', async () => {
    const h = harness();
    const rec = await live(h);
    const [a, b] = await Promise.all([
      h.own.migrate(ID, { to: other(rec.owner), cause: 'migrate', actor: 'op' }),
      h.own.migrate(ID, { to: other(rec.owner, [other(rec.owner)]), cause: 'migrate', actor: 'op' }),
    ]);
    expect(a).toMatchObject({ ok: true, version: 4n });
    expect(b).toMatchObject({ ok: false, reason: 'busy' });
    expect(h.store.updates).toHaveLength(3);
  });
});

describe('Ownership.migrateBatch', () => {
  /** `n` live sessions on `node`, each with one DATA sent. */
  async function liveOn(h: Harness, node: string, n: number, from = 1) {
    const ids = idsOwnedBy(ring, node, n, from);
    const recs = [];
    for (const [i, id] of ids.entries()) {
      const t = clientTransport(100 + i + from);
      recs.push(await h.admit(id, t));
      h.client(packet(PacketType.DATA, id, 1), t);
    }
    return recs;
  }

  it('moves every session of a batch through freeze, transfer, REVOKE and resume, each with its own CAS and audit lines', async () => {
    const h = harness();
    const recs = await liveOn(h, 'node-a', 20);
    const ids = recs.map((r) => r.id);
    const results = await h.own.migrateBatch(ids, { cause: 'drain', actor: 'drain:dr-1' });
    expect(results.map((r) => r.session)).toEqual(ids);
    for (const [i, r] of results.entries()) {
      const to = ring.pickExcluding(recs[i]!.idBytes, new Set(['node-a']));
      expect(r).toEqual({ ok: true, session: ids[i], from: 'node-a', to, version: 4n, replayed: 0 });
      expect(await h.store.record(ids[i]!)).toMatchObject({ owner: to, version: 4n, state: 'ATTACHED' });
      expect(h.auditLines(ids[i]).map((l) => [l.event, l.from_version, l.to_version])).toEqual([
        ['create', null, '1'],
        ['freeze', '1', '2'],
        ['transfer', '2', '3'],
        ['resume', '3', '4'],
      ]);
    }
    expect(h.core.table.countByOwner('node-a')).toBe(0);
    expect(h.store.updates).toHaveLength(60);
    // Each step of the batch was one store operation (updateMany), with a CAS per session in it.
    expect(h.store.batches).toEqual([20, 20, 20]);
    // Every freeze was written before any transfer, every transfer before any resume (one step at a time).
    expect(h.store.updates.map((u) => u.record.version)).toEqual([...Array(20).fill(2n), ...Array(20).fill(3n), ...Array(20).fill(4n)]);
    expect(h.path.revokes.map((r) => [r.session, r.node, r.version])).toEqual(ids.map((id) => [id, 'node-a', 3n]));
  });

  it('a step\'s datagrams go to the data path together: every REVOKE of the batch in one sendTogether, every replay in one', async () => {
    const clock = new ManualClock();
    vi.useFakeTimers();
    const h = harness({ clock, quiesceMs: 50 });
    const recs = await liveOn(h, 'node-a', 12);
    const done = h.own.migrateBatch(recs.map((r) => r.id), { cause: 'drain', actor: 'op' });
    await vi.advanceTimersByTimeAsync(0);
    for (const [i, r] of recs.entries()) h.client(packet(PacketType.DATA, r.idBytes, 9), clientTransport(101 + i));
    clock.advance(60);
    await vi.advanceTimersByTimeAsync(60);
    expect((await done).every((r) => r.ok && r.replayed === 1)).toBe(true);
    const revokeCalls = new Set(h.path.revokesTogether);
    expect(h.path.revokes).toHaveLength(12);
    expect([...revokeCalls]).toHaveLength(1);
    expect(revokeCalls.has(null)).toBe(false);
    const replays = h.path.forwardsTogether.filter((_, i) => h.path.forwards[i]!.flags !== 0);
    expect(replays).toHaveLength(12);
    const replayCalls = new Set(replays);
    expect([...replayCalls]).toHaveLength(1);
    expect(replayCalls.has(null)).toBe(false);
    expect(replayCalls.has([...revokeCalls][0] as number)).toBe(false); // the resume step is a later one
  });

  it('every write of a migration carries the session\'s transport, the one it has when the write is made', async () => {
    const h = harness();
    const recs = await liveOn(h, 'node-a', 4);
    const moved = recs[1]!;
    const before = transportKey(moved.transport);
    const after = { family: 4 as const, address: '203.0.113.9', port: 4242 };
    // The session's transport is replaced between its freeze and its transfer (as a record from the store
    // or a committed BIND replaces it): the later writes carry the new one.
    h.store.beforeUpdate = (record) => {
      if (record.id === moved.id && record.version === 2n) moved.transport = after;
      return undefined;
    };
    const results = await h.own.migrateBatch(recs.map((r) => r.id), { cause: 'drain', actor: 'op' });
    expect(results.every((r) => r.ok)).toBe(true);
    for (const r of recs) {
      const written = h.store.updates.filter((u) => u.record.id === r.id).map((u) => [u.record.version, u.record.transport]);
      const t = r === moved ? [before, transportKey(after), transportKey(after)] : Array(3).fill(transportKey(r.transport));
      expect(written).toEqual([[2n, t[0]], [3n, t[1]], [4n, t[2]]]);
    }
    expect((await h.store.record(moved.id))?.transport).toBe(transportKey(after));
  });

  it('one result per id, in order, with each failure where it happened; the others move', async () => {
    const h = harness();
    const recs = await liveOn(h, 'node-a', 4);
    const [ok1, freezeFails, transferFails, ok2] = recs.map((r) => r.id) as [string, string, string, string];
    const missing = 'f'.repeat(32);
    h.store.beforeUpdate = (record) => {
      if (record.id === freezeFails && record.version === 2n) return unavailable('freeze down');
      if (record.id === transferFails && record.version === 3n && record.owner !== 'node-a') return { ok: false, reason: 'conflict', current: null };
      return undefined;
    };
    const results = await h.own.migrateBatch([ok1, missing, freezeFails, ok1, transferFails, ok2], { cause: 'drain', actor: 'op' });
    expect(results.map((r) => (r.ok ? 'ok' : r.reason))).toEqual(['ok', 'not_found', 'unavailable', 'busy', 'conflict', 'ok']);
    expect(results[2]).toMatchObject({ message: expect.stringMatching(/^freeze: store unavailable: freeze down/) });
    expect(results[4]).toMatchObject({ message: expect.stringMatching(/^transfer: /) });
    // The failed ones stayed with their owner, attached (the transfer's loser was thawed in place).
    for (const id of [freezeFails, transferFails]) expect(h.core.table.get(id)).toMatchObject({ owner: 'node-a', state: 'ATTACHED', pending: null });
    expect(h.core.table.get(transferFails)?.version).toBe(3n); // frozen at 2, thawed at 3
    expect(h.path.revokes.map((r) => r.session).sort()).toEqual([ok1, ok2].sort());
  });

  it('a session whose compare fails inside a batch step (the store moved on) fails alone; the rest of the same store call applies', async () => {
    const h = harness();
    const recs = await liveOn(h, 'node-a', 6);
    const victim = recs[2]!;
    // Another writer moved the session on in the store behind this director's back (no watch delivery here).
    const stored = (await h.store.record(victim.id))!;
    const h2 = await h.mem.updateMany([{ record: { ...stored, version: 2n, director: 'dir-other' }, expectVersion: 1n }]);
    expect(h2[0]?.ok).toBe(true);
    const results = await h.own.migrateBatch(recs.map((r) => r.id), { cause: 'drain', actor: 'op' });
    expect(results.map((r) => (r.ok ? 'ok' : r.reason))).toEqual(['ok', 'ok', 'conflict', 'ok', 'ok', 'ok']);
    expect(results[2]).toMatchObject({ message: expect.stringMatching(/^freeze: lost the compare-and-swap/) });
    expect(h.store.batches).toEqual([6, 5, 5]);
    expect(h.path.revokes.map((r) => r.session)).not.toContain(victim.id);
    expect(h.auditLines(victim.id).map((l) => l.event)).toEqual(['create', 'SECURITY_EVENT']);
  });

  it('sessions frozen in the batch share one quiesce, and their held packets are replayed to the new owner', async () => {
    const clock = new ManualClock();
    vi.useFakeTimers();
    const h = harness({ clock, quiesceMs: 50 });
    const recs = await liveOn(h, 'node-a', 10);
    const done = h.own.migrateBatch(recs.map((r) => r.id), { cause: 'drain', actor: 'op' });
    await vi.advanceTimersByTimeAsync(0);
    expect(recs.every((r) => r.state === SessionState.FROZEN)).toBe(true);
    // A packet of each session while they are frozen: held.
    for (const [i, r] of recs.entries()) h.client(packet(PacketType.DATA, r.idBytes, 7), clientTransport(101 + i));
    expect(vi.getTimerCount()).toBe(1);
    clock.advance(60);
    await vi.advanceTimersByTimeAsync(60);
    const results = await done;
    expect(results.every((r) => r.ok && r.replayed === 1)).toBe(true);
    for (const r of recs) {
      const last = h.path.forwards.filter((f) => f.session === r.id).at(-1);
      expect(last).toMatchObject({ node: r.owner, version: 4n });
      expect(r.owner).not.toBe('node-a');
    }
  });

  it('a session already being migrated is refused as busy and the running migration still completes', async () => {
    const h = harness({ quiesceMs: 5 });
    const [rec] = await liveOn(h, 'node-a', 1);
    const first = h.own.migrateBatch([rec!.id], { cause: 'drain', actor: 'op' });
    const second = await h.own.migrateBatch([rec!.id], { cause: 'drain', actor: 'op' });
    expect(second[0]).toMatchObject({ ok: false, reason: 'busy' });
    expect((await first)[0]).toMatchObject({ ok: true, version: 4n });
    // The refusal did not clear the running migration's mark: a stale-freeze sweep would have skipped it.
    expect(h.store.updates).toHaveLength(3);
  });

  /** Lets the steps started meanwhile (each a few promise hops through the store) run to their end. */
  async function settle(): Promise<void> {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  }

  it('sessions a batch leaves frozen (resume refused) are thawed by the stale-freeze sweep staleMs after the step that froze them last; moved ones are not', async () => {
    const clock = new ManualClock();
    const h = harness({ clock });
    const recs = await liveOn(h, 'node-a', 3);
    const [movedRec, refusedAtResume, refusedAtTransfer] = recs as [SessionRecord, SessionRecord, SessionRecord];
    const conflict = (): CasResult => ({ ok: false, reason: 'conflict', current: null });
    h.store.beforeUpdate = (r) => {
      if (r.id === refusedAtTransfer.id && r.state === SessionState.FROZEN && r.version === 3n) {
        clock.advance(1_000); // the transfer step ends 1 s after the freeze
        return conflict();
      }
      if (r.id === refusedAtTransfer.id && r.version === 3n) return conflict(); // its thaw too
      if (r.id === refusedAtResume.id && r.state === SessionState.ATTACHED) return conflict();
      return undefined;
    };
    const results = await h.own.migrateBatch(
      recs.map((r) => r.id),
      { cause: 'drain', actor: 'op' },
    );
    expect(results.map((r) => r.ok)).toEqual([true, false, false]);
    expect(movedRec).toMatchObject({ state: 'ATTACHED', version: 4n });
    expect(refusedAtResume).toMatchObject({ state: 'FROZEN', version: 3n }); // frozen since its transfer, at 1 s
    expect(refusedAtTransfer).toMatchObject({ state: 'FROZEN', version: 2n }); // frozen since its freeze, at 0 s
    h.store.beforeUpdate = null;
    expect(clock.now()).toBe(1_000);
    const thawed = () => h.auditLines().filter((l) => l.cause === 'stale_freeze').map((l) => l.session);
    clock.advance(3_999);
    h.own.thawStale(clock.now(), 5_000);
    await settle();
    expect(thawed()).toEqual([]);
    clock.advance(1);
    h.own.thawStale(clock.now(), 5_000);
    await settle();
    expect(thawed()).toEqual([refusedAtTransfer.id]);
    clock.advance(1_000);
    h.own.thawStale(clock.now(), 5_000);
    await settle();
    expect(thawed()).toEqual([refusedAtTransfer.id, refusedAtResume.id]);
    expect(refusedAtResume).toMatchObject({ state: 'ATTACHED', version: 4n });
    expect(refusedAtTransfer).toMatchObject({ state: 'ATTACHED', version: 3n, owner: 'node-a' });
    expect(movedRec).toMatchObject({ state: 'ATTACHED', version: 4n });
  });
});

// ------------------------------------------------------------------------------------------ REVOKE
describe('REVOKE acknowledgement', () => {
  /** Moves the director's clock and the timers together (the retries are due by the clock). */
  function advance(h: Harness, ms: number): void {
    (h.clock as ManualClock).advance(ms);
    vi.advanceTimersByTime(ms);
  }
  async function moved(h: Harness) {
    const rec = await h.admit(SID, A);
    const from = rec.owner;
    const r = await h.own.migrate(ID, { to: other(from), cause: 'migrate', actor: 'op' });
    expect(r.ok).toBe(true);
    return from;
  }

  it('an ack from the old owner for the version stops the retries', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const h = harness({ revokeTimeoutMs: 10, revokeRetries: 2 });
    const from = await moved(h);
    expect(h.path.revokes).toHaveLength(1);
    expect(h.own.revokesTo(from)).toEqual({ pending: 1, unacknowledged: 0 });
    // Acks that do not match are ignored (and said so, for the metric): another node, another version.
    expect(h.own.onRevokeAck(ID, 3n, other(from))).toBe(false);
    expect(h.own.onRevokeAck(ID, 2n, from)).toBe(false);
    expect(h.own.pendingRevokes).toBe(1);
    expect(h.own.onRevokeAck(ID, 3n, from)).toBe(true);
    expect(h.own.onRevokeAck(ID, 3n, from)).toBe(false); // a second one: nothing pending any more
    expect(h.own.pendingRevokes).toBe(0);
    expect(h.own.revokesTo(from)).toEqual({ pending: 0, unacknowledged: 0 });
    expect(h.stats.revokes.get('acknowledged')).toBe(1);
    advance(h, 1000);
    expect(h.path.revokes).toHaveLength(1);
    expect(h.stats.revokes.get('sent')).toBe(1);
    expect(h.stats.revokes.get('unacknowledged')).toBe(0);
    expect(h.auditLines(ID).some((l) => l.cause === 'revoke_unacknowledged')).toBe(false);
  });

  it('an ack after one retry also stops them', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const h = harness({ revokeTimeoutMs: 10, revokeRetries: 3 });
    const from = await moved(h);
    advance(h, 10);
    expect(h.path.revokes).toHaveLength(2);
    h.own.onRevokeAck(ID, 3n, from);
    advance(h, 1000);
    expect(h.path.revokes).toHaveLength(2);
    expect(h.stats.revokes.get('unacknowledged')).toBe(0);
  });

  it('without an ack: revokeRetries resends, each waiting twice as long, then SECURITY_EVENT revoke_unacknowledged', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const h = harness({ revokeTimeoutMs: 10, revokeRetries: 2 });
    const from = await moved(h);
    expect(h.path.revokes).toHaveLength(1);
    advance(h, 10);
    expect(h.path.revokes).toHaveLength(2);
    // The first resend waits 20 ms, not 10.
    advance(h, 10);
    expect(h.path.revokes).toHaveLength(2);
    advance(h, 10);
    expect(h.path.revokes).toHaveLength(3);
    expect(h.stats.revokes.get('unacknowledged')).toBe(0);
    // The second resend waits 40 ms before the REVOKE counts as unacknowledged.
    advance(h, 39);
    expect(h.stats.revokes.get('unacknowledged')).toBe(0);
    advance(h, 1);
    expect(h.path.revokes).toHaveLength(3);
    for (const r of h.path.revokes) expect(r).toMatchObject({ session: ID, node: from, version: 3n });
    expect(h.stats.revokes.get('sent')).toBe(3);
    expect(h.stats.revokes.get('unacknowledged')).toBe(1);
    expect(h.own.pendingRevokes).toBe(0);
    expect(h.own.revokesTo(from)).toEqual({ pending: 0, unacknowledged: 1 });
    const sec = h.auditLines(ID).filter((l) => l.event === 'SECURITY_EVENT');
    expect(sec).toHaveLength(1);
    expect(sec[0]).toMatchObject({ cause: 'revoke_unacknowledged', detail: { node: from, version: '3', attempts: 3 } });
    expect(h.stats.securityEvents.get('revoke_unacknowledged')).toBe(1);
    // A late ack changes nothing.
    h.own.onRevokeAck(ID, 3n, from);
    expect(h.stats.revokes.get('acknowledged')).toBe(0);
    advance(h, 1000);
    expect(h.path.revokes).toHaveLength(3);
  });

  it('REVOKEs not acknowledged when the director stops: each said at close (SECURITY_EVENT revoke_unacknowledged, reason director_stopped), none resent after', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const h = harness({ revokeTimeoutMs: 10, revokeRetries: 3 });
    const from = await moved(h);
    advance(h, 10);
    expect(h.path.revokes).toHaveLength(2);
    h.own.close();
    const sec = h.auditLines(ID).filter((l) => l.event === 'SECURITY_EVENT');
    expect(sec).toHaveLength(1);
    expect(sec[0]).toMatchObject({ cause: 'revoke_unacknowledged', detail: { node: from, version: '3', attempts: 2, reason: 'director_stopped' } });
    expect(h.stats.revokes.get('unacknowledged')).toBe(1);
    expect(h.own.pendingRevokes).toBe(0);
    advance(h, 1000);
    expect(h.path.revokes).toHaveLength(2);
    h.own.close(); // twice: said once
    expect(h.auditLines(ID).filter((l) => l.event === 'SECURITY_EVENT')).toHaveLength(1);
  });

  it('a session moved on again before its old owner acknowledged: each REVOKE is pending, acknowledged and counted on its own', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const h = harness({ revokeTimeoutMs: 10, revokeRetries: 2 });
    const first = await moved(h); // REVOKE(3) to `first`
    const second = (h.core.table.get(ID) as { owner: string }).owner;
    expect((await h.own.migrate(ID, { to: other(second, [first]), cause: 'migrate', actor: 'op' })).ok).toBe(true); // REVOKE(6) to `second`
    const third = (h.core.table.get(ID) as { owner: string }).owner;
    expect((await h.own.migrate(ID, { to: first, cause: 'migrate', actor: 'op' })).ok).toBe(true); // REVOKE(9) to `third`
    expect(h.path.revokes.map((r) => [r.node, r.version])).toEqual([
      [first, 3n],
      [second, 6n],
      [third, 9n],
    ]);
    expect(h.own.pendingRevokes).toBe(3);
    // Acks naming another REVOKE's node or version match nothing.
    h.own.onRevokeAck(ID, 6n, first);
    h.own.onRevokeAck(ID, 3n, second);
    h.own.onRevokeAck(ID, 4n, first);
    expect(h.own.pendingRevokes).toBe(3);
    h.own.onRevokeAck(ID, 6n, second);
    expect(h.own.pendingRevokes).toBe(2);
    // With the oldest still pending, the session moves once more: a fourth REVOKE, tracked beside it.
    const fourth = (h.core.table.get(ID) as { owner: string }).owner;
    expect((await h.own.migrate(ID, { to: second, cause: 'migrate', actor: 'op' })).ok).toBe(true); // REVOKE(12) to `fourth`
    expect(h.own.pendingRevokes).toBe(3);
    h.own.onRevokeAck(ID, 3n, first);
    h.own.onRevokeAck(ID, 12n, fourth);
    expect(h.own.pendingRevokes).toBe(1);
    expect(h.stats.revokes.get('acknowledged')).toBe(3);
    // The one left (REVOKE(9) to `third`) is resent, then given up, alone.
    advance(h, 10);
    advance(h, 20);
    advance(h, 40);
    expect(h.path.revokes.slice(4).map((r) => [r.node, r.version])).toEqual([
      [third, 9n],
      [third, 9n],
    ]);
    expect(h.own.pendingRevokes).toBe(0);
    expect(h.stats.revokes.get('unacknowledged')).toBe(1);
    expect(h.auditLines(ID).filter((l) => l.cause === 'revoke_unacknowledged').map((l) => l.detail)).toEqual([{ node: third, version: '9', attempts: 3 }]);
  });

  it('two REVOKEs of one session left unacknowledged are each resent and given up on their own', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const h = harness({ revokeTimeoutMs: 10, revokeRetries: 1 });
    const first = await moved(h);
    const second = (h.core.table.get(ID) as { owner: string }).owner;
    advance(h, 5);
    expect((await h.own.migrate(ID, { to: other(second, [first]), cause: 'migrate', actor: 'op' })).ok).toBe(true);
    expect(h.own.pendingRevokes).toBe(2);
    advance(h, 5); // REVOKE(3) resent
    advance(h, 5); // REVOKE(6) resent
    expect(h.path.revokes.map((r) => [r.node, r.version])).toEqual([
      [first, 3n],
      [second, 6n],
      [first, 3n],
      [second, 6n],
    ]);
    // An ack of the resent REVOKE(6) stops it; REVOKE(3) is given up after its second wait.
    h.own.onRevokeAck(ID, 6n, second);
    advance(h, 20);
    expect(h.own.pendingRevokes).toBe(0);
    expect(h.stats.revokes.get('acknowledged')).toBe(1);
    expect(h.stats.revokes.get('unacknowledged')).toBe(1);
    expect(h.auditLines(ID).filter((l) => l.cause === 'revoke_unacknowledged').map((l) => l.detail)).toEqual([{ node: first, version: '3', attempts: 2 }]);
  });

  it('REVOKEs falling due together are resent at most 256 per turn of the event loop', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const h = harness({ revokeTimeoutMs: 10, revokeRetries: 1 });
    const ids = idsOwnedBy(ring, 'node-a', 600);
    for (const [i, id] of ids.entries()) await h.admit(id, clientTransport(1000 + i));
    const results = await h.own.migrateBatch(ids.map((id) => sessionIdHex(id)), { cause: 'drain', actor: 'op' });
    expect(results.every((r) => r.ok)).toBe(true);
    expect(h.path.revokes).toHaveLength(600);
    advance(h, 10);
    expect(h.path.revokes).toHaveLength(600 + 256);
    advance(h, 1);
    expect(h.path.revokes).toHaveLength(600 + 512);
    advance(h, 1);
    expect(h.path.revokes).toHaveLength(1200);
    advance(h, 1);
    expect(h.path.revokes).toHaveLength(1200);
  });

  it('a resent REVOKE waiting longer does not hold back a newer one that falls due first', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const h = harness({ revokeTimeoutMs: 10, revokeRetries: 3 });
    const [first, second] = idsOwnedBy(ring, 'node-a', 2) as [Uint8Array, Uint8Array];
    await h.admit(first, clientTransport(2001));
    await h.admit(second, clientTransport(2002));
    expect((await h.own.migrate(sessionIdHex(first), { cause: 'drain', actor: 'op' })).ok).toBe(true);
    advance(h, 10); // first: resent, next due in 20 ms
    expect(h.path.revokes.map((r) => r.session)).toEqual([sessionIdHex(first), sessionIdHex(first)]);
    expect((await h.own.migrate(sessionIdHex(second), { cause: 'drain', actor: 'op' })).ok).toBe(true);
    advance(h, 10); // second falls due before first's resend
    expect(h.path.revokes.map((r) => r.session).slice(2)).toEqual([sessionIdHex(second), sessionIdHex(second)]);
    advance(h, 10);
    expect(h.path.revokes.map((r) => r.session).slice(4)).toEqual([sessionIdHex(first)]);
  });
});

// ------------------------------------------------------------------------------------------ reattach
/** A session bound to A whose owner answered a datagram from B with BIND: ready for its reattach CAS. */
async function boundToA() {
  const h = harness();
  const rec = await h.admit(SID, A);
  h.client(packet(PacketType.DATA, SID, 1), B);
  const bind = h.core.onNode(rec.owner, encodeBind(SID, 1n, B), h.clock.now());
  if (bind.kind !== 'bind') throw new Error(bind.kind);
  return { h, rec, bind };
}

describe('reattach by BIND', () => {
  it('candidate packet → owner BIND → CAS: version + 1, table and store transport updated, audit reattach', async () => {
    const h = harness();
    const rec = await h.admit(SID, A);
    const owner = rec.owner;
    const out = h.client(packet(PacketType.DATA, SID, 1), B);
    expect(out).toMatchObject({ kind: 'forward', flags: PP2_FLAG.UNBOUND_SOURCE, node: owner });
    expect(h.path.forwards.at(-1)).toMatchObject({ src: transportKey(B), flags: PP2_FLAG.UNBOUND_SOURCE });
    expect(rec.transportKey).toBe(transportKey(A)); // nothing changes before the BIND

    const bind = h.core.onNode(owner, encodeBind(SID, 1n, B), h.clock.now());
    expect(bind.kind).toBe('bind');
    if (bind.kind !== 'bind') return;
    const r = await h.own.reattach(bind.session, bind.candidate, bind.version);
    expect(r).toMatchObject({ ok: true, note: { event: 'reattach', fromVersion: 1n, toVersion: 2n } });
    expect(rec).toMatchObject({ version: 2n, transportKey: transportKey(B), transport: B, owner });
    expect(rec.candidates?.has(transportKey(B)) ?? false).toBe(false);
    expect(await h.store.record(ID)).toMatchObject({ version: 2n, transport: transportKey(B), owner, state: 'ATTACHED' });
    expect(h.auditLines(ID).at(-1)).toMatchObject({
      event: 'reattach',
      cause: 'bind',
      from_version: '1',
      to_version: '2',
      from_owner: owner,
      to_owner: owner,
      actor: owner,
      detail: { transport: transportKey(B) },
    });
    // The new transport is bound now; the old one is a candidate.
    expect(h.client(packet(PacketType.DATA, SID, 2), B)).toMatchObject({ kind: 'forward', flags: 0, version: 2n });
    expect(h.client(packet(PacketType.DATA, SID, 3), A)).toMatchObject({ kind: 'forward', flags: PP2_FLAG.UNBOUND_SOURCE });
  });

  it('a second BIND naming the old version for another candidate → conflict', async () => {
    const h = harness();
    const rec = await h.admit(SID, A);
    const owner = rec.owner;
    h.client(packet(PacketType.DATA, SID, 1), B);
    h.client(packet(PacketType.DATA, SID, 2), C);
    const first = h.core.onNode(owner, encodeBind(SID, 1n, B), h.clock.now());
    if (first.kind !== 'bind') throw new Error(first.kind);
    expect(await h.own.reattach(first.session, first.candidate, first.version)).toMatchObject({ ok: true });
    const second = h.core.onNode(owner, encodeBind(SID, 1n, C), h.clock.now());
    expect(second).toMatchObject({ kind: 'conflict', candidate: { key: transportKey(C) } });
    // Repeating the winning BIND is a no-op.
    expect(h.core.onNode(owner, encodeBind(SID, 2n, B), h.clock.now())).toMatchObject({ kind: 'drop', reason: 'bind_noop' });
    expect(rec).toMatchObject({ version: 2n, transportKey: transportKey(B) });
  });

  it('two BINDs racing on the same version: the second CAS is refused while the first is in flight', async () => {
    const h = harness();
    const rec = await h.admit(SID, A);
    const owner = rec.owner;
    h.client(packet(PacketType.DATA, SID, 1), B);
    h.client(packet(PacketType.DATA, SID, 2), C);
    const b1 = h.core.onNode(owner, encodeBind(SID, 1n, B), h.clock.now());
    if (b1.kind !== 'bind') throw new Error(b1.kind);
    const p1 = h.own.reattach(b1.session, b1.candidate, b1.version);
    // While that CAS is in flight, a BIND for C naming the same version loses deterministically.
    expect(h.core.onNode(owner, encodeBind(SID, 1n, C), h.clock.now())).toMatchObject({ kind: 'conflict' });
    expect(await p1).toMatchObject({ ok: true });
    expect(rec.transportKey).toBe(transportKey(B));
  });

  it('a second BIND for the transport being bound is a duplicate (bind_busy), not a rival: no REJECT to the winner', async () => {
    const h = harness();
    const rec = await h.admit(SID, A);
    const owner = rec.owner;
    h.client(packet(PacketType.DATA, SID, 1), B);
    h.client(packet(PacketType.DATA, SID, 2), B); // two packets: the owner answers each with a BIND
    const b1 = h.core.onNode(owner, encodeBind(SID, 1n, B), h.clock.now());
    if (b1.kind !== 'bind') throw new Error(b1.kind);
    const p1 = h.own.reattach(b1.session, b1.candidate, b1.version);
    expect(h.core.onNode(owner, encodeBind(SID, 1n, B), h.clock.now())).toMatchObject({ kind: 'drop', reason: 'bind_busy' });
    expect(await p1).toMatchObject({ ok: true });
    expect(rec.transportKey).toBe(transportKey(B));
    expect(h.path.candidateRejects).toEqual([]);
    // Settled: a later BIND for it is a no-op, and the flag does not stick to the candidate.
    expect(h.core.onNode(owner, encodeBind(SID, 2n, B), h.clock.now())).toMatchObject({ kind: 'drop', reason: 'bind_noop' });
    expect(b1.candidate.binding).toBe(false);
  });

  it('the same ip:port over the other protocol is a jump, not the bound transport: BIND binds it, and the store says tcp', async () => {
    const h = harness();
    const rec = await h.admit(SID, A);
    const owner = rec.owner;
    // A TCP connection from the very ip:port the session's datagrams come from: a reattach candidate.
    expect(h.core.onTcpPreamble(PacketType.DATA, SID, A, transportKey(A), 36, h.clock.now())).toMatchObject({ kind: 'reattach' });
    const bind = h.core.onNode(owner, encodeBind(SID, 1n, A), h.clock.now());
    if (bind.kind !== 'bind') throw new Error(`expected a bind, got ${JSON.stringify(bind)}`);
    expect(await h.own.reattach(bind.session, bind.candidate, bind.version)).toMatchObject({ ok: true });
    expect(rec).toMatchObject({ version: 2n, listener: TCP_LISTENER, transportKey: transportKey(A) });
    expect(await h.store.record(ID)).toMatchObject({ version: 2n, transport: `tcp:${transportKey(A)}` });
    // Bound to the connection now: the same BIND again is a no-op, and a datagram from that ip:port a candidate.
    expect(h.core.onNode(owner, encodeBind(SID, 2n, A), h.clock.now())).toMatchObject({ kind: 'drop', reason: 'bind_noop' });
    expect(h.client(packet(PacketType.DATA, SID, 1), A)).toMatchObject({ kind: 'forward', flags: PP2_FLAG.UNBOUND_SOURCE });
    // ... whose BIND brings the session back to datagrams, written without the prefix.
    const back = h.core.onNode(owner, encodeBind(SID, 2n, A), h.clock.now());
    if (back.kind !== 'bind') throw new Error(`expected a bind, got ${JSON.stringify(back)}`);
    expect(await h.own.reattach(back.session, back.candidate, back.version)).toMatchObject({ ok: true });
    expect(rec).toMatchObject({ version: 3n, listener: 0 });
    expect(await h.store.record(ID)).toMatchObject({ version: 3n, transport: transportKey(A) });
  });

  it('our CAS landed, but another director\'s write on top of it reached us first: the record keeps the newer state, our transition is audited', async () => {
    const h = harness();
    const rec = await h.admit(SID, A);
    const owner = rec.owner;
    h.store.beforeUpdate = async (record, expectVersion, n) => {
      if (n !== 0) return undefined;
      // Our freeze lands (v2), then director B resumes it (v3), and the watch brings B's write before our answer.
      const ours = await h.store.inner.update(record, expectVersion);
      const theirs = { ...record, version: 3n, state: SessionState.ATTACHED, director: 'director-b' };
      expect((await h.store.inner.update(theirs, 2n)).ok).toBe(true);
      h.core.applyRemote({ id: ID, owner, version: 3n, incarnation: record.incarnation, state: SessionState.ATTACHED, transport: null, expiresAt: h.clock.now() + 60_000 }, h.clock.now());
      return ours;
    };
    const r = await h.own.step(rec, LifecycleEvent.FREEZE, { cause: 'test', actor: 'op' });
    expect(r).toMatchObject({ ok: true, note: { event: 'freeze', fromVersion: 1n, toVersion: 2n } });
    expect(rec).toMatchObject({ version: 3n, state: SessionState.ATTACHED, pending: null });
    expect(h.auditLines(ID).map((l) => [l.event, l.to_version])).toEqual([['create', '1'], ['freeze', '2']]);
    // It is served on: a datagram from its transport goes to its owner.
    expect(h.client(packet(PacketType.DATA, SID, 1), A)).toMatchObject({ kind: 'forward', flags: 0, version: 3n });
  });

  it('a BIND from a non-owner → drop with security bind_from_non_owner, nothing changes', async () => {
    const h = harness();
    const rec = await h.admit(SID, A);
    h.client(packet(PacketType.DATA, SID, 1), B);
    const intruder = other(rec.owner);
    const out = h.core.onNode(intruder, encodeBind(SID, 1n, B), h.clock.now());
    expect(out).toMatchObject({ kind: 'drop', reason: 'node_not_owner', security: 'bind_from_non_owner', session: ID });
    if (out.kind === 'drop' && out.security !== undefined) h.own.security(out.session ?? null, out.security, intruder);
    expect(h.auditLines(ID).at(-1)).toMatchObject({ event: 'SECURITY_EVENT', cause: 'bind_from_non_owner', actor: intruder });
    expect(h.stats.securityEvents.get('bind_from_non_owner')).toBe(1);
    expect(rec).toMatchObject({ version: 1n, transportKey: transportKey(A) });
    expect(await h.store.record(ID)).toMatchObject({ version: 1n, transport: transportKey(A) });
  });

  it('store unavailable at reattach → REJECT STORE_UNAVAILABLE to the candidate, nothing changes', async () => {
    const { h, rec, bind } = await boundToA();
    h.mem.setUnavailable(true);
    const r = await h.own.reattach(bind.session, bind.candidate, bind.version);
    expect(r).toMatchObject({ ok: false, reason: 'unavailable' });
    expect(h.path.candidateRejects).toEqual([{ session: ID, transport: transportKey(B), reason: RejectReason.STORE_UNAVAILABLE }]);
    expect(rec).toMatchObject({ version: 1n, transportKey: transportKey(A), pending: null });
    expect(h.auditLines(ID).at(-1)).toMatchObject({ event: 'SECURITY_EVENT', cause: 'reattach_aborted' });
  });

  it('packets from the bound transport held during the reattach CAS are not stranded', async () => {
    const { h, rec, bind } = await boundToA();
    h.store.beforeUpdate = () => {
      expect(h.client(packet(PacketType.DATA, SID, 40), A).kind).toBe('hold');
    };
    const before = h.path.forwards.length;
    expect(await h.own.reattach(bind.session, bind.candidate, bind.version)).toMatchObject({ ok: true });
    h.store.beforeUpdate = null;
    h.client(packet(PacketType.DATA, SID, 41), B);
    // The one held from A goes on as A's (no longer the bound transport: unbound), not as B's.
    expect(h.path.forwards.slice(before).map((f) => [counterOf(f.msg), f.version, f.flags, f.src])).toEqual([
      [40, 2n, PP2_FLAG.UNBOUND_SOURCE, transportKey(A)],
      [41, 2n, 0, transportKey(B)],
    ]);
  });

  it('a CLOSE from the old transport held during the reattach CAS does not end the session now bound to the new one', async () => {
    const { h, rec, bind } = await boundToA();
    h.store.beforeUpdate = () => {
      h.store.beforeUpdate = null;
      expect(h.client(packet(PacketType.DATA, SID, 50), A).kind).toBe('hold');
      expect(h.client(packet(PacketType.CLOSE, SID, 51), A).kind).toBe('hold');
    };
    const before = h.path.forwards.length;
    expect(await h.own.reattach(bind.session, bind.candidate, bind.version)).toMatchObject({ ok: true });
    expect(h.path.forwards.slice(before).map((f) => [counterOf(f.msg), f.flags, f.src])).toEqual([
      [50, PP2_FLAG.UNBOUND_SOURCE, transportKey(A)],
      [51, PP2_FLAG.UNBOUND_SOURCE, transportKey(A)],
    ]);
    expect(h.core.table.holds(rec)).toBe(true);
    expect(rec).toMatchObject({ transport: B, state: SessionState.ATTACHED, heldFrom: null, held: null });
    expect(h.auditLines(rec.id).map((l) => l.event)).toEqual(['create', 'reattach']);
  });

  it('packets held while frozen from the bound transport are released as its own (bound, REPLAYED), the CLOSE among them ending the session', async () => {
    const h = harness();
    const rec = await h.admit(SID, A);
    h.store.beforeUpdate = () => {
      h.store.beforeUpdate = null;
      expect(h.client(packet(PacketType.DATA, SID, 60), A).kind).toBe('hold');
    };
    expect((await h.own.step(rec, LifecycleEvent.FREEZE, { cause: 'test', actor: 'test' })).ok).toBe(true);
    expect(h.client(packet(PacketType.CLOSE, SID, 61), A).kind).toBe('hold');
    expect((await h.own.step(rec, LifecycleEvent.RESUME, { cause: 'test', actor: 'test' })).ok).toBe(true);
    const released = h.core.release(rec, h.clock.now(), true);
    expect(released.map((f) => [counterOf(f.msg), f.flags, transportKey(f.src), f.transition?.event ?? null])).toEqual([
      [60, PP2_FLAG.REPLAYED, transportKey(A), null],
      [61, PP2_FLAG.REPLAYED, transportKey(A), LifecycleEvent.CLOSE],
    ]);
    expect(h.core.table.holds(rec)).toBe(false);
  });
});

describe('replies during a reattach', () => {
  it('node replies that arrive while the reattach CAS is in flight go to the transport that wins', async () => {
    const { h, rec, bind } = await boundToA();
    h.store.beforeUpdate = () => {
      // The echo the node sends right after its BIND: held, not relayed to the old transport.
      expect(h.core.onNode(rec.owner, packet(PacketType.DATA, SID, 7), h.clock.now()).kind).toBe('held-reply');
    };
    expect(await h.own.reattach(bind.session, bind.candidate, bind.version)).toMatchObject({ ok: true });
    h.store.beforeUpdate = null;
    expect(h.path.heldRelays).toEqual([{ session: rec.id, transport: rec.transportKey, replies: 1 }]);
    expect(rec.transport).toEqual(B);
    // Afterwards replies flow as usual.
    expect(h.core.onNode(rec.owner, packet(PacketType.DATA, SID, 8), h.clock.now()).kind).toBe('relay');
  });

  it('the owner\'s CLOSE while the reattach CAS is in flight is held after its replies: all go to the transport that wins, then the session ends', async () => {
    for (const wins of [true, false]) {
      const h = harness();
      const rec = await h.admit(SID, A);
      h.client(packet(PacketType.DATA, SID, 1), B);
      const bind = h.core.onNode(rec.owner, encodeBind(SID, 1n, B), h.clock.now());
      if (bind.kind !== 'bind') throw new Error(bind.kind);
      let relayedWhileLive: boolean | null = null;
      const relay = h.path.relayHeld.bind(h.path);
      h.path.relayHeld = (r, replies) => {
        relayedWhileLive = h.core.table.holds(r);
        relay(r, replies);
      };
      h.store.beforeUpdate = () => {
        h.store.beforeUpdate = null;
        expect(h.core.onNode(rec.owner, packet(PacketType.DATA, SID, 7), h.clock.now()).kind).toBe('held-reply');
        expect(h.core.onNode(rec.owner, packet(PacketType.CLOSE, SID, 8), h.clock.now()).kind).toBe('held-reply');
        return wins ? undefined : { ok: false, reason: 'conflict', current: null };
      };
      await h.own.reattach(bind.session, bind.candidate, bind.version);
      // The DATA then the CLOSE, to B if the reattach won, to A if it lost; relayed while the session still was.
      expect(h.path.heldRelays).toEqual([{ session: rec.id, transport: transportKey(wins ? B : A), replies: 2 }]);
      expect(relayedWhileLive).toBe(true);
      expect(h.core.table.holds(rec)).toBe(false);
      expect(h.auditLines(rec.id).at(-1)).toMatchObject({ event: 'close', cause: 'node_close' });
    }
  });
});

// ------------------------------------------------------------------------------------------ property
type Cmd =
  | { readonly k: 'data'; readonly n: number }
  | {
      readonly k: 'migrate';
      /** Index into NODES, or null for the ring's choice. */
      readonly to: number | null;
      /** Client packets injected while each CAS of this migration is in flight. */
      readonly inject: readonly number[];
      /** Which CAS of this migration fails (0 freeze, 1 transfer, 2 resume), if any. */
      readonly fail: number | null;
      readonly failKind: 'unavailable' | 'conflict';
    }
  | { readonly k: 'race' };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  fc.record({ k: fc.constant('data' as const), n: fc.integer({ min: 0, max: 3 }) }),
  fc.record({
    k: fc.constant('migrate' as const),
    to: fc.option(fc.integer({ min: 0, max: 2 }), { nil: null }),
    inject: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 3, maxLength: 4 }),
    fail: fc.option(fc.integer({ min: 0, max: 2 }), { nil: null, freq: 2 }),
    failKind: fc.constantFrom('unavailable' as const, 'conflict' as const),
  }),
  fc.constant({ k: 'race' as const }),
);

describe('property: interleavings of client packets and migrations among 3 nodes', () => {
  it('store and table versions agree and never decrease; forwards are ordered by (version, seq); one owner per version', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 25 }), async (cmds) => {
        const h = makeHarness({ ring, limits: { holdMax: 8 } });
        try {
          const ownerAt = new Map<bigint, string>();
          h.mem.watch((ev) => {
            if (ev.kind === 'put') ownerAt.set(ev.record.version, ev.record.owner);
          });
          const rec = await h.admit(SID, A);
          let counter = 1;
          const send = (n: number): void => {
            for (let i = 0; i < n; i++) h.client(packet(PacketType.DATA, SID, counter++), A);
          };
          let lastStore = 1n;
          let lastTable = 1n;
          let transfers = 0;
          let migration: { inject: readonly number[]; fail: number | null; failKind: 'unavailable' | 'conflict'; n: number } | null = null;
          h.store.beforeUpdate = async (_record, _expect) => {
            const m = migration;
            if (m === null) return undefined;
            const i = m.n++;
            send(m.inject[i] ?? 0);
            if (m.fail === i) {
              if (m.failKind === 'unavailable') return unavailable();
              return { ok: false, reason: 'conflict', current: await h.store.record(ID) };
            }
            return undefined;
          };

          const check = async (where: string): Promise<void> => {
            const s = await h.store.record(ID);
            expect(s, where).not.toBeNull();
            expect(h.core.table.get(ID), where).toBe(rec);
            expect(rec.pending, where).toBeNull();
            expect(s!.version, where).toBe(rec.version);
            expect(s!.owner, where).toBe(rec.owner);
            expect(s!.state, where).toBe(rec.state);
            expect(s!.version >= lastStore, where).toBe(true);
            expect(rec.version >= lastTable, where).toBe(true);
            lastStore = s!.version;
            lastTable = rec.version;
          };

          for (const [i, cmd] of cmds.entries()) {
            const where = `cmd ${i} ${JSON.stringify(cmd)}`;
            if (cmd.k === 'data') send(cmd.n);
            else if (cmd.k === 'migrate') {
              migration = { inject: cmd.inject, fail: cmd.fail, failKind: cmd.failKind, n: 0 };
              const from = rec.owner;
              const r = await h.own.migrate(ID, { ...(cmd.to !== null ? { to: NODES[cmd.to] } : {}), cause: 'migrate', actor: 'prop' });
              migration = null;
              if (r.ok) {
                transfers++;
                expect(r.from, where).toBe(from);
                expect(r.to, where).not.toBe(from);
                expect(r.version, where).toBe(rec.version);
                expect(rec.state, where).toBe('ATTACHED');
              } else if (cmd.to !== null && NODES[cmd.to] === from) {
                expect(r.reason, where).toBe('bad_target');
              }
            } else {
              const [a, b] = await Promise.all([
                h.own.migrate(ID, { cause: 'migrate', actor: 'prop' }),
                h.own.migrate(ID, { cause: 'migrate', actor: 'prop' }),
              ]);
              expect(a.ok && b.ok, where).toBe(false);
              if (a.ok) transfers++;
            }
            await check(where);
          }

          // Every forward: seq strictly increasing, version non-decreasing, sent to the owner of its version.
          const fwd = h.path.forwards;
          for (let j = 1; j < fwd.length; j++) {
            expect(fwd[j]!.seq).toBeGreaterThan(fwd[j - 1]!.seq);
            expect(fwd[j]!.version >= fwd[j - 1]!.version).toBe(true);
          }
          for (const f of fwd) expect(f.node).toBe(ownerAt.get(f.version));
          // Client packets reach a node in the order the client sent them (some may be dropped, none reordered).
          const order = fwd.filter((f) => f.type === PacketType.DATA).map((f) => counterOf(f.msg));
          for (let j = 1; j < order.length; j++) expect(order[j]!).toBeGreaterThan(order[j - 1]!);
          // One REVOKE per completed transfer, naming the version the session left the old owner at.
          expect(h.path.revokes.length).toBeGreaterThanOrEqual(transfers);
          for (const r of h.path.revokes) {
            expect(ownerAt.get(r.version)).not.toBe(r.node);
            expect(ownerAt.get(r.version - 1n)).toBe(r.node);
          }
        } finally {
          h.own.close();
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('a node CLOSE while a transition is in flight', () => {
  it('is relayed at once and ends the session when the transition settles (audited as node_close, deleted from the store); the migration finds it gone', async () => {
    const h = harness();
    const rec = await h.admit(counterId(41), clientTransport(41));
    const owner = rec.owner;
    const to = NODES.find((n) => n !== owner) as string;
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    h.store.beforeUpdate = async () => {
      await gate;
    };
    const migration = h.own.migrate(rec.id, { to, cause: 'test', actor: 'op' });
    await waitFor('the freeze in flight', () => rec.pending !== null || undefined);
    const close = h.core.onNode(owner, encodeJv1(PacketType.CLOSE, rec.idBytes, new Uint8Array(0)), h.clock.now());
    expect(close).toMatchObject({ kind: 'relay', transition: null });
    expect(h.core.table.get(rec.id)).toBe(rec); // not yet: the freeze's write is out
    open();
    const r = await migration;
    expect(r.ok).toBe(false);
    expect(h.core.table.get(rec.id)).toBeUndefined();
    expect(h.auditLines(rec.id).map((l) => `${l.event}:${l.cause}`)).toEqual(['create:hello', 'freeze:test', 'close:node_close']);
    expect(h.auditLines(rec.id).at(-1)).toMatchObject({ actor: owner, from_owner: owner });
    await waitFor('deleted from the store', async () => ((await h.store.get(rec.id)) as { record: unknown }).record === null || undefined);
  });

  it('a CLOSE with no transition in flight ends the session at once, as before', async () => {
    const h = harness();
    const rec = await h.admit(counterId(42), clientTransport(42));
    const close = h.core.onNode(rec.owner, encodeJv1(PacketType.CLOSE, rec.idBytes, new Uint8Array(0)), h.clock.now());
    expect(close.kind).toBe('relay');
    expect((close as { transition: unknown }).transition).toMatchObject({ cause: 'node_close' });
    expect(rec.closedBy).toBeNull();
  });
});
