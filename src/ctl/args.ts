// `anchor ctl` arguments: which command, its operands and flags, and the connection to the director.
// Pure: reads nothing but what it is given (argv and an env object); bad usage is a UsageError that
// names the flag or operand (the entry point exits 2 on it).
import { UsageError } from '../errors.js';
import { numberFlag, parseFlags, type FlagSpec } from '../cli/args.js';
import { isLowerHexId } from '../session/id-index.js';
import { MAX_DEADLINE_S } from '../drain/plan.js';

export const CTL_COMMANDS = ['status', 'sessions', 'session', 'drain', 'undrain', 'failover', 'migrate', 'plan', 'audit'] as const;
export type CtlCommandName = (typeof CTL_COMMANDS)[number];

export const DEFAULT_ADMIN = 'http://127.0.0.1:9180';
export const DEFAULT_TIMEOUT_S = 5;

export const CTL_HELP = `Usage: anchor ctl COMMAND [ARGS] [--admin URL] [--token TOKEN] [--json] [--timeout S]

Talks to a running director's admin API.
  --admin URL     the admin API (default ${DEFAULT_ADMIN}, the default admin.listen)
  --token TOKEN   the bearer token (default: $ANCHOR_ADMIN_TOKEN)
  --json          print JSON instead of tables: the API's answer (status: {ready, nodes, drains in
                  progress}; drain and failover: the drain record once it ends; audit: one line per event)
  --timeout S     seconds to wait for each answer (default ${DEFAULT_TIMEOUT_S})

Commands:
  status                          nodes (state, health, weight, sessions), readiness, running drains
  sessions [--node N] [--limit N] [--cursor ID]
                                  a page of sessions in id order (--limit 1–1000, default 100)
  session ID                      one session
  plan NODE [--limit N] [--cursor ID]
                                  where draining NODE would send its sessions (all counted per
                                  target; a page of them listed, --limit 1–1000, default 20); moves
                                  nothing
  drain NODE [--mode migrate|wait] [--deadline S] [--detach]
                                  take NODE out of admission and move its sessions, following the
                                  drain until it ends (--detach: return at once); Ctrl-C stops
                                  following, the drain goes on
  undrain NODE                    cancel a drain; NODE takes new sessions again
  failover NODE [--detach]        move every session of NODE now (an unhealthy node), following it
  migrate SESSION [--to NODE] [--expect-version V]
                                  move one session (freeze, transfer, resume)
  audit [--session ID] [--limit N] [--follow]
                                  the latest audit events; --follow keeps printing new ones
  audit --head                    the audit chain's last line as a checkpoint (SEQ:SHA256) to
                                  record elsewhere, for anchor audit verify --checkpoint

Exit status: 0 done; 1 refused by the director (its reason is printed), unreachable, or a drain
that did not complete; 2 bad usage (the message names the flag).`;

export interface CtlConnection {
  /** The admin API's base URL, without a trailing slash. */
  readonly admin: string;
  readonly token: string | undefined;
  readonly json: boolean;
  readonly timeoutMs: number;
}

export type CtlCommand =
  | { readonly cmd: 'status' }
  | { readonly cmd: 'sessions'; readonly node: string | undefined; readonly limit: number; readonly cursor: string | undefined }
  | { readonly cmd: 'session'; readonly id: string }
  | { readonly cmd: 'plan'; readonly node: string; readonly limit: number; readonly cursor: string | undefined }
  | { readonly cmd: 'drain'; readonly node: string; readonly mode: 'migrate' | 'wait'; readonly deadlineS: number | undefined; readonly detach: boolean }
  | { readonly cmd: 'undrain'; readonly node: string }
  | { readonly cmd: 'failover'; readonly node: string; readonly detach: boolean }
  | { readonly cmd: 'migrate'; readonly session: string; readonly to: string | undefined; readonly expectVersion: string | undefined }
  | { readonly cmd: 'audit'; readonly session: string | undefined; readonly limit: number; readonly follow: boolean }
  | { readonly cmd: 'audit-head' };

export type CtlArgs = { readonly help: true } | { readonly help: false; readonly conn: CtlConnection; readonly command: CtlCommand };

const NODE_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;

const COMMON: FlagSpec = {
  admin: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
  timeout: { type: 'string' },
};

const FLAGS: Record<CtlCommandName, FlagSpec> = {
  status: {},
  sessions: { node: { type: 'string' }, limit: { type: 'string' }, cursor: { type: 'string' } },
  session: {},
  plan: { limit: { type: 'string' }, cursor: { type: 'string' } },
  drain: { mode: { type: 'string' }, deadline: { type: 'string' }, detach: { type: 'boolean' } },
  undrain: {},
  failover: { detach: { type: 'boolean' } },
  migrate: { to: { type: 'string' }, 'expect-version': { type: 'string' } },
  audit: { session: { type: 'string' }, limit: { type: 'string' }, follow: { type: 'boolean' }, head: { type: 'boolean' } },
};

/** What each command takes as operands (in order). */
const OPERANDS: Record<CtlCommandName, readonly string[]> = {
  status: [],
  sessions: [],
  session: ['ID'],
  plan: ['NODE'],
  drain: ['NODE'],
  undrain: ['NODE'],
  failover: ['NODE'],
  migrate: ['SESSION'],
  audit: [],
};

function isCommand(s: string): s is CtlCommandName {
  return (CTL_COMMANDS as readonly string[]).includes(s);
}

const ALL_FLAGS: FlagSpec = Object.assign({}, COMMON, ...Object.values(FLAGS));

export function parseCtlArgs(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): CtlArgs {
  // Flags may come before or after the command (`anchor ctl --admin URL status`): parse them all, then
  // check that each one belongs to the command.
  const known = argv.find(isCommand);
  const { values, positionals } = parseFlags(known === undefined ? 'ctl' : `ctl ${known}`, argv, ALL_FLAGS, true);
  if (values.help === true) return { help: true };
  const [name, ...operands] = positionals;
  if (name === undefined) throw new UsageError(`anchor ctl: expected a command (${CTL_COMMANDS.join(', ')}); see anchor ctl --help`);
  if (name === 'help') return { help: true };
  if (!isCommand(name)) throw new UsageError(`anchor ctl: unknown command "${name}" (commands: ${CTL_COMMANDS.join(', ')})`);
  const where = `ctl ${name}`;
  for (const k of Object.keys(values)) {
    if (k !== 'help' && !(k in COMMON) && !(k in FLAGS[name])) throw new UsageError(`anchor ${where}: --${k} is not an option of ${name} (see anchor ctl --help)`);
  }
  const want = OPERANDS[name];
  if (operands.length < want.length) throw new UsageError(`anchor ${where}: expected ${want.join(' ')}`);
  if (operands.length > want.length) throw new UsageError(`anchor ${where}: unexpected argument "${operands[want.length]}"`);
  const v = values as Record<string, string | boolean | undefined>;
  const s = (k: string): string | undefined => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const conn: CtlConnection = {
    admin: adminUrl(where, s('admin') ?? DEFAULT_ADMIN),
    token: s('token') ?? (env.ANCHOR_ADMIN_TOKEN !== undefined && env.ANCHOR_ADMIN_TOKEN !== '' ? env.ANCHOR_ADMIN_TOKEN : undefined),
    json: v.json === true,
    timeoutMs: numberFlag(where, 'timeout', s('timeout'), DEFAULT_TIMEOUT_S, { min: 0.1, max: 300 }) * 1000,
  };
  if (conn.token === '') throw new UsageError(`anchor ${where}: --token: expected a token, got ""`);
  const op = (i: number): string => operands[i] as string;
  const limit = (dflt: number, max: number): number => numberFlag(where, 'limit', s('limit'), dflt, { min: 1, max, integer: true });
  const command = ((): CtlCommand => {
    switch (name) {
      case 'status':
        return { cmd: 'status' };
      case 'sessions': {
        const node = s('node');
        if (node !== undefined) nodeId(where, '--node', node);
        const cursor = s('cursor');
        if (cursor !== undefined) sessionId(where, '--cursor', cursor);
        return { cmd: 'sessions', node, limit: limit(100, 1000), cursor };
      }
      case 'session':
        return { cmd: 'session', id: sessionId(where, 'ID', op(0)) };
      case 'plan': {
        const cursor = s('cursor');
        if (cursor !== undefined) sessionId(where, '--cursor', cursor);
        return { cmd: 'plan', node: nodeId(where, 'NODE', op(0)), limit: limit(20, 1000), cursor };
      }
      case 'drain': {
        const mode = s('mode') ?? 'migrate';
        if (mode !== 'migrate' && mode !== 'wait') throw new UsageError(`anchor ${where}: --mode: expected migrate or wait, got "${mode}"`);
        const deadline = s('deadline');
        const deadlineS = deadline === undefined ? undefined : numberFlag(where, 'deadline', deadline, undefined, { min: 0, max: MAX_DEADLINE_S });
        if (deadlineS !== undefined && mode !== 'wait') throw new UsageError(`anchor ${where}: --deadline applies to --mode wait only (a migrate drain moves the sessions now)`);
        return { cmd: 'drain', node: nodeId(where, 'NODE', op(0)), mode, deadlineS, detach: v.detach === true };
      }
      case 'undrain':
        return { cmd: 'undrain', node: nodeId(where, 'NODE', op(0)) };
      case 'failover':
        return { cmd: 'failover', node: nodeId(where, 'NODE', op(0)), detach: v.detach === true };
      case 'migrate': {
        const to = s('to');
        if (to !== undefined) nodeId(where, '--to', to);
        const ev = s('expect-version');
        if (ev !== undefined && (!/^\d{1,20}$/.test(ev) || BigInt(ev) > 0xffff_ffff_ffff_ffffn)) throw new UsageError(`anchor ${where}: --expect-version: expected a version (a decimal integer up to 2^64 - 1), got "${ev}"`);
        return { cmd: 'migrate', session: sessionId(where, 'SESSION', op(0)), to, expectVersion: ev };
      }
      case 'audit': {
        if (v.head === true) {
          const other = ['session', 'limit', 'follow'].find((f) => v[f] !== undefined);
          if (other !== undefined) throw new UsageError(`anchor ${where}: --head and --${other} exclude each other`);
          return { cmd: 'audit-head' };
        }
        const session = s('session');
        if (session !== undefined) sessionId(where, '--session', session);
        return { cmd: 'audit', session, limit: limit(20, 1000), follow: v.follow === true };
      }
    }
  })();
  return { help: false, conn, command };
}

function adminUrl(where: string, raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError(`anchor ${where}: --admin: expected an http:// URL such as ${DEFAULT_ADMIN}, got "${raw}"`);
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.search !== '' || u.hash !== '' || u.username !== '' || u.password !== '') {
    throw new UsageError(`anchor ${where}: --admin: expected an http:// URL such as ${DEFAULT_ADMIN}, got "${raw}"`);
  }
  return u.href.replace(/\/+$/, '');
}

function sessionId(where: string, what: string, v: string): string {
  if (!isLowerHexId(v)) throw new UsageError(`anchor ${where}: ${what}: expected a session id (32 lowercase hex characters), got "${v}"`);
  return v;
}

function nodeId(where: string, what: string, v: string): string {
  if (!NODE_ID_RE.test(v) || v === '.' || v === '..') throw new UsageError(`anchor ${where}: ${what}: expected a node id (1–64 characters of [A-Za-z0-9._-]), got "${v}"`);
  return v;
}
