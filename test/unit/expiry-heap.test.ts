// ExpiryHeap, the session table's expiry order: each item in at most one heap and at most once, exact
// removal by identity, and a model check (random push / remove / retop against a plain list scanned for
// its minimum), with the heap's own invariant and every item's recorded slot checked after each step.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ExpiryHeap, type HeapItem } from '../../src/session/expiry-heap.js';

interface Item extends HeapItem {
  readonly n: number;
}

const item = (n: number): Item => ({ n, expirySlot: -1 });

describe('ExpiryHeap', () => {
  it('gives the earliest deadline first and Infinity when empty', () => {
    const h = new ExpiryHeap<Item>();
    expect(h.peek()).toBeUndefined();
    expect(h.peekDeadline()).toBe(Infinity);
    const [a, b, c] = [item(1), item(2), item(3)];
    expect(h.push(a, 30)).toBe(true);
    expect(h.push(b, 10.5)).toBe(true);
    expect(h.push(c, 20)).toBe(true);
    expect(h.peek()).toBe(b);
    expect(h.peekDeadline()).toBe(10.5);
    h.retop(25); // b moves behind c
    expect(h.peek()).toBe(c);
    expect(h.size).toBe(3);
  });

  it('holds an item once, in one heap; remove is exact and resets the slot', () => {
    const h = new ExpiryHeap<Item>();
    const other = new ExpiryHeap<Item>();
    const a = item(1);
    expect(h.push(a, 5)).toBe(true);
    expect(h.has(a)).toBe(true);
    expect(other.has(a)).toBe(false);
    expect(h.has(item(1))).toBe(false);
    expect(h.push(a, 1)).toBe(false);
    expect(other.push(a, 1)).toBe(false);
    expect(other.remove(a)).toBe(false);
    expect(h.remove(item(1))).toBe(false); // an equal item that is not in the heap
    expect(h.remove(a)).toBe(true);
    expect(a.expirySlot).toBe(-1);
    expect(h.remove(a)).toBe(false);
    expect(h.size).toBe(0);
    expect(other.push(a, 1)).toBe(true);
  });

  it('grows and shrinks its deadline storage without losing an item', () => {
    const h = new ExpiryHeap<Item>();
    const items = Array.from({ length: 5000 }, (_, i) => item(i));
    for (const it of items) h.push(it, (it.n * 7919) % 5003);
    for (const it of items.filter((x) => x.n % 5 !== 0)) expect(h.remove(it)).toBe(true);
    const left: number[] = [];
    while (h.size > 0) {
      left.push(h.peekDeadline());
      expect(h.remove(h.peek() as Item)).toBe(true);
    }
    expect(left).toEqual(items.filter((x) => x.n % 5 === 0).map((x) => (x.n * 7919) % 5003).sort((a, b) => a - b));
  });

  it('model: random push / remove / retop agree with a scanned list', () => {
    type Op = { op: 'push'; n: number; d: number } | { op: 'remove'; n: number } | { op: 'retop'; d: number };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ op: fc.constant('push' as const), n: fc.nat(40), d: fc.integer({ min: 0, max: 50 }) }),
      fc.record({ op: fc.constant('remove' as const), n: fc.nat(40) }),
      fc.record({ op: fc.constant('retop' as const), d: fc.double({ min: 0, max: 60, noNaN: true }) }),
    );
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 300 }), (ops) => {
        const h = new ExpiryHeap<Item>();
        const items = Array.from({ length: 41 }, (_, n) => item(n));
        const model = new Map<Item, number>(); // item → deadline
        for (const o of ops) {
          if (o.op === 'push') {
            const it = items[o.n] as Item;
            expect(h.push(it, o.d)).toBe(!model.has(it));
            if (!model.has(it)) model.set(it, o.d);
          } else if (o.op === 'remove') {
            const it = items[o.n] as Item;
            expect(h.remove(it)).toBe(model.delete(it));
          } else if (model.size > 0) {
            const top = h.peek() as Item;
            h.retop(o.d);
            model.set(top, o.d);
          }
          expect(h.size).toBe(model.size);
          const min = Math.min(...model.values());
          expect(h.peekDeadline()).toBe(model.size === 0 ? Infinity : min);
          if (model.size > 0) expect(model.get(h.peek() as Item)).toBe(min);
          for (const it of items) {
            expect(it.expirySlot >= 0).toBe(model.has(it));
            expect(h.has(it)).toBe(model.has(it));
          }
        }
        // Draining yields every deadline in order.
        const drained: number[] = [];
        while (h.size > 0) {
          drained.push(h.peekDeadline());
          h.remove(h.peek() as Item);
        }
        expect(drained).toEqual([...model.values()].sort((a, b) => a - b));
      }),
      { numRuns: 300 },
    );
  });
});
