// arrivedOn (src/net/tcp-front.ts): the PROXY v2 destination of a TCP connection is the director address it
// arrived on (DESIGN §3) — the socket's local address, which on a wildcard listener is the only one that
// says which address of the host the client reached.
import { describe, expect, it } from 'vitest';
import { arrivedOn } from '../../src/net/tcp-front.js';

describe('arrivedOn', () => {
  it('a wildcard listener: the address the connection reached, not 0.0.0.0 or ::', () => {
    expect(arrivedOn({ family: 4, address: '0.0.0.0', port: 9000 }, { localAddress: '192.0.2.10', localPort: 9000, localFamily: 'IPv4' })).toEqual({ family: 4, address: '192.0.2.10', port: 9000 });
    expect(arrivedOn({ family: 6, address: '::', port: 9000 }, { localAddress: '2001:db8::7', localPort: 9000, localFamily: 'IPv6' })).toEqual({ family: 6, address: '2001:db8::7', port: 9000 });
    // An IPv4 client on a dual-stack listener: as the socket says (IPv4-mapped), like its source.
    expect(arrivedOn({ family: 6, address: '::', port: 9000 }, { localAddress: '::ffff:192.0.2.10', localPort: 9000, localFamily: 'IPv6' })).toEqual({ family: 6, address: '::ffff:192.0.2.10', port: 9000 });
  });

  it('a listener on one address: the same address', () => {
    expect(arrivedOn({ family: 4, address: '127.0.0.1', port: 4000 }, { localAddress: '127.0.0.1', localPort: 4000, localFamily: 'IPv4' })).toEqual({ family: 4, address: '127.0.0.1', port: 4000 });
  });

  it('a socket that no longer knows its local address (closed at once): the listener\'s', () => {
    const l = { family: 4 as const, address: '0.0.0.0', port: 9000 };
    expect(arrivedOn(l, {})).toBe(l);
    expect(arrivedOn(l, { localAddress: '', localPort: 9000 })).toBe(l);
    expect(arrivedOn(l, { localAddress: '10.0.0.1' })).toBe(l);
  });
});
