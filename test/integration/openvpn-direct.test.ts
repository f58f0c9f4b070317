// Proves the real-OpenVPN harness (test/helpers/openvpn.ts) with direct connections, no Anchor in between:
// three OpenVPN 2.6 servers (UDP + tls-crypt, UDP + tls-auth, TCP) on loopback, four clients, each tun
// device in its own network namespace; handshakes, pings through the tunnels, the management client list,
// restarts, a server whose port was taken meanwhile, a client refused on the address of a killed one (and
// the harness naming the server's reason), and a cleanup that leaves no namespace or process behind.
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listNamespaces, pidAlive, VpnLab, vpnBinaries, type Pki, type VpnClient, type VpnServer } from '../helpers/openvpn.js';
import { waitFor } from '../helpers/wait.js';

// Needs root (tun devices, `ip netns`); scripts/ensure-test-deps.sh installs openvpn/openssl/iproute2/ping.
const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)('real OpenVPN harness, direct connections', () => {
  let lab: VpnLab;
  let pki: Pki;
  let udpCrypt: VpnServer;
  let udpAuth: VpnServer;
  let tcpPlain: VpnServer;
  const clients: VpnClient[] = [];

  beforeAll(async () => {
    lab = new VpnLab();
    const t0 = Date.now();
    pki = await lab.makePki({ clients: 8 });
    const tPki = Date.now() - t0;
    const ports = await Promise.all([
      lab.freePort('udp'), lab.freePort('udp'), lab.freePort('tcp'),
      lab.freePort('tcp'), lab.freePort('tcp'), lab.freePort('tcp'),
    ]);
    const [p1, p2, p3, m1, m2, m3] = ports as [number, number, number, number, number, number];
    const t1 = Date.now();
    [udpCrypt, udpAuth, tcpPlain] = await Promise.all([
      lab.startServer({ name: 'udp-crypt', proto: 'udp', port: p1, subnet: '198.18.1.0', pki, tlsCrypt: true, managementPort: m1 }),
      lab.startServer({ name: 'udp-auth', proto: 'udp', port: p2, subnet: '198.18.2.0', pki, tlsAuth: true, managementPort: m2 }),
      lab.startServer({ name: 'tcp-plain', proto: 'tcp', port: p3, subnet: '198.18.3.0', pki, managementPort: m3 }),
    ]);
    console.log(`openvpn harness: PKI (8 clients) ${tPki} ms, 3 servers up in ${Date.now() - t1} ms`);
  });

  afterAll(async () => {
    await lab?.cleanup();
  });

  it('4 clients complete the handshake, ping their server through the tunnel, and show in its client list', async () => {
    const plan: { server: VpnServer; index: number; tlsCrypt?: boolean; tlsAuth?: boolean }[] = [
      { server: udpCrypt, index: 0, tlsCrypt: true },
      { server: udpCrypt, index: 1, tlsCrypt: true },
      { server: udpAuth, index: 2, tlsAuth: true },
      { server: tcpPlain, index: 3 },
    ];
    const t0 = Date.now();
    const started = await Promise.all(
      plan.map((p, i) =>
        lab.startClient({
          name: `c${i + 1}`,
          proto: p.server.proto,
          remote: { host: '127.0.0.1', port: p.server.port },
          pki,
          index: p.index,
          tlsCrypt: p.tlsCrypt,
          tlsAuth: p.tlsAuth,
        }),
      ),
    );
    clients.push(...started);
    await Promise.all(clients.map((c) => c.waitConnected(20_000)));
    console.log(`openvpn harness: 4 clients connected in ${Date.now() - t0} ms`);

    await Promise.all(
      clients.map(async (c, i) => {
        const server = plan[i]!.server;
        expect(c.tunnelIp, `${c.name} tunnel address`).toMatch(new RegExp(`^${server.tunnelIp.replace(/\.1$/, '').replace(/\./g, '\\.')}\\.\\d+$`));
        expect(await c.ping(server.tunnelIp, 2), `${c.name} pings ${server.name} at ${server.tunnelIp}`).toBe(true);
        expect(await server.ping(c.tunnelIp!, 1), `${server.name} pings ${c.name} at ${c.tunnelIp}`).toBe(true);
      }),
    );

    // The management interface lists exactly the clients connected to each server, with their loopback source.
    const lists = await Promise.all([udpCrypt, udpAuth, tcpPlain].map((s) => s.clients()));
    const cns = lists.map((l) => l.map((c) => c.cn).sort());
    expect(cns).toEqual([['client-1', 'client-2'], ['client-3'], ['client-4']]);
    for (const [i, c] of clients.entries()) {
      const server = plan[i]!.server;
      const row = lists[[udpCrypt, udpAuth, tcpPlain].indexOf(server)]!.find((r) => r.cn === c.cn)!;
      expect(row.realAddress).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(row.virtualAddress).toBe(c.tunnelIp);
    }

    // Nothing leaked into the host namespace: the tun devices live only in the lab's namespaces.
    const hostAddrs = execFileSync(vpnBinaries().ip, ['-4', '-o', 'addr'], { encoding: 'utf8' });
    expect(hostAddrs).not.toMatch(/198\.18\./);
  });

  it('a client without the tls-crypt key gets nowhere; one offering tls-crypt to a tls-auth server neither', async () => {
    const [noKey, wrong] = await Promise.all([
      lab.startClient({ name: 'nokey', proto: 'udp', remote: { host: '127.0.0.1', port: udpCrypt.port }, pki, index: 4 }),
      lab.startClient({ name: 'wrongkey', proto: 'udp', remote: { host: '127.0.0.1', port: udpAuth.port }, pki, index: 5, tlsCrypt: true }),
    ]);
    await expect(noKey.waitConnected(2000)).rejects.toThrow(/timed out/);
    await expect(wrong.waitConnected(100)).rejects.toThrow(/timed out/);
    expect(udpCrypt.log()).toMatch(/tls-crypt unwrapping failed|packet authentication failed|Authenticate\/Decrypt packet error/i);
    const cns = (await Promise.all([udpCrypt.clients(), udpAuth.clients()])).flat().map((c) => c.cn);
    expect(cns).not.toContain('client-5');
    expect(cns).not.toContain('client-6');
    await Promise.all([noKey.stop(500), wrong.stop(500)]);
  });

  it('restart() gives a new process that reconnects; a management kill and reconnect() make the client come back by itself', async () => {
    const c = clients[3]!; // TCP
    const oldPid = c.pid;
    await c.restart();
    expect(c.pid).not.toBe(oldPid);
    expect(pidAlive(oldPid)).toBe(false);
    await c.waitConnected(15_000);
    expect(await c.ping(tcpPlain.tunnelIp, 1)).toBe(true);

    const u = clients[2]!; // UDP + tls-auth
    const before = (await udpAuth.clients()).find((r) => r.cn === u.cn)!;
    const reconnected = u.waitReconnected(20_000);
    expect((await udpAuth.killClient(u.cn))[0]).toMatch(/^SUCCESS:/);
    await reconnected;
    expect(await u.ping(udpAuth.tunnelIp, 2)).toBe(true);
    const after = await waitFor('the server to list the client again', async () => (await udpAuth.clients()).find((r) => r.cn === u.cn));
    expect(after.clientId).not.toBe(before.clientId);

    // reconnect() = SIGUSR1: same process, new UDP socket, so the server sees a new source port.
    const again = u.waitReconnected(20_000);
    u.reconnect();
    await again;
    const third = await waitFor('the server to list the reconnected client', async () =>
      (await udpAuth.clients()).find((r) => r.cn === u.cn && r.clientId !== after.clientId),
    );
    expect(third.realAddress).not.toBe(after.realAddress);
    expect(await u.ping(udpAuth.tunnelIp, 1)).toBe(true);
  });

  it('a server whose port another process took after it was picked starts again on fresh ports (EADDRINUSE)', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    try {
      const port = (taken.address() as net.AddressInfo).port;
      const s = await lab.startServer({ name: 'tcp-retry', proto: 'tcp', port, subnet: '198.18.4.0', pki, managementPort: await lab.freePort('tcp') });
      expect(s.port).not.toBe(port);
      expect(s.alive).toBe(true);
      expect(await s.clients()).toEqual([]);
    } finally {
      taken.close();
    }
  });

  it('a client from the address and port of a killed client with another certificate is refused by the server (AUTH_FAILED), and the failure names why', async () => {
    // Why transparent forwarding holds ports a session gave up (src/net/port-quarantine.ts): a UDP server
    // keeps a client by its address until keepalive drops it, and takes a new client there for the old one.
    const lport = await lab.freePort('udp');
    const from = ['bind', `lport ${lport}`, 'local 127.0.0.1'];
    const remote = { host: '127.0.0.1', port: udpCrypt.port };
    const first = await lab.startClient({ name: 'same-port-1', proto: 'udp', remote, pki, index: 6, tlsCrypt: true, extraConfig: from });
    await first.waitConnected(20_000);
    await first.stop(0); // no exit notification: the server still holds it
    const second = await lab.startClient({ name: 'same-port-2', proto: 'udp', remote, pki, index: 7, tlsCrypt: true, extraConfig: from });
    const err = await second.waitConnected(20_000).then(
      () => null,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/AUTH_FAILED/);
    expect(err?.message).toContain(`server log lines naming ${second.cn}`);
    expect(err?.message).toContain(`CN attempted to change from '${first.cn}' to '${second.cn}'`);
  });

  it('cleanup() kills every process and deletes every namespace it created, and is safe to call twice', async () => {
    const pids = [...lab.startedPids];
    const namespaces = [...lab.createdNamespaces];
    expect(pids.length).toBeGreaterThanOrEqual(3 + 4 + 2 + 1);
    expect(pids.some(pidAlive)).toBe(true);
    expect(await listNamespaces()).toEqual(expect.arrayContaining(namespaces));
    const t0 = Date.now();
    await lab.cleanup();
    console.log(`openvpn harness: cleanup of ${pids.length} processes / ${namespaces.length} namespaces in ${Date.now() - t0} ms`);
    await lab.cleanup();
    expect(pids.filter(pidAlive)).toEqual([]);
    const left = await listNamespaces();
    expect(left.filter((n) => namespaces.includes(n))).toEqual([]);
    await expect(lab.startClient({ name: 'late', proto: 'udp', remote: { host: '127.0.0.1', port: 1 }, pki, index: 0 })).rejects.toThrow(/cleaned up/);
  });
});
