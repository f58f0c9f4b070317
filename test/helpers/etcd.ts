// Test helper: starts a real etcd cluster (Debian's etcd-server 3.4, /usr/bin/etcd) on loopback, on
// free ports, with its own temporary data directories, and tears it down. It never touches a process
// it did not start (every kill is by PID) and runs etcd with an environment free of ETCD_* variables
// (etcd reads those as flags; one that duplicates a flag kills it at start).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './wait.js';

export const ETCD_BIN = process.env['ANCHOR_ETCD_BIN'] ?? '/usr/bin/etcd';

export interface EtcdMember {
  readonly name: string;
  /** PID of the running process (of the last start), or null while stopped. */
  readonly pid: number | null;
  readonly clientUrl: string;
  readonly peerUrl: string;
  /** SIGTERM, then SIGKILL after 5 s; resolves once the process has exited. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL; resolves once the process has exited. Idempotent. */
  kill(): Promise<void>;
  /** Starts the member again on the same ports and data directory (it rejoins the cluster). */
  restart(): Promise<void>;
  /** The last lines etcd wrote (for failure messages). */
  logTail(lines?: number): string;
}

export interface EtcdCluster {
  /** Client URLs of every member (`http://127.0.0.1:P`). */
  readonly endpoints: string[];
  readonly members: EtcdMember[];
  /** Name of the current leader, as reported by the running members; throws if none is known. */
  leader(): Promise<string>;
  /** Waits (bounded) until every running member reports healthy (a leader and a working quorum). */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Kills every member and removes the data directories. Safe to call twice. */
  stop(): Promise<void>;
}

export interface EtcdClusterOptions {
  readonly members?: number;
  /** Bound on the wait for the first leader. Default 15 s. */
  readonly startTimeoutMs?: number;
  /** Raft heartbeat / election timeout in ms (short for tests). Defaults 50 / 500. */
  readonly heartbeatMs?: number;
  readonly electionMs?: number;
  /**
   * Where the data directories go. Default: /dev/shm when it exists (memory: etcd fsyncs every commit,
   * which on a disk makes writes 5–10× slower and timings noisier), else the OS temp directory.
   */
  readonly dataRoot?: string;
}

function defaultDataRoot(): string {
  try {
    accessSync('/dev/shm', constants.W_OK);
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
}

/** Free TCP ports on 127.0.0.1 (bound together, then released, so they are distinct). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<import('node:net').Server>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const a = s.address();
    if (a === null || typeof a === 'string') throw new Error('no port');
    return a.port;
  });
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

/** process.env without ETCD_* (and without anything undefined). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.toUpperCase().startsWith('ETCD')) env[k] = v;
  }
  return env;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function fetchJson(url: string, init: RequestInit, timeoutMs: number): Promise<unknown> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  const body: unknown = await res.json();
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/** `GET /health` says true when the member sees a leader and can serve a quorum read. */
async function healthy(clientUrl: string): Promise<boolean> {
  try {
    const body = (await fetchJson(`${clientUrl}/health`, {}, 1000)) as { health?: string };
    return body.health === 'true';
  } catch {
    return false;
  }
}

/** `POST /v3/maintenance/status` (grpc-gateway): this member's id and the leader's id, as decimal strings. */
async function status(clientUrl: string): Promise<{ memberId: string; leader: string }> {
  const body = (await fetchJson(`${clientUrl}/v3/maintenance/status`, { method: 'POST', body: '{}' }, 1000)) as {
    header?: { member_id?: string };
    leader?: string;
  };
  return { memberId: String(body.header?.member_id ?? ''), leader: String(body.leader ?? '0') };
}

export async function startEtcdCluster(opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  const n = opts.members ?? 3;
  const heartbeat = opts.heartbeatMs ?? 50;
  const election = opts.electionMs ?? 500;
  const base = mkdtempSync(join(opts.dataRoot ?? defaultDataRoot(), 'anchor-etcd-'));
  const ports = await freePorts(2 * n);
  const token = `anchor-test-${randomBytes(6).toString('hex')}`;
  const specs = Array.from({ length: n }, (_, i) => ({
    name: `m${i + 1}`,
    clientUrl: `http://127.0.0.1:${ports[2 * i]}`,
    peerUrl: `http://127.0.0.1:${ports[2 * i + 1]}`,
    dataDir: join(base, `m${i + 1}.etcd`),
    logFile: join(base, `m${i + 1}.log`),
  }));
  const initialCluster = specs.map((s) => `${s.name}=${s.peerUrl}`).join(',');
  const env = cleanEnv();
  const children = new Set<ChildProcess>();
  // If the test process dies without calling stop(), do not leave etcd running behind it.
  const onExit = (): void => {
    for (const c of children) if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) process.kill(c.pid, 'SIGKILL');
  };
  process.once('exit', onExit);

  const starters: (() => void)[] = [];
  const members: EtcdMember[] = specs.map((s) => {
    let child: ChildProcess | null = null;
    const start = (): void => {
      const args = [
        '--name', s.name,
        '--data-dir', s.dataDir,
        '--listen-client-urls', s.clientUrl,
        '--advertise-client-urls', s.clientUrl,
        '--listen-peer-urls', s.peerUrl,
        '--initial-advertise-peer-urls', s.peerUrl,
        '--initial-cluster', initialCluster,
        '--initial-cluster-state', 'new',
        '--initial-cluster-token', token,
        '--heartbeat-interval', String(heartbeat),
        '--election-timeout', String(election),
        '--log-outputs', 'stderr',
      ];
      const log = createWriteStream(s.logFile, { flags: 'a' });
      const c = spawn(ETCD_BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
      c.stdout?.pipe(log);
      c.stderr?.pipe(log);
      c.once('error', (err) => log.write(`spawn error: ${String(err)}\n`));
      c.once('exit', () => children.delete(c));
      children.add(c);
      child = c;
    };
    const signal = async (sig: NodeJS.Signals): Promise<void> => {
      const c = child;
      if (c === null) return;
      child = null;
      if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
        try {
          process.kill(c.pid, sig);
        } catch {
          // already gone
        }
        if (sig !== 'SIGKILL') {
          const t = setTimeout(() => {
            if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) process.kill(c.pid, 'SIGKILL');
          }, 5000);
          await exited(c);
          clearTimeout(t);
          return;
        }
      }
      await exited(c);
    };
    const m: EtcdMember = {
      name: s.name,
      get pid() {
        const c = child as ChildProcess | null;
        return c?.pid ?? null;
      },
      clientUrl: s.clientUrl,
      peerUrl: s.peerUrl,
      stop: () => signal('SIGTERM'),
      kill: () => signal('SIGKILL'),
      restart: async () => {
        if (child !== null) return;
        start();
      },
      logTail: (lines = 20) => {
        try {
          return readFileSync(s.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
        } catch {
          return '';
        }
      },
    };
    starters.push(start);
    return m;
  });

  let stopped = false;
  const cluster: EtcdCluster = {
    endpoints: specs.map((s) => s.clientUrl),
    members,
    async leader() {
      const running = members.filter((m) => m.pid !== null);
      const answers = await Promise.allSettled(running.map(async (m) => ({ m, st: await status(m.clientUrl) })));
      const ok = answers.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : []));
      const leaderId = ok.find((a) => a.st.leader !== '0')?.st.leader;
      const leader = ok.find((a) => a.st.memberId === leaderId);
      if (leader === undefined) throw new Error('no leader known to the running members');
      return leader.m.name;
    },
    async waitHealthy(timeoutMs = 15_000) {
      await waitFor(
        'every running etcd member healthy',
        async () => {
          const running = members.filter((m) => m.pid !== null);
          const h = await Promise.all(running.map((m) => healthy(m.clientUrl)));
          return running.length > 0 && h.every(Boolean);
        },
        { timeoutMs, intervalMs: 50 },
      ).catch((err: unknown) => {
        throw new Error(`${String(err)}\n${members.map((m) => `--- ${m.name}\n${m.logTail(10)}`).join('\n')}`);
      });
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await Promise.all(members.map((m) => m.kill()));
      process.removeListener('exit', onExit);
      rmSync(base, { recursive: true, force: true });
    },
  };

  try {
    // Staggered start: each member a little after the previous one.
    for (const start of starters) {
      start();
      await new Promise((r) => setTimeout(r, 30));
    }
    await cluster.waitHealthy(opts.startTimeoutMs ?? 15_000);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

/** A single-member "cluster" (same shape). */
export function startEtcd(opts: Omit<EtcdClusterOptions, 'members'> = {}): Promise<EtcdCluster> {
  return startEtcdCluster({ ...opts, members: 1 });
}

/**
 * Every key under `prefix` with its value and mod_revision, read through one member's JSON gateway
 * (`POST /v3/kv/range`), bounded by `timeoutMs`. Linearizable unless `serializable` (which a member
 * without quorum still answers, from its own copy).
 */
export async function readPrefix(
  clientUrl: string,
  prefix: string,
  opts: { serializable?: boolean; timeoutMs?: number } = {},
): Promise<{ key: string; value: string; modRevision: string }[]> {
  const start = Buffer.from(prefix);
  const end = Buffer.from(prefix);
  end[end.length - 1] = (end[end.length - 1] as number) + 1;
  const body = (await fetchJson(
    `${clientUrl}/v3/kv/range`,
    {
      method: 'POST',
      body: JSON.stringify({ key: start.toString('base64'), range_end: end.toString('base64'), serializable: opts.serializable === true }),
    },
    opts.timeoutMs ?? 2000,
  )) as { kvs?: { key: string; value?: string; mod_revision?: string }[] };
  return (body.kvs ?? []).map((kv) => ({
    key: Buffer.from(kv.key, 'base64').toString('utf8'),
    value: Buffer.from(kv.value ?? '', 'base64').toString('utf8'),
    modRevision: String(kv.mod_revision ?? '0'),
  }));
}
