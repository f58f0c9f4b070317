import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { defaultMargin, fenceAt, fenceState, FenceState } from '../../src/store/fence.js';

describe('fenceAt', () => {
  const cfg = { ttlMs: 10_000, marginMs: 2_000 };
  it.each([
    [null, 0, FenceState.EXPIRED], // no lease granted yet: nothing forwarded
    [0, 0, FenceState.OK],
    [0, 4_999, FenceState.OK],
    [0, 5_000, FenceState.NEAR],
    [0, 7_999, FenceState.NEAR],
    [0, 8_000, FenceState.EXPIRED],
    [1_000, 6_500, FenceState.NEAR],
    [1_000, 5_999, FenceState.OK],
    [1_000, 60_000, FenceState.EXPIRED],
  ] as const)('last ok %s, now %s → %s', (last, now, want) => {
    expect(fenceAt(last, now, cfg).state).toBe(want);
  });

  it('never lets forwarding outlive the lease on the server, and denies changes first (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2_000, max: 120_000 }), fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 0, max: 200_000 }), (ttl, last, dt) => {
        const c = { ttlMs: ttl, marginMs: defaultMargin(ttl) };
        const f = fenceAt(last, last + dt, c);
        expect(f.stopAt!).toBeLessThan(last + ttl);
        expect(f.denyAt!).toBeLessThan(f.stopAt!);
        expect(f.denyAt!).toBeGreaterThan(last);
        if (dt >= ttl) expect(f.state).toBe(FenceState.EXPIRED);
        if (f.state === FenceState.OK) expect(last + dt).toBeLessThan(f.denyAt!);
        expect(fenceState(last, last + dt, c)).toBe(f.state);
      }),
    );
  });
});
