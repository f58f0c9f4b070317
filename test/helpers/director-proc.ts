// Starts the real entry point (`node dist/src/main.js …`) as a child process and cleans it up.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dump } from 'js-yaml';
import { parseHostPortLiteral } from '../../src/config/load.js';
import type { Transport } from '../../src/codec/types.js';
import { transportKey } from '../../src/codec/ip.js';
import { waitFor } from './wait.js';

export const MAIN = fileURLToPath(new URL('../../dist/src/main.js', import.meta.url));

export interface Proc {
  readonly child: ChildProcess;
  stdout: string;
  stderr: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
}

export function tempDir(prefix = 'anchor-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function spawnAnchor(args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  const child = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = {
    child,
    stdout: '',
    stderr: '',
    exited: new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal }))),
    kill(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) child.kill(signal);
    },
  };
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (p.stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (p.stderr += d));
  return p;
}

export interface DirectorProc extends Proc {
  readonly udp: Transport[];
  /** The TCP listeners (none unless `listen.tcp` is configured). */
  readonly tcp: Transport[];
  readonly admin: string;
  readonly configPath: string;
}

/** Writes `config` to a temp file, starts `anchor run`, waits for its "director started" log line. */
export async function startDirector(config: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): Promise<DirectorProc> {
  const dir = tempDir();
  const configPath = join(dir, 'anchor.yaml');
  writeFileSync(configPath, dump(config));
  const p = spawnAnchor(['run', '--config', configPath], env);
  const started = await waitFor(
    'the director to start',
    () => {
      if (p.child.exitCode !== null) throw new Error(`director exited ${p.child.exitCode}: ${p.stderr}`);
      for (const line of p.stdout.split('\n')) {
        if (!line.includes('director started')) continue;
        return JSON.parse(line) as { udp: string[]; tcp?: string[]; admin: string };
      }
      return undefined;
    },
    { timeoutMs: 15_000 },
  ).catch((err: unknown) => {
    p.kill();
    throw err;
  });
  return Object.assign(p, {
    udp: started.udp.map((s) => parseHostPortLiteral(s) as Transport),
    tcp: (started.tcp ?? []).map((s) => parseHostPortLiteral(s) as Transport),
    admin: `http://${started.admin}`,
    configPath,
  });
}

/** Reads one Prometheus sample (sum over label sets matching `labels`). */
export async function metric(admin: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricIn(await (await fetch(`${admin}/metrics`)).text(), name, labels);
}

/** One Prometheus sample of a scraped text (sum over label sets matching `labels`). */
export function metricIn(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const ls = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => ls.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

/**
 * The config of one director of a test cluster on etcd: loopback listeners on free ports, the given
 * nodes (`[id, node]` pairs), the shared store under `prefix`, admissions unthrottled (every test client
 * is 127.0.0.1) and generous health probes (the reference nodes share the test's event loop). `extra` is
 * merged over it, key by top-level key; `etcd` over the store's etcd block.
 */
export function etcdDirectorConfig(
  id: string,
  nodes: readonly (readonly [string, { readonly address: Transport }])[],
  store: { endpoints: readonly string[]; prefix: string; [k: string]: unknown },
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    director: { id },
    listen: { udp: ['127.0.0.1:0'] },
    admin: { listen: '127.0.0.1:0' },
    nodes: nodes.map(([nid, n]) => ({ id: nid, address: transportKey(n.address) })),
    store: { kind: 'etcd', etcd: { ...store, endpoints: [...store.endpoints] } },
    admission: { per_source_rate: 100_000, per_source_burst: 100_000 },
    health: { interval_ms: 500, timeout_ms: 3000, fall: 5 },
    ...extra,
  };
}
