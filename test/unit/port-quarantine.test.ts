import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PortQuarantine } from '../../src/net/port-quarantine.js';

describe('PortQuarantine', () => {
  it('holds a released port toward its node for holdMs, not toward other nodes', () => {
    const q = new PortQuarantine(1000);
    q.release('a', 40000, 5000);
    expect(q.held('a', 40000, 5000)).toBe(true);
    expect(q.held('a', 40000, 5999)).toBe(true);
    expect(q.held('a', 40000, 6000)).toBe(false);
    expect(q.held('b', 40000, 5000)).toBe(false);
    expect(q.held('a', 40001, 5000)).toBe(false);
  });

  it('a second release of a port starts its hold again', () => {
    const q = new PortQuarantine(1000);
    q.release('a', 1, 0);
    q.release('a', 2, 500);
    q.release('a', 1, 900);
    // Port 2 expires first: pruning at the front must not stop at port 1's old place.
    expect(q.size(1600)).toBe(1);
    expect(q.held('a', 1, 1899)).toBe(true);
    expect(q.held('a', 2, 1600)).toBe(false);
  });

  it('size drops expired entries and forgets nodes with none', () => {
    const q = new PortQuarantine(100);
    q.release('a', 1, 0);
    q.release('b', 1, 50);
    expect(q.size(50)).toBe(2);
    expect(q.size(100)).toBe(1);
    expect(q.size(150)).toBe(0);
  });

  it('holdMs 0 holds nothing; a negative or NaN hold is refused', () => {
    const q = new PortQuarantine(0);
    q.release('a', 1, 0);
    expect(q.held('a', 1, 0)).toBe(false);
    expect(q.size(0)).toBe(0);
    expect(() => new PortQuarantine(-1)).toThrow(/holdMs/);
    expect(() => new PortQuarantine(Number.NaN)).toThrow(/holdMs/);
  });

  it('property: held(node, port, t) iff that pair was last released within holdMs before t', () => {
    const op = fc.record({ node: fc.constantFrom('a', 'b', 'c'), port: fc.integer({ min: 1, max: 6 }), dt: fc.integer({ min: 0, max: 40 }) });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100 }), fc.array(op, { maxLength: 60 }), fc.integer({ min: 0, max: 200 }), (hold, ops, probeDt) => {
        const q = new PortQuarantine(hold);
        const last = new Map<string, number>();
        let now = 0;
        for (const o of ops) {
          now += o.dt;
          q.release(o.node, o.port, now);
          last.set(`${o.node}:${o.port}`, now);
        }
        const t = now + probeDt;
        let live = 0;
        for (const node of ['a', 'b', 'c']) {
          for (let port = 1; port <= 6; port++) {
            const at = last.get(`${node}:${port}`);
            const want = at !== undefined && t - at < hold;
            if (want) live++;
            expect(q.held(node, port, t)).toBe(want);
          }
        }
        expect(q.size(t)).toBe(live);
      }),
    );
  });
});
