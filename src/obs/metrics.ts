// The one metric catalog: every Prometheus name Anchor exports, its help text, and the identities that
// hold between counters. Reads DirectorStats at scrape time (own registry, never prom-client's global).
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { DirectorStats, LabeledCounter } from './stats.js';
import type { NativeUdpCounters } from '../net/native/index.js';

/**
 * Counter identities (checked by the integration tests):
 *   anchor_client_datagrams_received_total =
 *       anchor_client_datagrams_forwarded_total       (sent to the owner at once)
 *     + anchor_client_datagrams_held_total            (a transition in flight, or frozen)
 *     + anchor_client_datagrams_rejected_total        (answered with a REJECT)
 *     + sum(anchor_client_datagrams_dropped_total)    (by reason)
 *   held = anchor_client_datagrams_released_total + anchor_held_datagrams_discarded_total
 *          + sum(anchor_admissions_failed_total) + the datagrams still held (bounded per session)
 *   sum(anchor_node_datagrams_received_total) =
 *       anchor_node_datagrams_relayed_total + sum(anchor_node_control_total) + sum(anchor_node_datagrams_dropped_total)
 *   anchor_rejects_sent_total{reason} counts every REJECT sent (also those answering a failed admission
 *   or a stale BIND); anchor_rejects_suppressed_total counts REJECTs not sent to an unbound transport
 *   because they would exceed 3× the bytes it sent us.
 */
export interface MetricsSources {
  readonly stats: DirectorStats;
  /** Live sessions per owner node (all configured nodes, zero included). */
  sessionsByNode(): Map<string, number>;
  /** `takesSessions`: the node is in the ring (new sessions may be placed on it). */
  nodeStates(): { id: string; state: string; health: string; takesSessions: boolean }[];
  tombstones(): number;
  pendingRevokes(): number;
  /** Store writes waiting for room: deletes of sessions ended here, expiries (see Ownership). */
  storeBacklog?(): { endDeletesWaiting: number; endDeletesInFlight: number; endDeletesRetrying: number; expiring: number };
  tcpOpen(): number;
  sessionSockets(): number;
  /** Local ports held per node after their session's socket closed (transparent forwarding). */
  quarantinedPorts?(): number;
  /** Sessions whose PROXY v2 header is kept ready, and headers taken back to make room (session.header_cache). */
  headerCache?(): { held: number; evicted: number };
  /** The embedded store's records: read from the session table's rows, or kept apart (store/table-records.ts); absent or null for a shared store. */
  storeRecords?(): { inRows: number; apart: number } | null;
  /** Whether the UDP data path runs on the native batched addon (else node:dgram). */
  nativeIo(): boolean;
  /** The native UDP sockets' own counters by kind (empty on node:dgram). */
  nativeUdp?(): readonly NativeUdpCounters[];
  /** The TCP data path (`splice`: the native pump; `stream`: Node streams); absent or null without TCP listeners. */
  tcpDataPath?(): 'splice' | 'stream' | null;
  /** TCP connections the native pump splices now. */
  tcpSpliced?(): number;
  /** Reads the native pump made by copying (recv, send) because a connection could not have a pipe. */
  tcpSpliceCopies?(): number;
  /** Called before the TCP byte counters are read: spliced connections' bytes are added to the stats. */
  syncTcp?(): void;
  ready(): boolean;
  /** Whether audit lines reach their file (or the log when audit.path is null): false from a failed open or write until a reopen works. */
  auditOk?(): boolean;
  /** Audit lines not yet known to be in the file (being written, or waiting while it cannot be), and those lost to it (the wait was full). */
  auditUnwritten?(): { lines: number; lost: number };
  /** Whether the shared store's change feed is followed (absent: a store of one director). */
  storeFollowing?(): boolean;
}

export const METRIC_NAMES = [
  'anchor_client_datagrams_received_total',
  'anchor_client_bytes_received_total',
  'anchor_client_datagrams_forwarded_total',
  'anchor_client_datagrams_rejected_total',
  'anchor_client_datagrams_held_total',
  'anchor_client_datagrams_released_total',
  'anchor_held_datagrams_discarded_total',
  'anchor_rejects_suppressed_total',
  'anchor_node_bytes_sent_total',
  'anchor_rejects_sent_total',
  'anchor_client_datagrams_dropped_total',
  'anchor_malformed_datagrams_total',
  'anchor_node_datagrams_received_total',
  'anchor_node_bytes_received_total',
  'anchor_node_datagrams_relayed_total',
  'anchor_client_bytes_sent_total',
  'anchor_node_datagrams_dropped_total',
  'anchor_node_control_total',
  'anchor_security_events_total',
  'anchor_revokes_total',
  'anchor_revokes_pending',
  'anchor_store_deletes',
  'anchor_migrations_total',
  'anchor_admin_requests_refused_total',
  'anchor_drain_backoffs_total',
  'anchor_drains_finished_total',
  'anchor_remote_changes_total',
  'anchor_expiry_refreshes_total',
  'anchor_node_up',
  'anchor_upstream_session_sockets',
  'anchor_upstream_ports_quarantined',
  'anchor_upstream_port_rebinds_total',
  'anchor_header_cache_sessions',
  'anchor_header_cache_evictions_total',
  'anchor_store_records',
  'anchor_udp_native_io',
  'anchor_udp_native_syscalls_total',
  'anchor_udp_native_datagrams_total',
  'anchor_udp_native_gso_sends_total',
  'anchor_udp_native_gso_datagrams_total',
  'anchor_udp_native_gso_fallbacks_total',
  'anchor_udp_native_receive_errors_total',
  'anchor_tcp_native_io',
  'anchor_tcp_connections_spliced',
  'anchor_tcp_splice_fallbacks_total',
  'anchor_tcp_splice_copy_reads_total',
  'anchor_tcp_connections_accepted_total',
  'anchor_tcp_connections_refused_total',
  'anchor_tcp_connections_open',
  'anchor_tcp_bytes_total',
  'anchor_tcp_preamble_timeouts_total',
  'anchor_admissions_total',
  'anchor_admissions_failed_total',
  'anchor_admissions_stale_node_state_total',
  'anchor_transfers_stale_node_state_total',
  'anchor_sessions_ended_total',
  'anchor_send_errors_total',
  'anchor_audit_events_total',
  'anchor_audit_write_errors_total',
  'anchor_audit_head_not_recorded_total',
  'anchor_audit_file_ok',
  'anchor_audit_unwritten_lines',
  'anchor_audit_lines_lost_total',
  'anchor_sessions_active',
  'anchor_tombstones',
  'anchor_store_following',
  'anchor_ready',
] as const;

function plain(reg: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [reg],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

function labeled(reg: Registry, name: string, help: string, label: string, read: () => LabeledCounter): void {
  new Counter({
    name,
    help,
    labelNames: [label],
    registers: [reg],
    collect() {
      this.reset();
      for (const [k, v] of read().values) this.inc({ [label]: k }, v);
    },
  });
}

export function createMetricsRegistry(src: MetricsSources, opts: { processMetrics: boolean }): Registry {
  const reg = new Registry();
  const s = src.stats;
  plain(reg, 'anchor_client_datagrams_received_total', 'Datagrams received from clients on the UDP listeners.', () => s.clientReceived);
  plain(reg, 'anchor_client_bytes_received_total', 'Bytes received from clients (UDP payload).', () => s.clientReceivedBytes);
  plain(reg, 'anchor_client_datagrams_forwarded_total', 'Client datagrams forwarded to their owner node.', () => s.forwarded);
  plain(reg, 'anchor_node_bytes_sent_total', 'Bytes sent to nodes, PROXY v2 headers included.', () => s.forwardedBytes);
  plain(reg, 'anchor_client_datagrams_rejected_total', 'Client datagrams answered with a REJECT (one per datagram).', () => s.clientRejected);
  plain(reg, 'anchor_client_datagrams_held_total', 'Client datagrams held while their session had a transition in flight or was frozen.', () => s.held);
  plain(reg, 'anchor_client_datagrams_released_total', 'Held client datagrams sent on once their transition completed (after a freeze they are flagged REPLAYED).', () => s.released);
  plain(reg, 'anchor_held_datagrams_discarded_total', 'Held client datagrams discarded because their session ended or its admission failed.', () => s.heldDiscarded);
  plain(reg, 'anchor_rejects_suppressed_total', 'REJECTs not sent to an unbound transport: they would exceed 3x the bytes it sent, or its listener\'s protocol has none (OpenVPN, offset).', () => s.rejectsSuppressed);
  labeled(reg, 'anchor_rejects_sent_total', 'REJECT packets sent to clients, by reason (one per client datagram answered); node_state_changed: a STORE_UNAVAILABLE answering an admission a cluster refused because the node\'s state was written meanwhile (a drain or undrain), not a store outage.', 'reason', () => s.rejectsSent);
  labeled(reg, 'anchor_client_datagrams_dropped_total', 'Client datagrams dropped without an answer, by reason.', 'reason', () => s.clientDropped);
  labeled(reg, 'anchor_malformed_datagrams_total', 'Malformed JV1 datagrams (client and node side), by decoder reason.', 'reason', () => s.malformed);
  labeled(reg, 'anchor_node_datagrams_received_total', 'Datagrams received from each node on its upstream socket.', 'node', () => s.nodeReceived);
  plain(reg, 'anchor_node_bytes_received_total', 'Bytes received from nodes.', () => s.nodeReceivedBytes);
  plain(reg, 'anchor_node_datagrams_relayed_total', 'Node datagrams relayed to the session\'s bound client transport.', () => s.relayed);
  plain(reg, 'anchor_client_bytes_sent_total', 'Bytes sent to clients (relayed replies and REJECTs).', () => s.relayedBytes);
  labeled(reg, 'anchor_node_datagrams_dropped_total', 'Node datagrams dropped, by reason (node_not_owner: a reply from a node that does not own the session).', 'reason', () => s.nodeDropped);
  labeled(reg, 'anchor_node_control_total', 'Node datagrams consumed by the director: bind (a jump confirmed), bind_conflict (a stale BIND), rebind (a TCP reconnect from the ip:port the session is bound to, confirmed: no store write), revoke_ack (of a REVOKE pending to that node), revoke_ack_unmatched (of none: a second acknowledgement of a REVOKE sent again, or a forged one; nothing changes), held_reply (a reply held while a reattach is written, relayed to the transport bound once it settles: not counted again as relayed).', 'kind', () => s.nodeControl);
  labeled(reg, 'anchor_security_events_total', 'SECURITY_EVENT audit lines, by cause (aborted transitions, non-owner replies or BINDs, unacknowledged REVOKEs).', 'cause', () => s.securityEvents);
  labeled(reg, 'anchor_revokes_total', 'REVOKEs sent to former owners, acknowledged, and left unacknowledged after every retry.', 'outcome', () => s.revokes);
  labeled(reg, 'anchor_remote_changes_total', 'Session changes made by other directors (shared store) and applied here, by kind; not_held: a session this director\'s table could not hold (session.max reached, or a stored transport it cannot read), so it is missing from this director\'s view (a drain through it asks the store before it completes).', 'kind', () => s.remoteChanges);
  labeled(reg, 'anchor_expiry_refreshes_total', 'Idle-expiry refreshes of sessions served here, written to a shared store, by result.', 'result', () => s.expiryRefreshes);
  labeled(reg, 'anchor_drains_finished_total', 'Node drains and failovers run by this director that ended, by state: completed (every session moved), failed (some could not move), cancelled (undrained, or an automatic failover stopped: its node healthy again or this director\'s claim lost with its lease; the drain record\'s last_error says which).', 'state', () => s.drainsFinished);
  plain(reg, 'anchor_drain_backoffs_total', 'Drain ticks that started moves at a tenth of drain.rate because a turn of the event loop had kept the sockets waiting longer than drain.max_loop_lag_ms (the data path comes first).', () => s.drainBackoffs);
  labeled(reg, 'anchor_admin_requests_refused_total', 'Admin API requests refused for who sent them: unauthorized (401: no or a wrong token), forbidden (403: another site\'s page, or a host name without admin.token), too_many_connections (a connection closed at once: its address had ADMIN_MAX_CONNECTIONS_PER_PEER, 32, open already).', 'reason', () => s.adminRefused);
  labeled(reg, 'anchor_migrations_total', 'Session migrations (operator, drain, failover) by result: ok, transferred (on its new owner, not resumed yet: the stale-freeze sweep resumes it), invalid_target (the request named no such node, or the session\'s own owner: answered 400 bad_target) or the failure reason.', 'result', () => s.migrations);
  labeled(reg, 'anchor_admissions_failed_total', 'Admissions the ownership store refused, by the REJECT reason the held HELLO is answered with; node_state_changed: refused by a store shared by directors because the chosen node\'s state key was written after this director last saw it (answered STORE_UNAVAILABLE; not a store outage).', 'reason', () => s.admissionsFailed);
  plain(reg, 'anchor_admissions_stale_node_state_total', 'Admissions a store shared by directors refused because the chosen node\'s state key was written after this director last saw it (a drain or undrain, on any director, a few milliseconds before); also anchor_admissions_failed_total{reason="node_state_changed"}. Answered REJECT STORE_UNAVAILABLE (counted in anchor_rejects_sent_total{reason="node_state_changed"}); the client\'s next HELLO is admitted under the state seen then.', () => s.admissionsStaleNodeState);
  plain(reg, 'anchor_transfers_stale_node_state_total', 'Session moves (drain, migration, failover) a store shared by directors refused because the target node\'s state key was written after this director last saw it (another director began draining it a few milliseconds before). Nothing moved: the session is thawed on its owner, and a drain or failover tries it again under the state seen then. Not a security event.', () => s.transfersStaleNodeState);
  plain(reg, 'anchor_admissions_total', 'Sessions admitted (HELLO accepted, owner picked by the ring).', () => s.admissions);
  labeled(reg, 'anchor_sessions_ended_total', 'Sessions ended, by cause: the cause of the audit line (client_close, node_close, idle_ttl, operator, drain_unmovable, failover_unmovable, connection_closed, client_gone, upstream_connect_failed, …).', 'cause', () => s.sessionsEnded);
  labeled(reg, 'anchor_send_errors_total', 'Send errors by destination kind (node, client): failed control sends (REJECT, REVOKE) and errors the kernel reports on node sockets (ICMP unreachable, a failed queued send). Forwards and relays are sent without a per-datagram callback.', 'to', () => s.sendErrors);
  labeled(reg, 'anchor_audit_events_total', 'Audit events emitted, by event (each goes to the audit file — or waits for it, or is lost to it: anchor_audit_unwritten_lines, anchor_audit_lines_lost_total — or to the log when audit.path is null).', 'event', () => s.auditEvents);
  plain(reg, 'anchor_audit_head_not_recorded_total', 'Times the audit chain\'s head could not be recorded beside the audit file (<audit.path>.head, at start, stop and reopen): the next start cannot hold the file to it (an alteration while stopped goes unseen), and one after a rotation begins a new chain.', () => s.auditHeadNotRecorded);
  plain(reg, 'anchor_audit_write_errors_total', 'Times the audit file could not be opened, written or synced (a retry that fails again is not counted again): until it can be written, audit lines wait in memory (up to audit.backlog_bytes) and the director is not ready.', () => s.auditWriteErrors);
  new Gauge({
    name: 'anchor_sessions_active',
    help: 'Live sessions in the table, by owner node.',
    labelNames: ['node'],
    registers: [reg],
    collect() {
      this.reset();
      for (const [node, n] of src.sessionsByNode()) this.set({ node }, n);
    },
  });
  plain(reg, 'anchor_tcp_connections_accepted_total', 'TCP client connections accepted by the TCP front.', () => s.tcpAccepted);
  labeled(reg, 'anchor_tcp_connections_refused_total', 'TCP client connections closed by the director, by reason (preamble_timeout, malformed_*, not_mine, reject_*, bind_timeout, bind_missing, upstream_connect, client_gone (also before its preamble was complete, or reset before it was accepted), idle_timeout, max_connections, internal_error (logged: tcp connection failed), …).', 'reason', () => s.tcpRefused);
  plain(reg, 'anchor_tcp_preamble_timeouts_total', 'TCP connections that did not present their JV1 header within tcp.preamble_timeout_ms.', () => s.tcpPreambleTimeouts);
  new Counter({
    name: 'anchor_tcp_bytes_total',
    help: 'Bytes through the TCP front: direction "in" from clients toward nodes, "out" from nodes toward clients.',
    labelNames: ['direction'],
    registers: [reg],
    collect() {
      this.reset();
      src.syncTcp?.();
      this.inc({ direction: 'in' }, s.tcpBytesIn);
      this.inc({ direction: 'out' }, s.tcpBytesOut);
    },
  });
  new Gauge({
    name: 'anchor_upstream_session_sockets',
    help: 'Upstream UDP sockets open for transparent forwarding (backend.encapsulation none): one per session, bounded by session.max.',
    registers: [reg],
    collect() {
      this.set(src.sessionSockets());
    },
  });
  new Gauge({
    name: 'anchor_upstream_ports_quarantined',
    help: '(node, local port) pairs of closed session sockets: the port is not used toward that node again until backend.port_quarantine_s has passed (transparent forwarding).',
    registers: [reg],
    collect() {
      this.set(src.quarantinedPorts?.() ?? 0);
    },
  });
  plain(reg, 'anchor_upstream_port_rebinds_total', "Ports the kernel gave a new session socket that were held toward the session's node: the socket was not used (transparent forwarding).", () => s.portRebinds);
  new Gauge({
    name: 'anchor_header_cache_sessions',
    help: 'Sessions whose PROXY v2 header is kept ready (the recently active ones, at most session.header_cache).',
    registers: [reg],
    collect() {
      this.set(src.headerCache?.().held ?? 0);
    },
  });
  plain(
    reg,
    'anchor_header_cache_evictions_total',
    'PROXY v2 headers taken back from an idle session to make room for an active one (session.header_cache); the session builds its header again on its next datagram.',
    () => src.headerCache?.().evicted ?? 0,
  );
  new Gauge({
    name: 'anchor_store_records',
    help: 'The in-process store\'s records: held="row", read from their session\'s table row; held="apart", kept apart because the row says something else while a write is in flight (or the row is gone). apart stays near 0: one that keeps growing is a defect to report. No series with a shared store.',
    labelNames: ['held'],
    registers: [reg],
    collect() {
      const r = src.storeRecords?.() ?? null;
      if (r === null) return;
      this.set({ held: 'row' }, r.inRows);
      this.set({ held: 'apart' }, r.apart);
    },
  });
  new Gauge({
    name: 'anchor_udp_native_io',
    help: 'Whether the UDP listeners and node links run on the native batched-UDP addon (1) or on node:dgram (0): see socket.native.',
    registers: [reg],
    collect() {
      this.set(src.nativeIo() ? 1 : 0);
    },
  });
  new Counter({
    name: 'anchor_udp_native_syscalls_total',
    help: 'System calls of the native UDP sockets, by socket kind (client listeners, node links) and call (recvmmsg, sendmmsg); with anchor_udp_native_datagrams_total, the datagrams per call (the batch size).',
    labelNames: ['socket', 'call'],
    registers: [reg],
    collect() {
      this.reset();
      for (const c of src.nativeUdp?.() ?? []) {
        this.inc({ socket: c.socket, call: 'recvmmsg' }, c.recvCalls);
        this.inc({ socket: c.socket, call: 'sendmmsg' }, c.sendCalls);
      }
    },
  });
  new Counter({
    name: 'anchor_udp_native_datagrams_total',
    help: 'Datagrams the native UDP sockets received and the kernel took to send, by socket kind and direction.',
    labelNames: ['socket', 'direction'],
    registers: [reg],
    collect() {
      this.reset();
      for (const c of src.nativeUdp?.() ?? []) {
        this.inc({ socket: c.socket, direction: 'received' }, c.recvDatagrams);
        this.inc({ socket: c.socket, direction: 'sent' }, c.sendDatagrams);
      }
    },
  });
  new Counter({
    name: 'anchor_udp_native_gso_sends_total',
    help: 'Sends of the native UDP sockets that carried several datagrams as one segmentation-offload (UDP_SEGMENT) message (socket.gso), by socket kind; anchor_udp_native_gso_datagrams_total counts the datagrams in them.',
    labelNames: ['socket'],
    registers: [reg],
    collect() {
      this.reset();
      for (const c of src.nativeUdp?.() ?? []) this.inc({ socket: c.socket }, c.gsoSends);
    },
  });
  new Counter({
    name: 'anchor_udp_native_gso_datagrams_total',
    help: 'Datagrams sent inside segmentation-offload messages (also in anchor_udp_native_datagrams_total), by socket kind.',
    labelNames: ['socket'],
    registers: [reg],
    collect() {
      this.reset();
      for (const c of src.nativeUdp?.() ?? []) this.inc({ socket: c.socket }, c.gsoDatagrams);
    },
  });
  new Counter({
    name: 'anchor_udp_native_gso_fallbacks_total',
    help: 'Segmentation-offload messages the kernel refused, by socket kind: their datagrams went again one by one (nothing lost); after a refusal not about the datagram size (e.g. a device that cannot checksum them) the socket sends without GSO.',
    labelNames: ['socket'],
    registers: [reg],
    collect() {
      this.reset();
      for (const c of src.nativeUdp?.() ?? []) this.inc({ socket: c.socket }, c.gsoFallbacks);
    },
  });
  new Counter({
    name: 'anchor_udp_native_receive_errors_total',
    help: 'Errors the kernel reported on a receive of a native UDP socket (e.g. ICMP port unreachable on a node link), by socket kind; the socket reads on.',
    labelNames: ['socket'],
    registers: [reg],
    collect() {
      this.reset();
      for (const c of src.nativeUdp?.() ?? []) this.inc({ socket: c.socket }, c.recvErrors);
    },
  });
  new Gauge({
    name: 'anchor_tcp_native_io',
    help: 'Whether routed TCP connections are spliced in the kernel by the native pump (1) or piped through Node streams (0): see tcp.native.',
    registers: [reg],
    collect() {
      this.set(src.tcpDataPath?.() === 'splice' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'anchor_tcp_connections_spliced',
    help: 'TCP connections open now whose bytes the native pump splices (a subset of anchor_tcp_connections_open).',
    registers: [reg],
    collect() {
      this.set(src.tcpSpliced?.() ?? 0);
    },
  });
  new Counter({
    name: 'anchor_tcp_splice_copy_reads_total',
    help: 'Reads the native TCP pump made through memory (recv, then send) instead of splice(2) because a spliced connection could not have a pipe (the process or system out of descriptors); the connection carries on.',
    registers: [reg],
    collect() {
      this.reset();
      this.inc(src.tcpSpliceCopies?.() ?? 0);
    },
  });
  labeled(reg, 'anchor_tcp_splice_fallbacks_total', 'Routed TCP connections the native pump could not take, so they run on Node streams, by reason (write_pending, EMFILE, …).', 'reason', () => s.tcpSpliceFallbacks);
  new Gauge({
    name: 'anchor_tcp_connections_open',
    help: 'TCP client connections open now.',
    registers: [reg],
    collect() {
      this.set(src.tcpOpen());
    },
  });
  new Gauge({
    name: 'anchor_node_up',
    help: '1 when a node takes new sessions (active, healthy or not checked, and in a cluster with its active state in the shared store), else 0; labels carry its state and health.',
    labelNames: ['node', 'state', 'health'],
    registers: [reg],
    collect() {
      this.reset();
      for (const n of src.nodeStates()) this.set({ node: n.id, state: n.state, health: n.health }, n.takesSessions ? 1 : 0);
    },
  });
  new Gauge({
    name: 'anchor_revokes_pending',
    help: 'REVOKEs sent and not yet acknowledged.',
    registers: [reg],
    collect() {
      this.set(src.pendingRevokes());
    },
  });
  if (src.storeBacklog !== undefined) {
    const backlog = src.storeBacklog;
    new Gauge({
      name: 'anchor_store_deletes',
      help: 'Store deletes of sessions ended here (closed, terminated: in_flight at most 4096, then waiting in order; retrying: the store could not be reached, tried again after 1 s doubling to 30 s) and of idle sessions expiring (expiring, at most 4096).',
      labelNames: ['kind'],
      registers: [reg],
      collect() {
        const b = backlog();
        this.set({ kind: 'in_flight' }, b.endDeletesInFlight);
        this.set({ kind: 'waiting' }, b.endDeletesWaiting);
        this.set({ kind: 'retrying' }, b.endDeletesRetrying);
        this.set({ kind: 'expiring' }, b.expiring);
      },
    });
  }
  new Gauge({
    name: 'anchor_tombstones',
    help: 'Terminated session ids remembered so that their packets get REJECT SESSION_TERMINATED.',
    registers: [reg],
    collect() {
      this.set(src.tombstones());
    },
  });
  new Gauge({
    name: 'anchor_audit_file_ok',
    help: '1 while audit lines reach audit.path (or the log when it is null); 0 from a failed open or write of the file until it can be written again (tried every second, and at SIGHUP). The director is not ready meanwhile.',
    registers: [reg],
    collect() {
      this.set(src.auditOk === undefined || src.auditOk() ? 1 : 0);
    },
  });
  const unwritten = (): { lines: number; lost: number } => src.auditUnwritten?.() ?? { lines: 0, lost: 0 };
  new Gauge({
    name: 'anchor_audit_unwritten_lines',
    help: 'Audit lines not yet known to be in audit.path: being written, or kept in memory while the file cannot be written (up to audit.backlog_bytes), to be written in order once it can.',
    registers: [reg],
    collect() {
      this.set(unwritten().lines);
    },
  });
  plain(reg, 'anchor_audit_lines_lost_total', 'Audit lines that will never be in audit.path: the file could not be written and the lines kept for it already filled audit.backlog_bytes. The chain in the file has a gap there, which anchor audit verify reports.', () => unwritten().lost);
  if (src.storeFollowing !== undefined) {
    const following = src.storeFollowing;
    new Gauge({
      name: 'anchor_store_following',
      help: '1 while this director follows the shared store\'s changes (listed, watch open); 0 while it lists again after a watch gap or cannot list: its copy of the sessions may be out of date, and it is not ready meanwhile.',
      registers: [reg],
      collect() {
        this.set(following() ? 1 : 0);
      },
    });
  }
  new Gauge({
    name: 'anchor_ready',
    help: '1 when the director admits new sessions (the same as /readyz), else 0.',
    registers: [reg],
    collect() {
      this.set(src.ready() ? 1 : 0);
    },
  });
  if (opts.processMetrics) collectDefaultMetrics({ register: reg, prefix: 'anchor_' });
  return reg;
}
