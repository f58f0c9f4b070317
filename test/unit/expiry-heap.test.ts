// ExpiryHeap, the session table's expiry order over row numbers, each row's place kept in the caller's
// position column (`heapPos`, -1 for none, read through on every call so the caller may replace it):
// a row in the heap at most once (a second push is refused), exact removal by row that resets the row's
// position, retop, growth and shrinking, and a model check (random push / remove / retop against a plain
// list scanned for its minimum), with every row's recorded position checked after each step.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ExpiryHeap } from '../../src/session/expiry-heap.js';

/** A position column for rows 0 .. n - 1, each in no heap (-1), as the caller must start it. */
const positions = (n: number): { heapPos: Int32Array } => ({ heapPos: new Int32Array(n).fill(-1) });

describe('ExpiryHeap', () => {
  it('gives the earliest deadline first, -1 and Infinity when empty', () => {
    const h = new ExpiryHeap(positions(4));
    expect(h.peek()).toBe(-1);
    expect(h.peekDeadline()).toBe(Infinity);
    expect(h.size).toBe(0);
    expect(h.push(1, 30)).toBe(true);
    expect(h.push(2, 10.5)).toBe(true);
    expect(h.push(3, 20)).toBe(true);
    expect(h.peek()).toBe(2);
    expect(h.peekDeadline()).toBe(10.5);
    h.retop(25); // 2 moves behind 3
    expect(h.peek()).toBe(3);
    expect(h.peekDeadline()).toBe(20);
    expect(h.size).toBe(3);
    h.retop(40); // 3 moves behind 2 and 1
    expect(h.peek()).toBe(2);
    expect(h.peekDeadline()).toBe(25);
    h.retop(1); // an earlier deadline keeps the top where it is
    expect(h.peek()).toBe(2);
    expect(h.peekDeadline()).toBe(1);
  });

  it('retop on an empty heap does nothing', () => {
    const p = positions(2);
    const h = new ExpiryHeap(p);
    h.retop(5);
    expect(h.size).toBe(0);
    expect(h.peek()).toBe(-1);
    expect([...p.heapPos]).toEqual([-1, -1]);
  });

  it('holds a row once; remove is exact and resets its position; a heap refuses a row it does not hold', () => {
    const p = positions(4);
    const h = new ExpiryHeap(p);
    const other = new ExpiryHeap(positions(4)); // another table's heap, its own rows
    expect(h.push(1, 5)).toBe(true);
    expect(h.has(1)).toBe(true);
    expect(p.heapPos[1]).toBe(0);
    expect(h.has(2)).toBe(false);
    expect(other.has(1)).toBe(false);
    expect(h.push(1, 1)).toBe(false); // a second push is refused and changes nothing
    expect(h.size).toBe(1);
    expect(h.peekDeadline()).toBe(5);
    expect(other.remove(1)).toBe(false);
    expect(h.remove(2)).toBe(false); // a row that is not in the heap
    expect(h.has(1)).toBe(true);
    expect(h.remove(1)).toBe(true);
    expect(p.heapPos[1]).toBe(-1);
    expect(h.has(1)).toBe(false);
    expect(h.remove(1)).toBe(false);
    expect(h.size).toBe(0);
    expect(h.push(1, 1)).toBe(true); // back in once it is out
    expect(h.peek()).toBe(1);
  });

  it('refuses a row whose position is not -1 (a column not started at -1 holds nothing)', () => {
    const p = { heapPos: new Int32Array(3) }; // zeros: every row looks placed
    const h = new ExpiryHeap(p);
    expect(h.push(0, 1)).toBe(false);
    expect(h.size).toBe(0);
    expect(h.has(0)).toBe(false); // position 0 of an empty heap is nobody's
    expect(h.remove(0)).toBe(false);
    p.heapPos[0] = -1;
    expect(h.push(0, 1)).toBe(true);
    expect(h.has(0)).toBe(true);
  });

  it('reads the position column through on every call: the caller may replace it by a bigger copy', () => {
    const p = positions(3);
    const h = new ExpiryHeap(p);
    for (const [r, d] of [[0, 30], [1, 10], [2, 20]] as const) h.push(r, d);
    const old = p.heapPos;
    const bigger = new Int32Array(6).fill(-1);
    bigger.set(old);
    p.heapPos = bigger;
    old.fill(-1); // nothing may still read (or write) the old array
    for (const [r, d] of [[3, 5], [4, 25], [5, 15]] as const) expect(h.push(r, d)).toBe(true);
    expect([...old]).toEqual([-1, -1, -1]);
    for (let r = 0; r < 6; r++) expect(h.has(r)).toBe(true);
    const order: number[] = [];
    while (h.size > 0) {
      const r = h.peek();
      order.push(r);
      expect(h.remove(r)).toBe(true);
      expect(p.heapPos[r]).toBe(-1);
    }
    expect(order).toEqual([3, 1, 5, 2, 4, 0]);
  });

  it('grows and shrinks its storage without losing a row', () => {
    const n = 5000;
    const deadline = (r: number): number => (r * 7919) % 5003;
    const p = positions(n);
    const h = new ExpiryHeap(p);
    for (let r = 0; r < n; r++) expect(h.push(r, deadline(r))).toBe(true);
    expect(h.size).toBe(n);
    for (let r = 0; r < n; r++) if (r % 5 !== 0) expect(h.remove(r)).toBe(true);
    expect(h.size).toBe(n / 5);
    const left: number[] = [];
    while (h.size > 0) {
      const r = h.peek();
      expect(deadline(r)).toBe(h.peekDeadline());
      left.push(h.peekDeadline());
      expect(h.remove(r)).toBe(true);
    }
    const kept = Array.from({ length: n }, (_, r) => r).filter((r) => r % 5 === 0);
    expect(left).toEqual(kept.map(deadline).sort((a, b) => a - b));
    expect(p.heapPos.every((x) => x === -1)).toBe(true);
  });

  it('room reserved up front is never given back; past it the heap grows and shrinks back to it; a reserve that is not a positive number is none', () => {
    const p = positions(3000);
    const h = new ExpiryHeap(p, 1000);
    expect(h.capacity).toBe(1000);
    for (let r = 0; r < 1000; r++) h.push(r, r);
    for (let r = 0; r < 990; r++) h.remove(r);
    expect(h.capacity).toBe(1000);
    for (let r = 1000; r < 3000; r++) h.push(r, r);
    expect(h.capacity).toBeGreaterThanOrEqual(2010);
    for (let r = 990; r < 3000; r++) h.remove(r);
    expect([h.size, h.capacity]).toEqual([0, 1000]);
    for (const bad of [Number.NaN, -1, -Infinity]) expect(new ExpiryHeap(positions(1), bad).capacity).toBe(16);
  });

  it('model: random push / remove / retop agree with a scanned list', () => {
    type Op = { op: 'push'; n: number; d: number } | { op: 'remove'; n: number } | { op: 'retop'; d: number };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ op: fc.constant('push' as const), n: fc.nat(40), d: fc.integer({ min: 0, max: 50 }) }),
      fc.record({ op: fc.constant('remove' as const), n: fc.nat(40) }),
      fc.record({ op: fc.constant('retop' as const), d: fc.double({ min: 0, max: 60, noNaN: true }) }),
    );
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 300 }), fc.constantFrom(0, 8, 20, 64), (ops, reserve) => {
        const ROWS = 41;
        const p = positions(ROWS);
        // With or without room reserved (the table reserves its rows' worth), below and above the rows used.
        const h = new ExpiryHeap(p, reserve);
        const model = new Map<number, number>(); // row → deadline
        for (const o of ops) {
          if (o.op === 'push') {
            expect(h.push(o.n, o.d)).toBe(!model.has(o.n));
            if (!model.has(o.n)) model.set(o.n, o.d);
          } else if (o.op === 'remove') {
            expect(h.remove(o.n)).toBe(model.delete(o.n));
          } else if (model.size > 0) {
            const top = h.peek();
            h.retop(o.d);
            model.set(top, o.d);
          }
          expect(h.size).toBe(model.size);
          const min = Math.min(...model.values());
          expect(h.peekDeadline()).toBe(model.size === 0 ? Infinity : min);
          if (model.size > 0) expect(model.get(h.peek())).toBe(min);
          else expect(h.peek()).toBe(-1);
          // Every row's position: -1 outside, and the rows inside take the places 0 .. size - 1 once each.
          const places: number[] = [];
          for (let r = 0; r < ROWS; r++) {
            const at = p.heapPos[r]!;
            expect(at >= 0).toBe(model.has(r));
            expect(h.has(r)).toBe(model.has(r));
            if (at >= 0) places.push(at);
            else expect(at).toBe(-1);
          }
          expect(places.sort((a, b) => a - b)).toEqual(Array.from({ length: model.size }, (_, i) => i));
        }
        // Draining yields every deadline in order.
        const drained: number[] = [];
        while (h.size > 0) {
          drained.push(h.peekDeadline());
          expect(h.remove(h.peek())).toBe(true);
        }
        expect(drained).toEqual([...model.values()].sort((a, b) => a - b));
      }),
      { numRuns: 300 },
    );
  });
});
