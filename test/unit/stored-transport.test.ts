// A session's transport in the store says whether it is a TCP connection: another director mirroring
// the session, or this one loading it after a restart, must not take a datagram from the same ip:port
// for the session's transport.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseStoredTransport, storedTransport, TCP_TRANSPORT_PREFIX } from '../../src/director/stored-transport.js';
import { TCP_LISTENER } from '../../src/director/outcomes.js';
import { canonicalTransport, nearCanonicalTransport } from '../helpers/transport-text.js';

const UDP = [{ family: 4 as const }, { family: 6 as const }, { family: 4 as const }];

describe('stored transports', () => {
  it('a datagram transport is written as its ip:port text, as before; a TCP one with "tcp:" in front', () => {
    expect(storedTransport('192.0.2.1:5000', 0)).toBe('192.0.2.1:5000');
    expect(storedTransport('192.0.2.1:5000', 2)).toBe('192.0.2.1:5000');
    expect(storedTransport('[2001:db8::1]:5000', TCP_LISTENER)).toBe('tcp:[2001:db8::1]:5000');
  });

  it('reads back the protocol: TCP on the TCP listener, datagrams on the first UDP listener of the family', () => {
    expect(parseStoredTransport('tcp:192.0.2.1:5000', UDP)).toEqual({ t: { family: 4, address: '192.0.2.1', port: 5000 }, key: '192.0.2.1:5000', listener: TCP_LISTENER });
    expect(parseStoredTransport('192.0.2.1:5000', UDP)).toEqual({ t: { family: 4, address: '192.0.2.1', port: 5000 }, key: '192.0.2.1:5000', listener: 0 });
    expect(parseStoredTransport('[2001:db8::1]:7', UDP)?.listener).toBe(1);
    // No listener of that family: the first (a packet from it arrives elsewhere and is a jump candidate).
    expect(parseStoredTransport('[2001:db8::1]:7', [{ family: 4 }])?.listener).toBe(0);
  });

  it('property: every canonical transport, over either protocol, reads back as written', () => {
    fc.assert(
      fc.property(canonicalTransport, fc.constantFrom(0, 1, 2, TCP_LISTENER), (key, listener) => {
        const back = parseStoredTransport(storedTransport(key, listener), UDP);
        expect(back).not.toBeNull();
        expect(back!.key).toBe(key);
        expect(back!.listener === TCP_LISTENER).toBe(listener === TCP_LISTENER);
        if (listener !== TCP_LISTENER) expect(UDP[back!.listener]!.family).toBe(back!.t.family);
      }),
    );
  });

  it('property: never throws; anything that is not an ip:port literal (after the prefix) is null', () => {
    fc.assert(
      fc.property(fc.oneof(nearCanonicalTransport, fc.string({ maxLength: 60 }), fc.string({ maxLength: 60 }).map((s) => TCP_TRANSPORT_PREFIX + s)), (s) => {
        const back = parseStoredTransport(s, UDP);
        if (back !== null) expect(s.endsWith(back.key)).toBe(true);
      }),
    );
    for (const bad of ['tcp:', 'tcp:tcp:1.2.3.4:5', 'udp:1.2.3.4:5', 'TCP:1.2.3.4:5', 'tcp:host:5', '']) expect(parseStoredTransport(bad, UDP)).toBeNull();
  });
});
