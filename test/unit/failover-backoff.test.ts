// Automatic failover of a node whose sessions have nowhere to go is not restarted at every check.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AUTO_RETRY_MAX_MS, AUTO_RETRY_MIN_MS, FailoverBackoff } from '../../src/drain/failover-backoff.js';

describe('FailoverBackoff', () => {
  it('a first failover is due at once; a failed one again after 5 s, 10 s, 20 s … up to 5 min; never while one runs', () => {
    const b = new FailoverBackoff();
    const ring = {};
    const states = new Map<string, string>();
    const state = (id: string) => states.get(id);
    expect(b.due('n', 0, ring, state)).toBe(true);
    let now = 0;
    let expected = AUTO_RETRY_MIN_MS;
    for (let i = 0; i < 10; i++) {
      b.started('n', `fo-${i}`, now, ring);
      states.set(`fo-${i}`, 'running');
      expect(b.due('n', now + 10 * AUTO_RETRY_MAX_MS, ring, state)).toBe(false); // running: never
      states.set(`fo-${i}`, 'failed');
      expect(b.due('n', now + expected - 1, ring, state)).toBe(false);
      expect(b.due('n', now + expected, ring, state)).toBe(true);
      now += expected;
      expected = Math.min(expected * 2, AUTO_RETRY_MAX_MS);
    }
    expect(expected).toBe(AUTO_RETRY_MAX_MS);
  });

  it('a changed ring (somewhere to go now) makes it due at once; healthy again, it starts afresh', () => {
    const b = new FailoverBackoff();
    const r1 = {};
    b.started('n', 'fo-1', 0, r1);
    b.started('n', 'fo-2', 5_000, r1); // next wait 10 s
    expect(b.due('n', 6_000, r1, () => 'failed')).toBe(false);
    expect(b.due('n', 6_000, {}, () => 'failed')).toBe(true);
    expect(b.due('other', 6_000, r1, () => 'failed')).toBe(true); // per node
    b.forget('n');
    b.started('n', 'fo-3', 6_000, r1);
    expect(b.due('n', 6_000 + AUTO_RETRY_MIN_MS, r1, () => 'failed')).toBe(true); // back to the first wait
  });

  it('forget names the failover it created, for the shell to stop once the node is healthy again — never an operator’s drain it escalated', () => {
    const b = new FailoverBackoff();
    const ring = {};
    expect(b.forget('n')).toBeUndefined(); // none started
    b.started('n', 'fo-1', 0, ring);
    b.started('n', 'fo-2', 5_000, ring);
    expect(b.forget('n')).toBe('fo-2'); // the last one started
    expect(b.forget('n')).toBeUndefined(); // forgotten
    b.started('n', 'dr-op', 6_000, ring, false); // an operator's waiting drain, made to migrate now
    expect(b.forget('n')).toBeUndefined();
    b.started('m', 'fo-3', 0, ring);
    expect(b.forget('n')).toBeUndefined(); // per node
    expect(b.forget('m')).toBe('fo-3');
  });

  it('property: under one ring, each start of a node waits at least twice as long as the one before (from 5 s, at most 5 min)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 400_000 }), { minLength: 1, maxLength: 40 }), (steps) => {
        const b = new FailoverBackoff();
        const ring = {};
        let now = 0;
        let last: number | null = null;
        let wait = AUTO_RETRY_MIN_MS;
        for (const dt of steps) {
          now += dt;
          const due = b.due('n', now, ring, () => 'failed');
          if (last !== null) {
            expect(due).toBe(now - last >= wait);
            if (due) wait = Math.min(wait * 2, AUTO_RETRY_MAX_MS);
          }
          if (!due) continue;
          b.started('n', `fo-${now}`, now, ring);
          last = now;
        }
      }),
    );
  });
});
