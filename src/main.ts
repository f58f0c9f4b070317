#!/usr/bin/env node
// The process shell: argv, signals, exit codes — nothing else. Every command's work lives in its module.
import { readFileSync } from 'node:fs';
import type { Anchor } from './anchor.js';
import { formatConfigError, loadConfig, parseHostPortLiteral } from './config/load.js';
import { ConfigError, UsageError } from './errors.js';
import { createLogger } from './obs/logger.js';
import { ReferenceNode } from './refnode/node.js';
import { formatReport, MIN_PAYLOAD, runClient } from './client/client.js';
import { hostPortFlag, numberFlag, parseFlags, requireString } from './cli/args.js';
import { systemClock } from './util/clock.js';
import { GENESIS } from './obs/audit.js';
import { verifyAuditFiles } from './obs/audit-verify.js';
import { checkRecords } from './refnode/checker.js';
import { readRecords } from './refnode/records.js';
import { transportKey } from './codec/ip.js';
import { runCtl } from './ctl/ctl.js';
import { demoListeners } from './cli/demo-listeners.js';

const USAGE = `anchor — sticky-routing L4 session director

Usage:
  anchor run --config FILE        run the director
  anchor demo --config FILE       run the director together with its configured nodes as local
                                  reference nodes (what \`npm start\` does)
  anchor node --id ID --listen HOST:PORT [--record FILE] [--secret HEX]
                                  run a reference VPN node
  anchor client --target HOST:PORT --sessions N --rate PPS --duration S [--size BYTES]
                [--jump-every S] [--json]
                                  simulate N JV1 sessions and report loss and round trips
  anchor audit verify FILE... [--head SHA256] [--prev SHA256 | --continued] [--checkpoint SEQ:SHA256]
                                  check an audit log's hash chain (exit 1 on a break)
  anchor ctl COMMAND [--admin URL] [--token TOKEN] [--json]
                                  operate a running director: status, sessions, session ID,
                                  plan NODE, drain NODE, undrain NODE, failover NODE,
                                  migrate SESSION, audit (see anchor ctl --help)
  anchor check --records DIR [--json]
                                  prove from reference node records that no session was
                                  delivered to two nodes at once (exit 1 on a violation)
  anchor version | --version      the version
  anchor help | --help            this text; \`anchor COMMAND --help\` for one command
`;

const HELP: Record<string, string> = {
  run: `Usage: anchor run --config FILE

Runs the director with the given YAML config (see config/anchor.example.yaml).
SIGTERM or SIGINT drains it (no new sessions, existing ones served until they end or
drain.deadline_s) and exits 0; a second signal exits at once with status 1. SIGHUP
reopens the audit file (after a log rotation moved it away; the chain goes on in it).
Exit status 2: bad usage or an invalid config (the error names the key).`,
  demo: `Usage: anchor demo --config FILE

Like \`anchor run\`, and also starts one reference node (in the same process) at each
nodes[].address of the config, so that traffic flows end to end on one machine.
A listener whose address this host lacks (the bundled config's [::1] on a host without
IPv6) is left out with a warning, unless it is its protocol's only one.`,
  node: `Usage: anchor node --id ID --listen HOST:PORT [--record FILE] [--secret HEX]

Runs the reference VPN node: reads PROXY v2 + JV1, answers HELLO, echoes DATA,
honours CLOSE (a DATA payload starting with "!close" makes it close the session),
answers PROXY v2 LOCAL health probes. --record appends one JSON line per received
packet: {node, session, version, seq, flags, type, t, accepted, drop?}.
Session keys: HMAC-SHA256(secret, session id), sent in the HELLO reply; a DATA
from a transport the director has not bound (a jump) is BOUND only if its MAC
checks out. All reference nodes behind one director need the same --secret
(default: a fixed, public development secret). REVOKE(V) fences the session:
packets below version V are dropped and recorded as fenced.`,
  audit: `Usage: anchor audit verify FILE [FILE...] [--head SHA256] [--checkpoint SEQ:SHA256]... [--prev SHA256 | --continued]

Checks the audit log's hash chain: every line carries the SHA-256 of the line before it.
Several files are one chain in the order given (rotated files, oldest first: each goes on
from the one before); gzip files (logrotate's compress) are read through it. Exit 0 when the
chain is intact, 1 naming the first broken line, 2 when a file cannot be read.
  --head SHA256  also check the last line against a hash recorded elsewhere (a cut tail is
                 otherwise undetectable)
  --checkpoint SEQ:SHA256
                 a line recorded earlier (GET /v1/audit/head, anchor ctl audit --head): the
                 chain must still hold line SEQ with that SHA-256, which proves that nothing
                 up to it was cut or changed since (repeat the flag for several)
  --prev SHA256  the first file goes on from an earlier one whose head this is
  --continued    the first file goes on from an earlier one that is gone: start from its
                 first line (the director reopens its audit file on SIGHUP, after a rotation)`,
  check: `Usage: anchor check --records DIR [--json]

Reads every *.jsonl record file of reference nodes in DIR and proves, per session, that
no two nodes received its packets interleaved and that versions never went back.
Exit 0 when every session passes, 1 naming each session that does not.`,
  client: `Usage: anchor client --target HOST:PORT --sessions N --rate PPS --duration S [--size BYTES] [--jump-every S] [--json]

Opens N sessions (one UDP socket each), sends DATA at PPS packets per second in
total for S seconds, and reports sent/received/lost and round-trip p50/p99.
  --size BYTES   DATA payload size (default 64, at least ${MIN_PAYLOAD})
  --jump-every S every S seconds each session moves to a new source port (staggered)
  --json         print the report as JSON`,
};

function out(s: string): void {
  process.stdout.write(s.endsWith('\n') ? s : s + '\n');
}

async function startDirector(configPath: string, withNodes: boolean): Promise<void> {
  // Signals are ours from the first moment: a SIGHUP (logrotate's postrotate) or a SIGTERM while the
  // director starts would otherwise end the process by Node's default action. What they ask is done
  // once the director is up (a stop then drains what it has; a second signal still exits at once).
  let anchor: Anchor | null = null;
  let signals = 0;
  let stopAsked: NodeJS.Signals | null = null;
  let reopenAsked = false;
  let onStop: (sig: NodeJS.Signals) => void = (sig) => (stopAsked = sig);
  let log: ReturnType<typeof createLogger> | null = null;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      if (log === null) process.stderr.write(`anchor: second signal (${sig}): exiting at once\n`);
      else {
        log.warn({ signal: sig }, 'second signal: exiting at once');
        log.flush();
      }
      process.exit(1);
    }
    onStop(sig);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // After a log rotation moved the audit file away: reopen it (logrotate's postrotate `kill -HUP`).
  process.on('SIGHUP', () => {
    if (anchor === null) reopenAsked = true;
    else void anchor.reopenAudit();
  });
  const loaded = await loadConfig(configPath, process.env);
  const logger = createLogger(loaded.log.level, 'anchor');
  log = logger;
  // The demo leaves out a listener whose address this host lacks (the bundled config's [::1] on a host without IPv6).
  const { config, skipped } = withNodes ? await demoListeners(loaded) : { config: loaded, skipped: [] };
  for (const s of skipped) logger.warn({ key: s.key, address: s.address, code: s.code }, `demo: ${s.key} (${s.address}) left out: this host has no such address (${s.code})`);
  const nodes: ReferenceNode[] = [];
  if (withNodes) {
    for (const n of config.nodes) {
      const listen = parseHostPortLiteral(n.address);
      if (listen === undefined) continue;
      const node = new ReferenceNode({ id: n.id, listen });
      try {
        await node.start();
      } catch (err) {
        // The nodes already listening would keep the process alive after the error: closed first.
        await Promise.allSettled(nodes.map((x) => x.close()));
        const code = (err as NodeJS.ErrnoException).code;
        throw new Error(`demo: the reference node ${n.id} cannot listen on ${n.address}${code === 'EADDRINUSE' ? ': the address is in use (another demo or node running?)' : ''}: ${(err as Error).message}`);
      }
      nodes.push(node);
    }
  }
  let drainRequested: (() => void) | null = null;
  let started: Anchor;
  try {
    // Loaded here, not at the top: `anchor ctl` and the other small commands start without the director stack (etcd, gRPC, metrics).
    const { createAnchor } = await import('./anchor.js');
    started = await createAnchor(config, { clock: systemClock, logger, onDrainRequested: () => drainRequested?.() });
  } catch (err) {
    await Promise.allSettled(nodes.map((n) => n.close()));
    throw err;
  }
  anchor = started;
  if (withNodes) {
    const udp = started.udpAddresses.map(transportKey);
    const admin = `http://${transportKey(started.adminAddress)}`;
    process.stderr.write(
      [
        '',
        `Anchor is running (director ${config.director.id}).`,
        `  Send JV1 traffic (UDP) to: ${udp.join(', ')}`,
        ...(started.tcpAddresses.length > 0 ? [`  JV1 over TCP:              ${started.tcpAddresses.map(transportKey).join(', ')}`] : []),
        `  Reference nodes:           ${nodes.map(String).join(', ')}`,
        `  Admin API:                 ${admin}  (GET /v1/nodes, /v1/sessions, /metrics, /readyz)`,
        '',
        `Try it from another terminal:`,
        `  node dist/src/main.js client --target ${udp[0]} --sessions 30 --rate 300 --duration 5`,
        `  curl ${admin}/v1/nodes${config.admin.token !== null ? '  -H "Authorization: Bearer $ANCHOR_ADMIN_TOKEN"' : ''}`,
        '',
        'Stop with Ctrl-C (drains first; press twice to exit at once).',
        '',
      ].join('\n'),
    );
  }
  let draining: string | null = null;
  const drainAndExit = (why: string): void => {
    if (draining !== null) {
      // Already draining to exit (POST /v1/director/drain, or a signal while starting): this one joins it.
      logger.info({ why, draining_since: draining }, 'already draining: the director exits when the drain ends (a second signal exits at once)');
      return;
    }
    draining = why;
    logger.info({ why }, 'draining');
    void (async () => {
      // A drain that fails still closes the director (store, sockets, audit head) before the exit.
      const remaining = await started.drain().then(
        (r) => r.remaining,
        (err: unknown) => {
          logger.error({ err }, 'drain failed: closing anyway');
          return null;
        },
      );
      await started.close();
      await Promise.allSettled(nodes.map((n) => n.close()));
      // Audit lines that never reached the file (the director said which at its close): not a clean stop.
      const unwritten = started.auditUnwritten();
      logger.info({ remaining, ...(unwritten !== null ? { audit_unwritten: unwritten } : {}) }, 'exit');
      logger.flush();
      process.exit(remaining === null || unwritten !== null ? 1 : 0);
    })();
  };
  drainRequested = () => drainAndExit('admin api');
  onStop = (sig) => drainAndExit(sig);
  if (reopenAsked) {
    logger.info('SIGHUP while starting: reopening the audit log now');
    void started.reopenAudit();
  }
  if (stopAsked !== null) {
    logger.info({ signal: stopAsked }, 'stop asked while starting');
    drainAndExit(stopAsked);
  }
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  // A command that prints and ends (check, audit verify, ctl, client, help…) whose reader went away
  // (`anchor check --records DIR | head`) is not crashed by it: what is left unread is dropped and the
  // command ends with its own status; `ctl` (which may follow for ever) ends at once, 0. Not the
  // long-running ones (run, demo, node): their output is their log.
  if (cmd !== 'run' && cmd !== 'demo' && cmd !== 'node') {
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' && cmd === 'ctl') process.exit(0);
      if (err.code !== 'EPIPE') throw err;
    });
  }
  if (cmd === undefined) {
    // Bad usage: the text goes where errors go (stdout may be a pipe expecting a command's output).
    process.stderr.write(USAGE);
    return 2;
  }
  if (cmd === 'help' || cmd === '--help' || cmd === '-h') {
    out(USAGE);
    return 0;
  }
  switch (cmd) {
    case 'run':
    case 'demo': {
      const { values } = parseFlags(cmd, rest, { config: { type: 'string', short: 'c' } });
      if (values.help) return (out(HELP[cmd] as string), 0);
      await startDirector(requireString(cmd, values, 'config'), cmd === 'demo');
      return -1; // keeps running until a signal
    }
    case 'node': {
      const { values } = parseFlags(cmd, rest, { id: { type: 'string' }, listen: { type: 'string' }, record: { type: 'string' }, secret: { type: 'string' } });
      if (values.help) return (out(HELP.node as string), 0);
      const id = requireString(cmd, values, 'id');
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(id)) throw new UsageError(`anchor node: --id: expected 1–64 characters of [A-Za-z0-9._-], got "${id}"`);
      const listen = hostPortFlag(cmd, 'listen', requireString(cmd, values, 'listen'));
      if (values.secret !== undefined && !/^(?:[0-9a-fA-F]{2}){16,64}$/.test(values.secret)) {
        throw new UsageError('anchor node: --secret: expected 32 to 128 hex characters (16 to 64 bytes)');
      }
      const secret = values.secret !== undefined ? Buffer.from(values.secret, 'hex') : undefined;
      const node = new ReferenceNode({ id, listen, recordPath: values.record, secret });
      await node.start();
      process.stderr.write(`reference node ${node} listening\n`);
      const stop = (): void => {
        void node.close().then(() => process.exit(0));
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
      return -1;
    }
    case 'client': {
      const { values } = parseFlags(cmd, rest, {
        target: { type: 'string' },
        sessions: { type: 'string' },
        rate: { type: 'string' },
        duration: { type: 'string' },
        size: { type: 'string' },
        'jump-every': { type: 'string' },
        json: { type: 'boolean' },
      });
      if (values.help) return (out(HELP.client as string), 0);
      const target = hostPortFlag(cmd, 'target', requireString(cmd, values, 'target'), false);
      const report = await runClient({
        target,
        sessions: numberFlag(cmd, 'sessions', values.sessions, undefined, { min: 1, max: 10_000, integer: true }),
        rate: numberFlag(cmd, 'rate', values.rate, undefined, { min: 1, max: 10_000_000 }),
        durationS: numberFlag(cmd, 'duration', values.duration, undefined, { min: 0, max: 3600 }),
        size: numberFlag(cmd, 'size', values.size, 64, { min: MIN_PAYLOAD, max: 65_000, integer: true }),
        jumpEveryS: values['jump-every'] === undefined ? undefined : numberFlag(cmd, 'jump-every', values['jump-every'], undefined, { min: 0.01, max: 3600 }),
      });
      if (values.json) out(JSON.stringify(report));
      else out(formatReport(report));
      return 0;
    }
    case 'audit': {
      const [sub, ...more] = rest;
      if (sub === '--help' || sub === '-h') return (out(HELP.audit as string), 0);
      if (sub !== 'verify') throw new UsageError(`anchor audit: unknown subcommand ${sub === undefined ? '(none)' : `"${sub}"`} (try: anchor audit verify FILE)`);
      const { values, positionals } = parseFlags('audit verify', more, { head: { type: 'string' }, prev: { type: 'string' }, continued: { type: 'boolean' }, checkpoint: { type: 'string', multiple: true } }, true);
      if (values.help) return (out(HELP.audit as string), 0);
      if (positionals.length === 0) throw new UsageError('anchor audit verify: expected at least one FILE');
      for (const [flag, v] of [['head', values.head], ['prev', values.prev]] as const) {
        if (v !== undefined && !/^[0-9a-f]{64}$/.test(v)) throw new UsageError(`anchor audit verify: --${flag}: expected a SHA-256 as 64 lowercase hex characters, got "${v}"`);
      }
      if (values.prev !== undefined && values.continued === true) throw new UsageError('anchor audit verify: --prev and --continued exclude each other');
      const checkpoints = new Map<number, string>();
      for (const c of values.checkpoint ?? []) {
        const m = /^([1-9][0-9]{0,15}):([0-9a-f]{64})$/.exec(c);
        if (m === null || !Number.isSafeInteger(Number(m[1]))) throw new UsageError(`anchor audit verify: --checkpoint: expected SEQ:SHA256 (a positive line number, a colon, 64 lowercase hex characters), got "${c}"`);
        const seq = Number(m[1]);
        if (checkpoints.has(seq) && checkpoints.get(seq) !== m[2]) throw new UsageError(`anchor audit verify: --checkpoint: two different hashes for seq ${seq}`);
        checkpoints.set(seq, m[2] as string);
      }
      const start = values.continued === true ? ('any' as const) : values.prev !== undefined ? { prev: values.prev } : undefined;
      const r = await verifyAuditFiles(positionals, { ...(values.head !== undefined ? { head: values.head } : {}), ...(start !== undefined ? { start } : {}), ...(checkpoints.size > 0 ? { checkpoints } : {}) }).catch((err: unknown) => {
        throw new UsageError(`anchor audit verify: ${(err as Error).message}`);
      });
      if (r.ok) {
        const v = r.result;
        const from = v.start.seq === 1 && v.start.prev === GENESIS ? '' : `, from seq ${v.start.seq} (prev ${v.start.prev})`;
        const held = checkpoints.size > 0 ? `, ${checkpoints.size} checkpoint${checkpoints.size > 1 ? 's' : ''} held` : '';
        out(`ok: ${r.files > 1 ? `${r.files} files, ` : ''}${v.lines} lines${from}, chain intact${held} (seq ${v.seq}, head ${v.head})`);
        return 0;
      }
      process.stderr.write(`${r.file}: ${r.result.problem}\n`);
      return 1;
    }
    case 'check': {
      const { values } = parseFlags(cmd, rest, { records: { type: 'string' }, json: { type: 'boolean' } });
      if (values.help) return (out(HELP.check as string), 0);
      const dir = requireString(cmd, values, 'records');
      const lines = await readRecords(dir).catch((err: unknown) => {
        throw new UsageError(`anchor check: cannot read records in ${dir}: ${(err as Error).message}`);
      });
      // No record at all proves nothing (a wrong directory, nodes started without --record): not "ok".
      if (lines.length === 0) throw new UsageError(`anchor check: no records in ${dir} (expected the *.jsonl files reference nodes write with --record)`);
      const r = checkRecords(lines);
      if (values.json) out(JSON.stringify(r));
      else {
        out(`${r.ok ? 'ok' : 'VIOLATION'}: ${r.sessions} sessions, ${r.packets} packets checked`);
        for (const n of r.notes) out(`note: ${n}`);
        for (const v of r.violations) out(`session ${v.session}: ${v.problem}`);
      }
      return r.ok ? 0 : 1;
    }
    case 'ctl':
      // A reader that went away (`anchor ctl audit --follow | head -1`) ends the command (see the top).
      return runCtl(rest, { stdout: process.stdout, stderr: process.stderr, env: process.env });
    case 'version':
    case '--version': {
      if (rest.length > 0) throw new UsageError(`anchor ${cmd}: takes no arguments, got ${JSON.stringify(rest.join(' '))}`);
      const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
      out(pkg.version);
      return 0;
    }
    default:
      throw new UsageError(`anchor: unknown command "${cmd}" (try: anchor --help)`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(formatConfigError(err) + '\n');
      process.exitCode = 2;
    } else if (err instanceof UsageError) {
      process.stderr.write(err.message + '\n');
      process.exitCode = 2;
    } else {
      const e = err as NodeJS.ErrnoException;
      process.stderr.write(`anchor: ${e?.message ?? String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
