// The composition root: builds every component from a validated config and explicit dependencies and
// wires them together. Nothing else constructs components; only src/main.ts touches `process`.
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { AdminServer, type AdminBackend, type NodeView, type OpResult, type SessionView } from './admin/server.js';
import { statsView } from './admin/stats-view.js';
import { parseHostPortLiteral } from './config/load.js';
import type { AnchorConfig, ListenerConfig } from './config/schema.js';
import { createCodec, type CodecSpec } from './codec/codec.js';
import { isUnspecified, transportKey } from './codec/ip.js';
import type { Transport } from './codec/types.js';
import { CANDIDATE_TTL_MS, sequenceBase, DirectorCore } from './director/core.js';
import { UdpDirector } from './director/director.js';
import { TCP_LISTENER } from './director/outcomes.js';
import { QuarantineFile } from './net/quarantine-file.js';
import { migrationResultLabel, Ownership, type StepFailure } from './director/ownership.js';
import { parseStoredTransport, type ParsedTransport } from './director/stored-transport.js';
import { DrainCoordinator } from './drain/coordinator.js';
import { FailoverBackoff } from './drain/failover-backoff.js';
import { loadNativeTcp, loadNativeUdp, type NativeTcpBinding, type NativeTcpLoad, type NativeUdpBinding, type NativeUdpLoad } from './net/native/index.js';
import { TcpFront } from './net/tcp-front.js';
import { Membership, NodeHealth, NodeState } from './nodes/membership.js';
import { HealthProber } from './nodes/prober.js';
import { SharedNodeStates, type SharedNodeChange } from './nodes/shared-states.js';
import { createAudit, type AuditSink, type AuditStart } from './obs/audit.js';
import { Permits } from './util/permits.js';
import { SliceEnder } from './director/ender.js';
import type { Logger } from './obs/logger.js';
import { createMetricsRegistry } from './obs/metrics.js';
import { DirectorStats } from './obs/stats.js';
import { createHasher } from './ring/hash.js';
import type { SessionRecord, SessionSnapshot } from './session/table.js';
import { MemoryStore } from './store/memory.js';
import { APART_RESERVE, TableRecords } from './store/table-records.js';
import { EtcdStore } from './store/etcd.js';
import type { OwnershipStore } from './store/store.js';
import { defaultMargin, ResyncGate, fenceState, FenceState } from './store/fence.js';
import { ConfigError } from './errors.js';
import type { Clock } from './util/clock.js';

/** Drain dry runs (GET /v1/nodes/{id}/drain-plan) computed at once at most; more are answered 429. */
const PLANS_AT_ONCE = 2;
/** How long (ms) a turn of ending sessions (after a partition, at the stop deadline) may run before it gives the loop back. */
const END_SLICE_MS = 5;
/**
 * How long (in etcd call timeouts) a node-state write whose answer was lost is waited for before it is
 * taken as not committed: etcd may commit a proposal after the caller's deadline, but not this long after.
 */
const SHARED_WRITE_UNKNOWN_BOUND_CALLS = 5;
/** How long a director waits before claiming the automatic failover of a node again, after another held it (or the claim failed). */
const CLAIM_RETRY_MS = 1000;

export interface AnchorDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  /** Called when an operator asks the director to drain itself (POST /v1/director/drain). */
  readonly onDrainRequested?: () => void;
  /** The ownership store; by default the one `store.kind` names. */
  readonly store?: OwnershipStore;
  /** How the native addons are loaded (by default from build/Release; a test may say they are missing). */
  readonly loadNative?: { readonly udp: () => NativeUdpLoad; readonly tcp: () => NativeTcpLoad };
}

export interface Anchor {
  /** Where clients send datagrams (ports resolved). */
  readonly udpAddresses: Transport[];
  /** Where clients connect over TCP (empty when listen.tcp is). */
  readonly tcpAddresses: Transport[];
  readonly adminAddress: Transport;
  /** Graceful: not ready, no new sessions, serve existing ones until they end or the deadline. */
  drain(deadlineMs?: number): Promise<{ remaining: number }>;
  /** Opens the audit file again (after a log rotation; SIGHUP): the error when it could not be opened. */
  reopenAudit(): Promise<Error | null>;
  /** Immediate and idempotent. */
  close(): Promise<void>;
  /**
   * After close: audit lines that never reached the audit file — still waiting for it when the director
   * stopped, or lost on the way (its backlog full) — or null when every line did (or there is no file).
   */
  auditUnwritten(): { waiting: number; lost: number } | null;
  readonly stats: DirectorStats;
}

function codecSpec(l: ListenerConfig): CodecSpec {
  return l.codec === 'offset' ? { codec: 'offset', offset: l.offset ?? 0, length: l.length ?? 1 } : { codec: l.codec };
}

function hp(s: string): Transport {
  const t = parseHostPortLiteral(s);
  if (t === undefined) throw new Error(`unreachable: validated address "${s}" does not parse`);
  return t;
}

/** The admin API's error code for a refused step: a session that is not there is `session_not_found`, as on GET (`not_found` is a route's). */
function refusalCode(reason: StepFailure): string {
  return reason === 'not_found' ? 'session_not_found' : reason;
}

const FAILURE_STATUS: Record<StepFailure, number> = {
  not_found: 404,
  gone: 404,
  stale_version: 409,
  invalid_transition: 409,
  busy: 409,
  conflict: 409,
  bad_target: 400,
  unmovable: 409,
  no_target: 409,
  cancelled: 409,
  unavailable: 503,
};

/**
 * Which sessions can move to another node (Ownership's `movable`): PROXY v2 carries the version that lets
 * a new owner take a session over; transparent forwarding and protocols other than JV1 keep their state on
 * the node. A session's protocol is its listener's codec — where the listener is known: a TCP session
 * (TCP_LISTENER) does not say which TCP listener took it, and a datagram session read from the store and
 * not served here since has the first UDP listener of its family, a guess. Those move only when every
 * listener of their kind speaks JV1 (before, an OpenVPN or offset session was moved, then broken).
 */
export function sessionsMovable(config: Pick<AnchorConfig, 'backend' | 'listen'>): (rec: Pick<SessionRecord, 'listener' | 'servedHere'>) => boolean {
  const ppv2 = config.backend.encapsulation === 'ppv2';
  const tcpJv1 = config.listen.tcp.every((l) => l.codec === 'jv1');
  const udpJv1 = config.listen.udp.every((l) => l.codec === 'jv1');
  return (rec) => {
    if (!ppv2) return false;
    if (rec.listener === TCP_LISTENER) return tcpJv1;
    // Listeners of host addresses met on a wildcard one (past the configured ones) are JV1's.
    const codec = (rec.listener >= 0 ? config.listen.udp[rec.listener]?.codec : undefined) ?? 'jv1';
    return codec === 'jv1' && (udpJv1 || rec.servedHere);
  };
}

/** A wall clock before this (2025-01-01) was never set: the director says so at start. */
const WALL_CLOCK_SANE_MS = Date.UTC(2025, 0, 1);

/**
 * How long after the store's expiry a director that only mirrors a session expires it: enough for the
 * serving director's refresh (written a third of the TTL ahead) to land, and for clocks a second apart.
 */
export function sharedExpiryGraceMs(idleTtlMs: number): number {
  return Math.max(1000, Math.min(idleTtlMs / 10, 10_000));
}

/** How long a session may stay frozen with no migration of it running here before it is resumed. */
export function staleFreezeMs(quiesceMs: number): number {
  return Math.max(5000, 4 * quiesceMs);
}

/** Whether `path` is a directory (missing or unreadable: no; the open says why). */
function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

export async function createAnchor(config: AnchorConfig, deps: AnchorDeps): Promise<Anchor> {
  const { clock, logger } = deps;
  const directorId = config.director.id;
  // The native data paths first: a refusal (`on` without its addon) opens nothing and changes nothing.
  const load = deps.loadNative ?? { udp: () => loadNativeUdp(), tcp: () => loadNativeTcp() };
  // UDP I/O through the native batched addon when it was built (`socket.native`); node:dgram otherwise.
  let native: NativeUdpBinding | null = null;
  if (config.socket.native !== 'off') {
    const loaded = load.udp();
    if (loaded.ok) native = loaded.binding;
    else if (config.socket.native === 'on') throw new ConfigError([{ path: 'socket.native', message: `is "on" but the native UDP addon cannot be used: ${loaded.reason}` }]);
    else logger.info({ reason: loaded.reason }, 'native UDP I/O not available: using node:dgram');
    if (native !== null && config.backend.encapsulation === 'none') {
      logger.warn('socket.native has no effect with backend.encapsulation: none (transparent forwarding uses a node:dgram socket per session)');
    }
  }
  if (config.backend.encapsulation === 'ppv2' && config.backend.port_quarantine_path !== null) {
    logger.warn('backend.port_quarantine_path has no effect with backend.encapsulation: ppv2 (only transparent forwarding gives each session a port of its own)');
  }
  // Routed TCP connections spliced by the native pump when it was built (`tcp.native`); Node streams otherwise.
  let tcpNative: NativeTcpBinding | null = null;
  if (config.listen.tcp.length > 0 && config.tcp.native !== 'off') {
    const loaded = load.tcp();
    if (loaded.ok) tcpNative = loaded.binding;
    else if (config.tcp.native === 'on') throw new ConfigError([{ path: 'tcp.native', message: `is "on" but the native TCP splice pump cannot be used: ${loaded.reason}` }]);
    else logger.info({ reason: loaded.reason }, 'native TCP splice pump not available: using Node streams');
  }
  // Files the director keeps must be files: a directory (a path typed without its file name) would fail
  // at the first read or write, not here with the key that names it.
  for (const [key, path] of [
    ['audit.path', config.audit.path],
    ['backend.port_quarantine_path', config.backend.encapsulation === 'none' ? config.backend.port_quarantine_path : null],
  ] as const) {
    if (path === null) continue;
    if (isDirectory(path)) throw new ConfigError([{ path: key, message: `${JSON.stringify(path)} is a directory, not a file: name a file (it is created if missing)` }]);
    // The file is created if missing, its directory is not: a typo there would leave the director up but
    // never ready (its audit lines waiting for a file that cannot be opened).
    const dir = dirname(resolve(path));
    if (!isDirectory(dir)) throw new ConfigError([{ path: key, message: `${JSON.stringify(path)}: its directory ${JSON.stringify(dir)} does not exist (the file is created if missing, the directory is not)` }]);
  }
  const hasher = await createHasher();
  const stats = new DirectorStats();
  let auditStart: AuditStart | null = null;
  let unwritten: { waiting: number; lost: number } | null = null;
  const audit: AuditSink = createAudit({
    path: config.audit.path,
    wallClock: clock.wall,
    onStart: (st) => (auditStart = st),
    onHeadNotRecorded: (err) => {
      stats.auditHeadNotRecorded++;
      logger.warn({ err, path: config.audit.path }, 'audit chain head not recorded beside the audit file: the next start cannot hold the file to it, and if the file is rotated away before then, that start begins a new chain');
    },
    onLine: config.audit.path === null ? (line) => logger.info({ audit: line }, 'audit') : undefined,
    onRotate: (movedTo) => logger.warn({ moved_to: movedTo }, 'audit file does not end in a whole audit line followed by a newline (a write cut short by a crash, or the file edited); moved aside, starting a new chain'),
    backlogBytes: config.audit.backlog_bytes,
    syncMs: config.audit.sync_interval_ms,
    onSyncError: (err) => {
      stats.auditWriteErrors++;
      logger.error({ err, path: config.audit.path }, 'audit file could not be synced to the disk: lines written to it may be lost if the host loses power or crashes');
    },
    onError: (err) => {
      stats.auditWriteErrors++;
      logger.error({ err, path: config.audit.path, backlog_bytes: config.audit.backlog_bytes }, 'audit file cannot be written: audit lines wait in memory (up to audit.backlog_bytes) and the director is not ready until they can be written; the file is tried again every second (and at SIGHUP)');
    },
    onRetry: (attempt) => logger.debug({ path: config.audit.path, attempt }, 'audit file tried again'),
    onRecover: () => logger.info({ path: config.audit.path }, 'audit file written again: the lines that waited are in it, the chain unbroken'),
    onBacklogFull: (bytes) => logger.error({ path: config.audit.path, bytes }, 'audit lines waiting for the audit file fill audit.backlog_bytes: further lines are lost to the file until it can be written (anchor_audit_lines_lost_total); its chain will have a gap there'),
    onUnwritten: (u) => {
      unwritten = { waiting: u.lines, lost: u.lost };
      logger.error({ path: config.audit.path, waiting: u.lines, lost: u.lost }, 'audit lines did not reach the audit file before the director stopped (they are in no file)');
    },
  });
  noteAuditStart(auditStart, audit, stats, logger, config.director.id, config.audit.path);
  let tableRecords: TableRecords | null = null;
  const store: OwnershipStore =
    deps.store ??
    (config.store.kind === 'etcd'
      ? await EtcdStore.connect({
          endpoints: config.store.etcd.endpoints,
          prefix: config.store.etcd.prefix,
          callTimeoutMs: config.store.etcd.call_timeout_ms,
          leaseTtlS: config.store.etcd.lease_ttl_s,
          onError: (err, context) => logger.warn({ err, context }, 'etcd store'),
        })
      : // One director: its store holds the same sessions as its table, read from the table's rows
        // (table-records.ts; bound below, once the table is made).
        new MemoryStore({ holder: (tableRecords = new TableRecords({ reserve: Math.min(config.session.max, APART_RESERVE) })) }));
  const nodes = config.nodes.map((n) => ({ id: n.id, address: hp(n.address), weight: n.weight }));
  // Several directors share this store (etcd): node states, drains and session expiry are shared too.
  const sharedStore = store.watchShared !== undefined;
  // Self-fencing from the store lease (a shared store); the in-process store has none and is always ok.
  const leaseOkAt = store.leaseOkAt?.bind(store);
  const fenceCfg = { ttlMs: store.leaseTtlMs ?? 0, marginMs: defaultMargin(store.leaseTtlMs ?? 3000) };
  const storeFence = (): FenceState => (leaseOkAt === undefined ? FenceState.OK : fenceState(leaseOkAt(), clock.now(), fenceCfg));
  /**
   * Ends the sessions of `snap` (those still live, in the same life, when their turn comes), audited with
   * `cause`, a slice of END_SLICE_MS per call. A snapshot of ids and lives (SessionTable.snapshot), not a
   * list of records: at a million sessions that list took seconds in one turn and ~500 MB, made when the
   * director stops or comes back from a partition.
   */
  const ender = (snap: SessionSnapshot, cause: string): SliceEnder =>
    new SliceEnder(
      snap.count,
      (i) => {
        const rec = c.table.snapshotted(snap, i);
        if (rec !== undefined) ownership.terminate(rec.id, cause, directorId);
      },
      clock,
      END_SLICE_MS,
    );
  // store.partition_policy `terminate`: the sessions served here when the store came back after the fence
  // expired, being ended a slice per turn (see partitionWatch). Until the last has ended the director acts
  // as if the fence were still expired: nothing forwarded, admitted or changed, so none of them is served
  // again, and the sockets are not held up for the seconds a million ends take.
  let ending: SliceEnder | null = null;
  // After the lease lapsed nothing is forwarded until the store has been listed again (ResyncGate): what
  // this director holds may have moved, ended or been admitted anew elsewhere meanwhile.
  const resyncGate = store.resync !== undefined && leaseOkAt !== undefined ? new ResyncGate(fenceCfg) : null;
  const dataFence = (): FenceState => (resyncGate === null || leaseOkAt === undefined ? storeFence() : resyncGate.gate(leaseOkAt(), clock.now(), store.following !== false));
  const fence = (): FenceState => (ending !== null ? FenceState.EXPIRED : dataFence());
  let core: DirectorCore | null = null;
  const startWall = clock.wall();
  if (config.store.kind !== 'memory' && startWall < WALL_CLOCK_SANE_MS) {
    // Sequence bases and the store's expiries are wall-clock times: a clock that was never set breaks both.
    logger.warn({ wall_clock: new Date(startWall).toISOString() }, 'the wall clock reads before 2025: sequence numbers of sessions read from the store may repeat ones sent before a restart, and shared expiries are wrong; set the clock (NTP) before starting');
  }
  const membership = new Membership(hasher, nodes, (ring) => core?.setRing(ring), { healthChecked: config.health.enabled });
  core = new DirectorCore(
    {
      sessionMax: config.session.max,
      idleTtlMs: config.session.idle_ttl_s * 1000,
      tombstoneMs: config.session.tombstone_s * 1000,
      admissionRate: config.admission.per_source_rate,
      admissionBurst: config.admission.per_source_burst,
      rejectRate: config.reject.per_source_rate,
      rejectBurst: config.reject.per_source_burst,
      holdMax: config.session.hold_max_packets,
      holdMaxBytes: config.session.hold_max_bytes,
      sharedExpiryGraceMs: sharedExpiryGraceMs(config.session.idle_ttl_s * 1000),
      recordCache: config.session.header_cache,
      reserveRows: config.session.max,
      // A TCP candidate sends nothing more while its connection waits for the owner's connect and BIND.
      candidateTtlMs: Math.max(CANDIDATE_TTL_MS, config.tcp.connect_timeout_ms + config.tcp.bind_timeout_ms),
      seqBase: sequenceBase(startWall),
    },
    membership.ring,
    (id) => membership.reachable(id),
    config.listen.udp.map((l) => createCodec(codecSpec(l)).datagram),
  );
  const c = core;
  tableRecords?.bind(c.table, directorId);
  c.setFence(fence);
  if (store.following !== undefined) c.setFollowing(() => store.following !== false);
  const eligible = (id: string): boolean => membership.ring.nodes.some((n) => n.id === id);
  const ownership = new Ownership(
    {
      directorId,
      quiesceMs: config.drain.quiesce_ms,
      revokeTimeoutMs: config.revoke.timeout_ms,
      revokeRetries: config.revoke.retries,
      // A shared store: every director expires a session by the expiry the serving director refreshes.
      refreshExpiry: sharedStore,
      idleTtlMs: config.session.idle_ttl_s * 1000,
      // A transfer whose etcd answer was lost lands within a few call timeouts, or never.
      unknownWriteBoundMs: SHARED_WRITE_UNKNOWN_BOUND_CALLS * config.store.etcd.call_timeout_ms,
    },
    {
      core: c,
      store,
      audit,
      stats,
      clock,
      eligible,
      knownNode: (id) => membership.get(id) !== undefined,
      fence,
      movable: sessionsMovable(config),
    },
  );
  const director = new UdpDirector(
    {
      directorId,
      native,
      listen: config.listen.udp.map((l) => hp(l.address)),
      nodes,
      encapsulation: config.backend.encapsulation,
      headerCache: config.session.header_cache,
      recvBufferBytes: config.socket.recv_buffer_bytes,
      sendBufferBytes: config.socket.send_buffer_bytes,
      gso: config.socket.gso,
      portQuarantineMs: config.backend.port_quarantine_s * 1000,
    },
    { core: c, ownership, clock, logger, stats },
  );
  const quarantineFile =
    config.backend.encapsulation === 'none' && config.backend.port_quarantine_path !== null ? new QuarantineFile(config.backend.port_quarantine_path, director, { wall: () => clock.wall(), director: directorId, logger }) : null;
  quarantineFile?.start(new Set(nodes.map((n) => n.id)));
  const tcp =
    config.listen.tcp.length === 0
      ? null
      : new TcpFront(
          {
            listen: config.listen.tcp.map((l) => hp(l.address)),
            nodes,
            encapsulation: config.backend.encapsulation,
            preambleTimeoutMs: config.tcp.preamble_timeout_ms,
            preambleMaxBytes: config.tcp.preamble_max_bytes,
            idleTimeoutMs: config.tcp.idle_timeout_s * 1000,
            connectTimeoutMs: config.tcp.connect_timeout_ms,
            bindTimeoutMs: config.tcp.bind_timeout_ms,
            maxConnections: config.tcp.max_connections,
            codecs: config.listen.tcp.map((l) => createCodec(codecSpec(l)).stream),
            native: tcpNative,
          },
          { core: c, ownership, clock, logger, stats },
        );
  const sharedNodes = new SharedNodeStates(directorId, randomBytes(6).toString('hex'));
  // Nothing is placed on a node by a state of it the cluster may not hold (a write of ours on its way, or
  // one the store did not take): the store's node-state guard then asks for the state it delivered.
  store.guardNodeViews?.((node) => sharedNodes.placeGuard(node));
  /**
   * A node this director holds active while the shared store may not (its undrain on its way, or refused
   * and written again later) takes no new sessions meanwhile: they go to another node, instead of a REJECT
   * from the store's node-state guard (placeGuard) for each.
   */
  const holdUnproven = (node: string): void => {
    membership.setPlacementHeld(node, sharedNodes.placementsUnproven(node));
  };
  /** A node state the cluster settled on (SharedNodeStates), applied here. */
  const applySharedNode = (node: string, change: SharedNodeChange | null): void => {
    if (change !== null) membership.setState(node, change.state);
    holdUnproven(node);
    if (change === null) return;
    // Another director's undrain stops a drain of the node running here (our own did that when made).
    if (change.state === NodeState.ACTIVE && change.director !== directorId) {
      const d = drains.cancel(node, `cancelled: the node was undrained on director ${change.director}`);
      if (d !== undefined) logger.info({ drain: d.id, node, by: change.director }, 'drain cancelled: the node was undrained on another director');
    } else if (change.state === NodeState.ACTIVE && drains.stopsAdmissions(node)) {
      // Our own earlier undrain is what the cluster holds, and the draining write of the drain made since
      // did not make it (refused, or lost): the node takes sessions again, so the drain could never be
      // settled. Cancelled, and said so.
      const d = drains.cancel(node, 'cancelled: its draining state did not reach the shared store, which holds the node active; drain it again');
      if (d !== undefined) logger.warn({ drain: d.id, node }, 'drain cancelled: its draining state did not reach the shared store, which holds the node active; drain it again');
    }
  };
  /**
   * Writes this director's state of `node` to the shared store. A write that did not commit (refused, or its
   * answer lost and not seen committed within the bound) is written again — after 1 s, doubling up to 30 s —
   * for as long as it is still what this director holds for the node and no other write of it is in flight:
   * written once, one refusal left the directors disagreeing about the node for good.
   */
  const shareNodeState = (node: string, state: NodeState, attempt: number): void => {
    if (store.putShared === undefined || closed !== null) return;
    const value = sharedNodes.wrote(node, state);
    holdUnproven(node);
    const notCommitted = (): void => {
      const wasPending = sharedNodes.pending(node, value);
      applySharedNode(node, sharedNodes.failed(node, value));
      if (!wasPending || closed !== null || membership.get(node)?.state !== state || sharedNodes.inFlight(node)) return;
      setTimeout(() => {
        if (membership.get(node)?.state === state && !sharedNodes.inFlight(node)) shareNodeState(node, state, attempt + 1);
        else logger.info({ node, state }, 'node state not written again: this director holds another state for the node now');
      }, Math.min(30_000, 1000 * 2 ** attempt)).unref();
    };
    void store.putShared('nodes', node, value).then((r) => {
      if (r.ok) return applySharedNode(node, sharedNodes.answered(node, value, r.revision));
      logger.warn({ node, state, message: r.message, attempt }, 'node state not shared with the other directors: written again later');
      if (r.maybeApplied !== true) return notCommitted();
      // Its answer was lost: it may have been committed, after what the watch delivers meanwhile, and
      // then it decides. It stays in flight until its echo, or until it cannot be committed any more.
      setTimeout(() => {
        if (closed === null) notCommitted();
      }, SHARED_WRITE_UNKNOWN_BOUND_CALLS * config.store.etcd.call_timeout_ms).unref();
    });
  };
  const drains = new DrainCoordinator(
    { rate: config.drain.rate, concurrency: config.drain.concurrency, directorId, maxLoopLagMs: config.drain.max_loop_lag_ms },
    {
      core: c,
      ownership,
      clock,
      logger,
      stats,
      setDraining: (node, on) => {
        const state = on ? NodeState.DRAINING : NodeState.ACTIVE;
        membership.setState(node, state);
        // Shared with the other directors of a cluster (they stop admitting to it too; an undrain cancels
        // a drain of the node running on another director).
        shareNodeState(node, state, 0);
      },
      // A drain that stops admissions completes once its draining state is what the watch delivered last,
      // with no write of ours on its way (every admission to the node committed before it has then come
      // through too, and none can commit after it).
      ...(store.putShared === undefined ? {} : { nodeStateSettled: (node: string) => !sharedNodes.inFlight(node) && sharedNodes.delivered(node) === NodeState.DRAINING }),
      // Every director lists every drain: the record carries this director's lease, so it goes when we do.
      publish:
        store.putShared === undefined
          ? undefined
          : (view) => {
              void store.putShared?.('drains', view.id, view, { withLease: true }).then((r) => {
                if (!r.ok) logger.debug({ drain: view.id, message: r.message }, 'drain record not shared');
              });
            },
    },
  );
  const startFailover = (node: string, actor: string): ReturnType<DrainCoordinator['start']> => {
    // An operator's failover also stops new sessions going to the node (it may be healthy: a node being
    // taken away now); an automatic one is of an unhealthy node, which takes none until healthy again.
    const r = drains.start(node, { mode: 'migrate', deadlineS: 0, cause: 'failover', actor, stopAdmissions: actor !== 'auto-failover' });
    if (r.created || r.escalated === true) {
      stats.auditEvents.inc('failover');
      audit.write({ session: null, event: 'failover', cause: actor === 'auto-failover' ? 'node_unhealthy' : 'operator', from_version: null, to_version: null, from_owner: node, to_owner: null, actor, detail: { drain: r.view.id, sessions: r.view.total } });
    }
    return r;
  };
  const prober = config.health.enabled
    ? new HealthProber({
        nodes,
        intervalMs: config.health.interval_ms,
        timeoutMs: config.health.timeout_ms,
        rise: config.health.rise,
        fall: config.health.fall,
        clock,
        onChange: (node, health, detail) => {
          membership.setHealth(node, health);
          logger.warn({ node, health, consecutive: detail.consecutive }, 'node health changed');
        },
        onError: (err) => logger.debug({ err }, 'health probe error'),
      })
    : null;
  // Node states and drain records, followed through the shared store's watch in commit order. The entries
  // the store holds now come first, in this very call, applied whoever wrote them (this director before a
  // restart, with the same id, included); then every write, this director's echoes included, as
  // SharedNodeStates decides (every director ends with the state committed last).
  const unwatchShared = store.watchShared?.((ev, revision) => {
    if (ev.kind === 'failovers') return; // claims: read only when one is taken (claimShared)
    if (ev.kind === 'nodes') {
      if (ev.value === null || membership.get(ev.id) === undefined) return;
      applySharedNode(ev.id, sharedNodes.event(ev.id, ev.value, revision));
      return;
    }
    drains.applyShared(ev.id, ev.value);
  });
  // Coarse expiry refreshes of the sessions served here (a shared store only). Each call walks its share of
  // the table (a pass per quarter of a third of the idle TTL): every 100 ms, so that a share stays small
  // (~8 ms of event loop at 1,000,000 sessions and the default 120 s TTL).
  const refreshTick =
    !sharedStore ? null : setInterval(() => ownership.refreshExpiries(clock.now()), Math.min(100, Math.max(20, (config.session.idle_ttl_s * 1000) / 8)));
  refreshTick?.unref();
  // Sessions left frozen (a migration cut short by the store, or run by a director that died) are resumed.
  const thawTick = setInterval(() => ownership.thawStale(clock.now(), staleFreezeMs(config.drain.quiesce_ms)), 1000);
  thawTick.unref();
  // store.partition_policy: when the fence comes back from 'expired', `terminate` ends every session.
  let fenceWas: FenceState = FenceState.OK;
  const endSome = (): void => {
    if (ending === null || closed !== null) return;
    if (!ending.slice()) {
      setImmediate(endSome);
      return;
    }
    logger.info({ sessions: ending.total }, 'every session served here when the store came back has ended (partition_policy terminate)');
    ending = null;
  };
  const partitionWatch = setInterval(() => {
    dataFence(); // sees a lapse even when no packet asks
    if (resyncGate?.wantsResync === true) {
      resyncGate.resyncAsked();
      logger.warn({ sessions: c.table.size }, 'store lease back after it lapsed: listing the store again before forwarding (what this director holds may be stale)');
      store.resync?.();
    }
    const now = storeFence();
    if (fenceWas !== FenceState.EXPIRED && now === FenceState.EXPIRED) {
      logger.error({ policy: config.store.partition_policy, sessions: c.table.size }, 'store lease fence expired: forwarding, admissions and transitions stopped until the store answers again');
    }
    if (fenceWas === FenceState.EXPIRED && now === FenceState.OK) {
      logger.warn({ policy: config.store.partition_policy, sessions: c.table.size }, 'store back after the fence expired');
      if (config.store.partition_policy === 'terminate' && ending === null) {
        // The sessions this director serves, whose traffic it had to refuse: not those it only mirrors
        // (other directors served them all along; ending them would end them in the whole cluster).
        ending = ender(c.table.snapshot((servedHere) => servedHere), 'partition');
        endSome();
      }
    }
    fenceWas = now;
  }, 100);
  partitionWatch.unref();
  let autoFailover: NodeJS.Timeout | null = null;
  if (prober !== null && config.failover.mode === 'auto') {
    const backoff = new FailoverBackoff();
    /**
     * Automatic failovers this director claimed in the shared store, by node: the value it wrote, and the
     * lease it holds it with (null: a claim of its id without one, taken as its own).
     */
    const failoverClaims = new Map<string, { value: object; lease: string | null }>();
    const claiming = new Set<string>();
    /** When a node's claim may be tried again after it was held elsewhere or could not be written. */
    const claimRefusedUntil = new Map<string, number>();
    /**
     * Claims to take back, by node (the value written): ended (their failover is over) but not yet released,
     * or written with an answer lost (perhaps held). Released until the store answers (a release compares
     * the value: one that is not there is answered too); the node is not claimed again meanwhile, so there is
     * one per node at most. Held, a claim would keep every other director from failing the node over for as
     * long as this director runs.
     */
    const toRelease = new Map<string, object>();
    const releasing = new Set<string>();
    autoFailover = setInterval(() => {
      const now = clock.now();
      for (const n of membership.list()) {
        if (n.health !== NodeHealth.UNHEALTHY) {
          // No longer unhealthy: its automatic failover stops (sessions moved stay moved). Went on, it would
          // move the sessions admitted to the node since it came back too, and never end under steady load.
          // Not one an operator joined (a drain or failover asked for while it ran): that one goes on.
          const auto = backoff.forget(n.id);
          const running = auto === undefined ? undefined : drains.active(n.id);
          if (running !== undefined && running.id === auto && running.state === 'running' && !drains.stopsAdmissions(n.id)) {
            drains.cancel(n.id, 'cancelled: the node is healthy again, its automatic failover stopped (sessions moved stay moved)');
            logger.warn({ node: n.id, drain: auto, moved: running.moved }, 'node healthy again: its automatic failover stopped');
          }
          continue;
        }
        if (!mayFailOver(n.id, now)) continue;
        // In a cluster, one director at a time fails a node over: the one whose claim etcd took. The others'
        // health probes see the node down at about the same moment, and the drain records that would hold
        // them back reach them only through the watch, too late.
        if (store.claimShared === undefined || failoverClaims.has(n.id)) {
          failOver(n.id, now);
          continue;
        }
        if (claiming.has(n.id) || (claimRefusedUntil.get(n.id) ?? 0) > now) continue;
        // Not while a claim of this node that may be held is being taken back: a claim attempt could find it
        // and take it as its own just before the release deletes it (and one claim at a time waits per node).
        if (toRelease.has(n.id)) continue;
        claiming.add(n.id);
        const value = { director: directorId, claim: randomBytes(6).toString('hex') };
        void store.claimShared('failovers', n.id, value).then((r) => {
          claiming.delete(n.id);
          // Held by this director already, with its lease now: a claim whose answer was lost. Taken as ours:
          // released with that value. So is one of its id with no lease (not Anchor's way: it would never go
          // by itself). A predecessor's with this id, under the lease of the process before a restart, goes
          // when that lease ends: it is waited for like another director's.
          if (r.ok && !r.claimed && r.holder !== null && r.holder['director'] === directorId && (r.lease === null || store.leaseHeld?.(r.lease) === true)) {
            failoverClaims.set(n.id, { value: r.holder, lease: r.lease });
            if (closed === null && mayFailOver(n.id, clock.now())) failOver(n.id, clock.now());
            return;
          }
          if (!r.ok || !r.claimed) {
            claimRefusedUntil.set(n.id, clock.now() + CLAIM_RETRY_MS);
            if (r.ok) logger.info({ node: n.id, holder: r.holder }, 'automatic failover of the node left to the director that claimed it');
            else {
              if (r.maybeApplied === true) toRelease.set(n.id, value); // perhaps written: taken back
              logger.warn({ node: n.id, message: r.message }, 'automatic failover not started: its claim could not be written (tried again)');
            }
            return;
          }
          failoverClaims.set(n.id, { value, lease: r.lease });
          // Started if it still may be (the sweep below releases a claim that has no failover running).
          if (closed === null && mayFailOver(n.id, clock.now())) failOver(n.id, clock.now());
        });
      }
      // A claim is held while its failover runs here, and released when it ends (a failed one is tried
      // again later, claimed again).
      for (const [node, { value, lease }] of failoverClaims) {
        if (lease !== null && store.leaseHeld?.(lease) === false) {
          // The lease lapsed (this director was cut off from etcd for longer than its TTL) and took the claim
          // with it: another director may hold the node's failover now. Ours stops; the node is claimed
          // again before it goes on.
          failoverClaims.delete(node);
          const auto = backoff.forget(node);
          const running = auto === undefined ? undefined : drains.active(node);
          // One an operator joined (a drain or failover asked for while it ran) is the operator's, which
          // needs no claim: it goes on.
          const joined = drains.stopsAdmissions(node);
          if (running !== undefined && running.id === auto && running.state === 'running' && !joined) drains.cancel(node, "cancelled: this director's failover claim went with its lease (it claims the node again before it goes on)");
          if (joined) logger.warn({ node, drain: running?.id ?? null }, 'failover claim lost with this director\'s lease: the failover an operator joined goes on as the operator\'s drain');
          else logger.warn({ node, drain: running?.id ?? null }, 'failover claim lost with this director\'s lease: its automatic failover stopped; claimed again before it goes on');
          continue;
        }
        if (drains.active(node)?.state === 'running' || claiming.has(node)) continue;
        failoverClaims.delete(node);
        toRelease.set(node, value);
      }
      for (const [node, value] of toRelease) {
        if (releasing.has(node) || claiming.has(node)) continue;
        releasing.add(node);
        void store.releaseShared?.('failovers', node, value).then((r) => {
          releasing.delete(node);
          if (r.ok) toRelease.delete(node);
          else logger.warn({ node, message: r.message }, 'failover claim not released yet: tried again');
        });
      }
    }, 250);
    autoFailover.unref();
    /** Whether an automatic failover of `node` may start now (unhealthy past its grace, sessions on it, nothing running). */
    function mayFailOver(node: string, now: number): boolean {
      if (membership.get(node)?.health !== NodeHealth.UNHEALTHY) return false;
      // A drain that is still waiting does not hold a failover back: the failover makes it migrate now.
      if (c.table.countByOwner(node) === 0 || drains.active(node)?.state === 'running') return false;
      // Nor while another director's drain or failover of the node migrates its sessions (its record goes
      // with that director's lease if it dies): a second one here would race it on every session. One
      // still waiting there does not hold this back: its director may not fail nodes over by itself.
      if (drains.active(node) === undefined && drains.activeElsewhere(node)?.state === 'running') return false;
      if ((prober as HealthProber).unhealthyFor(node) < config.failover.grace_s * 1000) return false;
      // One that could not move everything is tried again later, or when the ring changes.
      return backoff.due(node, now, membership.ring, (id) => drains.get(id)?.state);
    }
    function failOver(node: string, now: number): void {
      logger.warn({ node, grace_s: config.failover.grace_s, sessions: c.table.countByOwner(node) }, 'automatic failover');
      const fo = startFailover(node, 'auto-failover');
      backoff.started(node, fo.view.id, now, membership.ring, fo.created);
    }
  }

  let draining = false;
  const ready = (): { ready: boolean; reason?: string } => {
    if (draining) return { ready: false, reason: 'director draining' };
    if (audit.fileError !== null) return { ready: false, reason: `audit file cannot be written (${audit.fileError.message}): lines wait in memory; it is tried again every second` };
    if (ending !== null) return { ready: false, reason: `ending the sessions there were when the store came back (partition_policy terminate): ${ending.left} left` };
    const f = fence();
    if (f !== FenceState.OK) {
      const noLease = ending === null && leaseOkAt?.() === null;
      const relisting = ending === null && f === FenceState.EXPIRED && storeFence() !== FenceState.EXPIRED;
      return {
        ready: false,
        reason: noLease
          ? 'no store lease granted yet: not forwarding'
          : relisting
            ? 'listing the store again after the lease lapsed: not forwarding until it follows'
            : f === FenceState.EXPIRED
              ? 'store lease expired: not forwarding'
              : 'store unreachable or lease near its deadline',
      };
    }
    if (membership.ring.nodes.length === 0) {
      const held = membership.list().filter((n) => n.placementHeld && n.state === NodeState.ACTIVE && n.health !== NodeHealth.UNHEALTHY);
      return {
        ready: false,
        reason:
          held.length === 0
            ? 'no active, healthy node'
            : `no node takes new sessions: ${held.map((n) => n.id).join(', ')} active here, but not yet in the shared store (the node state is written again until the store takes it)`,
      };
    }
    if (store.following === false) return { ready: false, reason: 'not following the store\'s changes (listing again after a watch gap): sessions admitted or moved elsewhere meanwhile are not known here' };
    return { ready: true };
  };
  const registry = createMetricsRegistry(
    {
      stats,
      sessionsByNode: () => {
        const m = new Map<string, number>();
        for (const n of membership.list()) m.set(n.id, c.table.countByOwner(n.id));
        return m;
      },
      nodeStates: () => membership.list().map((n) => ({ id: n.id, state: n.state, health: n.health, takesSessions: membership.takesSessions(n.id) })),
      tombstones: () => c.table.tombstoneCount,
      pendingRevokes: () => ownership.pendingRevokes,
      storeBacklog: () => {
        const d = ownership.endDeletes;
        return { endDeletesInFlight: d.inFlight, endDeletesWaiting: d.waiting, endDeletesRetrying: d.retrying, expiring: ownership.expiring };
      },
      tcpOpen: () => tcp?.openConnections ?? 0,
      sessionSockets: () => director.sessionSockets,
      quarantinedPorts: () => director.quarantinedPorts,
      headerCache: () => director.headerCache,
      storeRecords: () => (tableRecords === null ? null : { inRows: tableRecords.inRows, apart: tableRecords.apart }),
      nativeIo: () => director.nativeIo,
      nativeUdp: () => director.nativeCounters(),
      tcpDataPath: () => tcp?.dataPath ?? null,
      tcpSpliced: () => tcp?.splicedConnections ?? 0,
      tcpSpliceCopies: () => tcp?.spliceCopyReads ?? 0,
      syncTcp: () => tcp?.syncBytes(),
      ready: () => ready().ready,
      auditOk: () => audit.fileError === null,
      auditUnwritten: () => audit.unwritten(),
      ...(store.following === undefined ? {} : { storeFollowing: () => store.following === true }),
    },
    { processMetrics: config.metrics.enabled },
  );
  const view = (r: SessionRecord): SessionView => ({
    id: r.id,
    owner: r.owner,
    version: r.version.toString(),
    state: r.state,
    transport: r.transportKey,
    last_seen: new Date(clock.toWall(r.lastSeen)).toISOString(),
  });
  const refuse = (status: number, code: string, message: string): OpResult<never> => ({ ok: false, error: { status, code, message } });
  const plans = new Permits(PLANS_AT_ONCE);
  const backend: AdminBackend = {
    ready,
    metrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
    nodes: () =>
      membership.list().map(
        (n): NodeView => ({
          id: n.id,
          address: transportKey(n.address),
          weight: n.weight,
          state: n.state,
          health: n.health,
          sessions: c.table.countByOwner(n.id),
          takes_sessions: membership.takesSessions(n.id),
        }),
      ),
    hasNode: (id) => membership.get(id) !== undefined,
    listSessions: (q) => {
      const page = c.table.list({ owner: q.node, limit: q.limit, after: q.after });
      return { items: page.items.map(view), more: page.more };
    },
    getSession: (id) => {
      const r = c.table.get(id);
      return r === undefined || r.expiresAt <= clock.now() ? undefined : view(r);
    },
    audit: (q) => audit.recent(q),
    auditHead: () => audit.head(),
    migrate: async (id, req) => {
      const r = await ownership.migrate(id, { ...req, cause: 'migrate', actor: 'admin' });
      stats.migrations.inc(migrationResultLabel(r));
      if (!r.ok) return refuse(FAILURE_STATUS[r.reason], refusalCode(r.reason), r.message);
      const rec = c.table.get(id);
      return { ok: true, value: rec !== undefined ? { ...view(rec), from: r.from, replayed: r.replayed } : { id, owner: r.to, version: r.version.toString(), from: r.from } };
    },
    terminate: (id) => {
      // Ending a session is a change of ownership like any other: not while the store cannot be reached
      // (with a shared store the others would keep it live; fail closed, change nothing).
      const f = fence();
      if (f !== FenceState.OK && c.table.get(id) !== undefined) {
        return refuse(FAILURE_STATUS.unavailable, refusalCode('unavailable'), `store unreachable or lease near its deadline (${f}): the session was not ended`);
      }
      const r = ownership.terminate(id, 'operator', 'admin');
      if (!r.ok) return refuse(FAILURE_STATUS[r.reason], refusalCode(r.reason), r.message);
      return { ok: true, value: { id, state: 'TERMINATED', version: r.note.toVersion.toString() } };
    },
    drain: (node, req) => {
      // One drain per node in the cluster: a drain running on another director is answered as it is — except
      // that a migrate drain asked for while that one waits is that director's to start (as for a failover).
      const elsewhere = drains.activeElsewhere(node);
      if (elsewhere !== undefined && drains.active(node) === undefined) {
        if (req.mode === 'migrate' && elsewhere.state === 'waiting') {
          return refuse(409, 'drain_elsewhere', `a drain of ${node} (${elsewhere.id}) is waiting on director ${elsewhere.director}: ask that director for the migrate drain, or undrain the node first`);
        }
        return { ok: true, value: elsewhere, status: 200 };
      }
      // A migrate drain with nowhere to migrate to would stop the node's admissions, fail every move and
      // leave the cluster taking no new session: refused, nothing changed (a wait drain stays possible).
      const here = drains.active(node);
      const sessions = c.table.countByOwner(node);
      // (Under transparent forwarding nothing moves: such a drain only ends the sessions, and needs no node.)
      if (req.mode === 'migrate' && config.backend.encapsulation === 'ppv2' && here?.state !== 'running' && sessions > 0 && !membership.ring.nodes.some((n) => n.id !== node)) {
        return refuse(409, 'no_target', `no other active, healthy node to move the ${sessions} sessions of ${node} to: nothing was changed (drain it with mode wait, or undrain or add a node first)`);
      }
      const r = drains.start(node, { mode: req.mode, deadlineS: req.deadlineS ?? config.drain.node_deadline_s, cause: 'drain', actor: 'admin' });
      // A waiting drain that now migrates (escalated) started something: 202, as a new drain.
      return { ok: true, value: r.view, status: r.created || r.escalated === true ? 202 : 200 };
    },
    undrain: (node) => {
      // A drain of the node running on another director stops when that director sees the shared state.
      const d = drains.undrain(node) ?? drains.activeElsewhere(node);
      // Its health too: an unhealthy node takes no new session until it is healthy again.
      return { ok: true, value: { node, state: NodeState.ACTIVE, health: membership.get(node)?.health ?? null, cancelled_drain: d ?? null } };
    },
    failover: (node) => {
      // One drain per node in the cluster: one running on another director is that director's to escalate
      // (a second one here would race it on every session, and each record would count the other's moves
      // as sessions that ended). A migrating one is answered as it is; a waiting one is refused, named.
      const elsewhere = drains.activeElsewhere(node);
      if (elsewhere !== undefined && drains.active(node) === undefined) {
        if (elsewhere.state === 'running') return { ok: true, value: elsewhere, status: 200 };
        return refuse(409, 'drain_elsewhere', `a drain of ${node} (${elsewhere.id}) is waiting on director ${elsewhere.director}: fail the node over through that director, or undrain it first`);
      }
      const r = startFailover(node, 'admin');
      return { ok: true, value: r.view, status: r.created || r.escalated === true ? 202 : 200 };
    },
    drainPlan: async (node, page) => {
      // Each dry run walks the node's sessions and keeps a set of those it counted: a few at once at most.
      const plan = await plans.with(() => drains.plan(node, page));
      if (plan === undefined) return { ok: false, error: { status: 429, code: 'busy', message: `${plans.inUse} drain dry runs are running: ask again when one has answered` } };
      return { ok: true, value: { ...plan, moves: plan.moves.map((m) => ({ ...m, version: m.version.toString() })) } };
    },
    getDrain: (id) => drains.get(id),
    listDrains: () => drains.list(),
    drainDirector: () => {
      if (deps.onDrainRequested === undefined) return refuse(501, 'not_supported', 'this director cannot drain itself from the API');
      deps.onDrainRequested();
      return { ok: true, value: { state: 'draining', deadline_s: config.drain.deadline_s } };
    },
    stats: () => statsView(directorId, stats, clock.wall()),
  };
  const admin = new AdminServer({ listen: hp(config.admin.listen), token: config.admin.token, logger, onRefused: (code) => stats.adminRefused.inc(code) }, backend);

  let closed: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      if (autoFailover !== null) clearInterval(autoFailover);
      clearInterval(partitionWatch);
      unwatchShared?.();
      if (refreshTick !== null) clearInterval(refreshTick);
      clearInterval(thawTick);
      unfollow?.();
      drains.close();
      // No client is served any more (the table stopped following the store above) …
      await Promise.allSettled([director.close(), tcp?.close(), admin.close(), prober?.close()]);
      // Every session's port is held now: the next run goes on holding them.
      await quarantineFile?.close();
      // … then the ends the store has not taken yet get one more try and a moment for the answers; what is
      // still not taken after that, and every REVOKE not acknowledged, is audited by close (SECURITY_EVENT).
      await ownership.settleEnds(END_SETTLE_MS);
      ownership.close();
      await store.close();
      await audit.close();
    })();
    return closed;
  };

  let unfollow: (() => void) | null = null;
  try {
    await director.openUpstreams();
    // The store's sessions first, then other directors' changes (a shared store) mirrored into this
    // director's table; only then are clients read (director.listen): a datagram of a live session read
    // before would be answered REJECT UNKNOWN_SESSION (and a HELLO's admission race the loaded record).
    const udpFamilies = config.listen.udp.map((l) => hp(l.address));
    const parseTransport = (text: string): ParsedTransport | null => parseStoredTransport(text, udpFamilies);
    const followed = await ownership.followAndLoad(
      nodes.map((n) => n.id),
      parseTransport,
    );
    unfollow = followed.unfollow;
    const loaded = followed.loaded;
    if (loaded > 0) logger.info({ sessions: loaded }, 'sessions loaded from the store');
    // Nodes are probed once before anything is served: with health checks on, only nodes that answered
    // take new sessions (one never probed could be dead, and its sessions would stay there).
    await prober?.start();
    await director.listen();
    await tcp?.start();
    await admin.start();
  } catch (err) {
    await close();
    throw err;
  }
  // On a wildcard listener the native data path reads which of the host's addresses each datagram was sent
  // to (IP_PKTINFO): its reply leaves from that address and its node is told it. node:dgram cannot (TCP
  // connections always give their own).
  const learns = director.learnsLocalAddress;
  director.addresses.forEach((a, i) => {
    if (!isUnspecified(a.address)) return;
    if (learns[i] === true) logger.info({ listener: transportKey(a) }, 'UDP listener on a wildcard address: replies leave from the address each client sent to, and nodes see it as the PROXY v2 destination');
    else {
      logger.warn(
        { listener: transportKey(a) },
        config.backend.encapsulation === 'ppv2'
          ? 'UDP listener on a wildcard address without the native UDP I/O: replies leave from the address the routing table picks, which may not be the one the client sent to, and nodes see the wildcard as the PROXY v2 destination; list the addresses to listen on (or use socket.native)'
          : 'UDP listener on a wildcard address with transparent forwarding: replies leave from the address the routing table picks, which may not be the one the client sent to; list the addresses to listen on',
      );
    }
  });
  logger.info({ udp: director.addresses.map(transportKey), udp_io: director.nativeIo ? 'native' : 'dgram', udp_gso: director.nativeIo && config.socket.gso, tcp: (tcp?.addresses ?? []).map(transportKey), tcp_io: tcp?.dataPath ?? null, admin: transportKey(admin.address), nodes: config.nodes.length, director: directorId }, 'director started');

  return {
    udpAddresses: director.addresses,
    tcpAddresses: tcp?.addresses ?? [],
    adminAddress: admin.address,
    stats,
    close,
    auditUnwritten: () => unwritten,
    async reopenAudit() {
      // What a SIGHUP does, said each time: an operator who ran `systemctl reload` after editing the config
      // learns that nothing of it took effect.
      logger.info({ audit: config.audit.path }, 'SIGHUP: reopening the audit file; the config is not read again (a change to it takes a restart)');
      if (config.audit.path === null) return null;
      const err = await audit.reopen();
      if (err === null) logger.info({ path: config.audit.path }, 'audit file reopened: the chain goes on in it');
      return err; // logged (and counted) by onError
    },
    async drain(deadlineMs = config.drain.deadline_s * 1000) {
      draining = true;
      c.setDraining(true);
      // The sessions this director serves: with etcd the table also mirrors every other director's, which
      // never end here (waiting for them held every drain to its deadline, and `remaining` named the
      // cluster's sessions).
      // (Counted by the table: a walk of a million mirrored sessions every 100 ms held the loop up.)
      const shared = config.store.kind !== 'memory';
      const served = (): number => (shared ? c.table.servedCount : c.table.size);
      const anyServed = (): boolean => served() > 0;
      logger.info({ sessions: served(), deadline_ms: deadlineMs }, 'director draining');
      const until = clock.now() + deadlineMs;
      while (anyServed() && clock.now() < until && closed === null) {
        await new Promise((r) => setTimeout(r, Math.min(100, Math.max(1, until - clock.now()))));
      }
      const remaining = served();
      if (remaining > 0 && config.store.kind === 'memory') {
        // With the in-process store, the sessions still here at the deadline end with the process: each is
        // ended and audited (cause director_shutdown) like any end, a slice per turn, rather than vanish.
        // (With etcd they stay in the store, and other directors serve them.)
        const ending = ender(c.table.snapshot(), 'director_shutdown');
        while (!ending.slice()) await new Promise((r) => setImmediate(r));
      }
      logger.info({ remaining, ...(remaining > 0 ? { ended: config.store.kind === 'memory', store: config.store.kind } : {}) }, 'director drained');
      await audit.flush();
      return { remaining };
    },
  };
}

/** How long a stop waits for the store to take the deletes of sessions ended just before (ms). */
const END_SETTLE_MS = 2000;

/**
 * Says where the audit chain went on from at start. When the file lost or changed lines while the director
 * was away (its tail is behind the head recorded when it stopped, or at that seq with another hash): a
 * SECURITY_EVENT line — the first of this run, so the chain itself keeps it — and an error log.
 */
function noteAuditStart(start: AuditStart | null, audit: AuditSink, stats: DirectorStats, logger: Logger, actor: string, path: string | null): void {
  if (start === null) return;
  if (start.from === 'recorded') logger.info({ path, seq: start.head.seq }, 'audit file was empty or missing (rotated while stopped?): the chain goes on from the head recorded beside it');
  if (start.anomaly === null) return;
  const { kind, file, recorded } = start.anomaly;
  const cause = kind === 'behind' ? 'audit_file_behind' : 'audit_file_changed';
  logger.error(
    { path, file_seq: file.seq, recorded_seq: recorded.seq },
    kind === 'behind'
      ? 'audit file ends before the head recorded when the director last stopped: lines were removed from it while the director was away'
      : 'audit file\'s last line is not the one recorded when the director last stopped: it was changed while the director was away',
  );
  stats.securityEvents.inc(cause);
  stats.auditEvents.inc('SECURITY_EVENT');
  audit.write({ session: null, event: 'SECURITY_EVENT', cause, from_version: null, to_version: null, from_owner: null, to_owner: null, actor, detail: { file_seq: file.seq, file_head: file.hash, recorded_seq: recorded.seq, recorded_head: recorded.hash } });
}
