// Hot-path counters as plain numbers: the data path only increments fields here; the metrics module
// reads them when Prometheus scrapes. Never allocates on increment for a known label.
import { RejectReason, type RejectReasonName } from '../codec/types.js';

/** One label's count, held by the data path to count with a plain number store (no Map operation). */
export interface CounterCell {
  n: number;
}

/** A counter family keyed by one label value. */
export class LabeledCounter {
  readonly #cells = new Map<string, CounterCell>();
  constructor(initial: readonly string[] = []) {
    for (const k of initial) this.#cells.set(k, { n: 0 });
  }
  /** The cell of `label` (created at 0): `cell.n++` counts it. Take it once, off the per-packet path. */
  cell(label: string): CounterCell {
    let c = this.#cells.get(label);
    if (c === undefined) {
      c = { n: 0 };
      this.#cells.set(label, c);
    }
    return c;
  }
  inc(label: string, by = 1): void {
    this.cell(label).n += by;
  }
  get(label: string): number {
    return this.#cells.get(label)?.n ?? 0;
  }
  /** Every label's count now (a snapshot, read at scrape time). */
  get values(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [k, c] of this.#cells) out.set(k, c.n);
    return out;
  }
  total(): number {
    let t = 0;
    for (const c of this.#cells.values()) t += c.n;
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
  /** Drain ticks slowed to a tenth of the rate because the event loop ran later than drain.max_loop_lag_ms. */
  drainBackoffs = 0;
  /** Drains and failovers run here that ended, by state. */
  readonly drainsFinished = new LabeledCounter(['completed', 'failed', 'cancelled']);
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
  readonly nodeControl = new LabeledCounter(['bind', 'bind_conflict', 'rebind', 'revoke_ack', 'held_reply']);
  // Sessions.
  admissions = 0;
  /** HELLOs held for an admission the store refused (answered with a REJECT), by reject reason. */
  readonly admissionsFailed = new LabeledCounter();
  /** Admissions a shared store refused because the owner's node state changed after this director's view (counted in admissionsFailed too). */
  admissionsStaleNodeState = 0;
  /** Transfers a shared store refused because the target node's state changed after this director's view (the session is thawed in place; a drain tries it again). */
  transfersStaleNodeState = 0;
  readonly sessionsEnded = new LabeledCounter();
  readonly sendErrors = new LabeledCounter();
  /** Transparent forwarding: ports the kernel gave a new session socket that were held toward the session's node (the socket was not used). */
  portRebinds = 0;
  // TCP front.
  tcpAccepted = 0;
  /** Connections closed without being routed (or closed by policy), by reason. */
  readonly tcpRefused = new LabeledCounter(['preamble_timeout', 'max_connections']);
  /** Bytes from clients (toward nodes), preambles included. */
  tcpBytesIn = 0;
  /** Bytes from nodes toward clients. */
  tcpBytesOut = 0;
  tcpPreambleTimeouts = 0;
  /** Routed connections the native splice pump could not take (they run on Node streams), by reason. */
  readonly tcpSpliceFallbacks = new LabeledCounter();
  readonly auditEvents = new LabeledCounter();
  /** Audit files that failed (open or write), each once. */
  auditWriteErrors = 0;
  /** Times the chain's head could not be recorded beside the audit file (`<audit.path>.head`). */
  auditHeadNotRecorded = 0;
  readonly securityEvents = new LabeledCounter();
  /** REVOKEs: sent, acknowledged, unacknowledged (after every retry). */
  readonly revokes = new LabeledCounter(['sent', 'acknowledged', 'unacknowledged']);
  /** Migrations by result (ok or the failure reason). */
  readonly migrations = new LabeledCounter();
  /** Admin API requests refused for who sent them: unauthorized (401), forbidden (403), too_many_connections (closed at accept). */
  readonly adminRefused = new LabeledCounter(['unauthorized', 'forbidden', 'too_many_connections']);
  /** Changes other directors made in the shared store, applied here: created, updated, refreshed (expiry), ended. */
  /** not_held: a session another director wrote that this director's table could not hold (full, or an unreadable transport). */
  readonly remoteChanges = new LabeledCounter(['created', 'updated', 'refreshed', 'ended', 'not_held']);
  /** Coarse expiry refreshes written to a shared store, by result: ok, conflict, unavailable. */
  readonly expiryRefreshes = new LabeledCounter(['ok', 'conflict', 'unavailable']);
}
