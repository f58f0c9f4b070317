// The reference node's session keys and jump MAC (src/refnode/keys.ts): pinned vectors, and properties
// (any change to header, app bytes or MAC fails verification).
import { Buffer } from 'node:buffer';
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeJv1 } from '../../src/codec/jv1.js';
import { PacketType } from '../../src/codec/types.js';
import {
  DEV_SECRET_TEXT,
  JUMP_MAC_LEN,
  SESSION_KEY_LEN,
  devSecret,
  jumpMac,
  sealPacket,
  sessionKey,
  verifyPacket,
} from '../../src/refnode/keys.js';
import { hex, sid } from '../helpers/packet-builder.js';

describe('sessionKey', () => {
  it('is the first 16 bytes of HMAC-SHA256(secret, sessionId) (pinned)', () => {
    expect(sessionKey(devSecret(), sid(7)).toString('hex')).toBe('02d180dd0f8e19ad8996b8ca30706554');
    expect(sessionKey(Buffer.from('s3cret'), sid(7)).toString('hex')).toBe('fb0f44ccbd32291ae978567e615aee09');
    expect(sessionKey(devSecret(), sid(7))).toHaveLength(SESSION_KEY_LEN);
  });

  it('the dev secret is the documented constant', () => {
    expect(devSecret().toString('utf8')).toBe(DEV_SECRET_TEXT);
    expect(devSecret()).not.toBe(devSecret()); // a fresh copy each time: nobody can change the default
  });

  it('differs per session and per secret', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ minLength: 16, maxLength: 16 }), (a, b) => {
        fc.pre(!Buffer.from(a).equals(Buffer.from(b)));
        expect(sessionKey(devSecret(), a).equals(sessionKey(devSecret(), b))).toBe(false);
        expect(sessionKey(Buffer.from('x'), a).equals(sessionKey(Buffer.from('y'), a))).toBe(false);
      }),
    );
  });
});

describe('jumpMac / sealPacket / verifyPacket', () => {
  const key = sessionKey(devSecret(), sid(7));
  const header = hex('4a56 0102');
  const header20 = Buffer.concat([header, sid(7)]);

  it('is the first 16 bytes of HMAC-SHA256(key, header20 ‖ app) (pinned)', () => {
    expect(jumpMac(key, header20, Buffer.from('ping')).toString('hex')).toBe('712782b918065fa2512795b602ee803e');
    const direct = createHmac('sha256', key).update(Buffer.concat([header20, Buffer.from('ping')])).digest().subarray(0, 16);
    expect(jumpMac(key, header20, Buffer.from('ping')).equals(direct)).toBe(true);
  });

  it('sealPacket appends the MAC of header and app bytes', () => {
    const p = encodeJv1(PacketType.DATA, sid(7), Buffer.from('ping'));
    const sealed = sealPacket(key, p);
    expect(sealed).toHaveLength(p.length + JUMP_MAC_LEN);
    expect(sealed.subarray(0, p.length).equals(p)).toBe(true);
    expect(sealed.subarray(p.length).toString('hex')).toBe('712782b918065fa2512795b602ee803e');
    expect(verifyPacket(key, sealed)).toBe(true);
  });

  it('rejects packets too short to hold header and MAC, without throwing', () => {
    expect(verifyPacket(key, Buffer.alloc(0))).toBe(false);
    expect(verifyPacket(key, encodeJv1(PacketType.DATA, sid(7), Buffer.alloc(15)))).toBe(false);
    expect(() => sealPacket(key, Buffer.alloc(19))).toThrow(RangeError);
  });

  it('an empty app payload is valid: header ‖ mac', () => {
    expect(verifyPacket(key, sealPacket(key, encodeJv1(PacketType.DATA, sid(7))))).toBe(true);
  });

  it('property: any flipped bit, a different key or a different session fails', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }).filter((b) => b.some((x) => x !== 0)),
        fc.uint8Array({ maxLength: 200 }),
        fc.nat(),
        fc.integer({ min: 0, max: 7 }),
        (id, app, at, bit) => {
          const k = sessionKey(devSecret(), id);
          const sealed = sealPacket(k, encodeJv1(PacketType.DATA, id, app));
          expect(verifyPacket(k, sealed)).toBe(true);
          const bad = Buffer.from(sealed);
          const i = at % bad.length;
          bad[i] = (bad[i] as number) ^ (1 << bit);
          expect(verifyPacket(k, bad)).toBe(false);
          expect(verifyPacket(sessionKey(Buffer.from('other'), id), sealed)).toBe(false);
        },
      ),
    );
  });
});
