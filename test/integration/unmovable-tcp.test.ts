// Sessions whose protocol keeps its state on the node cannot move (409 unmovable; a drain ends them), over
// TCP as over UDP: a TCP session does not say which TCP listener took it, so with a TCP listener of another
// codec than JV1 it counts as one that cannot move (before, it was moved — then ended with its connection,
// its id tombstoned, where the same codec over UDP was refused).
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startDirector, type DirectorProc } from '../helpers/director-proc.js';
import { UdpPeer } from '../helpers/udp.js';
import { waitFor } from '../helpers/wait.js';

/** An offset-codec packet: 4 bytes, the 8-byte id, a payload. */
const pkt = (idHex: string): Buffer => Buffer.concat([Buffer.alloc(4), Buffer.from(idHex, 'hex'), Buffer.from('payload-bytes')]);

const cleanup: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

describe('sessions of a TCP listener whose codec is not JV1', () => {
  it('are refused a migration (409 unmovable) as over UDP, and a drain ends them instead of moving them', async () => {
    // Nodes: TCP and UDP sinks that keep what they get.
    const sinks: net.Server[] = [];
    for (let i = 0; i < 2; i++) {
      const s = net.createServer((c) => c.on('data', () => undefined).on('error', () => undefined));
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      sinks.push(s);
      cleanup.push(() => void s.close());
    }
    const d: DirectorProc = await startDirector({
      director: { id: 'unmovable' },
      listen: { udp: [{ address: '127.0.0.1:0', codec: 'offset', offset: 4, length: 8 }], tcp: [{ address: '127.0.0.1:0', codec: 'offset', offset: 4, length: 8 }] },
      admin: { listen: '127.0.0.1:0' },
      nodes: sinks.map((s, i) => ({ id: `node-${i}`, address: `127.0.0.1:${(s.address() as net.AddressInfo).port}` })),
      health: { enabled: false },
    });
    cleanup.push(async () => {
      d.kill();
      await d.exited;
    });
    const u = await UdpPeer.open(4);
    cleanup.push(() => u.close());
    u.send(pkt('1111111111111111'), d.udp[0]!);
    const t = net.connect(d.tcp[0]!.port, '127.0.0.1', () => t.write(pkt('2222222222222222')));
    t.on('error', () => undefined);
    cleanup.push(() => void t.destroy());
    type Item = { id: string; owner: string };
    const items = await waitFor('both sessions', async () => {
      const r = (await (await fetch(`${d.admin}/v1/sessions`)).json()) as { items: Item[] };
      return r.items.length === 2 ? r.items : undefined;
    });
    const migrate = async (id: string): Promise<{ status: number; code?: string }> => {
      const r = await fetch(`${d.admin}/v1/sessions/${id}/migrate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      return { status: r.status, code: ((await r.json()) as { error?: { code: string } }).error?.code };
    };
    const tcp = items.find((s) => s.id.includes('2222'))!;
    expect(await migrate(items.find((s) => s.id.includes('1111'))!.id)).toEqual({ status: 409, code: 'unmovable' });
    expect(await migrate(tcp.id)).toEqual({ status: 409, code: 'unmovable' });
    // Drained off its node: ended (drain_unmovable), counted as ended, never moved.
    const r = await fetch(`${d.admin}/v1/nodes/${tcp.owner}/drain`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"mode":"migrate"}' });
    const { id } = (await r.json()) as { id: string };
    const done = await waitFor('the drain to end', async () => {
      const v = (await (await fetch(`${d.admin}/v1/drains/${id}`)).json()) as { state: string; moved: number; ended: number };
      return v.state !== 'running' ? v : undefined;
    });
    expect(done).toMatchObject({ state: 'completed', moved: 0 });
    expect(done.ended).toBeGreaterThanOrEqual(1);
    const audit = (await (await fetch(`${d.admin}/v1/audit?session=${tcp.id}`)).json()) as { items: { event: string; cause: string }[] };
    expect(audit.items.map((l) => [l.event, l.cause])).toContainEqual(['terminate', 'drain_unmovable']);
    expect(audit.items.map((l) => l.event)).not.toContain('transfer');
  });
});
