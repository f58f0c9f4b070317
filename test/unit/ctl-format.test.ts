// What `anchor ctl` prints, from the admin API's JSON: tables, bars, durations, drain progress. Pure.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  asciiBar,
  bar,
  drainFraction,
  drainProgressLine,
  drainSummary,
  formatAuditLine,
  formatDuration,
  formatMigrated,
  formatPlan,
  formatRate,
  formatSession,
  formatSessions,
  formatStatus,
  table,
} from '../../src/ctl/format.js';

const NOW = Date.parse('2026-01-01T12:00:00.000Z');

const drain = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  id: 'dr-0123456789ab',
  node: 'node-a',
  mode: 'migrate',
  cause: 'drain',
  state: 'running',
  total: 40,
  moved: 10,
  remaining: 30,
  failed: 0,
  ended: 0,
  rate: 25,
  eta_s: 1.2,
  started_at: '2026-01-01T11:59:59.000Z',
  deadline_at: null,
  finished_at: null,
  last_error: null,
  ...over,
});

describe('table', () => {
  it('pads columns to the widest cell, right-aligns the ones asked, leaves the last unpadded', () => {
    const t = table(['NODE', 'SESSIONS', 'NOTE'], [['node-a', 5, 'x'], ['b', 1234, 'longer note']], { right: [1] });
    expect(t.split('\n')).toEqual(['NODE    SESSIONS  NOTE', 'node-a         5  x', 'b           1234  longer note']);
  });

  it('prints missing or odd cells as "-" and never lets a control character through', () => {
    const t = table(['A', 'B'], [[undefined, { x: 1 }], ['evil\u001b[2J', null]]);
    expect(t).not.toContain('\u001b');
    expect(t.split('\n')[1]).toBe('-         -');
    expect(t.split('\n')[2]).toBe('evil?[2J  -');
  });
});

describe('bars', () => {
  it('fills in eighths and always has exactly the asked width', () => {
    expect(bar(0, 4)).toBe('    ');
    expect(bar(1, 4)).toBe('████');
    expect(bar(0.5, 4)).toBe('██  ');
    expect(bar(1 / 32, 4)).toBe('▏   ');
    expect(bar(2, 3)).toBe('███');
    expect(bar(Number.NaN, 3)).toBe('   ');
    fc.assert(
      fc.property(fc.double({ noNaN: false }), fc.integer({ min: 0, max: 200 }), (f, n) => {
        expect([...bar(f, n)].length).toBe(n);
        expect(asciiBar(f, n).length).toBe(n + 2);
      }),
    );
  });

  it('has an ASCII form for logs', () => {
    expect(asciiBar(0.3, 10)).toBe('[###.......]');
    expect(asciiBar(-1, 4)).toBe('[....]');
  });
});

describe('durations and rates', () => {
  it.each([
    [0, '0s'],
    [0.2, '1s'],
    [42, '42s'],
    [59.5, '1m 00s'],
    [185, '3m 05s'],
    [3725, '1h 02m'],
    [2 * 86_400 + 3 * 3600, '2d 03h'],
    [null, '-'],
    [undefined, '-'],
    [-1, '-'],
    [Number.POSITIVE_INFINITY, '-'],
  ])('formatDuration(%s) = %s', (s, text) => {
    expect(formatDuration(s)).toBe(text);
  });

  it('formats rates with one decimal', () => {
    expect(formatRate(25)).toBe('25.0/s');
    expect(formatRate(0.04)).toBe('0.0/s');
    expect(formatRate('fast')).toBe('-');
    expect(formatRate(-1)).toBe('-');
  });
});

describe('drain progress', () => {
  it('measures progress as the share of sessions no longer on the node', () => {
    expect(drainFraction(drain())).toBe(0.25);
    expect(drainFraction(drain({ state: 'completed', remaining: 3 }))).toBe(1);
    expect(drainFraction(drain({ total: 0, remaining: 0 }))).toBe(1);
    expect(drainFraction(drain({ total: 0, remaining: 2 }))).toBe(0);
    expect(drainFraction(drain({ remaining: 99 }))).toBe(0);
    expect(drainFraction('garbage')).toBe(0);
  });

  it('prints a plain line for logs: counts, rate and ETA', () => {
    expect(drainProgressLine(drain(), { nowMs: NOW, tty: false })).toBe(
      'drain dr-0123456789ab of node-a: running 25% [#####...............] 10/40 moved, 30 remaining, 0 failed, 25.0/s, ETA 2s',
    );
    expect(drainProgressLine(drain({ cause: 'failover', state: 'completed', moved: 40, remaining: 0 }), { nowMs: NOW, tty: false })).toBe(
      'failover dr-0123456789ab of node-a: completed 100% [####################] 40/40 moved, 0 remaining, 0 failed',
    );
  });

  it('says when a wait drain will migrate what is left', () => {
    const line = drainProgressLine(drain({ mode: 'wait', state: 'waiting', moved: 0, ended: 4, remaining: 36, deadline_at: '2026-01-01T12:03:05.000Z' }), { nowMs: NOW, tty: false });
    expect(line).toContain('4 ended, migrates the rest in 3m 05s');
    expect(line).not.toContain('ETA');
  });

  it('draws a block bar on a terminal that never exceeds its width', () => {
    const line = drainProgressLine(drain(), { nowMs: NOW, tty: true, columns: 120 });
    expect(line).toMatch(/^node-a running ▕█+[▏▎▍▌▋▊▉]? +▏ 25% {2}10\/40 moved, 30 remaining, 0 failed, 25\.0\/s, ETA 2s$/);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 10_000 }), (columns, total, moved) => {
        const l = drainProgressLine(drain({ total, moved, remaining: Math.max(0, total - moved), eta_s: null }), { nowMs: NOW, tty: true, columns });
        expect([...l].length).toBeLessThan(Math.max(20, columns));
      }),
    );
  });

  it('sums a finished drain up', () => {
    expect(drainSummary(drain({ state: 'completed', moved: 40, remaining: 0, finished_at: '2026-01-01T12:00:00.400Z' }))).toBe(
      'drain dr-0123456789ab of node-a completed in 1.4s: 40 moved, 0 failed, 0 ended, 0 remaining',
    );
    expect(drainSummary(drain({ state: 'failed', moved: 38, failed: 2, remaining: 2, last_error: 'freeze: busy', finished_at: '2026-01-01T12:05:00.000Z' }))).toBe(
      'drain dr-0123456789ab of node-a failed in 5m 01s: 38 moved, 2 failed, 0 ended, 2 remaining (last error: freeze: busy)',
    );
    expect(drainSummary(drain({ state: 'completed', moved: 40, remaining: 0, finished_at: '2026-01-01T12:00:00.400Z', revokes_pending: 3, revokes_unacknowledged: 2 }))).toBe(
      'drain dr-0123456789ab of node-a completed in 1.4s: 40 moved, 0 failed, 0 ended, 0 remaining; 3 REVOKEs not yet acknowledged by the node; 2 never acknowledged (revoke_unacknowledged)',
    );
  });

  it('never throws on anything', () => {
    fc.assert(
      fc.property(fc.anything(), (v) => {
        drainProgressLine(v, { nowMs: NOW, tty: true, columns: 80 });
        drainProgressLine(v, { nowMs: NOW, tty: false });
        drainSummary(v);
        formatStatus(v, v, v, NOW);
        formatSessions(v);
        formatSession(v);
        formatPlan(v);
        formatAuditLine(v);
        formatMigrated(v);
      }),
    );
  });
});

describe('commands', () => {
  const nodes = {
    items: [
      { id: 'node-a', address: '127.0.0.1:5001', weight: 1, state: 'draining', health: 'healthy', sessions: 5 },
      { id: 'node-b', address: '127.0.0.1:5002', weight: 2, state: 'active', health: 'healthy', sessions: 10 },
      { id: 'node-c', address: '127.0.0.1:5003', weight: 1, state: 'active', health: 'unhealthy', sessions: 0 },
    ],
  };

  it('status: readiness, a node table with session bars, drains in progress', () => {
    const s = formatStatus({ ready: true }, nodes, { items: [drain(), drain({ id: 'dr-old', state: 'completed' })] }, NOW).split('\n');
    expect(s[0]).toBe('director: ready, 15 sessions on 3 nodes');
    expect(s[2]).toBe('NODE    ADDRESS         STATE     HEALTH     WEIGHT  SESSIONS');
    expect(s[3]).toBe(`node-a  127.0.0.1:5001  draining  healthy         1         5  ${'█'.repeat(10)}`);
    expect(s[4]).toBe(`node-b  127.0.0.1:5002  active    healthy         2        10  ${'█'.repeat(20)}`);
    expect(s[5]).toBe('node-c  127.0.0.1:5003  active    unhealthy       1         0');
    // An active node the director places nothing on (a cluster: its active state not yet in the store).
    const held = formatStatus({ ready: true }, { items: [{ ...nodes.items[1], takes_sessions: false }, { ...nodes.items[2], takes_sessions: false }] }, { items: [] }, NOW).split('\n');
    expect(held[3]).toMatch(/^node-b  127\.0\.0\.1:5002  active \(held\)  healthy /);
    expect(held[4]).toMatch(/^node-c  127\.0\.0\.1:5003  active +unhealthy /);
    expect(s.slice(6)).toEqual(['', 'drains in progress:', '  drain dr-0123456789ab of node-a: running 25%, 10/40 moved, 30 remaining, 0 failed, 25.0/s, ETA 2s']);
    expect(formatStatus({ ready: false, reason: 'director draining' }, { items: [] }, { items: [] }, NOW)).toContain('NOT READY (director draining)');
  });

  it('sessions: one row each, and how to get the next page', () => {
    const page = {
      items: [{ id: 'a'.repeat(32), owner: 'node-a', version: '12', state: 'ATTACHED', transport: '[::1]:4000', last_seen: '2026-01-01T12:00:00.000Z' }],
      next_cursor: 'a'.repeat(32),
    };
    const lines = formatSessions(page).split('\n');
    expect(lines[0]).toMatch(/^SESSION +OWNER +VERSION +STATE +TRANSPORT +LAST SEEN$/);
    expect(lines[1]).toBe(`${'a'.repeat(32)}  node-a       12  ATTACHED  [::1]:4000  2026-01-01T12:00:00.000Z`);
    expect(lines[2]).toBe(`(more: --cursor ${'a'.repeat(32)})`);
    expect(formatSessions({ items: [], next_cursor: null })).toBe('no sessions');
  });

  it('session: one field a line', () => {
    expect(formatSession({ id: 'x', owner: 'node-b', version: '4', state: 'ATTACHED', transport: '127.0.0.1:9', last_seen: 't' }).split('\n')).toEqual([
      'id         x',
      'owner      node-b',
      'version    4',
      'state      ATTACHED',
      'transport  127.0.0.1:9',
      'last_seen  t',
    ]);
  });

  it('plan: moves per target (every session counted), the page of moves, what has nowhere to go, the next page', () => {
    const plan = {
      node: 'node-a',
      sessions: 7,
      byTarget: { 'node-c': 2, 'node-b': 4 },
      unplaceable_count: 1,
      moves: [
        { session: '1'.repeat(32), from: 'node-a', to: 'node-b', version: '1' },
        { session: '2'.repeat(32), from: 'node-a', to: 'node-c', version: '3' },
      ],
      unplaceable: [],
      next_cursor: '2'.repeat(32),
    };
    const lines = formatPlan(plan).split('\n');
    expect(lines[0]).toBe('draining node-a would move 6 sessions; 1 have no other node to go to');
    expect(lines.slice(2, 5)).toEqual(['TO      SESSIONS', 'node-b         4', 'node-c         2']);
    expect(lines.slice(6, 9).map((l) => l.split(/\s+/).slice(0, 3).join(' '))).toEqual(['SESSION FROM TO', `${'1'.repeat(32)} node-a node-b`, `${'2'.repeat(32)} node-a node-c`]);
    expect(lines.at(-1)).toBe(`… more: anchor ctl plan node-a --cursor ${'2'.repeat(32)} (--limit N for up to 1000 per page, --json for the page as JSON)`);
    const last = formatPlan({ node: 'node-a', sessions: 1, byTarget: {}, unplaceable_count: 1, moves: [], unplaceable: ['9'.repeat(32)], next_cursor: null });
    expect(last).toContain('1 have no other node to go to');
    expect(last).toContain(`  ${'9'.repeat(32)}`);
    expect(last).not.toContain('more:');
  });

  it('audit: one line per event', () => {
    expect(
      formatAuditLine({ time: 'T', seq: 7, session: 'ab', event: 'transfer', cause: 'drain', from_version: '2', to_version: '3', from_owner: 'node-a', to_owner: 'node-b', actor: 'drain:dr-1', prev: 'x' }),
    ).toBe('T #7 transfer  ab v2→3 node-a→node-b cause drain by drain:dr-1');
    expect(
      formatAuditLine({ time: 'T', seq: 8, session: null, event: 'failover', cause: 'operator', from_version: null, to_version: null, from_owner: 'node-c', to_owner: null, actor: 'admin', detail: { drain: 'fo-1', sessions: 3 } }),
    ).toBe('T #8 failover  (director) node-c→- cause operator by admin {"drain":"fo-1","sessions":3}');
  });

  it('migrate: from where to where, at which version', () => {
    expect(formatMigrated({ id: 'ab', owner: 'node-b', from: 'node-a', version: '4', replayed: 2 })).toBe('session ab moved node-a → node-b, now at version 4 (2 held packets replayed)');
  });
});
