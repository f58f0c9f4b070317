// SharedNodeStates: which shared node-state events a director applies, so that directors changing one node
// at once all end with the state the store committed last, and an echo of an older own write never undoes
// a newer local change.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SharedNodeStates, type SharedNodeValue } from '../../src/nodes/shared-states.js';
import { NodeState } from '../../src/nodes/membership.js';

const { ACTIVE, DRAINING } = NodeState;

describe('SharedNodeStates', () => {
  it('a drain on A and an undrain on B at once: both end with the write the store committed last (either order)', () => {
    for (const lastFirst of [false, true]) {
      const a = new SharedNodeStates('a', 'x');
      const b = new SharedNodeStates('b', 'y');
      let onA: NodeState = DRAINING; // applied locally when made
      let onB: NodeState = ACTIVE;
      const wa = a.wrote('n', DRAINING);
      const wb = b.wrote('n', ACTIVE);
      const log: SharedNodeValue[] = lastFirst ? [wb, wa] : [wa, wb];
      for (const v of log) {
        onA = a.event('n', { ...v }) ?? onA;
        onB = b.event('n', { ...v }) ?? onB;
      }
      const last = (log[1] as SharedNodeValue).state;
      expect([onA, onB]).toEqual([last, last]);
    }
  });

  it('the echo of an older own write does not undo a newer local change (drain, undrain, drain)', () => {
    const a = new SharedNodeStates('a', 'x');
    const w1 = a.wrote('n', DRAINING);
    const w2 = a.wrote('n', ACTIVE);
    const w3 = a.wrote('n', DRAINING);
    expect(a.event('n', { ...w1 })).toBeNull();
    expect(a.event('n', { ...w2 })).toBeNull();
    expect(a.inFlight('n')).toBe(true);
    expect(a.event('n', { ...w3 })).toBe(DRAINING);
    expect(a.inFlight('n')).toBe(false);
  });

  it('another director’s write committed before ours is passed over; one committed after it is applied', () => {
    const a = new SharedNodeStates('a', 'x');
    const mine = a.wrote('n', DRAINING);
    expect(a.event('n', { state: ACTIVE, director: 'b', write: 'y-1' })).toBeNull();
    expect(a.event('n', { ...mine })).toBe(DRAINING);
    expect(a.event('n', { state: ACTIVE, director: 'b', write: 'y-2' })).toBe(ACTIVE);
  });

  it('a write reported failed is no longer waited for; if the store committed it after all, its echo is applied in order', () => {
    const a = new SharedNodeStates('a', 'x');
    const w = a.wrote('n', DRAINING);
    a.failed('n', w);
    expect(a.inFlight('n')).toBe(false);
    expect(a.event('n', { state: ACTIVE, director: 'b', write: 'y-1' })).toBe(ACTIVE);
    expect(a.event('n', { ...w })).toBe(DRAINING);
  });

  it('entries a predecessor with the same director id wrote (no write of this process in flight) are applied; other nodes are independent', () => {
    const a = new SharedNodeStates('a', 'new');
    expect(a.event('n', { state: DRAINING, director: 'a', write: 'old-7' })).toBe(DRAINING);
    expect(a.event('n', { state: DRAINING, director: 'a' })).toBe(DRAINING); // written before writes were named
    a.wrote('m', ACTIVE);
    expect(a.event('n', { state: ACTIVE, director: 'b', write: 'y-1' })).toBe(ACTIVE);
  });

  it('values that are not a node state are not applied, and do not settle anything', () => {
    const a = new SharedNodeStates('a', 'x');
    const w = a.wrote('n', DRAINING);
    expect(a.event('n', { state: 'gone', director: 'b' })).toBeNull();
    expect(a.event('n', { director: 'a', write: 'x-99', state: DRAINING })).toBeNull(); // not ours in flight: n still waits for w
    expect(a.inFlight('n')).toBe(true);
    expect(a.event('n', { ...w })).toBe(DRAINING);
  });

  // The store as a serial log: directors change the node locally and write; writes commit (or fail, some
  // committed anyway) in any order; each director is delivered the log in order at its own pace. Once
  // everything is committed and delivered, every director holds the state committed last — and no
  // director ever applies an event while one of its own writes is in flight.
  it('property: any interleaving of local changes, commits, failures and deliveries converges on the last committed state', () => {
    type Op =
      | { op: 'set'; d: number; state: NodeState }
      | { op: 'commit'; i: number }
      | { op: 'fail'; i: number; committed: boolean }
      | { op: 'deliver'; d: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ op: fc.constant('set' as const), d: fc.nat(2), state: fc.constantFrom(ACTIVE, DRAINING) }),
      fc.record({ op: fc.constant('commit' as const), i: fc.nat(5) }),
      fc.record({ op: fc.constant('fail' as const), i: fc.nat(5), committed: fc.boolean() }),
      fc.record({ op: fc.constant('deliver' as const), d: fc.nat(2) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), fc.array(fc.nat(5), { maxLength: 20 }), (ops, finalOrder) => {
        const dirs = [0, 1, 2].map((d) => ({ sns: new SharedNodeStates(`d${d}`, `i${d}`), local: ACTIVE as NodeState, delivered: 0, refusedSince: false }));
        const inFlight: { d: number; v: SharedNodeValue }[] = [];
        const log: SharedNodeValue[] = [];
        const deliver = (d: number): void => {
          const dir = dirs[d]!;
          const v = log[dir.delivered++]!;
          const waiting = dir.sns.inFlight('n');
          const s = dir.sns.event('n', { ...v });
          if (waiting && dir.sns.inFlight('n')) expect(s).toBeNull();
          if (s !== null) {
            dir.local = s;
            dir.refusedSince = false;
          }
        };
        for (const o of ops) {
          if (o.op === 'set') {
            dirs[o.d]!.local = o.state;
            dirs[o.d]!.refusedSince = false;
            inFlight.push({ d: o.d, v: dirs[o.d]!.sns.wrote('n', o.state) });
          } else if (o.op === 'commit' && inFlight.length > 0) {
            log.push(inFlight.splice(o.i % inFlight.length, 1)[0]!.v);
          } else if (o.op === 'fail' && inFlight.length > 0) {
            const w = inFlight.splice(o.i % inFlight.length, 1)[0]!;
            dirs[w.d]!.sns.failed('n', w.v);
            // Refused outright: only that director holds the state (warned) until it applies a later write.
            if (o.committed) log.push(w.v);
            else dirs[w.d]!.refusedSince = true;
          } else if (o.op === 'deliver' && dirs[o.d]!.delivered < log.length) {
            deliver(o.d);
          }
        }
        for (const i of finalOrder) if (inFlight.length > 0) log.push(inFlight.splice(i % inFlight.length, 1)[0]!.v);
        while (inFlight.length > 0) log.push(inFlight.shift()!.v);
        for (let d = 0; d < dirs.length; d++) while (dirs[d]!.delivered < log.length) deliver(d);
        if (log.length === 0) return;
        const last = log[log.length - 1]!.state;
        for (const dir of dirs) if (!dir.refusedSince) expect(dir.local).toBe(last);
        for (const dir of dirs) expect(dir.sns.inFlight('n')).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });
});
