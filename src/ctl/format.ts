// What `anchor ctl` prints: tables, bars, durations and drain progress, from the admin API's JSON.
// Pure: no I/O, no clock (time comes in as `nowMs`); never throws on any input — a field that is
// missing or of the wrong type prints as "-".

// ---------------------------------------------------------------------------------------------
// Reading untrusted JSON.

/** A string field for display: strings as they are (control characters replaced), numbers as text. */
export function str(v: unknown): string {
  if (typeof v === 'string') return clean(v);
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'boolean') return String(v);
  return '-';
}

/** A finite number, or undefined. */
export function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

export function obj(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

export function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** Replaces control characters (a terminal escape in a field must not reach the terminal). */
export function clean(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

// ---------------------------------------------------------------------------------------------
// Building blocks.

/**
 * A text table: a header row, then one row per item, columns separated by two spaces. Columns listed
 * in `right` are right-aligned (numbers); the last column is not padded.
 */
export function table(headers: readonly string[], rows: readonly (readonly unknown[])[], opts: { right?: readonly number[] } = {}): string {
  const right = new Set(opts.right ?? []);
  const cells = [headers.map((h) => clean(h)), ...rows.map((r) => headers.map((_, i) => str(r[i])))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => width(r[i] as string))));
  return cells
    .map((r) =>
      r
        .map((c, i) => {
          const pad = ' '.repeat((widths[i] as number) - width(c));
          if (right.has(i)) return pad + c;
          return i === r.length - 1 ? c : c + pad;
        })
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Display width (code points; the bars' block characters are one column each). */
function width(s: string): number {
  return [...s].length;
}

const EIGHTHS = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'] as const;

/** A bar of exactly `cells` columns filled to `fraction` (clamped to 0–1), in eighths of a cell. */
export function bar(fraction: number, cells: number): string {
  const n = Math.max(0, Math.floor(cells));
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  const eighths = Math.round(f * n * 8);
  const full = Math.floor(eighths / 8);
  const part = EIGHTHS[eighths % 8] as string;
  const filled = '█'.repeat(full) + part;
  return filled + ' '.repeat(n - width(filled));
}

/** An ASCII bar for logs and dumb terminals: `[#####.....]`, `cells` columns inside the brackets. */
export function asciiBar(fraction: number, cells: number): string {
  const n = Math.max(0, Math.floor(cells));
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  const full = Math.round(f * n);
  return `[${'#'.repeat(full)}${'.'.repeat(n - full)}]`;
}

/**
 * A duration for people: `0s`, `42s`, `3m 05s`, `1h 02m`, `2d 03h`. `-` when unknown (null, negative,
 * not finite). Seconds are rounded up, so an ETA of 0.2 s reads `1s`, never `0s` before the end.
 */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '-';
  const s = Math.ceil(seconds);
  if (s < 60) return `${s}s`;
  const two = (n: number): string => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)}m ${two(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${two(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86_400)}d ${two(Math.floor((s % 86_400) / 3600))}h`;
}

/** Sessions per second, one decimal: `25.0/s`; `-` when unknown. */
export function formatRate(r: unknown): string {
  const n = num(r);
  return n === undefined || n < 0 ? '-' : `${n.toFixed(1)}/s`;
}

/** Seconds between two ISO timestamps, or undefined when either does not parse. */
export function secondsBetween(fromIso: unknown, toIso: unknown): number | undefined {
  if (typeof fromIso !== 'string' || typeof toIso !== 'string') return undefined;
  const a = Date.parse(fromIso);
  const b = Date.parse(toIso);
  return Number.isFinite(a) && Number.isFinite(b) ? (b - a) / 1000 : undefined;
}

// ---------------------------------------------------------------------------------------------
// Drains.

export const ACTIVE_DRAIN_STATES: readonly string[] = ['waiting', 'running'];

export function drainActive(d: unknown): boolean {
  return ACTIVE_DRAIN_STATES.includes(str(obj(d).state));
}

/** How far a drain is, 0–1: the share of its sessions no longer on the node (moved or ended). */
export function drainFraction(d: unknown): number {
  const v = obj(d);
  if (v.state === 'completed') return 1;
  const total = num(v.total);
  if (total === undefined) return 0;
  const remaining = num(v.remaining) ?? total;
  if (total <= 0) return remaining > 0 ? 0 : 1;
  return Math.min(1, Math.max(0, (total - remaining) / total));
}

/** The counts of a drain in words: `12/34 moved, 22 remaining, 0 failed, 25.0/s, ETA 1s`. */
export function drainCounts(d: unknown, nowMs: number): string {
  const v = obj(d);
  const parts = [`${str(v.moved)}/${str(v.total)} moved`, `${str(v.remaining)} remaining`, `${str(v.failed)} failed`];
  if ((num(v.ended) ?? 0) > 0) parts.push(`${str(v.ended)} ended`);
  if (v.state === 'waiting') {
    const until = typeof v.deadline_at === 'string' ? (Date.parse(v.deadline_at) - nowMs) / 1000 : Number.NaN;
    parts.push(`migrates the rest in ${formatDuration(Math.max(0, until))}`);
  } else if (v.state === 'running') {
    parts.push(formatRate(v.rate), `ETA ${formatDuration(v.eta_s === null ? null : num(v.eta_s))}`);
  }
  return parts.join(', ');
}

function drainLabel(d: unknown): string {
  const v = obj(d);
  return `${v.cause === 'failover' ? 'failover' : 'drain'} ${str(v.id)} of ${str(v.node)}`;
}

/**
 * One progress line. `tty`: a block bar sized to `columns` (the line never exceeds it); otherwise a
 * plain line for logs: `drain dr-1 of node-a: running 35% [###.......] 12/34 moved, …`.
 */
export function drainProgressLine(d: unknown, opts: { nowMs: number; tty: boolean; columns?: number }): string {
  const v = obj(d);
  const pct = `${String(Math.floor(drainFraction(d) * 100)).padStart(3)}%`;
  const counts = drainCounts(d, opts.nowMs);
  if (!opts.tty) return `${drainLabel(d)}: ${str(v.state)} ${pct.trim()} ${asciiBar(drainFraction(d), 20)} ${counts}`;
  const columns = Math.max(20, Math.floor(opts.columns ?? 80));
  const head = `${str(v.node)} ${str(v.state)}`;
  // The bar's width depends on the terminal only, so that it does not jump as the counts change.
  const cells = Math.max(10, Math.min(30, columns - 85));
  const line = `${head} ▕${bar(drainFraction(d), cells)}▏${pct}  ${counts}`;
  return width(line) >= columns ? [...line].slice(0, columns - 1).join('') : line;
}

/** Why a cancelled drain stopped, as its record says (`last_error` "cancelled: …"), or null (an older director's record). */
export function cancelReason(d: unknown): string | null {
  const v = obj(d);
  return v.state === 'cancelled' && typeof v.last_error === 'string' && v.last_error.startsWith('cancelled') ? v.last_error : null;
}

/** The line printed when a drain has ended: `drain dr-1 of node-a completed in 1.4s: 34 moved, 0 failed`. */
export function drainSummary(d: unknown): string {
  const v = obj(d);
  const took = secondsBetween(v.started_at, v.finished_at);
  const counts = [`${str(v.moved)} moved`, `${str(v.failed)} failed`, `${str(v.ended)} ended`, `${str(v.remaining)} remaining`].join(', ');
  // A cancelled drain's last_error says why it stopped: said as it is, not as an error.
  const why = cancelReason(d);
  const error = why !== null ? ` (${clean(why)})` : typeof v.last_error === 'string' && v.last_error !== '' ? ` (last error: ${clean(v.last_error)})` : '';
  // The old node's confirmations (REVOKE acknowledgements): said only when some are missing.
  const pending = typeof v.revokes_pending === 'number' && v.revokes_pending > 0 ? `; ${v.revokes_pending} REVOKEs not yet acknowledged by the node` : '';
  const unacked = typeof v.revokes_unacknowledged === 'number' && v.revokes_unacknowledged > 0 ? `; ${v.revokes_unacknowledged} never acknowledged (revoke_unacknowledged)` : '';
  return `${drainLabel(d)} ${str(v.state)}${took !== undefined ? ` in ${took < 60 ? `${took.toFixed(1)}s` : formatDuration(took)}` : ''}: ${counts}${error}${pending}${unacked}`;
}

// ---------------------------------------------------------------------------------------------
// Commands.

/** `anchor ctl status`: readiness, then the nodes with their sessions as bars, then running drains. */
export function formatStatus(ready: unknown, nodes: unknown, drains: unknown, nowMs: number): string {
  const r = obj(ready);
  const items = list(obj(nodes).items).map(obj);
  const counts = items.map((n) => num(n.sessions) ?? 0);
  const total = counts.reduce((a, b) => a + b, 0);
  const max = Math.max(1, ...counts);
  const lines = [
    r.ready === true ? `director: ready, ${total} sessions on ${items.length} nodes` : `director: NOT READY (${str(r.reason)}), ${total} sessions on ${items.length} nodes`,
    '',
    table(
      ['NODE', 'ADDRESS', 'STATE', 'HEALTH', 'WEIGHT', 'SESSIONS', ''],
      // An active node that takes no new sessions says so (a cluster: its active state not yet in the store).
      items.map((n, i) => [n.id, n.address, n.state === 'active' && n.health !== 'unhealthy' && n.takes_sessions === false ? 'active (held)' : n.state, n.health, n.weight, n.sessions, bar((counts[i] as number) / max, 20).trimEnd()]),
      { right: [4, 5] },
    ),
  ];
  const active = list(obj(drains).items).filter(drainActive);
  if (active.length > 0) {
    lines.push('', 'drains in progress:');
    for (const d of active) lines.push(`  ${drainLabel(d)}: ${str(obj(d).state)} ${Math.floor(drainFraction(d) * 100)}%, ${drainCounts(d, nowMs)}`);
  }
  return lines.join('\n');
}

export function formatSessions(page: unknown): string {
  const p = obj(page);
  const items = list(p.items).map(obj);
  if (items.length === 0) return 'no sessions';
  const t = table(
    ['SESSION', 'OWNER', 'VERSION', 'STATE', 'TRANSPORT', 'LAST SEEN'],
    items.map((s) => [s.id, s.owner, s.version, s.state, s.transport, s.last_seen]),
    { right: [2] },
  );
  const more = typeof p.next_cursor === 'string' ? `\n(more: --cursor ${clean(p.next_cursor)})` : '';
  return t + more;
}

export function formatSession(s: unknown): string {
  const v = obj(s);
  const keys = ['id', 'owner', 'version', 'state', 'transport', 'last_seen'];
  return table(
    ['', ''],
    keys.map((k) => [k, v[k]]),
  )
    .split('\n')
    .slice(1)
    .join('\n');
}

/** The answer to a migration: `session … moved node-a → node-b, version 4 (2 held packets replayed)`. */
export function formatMigrated(m: unknown): string {
  const v = obj(m);
  const replayed = num(v.replayed);
  return `session ${str(v.id)} moved ${str(v.from)} → ${str(v.owner)}, now at version ${str(v.version)}${replayed !== undefined && replayed > 0 ? ` (${replayed} held packets replayed)` : ''}`;
}

/**
 * `anchor ctl plan`: how many sessions would go to each node (all of them counted), then the page of
 * moves the director sent (`--limit`), and how to ask for the next page.
 */
export function formatPlan(plan: unknown): string {
  const p = obj(plan);
  const moves = list(p.moves).map(obj);
  const unplaceable = list(p.unplaceable);
  const byTarget = Object.entries(obj(p.byTarget)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const moving = byTarget.reduce((n, [, c]) => n + (num(c) ?? 0), 0);
  const stuck = num(p.unplaceable_count) ?? unplaceable.length;
  const lines = [`draining ${str(p.node)} would move ${moving} sessions${stuck > 0 ? `; ${stuck} have no other node to go to` : ''}`];
  if (byTarget.length > 0) {
    lines.push('', table(['TO', 'SESSIONS'], byTarget, { right: [1] }));
  }
  if (moves.length > 0) {
    lines.push('', table(['SESSION', 'FROM', 'TO', 'VERSION'], moves.map((m) => [m.session, m.from, m.to, m.version]), { right: [3] }));
  }
  if (unplaceable.length > 0) lines.push('', 'no other node to go to:', ...unplaceable.map((id) => `  ${str(id)}`));
  const next = p.next_cursor;
  if (typeof next === 'string') lines.push(`… more: anchor ctl plan ${str(p.node)} --cursor ${next} (--limit N for up to 1000 per page, --json for the page as JSON)`);
  return lines.join('\n');
}

/** One audit line: `2024-05-01T10:00:00.000Z #12 transfer  0123… v2→v3 node-a→node-b cause drain by drain:dr-1`. */
export function formatAuditLine(line: unknown): string {
  const l = obj(line);
  const parts = [str(l.time), `#${str(l.seq)}`, str(l.event).padEnd(9)];
  parts.push(l.session === null ? '(director)' : str(l.session));
  if (l.from_version !== null || l.to_version !== null) parts.push(`v${l.from_version === null ? '-' : str(l.from_version)}→${str(l.to_version)}`);
  if (l.from_owner !== null || l.to_owner !== null) parts.push(`${l.from_owner === null ? '-' : str(l.from_owner)}→${l.to_owner === null ? '-' : str(l.to_owner)}`);
  parts.push(`cause ${str(l.cause)}`, `by ${str(l.actor)}`);
  if (l.detail !== undefined && l.detail !== null) parts.push(clean(safeJson(l.detail)));
  return parts.join(' ');
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v) ?? '-';
  } catch {
    return '-';
  }
}
