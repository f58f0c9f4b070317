// Sessions mirrored from other directors (a shared store): applied without publishing, never expired by a
// director that does not serve them, newer versions only.
import { beforeAll, describe, expect, it } from 'vitest';
import { DirectorCore, type CoreLimits } from '../../src/director/core.js';
import { encodeJv1 } from '../../src/codec/jv1.js';
import { PacketType, type Transport } from '../../src/codec/types.js';
import { createHasher } from '../../src/ring/hash.js';
import { buildRing, type Ring } from '../../src/ring/ring.js';

const LIMITS: CoreLimits = { sessionMax: 100, idleTtlMs: 1000, tombstoneMs: 5000, admissionRate: 1000, admissionBurst: 1000, rejectRate: 1000, rejectBurst: 1000, holdMax: 8 };
const ID = 'ab'.repeat(16);
const T: Transport = { family: 4, address: '198.51.100.7', port: 40000 };
const KEY = '198.51.100.7:40000';
let ring: Ring;
beforeAll(async () => {
  ring = buildRing(await createHasher(), [{ id: 'n1', weight: 1 }, { id: 'n2', weight: 1 }]);
});
const remote = (version: bigint, owner = 'n1', state: 'ATTACHED' | 'FROZEN' | 'TERMINATED' = 'ATTACHED') => ({ id: ID, owner, version, state, transport: { t: T, key: KEY, listener: 0 } });

describe('DirectorCore.applyRemote', () => {
  it('mirrors a session another director admitted, and never expires it here until it is served here', () => {
    const core = new DirectorCore(LIMITS, ring);
    expect(core.applyRemote(remote(1n), 0).kind).toBe('created');
    expect(core.sweep(5000)).toEqual([]);
    expect(core.table.get(ID)).toBeDefined();
    // A packet arriving long after the TTL is not an expiry here either: the serving director decides.
    const out = core.onClient(encodeJv1(PacketType.DATA, Buffer.from(ID, 'hex'), Buffer.alloc(8)), T, KEY, 0, 6000);
    expect(out.kind).toBe('forward');
    // Now it is served here: idle past the TTL, it expires here.
    const expired = core.sweep(6000 + LIMITS.idleTtlMs);
    expect(expired.map((e) => e.session.id)).toEqual([ID]);
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
});
