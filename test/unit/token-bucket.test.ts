// Per-key token buckets with a manual clock: burst then refusal, refill at the rate, independent keys,
// sweep of refilled buckets and the maxKeys bound under a flood of keys.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { KeyedTokenBuckets } from '../../src/util/token-bucket.js';

function takeN(b: KeyedTokenBuckets, key: string, now: number, n: number): number {
  let ok = 0;
  for (let i = 0; i < n; i++) if (b.take(key, now)) ok++;
  return ok;
}

describe('KeyedTokenBuckets', () => {
  it('allows exactly the burst at one instant, then refuses', () => {
    const b = new KeyedTokenBuckets(10, 5);
    for (let i = 0; i < 5; i++) expect(b.take('a', 1000)).toBe(true);
    expect(b.take('a', 1000)).toBe(false);
    expect(b.take('a', 1000)).toBe(false);
  });

  it('refills at the rate: one token per 1/rate seconds', () => {
    const b = new KeyedTokenBuckets(10, 5); // one token per 100 ms
    expect(takeN(b, 'a', 0, 5)).toBe(5);
    expect(b.take('a', 99)).toBe(false);
    expect(b.take('a', 100)).toBe(true);
    expect(b.take('a', 100)).toBe(false);
    // 300 ms later: three more tokens.
    expect(takeN(b, 'a', 400, 10)).toBe(3);
  });

  it('never refills beyond the burst', () => {
    const b = new KeyedTokenBuckets(10, 5);
    expect(takeN(b, 'a', 0, 5)).toBe(5);
    expect(takeN(b, 'a', 1_000_000, 100)).toBe(5);
  });

  it('a clock that goes backwards neither refills nor throws', () => {
    const b = new KeyedTokenBuckets(10, 2);
    expect(takeN(b, 'a', 1000, 2)).toBe(2);
    expect(b.take('a', 500)).toBe(false);
    expect(b.take('a', 1000)).toBe(false);
    expect(b.take('a', 1100)).toBe(true);
  });

  it('keys are independent', () => {
    const b = new KeyedTokenBuckets(1, 3);
    expect(takeN(b, '10.0.0.1', 0, 10)).toBe(3);
    expect(takeN(b, '10.0.0.2', 0, 10)).toBe(3);
    expect(takeN(b, '::1', 0, 1)).toBe(1);
    expect(b.take('10.0.0.1', 0)).toBe(false);
    expect(b.size).toBe(3);
  });

  it('matches the fluid model over a random schedule (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.integer({ min: 0, max: 500 }), { maxLength: 100 }),
        (rate, burst, gaps) => {
          const b = new KeyedTokenBuckets(rate, burst);
          let now = 0;
          let tokens = burst;
          let granted = 0;
          const perMs = rate / 1000; // the same float arithmetic as the bucket: no rounding tolerance needed
          for (const gap of gaps) {
            tokens = Math.min(burst, tokens + gap * perMs);
            now += gap;
            const model = tokens >= 1;
            if (model) tokens -= 1;
            expect(b.take('k', now)).toBe(model);
            if (model) granted++;
          }
          // Never more than burst + rate × elapsed.
          expect(granted).toBeLessThanOrEqual(burst + Math.floor((now * rate) / 1000 + 1e-9));
        },
      ),
    );
  });

  describe('sweep', () => {
    it('forgets buckets that have refilled completely and keeps the others', () => {
      const b = new KeyedTokenBuckets(10, 5); // full after 500 ms from empty
      b.take('old', 0);
      b.take('new', 400);
      expect(b.size).toBe(2);
      b.sweep(499);
      expect(b.size).toBe(2);
      b.sweep(500);
      expect(b.size).toBe(1); // 'old' is full again
      b.sweep(900);
      expect(b.size).toBe(0);
      expect(b.evicted).toBe(0);
    });

    it('a forgotten bucket behaves exactly like a full one', () => {
      const b = new KeyedTokenBuckets(10, 3);
      expect(takeN(b, 'a', 0, 3)).toBe(3);
      b.sweep(300);
      expect(b.size).toBe(0);
      expect(takeN(b, 'a', 300, 10)).toBe(3);
    });

    it('does not forget a bucket that is still short of tokens', () => {
      const b = new KeyedTokenBuckets(10, 5);
      expect(takeN(b, 'a', 0, 5)).toBe(5);
      b.sweep(200);
      expect(b.size).toBe(1);
      // Still limited: only 2 tokens refilled in 200 ms.
      expect(takeN(b, 'a', 200, 10)).toBe(2);
    });
  });

  describe('maxKeys bound', () => {
    it('a flood of distinct keys never grows past maxKeys; evictions are counted', () => {
      const max = 64;
      const b = new KeyedTokenBuckets(1, 1, max);
      for (let i = 0; i < 10_000; i++) {
        b.take(`k${i}`, 0);
        expect(b.size).toBeLessThanOrEqual(max);
      }
      expect(b.size).toBe(max);
      expect(b.evicted).toBe(10_000 - max);
    });

    it('a large table evicts the oldest 64th at a time: still bounded, every key counted, the newest kept', () => {
      const max = 6400;
      const b = new KeyedTokenBuckets(1, 1, max);
      for (let i = 0; i < 20_000; i++) {
        expect(b.take(`k${i}`, 0)).toBe(true);
        expect(b.size).toBeLessThanOrEqual(max);
      }
      expect(b.evicted + b.size).toBe(20_000);
      expect(b.size).toBeGreaterThan(max - max / 64 - 1);
      expect(b.take('k19999', 0)).toBe(false); // still there, its one token spent
      expect(b.take('k0', 0)).toBe(true); // forgotten long ago: a fresh bucket
    });

    it('evicts the oldest-inserted key first', () => {
      const b = new KeyedTokenBuckets(1, 1, 2);
      expect(b.take('a', 0)).toBe(true);
      expect(b.take('b', 0)).toBe(true);
      expect(b.take('c', 0)).toBe(true); // evicts 'a'
      expect(b.evicted).toBe(1);
      expect(b.take('b', 0)).toBe(false); // 'b' kept its (empty) bucket
      expect(b.take('a', 0)).toBe(true); // 'a' was forgotten: a fresh bucket (and 'c' evicted)
      expect(b.evicted).toBe(2);
      expect(b.size).toBe(2);
    });

    it('property: size ≤ maxKeys and evictions match an insertion-order model, for any key stream', () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 16 }),
          fc.array(fc.tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 50 })), { maxLength: 300 }),
          (max, ops) => {
            const b = new KeyedTokenBuckets(5, 2, max);
            const model: string[] = []; // keys in insertion order
            let evicted = 0;
            let now = 0;
            for (const [k, gap] of ops) {
              const key = String(k);
              now += gap;
              if (!model.includes(key)) {
                if (model.length >= max) {
                  model.shift();
                  evicted++;
                }
                model.push(key);
              }
              b.take(key, now);
              expect(b.size).toBeLessThanOrEqual(max);
              expect(b.size).toBe(model.length);
              expect(b.evicted).toBe(evicted);
            }
          },
        ),
      );
    });
  });
});
