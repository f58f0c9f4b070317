import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseQuarantineFile, PortQuarantine, quarantineFileText } from '../../src/net/port-quarantine.js';

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

  it('a restart holds what the stopped run held, for what was left of each hold', () => {
    const before = new PortQuarantine(1000);
    before.release('a', 1, 100);
    before.release('b', 2, 400);
    before.release('a', 3, 700);
    // Written at monotonic 900 (wall 50,000); read at wall 50,200 by a run whose monotonic clock says 10.
    const text = quarantineFileText(before.heldEntries(900), 50_000, 'd1');
    const entries = parseQuarantineFile(text, 50_200, new Set(['a', 'b']), 'd1');
    expect(entries.map((e) => [e.node, e.port, e.ageMs]).sort()).toEqual([
      ['a', 1, 1000],
      ['a', 3, 400],
      ['b', 2, 700],
    ]);
    const after = new PortQuarantine(1000);
    after.restore(entries, 10);
    expect(after.held('a', 1, 10)).toBe(false); // its hold ended while no director ran
    expect(after.held('b', 2, 10)).toBe(true);
    expect(after.held('b', 2, 309)).toBe(true);
    expect(after.held('b', 2, 310)).toBe(false);
    expect(after.held('a', 3, 609)).toBe(true);
    expect(after.held('a', 3, 610)).toBe(false);
    // Restored out of order, each node's map is still in release order: pruning finds the expired.
    expect(after.size(310)).toBe(1);
    expect(after.size(610)).toBe(0);
  });

  it('restore: of a pair given twice, the younger entry decides how long it is held', () => {
    for (const order of [
      [200, 50],
      [50, 200],
    ]) {
      const q = new PortQuarantine(1000);
      q.restore(order.map((ageMs) => ({ node: 'a', port: 1, ageMs })), 0);
      expect(q.held('a', 1, 949)).toBe(true);
      expect(q.held('a', 1, 950)).toBe(false);
      expect(q.size(0)).toBe(1);
    }
  });

  it('a quarantine file: nodes no longer configured are left out; a clock set back ages nothing; another director\'s file, or anything else, is refused by name', () => {
    const text = quarantineFileText([{ node: 'gone', port: 5, ageMs: 1 }, { node: 'a', port: 6, ageMs: 2 }], 1000, 'd1');
    expect(parseQuarantineFile(text, 500, new Set(['a']), 'd1')).toEqual([{ node: 'a', port: 6, ageMs: 2 }]);
    expect(() => parseQuarantineFile(text, 500, new Set(['a']), 'd2')).toThrow('written by director "d1", not by this one ("d2"): give each director a file of its own');
    const bad: [string, RegExp][] = [
      ['{', /not JSON/],
      ['[]', /version 1/],
      ['{"anchor_port_quarantine":2,"written_at":1,"ports":[]}', /version 1/],
      ['{"anchor_port_quarantine":1,"written_at":1,"ports":[]}', /written by director null/],
      ['{"anchor_port_quarantine":1,"director":"d1","written_at":"x","ports":[]}', /written_at/],
      ['{"anchor_port_quarantine":1,"director":"d1","written_at":1,"ports":{}}', /ports: expected a list/],
      ['{"anchor_port_quarantine":1,"director":"d1","written_at":1,"ports":[["a",0,1]]}', /ports\[0\]/],
      ['{"anchor_port_quarantine":1,"director":"d1","written_at":1,"ports":[["a",1,1],["a",65536,1]]}', /ports\[1\]/],
      ['{"anchor_port_quarantine":1,"director":"d1","written_at":1,"ports":[["a",1,-1]]}', /ports\[0\]/],
      ['{"anchor_port_quarantine":1,"director":"d1","written_at":1,"ports":[[1,1,1]]}', /ports\[0\]/],
    ];
    for (const [t, why] of bad) expect(() => parseQuarantineFile(t, 0, new Set(['a']), 'd1'), t).toThrow(why);
  });

  it('property: restore(heldEntries), in any order, gives the same answers at every later time', () => {
    const op = fc.record({ node: fc.constantFrom('a', 'b'), port: fc.integer({ min: 1, max: 5 }), dt: fc.integer({ min: 0, max: 30 }) });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100 }), fc.array(op, { maxLength: 40 }), (hold, ops) => {
        const q = new PortQuarantine(hold);
        let now = 0;
        for (const o of ops) q.release(o.node, o.port, (now += o.dt));
        const r = new PortQuarantine(hold);
        r.restore(q.heldEntries(now).reverse(), 1000); // in any order
        for (let t = 0; t <= 100; t += 7) {
          for (const node of ['a', 'b']) for (let port = 1; port <= 5; port++) expect(r.held(node, port, 1000 + t)).toBe(q.held(node, port, now + t));
          expect(r.size(1000 + t)).toBe(q.size(now + t));
        }
      }),
    );
  });
});
