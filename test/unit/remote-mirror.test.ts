// Sessions mirrored from other directors (a shared store): applied without publishing, newer versions
// only; a director that does not serve a session expires it by the store's expiry plus a grace, which the
// serving director's refreshes move.
import { beforeAll, describe, expect, it } from 'vitest';
import { DirectorCore, type CoreLimits, SEQ_PER_MS, sequenceBase } from '../../src/director/core.js';
import { encodeJv1 } from '../../src/codec/jv1.js';
import { PacketType, RejectReason, type Transport } from '../../src/codec/types.js';
import { createHasher } from '../../src/ring/hash.js';
import { buildRing, type Ring } from '../../src/ring/ring.js';
import { TCP_LISTENER } from '../../src/director/outcomes.js';
import { PP2_FLAG } from '../../src/codec/ppv2.js';

const LIMITS: CoreLimits = {
  sessionMax: 100,
  idleTtlMs: 1000,
  tombstoneMs: 5000,
  admissionRate: 1000,
  admissionBurst: 1000,
  rejectRate: 1000,
  rejectBurst: 1000,
  holdMax: 8,
  sharedExpiryGraceMs: 500,
};
const ID = 'ab'.repeat(16);
const T: Transport = { family: 4, address: '198.51.100.7', port: 40000 };
const KEY = '198.51.100.7:40000';
let ring: Ring;
beforeAll(async () => {
  ring = buildRing(await createHasher(), [{ id: 'n1', weight: 1 }, { id: 'n2', weight: 1 }]);
});
const remote = (version: bigint, owner = 'n1', state: 'ATTACHED' | 'FROZEN' | 'TERMINATED' = 'ATTACHED', expiresAt = 1000) => ({
  id: ID,
  owner,
  version,
  incarnation: 1,
  state,
  transport: { t: T, key: KEY, listener: 0 },
  expiresAt,
});

describe('DirectorCore.applyRemote', () => {
  it('a mirrored session expires here at the store\'s expiry plus the grace, which refreshes move; once served here, by its own traffic', () => {
    const core = new DirectorCore(LIMITS, ring);
    expect(core.applyRemote(remote(1n, 'n1', 'ATTACHED', 1000), 0).kind).toBe('created');
    expect(core.table.get(ID)).toMatchObject({ servedHere: false, storeExpiresAt: 1000, expiresAt: 1500 });
    expect(core.dueIdle(1499)).toEqual([]);
    // The serving director refreshed the store's expiry (same version): only the deadline moves.
    expect(core.applyRemote(remote(1n, 'n1', 'ATTACHED', 3000), 1400)).toMatchObject({ kind: 'refreshed' });
    expect(core.applyRemote(remote(1n, 'n1', 'ATTACHED', 2000), 1400).kind).toBe('ignored'); // never earlier
    expect(core.table.get(ID)).toMatchObject({ version: 1n, storeExpiresAt: 3000, expiresAt: 3500 });
    expect(core.dueIdle(3499)).toEqual([]);
    expect(core.dueIdle(3500).map((r) => r.id)).toEqual([ID]);
    // dueIdle ends nothing: the caller ends it in the store first. A packet served here makes it ours.
    const out = core.onClient(encodeJv1(PacketType.DATA, Buffer.from(ID, 'hex'), Buffer.alloc(8)), T, KEY, 0, 3400);
    expect(out.kind).toBe('forward');
    expect(core.table.get(ID)).toMatchObject({ servedHere: true, expiresAt: 3400 + LIMITS.idleTtlMs });
    expect(core.sweep(4399)).toEqual([]);
    // (dueIdle above handed it out once: the table looks at it again a second later at most.)
    expect(core.sweep(4500).map((e) => e.session.id)).toEqual([ID]);
  });

  it('a session served here does not expire while the store holds a later expiry (another director saw its traffic)', () => {
    const core = new DirectorCore(LIMITS, ring);
    core.applyRemote(remote(1n, 'n1', 'ATTACHED', 1000), 0);
    core.onClient(encodeJv1(PacketType.DATA, Buffer.from(ID, 'hex'), Buffer.alloc(8)), T, KEY, 0, 100); // served here until 1100
    core.applyRemote(remote(1n, 'n1', 'ATTACHED', 5000), 200);
    expect(core.table.get(ID)).toMatchObject({ servedHere: true, expiresAt: 5000, storeExpiresAt: 5000 }); // no grace where served
    expect(core.dueIdle(4999)).toEqual([]);
    expect(core.dueIdle(5000).map((r) => r.id)).toEqual([ID]);
  });

  it('a session read back with a wildcard listener takes the listener of the host address its client sends to (the same socket): bound, not a jump', () => {
    const core = new DirectorCore(LIMITS, ring);
    // Listeners 0 and 1 configured; 3 and 4: host addresses met on wildcard listener 0.
    core.setListenerBase((i) => (i === 3 || i === 4 ? 0 : i));
    const data = () => encodeJv1(PacketType.DATA, Buffer.from(ID, 'hex'), Buffer.alloc(8));
    core.applyRemote(remote(1n), 0); // the store keeps no listener: the first of its family (0)
    const out = core.onClient(data(), T, KEY, 3, 10);
    expect(out.kind === 'forward' && (out.flags & PP2_FLAG.UNBOUND_SOURCE) === 0 && out.listener === 3).toBe(true);
    expect(core.table.get(ID)?.listener).toBe(3);
    // Another host address of that wildcard, or another configured listener: a jump (its 5-tuple changed).
    for (const other of [4, 1]) {
      const o = core.onClient(data(), T, KEY, other, 20);
      expect(o.kind === 'forward' && (o.flags & PP2_FLAG.UNBOUND_SOURCE) !== 0).toBe(true);
      expect(core.table.get(ID)?.listener).toBe(3);
    }
  });

  it('applies only newer versions: owner and state changes, a termination; never older news', () => {
    const core = new DirectorCore(LIMITS, ring);
    core.applyRemote(remote(1n), 0);
    expect(core.applyRemote(remote(1n, 'n2'), 1).kind).toBe('ignored');
    const moved = core.applyRemote(remote(3n, 'n2', 'FROZEN'), 2);
    expect(moved).toMatchObject({ kind: 'updated', note: { event: 'transfer', fromVersion: 1n, toVersion: 3n, fromOwner: 'n1', toOwner: 'n2' } });
    expect(core.table.get(ID)).toMatchObject({ owner: 'n2', version: 3n, state: 'FROZEN', formerOwner: 'n1' });
    expect(core.table.countByOwner('n2')).toBe(1);
    expect(core.applyRemote(remote(2n, 'n1'), 3).kind).toBe('ignored');
    expect(core.applyRemote(remote(5n, 'n2', 'TERMINATED'), 4).kind).toBe('ended');
    expect(core.table.get(ID)).toBeUndefined();
    expect(core.table.tombstoneUntil(ID, 5)).toBeDefined();
  });

  it('a session read from the store is numbered from the sequence base (above all an earlier run of this director sent), on every path; one admitted here from 1', () => {
    const base = sequenceBase(1_800_000_000_123);
    expect(base).toBe(1_800_000_000_123 * SEQ_PER_MS);
    const core = new DirectorCore({ ...LIMITS, seqBase: base }, ring);
    const data = () => encodeJv1(PacketType.DATA, Buffer.from(ID, 'hex'), Buffer.alloc(8));
    core.applyRemote(remote(1n), 0);
    // From its bound transport, then as a jump candidate, then a TCP connection naming it: one counter.
    const seqs: number[] = [];
    const bound = core.onClient(data(), T, KEY, 0, 10);
    if (bound.kind === 'forward') seqs.push(bound.seq);
    const cand = core.onClient(data(), { family: 4, address: '198.51.100.9', port: 1 }, '198.51.100.9:1', 0, 20);
    if (cand.kind === 'forward' && (cand.flags & PP2_FLAG.UNBOUND_SOURCE) !== 0) seqs.push(cand.seq);
    const tcp = core.onTcpPreamble(PacketType.DATA, Buffer.from(ID, 'hex'), { family: 4, address: '198.51.100.9', port: 2 }, '198.51.100.9:2', 20, 30);
    if (tcp.kind === 'reattach') seqs.push(tcp.seq);
    expect(seqs).toEqual([base + 1, base + 2, base + 3]);
    expect(core.table.get(ID)?.nextSeq).toBe(base + 4);
    // A session this director admits has no earlier counter anywhere: its own starts at 1.
    const other = 'cd'.repeat(16);
    const adm = core.onClient(encodeJv1(PacketType.HELLO, Buffer.from(other, 'hex'), Buffer.alloc(8)), T, KEY, 0, 40);
    expect(adm.kind).toBe('admit');
    const rec = core.table.get(other)!;
    expect(core.admitted(rec, 41).forwards.map((f) => f.seq)).toEqual([1]);
    // A clock far outside safe integers has no base (a RangeError, not a wrapped counter).
    expect(() => sequenceBase(2 ** 53 / SEQ_PER_MS)).toThrow(RangeError);
    expect(() => sequenceBase(-1)).toThrow(RangeError);
  });

  it('old news of a life that ended here (its tombstone stands) does not bring it back; a transition that beat its end, or a new life, does', () => {
    const pkt = (type: PacketType) => encodeJv1(type, Buffer.from(ID, 'hex'), Buffer.alloc(8));
    const endedHere = (): DirectorCore => {
      const core = new DirectorCore(LIMITS, ring);
      core.applyRemote(remote(3n, 'n1', 'ATTACHED', 1000), 0);
      expect(core.onClient(pkt(PacketType.CLOSE), T, KEY, 0, 10).kind).toBe('forward'); // ended here: version 4, its delete on its way
      expect(core.table.get(ID)).toBeUndefined();
      return core;
    };
    // Another director's refresh (the version the store still holds), or an older write, told late.
    const core = endedHere();
    expect(core.applyRemote(remote(3n, 'n1', 'ATTACHED', 5000), 20).kind).toBe('ignored');
    expect(core.applyRemote(remote(2n), 25).kind).toBe('ignored');
    expect(core.table.get(ID)).toBeUndefined();
    const again = core.onClient(pkt(PacketType.DATA), T, KEY, 0, 40);
    expect(again.kind === 'reject' && again.reason === RejectReason.SESSION_TERMINATED).toBe(true);
    // Admitted anew elsewhere (another life, version 1): mirrored.
    expect(core.applyRemote({ ...remote(1n), incarnation: 2 }, 50).kind).toBe('created');
    expect(core.onClient(pkt(PacketType.DATA), T, KEY, 0, 60).kind).toBe('forward');
    // A transition another director wrote from the version it ended at (our delete loses to it): it lives on.
    expect(endedHere().applyRemote(remote(4n, 'n2', 'FROZEN'), 20).kind).toBe('created');
    // Past the tombstone, news of any version is taken.
    expect(endedHere().applyRemote(remote(3n, 'n1', 'ATTACHED', 9000), 10 + LIMITS.tombstoneMs).kind).toBe('created');
  });

  it('a session bound to a TCP connection elsewhere: a datagram from the same ip:port is a jump candidate here, not its transport', () => {
    const core = new DirectorCore(LIMITS, ring);
    const data = () => encodeJv1(PacketType.DATA, Buffer.from(ID, 'hex'), Buffer.alloc(8));
    core.applyRemote({ ...remote(1n), transport: { t: T, key: KEY, listener: TCP_LISTENER } }, 0);
    expect(core.table.get(ID)?.listener).toBe(TCP_LISTENER);
    const out = core.onClient(data(), T, KEY, 0, 10);
    expect(out.kind).toBe('forward');
    if (out.kind === 'forward') expect(out.flags & PP2_FLAG.UNBOUND_SOURCE).toBe(PP2_FLAG.UNBOUND_SOURCE);
    // The session jumped to datagrams from that very ip:port (another director CASed it): now it is bound.
    expect(core.applyRemote(remote(2n), 20).kind).toBe('updated');
    expect(core.table.get(ID)).toMatchObject({ listener: 0, servedHere: false });
    const bound = core.onClient(data(), T, KEY, 0, 30);
    expect(bound.kind === 'forward' && (bound.flags & PP2_FLAG.UNBOUND_SOURCE) === 0).toBe(true);
  });

  it('a session served here that another director rebinds (the client jumped to it) is served there now, until a packet of it comes here again', () => {
    const core = new DirectorCore(LIMITS, ring);
    core.applyRemote(remote(1n), 0);
    core.onClient(encodeJv1(PacketType.DATA, Buffer.from(ID, 'hex'), Buffer.alloc(8)), T, KEY, 0, 10);
    expect(core.table.get(ID)?.servedHere).toBe(true);
    const elsewhere: Transport = { family: 4, address: '198.51.100.8', port: 5000 };
    core.applyRemote({ ...remote(2n), transport: { t: elsewhere, key: '198.51.100.8:5000', listener: 0 } }, 20);
    expect(core.table.get(ID)).toMatchObject({ servedHere: false, transport: elsewhere });
    // The same transport with news of another kind (a transfer) leaves it as it was.
    core.onClient(encodeJv1(PacketType.DATA, Buffer.from(ID, 'hex'), Buffer.alloc(8)), elsewhere, '198.51.100.8:5000', 0, 30);
    core.applyRemote({ ...remote(3n, 'n2'), transport: { t: elsewhere, key: '198.51.100.8:5000', listener: 0 } }, 40);
    expect(core.table.get(ID)).toMatchObject({ servedHere: true, owner: 'n2' });
  });

  it('a datagram session served here on a second listener of its family keeps that listener when another director changes it', () => {
    const core = new DirectorCore(LIMITS, ring);
    core.applyRemote(remote(1n), 0);
    core.table.get(ID)!.listener = 2; // as if bound here on the third listener (an IPv4 one, like the first)
    expect(core.applyRemote(remote(2n, 'n2'), 10).kind).toBe('updated'); // the store says listener 0: a guess by family
    expect(core.table.get(ID)).toMatchObject({ owner: 'n2', listener: 2 });
  });
});
