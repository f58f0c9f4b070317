// `anchor ctl` argument parsing: commands, operands, flags, and usage errors that name the flag (exit 2).
import { describe, expect, it } from 'vitest';
import { DEFAULT_ADMIN, parseCtlArgs } from '../../src/ctl/args.js';
import { UsageError } from '../../src/errors.js';

const ID = '0123456789abcdef0123456789abcdef';

function parse(argv: string[], env: Record<string, string> = {}) {
  const r = parseCtlArgs(argv, env);
  if (r.help) throw new Error('expected a command, got help');
  return r;
}

describe('anchor ctl arguments', () => {
  it('defaults: the default admin address, no token, tables, 5 s timeout', () => {
    expect(parse(['status'])).toEqual({ help: false, conn: { admin: DEFAULT_ADMIN, token: undefined, json: false, timeoutMs: 5000 }, command: { cmd: 'status' } });
  });

  it('takes the token from --token, else from ANCHOR_ADMIN_TOKEN', () => {
    expect(parse(['status'], { ANCHOR_ADMIN_TOKEN: 'from-env' }).conn.token).toBe('from-env');
    expect(parse(['status', '--token', 'flag'], { ANCHOR_ADMIN_TOKEN: 'from-env' }).conn.token).toBe('flag');
    expect(parse(['status'], { ANCHOR_ADMIN_TOKEN: '' }).conn.token).toBeUndefined();
  });

  it('accepts the connection flags before or after the command', () => {
    const a = parse(['--admin', 'http://10.0.0.1:9180/', '--json', 'sessions', '--node', 'node-a', '--timeout', '0.5']);
    expect(a.conn).toEqual({ admin: 'http://10.0.0.1:9180', token: undefined, json: true, timeoutMs: 500 });
    expect(a.command).toEqual({ cmd: 'sessions', node: 'node-a', limit: 100, cursor: undefined });
  });

  it.each([
    [['sessions', '--limit', '5', '--cursor', ID], { cmd: 'sessions', node: undefined, limit: 5, cursor: ID }],
    [['session', ID], { cmd: 'session', id: ID }],
    [['plan', 'node-b'], { cmd: 'plan', node: 'node-b', limit: 20, cursor: undefined }],
    [['plan', 'node-b', '--limit', '1000', '--cursor', 'ab'.repeat(16)], { cmd: 'plan', node: 'node-b', limit: 1000, cursor: 'ab'.repeat(16) }],
    [['drain', 'node-a'], { cmd: 'drain', node: 'node-a', mode: 'migrate', deadlineS: undefined, detach: false }],
    [['drain', 'node-a', '--mode', 'wait', '--deadline', '90', '--detach'], { cmd: 'drain', node: 'node-a', mode: 'wait', deadlineS: 90, detach: true }],
    [['undrain', 'node-a'], { cmd: 'undrain', node: 'node-a' }],
    [['failover', 'node-c'], { cmd: 'failover', node: 'node-c', detach: false }],
    [['migrate', ID, '--to', 'node-b', '--expect-version', '7'], { cmd: 'migrate', session: ID, to: 'node-b', expectVersion: '7' }],
    [['migrate', ID, '--expect-version', '18446744073709551615'], { cmd: 'migrate', session: ID, to: undefined, expectVersion: '18446744073709551615' }],
    [['audit'], { cmd: 'audit', session: undefined, limit: 20, follow: false }],
    [['audit', '--session', ID, '--follow', '--limit', '3'], { cmd: 'audit', session: ID, limit: 3, follow: true }],
    [['audit', '--head'], { cmd: 'audit-head' }],
  ])('%j', (argv, command) => {
    expect(parse(argv).command).toEqual(command);
  });

  it('answers help', () => {
    expect(parseCtlArgs(['--help'], {})).toEqual({ help: true });
    expect(parseCtlArgs(['help'], {})).toEqual({ help: true });
    expect(parseCtlArgs(['drain', '--help'], {})).toEqual({ help: true });
  });

  it.each([
    [[], /expected a command/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['status', '--bogus'], /--bogus/],
    [['status', '--mode', 'wait'], /--mode is not an option of status/],
    [['status', 'extra'], /unexpected argument "extra"/],
    [['drain'], /ctl drain: expected NODE/],
    [['drain', 'node-a', '--mode', 'fast'], /--mode: expected migrate or wait, got "fast"/],
    [['drain', 'node-a', '--deadline', 'soon'], /--deadline: expected a number/],
    [['drain', 'node-a', '--deadline', '5'], /--deadline applies to --mode wait only/],
    [['drain', 'bad node!'], /NODE: expected a node id/],
    [['drain', '..'], /NODE: expected a node id/],
    [['sessions', '--limit', '0'], /--limit: expected an integer ≥ 1 and ≤ 1000, got "0"/],
    [['sessions', '--limit', '1001'], /--limit/],
    [['sessions', '--node', 'a/b'], /--node: expected a node id/],
    [['sessions', '--cursor', 'zz'], /--cursor: expected a session id/],
    [['session', 'NOT-AN-ID'], /ID: expected a session id \(32 lowercase hex characters\), got "NOT-AN-ID"/],
    [['migrate', ID, '--to', 'x y'], /--to: expected a node id/],
    [['migrate', ID, '--expect-version', '-1'], /--expect-version/],
    [['migrate', ID, '--expect-version', 'v1'], /--expect-version: expected a version/],
    [['migrate', ID, '--expect-version', '18446744073709551616'], /--expect-version: expected a version \(a decimal integer up to 2\^64 - 1\), got "18446744073709551616"/],
    [['status', '--admin', 'http://127.0.0.1:9180', '--admin', 'http://127.0.0.1:9181'], /--admin given more than once/],
    [['audit', '--session', 'abc'], /--session: expected a session id/],
    [['audit', '--head', '--follow'], /--head and --follow exclude each other/],
    [['audit', '--head', '--limit', '5'], /--head and --limit exclude each other/],
    [['status', '--admin', 'ftp://host'], /--admin: expected an http:\/\/ URL/],
    [['status', '--admin', 'not a url'], /--admin: expected an http:\/\/ URL/],
    [['status', '--admin', 'http://u:p@host'], /--admin/],
    [['status', '--timeout', '0'], /--timeout: expected a number ≥ 0.1/],
    [['status', '--token', ''], /--token/],
  ])('usage error for %j', (argv, message) => {
    let err: unknown;
    try {
      parseCtlArgs(argv, {});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(2);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toMatch(/^anchor ctl/);
  });
});
