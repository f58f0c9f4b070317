// What the admin API refuses from a browser: a foreign Origin always (cross-site request forgery), a
// Host that is not an address without a token (DNS rebinding). browserRefusal is pure.
import { describe, expect, it } from 'vitest';
import { bearerMatches, browserRefusal, exposedWithoutToken } from '../../src/admin/server.js';

describe('browserRefusal', () => {
  it.each([
    ['no Origin, an IPv4 Host, no token', '127.0.0.1:9180', undefined, false, null],
    ['no Origin, an IPv6 Host, no token', '[::1]:9180', undefined, false, null],
    ['no Origin, localhost, no token', 'localhost:9180', undefined, false, null],
    ['no Origin, LOCALHOST in capitals (host names are case-insensitive), no token', 'LOCALHOST:9180', undefined, false, null],
    ['its own origin, Host in capitals', 'ANCHOR.example', 'https://anchor.example', true, null],
    ['no Origin, an IP Host without a port', '10.0.0.7', undefined, false, null],
    ['its own origin', '127.0.0.1:9180', 'http://127.0.0.1:9180', false, null],
    ['its own origin over a TLS proxy, with a token', 'anchor.example', 'https://anchor.example', true, null],
    ['a host name with a token', 'anchor-1.internal:9180', undefined, true, null],
    ['a foreign Origin', '127.0.0.1:9180', 'https://evil.example', false, /another origin/],
    ['a foreign Origin, with a token', '127.0.0.1:9180', 'https://evil.example', true, /another origin/],
    ['the same host on another port', '127.0.0.1:9180', 'http://127.0.0.1:8080', true, /another origin/],
    ['an opaque Origin (a sandboxed page)', '127.0.0.1:9180', 'null', true, /another origin/],
    ['a garbled Origin', '127.0.0.1:9180', 'not a url', true, /another origin/],
    ['a rebound host name without a token', 'rebind.evil.example:9180', undefined, false, /without admin.token/],
    ['a rebound page (its own origin) without a token', 'rebind.evil.example:9180', 'http://rebind.evil.example:9180', false, /without admin.token/],
    ['no Host at all, no token', undefined, undefined, false, /without admin.token/],
  ] as const)('%s', (_what, host, origin, tokenSet, want) => {
    const r = browserRefusal(host, origin, tokenSet);
    if (want === null) expect(r).toBeNull();
    else expect(r).toMatch(want);
  });

  it('echoes at most 80 characters of what it refuses', () => {
    const r = browserRefusal('x'.repeat(5000), undefined, false) as string;
    expect(r.length).toBeLessThan(300);
  });
});

describe('bearerMatches', () => {
  it('takes the scheme in any case, never a wrong or missing token', () => {
    for (const scheme of ['Bearer', 'bearer', 'BEARER']) expect(bearerMatches(`${scheme} secret-token-123456`, 'secret-token-123456')).toBe(true);
    expect(bearerMatches('Bearer nope', 'secret-token-123456')).toBe(false);
    expect(bearerMatches('Basic secret-token-123456', 'secret-token-123456')).toBe(false);
    expect(bearerMatches(undefined, 'secret-token-123456')).toBe(false);
  });
});

describe('exposedWithoutToken (warned at start)', () => {
  const at = (address: string) => ({ family: address.includes(':') ? (6 as const) : (4 as const), address, port: 9180 });
  it('is true only for a non-loopback address with no token', () => {
    expect(['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1'].map((a) => exposedWithoutToken(at(a), null))).toEqual([false, false, false, false]);
    expect(['0.0.0.0', '10.0.0.5', '::', '192.168.1.1', '::ffff:10.0.0.1'].map((a) => exposedWithoutToken(at(a), null))).toEqual([true, true, true, true, true]);
    expect(exposedWithoutToken(at('0.0.0.0'), 'x'.repeat(16))).toBe(false);
  });
});
