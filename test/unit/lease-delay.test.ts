// When the etcd store sends its next lease keepalive (leaseDelay): a fifth of the TTL after the last one
// was sent, whatever its answer took — a slow answer must not push every later keepalive back.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { leaseDelay } from '../../src/store/etcd.js';
import { defaultMargin, fenceState, FenceState } from '../../src/store/fence.js';

describe('leaseDelay', () => {
  it.each([
    // sent, answered (now), ttl → delay
    [0, 50, 10_000, 1950],
    [0, 1999, 10_000, 1],
    [0, 2500, 10_000, 0], // the answer took longer than a fifth of the TTL: at once
    [1000, 1100, 3000, 500],
    [0, 10, 200, 90], // at least 100 ms apart
  ] as const)('sent at %s, answered at %s, TTL %s → next in %s ms', (sent, now, ttl, want) => {
    expect(leaseDelay(sent, now, ttl)).toBe(want);
  });

  it('property: with every answer faster than TTL/5 and than the deny point less TTL/5, the fence never leaves OK', () => {
    fc.assert(
      fc.property(fc.integer({ min: 3000, max: 60_000 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 5, maxLength: 40 }), (ttl, fractions) => {
        const margin = defaultMargin(ttl);
        const every = Math.max(100, Math.floor(ttl / 5));
        const denyAfter = Math.min(ttl / 2, ttl - 2 * margin);
        const slowest = Math.min(every, denyAfter - every); // answers at most this slow: never NEAR
        fc.pre(slowest > 1);
        const cfg = { ttlMs: ttl, marginMs: margin };
        let sent = 0;
        let okAt = 0;
        for (const f of fractions) {
          const answered = sent + f * (slowest - 1);
          // Just before this answer arrives, the last ok is the previous send's.
          expect(fenceState(okAt, answered - 1e-6, cfg)).toBe(FenceState.OK);
          okAt = sent;
          sent = answered + leaseDelay(sent, answered, ttl);
        }
      }),
    );
  });
});
