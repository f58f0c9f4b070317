// Hot-path counters as plain numbers: the data path only increments fields here; the metrics module
// reads them when Prometheus scrapes. Never allocates on increment for a known label.
import { RejectReason, type RejectReasonName } from '../codec/types.js';

/** A counter family keyed by one label value. */
export class LabeledCounter {
  readonly values = new Map<string, number>();
  constructor(initial: readonly string[] = []) {
    for (const k of initial) this.values.set(k, 0);
  }
  inc(label: string, by = 1): void {
    this.values.set(label, (this.values.get(label) ?? 0) + by);
  }
  get(label: string): number {
    return this.values.get(label) ?? 0;
  }
  total(): number {
    let t = 0;
    for (const v of this.values.values()) t += v;
    return t;
  }
}

export const REJECT_NAMES = Object.keys(RejectReason) as RejectReasonName[];
const REJECT_BY_CODE: ReadonlyMap<number, string> = new Map(
  Object.entries(RejectReason).map(([name, code]) => [code, name.toLowerCase()]),
);
export function rejectLabel(code: number): string {
  return REJECT_BY_CODE.get(code) ?? `code_${code}`;
}

export class DirectorStats {
  // Client side (datagrams from clients).
  clientReceived = 0;
  clientReceivedBytes = 0;
  forwarded = 0;
  forwardedBytes = 0;
  /** Client datagrams answered with a REJECT. */
  clientRejected = 0;
  /** Client datagrams held (a transition in flight, or frozen); later replayed or dropped. */
  held = 0;
  /** Held datagrams sent on once their transition completed (after a freeze: flagged REPLAYED). */
  released = 0;
  /** Held datagrams discarded (their session ended while frozen, or its admission failed). */
  heldDiscarded = 0;
  /** REJECTs not sent to an unbound transport because of its 3× budget. */
  rejectsSuppressed = 0;
  readonly rejectsSent = new LabeledCounter(REJECT_NAMES.map((n) => n.toLowerCase()));
  readonly clientDropped = new LabeledCounter();
  readonly malformed = new LabeledCounter();
  // Node side (datagrams from nodes).
  readonly nodeReceived = new LabeledCounter();
  nodeReceivedBytes = 0;
  relayed = 0;
  relayedBytes = 0;
  readonly nodeDropped = new LabeledCounter();
  /** Node datagrams consumed by the director itself: BIND (reattach), BIND conflicts, REVOKE acks. */
  readonly nodeControl = new LabeledCounter(['bind', 'bind_conflict', 'revoke_ack', 'held_reply']);
  // Sessions.
  admissions = 0;
  /** HELLOs held for an admission the store refused (answered with a REJECT), by reject reason. */
  readonly admissionsFailed = new LabeledCounter();
  readonly sessionsEnded = new LabeledCounter();
  readonly sendErrors = new LabeledCounter();
  // TCP front.
  tcpAccepted = 0;
  /** Connections closed without being routed (or closed by policy), by reason. */
  readonly tcpRefused = new LabeledCounter(['preamble_timeout', 'max_connections']);
  /** Bytes from clients (toward nodes), preambles included. */
  tcpBytesIn = 0;
  /** Bytes from nodes toward clients. */
  tcpBytesOut = 0;
  tcpPreambleTimeouts = 0;
  readonly auditEvents = new LabeledCounter();
  readonly securityEvents = new LabeledCounter();
  /** REVOKEs: sent, acknowledged, unacknowledged (after every retry). */
  readonly revokes = new LabeledCounter(['sent', 'acknowledged', 'unacknowledged']);
  /** Migrations by result (ok or the failure reason). */
  readonly migrations = new LabeledCounter();
  /** Changes other directors made in the shared store, applied here: created, updated, refreshed (expiry), ended. */
  readonly remoteChanges = new LabeledCounter(['created', 'updated', 'refreshed', 'ended']);
  /** Coarse expiry refreshes written to a shared store, by result: ok, conflict, unavailable. */
  readonly expiryRefreshes = new LabeledCounter(['ok', 'conflict', 'unavailable']);
}
