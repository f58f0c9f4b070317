// The operator's documents stay true to the code: every metric the Grafana dashboard and the alerting
// rules use is one the director exports (with the labels it has), and every alert has its runbook entry.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { load } from 'js-yaml';
import { createMetricsRegistry, METRIC_NAMES } from '../../src/obs/metrics.js';
import { DirectorStats } from '../../src/obs/stats.js';
import { DropReason } from '../../src/director/outcomes.js';

const doc = (name: string): string => readFileSync(new URL(`../../docs/${name}`, import.meta.url), 'utf8');

/** Every metric a director exports (catalog and process metrics), with its label names. */
async function exported(processMetrics = true): Promise<Map<string, { type: string; labels: string[] }>> {
  const reg = createMetricsRegistry(
    {
      stats: new DirectorStats(),
      sessionsByNode: () => new Map([['node-a', 1]]),
      nodeStates: () => [{ id: 'node-a', state: 'active', health: 'healthy', takesSessions: true }],
      tombstones: () => 0,
      pendingRevokes: () => 0,
      storeBacklog: () => ({ endDeletesInFlight: 0, endDeletesWaiting: 0, endDeletesRetrying: 0, expiring: 0 }),
      tcpOpen: () => 0,
      sessionSockets: () => 0,
      nativeIo: () => true,
      ready: () => true,
      storeFollowing: () => true,
    },
    { processMetrics },
  );
  const out = new Map<string, { type: string; labels: string[] }>();
  for (const m of await reg.getMetricsAsJSON()) {
    const labels = (reg.getSingleMetric(m.name) as unknown as { labelNames?: string[] }).labelNames ?? [];
    out.set(m.name, { type: String(m.type), labels: [...labels] });
    if (String(m.type) === 'histogram') {
      for (const suffix of ['_bucket', '_sum', '_count']) out.set(m.name + suffix, { type: 'counter', labels: [...labels, ...(suffix === '_bucket' ? ['le'] : [])] });
    }
  }
  return out;
}

const dashboard = JSON.parse(doc('grafana-dashboard.json')) as {
  panels: { type: string; title: string; targets?: { expr: string }[] }[];
  templating: { list: { name: string; definition?: string }[] };
};
const alerts = load(doc('alerts.yml')) as {
  groups: { name: string; rules: { alert: string; expr: string; for?: string; labels: { severity: string }; annotations: { summary: string; runbook: string } }[] }[];
};
const runbook = doc('operations.md');

const expressions: { where: string; expr: string }[] = [
  ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: `dashboard panel "${p.title}"`, expr: t.expr }))),
  ...dashboard.templating.list.filter((v) => v.definition !== undefined).map((v) => ({ where: `dashboard variable ${v.name}`, expr: v.definition as string })),
  ...alerts.groups.flatMap((g) => g.rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr }))),
];

describe('Grafana dashboard and alerting rules', () => {
  it('an alert on what is counted once at start, before the first scrape (the audit file found altered), reads the counter, not its increase (which never sees a series born at 1)', () => {
    const rule = alerts.groups.flatMap((g) => g.rules).find((r) => r.alert === 'AnchorAuditFileAltered')!;
    expect(rule.expr).not.toMatch(/\b(increase|rate|irate|delta)\(/);
    expect(rule.expr).toMatch(/anchor_security_events_total\{cause=~"audit_file_behind\|audit_file_changed"\}\) > 0$/);
  });

  it('use only metric names the director exports, with labels those metrics have', async () => {
    const metrics = await exported();
    for (const name of METRIC_NAMES) expect(metrics.has(name), `${name} is in METRIC_NAMES but not exported`).toBe(true);
    // And the catalog names every metric of the director's own (Node's process metrics aside).
    for (const name of (await exported(false)).keys()) expect(METRIC_NAMES as readonly string[], `${name} is exported but not in METRIC_NAMES`).toContain(name);
    expect(expressions.length).toBeGreaterThan(40);
    const used = new Set<string>();
    for (const { where, expr } of expressions) {
      const names = [...expr.matchAll(/\banchor_[a-z0-9_]+/g)].map((m) => m[0]);
      // Only Prometheus' own `up` may stand alone (AnchorDirectorDown).
      if (names.length === 0) expect(expr, `${where} uses no anchor_ metric`).toMatch(/^up\{[^}]*\} == 0$/);
      for (const n of names) {
        expect(metrics.has(n), `${where} uses ${n}, which the director does not export`).toBe(true);
        used.add(n);
      }
      // Label matchers: name{label="…", …} may only name the metric's own labels (job and instance are Prometheus').
      for (const m of expr.matchAll(/\b(anchor_[a-z0-9_]+)\{([^}]*)\}/g)) {
        const own = metrics.get(m[1] as string)?.labels ?? [];
        for (const l of (m[2] as string).matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) {
          const label = l[1] as string;
          expect(['job', 'instance', ...own], `${where}: ${m[1]} has no label "${label}"`).toContain(label);
        }
      }
    }
    // The dashboard covers the catalog's main families.
    for (const n of ['anchor_sessions_active', 'anchor_rejects_sent_total', 'anchor_migrations_total', 'anchor_node_up', 'anchor_ready', 'anchor_client_datagrams_forwarded_total', 'anchor_admissions_total']) {
      expect(used.has(n), `${n} is on no panel or alert`).toBe(true);
    }
  });

  it('label values named in the rules exist: reject reasons, drop reasons, results', () => {
    const rejectReasons = ['unknown_session', 'ownership_conflict', 'store_unavailable', 'director_draining', 'session_terminated', 'no_capacity', 'no_healthy_node', 'rate_limited'];
    for (const { where, expr } of expressions) {
      for (const m of expr.matchAll(/anchor_rejects_sent_total\{[^}]*reason="([a-z_]+)"/g)) expect(rejectReasons, where).toContain(m[1]);
      for (const m of expr.matchAll(/anchor_admissions_failed_total\{[^}]*reason="([a-z_]+)"/g)) expect(rejectReasons, where).toContain(m[1]);
    }
    const dropReasons: readonly string[] = Object.values(DropReason);
    for (const reason of ['hold_overflow', 'fenced']) expect(dropReasons).toContain(reason);
  });

  it('every alert is complete and has its entry in the runbook', () => {
    const rules = alerts.groups.flatMap((g) => g.rules);
    expect(rules.length).toBeGreaterThanOrEqual(10);
    const names = rules.map((r) => r.alert);
    expect(new Set(names).size).toBe(names.length);
    for (const r of rules) {
      expect(['critical', 'warning']).toContain(r.labels.severity);
      expect(r.annotations.summary.length).toBeGreaterThan(10);
      expect(r.annotations.runbook).toBe(`docs/operations.md#${r.alert.toLowerCase()}`);
      expect(runbook, `docs/operations.md has no "### ${r.alert}" section`).toMatch(new RegExp(`^### ${r.alert}$`, 'm'));
    }
    // The list: store unavailable, fence near, rejects by reason, drain stuck, hold-buffer overflow.
    for (const a of ['AnchorStoreUnavailable', 'AnchorFenceNear', 'AnchorRejectRatioHigh', 'AnchorDrainStuck', 'AnchorHoldBufferOverflow']) expect(names).toContain(a);
  });
});
