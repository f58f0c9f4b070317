// GET /v1/stats: the director's main counters as one JSON object with the time they were read, for the
// status page's chart (rates are differences between two reads). Pure: reads the counters it is given.
// Each field is named after its Prometheus metric without the `anchor_` prefix (src/obs/metrics.ts).
import type { DirectorStats, LabeledCounter } from '../obs/stats.js';

export interface StatsView {
  readonly director: string;
  /** When the counters were read (ISO 8601) and the same as milliseconds since the epoch. */
  readonly time: string;
  readonly time_ms: number;
  readonly admissions_total: number;
  readonly client_datagrams_received_total: number;
  readonly client_datagrams_forwarded_total: number;
  readonly client_datagrams_rejected_total: number;
  readonly rejects_sent_total: Record<string, number>;
  readonly client_datagrams_dropped_total: Record<string, number>;
  readonly node_datagrams_relayed_total: number;
  readonly migrations_total: Record<string, number>;
}

function byLabel(c: LabeledCounter): Record<string, number> {
  return Object.fromEntries([...c.values].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export function statsView(director: string, s: DirectorStats, wallMs: number): StatsView {
  return {
    director,
    time: new Date(wallMs).toISOString(),
    time_ms: wallMs,
    admissions_total: s.admissions,
    client_datagrams_received_total: s.clientReceived,
    client_datagrams_forwarded_total: s.forwarded,
    client_datagrams_rejected_total: s.clientRejected,
    rejects_sent_total: byLabel(s.rejectsSent),
    client_datagrams_dropped_total: byLabel(s.clientDropped),
    node_datagrams_relayed_total: s.relayed,
    migrations_total: byLabel(s.migrations),
  };
}
