// Transparent forwarding must not give a new session a local port another session just gave up toward
// the same node (a node keying client state by address would take the new client for the old one: see
// src/net/port-quarantine.ts). The kernel picks ephemeral ports, so the test makes it pick from very few:
// the director runs in a network namespace this test creates, with net.ipv4.ip_local_port_range set to 8
// ports there, and an agent in the same namespace plays the clients and the two nodes.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dump } from 'js-yaml';
import { MAIN, metricIn, tempDir } from '../helpers/director-proc.js';
import { waitFor } from '../helpers/wait.js';
import { decodeJv1, encodeJv1, sessionIdHex } from '../../src/codec/jv1.js';
import { PacketType } from '../../src/codec/types.js';
import { createHasher } from '../../src/ring/hash.js';
import { buildRing } from '../../src/ring/ring.js';
import { NO_PORT_BACKOFF_MS } from '../../src/director/director.js';

const IP = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'].find((p) => existsSync(p));
const runnable = process.getuid?.() === 0 && IP !== undefined;
const AGENT = fileURLToPath(new URL('../helpers/ns-agent.mjs', import.meta.url));

const LISTEN = 7000;
const ADMIN = 7001;
const NODE_PORT = { x: 7100, y: 7101 } as const;
const RANGE = [40000, 40007] as const;

interface Recv {
  at: number;
  from: number;
  hex: string;
}

class Agent {
  readonly recvs: Recv[] = [];
  readonly #waiting = new Map<number, (r: Record<string, unknown>) => void>();
  #next = 1;
  readonly ready: Promise<void>;
  #exited: Error | null = null;
  constructor(readonly child: ChildProcess) {
    let onReady!: () => void;
    let onFail!: (err: Error) => void;
    this.ready = new Promise((resolve, reject) => {
      onReady = resolve;
      onFail = reject;
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let m: Record<string, unknown>;
      try {
        m = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return; // not the agent's: nothing waits on it
      }
      if (m.ev === 'ready') onReady();
      else if (m.ev === 'recv') this.recvs.push(m as unknown as Recv);
      else this.#waiting.get(m.id as number)?.(m);
    });
    // An agent that dies ends every wait on it at once, with why.
    child.once('exit', (code, signal) => {
      this.#exited = new Error(`the namespace agent exited (${String(code ?? signal)})`);
      onFail(this.#exited);
      for (const answer of [...this.#waiting.values()]) answer({ ok: false, error: this.#exited.message });
    });
  }
  #cmd(c: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.#exited !== null) return Promise.reject(this.#exited);
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, (m) => {
        this.#waiting.delete(id);
        if (m.ok === true) resolve(m);
        else reject(new Error(`agent: ${String(m.error)}`));
      });
      this.child.stdin!.write(JSON.stringify({ id, ...c }) + '\n');
    });
  }
  async send(from: number, to: number, bytes: Uint8Array): Promise<void> {
    await this.#cmd({ op: 'send', from, to, hex: Buffer.from(bytes).toString('hex') });
  }
  async http(method: string, path: string): Promise<{ status: number; text: string }> {
    const r = await this.#cmd({ op: 'http', method, url: `http://127.0.0.1:${ADMIN}${path}` });
    return { status: r.status as number, text: r.text as string };
  }
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    return metricIn((await this.http('GET', '/metrics')).text, name, labels);
  }
}

describe.skipIf(!runnable)('transparent forwarding: ports given up are held per node', () => {
  const ns = `anchor-pq-${process.pid}-${randomBytes(2).toString('hex')}`;
  const ip = (...args: string[]): string => execFileSync(IP!, args, { encoding: 'utf8' });
  let nsMade = false;
  let agent: Agent | undefined;
  let director: ChildProcess | undefined;
  let directorOut = '';
  let cfg = '';
  let quarantineFile = '';

  /** `anchor run` in the namespace, once it has started. */
  const startDirectorInNs = async (): Promise<void> => {
    directorOut = '';
    const d = spawn(IP!, ['netns', 'exec', ns, process.execPath, MAIN, 'run', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    director = d;
    d.stdout!.setEncoding('utf8').on('data', (t: string) => (directorOut += t));
    d.stderr!.setEncoding('utf8').on('data', (t: string) => (directorOut += t));
    await waitFor(
      'the director to start',
      () => {
        if (d.exitCode !== null) throw new Error(`director exited ${d.exitCode}: ${directorOut}`);
        return directorOut.includes('director started');
      },
      { timeoutMs: 15_000 },
    );
  };

  beforeAll(async () => {
    ip('netns', 'add', ns);
    nsMade = true;
    ip('-n', ns, 'link', 'set', 'dev', 'lo', 'up');
    // Per namespace: the director's sockets bound to port 0 get one of these 8.
    ip('netns', 'exec', ns, 'sh', '-c', `echo "${RANGE[0]} ${RANGE[1]}" > /proc/sys/net/ipv4/ip_local_port_range`);
    const dir = tempDir();
    cfg = join(dir, 'anchor.yaml');
    quarantineFile = join(dir, 'ports.json');
    writeFileSync(
      cfg,
      dump({
        listen: { udp: [`127.0.0.1:${LISTEN}`] },
        admin: { listen: `127.0.0.1:${ADMIN}` },
        nodes: [
          { id: 'x', address: `127.0.0.1:${NODE_PORT.x}` },
          { id: 'y', address: `127.0.0.1:${NODE_PORT.y}` },
        ],
        backend: { encapsulation: 'none', port_quarantine_s: 300, port_quarantine_path: quarantineFile },
        health: { enabled: false },
        drain: { deadline_s: 0 }, // a SIGTERM stops at once
        admission: { per_source_rate: 10_000, per_source_burst: 10_000 },
      }),
    );
    agent = new Agent(spawn(IP!, ['netns', 'exec', ns, process.execPath, AGENT, JSON.stringify([NODE_PORT.x, NODE_PORT.y])], { stdio: ['pipe', 'pipe', 'inherit'] }));
    await agent.ready;
    await startDirectorInNs();
  });

  afterAll(async () => {
    // `ip netns exec` execs node: the PID is the process's own.
    for (const c of [director, agent?.child]) {
      if (c !== undefined && c.exitCode === null && c.signalCode === null) {
        const gone = new Promise((r) => c.once('exit', r));
        c.kill('SIGKILL');
        await gone;
      }
    }
    if (nsMade) ip('netns', 'del', ns);
  });

  let clientPort = 20_000;
  const noPort = { reason: 'no_upstream_port' };
  /** The scenario's tools over the agent: session ids toward a node, opening a session, its owner. */
  const helpers = async () => {
    const a = agent!;
    const ring = buildRing(await createHasher(), [
      { id: 'x', weight: 1 },
      { id: 'y', weight: 1 },
    ]);
    const idToward = (node: 'x' | 'y'): Uint8Array => {
      for (;;) {
        const id = randomBytes(16);
        if (ring.pick(id) === node) return id;
      }
    };
    /** Opens a session with a HELLO: where it arrived (node, the director's local port), or 'dropped'. */
    const open = async (id: Uint8Array): Promise<{ node: string; port: number } | 'dropped'> => {
      const hex = sessionIdHex(id);
      const dropsBefore = await a.metric('anchor_client_datagrams_dropped_total', noPort);
      await a.send(clientPort++, LISTEN, encodeJv1(PacketType.HELLO, id));
      return waitFor(`session ${hex} to reach a node or be dropped`, async () => {
        const r = a.recvs.find((e) => {
          const d = decodeJv1(Buffer.from(e.hex, 'hex'));
          return d.kind === 'ok' && sessionIdHex(d.value.sessionId) === hex;
        });
        if (r !== undefined) return { node: r.at === NODE_PORT.x ? 'x' : 'y', port: r.from };
        return (await a.metric('anchor_client_datagrams_dropped_total', noPort)) > dropsBefore ? ('dropped' as const) : undefined;
      });
    };
    const ownerOf = async (id: Uint8Array): Promise<string> => (JSON.parse((await a.http('GET', `/v1/sessions/${sessionIdHex(id)}`)).text) as { owner: string }).owner;
    return { idToward, open, ownerOf };
  };
  /** Ports held toward each node when the first run stopped (test 1 leaves them). */
  const usedToward = { x: new Set<number>(), y: new Set<number>() };
  /** Ports of the sessions the second run opened (test 2 leaves them open). */
  const openNow = { x: new Set<number>(), y: new Set<number>() };

  it('a port a session gave up is not used toward its node again, and is toward another node', async () => {
    const a = agent!;
    const { idToward, open, ownerOf } = await helpers();

    // Sessions toward x until the kernel has no port left for one: each holds its own socket.
    const opened: { id: Uint8Array; port: number }[] = [];
    for (;;) {
      const id = idToward('x');
      const got = await open(id);
      if (got === 'dropped') break;
      expect(got.node).toBe('x');
      expect(got.port).toBeGreaterThanOrEqual(RANGE[0]);
      expect(got.port).toBeLessThanOrEqual(RANGE[1]);
      opened.push({ id, port: got.port });
      expect(opened.length, 'the kernel handed out more ports than the range holds').toBeLessThanOrEqual(RANGE[1] - RANGE[0] + 1);
    }
    expect(opened.length).toBeGreaterThan(0);
    expect(new Set(opened.map((o) => o.port)).size).toBe(opened.length);
    expect(await a.metric('anchor_upstream_port_rebinds_total')).toBe(0);

    // One session ends: its socket closes, and its port is the only one free, held toward x.
    const victim = opened[0]!;
    expect((await a.http('POST', `/v1/sessions/${sessionIdHex(victim.id)}/terminate`)).status).toBe(200);
    await waitFor('the port to be held', async () => (await a.metric('anchor_upstream_ports_quarantined')) === 1);
    expect(await a.metric('anchor_upstream_session_sockets')).toBe(opened.length - 1);

    // A new session toward x is not given it (the kernel offers it, the director refuses it).
    const towardX = idToward('x');
    expect(await open(towardX)).toBe('dropped');
    const xPort = clientPort - 1;
    expect(await ownerOf(towardX)).toBe('x');
    const rebinds = await a.metric('anchor_upstream_port_rebinds_total');
    expect(rebinds).toBeGreaterThanOrEqual(1);
    expect(await a.metric('anchor_upstream_session_sockets')).toBe(opened.length - 1);

    // Its next datagrams are dropped without binding again each time: at most one try per
    // NO_PORT_BACKOFF_MS (without the backoff, each of the 20 would try, and be offered the held port).
    const drops = await a.metric('anchor_client_datagrams_dropped_total', noPort);
    const forwarded = await a.metric('anchor_client_datagrams_forwarded_total');
    const t0 = Date.now();
    for (let i = 0; i < 20; i++) await a.send(xPort, LISTEN, encodeJv1(PacketType.DATA, towardX, Buffer.from([i])));
    await waitFor('the 20 datagrams dropped', async () => (await a.metric('anchor_client_datagrams_dropped_total', noPort)) === drops + 20);
    const tries = (await a.metric('anchor_upstream_port_rebinds_total')) - rebinds;
    expect(tries).toBeLessThanOrEqual(1 + Math.ceil((Date.now() - t0) / NO_PORT_BACKOFF_MS));
    expect(a.recvs.filter((r) => r.from === victim.port && r.at === NODE_PORT.x)).toHaveLength(1); // the victim's own HELLO only
    // Dropped, so not counted forwarded.
    expect(await a.metric('anchor_client_datagrams_forwarded_total')).toBe(forwarded);

    // Toward y the same port is free to use.
    const towardY = idToward('y');
    expect(await open(towardY)).toEqual({ node: 'y', port: victim.port });
    expect(await ownerOf(towardY)).toBe('y');
    for (const o of opened) usedToward.x.add(o.port);
    usedToward.y.add(victim.port);
  });

  it('a director restarted with backend.port_quarantine_path goes on holding the ports the stopped one held', async () => {
    expect(usedToward.x.size).toBeGreaterThan(0); // the test before ran
    const stopped = director!;
    const exited = new Promise<number | null>((r) => stopped.once('exit', (code) => r(code)));
    stopped.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(directorOut).toContain('held ports written for the next run');
    await startDirectorInNs();
    expect(directorOut).toContain('ports the previous run gave up are held');
    const a = agent!;
    const { idToward, open } = await helpers();
    // The held pairs: every port of the sessions the stop ended, toward their node.
    expect(await a.metric('anchor_upstream_ports_quarantined')).toBe(usedToward.x.size + usedToward.y.size);
    // Sessions toward x until no port is left for one: none gets a port the stopped run used toward x
    // (without the file, those are free again: 6 of the 8 ports, the other two for the node sockets).
    for (let n = 0; n <= RANGE[1] - RANGE[0]; n++) {
      const got = await open(idToward('x'));
      if (got === 'dropped') break;
      expect(usedToward.x.has(got.port), `port ${got.port} was used toward x before the restart`).toBe(false);
      openNow.x.add(got.port);
    }
    // Toward y, the ports held toward x are free to use, but not the one held toward y.
    const towardY = await open(idToward('y'));
    expect(towardY).not.toBe('dropped');
    expect(usedToward.y.has((towardY as { port: number }).port)).toBe(false);
    openNow.y.add((towardY as { port: number }).port);
  });

  it('a director killed (SIGKILL) leaves the ports its sessions had in the file: the next run holds them', async () => {
    expect(openNow.x.size + openNow.y.size).toBeGreaterThan(0); // the test before ran
    // The running director writes the file every few seconds, with the ports of the sockets open then.
    const inFile = (): Set<string> => {
      try {
        const f = JSON.parse(readFileSync(quarantineFile, 'utf8')) as { ports: [string, number, number][] };
        return new Set(f.ports.map(([node, port]) => `${node}:${port}`));
      } catch {
        return new Set();
      }
    };
    const want = [...[...openNow.x].map((p) => `x:${p}`), ...[...openNow.y].map((p) => `y:${p}`)];
    await waitFor('the open sessions\' ports in the file', () => want.every((k) => inFile().has(k)), { timeoutMs: 20_000, intervalMs: 200 });
    const killed = director!;
    const gone = new Promise((r) => killed.once('exit', r));
    killed.kill('SIGKILL');
    await gone;
    await startDirectorInNs();
    const { idToward, open } = await helpers();
    const heldX = new Set([...usedToward.x, ...openNow.x]);
    for (let n = 0; n <= RANGE[1] - RANGE[0]; n++) {
      const got = await open(idToward('x'));
      if (got === 'dropped') break;
      expect(heldX.has(got.port), `port ${got.port} was in use toward x when the director was killed`).toBe(false);
    }
    expect(await agent!.metric('anchor_upstream_ports_quarantined')).toBeGreaterThanOrEqual(want.length);
  });
});
