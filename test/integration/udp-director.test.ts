// End to end over real sockets: a real director process, three real reference nodes, IPv4 and IPv6.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runClient } from '../../src/client/client.js';
import { decodeJv1, decodeReject, encodeJv1, parseSessionIdHex } from '../../src/codec/jv1.js';
import { PacketType, RejectReason } from '../../src/codec/types.js';
import { buildRing } from '../../src/ring/ring.js';
import { createHasher } from '../../src/ring/hash.js';
import { closedRecords, startCluster, type Cluster } from '../helpers/cluster.js';
import { metric } from '../helpers/director-proc.js';
import { UdpPeer } from '../helpers/udp.js';
import { loadNativeUdp } from '../../src/net/native/index.js';
import { waitFor } from '../helpers/wait.js';
import { randomBytes } from 'node:crypto';

// Both UDP I/O paths: the native batched addon (socket.native: on; skipped with the loader's reason when
// it was not built) and node:dgram (off). The same behaviour is expected of both.
const native = loadNativeUdp();
const paths = [
  { io: 'native' as const, skip: native.ok ? null : native.reason },
  { io: 'dgram' as const, skip: null },
];
for (const { io, skip } of paths) {
  for (const family of [4, 6] as const) {
    describe.skipIf(skip !== null)(`UDP director over IPv${family}, ${io} I/O${skip === null ? '' : ` (skipped: ${skip})`}`, () => {
      let c: Cluster;
      beforeAll(async () => {
        c = await startCluster({ family, config: { socket: { native: io === 'native' ? 'on' : 'off' } } });
      });

      it(`runs on ${io} I/O (the "director started" line and anchor_udp_native_io say so)`, async () => {
        expect(c.director.stdout).toContain(`"udp_io":"${io}"`);
        // Segmentation offload (socket.gso, on by default) only on the native path.
        expect(c.director.stdout).toContain(`"udp_gso":${io === 'native'}`);
        expect(await metric(c.director.admin, 'anchor_udp_native_io')).toBe(io === 'native' ? 1 : 0);
      });
      afterAll(async () => {
        await c?.stop();
      });

      it(`the native sockets' own counters (anchor_udp_native_*) ${io === 'native' ? 'agree with the director' : 'stay absent'}`, async () => {
        const target = c.director.udp.find((t) => t.family === family);
        const report = await runClient({ target: target!, sessions: 20, rate: 400, durationS: 0.5, size: 64, drainMs: 2000 });
        expect(report.received).toBe(report.sent);
        const admin = c.director.admin;
        const native = (labels: Record<string, string>, name = 'anchor_udp_native_datagrams_total'): Promise<number> => metric(admin, name, labels);
        const received = await native({ socket: 'client', direction: 'received' });
        if (io === 'dgram') {
          expect(received).toBe(0);
          expect(await native({ socket: 'node', call: 'sendmmsg' }, 'anchor_udp_native_syscalls_total')).toBe(0);
          return;
        }
        // Every client datagram the director handled was read by a listener's recvmmsg, and so on.
        expect(received).toBe(await metric(admin, 'anchor_client_datagrams_received_total'));
        expect(received).toBeGreaterThanOrEqual(report.sent);
        expect(await native({ socket: 'client', call: 'recvmmsg' }, 'anchor_udp_native_syscalls_total')).toBeGreaterThan(0);
        expect(await native({ socket: 'node', direction: 'sent' })).toBeGreaterThanOrEqual(await metric(admin, 'anchor_client_datagrams_forwarded_total'));
        expect(await native({ socket: 'node', call: 'sendmmsg' }, 'anchor_udp_native_syscalls_total')).toBeGreaterThan(0);
        expect(await native({ socket: 'client', direction: 'sent' })).toBeGreaterThanOrEqual(report.received);
      });

      it('1,000 sessions get their echoes back, each on exactly the node the ring names', async () => {
        const target = c.director.udp.find((t) => t.family === family);
        expect(target).toBeDefined();
        const report = await runClient({ target: target!, sessions: 1000, rate: 2000, durationS: 2, size: 64, drainMs: 3000 });
        expect(report.sessions.opened).toBe(1000);
        expect(report.sent).toBeGreaterThanOrEqual(3000);
        expect(report.received).toBe(report.sent);

        const ring = buildRing(await createHasher(), c.nodeIds.map((id) => ({ id, weight: 1 })));
        const ids = new Set(report.session_ids);
        const records = await closedRecords(c, ids);
        const nodesBySession = new Map<string, Set<string>>();
        for (const l of records) {
          let s = nodesBySession.get(l.session);
          if (s === undefined) nodesBySession.set(l.session, (s = new Set()));
          s.add(l.node);
        }
        expect(nodesBySession.size).toBe(1000);
        const perNode = new Map<string, number>();
        for (const [id, nodes] of nodesBySession) {
          expect([...nodes]).toEqual([ring.pick(parseSessionIdHex(id)!)]);
          perNode.set([...nodes][0]!, (perNode.get([...nodes][0]!) ?? 0) + 1);
        }
        // All three nodes carry traffic.
        expect(perNode.size).toBe(3);
        // Each session's packets carry version 1 and sequence numbers 1, 2, 3, … in order.
        const bySession = new Map<string, bigint[]>();
        for (const l of records) {
          expect(l.version).toBe('1');
          const a = bySession.get(l.session) ?? [];
          a.push(BigInt(l.seq!));
          bySession.set(l.session, a);
        }
        for (const seqs of bySession.values()) expect(seqs).toEqual(seqs.map((_, i) => BigInt(i + 1)));
        // The session table is empty again (every session closed).
        await waitFor('sessions to end', async () => (await metric(c.director.admin, 'anchor_sessions_active')) === 0);
      });

      it('rejects unknown and terminated sessions', async () => {
        const target = c.director.udp.find((t) => t.family === family)!;
        const peer = await UdpPeer.open(family);
        try {
          const id = randomBytes(16);
          const isReject = (m: Buffer): boolean => decodeJv1(m).kind === 'ok' && m[3] === PacketType.REJECT;
          const reason = (m: Buffer): number | undefined => {
            const d = decodeJv1(m);
            return d.kind === 'ok' ? decodeReject(d.value.payload)?.reason : undefined;
          };
          peer.send(encodeJv1(PacketType.DATA, id, Buffer.from('x')), target);
          const r1 = await peer.next(isReject);
          expect(reason(r1)).toBe(RejectReason.UNKNOWN_SESSION);
          expect(r1.length).toBeLessThanOrEqual(21);
          expect(r1.subarray(4, 20).equals(id)).toBe(true);

          peer.send(encodeJv1(PacketType.HELLO, id, Buffer.from('hi')), target);
          await peer.next((m) => m[3] === PacketType.HELLO);
          peer.send(encodeJv1(PacketType.CLOSE, id, Buffer.from('bye')), target);
          await waitFor('the close to be counted', async () => (await metric(c.director.admin, 'anchor_sessions_ended_total', { cause: 'client_close' })) > 0);
          for (const type of [PacketType.DATA, PacketType.HELLO, PacketType.CLOSE]) {
            peer.send(encodeJv1(type, id, Buffer.from('again')), target);
            expect(reason(await peer.next(isReject))).toBe(RejectReason.SESSION_TERMINATED);
          }
          // A packet too short for a REJECT no larger than itself gets silence.
          const before = await metric(c.director.admin, 'anchor_client_datagrams_dropped_total', { reason: 'reject_too_small' });
          peer.send(encodeJv1(PacketType.DATA, randomBytes(16)), target);
          await waitFor('the short packet to be dropped', async () => (await metric(c.director.admin, 'anchor_client_datagrams_dropped_total', { reason: 'reject_too_small' })) === before + 1);
          expect(peer.inbox.filter((m) => isReject(m.msg))).toEqual([]);
        } finally {
          peer.close();
        }
      });

      it('a HELLO as large as a datagram the director reads (9,216 bytes) reaches its node with the PROXY v2 header (it is held, then sent from a copy), and so does DATA', async () => {
        const target = c.director.udp.find((t) => t.family === family)!;
        const peer = await UdpPeer.open(family);
        try {
          const errors = await metric(c.director.admin, 'anchor_send_errors_total', { to: 'node' });
          const id = randomBytes(16);
          peer.send(encodeJv1(PacketType.HELLO, id, Buffer.alloc(9216 - 20, 1)), target);
          await peer.next((m) => m[3] === PacketType.HELLO && m.subarray(4, 20).equals(id));
          const data = Buffer.alloc(9216 - 20, 2);
          peer.send(encodeJv1(PacketType.DATA, id, data), target);
          const echo = await peer.next((m) => m[3] === PacketType.DATA && m.subarray(4, 20).equals(id));
          expect(echo.subarray(20).equals(data)).toBe(true);
          expect(await metric(c.director.admin, 'anchor_send_errors_total', { to: 'node' })).toBe(errors);
        } finally {
          peer.close();
        }
      });

      it('relays a node-initiated CLOSE and ends the session', async () => {
        const target = c.director.udp.find((t) => t.family === family)!;
        const peer = await UdpPeer.open(family);
        try {
          const id = randomBytes(16);
          peer.send(encodeJv1(PacketType.HELLO, id), target);
          await peer.next((m) => m[3] === PacketType.HELLO);
          peer.send(encodeJv1(PacketType.DATA, id, Buffer.from('!close please')), target);
          const closeMsg = await peer.next((m) => m[3] === PacketType.CLOSE);
          expect(closeMsg.subarray(4, 20).equals(id)).toBe(true);
          peer.send(encodeJv1(PacketType.DATA, id, Buffer.from('after the end')), target);
          const rej = await peer.next((m) => m[3] === PacketType.REJECT);
          expect(rej[20]).toBe(RejectReason.SESSION_TERMINATED);
        } finally {
          peer.close();
        }
      });

      it('keeps the counter identities: received = forwarded + held + rejected + dropped', async () => {
        const a = c.director.admin;
        const [rx, fwd, held, rej, drop, released, discarded, failed] = await Promise.all([
          metric(a, 'anchor_client_datagrams_received_total'),
          metric(a, 'anchor_client_datagrams_forwarded_total'),
          metric(a, 'anchor_client_datagrams_held_total'),
          metric(a, 'anchor_client_datagrams_rejected_total'),
          metric(a, 'anchor_client_datagrams_dropped_total'),
          metric(a, 'anchor_client_datagrams_released_total'),
          metric(a, 'anchor_held_datagrams_discarded_total'),
          metric(a, 'anchor_admissions_failed_total'),
        ]);
        expect(rx).toBeGreaterThan(0);
        expect(held).toBeGreaterThan(0); // every HELLO is held until the store has created its session
        expect(rx).toBe(fwd + held + rej + drop);
        expect(held).toBe(released + discarded + failed);
        const [nrx, relayed, control, ndrop] = await Promise.all([
          metric(a, 'anchor_node_datagrams_received_total'),
          metric(a, 'anchor_node_datagrams_relayed_total'),
          metric(a, 'anchor_node_control_total'),
          metric(a, 'anchor_node_datagrams_dropped_total'),
        ]);
        expect(nrx).toBe(relayed + control + ndrop);
      });
    });
  }
}
