// Real OpenVPN 2.6 behind Anchor: three servers per transport, clients connecting through the director
// (codec openvpn, transparent forwarding), each tun device in a namespace the lab creates. Handshakes and
// pings through the tunnels, one server per client (management client lists), spread over all three,
// tls-crypt, and drains in `wait` and `migrate` mode.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VpnLab, type Pki, type VpnClient, type VpnServer } from '../helpers/openvpn.js';
import { startDirector, type DirectorProc } from '../helpers/director-proc.js';
import { waitFor } from '../helpers/wait.js';

const isRoot = process.getuid?.() === 0;
const VIA_ANCHOR = 12;
const DIRECT = 10;
/**
 * Clients added one by one while a server has none yet: placement is by the ring over random session ids,
 * and with 6 the chance that 18 clients all missed one of three servers (0.2%) failed a run once.
 * With 20: 3 × (2/3)^32 ≈ 7e-6.
 */
const EXTRA = 20;

interface Setup {
  lab: VpnLab;
  pki: Pki;
  servers: VpnServer[];
  director: DirectorProc;
  target: { host: string; port: number };
}

function directorPort(d: DirectorProc, proto: 'udp' | 'tcp'): number {
  const line = d.stdout.split('\n').find((l) => l.includes('director started'))!;
  const list = (JSON.parse(line) as { udp: string[]; tcp: string[] })[proto];
  const s = list[0]!;
  return Number(s.slice(s.lastIndexOf(':') + 1));
}

async function setup(proto: 'udp' | 'tcp', tlsCrypt: boolean, clients: number): Promise<Setup> {
  const lab = new VpnLab();
  try {
    const pki = await lab.makePki({ clients });
    const servers = await Promise.all(
      [0, 1, 2].map(async (i) =>
        lab.startServer({
          name: `${proto}-s${i}`,
          proto,
          port: await lab.freePort(proto),
          subnet: `198.18.${proto === 'udp' ? 10 + i : 20 + i}.0`,
          pki,
          tlsCrypt,
          managementPort: await lab.freePort('tcp'),
          // Fast dead-peer detection, so that clients whose session a drain ended reconnect quickly.
          extraConfig: ['keepalive 1 5'],
        }),
      ),
    );
    const codecListener = { address: '127.0.0.1:0', codec: 'openvpn' };
    const director = await startDirector({
      listen: proto === 'udp' ? { udp: [codecListener] } : { udp: ['127.0.0.1:0'], tcp: [codecListener] },
      admin: { listen: '127.0.0.1:0' },
      nodes: servers.map((s) => ({ id: s.name, address: `127.0.0.1:${s.port}` })),
      backend: { encapsulation: 'none' },
      health: { enabled: false }, // OpenVPN servers do not answer PROXY v2 LOCAL probes
      admission: { per_source_rate: 1000, per_source_burst: 1000 },
      drain: { quiesce_ms: 0 },
    });
    return { lab, pki, servers, director, target: { host: '127.0.0.1', port: directorPort(director, proto) } };
  } catch (err) {
    await lab.cleanup();
    throw err;
  }
}

/** Which servers list each client CN right now. */
async function placement(servers: VpnServer[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const s of servers) {
    for (const c of await s.clients()) out.set(c.cn, [...(out.get(c.cn) ?? []), s.name]);
  }
  return out;
}

/**
 * Whether `c` gets an echo from `ip` through its tunnel within a bound: one ping round (2 probes, 1 s each)
 * can lose both on a loaded machine, so rounds are repeated until one answers or 15 s have passed.
 */
async function pingsWithin(c: { ping(ip: string, count?: number): Promise<boolean> }, ip: string): Promise<boolean> {
  return waitFor(`a ping to ${ip}`, () => c.ping(ip, 2), { timeoutMs: 15_000, intervalMs: 100 }).then(
    () => true,
    () => false,
  );
}

async function expectPings(clients: VpnClient[], servers: VpnServer[]): Promise<void> {
  const where = await placement(servers);
  for (const c of clients) {
    const on = where.get(c.cn) ?? [];
    expect(on, `${c.cn} is on exactly one server`).toHaveLength(1);
    const server = servers.find((s) => s.name === on[0])!;
    expect(await pingsWithin(c, server.tunnelIp), `${c.cn} pings ${server.name} through the tunnel`).toBe(true);
  }
}

/** Drains `drained` in migrate mode; its clients must reconnect, be listed once elsewhere, and ping. */
async function migrateDrainMovesClients(s: Setup, drained: VpnServer, via: VpnClient[]): Promise<void> {
  const where = await placement(s.servers);
  const onIt = via.filter((c) => where.get(c.cn)?.[0] === drained.name);
  expect(onIt.length).toBeGreaterThan(0);
  const reconnected = onIt.map((c) => c.waitReconnected(30_000));
  const r = await fetch(`${s.director.admin}/v1/nodes/${drained.name}/drain`, { method: 'POST', body: JSON.stringify({ mode: 'migrate' }) });
  expect(r.status).toBe(202);
  const drain = (await r.json()) as { id: string };
  await waitFor('the drain to complete', async () => ((await (await fetch(`${s.director.admin}/v1/drains/${drain.id}`)).json()) as { state: string }).state === 'completed');
  await Promise.all(reconnected);
  // The server notices its clients are gone (keepalive) and lists them nowhere but on their new server.
  await waitFor(
    'the moved clients to be listed once, elsewhere',
    async () => {
      const now = await placement(s.servers);
      return onIt.every((c) => {
        const on = now.get(c.cn) ?? [];
        return on.length === 1 && on[0] !== drained.name;
      });
    },
    { timeoutMs: 30_000, intervalMs: 250 },
  );
  await expectPings(onIt, s.servers);
}

describe.skipIf(!isRoot)('real OpenVPN behind Anchor', () => {
  describe('over UDP, with tls-crypt', () => {
    let s: Setup;
    const via: VpnClient[] = [];
    let next = 0;
    const start = (remote: { host: string; port: number }): Promise<VpnClient> => {
      const index = next++;
      return s.lab.startClient({ name: `u${index}`, proto: 'udp', remote, pki: s.pki, index, tlsCrypt: true });
    };
    beforeAll(async () => {
      s = await setup('udp', true, VIA_ANCHOR + DIRECT + EXTRA + 6);
    });
    afterAll(async () => {
      s?.director.kill();
      await s?.director.exited;
      await s?.lab.cleanup();
    });

    it(`${VIA_ANCHOR} clients through Anchor handshake and ping their server; none is on two servers; all three servers used`, async () => {
      // Baseline in the same run: clients straight to the servers.
      let t0 = Date.now();
      const direct = await Promise.all(Array.from({ length: DIRECT }, (_, i) => start({ host: '127.0.0.1', port: s.servers[i % 3]!.port })));
      await Promise.all(direct.map((c) => c.waitConnected(30_000)));
      const directMs = Date.now() - t0;
      await Promise.all(direct.map((c) => c.stop(0)));
      // Their servers still hold an instance per source port (until keepalive ends it). Anchor's session
      // sockets share 127.0.0.1 with them: one the OS gives a port of a killed client meets that instance,
      // and the server refuses the new CN on it (AUTH_FAILED, and the client exits). End them first.
      const left = await placement(s.servers);
      await Promise.all(direct.flatMap((c) => (left.get(c.cn) ?? []).map((n) => s.servers.find((x) => x.name === n)!.killClient(c.cn))));
      await waitFor('the direct clients to be listed on no server', async () => {
        const now = await placement(s.servers);
        return direct.every((c) => !now.has(c.cn));
      });

      t0 = Date.now();
      via.push(...(await Promise.all(Array.from({ length: VIA_ANCHOR }, () => start(s.target)))));
      await Promise.all(via.map((c) => c.waitConnected(30_000)));
      const viaMs = Date.now() - t0;
      console.log(`openvpn udp: ${DIRECT} clients direct up in ${directMs} ms; ${VIA_ANCHOR} clients through Anchor up in ${viaMs} ms`);
      await expectPings(via, s.servers);
      // The ring spreads sessions; should chance leave a server empty, a few more clients fill it.
      let used = new Set([...(await placement(s.servers)).values()].flat());
      for (let extra = 0; extra < EXTRA && used.size < 3; extra++) {
        const c = await start(s.target);
        await c.waitConnected(30_000);
        via.push(c);
        used = new Set([...(await placement(s.servers)).values()].flat());
      }
      expect(used.size).toBe(3);
    });

    it('a wait drain keeps the drained server\'s clients up while new clients go elsewhere', async () => {
      const drained = s.servers[0]!;
      const where = await placement(s.servers);
      const onIt = via.filter((c) => where.get(c.cn)?.[0] === drained.name);
      const r = await fetch(`${s.director.admin}/v1/nodes/${drained.name}/drain`, { method: 'POST', body: JSON.stringify({ mode: 'wait', deadline_s: 600 }) });
      expect(r.status).toBe(202);
      const fresh = await Promise.all([start(s.target), start(s.target), start(s.target)]);
      await Promise.all(fresh.map((c) => c.waitConnected(30_000)));
      const now = await placement(s.servers);
      for (const c of fresh) expect(now.get(c.cn)).not.toContain(drained.name);
      for (const c of onIt) {
        expect(now.get(c.cn)).toEqual([drained.name]);
        expect(await pingsWithin(c, drained.tunnelIp)).toBe(true);
      }
      via.push(...fresh);
      expect((await fetch(`${s.director.admin}/v1/nodes/${drained.name}/undrain`, { method: 'POST' })).status).toBe(200);
    });

    it('a migrate drain ends the drained server\'s sessions; its clients reconnect onto the other servers', async () => {
      await migrateDrainMovesClients(s, s.servers[1]!, via);
    });
  });

  describe('over TCP', () => {
    let s: Setup;
    const via: VpnClient[] = [];
    let index = 0;
    const start = (): Promise<VpnClient> => s.lab.startClient({ name: `t${index}`, proto: 'tcp', remote: s.target, pki: s.pki, index: index++ });
    beforeAll(async () => {
      s = await setup('tcp', false, VIA_ANCHOR + EXTRA + 4);
    });
    afterAll(async () => {
      s?.director.kill();
      await s?.director.exited;
      await s?.lab.cleanup();
    });

    it(`${VIA_ANCHOR} clients through Anchor handshake and ping their server; none is on two servers; all three servers used`, async () => {
      via.push(...(await Promise.all(Array.from({ length: VIA_ANCHOR }, () => start()))));
      await Promise.all(via.map((c) => c.waitConnected(30_000)));
      await expectPings(via, s.servers);
      // Placement is by the ring over random session ids: a few more clients if one server has none yet.
      let used = new Set([...(await placement(s.servers)).values()].flat());
      for (let extra = 0; extra < EXTRA && used.size < 3; extra++) {
        const c = await start();
        await c.waitConnected(30_000);
        via.push(c);
        used = new Set([...(await placement(s.servers)).values()].flat());
      }
      expect(used.size).toBe(3);
    });

    it('a migrate drain closes the drained server\'s connections; its clients reconnect onto the other servers', async () => {
      await migrateDrainMovesClients(s, s.servers[2]!, via);
    });
  });
});
