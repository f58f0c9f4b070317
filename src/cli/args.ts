// Command-line flag parsing on top of node:util parseArgs: unknown flags and bad values become
// UsageErrors that name the flag. Pure: never reads process.argv or exits.
import { parseArgs } from 'node:util';
import { UsageError } from '../errors.js';
import { parseHostPortLiteral } from '../config/load.js';
import type { Transport } from '../codec/types.js';

export type FlagSpec = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;

export function parseFlags<S extends FlagSpec>(command: string, argv: readonly string[], spec: S, positionals = false) {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: { ...spec, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: positionals, tokens: true });
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new UsageError(`anchor ${command}: ${msg.replace(/\. To specify a positional.*$/s, '')}`);
  }
  // A flag given twice takes one value only: the other would be dropped without a word (`--config a
  // --config b`), so it is an error unless the flag takes several.
  const seen = new Set<string>();
  for (const t of parsed.tokens) {
    if (t.kind !== 'option' || spec[t.name]?.multiple === true) continue;
    if (seen.has(t.name)) throw new UsageError(`anchor ${command}: --${t.name} given more than once`);
    seen.add(t.name);
  }
  return { values: parsed.values, positionals: parsed.positionals };
}

export function requireString(command: string, values: Record<string, unknown>, flag: string): string {
  const v = values[flag];
  if (typeof v !== 'string' || v === '') throw new UsageError(`anchor ${command}: --${flag} is required`);
  return v;
}

/** A HOST:PORT flag; `portZero`: port 0 allowed (a listen address: any free port), else refused (a destination). */
export function hostPortFlag(command: string, flag: string, v: string, portZero = true): Transport {
  const t = parseHostPortLiteral(v);
  if (t === undefined) throw new UsageError(`anchor ${command}: --${flag}: expected HOST:PORT (IPv6 in brackets), got "${v}"`);
  if (!portZero && t.port === 0) throw new UsageError(`anchor ${command}: --${flag}: expected a port 1–65535, got "${v}"`);
  return t;
}

export function numberFlag(command: string, flag: string, v: string | undefined, dflt: number | undefined, check: { min: number; max?: number; integer?: boolean }): number {
  if (v === undefined) {
    if (dflt === undefined) throw new UsageError(`anchor ${command}: --${flag} is required`);
    return dflt;
  }
  const n = Number(v);
  const ok = v.trim() !== '' && Number.isFinite(n) && n >= check.min && (check.max === undefined || n <= check.max) && (!check.integer || Number.isInteger(n));
  if (!ok) {
    const what = `${check.integer ? 'an integer' : 'a number'} ≥ ${check.min}${check.max !== undefined ? ` and ≤ ${check.max}` : ''}`;
    throw new UsageError(`anchor ${command}: --${flag}: expected ${what}, got "${v}"`);
  }
  return n;
}
