// Shared helpers for bench scripts: child processes, medians, JSON results. Bench code only.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
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
export async function startAnchorProcess(args: string[], ready: RegExp, timeoutMs = 15_000): Promise<Child> {
  const proc = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const c: Child = {
    proc,
    output: '',
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
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
