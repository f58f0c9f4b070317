// The composition root: builds every component from a validated config and explicit dependencies and
// wires them together. Nothing else constructs components; only src/main.ts touches `process`.
import { AdminServer, type AdminBackend, type NodeView, type SessionView } from './admin/server.js';
import { parseHostPortLiteral } from './config/load.js';
import type { AnchorConfig } from './config/schema.js';
import { transportKey } from './codec/ip.js';
import type { Transport } from './codec/types.js';
import { DirectorCore } from './director/core.js';
import { UdpDirector } from './director/director.js';
import { Membership } from './nodes/membership.js';
import { createAudit, type AuditSink } from './obs/audit.js';
import type { Logger } from './obs/logger.js';
import { createMetricsRegistry } from './obs/metrics.js';
import { DirectorStats } from './obs/stats.js';
import { createHasher } from './ring/hash.js';
import type { SessionRecord } from './session/table.js';
import type { Clock } from './util/clock.js';

export interface AnchorDeps {
  readonly clock: Clock;
  readonly logger: Logger;
}

export interface Anchor {
  /** Where clients send datagrams (ports resolved). */
  readonly udpAddresses: Transport[];
  readonly adminAddress: Transport;
  /** Graceful: not ready, no new sessions, serve existing ones until they end or the deadline. */
  drain(deadlineMs?: number): Promise<{ remaining: number }>;
  /** Immediate and idempotent. */
  close(): Promise<void>;
  readonly stats: DirectorStats;
}

function hp(s: string): Transport {
  const t = parseHostPortLiteral(s);
  if (t === undefined) throw new Error(`unreachable: validated address "${s}" does not parse`);
  return t;
}

export async function createAnchor(config: AnchorConfig, deps: AnchorDeps): Promise<Anchor> {
  const { clock, logger } = deps;
  const hasher = await createHasher();
  const stats = new DirectorStats();
  const audit: AuditSink = createAudit({
    path: config.audit.path,
    wallClock: clock.wall,
    onLine: config.audit.path === null ? (line) => logger.info({ audit: line }, 'audit') : undefined,
  });
  let core: DirectorCore | null = null;
  const membership = new Membership(
    hasher,
    config.nodes.map((n) => ({ id: n.id, address: hp(n.address), weight: n.weight })),
    (ring) => core?.setRing(ring),
  );
  core = new DirectorCore(
    {
      sessionMax: config.session.max,
      idleTtlMs: config.session.idle_ttl_s * 1000,
      tombstoneMs: config.session.tombstone_s * 1000,
      admissionRate: config.admission.per_source_rate,
      admissionBurst: config.admission.per_source_burst,
      rejectRate: config.reject.per_source_rate,
      rejectBurst: config.reject.per_source_burst,
    },
    membership.ring,
    (id) => membership.reachable(id),
  );
  const c = core;
  const director = new UdpDirector(
    { directorId: config.director.id, listen: config.listen.udp.map(hp), encapsulation: config.backend.encapsulation },
    { core: c, membership, clock, logger, audit, stats },
  );
  let draining = false;
  const ready = (): { ready: boolean; reason?: string } => {
    if (draining) return { ready: false, reason: 'director draining' };
    if (membership.ring.nodes.length === 0) return { ready: false, reason: 'no healthy node' };
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
      tombstones: () => c.table.tombstoneCount,
      ready: () => ready().ready,
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
  };
  const admin = new AdminServer({ listen: hp(config.admin.listen), token: config.admin.token }, backend);

  let closed: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      await Promise.allSettled([director.close(), admin.close()]);
      await audit.close();
    })();
    return closed;
  };

  try {
    await director.start();
    await admin.start();
  } catch (err) {
    await close();
    throw err;
  }
  logger.info(
    { udp: director.addresses.map(transportKey), admin: transportKey(admin.address), nodes: config.nodes.length },
    'director started',
  );

  return {
    udpAddresses: director.addresses,
    adminAddress: admin.address,
    stats,
    close,
    async drain(deadlineMs = config.drain.deadline_s * 1000) {
      draining = true;
      c.setDraining(true);
      logger.info({ sessions: c.table.size, deadline_ms: deadlineMs }, 'director draining');
      const until = clock.now() + deadlineMs;
      while (c.table.size > 0 && clock.now() < until && closed === null) {
        await new Promise((r) => setTimeout(r, Math.min(100, Math.max(1, until - clock.now()))));
      }
      const remaining = c.table.size;
      logger.info({ remaining }, 'director drained');
      await audit.flush();
      return { remaining };
    },
  };
}
