// The director under hostile input: random datagrams (fast-check) never crash it nor create a session;
// a non-owner's reply is dropped and audited.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { decodeJv1, encodeJv1 } from '../../src/codec/jv1.js';
import { decodePpv2 } from '../../src/codec/ppv2.js';
import { PacketType } from '../../src/codec/types.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { metric } from '../helpers/director-proc.js';
import { UdpPeer } from '../helpers/udp.js';
import { waitFor } from '../helpers/wait.js';
import { transportKey } from '../../src/codec/ip.js';

describe('random datagrams', () => {
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster({ family: 4 });
  });
  afterAll(async () => {
    await c?.stop();
  });

  it('never crash the director nor create a session', async () => {
    const target = c.director.udp[0]!;
    const peer = await UdpPeer.open(4);
    const jvHeader = fc.tuple(fc.constantFrom(0x4a), fc.constantFrom(0x56), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 255 }));
    const datagram = fc.oneof(
      fc.uint8Array({ minLength: 0, maxLength: 1400 }),
      // Biased towards JV1-looking bytes so that the decoder's deeper branches are exercised.
      fc.tuple(jvHeader, fc.uint8Array({ minLength: 0, maxLength: 200 })).map(([h, rest]) => Uint8Array.from([...h, ...rest])),
    );
    let sent = 0;
    let hellos = 0;
    const until = Date.now() + 3000;
    try {
      for (const batch of fc.sample(fc.array(datagram, { minLength: 100, maxLength: 100 }), { numRuns: 300, seed: 42 })) {
        for (const d of batch) {
          const dec = decodeJv1(d);
          // A valid HELLO would rightly open a session; the property is about everything else.
          if (dec.kind === 'ok' && dec.value.type === PacketType.HELLO) {
            hellos++;
            continue;
          }
          peer.send(d, target);
          sent++;
        }
        // Each batch is counted before the next is sent, so the kernel never drops what we count on.
        await waitFor('the batch to be counted', async () => (await metric(c.director.admin, 'anchor_client_datagrams_received_total')) >= sent, { intervalMs: 2 });
        if (Date.now() > until && sent > 1000) break; // at least ~1,000 datagrams however busy the machine is
      }
      expect(sent).toBeGreaterThan(1000);
      expect(await metric(c.director.admin, 'anchor_admissions_total')).toBe(0);
      expect(await metric(c.director.admin, 'anchor_sessions_active')).toBe(0);
      expect(await metric(c.director.admin, 'anchor_client_datagrams_dropped_total', { reason: 'malformed' })).toBeGreaterThan(0);
      // Still serving: a real session works afterwards.
      const id = randomBytes(16);
      peer.send(encodeJv1(PacketType.HELLO, id, Buffer.from('still alive')), target);
      await peer.next((m) => m[3] === PacketType.HELLO && m.subarray(4, 20).equals(id));
      expect(c.director.child.exitCode).toBeNull();
      expect(hellos).toBeLessThan(sent);
    } finally {
      peer.close();
    }
  });
});

describe('a reply from a node that does not own the session', () => {
  it('is dropped, counted and audited; the client never sees it', async () => {
    // node-d is a raw socket we control, standing where the director expects a fourth node.
    const rogue = await UdpPeer.open(4);
    // Health probes off: the rogue never answers them, and they would land in its inbox.
    const c2 = await startCluster({ family: 4, config: { health: { enabled: false } }, extraNodes: [{ id: 'node-d', address: transportKey(rogue.address) }] }).catch((e: unknown) => {
      rogue.close();
      throw e;
    });
    const client = await UdpPeer.open(4);
    try {
      const target = c2.director.udp[0]!;
      // Open sessions until one lands on the rogue node (it then learns the director's upstream port)
      // and one on a real node (whose id the rogue will answer for).
      let rogueFrom: { port: number; address: string } | undefined;
      let victim: Buffer | undefined;
      for (let i = 0; i < 200 && (rogueFrom === undefined || victim === undefined); i++) {
        const id = randomBytes(16);
        client.send(encodeJv1(PacketType.HELLO, id), target);
        const got = await Promise.race([
          client.next((m) => m[3] === PacketType.HELLO && m.subarray(4, 20).equals(id), 1000).then(() => 'client' as const),
          waitFor('rogue', () => rogue.inbox.length > 0, { timeoutMs: 1000 }).then(() => 'rogue' as const),
        ]).catch(() => 'none' as const);
        if (got === 'rogue') {
          const m = rogue.inbox.shift()!;
          const pp = decodePpv2(m.msg);
          expect(pp.kind).toBe('ok');
          rogueFrom = { port: m.from.port, address: m.from.address };
        } else if (got === 'client') victim ??= id;
      }
      expect(rogueFrom).toBeDefined();
      expect(victim).toBeDefined();
      const before = await metric(c2.director.admin, 'anchor_node_datagrams_dropped_total', { reason: 'node_not_owner' });
      rogue.send(encodeJv1(PacketType.DATA, victim!, Buffer.from('hijack')), { family: 4, address: rogueFrom!.address, port: rogueFrom!.port });
      await waitFor('the rogue reply to be dropped', async () => (await metric(c2.director.admin, 'anchor_node_datagrams_dropped_total', { reason: 'node_not_owner' })) === before + 1);
      const audit = (await (await fetch(`${c2.director.admin}/v1/audit?limit=1000`)).json()) as { items: { event: string; cause: string; actor: string }[] };
      expect(audit.items.some((l) => l.event === 'SECURITY_EVENT' && l.cause === 'reply_from_non_owner' && l.actor === 'node-d')).toBe(true);
      expect(client.inbox.filter((m) => m.msg.includes(Buffer.from('hijack')))).toEqual([]);
      // An acknowledgement of a REVOKE it was never sent: counted apart, nothing else changes.
      const acks = await metric(c2.director.admin, 'anchor_node_control_total', { kind: 'revoke_ack' });
      const version = Buffer.alloc(8);
      version.writeBigUInt64BE(7n);
      for (let i = 0; i < 3; i++) rogue.send(encodeJv1(PacketType.REVOKE, victim!, version), { family: 4, address: rogueFrom!.address, port: rogueFrom!.port });
      await waitFor('the unmatched acks counted', async () => (await metric(c2.director.admin, 'anchor_node_control_total', { kind: 'revoke_ack_unmatched' })) === 3);
      expect(await metric(c2.director.admin, 'anchor_node_control_total', { kind: 'revoke_ack' })).toBe(acks);
    } finally {
      client.close();
      rogue.close();
      await c2.stop();
    }
  });
});

