// HexIdSlots, the store's id → slot table over the 16 id bytes (src/store/hex-id-slots.ts): which texts it
// takes (32 lowercase hex characters, nothing else), ids read back as the text written, the
// lookup-then-add protocol, and a model check against a Map (random add / remove / lookup with ids from a
// small set, a weak key so that probe runs collide and wrap, and copies into a rebuilt table).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ABSENT, HEX_ID_KEY_WORDS, HexIdSlots, NOT_HEX } from '../../src/store/hex-id-slots.js';

const KEY = Uint32Array.from({ length: HEX_ID_KEY_WORDS }, (_, i) => 0x9e3779b9 * (i + 1));
/** Every word zero: the hash still mixes, but far less; the model test uses it to make runs collide. */
const WEAK_KEY = new Uint32Array(HEX_ID_KEY_WORDS);
const hexId = (n: number): string => (n * 0x10001 + 1).toString(16).padStart(32, '0');

describe('HexIdSlots', () => {
  it('holds 32 lowercase hex characters and nothing else', () => {
    const x = new HexIdSlots(KEY, 4);
    const id = '0123456789abcdef0123456789abcdef';
    expect(x.lookup(id)).toBe(ABSENT);
    x.addLooked(3);
    expect(x.lookup(id)).toBe(3);
    expect(x.idAt(3)).toBe(id);
    for (const other of [
      id.toUpperCase(),
      '0123456789ABCDEF0123456789abcdef',
      id.slice(1),
      id + '0',
      '',
      'g123456789abcdef0123456789abcdef',
      ' 123456789abcdef0123456789abcdef',
      // Outside ASCII, but the low seven bits are a hex digit ('0' + 128, 'a' + 256).
      '\u00b0123456789abcdef0123456789abcdef',
      '0123456789abcdef0123456789abcde\u0161',
    ]) {
      expect(x.lookup(other)).toBe(NOT_HEX);
    }
    expect(x.size).toBe(1);
  });

  it('adds only right after a lookup that found nothing, and only that id', () => {
    const x = new HexIdSlots(KEY, 4);
    expect(() => x.addLooked(0)).toThrow(Error);
    expect(x.lookup(hexId(1))).toBe(ABSENT);
    expect(x.lookup(hexId(1))).toBe(ABSENT); // the same lookup again: still addable
    x.addLooked(0);
    expect(() => x.addLooked(1)).toThrow(Error);
    expect(x.lookup(hexId(1))).toBe(0);
    expect(() => x.addLooked(1)).toThrow(Error);
    expect(x.lookup('not hex')).toBe(NOT_HEX);
    expect(() => x.addLooked(1)).toThrow(Error);
    expect(x.lookup(hexId(2))).toBe(ABSENT);
    expect(() => x.addLooked(4)).toThrow(RangeError); // no room for slot 4
    expect(x.lookup(hexId(2))).toBe(ABSENT);
    x.addLooked(1);
    x.remove(0);
    expect(x.lookup(hexId(1))).toBe(ABSENT);
    expect(x.lookup(hexId(2))).toBe(1);
    expect(() => x.remove(0)).toThrow(Error);
  });

  it('model: random add / remove / lookup / copy agree with a Map', () => {
    type Op = { t: 'add'; k: number } | { t: 'remove'; k: number } | { t: 'look'; k: number } | { t: 'copy' } | { t: 'bulk'; n: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 5, arbitrary: fc.record({ t: fc.constant('add' as const), k: fc.nat(40) }) },
      { weight: 3, arbitrary: fc.record({ t: fc.constant('remove' as const), k: fc.nat(40) }) },
      { weight: 2, arbitrary: fc.record({ t: fc.constant('look' as const), k: fc.nat(40) }) },
      { weight: 1, arbitrary: fc.record({ t: fc.constant('copy' as const) }) },
      { weight: 1, arbitrary: fc.record({ t: fc.constant('bulk' as const), n: fc.integer({ min: 1, max: 300 }) }) },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), fc.boolean(), (ops, weak) => {
        const key = weak ? WEAK_KEY : KEY;
        const SLOTS = 400;
        let x = new HexIdSlots(key, SLOTS);
        const model = new Map<string, number>(); // id → slot
        const freeSlots = Array.from({ length: SLOTS }, (_, i) => SLOTS - 1 - i);
        const add = (id: string): void => {
          const slot = x.lookup(id);
          if (slot !== ABSENT) {
            expect(slot).toBe(model.get(id));
            return;
          }
          expect(model.has(id)).toBe(false);
          const s = freeSlots.pop() as number;
          x.addLooked(s);
          model.set(id, s);
        };
        for (const o of ops) {
          if (o.t === 'add') add(hexId(o.k));
          else if (o.t === 'remove') {
            const s = model.get(hexId(o.k));
            if (s !== undefined) {
              x.remove(s);
              model.delete(hexId(o.k));
              freeSlots.push(s);
            }
          } else if (o.t === 'look') {
            expect(x.lookup(hexId(o.k))).toBe(model.get(hexId(o.k)) ?? ABSENT);
          } else if (o.t === 'copy') {
            // As a compaction does: every id into a new table, in new slots.
            const y = new HexIdSlots(key, SLOTS, model.size);
            const next = new Map<string, number>();
            let to = 0;
            for (const [id, s] of model) {
              x.copyInto(y, s, to);
              next.set(id, to++);
            }
            x = y;
            model.clear();
            for (const [id, s] of next) model.set(id, s);
            freeSlots.length = 0;
            for (let s = SLOTS - 1; s >= to; s--) freeSlots.push(s);
          } else {
            for (let i = 0; i < o.n && freeSlots.length > 0; i++) add(hexId(1000 + i));
            for (let i = 0; i < o.n; i += 2) {
              const s = model.get(hexId(1000 + i));
              if (s === undefined) continue;
              x.remove(s);
              model.delete(hexId(1000 + i));
              freeSlots.push(s);
            }
          }
          expect(x.size).toBe(model.size);
        }
        for (const [id, s] of model) {
          expect(x.lookup(id)).toBe(s);
          expect(x.idAt(s)).toBe(id);
        }
        for (let k = 0; k <= 40; k++) expect(x.lookup(hexId(k))).toBe(model.get(hexId(k)) ?? ABSENT);
      }),
      { numRuns: 300 },
    );
  });
});
