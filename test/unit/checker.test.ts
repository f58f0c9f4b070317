// The history checker (src/refnode/checker.ts): a table of record sets → ok or the exact violation, and
// properties — every valid history passes; a packet of an earlier owner slipped in after a later owner's
// packet fails.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_VIOLATIONS_PER_SESSION, checkRecords, isRecordLine, type RecordLine } from '../../src/refnode/checker.js';

const S1 = '11'.repeat(16);
const S2 = '22'.repeat(16);
const D1 = '127.0.0.1:4500';
const D2 = '127.0.0.1:4600';

/** A DATA delivery of session S1 (or `extra.session`). */
function rec(node: string, version: number | null, seq: number | null, extra: Partial<RecordLine> = {}): RecordLine {
  return {
    node,
    session: S1,
    version: version === null ? null : String(version),
    seq: seq === null ? null : String(seq),
    flags: 0,
    type: 2,
    t: 0,
    accepted: true,
    dst: version === null ? null : D1,
    ...extra,
  };
}
function revoke(node: string, v: number, seq: number, extra: Partial<RecordLine> = {}): RecordLine {
  return rec(node, v, seq, { type: 4, revoke: String(v), ...extra });
}

interface Row {
  readonly description: string;
  readonly lines: RecordLine[];
  readonly violations: { session: string; problem: string }[];
  readonly packets?: number;
  readonly notes?: string[];
}

const rows: Row[] = [
  { description: 'no records', lines: [], violations: [], packets: 0 },
  { description: 'one node, one version', lines: [rec('a', 1, 1), rec('a', 1, 2), rec('a', 1, 3)], violations: [], packets: 3 },
  {
    description: 'reattach bumps the version on the same node',
    lines: [rec('a', 1, 1), rec('a', 1, 2, { flags: 1 }), rec('a', 2, 3)],
    violations: [],
  },
  {
    description: 'transfer: REVOKE at the old owner, the new owner from the new version on',
    lines: [rec('a', 1, 1), rec('a', 1, 2), revoke('a', 3, 4), rec('b', 3, 3, { flags: 2 }), rec('b', 4, 5)],
    violations: [],
    packets: 4,
  },
  {
    description: 'a session that comes back to a node at a higher version (A…B…A across versions)',
    lines: [rec('a', 1, 1), revoke('a', 3, 2), rec('a', 5, 6), rec('b', 3, 3), rec('b', 3, 4), revoke('b', 5, 5)],
    violations: [],
  },
  {
    description: 'drops (fenced, stale, forged) are not deliveries',
    lines: [
      rec('a', 1, 1),
      revoke('a', 3, 2),
      rec('a', 1, 4, { accepted: false, drop: 'fenced' }),
      rec('b', 3, 3),
      rec('b', 2, 5, { accepted: false, drop: 'stale' }),
      rec('b', 3, 6, { accepted: false, drop: 'forged', flags: 1 }),
    ],
    violations: [],
    packets: 2,
  },
  {
    description: 'records of older nodes without `accepted` count as deliveries',
    lines: [{ node: 'a', session: S1, version: '1', seq: '1', flags: 0, type: 2, t: 0 }, { node: 'b', session: S1, version: '1', seq: '2', flags: 0, type: 2, t: 0 }],
    violations: [{ session: S1, problem: 'owner: version 1 delivered to a and b' }],
  },
  {
    description: 'two nodes at one version: dual delivery',
    lines: [rec('a', 1, 1), rec('b', 1, 2)],
    violations: [{ session: S1, problem: 'owner: version 1 delivered to a and b' }],
  },
  {
    description: 'A…B…A interleaving within one version',
    lines: [rec('a', 2, 1), rec('a', 2, 3), rec('b', 2, 2)],
    violations: [{ session: S1, problem: 'owner: version 2 delivered to a and b' }],
  },
  {
    description: 'one seq on two nodes',
    lines: [rec('a', 1, 1), rec('b', 2, 1)],
    violations: [{ session: S1, problem: 'seq: seq 1 delivered to both a and b' }],
  },
  {
    description: 'one seq twice on one node',
    lines: [rec('a', 1, 1), rec('a', 1, 1)],
    violations: [{ session: S1, problem: 'seq: seq 1 delivered twice to a' }],
  },
  {
    description: 'a packet of the earlier owner after the later owner’s',
    lines: [rec('a', 1, 1), rec('a', 1, 3), rec('b', 2, 2)],
    violations: [{ session: S1, problem: 'order: seq 3 on a has version 1, below version 2 of seq 2 on b' }],
  },
  {
    description: 'versions going back on one node',
    lines: [rec('a', 2, 2), rec('a', 1, 1)],
    violations: [{ session: S1, problem: 'monotone: a received version 1 (seq 1) after version 2 (seq 2)' }],
  },
  {
    description: 'seq going back at one version on one node and director (two counters on one destination: directors sharing an address, or a clock stepped back)',
    lines: [rec('a', 5, 1_800_000_000_001), rec('a', 5, 1_800_000_000_002), rec('a', 5, 46_080_001), rec('a', 5, 46_080_002)],
    violations: [
      { session: S1, problem: 'monotone: a received seq 46080001 after seq 1800000000002, both at version 5' },
      { session: S1, problem: 'monotone: a received seq 46080002 after seq 1800000000002, both at version 5' },
    ],
  },
  {
    description: 'seq rising again under a higher version, on other directors, or a TCP connection numbered before it connected: no violation',
    lines: [rec('a', 1, 1), rec('a', 2, 3), rec('a', 2, 9, { dst: D2 }), rec('a', 2, 4), rec('a', 2, 2, { dst: D2, proto: 'tcp' }), rec('a', 2, 6)],
    violations: [],
  },
  {
    description: 'a packet accepted below an acknowledged REVOKE',
    lines: [rec('a', 1, 1), revoke('a', 3, 2), rec('a', 2, 4)],
    violations: [{ session: S1, problem: 'fence: a accepted version 2 (seq 4) after acknowledging REVOKE(3)' }],
  },
  {
    description: 'a misaddressed REVOKE (not acknowledged) fences nothing',
    lines: [revoke('a', 3, 1, { accepted: false, drop: 'misaddressed' }), rec('a', 2, 2)],
    violations: [],
  },
  {
    description: 'REVOKE records fall back to the version field when `revoke` is absent',
    lines: [rec('a', 3, 1, { type: 4 }), rec('a', 2, 2)],
    violations: [{ session: S1, problem: 'fence: a accepted version 2 (seq 2) after acknowledging REVOKE(3)' }],
  },
  {
    description: 'two directors: each counts seq on its own (checked per PROXY destination)',
    lines: [rec('a', 1, 1), rec('a', 1, 2), rec('a', 1, 1, { dst: D2, flags: 1 }), rec('a', 2, 2, { dst: D2 }), rec('a', 2, 3)],
    violations: [],
  },
  {
    description: 'u64 versions and seqs compare as bigints',
    lines: [
      rec('a', 0, 0, { version: '18446744073709551614', seq: '18446744073709551614' }),
      rec('b', 0, 0, { version: '18446744073709551615', seq: '18446744073709551615' }),
      rec('a', 0, 0, { version: '9007199254740993', seq: '18446744073709551613' }),
    ],
    violations: [{ session: S1, problem: 'monotone: a received version 9007199254740993 (seq 18446744073709551613) after version 18446744073709551614 (seq 18446744073709551614)' }],
  },
  {
    description: 'violations name their session',
    lines: [rec('a', 1, 1), rec('a', 1, 1, { session: S2 }), rec('b', 1, 2, { session: S2 })],
    violations: [{ session: S2, problem: 'owner: version 1 delivered to a and b' }],
  },
  {
    description: 'records without version/seq (encapsulation none) are skipped with a note',
    lines: [rec('a', null, null), rec('b', null, null)],
    violations: [],
    packets: 0,
    notes: [`session ${S1}: 2 deliveries without version/seq (encapsulation none) not checked`],
  },
];

describe('checkRecords', () => {
  it.each(rows)('$description', (row) => {
    const r = checkRecords(row.lines);
    expect(r.violations).toEqual(row.violations);
    expect(r.ok).toBe(row.violations.length === 0);
    expect(r.sessions).toBe(new Set(row.lines.map((l) => l.session)).size);
    if (row.packets !== undefined) expect(r.packets).toBe(row.packets);
    if (row.notes !== undefined) expect(r.notes).toEqual(row.notes);
  });

  it('lists at most MAX_VIOLATIONS_PER_SESSION per session and counts the rest in a note', () => {
    const lines: RecordLine[] = [];
    for (let i = 1; i <= 30; i++) lines.push(rec('a', 1, 1));
    const r = checkRecords(lines);
    expect(r.violations).toHaveLength(MAX_VIOLATIONS_PER_SESSION);
    expect(r.notes).toEqual([`session ${S1}: ${29 - MAX_VIOLATIONS_PER_SESSION} more violations not listed`]);
  });
});

describe('isRecordLine', () => {
  it.each([
    ['a delivery', rec('a', 1, 1), true],
    ['an unversioned record', rec('a', null, null), true],
    ['an older record (no accepted/dst)', { node: 'a', session: S1, version: '1', seq: '2', flags: 0, type: 2, t: 1 }, true],
    ['an audit line', { time: 'x', seq: 1, session: S1, event: 'create' }, false],
    ['a number as version', { ...rec('a', 1, 1), version: 1 }, false],
    ['a negative seq', { ...rec('a', 1, 1), seq: '-1' }, false],
    ['null', null, false],
    ['an array', [], false],
  ])('%s', (_d, value, expected) => {
    expect(isRecordLine(value)).toBe(expected);
  });
});

// ------------------------------------------------------------------------------------------- properties

interface Segment {
  readonly node: number;
  readonly gap: number; // version step into this segment (≥ 1)
  readonly packets: { readonly bump: boolean; readonly fencedNoise: boolean }[];
}

const NODES = ['node-a', 'node-b', 'node-c'];

const segmentArb = fc.record({
  node: fc.integer({ min: 0, max: NODES.length - 1 }),
  gap: fc.integer({ min: 1, max: 3 }),
  packets: fc.array(fc.record({ bump: fc.boolean(), fencedNoise: fc.boolean() }), { minLength: 1, maxLength: 6 }),
});

interface Event {
  readonly node: string;
  readonly version: number;
  readonly kind: 'data' | 'revoke' | 'fenced';
  readonly segment: number;
}

/**
 * A valid history: owners one after another with increasing versions (a node may own the session again
 * later), reattaches (version bumps) within an ownership, a REVOKE(V) at the old owner on every change
 * and fenced drops of late packets there.
 */
function history(segments: readonly Segment[]): Event[] {
  const events: Event[] = [];
  let v = 0;
  let prev: string | undefined;
  segments.forEach((s, k) => {
    v += s.gap;
    const node = NODES[s.node] as string;
    if (prev !== undefined && prev !== node) events.push({ node: prev, version: v, kind: 'revoke', segment: k });
    for (const p of s.packets) {
      if (p.bump) v++;
      events.push({ node, version: v, kind: 'data', segment: k });
      if (p.fencedNoise && prev !== undefined && prev !== node) events.push({ node: prev, version: v - 1, kind: 'fenced', segment: k });
    }
    prev = node;
  });
  return events;
}

/** Record lines: seq numbers in event order (every datagram takes the next one), grouped by node file. */
function toLines(events: readonly Event[]): RecordLine[] {
  let seq = 0;
  const lines = events.map((e) => {
    seq++;
    if (e.kind === 'revoke') return revoke(e.node, e.version, seq, { node: e.node });
    return rec(e.node, e.version, seq, e.kind === 'fenced' ? { accepted: false, drop: 'fenced' } : {});
  });
  // readRecords reads one file per node: each node's lines stay in arrival order.
  return [...lines].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
}

describe('checkRecords properties', () => {
  it('every valid history passes', () => {
    fc.assert(
      fc.property(fc.array(segmentArb, { minLength: 1, maxLength: 8 }), (segments) => {
        const r = checkRecords(toLines(history(segments)));
        expect(r.violations).toEqual([]);
        expect(r.ok).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('a packet of an earlier owner after a later owner’s packet fails', () => {
    fc.assert(
      fc.property(fc.array(segmentArb, { minLength: 2, maxLength: 8 }), fc.nat(), fc.nat(), (segments, pickLater, pickEarlier) => {
        const events = history(segments);
        const data = events.map((e, i) => ({ e, i })).filter(({ e }) => e.kind === 'data');
        // A data packet of a later ownership whose node differs from an earlier owner's.
        const later = data.filter(({ e }) => data.some(({ e: f }) => f.segment < e.segment && f.version < e.version && f.node !== e.node));
        fc.pre(later.length > 0);
        const at = later[pickLater % later.length] as { e: Event; i: number };
        const earlier = data.filter(({ e }) => e.segment < at.e.segment && e.version < at.e.version && e.node !== at.e.node);
        const from = (earlier[pickEarlier % earlier.length] as { e: Event }).e;
        const mutated = [...events.slice(0, at.i + 1), { ...from }, ...events.slice(at.i + 1)];
        const r = checkRecords(toLines(mutated));
        expect(r.ok).toBe(false);
        expect(r.violations.some((x) => x.session === S1 && x.problem.startsWith('order: '))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('the same packet delivered to a second node fails', () => {
    fc.assert(
      fc.property(fc.array(segmentArb, { minLength: 1, maxLength: 6 }), fc.nat(), fc.integer({ min: 1, max: 2 }), (segments, pick, shift) => {
        const lines = toLines(history(segments));
        const deliveries = lines.filter((l) => l.accepted !== false && l.type !== 4);
        const d = deliveries[pick % deliveries.length] as RecordLine;
        const other = NODES[(NODES.indexOf(d.node) + shift) % NODES.length] as string;
        const r = checkRecords([...lines, { ...d, node: other }]);
        expect(r.ok).toBe(false);
        const pairs = [`${d.node} and ${other}`, `${other} and ${d.node}`];
        expect(r.violations.some((x) => x.session === S1 && pairs.some((p) => x.problem === `seq: seq ${d.seq} delivered to both ${p}`))).toBe(true);
      }),
      { numRuns: 200 },
    );
  });
});
