import { Buffer } from 'node:buffer';
import net from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bytesToIp, canonicalIp, familyOf, ipToBytes, ipv4MappedBytes, isUnspecified, parseHostPort, transportKey } from '../../src/codec/ip.js';
import { hex } from '../helpers/packet-builder.js';

const h = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : Buffer.from(b).toString('hex'));

describe('ipToBytes', () => {
  it.each([
    ['0.0.0.0', '00000000'],
    ['192.0.2.1', 'c0000201'],
    ['255.255.255.255', 'ffffffff'],
    ['::', '0'.repeat(32)],
    ['::1', '0'.repeat(31) + '1'],
    ['2001:DB8::1', '20010db8' + '0'.repeat(23) + '1'],
    ['::ffff:192.0.2.1', '0'.repeat(20) + 'ffffc0000201'],
    ['::192.0.2.1', '0'.repeat(24) + 'c0000201'], // IPv4-compatible stays as written (ipaddr.js alone would map it)
    ['64:ff9b::1.2.3.4', '0064ff9b' + '0'.repeat(16) + '01020304'],
    ['fe80::1%eth0', 'fe80' + '0'.repeat(27) + '1'], // zone dropped
    ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008'],
  ])('%s', (text, bytes) => expect(h(ipToBytes(text))).toBe(bytes));

  it.each(['', 'localhost', '1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '0x7f.0.0.1', '127.1', ' 1.2.3.4', '1.2.3.4 ', ':::', '1::2::3', '00001::', '1:2:3:4:5:6:7:8:9', '::1.2.3', '::256.1.1.1', 'fe80::1%', '[::1]', 'g::1'])(
    'rejects %j',
    (text) => {
      expect(ipToBytes(text)).toBeUndefined();
      expect(familyOf(text)).toBeUndefined();
      expect(canonicalIp(text)).toBeUndefined();
    },
  );
});

describe('bytesToIp (the form node:dgram reports)', () => {
  it.each([
    ['c0000201', '192.0.2.1'],
    ['0'.repeat(32), '::'],
    ['0'.repeat(31) + '1', '::1'],
    ['0'.repeat(31) + '2', '::2'],
    ['0'.repeat(20) + 'ffffc0000201', '::ffff:192.0.2.1'],
    ['0'.repeat(24) + 'c0000201', '::192.0.2.1'],
    ['0'.repeat(16) + 'ffff0000c0000201', '::ffff:0:c000:201'],
    ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'], // first of two equal runs
    ['00010000000000010000000000000001', '1:0:0:1::1'], // longest run
    ['00010000000200030004000500060007', '1:0:2:3:4:5:6:7'], // a single zero group is not compressed
    ['00010002000300040005000600070000', '1:2:3:4:5:6:7:0'],
    ['fe800000000000000000000000000000', 'fe80::'],
  ])('%s → %s', (bytes, text) => expect(bytesToIp(hex(bytes))).toBe(text));

  it('other lengths give ""', () => {
    expect(bytesToIp(new Uint8Array(5))).toBe('');
  });

  it('property: equals node:net formatting and round trips', () => {
    const word = fc.oneof(fc.constant(0), fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff }));
    fc.assert(
      fc.property(fc.array(word, { minLength: 8, maxLength: 8 }), fc.boolean(), (words, mapped) => {
        if (mapped) words.splice(0, 6, 0, 0, 0, 0, 0, 0xffff);
        const b = new Uint8Array(16);
        words.forEach((w, i) => b.set([w >> 8, w & 0xff], 2 * i));
        const full = words.map((w) => w.toString(16)).join(':');
        const text = bytesToIp(b);
        expect(text).toBe(new net.SocketAddress({ address: full, family: 'ipv6' }).address);
        expect(h(ipToBytes(text))).toBe(h(b));
      }),
      { numRuns: 2000 },
    );
  });

  it('property: familyOf agrees with net.isIP on IP-ish strings', () => {
    const chars = fc.constantFrom(...'0123456789abcdefABCDEFx:.'.split(''), '::', '255', '1.2.3.4');
    fc.assert(
      fc.property(fc.array(chars, { maxLength: 14 }).map((a) => a.join('')), (s) => {
        expect(familyOf(s) ?? 0).toBe(net.isIP(s));
      }),
      { numRuns: 5000 },
    );
  });
});

describe('canonicalIp / familyOf / ipv4MappedBytes', () => {
  it('canonicalizes', () => {
    expect(canonicalIp('2001:0DB8:0000::0001')).toBe('2001:db8::1');
    expect(canonicalIp('::FFFF:c000:0201')).toBe('::ffff:192.0.2.1');
    expect(canonicalIp('FE80::1%eth0')).toBe('fe80::1%eth0');
    expect(familyOf('10.0.0.1')).toBe(4);
    expect(familyOf('::ffff:10.0.0.1')).toBe(6);
  });
  it('maps IPv4 bytes', () => {
    expect(h(ipv4MappedBytes(hex('0a000001')))).toBe('00000000000000000000ffff0a000001');
    const six = new Uint8Array(16);
    expect(ipv4MappedBytes(six)).toBe(six);
  });
});

describe('transportKey / parseHostPort', () => {
  it.each([
    [{ family: 4, address: '192.0.2.1', port: 80 }, '192.0.2.1:80'],
    [{ family: 6, address: '::1', port: 0 }, '[::1]:0'],
    [{ family: 6, address: '::ffff:192.0.2.1', port: 65535 }, '[::ffff:192.0.2.1]:65535'],
  ] as const)('%j ↔ %s', (t, key) => {
    expect(transportKey(t)).toBe(key);
    expect(parseHostPort(key)).toEqual(t);
  });

  it('canonicalizes the address', () => {
    expect(parseHostPort('[2001:DB8:0::1]:443')).toEqual({ family: 6, address: '2001:db8::1', port: 443 });
  });

  it.each(['', '1.2.3.4', '1.2.3.4:', '1.2.3.4:65536', '1.2.3.4:-1', '1.2.3.4:+1', '1.2.3.4:1e3', '1.2.3.4:123456', 'localhost:5', '::1:5', '[::1]5', '[::1]:', '[1.2.3.4]:5', '[::1:5', '1.2.3.4: 5', ':5'])(
    'rejects %j',
    (s) => expect(parseHostPort(s)).toBeUndefined(),
  );

  it('property: parseHostPort(transportKey(t)) round trips', () => {
    const ip = fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 })).map(bytesToIp);
    fc.assert(
      fc.property(ip, fc.integer({ min: 0, max: 65535 }), (address, port) => {
        const t = { family: address.includes(':') ? 6 : 4, address, port } as const;
        expect(parseHostPort(transportKey(t))).toEqual(t);
      }),
    );
  });
});

describe('isUnspecified', () => {
  it.each([
    ['0.0.0.0', true],
    ['::', true],
    ['127.0.0.1', false],
    ['::1', false],
    ['0.0.0.1', false],
    ['::ffff:0.0.0.0', false], // a listener is written 0.0.0.0 or ::, never in a mapped form
  ])('%s: %s', (a, want) => {
    expect(isUnspecified(a)).toBe(want);
  });
});
