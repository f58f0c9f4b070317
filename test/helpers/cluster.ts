// A director process in front of three in-process reference nodes (real sockets on loopback),
// each recording what it received. Cleans up everything it started.
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { ReferenceNode, type RecordLine } from '../../src/refnode/node.js';
import { transportKey } from '../../src/codec/ip.js';
import { startDirector, tempDir, type DirectorProc } from './director-proc.js';
import { PacketType } from '../../src/codec/types.js';
import { waitFor } from './wait.js';

export interface Cluster {
  readonly director: DirectorProc;
  readonly nodes: ReferenceNode[];
  readonly nodeIds: string[];
  readonly dir: string;
  records(): RecordLine[];
  stop(): Promise<void>;
}

export async function startCluster(opts: {
  family: 4 | 6;
  config?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  nodeCount?: number;
  /** Nodes the test stands in for itself (raw sockets), appended after the reference nodes. */
  extraNodes?: { id: string; address: string }[];
}): Promise<Cluster> {
  const dir = tempDir();
  const loop = opts.family === 6 ? '::1' : '127.0.0.1';
  const nodes: ReferenceNode[] = [];
  const ids: string[] = [];
  try {
    for (let i = 0; i < (opts.nodeCount ?? 3); i++) {
      const id = `node-${String.fromCharCode(97 + i)}`;
      const n = new ReferenceNode({ id, listen: { family: opts.family, address: loop, port: 0 }, recordPath: join(dir, `${id}.jsonl`) });
      await n.start();
      nodes.push(n);
      ids.push(id);
    }
    const config = {
      director: { id: 'anchor-test' },
      listen: { udp: ['127.0.0.1:0', '[::1]:0'] },
      admin: { listen: '127.0.0.1:0' },
      nodes: [
        ...nodes.map((n, i) => ({ id: ids[i], address: transportKey(n.address), weight: 1 })),
        ...(opts.extraNodes ?? []).map((n) => ({ ...n, weight: 1 })),
      ],
      admission: { per_source_rate: 100_000, per_source_burst: 100_000 },
      reject: { per_source_rate: 100_000, per_source_burst: 100_000 },
      audit: { path: join(dir, 'audit.jsonl') },
      log: { level: 'info' },
      // The reference nodes run in the test's own process, whose event loop a heavy test can block for
      // a second or more: generous probes keep them from being declared dead (tests of health override).
      health: { interval_ms: 500, timeout_ms: 3000, fall: 5 },
      ...opts.config,
    };
    const director = await startDirector(config, opts.env);
    return {
      director,
      nodes,
      nodeIds: ids,
      dir,
      records() {
        const out: RecordLine[] = [];
        for (const id of ids) {
          const p = join(dir, `${id}.jsonl`);
          if (!existsSync(p)) continue;
          for (const line of readFileSync(p, 'utf8').split('\n')) if (line !== '') out.push(JSON.parse(line) as RecordLine);
        }
        return out;
      },
      async stop() {
        director.kill();
        await director.exited;
        await Promise.allSettled(nodes.map((n) => n.close()));
      },
    };
  } catch (err) {
    await Promise.allSettled(nodes.map((n) => n.close()));
    throw err;
  }
}

/**
 * The reference nodes' records of the sessions `ids`, once every one of them has its CLOSE recorded
 * (records are written asynchronously): what the checker is given after a client run.
 */
export function closedRecords(c: Cluster, ids: ReadonlySet<string>): Promise<RecordLine[]> {
  return waitFor('every session to be recorded with its CLOSE', () => {
    const r = c.records().filter((l) => ids.has(l.session));
    return new Set(r.filter((l) => l.type === PacketType.CLOSE).map((l) => l.session)).size === ids.size ? r : undefined;
  });
}
