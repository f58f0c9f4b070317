// A UdpDirector on node:dgram after close: what Ownership may still ask of its data path while a stop
// waits for the store (a REVOKE resend timer, a store answer that forwards held packets or answers a
// HELLO) is dropped, not sent on a closed socket (node:dgram throws ERR_SOCKET_DGRAM_NOT_RUNNING
// synchronously, which from a timer would end the process). Replies held during a reattach, relayed once.
import { beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { RejectReason } from '../../src/codec/types.js';
import { UdpDirector } from '../../src/director/director.js';
import { createHasher } from '../../src/ring/hash.js';
import { buildRing, type Ring } from '../../src/ring/ring.js';
import { clientTransport, counterId, makeHarness } from '../helpers/ownership-harness.js';
import { UdpPeer } from '../helpers/udp.js';
import { waitFor } from '../helpers/wait.js';

let ring: Ring;
beforeAll(async () => {
  ring = buildRing(await createHasher(), [
    { id: 'node-a', weight: 1 },
    { id: 'node-b', weight: 1 },
  ]);
});

/** A UdpDirector on node:dgram over harness `h`: one loopback listener, two nodes at the discard port. */
function dgramDirector(h: ReturnType<typeof makeHarness>): UdpDirector {
  return new UdpDirector(
    {
      directorId: 'dir-test',
      listen: [{ family: 4, address: '127.0.0.1', port: 0 }],
      nodes: [
        { id: 'node-a', address: { family: 4, address: '127.0.0.1', port: 9 } },
        { id: 'node-b', address: { family: 4, address: '127.0.0.1', port: 9 } },
      ],
      encapsulation: 'ppv2',
      native: null,
    },
    { core: h.core, ownership: h.own, clock: h.clock, logger: pino({ level: 'silent' }), stats: h.stats },
  );
}

describe('UdpDirector after close', () => {
  it('REVOKE, forward, answer, held replies and candidate REJECTs are dropped, never sent on a closed socket', async () => {
    const h = makeHarness({ ring });
    const director = dgramDirector(h);
    await director.start();
    const rec = await h.admit(counterId(1), clientTransport(1));
    const candidate = { transport: clientTransport(2), key: '10.0.0.2:40002', listener: 0, bytesIn: 1000, bytesOut: 0, seenAt: 0 };
    director.revoke(rec, rec.owner, 2n); // sent while open
    await director.close();
    expect(() => {
      director.revoke(rec, rec.owner, 3n);
      director.forward({ kind: 'forward', session: rec, flags: 0, seq: 9, version: 1n, node: rec.owner, msg: Buffer.alloc(24), src: rec.transport, listener: 0, transition: null });
      director.answer({ kind: 'reject', reason: RejectReason.STORE_UNAVAILABLE, sessionId: rec.idBytes }, rec);
      director.relayHeld(rec, [Buffer.alloc(24)]);
      director.rejectCandidate(rec, candidate, RejectReason.OWNERSHIP_CONFLICT);
    }).not.toThrow();
  });
});

describe('UdpDirector held replies', () => {
  it('are relayed to the bound transport once, counted when they arrived (held_reply), not again as relayed', async () => {
    const h = makeHarness({ ring });
    const director = dgramDirector(h);
    await director.start();
    const client = await UdpPeer.open(4);
    try {
      const rec = await h.admit(counterId(2), client.address);
      const relayed = h.stats.relayed;
      const bytes = h.stats.relayedBytes;
      director.relayHeld(rec, [Buffer.from('held-1'), Buffer.from('held-2')]);
      await waitFor('both replies', () => client.inbox.length >= 2 || undefined);
      expect(client.inbox.map((m) => m.msg.toString())).toEqual(['held-1', 'held-2']);
      expect(h.stats.relayed).toBe(relayed);
      expect(h.stats.relayedBytes).toBe(bytes + 12);
    } finally {
      client.close();
      await director.close();
    }
  });
});
