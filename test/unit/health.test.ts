// HealthTracker's rise/fall damping: a table of result sequences, the timestamps (since, lastChange,
// unhealthyFor), and fast-check properties against a declarative model of the rules.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { HealthTracker } from '../../src/nodes/health.js';
import { NodeHealth } from '../../src/nodes/membership.js';

const { UNKNOWN, HEALTHY, UNHEALTHY } = NodeHealth;

/** Feeds a string of results ('+' success, '-' failure) at t = 1, 2, …; returns the health after each. */
function run(t: HealthTracker, id: string, results: string): NodeHealth[] {
  return [...results].map((c, i) => t.onProbeResult(id, c === '+', i + 1).health);
}

/**
 * Declarative model: the health after `seq` is set by the last position j at which a run of identical
 * results of length ≥ threshold ends (rise for successes, fall for failures), or — for a node never
 * healthy or unhealthy yet (UNKNOWN) — by its first success; UNKNOWN if there is neither.
 */
function model(seq: readonly boolean[], rise: number, fall: number): NodeHealth {
  let health: NodeHealth = UNKNOWN;
  for (let j = 0; j < seq.length; j++) {
    const v = seq[j];
    let k = j;
    while (k >= 0 && seq[k] === v) k--;
    if (j - k >= (v ? rise : fall) || (v && health === UNKNOWN)) health = v ? HEALTHY : UNHEALTHY;
  }
  return health;
}

describe('HealthTracker damping rules', () => {
  it.each([
    { description: 'starts unknown; its first answer makes it healthy, whatever rise', rise: 3, fall: 3, results: '+', final: HEALTHY, changes: 1 },
    { description: 'more answers keep it healthy', rise: 3, fall: 3, results: '+++', final: HEALTHY, changes: 1 },
    { description: 'fall failures from unknown make it unhealthy', rise: 2, fall: 3, results: '---', final: UNHEALTHY, changes: 1 },
    { description: 'fewer than fall failures from unknown stay unknown', rise: 2, fall: 3, results: '--', final: UNKNOWN, changes: 0 },
    { description: 'a failure resets the success streak', rise: 3, fall: 3, results: '---++-++', final: UNHEALTHY, changes: 1 },
    { description: 'failures below fall from unknown, then an answer: healthy', rise: 3, fall: 3, results: '--+', final: HEALTHY, changes: 1 },
    { description: 'a success resets the failure streak', rise: 2, fall: 3, results: '++--+--', final: HEALTHY, changes: 1 },
    { description: 'healthy to unhealthy after fall failures', rise: 2, fall: 3, results: '++---', final: UNHEALTHY, changes: 2 },
    { description: 'unhealthy back to healthy after rise successes', rise: 2, fall: 2, results: '--++', final: HEALTHY, changes: 2 },
    { description: 'alternating results never change it once healthy', rise: 2, fall: 2, results: '+-+-+-+-', final: HEALTHY, changes: 1 },
    { description: 'alternating results never change it once unhealthy', rise: 2, fall: 2, results: '--+-+-+-+', final: UNHEALTHY, changes: 1 },
    { description: 'rise = fall = 1 follows every result', rise: 1, fall: 1, results: '+-+', final: HEALTHY, changes: 3 },
    { description: 'more successes while healthy change nothing', rise: 2, fall: 2, results: '++++++', final: HEALTHY, changes: 1 },
    { description: 'more failures while unhealthy change nothing', rise: 2, fall: 2, results: '------', final: UNHEALTHY, changes: 1 },
    { description: 'a flapping node stays unhealthy', rise: 3, fall: 2, results: '--+-++-++-', final: UNHEALTHY, changes: 1 },
  ])('$description ($results, rise $rise, fall $fall)', ({ rise, fall, results, final, changes }) => {
    const t = new HealthTracker({ rise, fall });
    let seen = 0;
    [...results].forEach((c, i) => {
      if (t.onProbeResult('n1', c === '+', i + 1).changed) seen++;
    });
    expect(t.get('n1')?.health).toBe(final);
    expect(seen).toBe(changes);
  });

  it('reports the streak and the previous health with each result', () => {
    const t = new HealthTracker({ rise: 2, fall: 3 });
    t.add('n1', 0);
    expect(t.onProbeResult('n1', true, 1)).toEqual({ changed: true, health: HEALTHY, previous: UNKNOWN, consecutive: 1 });
    expect(t.onProbeResult('n1', true, 2)).toEqual({ changed: false, health: HEALTHY, previous: HEALTHY, consecutive: 2 });
    expect(t.onProbeResult('n1', false, 3)).toEqual({ changed: false, health: HEALTHY, previous: HEALTHY, consecutive: 1 });
    expect(t.get('n1')).toMatchObject({ successes: 0, failures: 1 });
    t.onProbeResult('n1', false, 4);
    expect(t.onProbeResult('n1', false, 5)).toEqual({ changed: true, health: UNHEALTHY, previous: HEALTHY, consecutive: 3 });
  });

  it('records since, lastChange and unhealthyFor', () => {
    const t = new HealthTracker({ rise: 2, fall: 2 });
    expect(t.add('n1', 100)).toBe(true);
    expect(t.add('n1', 999)).toBe(false);
    expect(t.get('n1')).toEqual({ health: UNKNOWN, since: 100, lastChange: null, successes: 0, failures: 0 });
    expect(t.unhealthyFor('n1', 500)).toBe(0);
    t.onProbeResult('n1', false, 200);
    t.onProbeResult('n1', false, 300);
    expect(t.get('n1')).toMatchObject({ health: UNHEALTHY, since: 300, lastChange: 300 });
    expect(t.unhealthyFor('n1', 300)).toBe(0);
    expect(t.unhealthyFor('n1', 1300)).toBe(1000);
    expect(t.unhealthyFor('n1', 250)).toBe(0); // a clock that went backwards never gives a negative
    t.onProbeResult('n1', false, 400); // still unhealthy: since does not move
    expect(t.unhealthyFor('n1', 1300)).toBe(1000);
    t.onProbeResult('n1', true, 500);
    t.onProbeResult('n1', true, 600);
    expect(t.get('n1')).toMatchObject({ health: HEALTHY, since: 600, lastChange: 600 });
    expect(t.unhealthyFor('n1', 2000)).toBe(0);
  });

  it('tracks nodes independently; an unseen id is added on its first result', () => {
    const t = new HealthTracker({ rise: 1, fall: 1 });
    t.add('a', 0);
    expect(t.get('b')).toBeUndefined();
    expect(t.unhealthyFor('b', 10)).toBe(0);
    t.onProbeResult('b', false, 5);
    expect(t.get('a')?.health).toBe(UNKNOWN);
    expect(t.get('b')).toMatchObject({ health: UNHEALTHY, since: 5 });
    expect(t.ids().sort()).toEqual(['a', 'b']);
    expect(t.remove('b')).toBe(true);
    expect(t.remove('b')).toBe(false);
    expect(t.has('b')).toBe(false);
  });

  it('get() returns a snapshot', () => {
    const t = new HealthTracker({ rise: 1, fall: 1 });
    t.add('a', 0);
    const before = t.get('a');
    t.onProbeResult('a', true, 1);
    expect(before?.health).toBe(UNKNOWN);
  });

  it.each([0, -1, 1.5, Number.NaN])('rejects rise/fall of %s', (v) => {
    expect(() => new HealthTracker({ rise: v, fall: 1 })).toThrow(RangeError);
    expect(() => new HealthTracker({ rise: 1, fall: v })).toThrow(RangeError);
  });
});

describe('HealthTracker properties', () => {
  const params = fc.record({
    rise: fc.integer({ min: 1, max: 6 }),
    fall: fc.integer({ min: 1, max: 6 }),
    seq: fc.array(fc.boolean(), { maxLength: 80 }),
  });

  it('agrees with the model after every result', () => {
    fc.assert(
      fc.property(params, ({ rise, fall, seq }) => {
        const t = new HealthTracker({ rise, fall });
        seq.forEach((ok, i) => {
          t.onProbeResult('n', ok, i);
          expect(t.get('n')?.health).toBe(model(seq.slice(0, i + 1), rise, fall));
        });
      }),
    );
  });

  it('never flips on fewer than rise/fall consecutive identical results', () => {
    fc.assert(
      fc.property(params, ({ rise, fall, seq }) => {
        const t = new HealthTracker({ rise, fall });
        let prev: NodeHealth = UNKNOWN;
        seq.forEach((ok, i) => {
          const r = t.onProbeResult('n', ok, i);
          expect(r.previous).toBe(prev);
          expect(r.changed).toBe(r.health !== prev);
          if (r.changed) {
            // Out of UNKNOWN, one answer is enough (a node never probed is healthy at its first answer).
            const need = ok && prev === UNKNOWN ? 1 : ok ? rise : fall;
            expect(r.health).toBe(ok ? HEALTHY : UNHEALTHY);
            expect(r.consecutive).toBeGreaterThanOrEqual(need);
            expect(i + 1).toBeGreaterThanOrEqual(need);
            for (let k = i - need + 1; k <= i; k++) expect(seq[k]).toBe(ok);
            expect(t.get('n')).toMatchObject({ since: i, lastChange: i });
          }
          prev = r.health;
        });
      }),
    );
  });

  it('unhealthyFor is the time since the last change to unhealthy, 0 otherwise', () => {
    fc.assert(
      fc.property(params, fc.integer({ min: 0, max: 1000 }), ({ rise, fall, seq }, later) => {
        const t = new HealthTracker({ rise, fall });
        t.add('n', 0);
        let becameUnhealthy = -1;
        seq.forEach((ok, i) => {
          const r = t.onProbeResult('n', ok, i * 10);
          if (r.changed && r.health === UNHEALTHY) becameUnhealthy = i * 10;
        });
        const now = seq.length * 10 + later;
        const h = t.get('n')?.health;
        expect(t.unhealthyFor('n', now)).toBe(h === UNHEALTHY ? now - becameUnhealthy : 0);
      }),
    );
  });
});
