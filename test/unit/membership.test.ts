// Membership (src/nodes/membership.ts): which nodes take new sessions (the ring) and which are reached by
// the packets of existing ones, from their state and health — with health checks on, only healthy nodes
// take new sessions (DESIGN §4); without them, any node not known to be unhealthy.
import { beforeAll, describe, expect, it } from 'vitest';
import { createHasher, type Hasher } from '../../src/ring/hash.js';
import { eligible, Membership, NodeHealth, NodeState } from '../../src/nodes/membership.js';

let hasher: Hasher;
beforeAll(async () => {
  hasher = await createHasher();
});

const nodes = ['a', 'b', 'c'].map((id, i) => ({ id, address: { family: 4 as const, address: '127.0.0.1', port: 5000 + i }, weight: 1 }));
const ringIds = (m: Membership): string[] => m.ring.nodes.map((n) => n.id).sort();

describe('Membership', () => {
  it('health checks on: nodes not yet answered (unknown) are out of the ring, reached for existing sessions; healthy ones in', () => {
    const rings: string[][] = [];
    const m = new Membership(hasher, nodes, (r) => rings.push(r.nodes.map((n) => n.id).sort()), { healthChecked: true });
    expect(ringIds(m)).toEqual([]);
    expect(['a', 'b', 'c'].map((id) => m.reachable(id))).toEqual([true, true, true]);
    m.setHealth('a', NodeHealth.HEALTHY);
    m.setHealth('b', NodeHealth.HEALTHY);
    expect(ringIds(m)).toEqual(['a', 'b']);
    m.setHealth('b', NodeHealth.UNHEALTHY);
    expect(ringIds(m)).toEqual(['a']);
    expect(m.reachable('b')).toBe(false);
    m.setState('a', NodeState.DRAINING);
    expect(ringIds(m)).toEqual([]);
    expect(rings).toEqual([['a'], ['a', 'b'], ['a'], []]);
  });

  it('health checks off: every active node not known to be unhealthy is in the ring', () => {
    const m = new Membership(hasher, nodes);
    expect(ringIds(m)).toEqual(['a', 'b', 'c']);
    m.setHealth('c', NodeHealth.UNHEALTHY);
    m.setState('b', NodeState.DRAINING);
    expect(ringIds(m)).toEqual(['a']);
  });

  it('a change that leaves the nodes taking sessions as they were keeps the ring (the same object; no onRing)', () => {
    let calls = 0;
    const m = new Membership(hasher, nodes, () => calls++, { healthChecked: true });
    m.setHealth('a', NodeHealth.HEALTHY);
    const ring = m.ring;
    expect(calls).toBe(1);
    m.setHealth('b', NodeHealth.UNHEALTHY); // unknown → unhealthy: out of the ring either way
    m.setState('c', NodeState.DRAINING); // unknown and draining: out either way
    expect(m.ring).toBe(ring);
    expect(calls).toBe(1);
    const off = new Membership(hasher, nodes, () => calls++);
    const before = off.ring;
    off.setHealth('a', NodeHealth.HEALTHY); // without health checks unknown and healthy both take sessions
    expect(off.ring).toBe(before);
    expect(calls).toBe(1);
    off.setHealth('a', NodeHealth.UNHEALTHY);
    expect(ringIds(off)).toEqual(['b', 'c']);
    expect(calls).toBe(2);
  });

  it('eligible: active, not held out of placements and, when checked, healthy', () => {
    const n = (state: NodeState, health: NodeHealth, placementHeld: boolean) => ({ ...nodes[0]!, state, health, placementHeld });
    for (const state of [NodeState.ACTIVE, NodeState.DRAINING]) {
      for (const health of [NodeHealth.UNKNOWN, NodeHealth.HEALTHY, NodeHealth.UNHEALTHY]) {
        for (const held of [false, true]) {
          expect(eligible(n(state, health, held), true)).toBe(state === NodeState.ACTIVE && !held && health === NodeHealth.HEALTHY);
          expect(eligible(n(state, health, held), false)).toBe(state === NodeState.ACTIVE && !held && health !== NodeHealth.UNHEALTHY);
        }
      }
    }
  });

  it('a node held out of placements leaves the ring and comes back, its state unchanged', () => {
    let calls = 0;
    const m = new Membership(hasher, nodes, () => calls++);
    expect(m.setPlacementHeld('a', true)).toBe(true);
    expect(ringIds(m)).toEqual(['b', 'c']);
    expect(m.takesSessions('a')).toBe(false);
    expect(m.get('a')?.state).toBe(NodeState.ACTIVE);
    expect(m.setPlacementHeld('a', true)).toBe(false); // no change, no new ring
    expect(calls).toBe(1);
    expect(m.setPlacementHeld('a', false)).toBe(true);
    expect(ringIds(m)).toEqual(['a', 'b', 'c']);
    expect(m.takesSessions('a')).toBe(true);
    expect(calls).toBe(2);
    expect(m.setPlacementHeld('nope', true)).toBe(false);
  });
});
