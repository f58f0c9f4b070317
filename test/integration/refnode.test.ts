// The reference node over real sockets, with a test peer standing in for the director: HELLO keys, echoes,
// jump validation (BIND or silence), REVOKE fences, ownership-since, records. IPv4 and IPv6.
import { randomBytes } from 'node:crypto';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeBind, decodeJv1, decodeRevoke, encodeJv1, encodeReject, encodeRevoke, sessionIdHex } from '../../src/codec/jv1.js';
import { transportKey } from '../../src/codec/ip.js';
import { PP2_FLAG, encodePpv2 } from '../../src/codec/ppv2.js';
import { PacketType, RejectReason, type Transport } from '../../src/codec/types.js';
import { ClientSession, runClient } from '../../src/client/client.js';
import { checkRecords } from '../../src/refnode/checker.js';
import { devSecret, sealPacket, sessionKey } from '../../src/refnode/keys.js';
import { ReferenceNode, type RecordLine } from '../../src/refnode/node.js';
import { readRecords } from '../../src/refnode/records.js';
import { pb, PP2_SIGNATURE } from '../helpers/packet-builder.js';
import { tempDir } from '../helpers/director-proc.js';
import { UdpPeer } from '../helpers/udp.js';
import { waitFor } from '../helpers/wait.js';

const NODE_ID = 'node-x';

for (const family of [4, 6] as const) {
  const loop = family === 6 ? '::1' : '127.0.0.1';
  const client: Transport = { family, address: loop, port: 40001 };
  const jumped: Transport = { family, address: loop, port: 40002 };
  const director: Transport = { family, address: loop, port: 4500 };

  describe(`reference node over IPv${family}`, () => {
    let node: ReferenceNode;
    let peer: UdpPeer;
    let dir: string;
    let seq: bigint;

    beforeEach(async () => {
      dir = tempDir('anchor-refnode-');
      node = new ReferenceNode({ id: NODE_ID, listen: { family, address: loop, port: 0 }, recordPath: join(dir, `${NODE_ID}.jsonl`) });
      await node.start();
      peer = await UdpPeer.open(family);
      seq = 0n;
    });
    afterEach(async () => {
      peer.close();
      await node.close();
    });

    /** Sends `jv1` to the node behind a PROXY v2 header, as the director would. */
    const fwd = (jv1: Buffer, f: { version: bigint; flags?: number; owner?: string; src?: Transport; seq?: bigint }): bigint => {
      const s = f.seq ?? ++seq;
      const id = jv1.subarray(4, 20);
      const header = encodePpv2({ transport: 'DGRAM', src: f.src ?? client, dst: director, sessionId: id, version: f.version, owner: f.owner ?? NODE_ID, flags: f.flags ?? 0, seq: s });
      peer.send(Buffer.concat([header, jv1]), node.address);
      return s;
    };
    const ofType = (type: number) => (m: Buffer) => m[3] === type;
    const keyOf = (id: Uint8Array): Buffer => sessionKey(devSecret(), id);
    const data = (id: Uint8Array, app: string, key: Buffer | null = keyOf(id)): Buffer => {
      const p = encodeJv1(PacketType.DATA, id, Buffer.from(app));
      return key === null ? p : sealPacket(key, p);
    };
    /** Sends a bound DATA marker and waits for its echo: everything the node sent before it has arrived. */
    const barrier = async (id: Uint8Array, version: bigint): Promise<void> => {
      const marker = `barrier-${randomBytes(4).toString('hex')}`;
      fwd(data(id, marker), { version });
      await peer.next((m) => m[3] === PacketType.DATA && m.includes(Buffer.from(marker)));
    };
    const records = async (): Promise<RecordLine[]> => {
      await node.close();
      node = new ReferenceNode({ id: NODE_ID, listen: { family, address: loop, port: 0 } }); // for afterEach
      await node.start();
      return readRecords(dir);
    };

    it('answers HELLO with the session key', async () => {
      const id = randomBytes(16);
      fwd(encodeJv1(PacketType.HELLO, id, Buffer.from('hello')), { version: 1n });
      const reply = await peer.next(ofType(PacketType.HELLO));
      const d = decodeJv1(reply);
      expect(d.kind).toBe('ok');
      if (d.kind !== 'ok') return;
      expect(Buffer.from(d.value.sessionId).equals(id)).toBe(true);
      expect(Buffer.from(d.value.payload).equals(keyOf(id))).toBe(true);
      expect(node.stats.sessions).toBe(1);
    });

    it('derives keys from its secret option', async () => {
      const other = new ReferenceNode({ id: 'other', listen: { family, address: loop, port: 0 }, secret: Buffer.from('s3cret') });
      await other.start();
      try {
        const id = randomBytes(16);
        peer.send(encodeJv1(PacketType.HELLO, id), other.address);
        const reply = await peer.next(ofType(PacketType.HELLO));
        expect(reply.subarray(20).equals(sessionKey(Buffer.from('s3cret'), id))).toBe(true);
      } finally {
        await other.close();
      }
    });

    it('echoes bound DATA as it came, MAC or not, without checking it', async () => {
      const id = randomBytes(16);
      for (const p of [data(id, 'with a mac'), data(id, 'no mac', null), data(id, 'bad mac', Buffer.alloc(16))]) {
        fwd(p, { version: 1n });
        const echo = await peer.next(ofType(PacketType.DATA));
        expect(echo.equals(p)).toBe(true);
      }
      expect(node.stats.binds).toBe(0);
      expect(node.stats.forged).toBe(0);
    });

    it('validates a jump candidate with a valid MAC: BIND(version, transport), then the echo', async () => {
      const id = randomBytes(16);
      fwd(encodeJv1(PacketType.HELLO, id), { version: 1n });
      await peer.next(ofType(PacketType.HELLO));
      const p = data(id, 'jumped');
      fwd(p, { version: 7n, flags: PP2_FLAG.UNBOUND_SOURCE, src: jumped });
      const first = await peer.next();
      expect(first[3]).toBe(PacketType.BIND);
      const d = decodeJv1(first);
      expect(d.kind).toBe('ok');
      if (d.kind !== 'ok') return;
      expect(Buffer.from(d.value.sessionId).equals(id)).toBe(true);
      expect(decodeBind(d.value.payload)).toEqual({ version: 7n, transport: jumped });
      expect((await peer.next()).equals(p)).toBe(true);
      expect(node.stats.binds).toBe(1);
    });

    it('drops a jump candidate with a forged, missing or cut MAC: no BIND, no echo', async () => {
      const id = randomBytes(16);
      const flags = PP2_FLAG.UNBOUND_SOURCE;
      fwd(data(id, 'forged', randomBytes(16)), { version: 1n, flags, src: jumped });
      fwd(data(id, 'no mac', null), { version: 1n, flags, src: jumped });
      fwd(encodeJv1(PacketType.DATA, id, Buffer.alloc(15)), { version: 1n, flags, src: jumped });
      const other = randomBytes(16);
      fwd(data(id, 'wrong session key', keyOf(other)), { version: 1n, flags, src: jumped });
      await barrier(id, 1n);
      expect(peer.inbox).toEqual([]);
      expect(node.stats.forged).toBe(4);
      expect(node.stats.binds).toBe(0);
    });

    it('never BINDs a HELLO from an unbound source, and ignores its CLOSE', async () => {
      const id = randomBytes(16);
      fwd(encodeJv1(PacketType.HELLO, id), { version: 1n });
      await peer.next(ofType(PacketType.HELLO));
      fwd(encodeJv1(PacketType.HELLO, id), { version: 1n, flags: PP2_FLAG.UNBOUND_SOURCE, src: jumped });
      await peer.next(ofType(PacketType.HELLO));
      fwd(encodeJv1(PacketType.CLOSE, id), { version: 1n, flags: PP2_FLAG.UNBOUND_SOURCE, src: jumped });
      await barrier(id, 1n);
      expect(peer.inbox).toEqual([]);
      expect(node.stats.binds).toBe(0);
      expect(node.stats.ignored).toBe(1);
      expect(node.stats.sessions).toBe(1);
      fwd(encodeJv1(PacketType.CLOSE, id), { version: 1n });
      await waitFor('the bound CLOSE', () => node.stats.sessions === 0);
    });

    it('ends the session on "!close" app bytes (the MAC follows them)', async () => {
      const id = randomBytes(16);
      fwd(data(id, '!close now'), { version: 1n, flags: PP2_FLAG.UNBOUND_SOURCE, src: jumped });
      expect((await peer.next())[3]).toBe(PacketType.BIND);
      const close = await peer.next();
      expect(close[3]).toBe(PacketType.CLOSE);
      expect(close.subarray(4, 20).equals(id)).toBe(true);
      expect(node.stats.sessions).toBe(0);
    });

    it('REVOKE(V): acknowledged; then versions below V are fenced and V and above accepted again', async () => {
      const id = randomBytes(16);
      const hex = sessionIdHex(id);
      fwd(data(id, 'v1'), { version: 1n });
      await peer.next(ofType(PacketType.DATA));
      fwd(encodeRevoke(id, 5n), { version: 5n });
      const ack = await peer.next(ofType(PacketType.REVOKE));
      expect(ack.subarray(4, 20).equals(id)).toBe(true);
      expect(decodeRevoke(ack.subarray(20))).toBe(5n);
      expect(node.revokedBelow(hex)).toBe(5n);
      expect(node.stats.sessions).toBe(0);

      // Late packets of the old ownership: dropped, whatever their flags (a valid MAC changes nothing).
      fwd(data(id, 'late'), { version: 4n });
      fwd(data(id, 'late replay'), { version: 4n, flags: PP2_FLAG.REPLAYED });
      fwd(data(id, 'late jump'), { version: 1n, flags: PP2_FLAG.UNBOUND_SOURCE, src: jumped });
      fwd(encodeJv1(PacketType.HELLO, id), { version: 2n });
      // The session comes back at V: accepted again (REPLAYED packets are normal packets).
      const back = data(id, 'back');
      fwd(back, { version: 5n, flags: PP2_FLAG.REPLAYED });
      expect((await peer.next()).equals(back)).toBe(true);
      expect(peer.inbox).toEqual([]);
      expect(node.stats.fenced).toBe(4);
      expect(node.ownedSince(hex)).toBe(5n);

      // A repeated REVOKE is acknowledged again; a lower one does not lower the fence.
      fwd(encodeRevoke(id, 3n), { version: 3n });
      expect(decodeRevoke((await peer.next(ofType(PacketType.REVOKE))).subarray(20))).toBe(3n);
      expect(node.revokedBelow(hex)).toBe(5n);
    });

    it('ignores a REVOKE naming another owner or without a PROXY v2 header', async () => {
      const id = randomBytes(16);
      fwd(data(id, 'v1'), { version: 1n });
      await peer.next(ofType(PacketType.DATA));
      fwd(encodeRevoke(id, 2n), { version: 2n, owner: 'node-y' });
      peer.send(encodeRevoke(id, 2n), node.address);
      await barrier(id, 1n);
      expect(peer.inbox).toEqual([]);
      expect(node.stats.misaddressed).toBe(2);
      expect(node.revokedBelow(sessionIdHex(id))).toBeUndefined();
    });

    it('a new owner drops versions below the one its ownership began at', async () => {
      const id = randomBytes(16);
      const hex = sessionIdHex(id);
      fwd(data(id, 'first at v4', null), { version: 4n, flags: PP2_FLAG.REPLAYED });
      await peer.next(ofType(PacketType.DATA));
      expect(node.ownedSince(hex)).toBe(4n);
      fwd(data(id, 'stale'), { version: 3n });
      fwd(data(id, 'stale jump'), { version: 2n, flags: PP2_FLAG.UNBOUND_SOURCE, src: jumped });
      const ok = data(id, 'v6');
      fwd(ok, { version: 6n });
      expect((await peer.next()).equals(ok)).toBe(true);
      expect(peer.inbox).toEqual([]);
      expect(node.stats.stale).toBe(2);
    });

    it('answers PROXY v2 LOCAL probes with the same bytes', async () => {
      const probe = pb().bytes(PP2_SIGNATURE).u8(0x20, 0x00).u16(0).build();
      peer.send(probe, node.address);
      expect((await peer.next()).equals(probe)).toBe(true);
      expect(node.stats.probes).toBe(1);
    });

    it('serves bare JV1 (encapsulation none): HELLO key, DATA echo, no versions recorded', async () => {
      const id = randomBytes(16);
      peer.send(encodeJv1(PacketType.HELLO, id), node.address);
      expect((await peer.next(ofType(PacketType.HELLO))).subarray(20).equals(keyOf(id))).toBe(true);
      const p = data(id, 'bare');
      peer.send(p, node.address);
      expect((await peer.next(ofType(PacketType.DATA))).equals(p)).toBe(true);
      const lines = await records();
      expect(lines.map((l) => [l.type, l.version, l.seq, l.accepted, l.dst])).toEqual([
        [1, null, null, true, null],
        [2, null, null, true, null],
      ]);
    });

    it('records every packet with accepted/drop/revoke/dst; readRecords tolerates a cut last line', async () => {
      const id = randomBytes(16);
      const hex = sessionIdHex(id);
      fwd(encodeJv1(PacketType.HELLO, id), { version: 1n });
      fwd(data(id, 'forged', randomBytes(16)), { version: 1n, flags: PP2_FLAG.UNBOUND_SOURCE, src: jumped });
      fwd(data(id, 'jump'), { version: 1n, flags: PP2_FLAG.UNBOUND_SOURCE, src: jumped });
      fwd(data(id, 'after bind'), { version: 2n });
      fwd(encodeRevoke(id, 4n), { version: 4n });
      fwd(data(id, 'late'), { version: 2n });
      fwd(data(id, 'back', null), { version: 6n, flags: PP2_FLAG.REPLAYED });
      fwd(data(id, 'stale'), { version: 5n });
      await peer.next((m) => m.includes(Buffer.from('back')));
      const lines = await records();
      const d = transportKey(director);
      expect(lines.map(({ t, ...rest }) => (expect(t).toBeGreaterThan(0), rest))).toEqual([
        { node: NODE_ID, session: hex, version: '1', seq: '1', flags: 0, type: 1, accepted: true, dst: d },
        { node: NODE_ID, session: hex, version: '1', seq: '2', flags: 1, type: 2, accepted: false, drop: 'forged', dst: d },
        { node: NODE_ID, session: hex, version: '1', seq: '3', flags: 1, type: 2, accepted: true, dst: d },
        { node: NODE_ID, session: hex, version: '2', seq: '4', flags: 0, type: 2, accepted: true, dst: d },
        { node: NODE_ID, session: hex, version: '4', seq: '5', flags: 0, type: 4, accepted: true, revoke: '4', dst: d },
        { node: NODE_ID, session: hex, version: '2', seq: '6', flags: 0, type: 2, accepted: false, drop: 'fenced', dst: d },
        { node: NODE_ID, session: hex, version: '6', seq: '7', flags: 2, type: 2, accepted: true, dst: d },
        { node: NODE_ID, session: hex, version: '5', seq: '8', flags: 0, type: 2, accepted: false, drop: 'stale', dst: d },
      ]);
      expect(checkRecords(lines)).toMatchObject({ ok: true, sessions: 1, packets: 4, violations: [] });

      // A node killed mid-write leaves a cut last line: skipped. A bad line in the middle is an error.
      const path = join(dir, `${NODE_ID}.jsonl`);
      appendFileSync(path, '{"node":"node-x","sess');
      expect(await readRecords(dir)).toHaveLength(8);
      // Other JSON lines in the directory (a director's audit log) are not records.
      writeFileSync(join(dir, 'audit.jsonl'), '{"time":"x","seq":1,"session":"ab","event":"create"}\n');
      expect(await readRecords(dir)).toEqual(lines);
      writeFileSync(join(dir, 'broken.jsonl'), 'not json\n{}\n');
      await expect(readRecords(dir)).rejects.toThrow(/broken\.jsonl:1: not a JSON record/);
    });
  });
}

describe('ClientSession against a reference node', () => {
  it('learns the key from HELLO, MACs its DATA, and sends from a new socket after a jump', async () => {
    const node = new ReferenceNode({ id: 'solo', listen: { family: 4, address: '127.0.0.1', port: 0 } });
    await node.start();
    const s = await ClientSession.open(node.address, { graceMs: 10_000 });
    try {
      const key = await s.hello();
      expect(key?.equals(sessionKey(devSecret(), s.id))).toBe(true);
      s.sendData(Buffer.from('one'));
      const echo = await s.next((r) => r.type === PacketType.DATA);
      expect(echo.payload?.equals(sealPacket(key!, encodeJv1(PacketType.DATA, s.id, Buffer.from('one'))).subarray(20))).toBe(true);
      expect(echo.local).toEqual(s.transport);

      const before = s.transport;
      const after = await s.jump();
      expect(after.port).not.toBe(before.port);
      expect(s.transport).toEqual(after);
      expect(s.jumps).toBe(1);
      // Bare JV1 to the node: it answers the sender, i.e. the new socket.
      s.sendData(Buffer.from('two'));
      expect((await s.next((r) => r.type === PacketType.DATA)).local).toEqual(after);
      await s.sendClose();
      await waitFor('the CLOSE', () => node.stats.sessions === 0);
    } finally {
      await s.close();
      await node.close();
    }
  });
});

describe('ClientSession against a raw peer', () => {
  it('keeps receiving on the old socket for the grace period after a jump, then closes it', async () => {
    const peer = await UdpPeer.open(4);
    const s = await ClientSession.open(peer.address, { graceMs: 200 });
    try {
      const old = s.transport;
      await s.jump();
      peer.send(encodeJv1(PacketType.DATA, s.id, Buffer.from('late reply')), old);
      const r = await s.next((m) => m.type === PacketType.DATA);
      expect(r.local).toEqual(old);
      expect(r.payload?.toString()).toBe('late reply');
      // After the grace the old socket is gone: nothing more arrives there (the new one still works).
      expect(s.openSockets).toBe(2);
      await waitFor('the old socket to close', () => s.openSockets === 1);
      peer.send(encodeJv1(PacketType.DATA, s.id, Buffer.from('too late')), old);
      peer.send(encodeJv1(PacketType.DATA, s.id, Buffer.from('new')), s.transport);
      expect((await s.next((m) => m.type === PacketType.DATA)).payload?.toString()).toBe('new');
      expect(s.inbox).toEqual([]);
    } finally {
      await s.close();
      peer.close();
    }
  });

  it('sends DATA without a MAC when the HELLO reply carries no key (an older node)', async () => {
    const peer = await UdpPeer.open(4);
    const s = await ClientSession.open(peer.address);
    try {
      const hello = s.hello();
      const h = await peer.next((m) => m[3] === PacketType.HELLO);
      peer.send(h, s.transport); // echo the 5-byte "hello": no key
      expect(await hello).toBeNull();
      s.sendData(Buffer.from('plain'));
      expect((await peer.next((m) => m[3] === PacketType.DATA)).equals(encodeJv1(PacketType.DATA, s.id, Buffer.from('plain')))).toBe(true);
    } finally {
      await s.close();
      peer.close();
    }
  });

  it('hello() throws ClientRejectedError on a REJECT', async () => {
    const peer = await UdpPeer.open(4);
    const s = await ClientSession.open(peer.address);
    try {
      const hello = s.hello();
      await peer.next((m) => m[3] === PacketType.HELLO);
      peer.send(encodeReject(s.id, RejectReason.NO_CAPACITY, 'full')!, s.transport);
      await expect(hello).rejects.toMatchObject({ name: 'ClientRejectedError', reason: RejectReason.NO_CAPACITY, text: 'full' });
    } finally {
      await s.close();
      peer.close();
    }
  });
});

describe('runClient against a reference node', () => {
  it('jumps every session on its staggered schedule and counts every echo', async () => {
    const node = new ReferenceNode({ id: 'solo', listen: { family: 4, address: '127.0.0.1', port: 0 } });
    await node.start();
    try {
      const report = await runClient({ target: node.address, sessions: 5, rate: 500, durationS: 1, size: 32, jumpEveryS: 0.25, jumpGraceMs: 200 });
      expect(report.sessions.opened).toBe(5);
      // 5 sessions × 4 periods in 1 s: at most 20 jumps are due (a session still opening its last socket
      // skips a turn, and a loaded machine runs fewer turns); every session jumps at least once.
      expect(report.jumps).toBeGreaterThanOrEqual(5);
      expect(report.jumps).toBeLessThanOrEqual(20);
      expect(report.sent).toBeGreaterThan(0);
      expect(report.received).toBe(report.sent);
      expect(report.rejects).toEqual({});
      await waitFor('every CLOSE', () => node.stats.sessions === 0);
    } finally {
      await node.close();
    }
  });
});
