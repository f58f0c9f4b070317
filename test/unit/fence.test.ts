import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { defaultMargin, fenceAt, fenceState, FenceState, ResyncGate } from '../../src/store/fence.js';

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

describe('ResyncGate: after the lease lapsed, nothing forwarded until the store was listed again', () => {
  const cfg = { ttlMs: 10_000, marginMs: 2_000 };

  it('a lapse seen as an expired fence: expired until asked and followed; asked once, only when the lease is back', () => {
    const g = new ResyncGate(cfg);
    expect(g.gate(0, 1_000, true)).toBe(FenceState.OK);
    expect(g.wantsResync).toBe(false);
    expect(g.gate(0, 9_000, true)).toBe(FenceState.EXPIRED); // lapsed
    expect(g.wantsResync).toBe(false); // not while the store cannot answer
    expect(g.gate(12_000, 12_100, true)).toBe(FenceState.EXPIRED); // lease back: still stale
    expect(g.wantsResync).toBe(true);
    g.resyncAsked();
    expect(g.wantsResync).toBe(false);
    expect(g.gate(12_000, 12_200, false)).toBe(FenceState.EXPIRED); // listing
    expect(g.gate(12_000, 12_300, true)).toBe(FenceState.OK); // follows again
    expect(g.gate(14_000, 14_100, true)).toBe(FenceState.OK);
  });

  it('a lapse nobody saw as it happened (no packet, no poll): two keepalives further apart than the fence allows', () => {
    const g = new ResyncGate(cfg);
    expect(g.gate(0, 100, true)).toBe(FenceState.OK);
    // The next successful keepalive 9 s later (> ttl − margin): the fence expired in between.
    expect(g.gate(9_000, 9_050, true)).toBe(FenceState.EXPIRED);
    expect(g.wantsResync).toBe(true);
    // Keepalives in time (every TTL/5) never trip it.
    const h = new ResyncGate(cfg);
    for (let t = 0; t < 60_000; t += 2_000) expect(h.gate(t, t + 50, true)).toBe(FenceState.OK);
    expect(h.wantsResync).toBe(false);
  });

  it('a director never granted a lease has nothing stale to list again; its first lease opens the gate at once', () => {
    const g = new ResyncGate(cfg);
    expect(g.gate(null, 0, true)).toBe(FenceState.EXPIRED);
    expect(g.wantsResync).toBe(false);
    expect(g.gate(100, 150, true)).toBe(FenceState.OK);
  });

  it('lapsing again while listing asks again once the lease is back', () => {
    const g = new ResyncGate(cfg);
    g.gate(0, 100, true);
    g.gate(0, 9_000, true);
    g.gate(10_000, 10_100, true);
    g.resyncAsked();
    expect(g.gate(10_000, 18_500, false)).toBe(FenceState.EXPIRED); // lapsed during the listing
    expect(g.gate(20_000, 20_100, true)).toBe(FenceState.EXPIRED); // following, but asked before this lapse
    expect(g.wantsResync).toBe(true);
    g.resyncAsked();
    expect(g.gate(20_000, 20_200, true)).toBe(FenceState.OK);
  });
});
