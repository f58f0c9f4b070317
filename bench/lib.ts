// Shared helpers for bench scripts: child processes, medians, JSON results. Bench code only.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const MAIN = join(ROOT, 'dist/src/main.js');
export const RESULTS = join(ROOT, 'bench/results');

export function median(xs: readonly number[]): number {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

export interface Child {
  readonly proc: ChildProcess;
  output: string;
  stop(): Promise<void>;
}

/** Starts `node dist/src/main.js ARGS` and waits until `ready` matches its output (bounded). */
export async function startAnchorProcess(args: string[], ready: RegExp, timeoutMs = 15_000, cpu?: number): Promise<Child> {
  // BENCH_CPU_PROF=DIR: the director (`run`) writes a V8 CPU profile into DIR (stopped by two SIGTERMs,
  // the second of which exits at once, so that the profile is written; SIGKILL if it does not exit).
  const profDir = process.env.BENCH_CPU_PROF;
  const profiled = profDir !== undefined && profDir !== '' && args[0] === 'run';
  const flags = profiled ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [];
  // Under `taskset -c CPU` when `cpu` is given (taskset execs node, so the PID is node's).
  const argv = [...flags, MAIN, ...args];
  const proc = cpu === undefined ? spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] }) : spawn('taskset', ['-c', String(cpu), process.execPath, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  const c: Child = {
    proc,
    output: '',
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      if (profiled) {
        proc.kill('SIGTERM');
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 60_000);
        await exited;
        clearTimeout(t);
        return;
      }
      proc.kill('SIGKILL');
      await exited;
    },
  };
  proc.stdout?.setEncoding('utf8').on('data', (d: string) => (c.output += d));
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => (c.output += d));
  const until = Date.now() + timeoutMs;
  while (!ready.test(c.output)) {
    if (proc.exitCode !== null || Date.now() > until) {
      await c.stop();
      throw new Error(`anchor ${args[0]} did not start: ${c.output.slice(-500)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return c;
}

export function machine(): Record<string, unknown> {
  return { node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model, loadavg: os.loadavg() };
}

export function writeResult(name: string, data: unknown): string {
  mkdirSync(RESULTS, { recursive: true });
  const path = join(RESULTS, `${name}.json`);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(data, null, 2) + '\n');
  return path;
}

// ------------------------------------------------------------------------------------------------------
// Pinned child processes, free ports, CPU accounting (/proc), used by the peers, memory and tcp benches.

/** Where the pinned processes run: the proxy under test on one core, load and backends on the other. */
export const PROXY_CPU = Number(process.env.BENCH_PROXY_CPU ?? 0);

/**
 * Pins this process (the bench itself, when it is the load) to `cpu` until the returned function is
 * called, which restores the CPUs it had.
 */
export function pinSelf(cpu: number): () => void {
  const before = spawnSync('taskset', ['-p', '-c', String(process.pid)], { encoding: 'utf8' }).stdout.trim().split(':').at(-1)?.trim();
  spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)]);
  return () => {
    if (before !== undefined && before !== '') spawnSync('taskset', ['-a', '-p', '-c', before, String(process.pid)]);
  };
}
export const LOAD_CPU = Number(process.env.BENCH_LOAD_CPU ?? 1);

export interface Proc {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly name: string;
  output: string;
  /** SIGTERM by PID, then SIGKILL after `graceMs`; also SIGKILLs the PIDs in `extraPids` still alive. */
  stop(graceMs?: number): Promise<void>;
  /** PIDs (children of this process, e.g. nginx's worker) to kill by PID too on stop. */
  extraPids: number[];
}

/**
 * Starts `cmd args` (under `taskset -c CPU` when `cpu` is given: taskset execs the command, so the PID is
 * the command's) and waits until `ready` matches its output, or `readyCheck` resolves true (bounded).
 */
export async function startProcess(
  name: string,
  cmd: string,
  args: string[],
  opts: { cpu?: number; ready?: RegExp; readyCheck?: () => Promise<boolean>; timeoutMs?: number; cwd?: string } = {},
): Promise<Proc> {
  const argv = opts.cpu === undefined ? [cmd, ...args] : ['taskset', '-c', String(opts.cpu), cmd, ...args];
  const proc = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], cwd: opts.cwd });
  const p: Proc = {
    proc,
    pid: proc.pid ?? -1,
    name,
    output: '',
    extraPids: [],
    async stop(graceMs = 3000) {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(t);
      }
      for (const pid of p.extraPids) {
        try {
          process.kill(pid, 0);
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    },
  };
  proc.on('error', (err) => (p.output += `\nspawn error: ${String(err)}`));
  const keep = (d: string): void => {
    p.output += d;
    if (p.output.length > 200_000) p.output = p.output.slice(-100_000);
  };
  proc.stdout?.setEncoding('utf8').on('data', keep);
  proc.stderr?.setEncoding('utf8').on('data', keep);
  const until = Date.now() + (opts.timeoutMs ?? 15_000);
  for (;;) {
    if (opts.ready !== undefined && opts.ready.test(p.output)) break;
    if (opts.readyCheck !== undefined && (await opts.readyCheck())) break;
    if (opts.ready === undefined && opts.readyCheck === undefined) break;
    if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > until) {
      await p.stop();
      throw new Error(`${name} did not start: ${p.output.slice(-800)}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return p;
}

/** A port that is free on 127.0.0.1 for UDP and TCP right now (bound once to port 0, then released). */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const s = dgram.createSocket('udp4');
    const port = await new Promise<number>((resolve, reject) => {
      s.once('error', reject);
      s.bind(0, '127.0.0.1', () => resolve(s.address().port));
    });
    s.close();
    const tcpFree = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (tcpFree) return port;
  }
  throw new Error('no free port found');
}

let clkTck: number | undefined;
/** Clock ticks per second of /proc/PID/stat times. */
export function clockTicks(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** utime + stime of a process (all its threads), in seconds; NaN if it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / clockTicks(); // fields 14 and 15 of proc(5)
  } catch {
    return Number.NaN;
  }
}

/** The direct children of a process (Linux /proc/PID/task/PID/children). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter((x) => x !== '')
      .map(Number);
  } catch {
    return [];
  }
}

/** CPU seconds of a process and all its descendants alive now. */
export function treeCpuSeconds(pid: number): number {
  let total = cpuSeconds(pid);
  for (const c of childPids(pid)) total += treeCpuSeconds(c);
  return total;
}

/** VmRSS of a process in bytes (0 if unknown). */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]) * 1024;
  } catch {
    return 0;
  }
}

/** CPU model and core count from /proc/cpuinfo (what the READMEs quote). */
export function cpuInfo(): { model: string; cores: number; mhz?: number } {
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const model = /^model name\s*:\s*(.*)$/m.exec(text)?.[1] ?? 'unknown';
    const cores = (text.match(/^processor\s*:/gm) ?? []).length;
    const mhz = Number(/^cpu MHz\s*:\s*(.*)$/m.exec(text)?.[1]);
    return { model, cores, ...(Number.isFinite(mhz) ? { mhz } : {}) };
  } catch {
    return { model: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length };
  }
}

/** Whether a JV1 HELLO sent to 127.0.0.1:port comes back as a HELLO (a proxy in front of an echo backend is up). */
export async function udpHelloAnswered(port: number, timeoutMs = 300): Promise<boolean> {
  const s = dgram.createSocket('udp4');
  try {
    const id = Buffer.alloc(16);
    id.writeUInt32BE(0x9e3779b9, 0);
    id.writeUInt32BE((Math.random() * 0xffffffff) >>> 0, 4);
    id.writeUInt32BE(process.pid, 8);
    id.writeUInt32BE(Date.now() >>> 0, 12);
    const hello = Buffer.concat([Buffer.from([0x4a, 0x56, 1, 1]), id, Buffer.alloc(16)]);
    const answered = new Promise<boolean>((resolve) => {
      s.on('message', (m) => {
        if (m.length >= 20 && m[3] === 1 && m.subarray(4, 20).equals(id)) resolve(true);
      });
      setTimeout(() => resolve(false), timeoutMs);
    });
    s.on('error', () => undefined);
    s.send(hello, port, '127.0.0.1');
    return await answered;
  } finally {
    s.close();
  }
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export async function tcpAccepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Today as YYYY-MM-DD (local time). */
export function today(): string {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

/** Per CPU: [busy, total] jiffies from /proc/stat (busy = total - idle - iowait). */
export function coreJiffies(): [number, number][] {
  const out: [number, number][] = [];
  try {
    for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
      const m = /^cpu(\d+)\s+(.*)$/.exec(line);
      if (m === null) continue;
      const v = (m[2] as string).split(/\s+/).map(Number);
      const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
      const idle = (v[3] ?? 0) + (v[4] ?? 0);
      out[Number(m[1])] = [total - idle, total];
    }
  } catch {
    // not Linux
  }
  return out;
}

/** Busy % of core `cpu` between two coreJiffies() samples. */
export function coreBusyPct(a: [number, number][], b: [number, number][], cpu: number): number {
  const x = a[cpu];
  const y = b[cpu];
  if (x === undefined || y === undefined || y[1] === x[1]) return Number.NaN;
  return Number(((100 * (y[0] - x[0])) / (y[1] - x[1])).toFixed(1));
}
