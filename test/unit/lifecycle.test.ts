// The session lifecycle (DESIGN §4): every (state, event) pair against a table written out here by hand
// (not derived from TRANSITIONS), compare-and-swap on the version, +1 per transition, admit at 1.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  INITIAL_VERSION,
  LifecycleEvent,
  SessionState,
  transition,
  type FromState,
} from '../../src/session/lifecycle.js';

const STATES: readonly FromState[] = [null, 'ATTACHED', 'FROZEN', 'TERMINATED'];
const EVENTS: readonly LifecycleEvent[] = [
  'admit',
  'reattach',
  'freeze',
  'transfer',
  'resume',
  'close',
  'expire',
  'terminate',
];

// The expected table from DESIGN §4, written independently. `null` = invalid transition.
type Row = Record<LifecycleEvent, SessionState | null>;
const EXPECTED: Record<'none' | SessionState, Row> = {
  none: {
    admit: 'ATTACHED',
    reattach: null,
    freeze: null,
    transfer: null,
    resume: null,
    close: null,
    expire: null,
    terminate: null,
  },
  ATTACHED: {
    admit: null,
    reattach: 'ATTACHED',
    freeze: 'FROZEN',
    transfer: null,
    resume: null,
    close: 'TERMINATED',
    expire: 'TERMINATED',
    terminate: 'TERMINATED',
  },
  FROZEN: {
    admit: null,
    reattach: null,
    freeze: null,
    transfer: 'FROZEN',
    resume: 'ATTACHED',
    close: 'TERMINATED',
    expire: 'TERMINATED',
    terminate: 'TERMINATED',
  },
  TERMINATED: {
    admit: null,
    reattach: null,
    freeze: null,
    transfer: null,
    resume: null,
    close: null,
    expire: null,
    terminate: null,
  },
};

describe('lifecycle constants', () => {
  it('names exactly the states and events of DESIGN §4', () => {
    expect(Object.values(SessionState).sort()).toEqual(['ATTACHED', 'FROZEN', 'TERMINATED']);
    expect(Object.values(LifecycleEvent).sort()).toEqual([...EVENTS].sort());
    expect(INITIAL_VERSION).toBe(1n);
  });
});

describe('transition: every (state, event) pair', () => {
  const cases = STATES.flatMap((state) => EVENTS.map((event) => ({ state, event })));
  it('covers 4 states × 8 events', () => {
    expect(cases).toHaveLength(32);
  });

  it.each(cases)('$state --$event-->', ({ state, event }) => {
    const expected = EXPECTED[state ?? 'none'][event];
    const version = state === null ? null : 7n;
    const expect_ = state === null ? null : 7n;
    const r = transition(state, version, event, expect_);
    if (expected === null) {
      expect(r).toEqual({ ok: false, reason: 'invalid_transition' });
    } else {
      expect(r).toEqual({ ok: true, state: expected, version: state === null ? 1n : 8n });
    }
  });

  it.each(cases)('$state --$event--> with a stale expectation never succeeds', ({ state, event }) => {
    if (state === null) return; // admission names no version
    const expected = EXPECTED[state][event];
    for (const stale of [6n, 8n, 0n, 1n << 63n]) {
      const r = transition(state, 7n, event, stale);
      // An invalid pair stays invalid whatever the version; a valid pair is refused as stale.
      expect(r).toEqual({ ok: false, reason: expected === null ? 'invalid_transition' : 'stale_version' });
    }
    // Expecting a version when the record has none is stale too.
    const noVersion = transition(state, null, event, 7n);
    expect(noVersion.ok).toBe(false);
  });
});

describe('transition: versions', () => {
  it('admits at version 1', () => {
    expect(transition(null, null, 'admit', null)).toEqual({ ok: true, state: 'ATTACHED', version: 1n });
  });

  it('every accepted transition adds exactly 1, including near u64 values', () => {
    for (const v of [1n, 2n, 41n, (1n << 53n) + 1n, (1n << 63n) - 2n]) {
      const r = transition('ATTACHED', v, 'reattach', v);
      expect(r).toEqual({ ok: true, state: 'ATTACHED', version: v + 1n });
    }
  });

  it('a stale expectation changes nothing: the caller keeps its state and version and can retry', () => {
    const record = { state: 'ATTACHED' as SessionState, version: 3n };
    const r = transition(record.state, record.version, 'freeze', 2n);
    expect(r).toEqual({ ok: false, reason: 'stale_version' });
    // transition() is pure: nothing to apply on refusal; a retry with the right version succeeds.
    expect(record).toEqual({ state: 'ATTACHED', version: 3n });
    expect(transition(record.state, record.version, 'freeze', 3n)).toEqual({ ok: true, state: 'FROZEN', version: 4n });
  });

  it('the drain path freeze → transfer → resume adds 3', () => {
    let s: SessionState = 'ATTACHED';
    let v = 1n;
    for (const e of ['freeze', 'transfer', 'transfer', 'resume'] as const) {
      const r = transition(s, v, e, v);
      if (!r.ok) throw new Error(`refused ${e}`);
      s = r.state;
      v = r.version;
    }
    expect(s).toBe('ATTACHED');
    expect(v).toBe(5n);
  });
});

describe('transition: property', () => {
  it('random event sequences with correct expectations: versions strictly increase, TERMINATED is final', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...EVENTS), { maxLength: 60 }), (events) => {
        let state: FromState = null;
        let version: bigint | null = null;
        let accepted = 0;
        for (const event of events) {
          const before = { state, version };
          const r = transition(state, version, event, version);
          const expected = EXPECTED[state ?? 'none'][event];
          expect(r.ok).toBe(expected !== null);
          if (r.ok) {
            accepted++;
            expect(r.state).toBe(expected);
            if (before.version === null) expect(r.version).toBe(1n);
            else expect(r.version).toBe(before.version + 1n);
            expect(before.state).not.toBe('TERMINATED');
            state = r.state;
            version = r.version;
          } else {
            expect(r.reason).toBe('invalid_transition');
            expect({ state, version }).toEqual(before);
          }
          if (before.state === 'TERMINATED') expect(state).toBe('TERMINATED');
        }
        // Versions are 1 at admission and +1 per accepted transition, so the final version counts them.
        expect(version).toBe(accepted === 0 ? null : BigInt(accepted));
      }),
      { numRuns: 500 },
    );
  });

  it('random expectations: only the exact current version is ever accepted', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<SessionState>('ATTACHED', 'FROZEN', 'TERMINATED'),
        fc.constantFrom(...EVENTS),
        fc.bigInt({ min: 1n, max: (1n << 64n) - 2n }),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        (state, event, version, expectVersion) => {
          const r = transition(state, version, event, expectVersion);
          const valid = EXPECTED[state][event] !== null;
          if (!valid) expect(r).toEqual({ ok: false, reason: 'invalid_transition' });
          else if (expectVersion !== version) expect(r).toEqual({ ok: false, reason: 'stale_version' });
          else expect(r).toEqual({ ok: true, state: EXPECTED[state][event], version: version + 1n });
        },
      ),
    );
  });
});
