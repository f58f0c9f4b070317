// A harness for REAL OpenVPN 2.6 (the Debian `openvpn` package, installed by scripts/ensure-test-deps.sh):
// a PKI made with `openssl`, servers and clients as child processes whose UDP/TCP sockets stay on the
// host's loopback while each one's tun device is moved into a network namespace the harness creates, so
// no address or route ever touches the host. A `VpnLab` tracks every process (by PID), namespace and temp
// dir it made; `cleanup()` removes them all and is safe to call twice (tests call it in afterEach/afterAll).
//
// How the tun device gets into the namespace: OpenVPN runs with `--ifconfig-noexec --route-noexec` (it
// configures nothing itself), `--disable-dco` (a DCO device is driven over netlink by name and would not
// survive the move; the plain tun device is driven through its file descriptor, which keeps working in
// any namespace) and an `--up` script that does `ip link set dev $dev netns NS`, then, inside NS, adds
// $ifconfig_local/$ifconfig_netmask and sets the link up with $tun_mtu. With `topology subnet` the
// connected /24 is all a ping to the peer's tunnel address needs. Clients run WITHOUT persist-tun, so every
// reconnection (process restart, ping-restart, SIGUSR1) opens a fresh tun device and the up script runs
// again with whatever address the (possibly different) server pushes.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync, type WriteStream } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './wait.js';

// ---------------------------------------------------------------------------------------------------------
// Binaries (absolute paths: OpenVPN hands scripts a minimal environment, and tests should not depend on PATH)

function findBin(name: string, candidates: string[]): string {
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      /* next */
    }
  }
  throw new Error(`${name} is not installed (run scripts/ensure-test-deps.sh); looked in ${candidates.join(', ')}`);
}

let bins: { openvpn: string; openssl: string; ip: string; ping: string } | undefined;
/** Absolute paths of the binaries the harness drives; throws a clear error when one is missing. */
export function vpnBinaries(): { openvpn: string; openssl: string; ip: string; ping: string } {
  bins ??= {
    openvpn: findBin('openvpn', ['/usr/sbin/openvpn', '/usr/local/sbin/openvpn', '/sbin/openvpn']),
    openssl: findBin('openssl', ['/usr/bin/openssl', '/usr/local/bin/openssl']),
    ip: findBin('ip (iproute2)', ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip']),
    ping: findBin('ping (iputils-ping)', ['/usr/bin/ping', '/bin/ping']),
  };
  return bins;
}

/** True when this machine can run the harness (root, /dev/net/tun, the binaries); for `describe.skipIf`. */
export function vpnLabAvailable(): boolean {
  try {
    if (process.getuid?.() !== 0) return false;
    accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
    vpnBinaries();
    return true;
  } catch {
    return false;
  }
}

function run(cmd: string, args: string[], timeoutMs = 10_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

async function mustRun(cmd: string, args: string[], timeoutMs = 10_000): Promise<string> {
  const r = await run(cmd, args, timeoutMs);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** A currently free port on 127.0.0.1 for `proto` (bind to 0, read it, close). */
export async function freePort(proto: 'udp' | 'tcp'): Promise<number> {
  if (proto === 'tcp') {
    return new Promise((resolve, reject) => {
      const srv = net.createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const port = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(port));
      });
    });
  }
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------------------
// PKI

export interface ClientIdentity {
  readonly cn: string;
  readonly cert: string;
  readonly key: string;
}

export interface Pki {
  readonly dir: string;
  readonly ca: string;
  /** One server certificate (CN "server", EKU serverAuth) shared by every server. */
  readonly serverCert: string;
  readonly serverKey: string;
  /** clients[i] has CN `client-${i + 1}` (EKU clientAuth). */
  readonly clients: readonly ClientIdentity[];
  /** `openvpn --genkey tls-crypt` key. */
  readonly tlsCrypt: string;
  /** `openvpn --genkey tls-auth` key (server uses direction 0, clients 1). */
  readonly tlsAuth: string;
}

const OPENSSL_CNF = `# minimal config so the system openssl.cnf adds no extensions of its own
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

/**
 * Makes a throwaway PKI in `dir` with openssl (EC prime256v1, valid `days`, no network): a CA, one server
 * cert, `clients` client certs (CN client-1..N), a tls-crypt key and a tls-auth key. No DH (servers use
 * `dh none`, i.e. ECDHE). Takes ~0.1 s plus ~15 ms per client.
 */
export async function makePki(dir: string, opts: { clients: number; days?: number }): Promise<Pki> {
  const { openssl, openvpn } = vpnBinaries();
  mkdirSync(dir, { recursive: true });
  const cnf = join(dir, 'openssl.cnf');
  writeFileSync(cnf, OPENSSL_CNF);
  const days = String(opts.days ?? 2);
  const f = (n: string): string => join(dir, n);
  const req = (cn: string, key: string, crt: string, ext: string, signed: boolean): Promise<string> =>
    mustRun(openssl, [
      'req', '-config', cnf, '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-noenc',
      '-keyout', key, '-out', crt, '-days', days, '-subj', `/CN=${cn}`, '-extensions', ext,
      ...(signed ? ['-CA', f('ca.crt'), '-CAkey', f('ca.key')] : []),
    ]);
  await req('anchor-test-ca', f('ca.key'), f('ca.crt'), 'ca_ext', false);
  const clients: ClientIdentity[] = Array.from({ length: opts.clients }, (_, i) => ({
    cn: `client-${i + 1}`,
    cert: f(`client-${i + 1}.crt`),
    key: f(`client-${i + 1}.key`),
  }));
  await Promise.all([
    req('server', f('server.key'), f('server.crt'), 'server_ext', true),
    ...clients.map((c) => req(c.cn, c.key, c.cert, 'client_ext', true)),
    mustRun(openvpn, ['--genkey', 'tls-crypt', f('tls-crypt.key')]),
    mustRun(openvpn, ['--genkey', 'tls-auth', f('tls-auth.key')]),
  ]);
  return { dir, ca: f('ca.crt'), serverCert: f('server.crt'), serverKey: f('server.key'), clients, tlsCrypt: f('tls-crypt.key'), tlsAuth: f('tls-auth.key') };
}

// ---------------------------------------------------------------------------------------------------------
// Processes

const UP_MARK = 'ANCHORVPN-UP';

function upScript(ip: string, ns: string): string {
  // $dev, $tun_mtu, $ifconfig_local, $ifconfig_netmask are set by OpenVPN (script-security 2).
  return `#!/bin/sh
set -e
NS='${ns}'
${ip} link set dev "$dev" netns "$NS"
${ip} -n "$NS" addr add "$ifconfig_local/$ifconfig_netmask" dev "$dev"
${ip} -n "$NS" link set dev "$dev" mtu "$tun_mtu" up
echo "${UP_MARK} dev=$dev local=$ifconfig_local netmask=$ifconfig_netmask mtu=$tun_mtu ns=$NS"
`;
}

function safeName(name: string): string {
  const s = name.toLowerCase().replace(/[^a-z0-9-]+/g, '-').slice(0, 24);
  if (s === '') throw new Error(`bad name ${JSON.stringify(name)}`);
  return s;
}

/** One running openvpn child plus what its log says. */
class VpnProcess {
  readonly child: ChildProcess;
  output = '';
  connected = false;
  /** How many times "Initialization Sequence Completed" was seen. */
  initCount = 0;
  tunnelIp: string | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private partial = '';

  constructor(bin: string, configPath: string, cwd: string, log: WriteStream) {
    this.child = spawn(bin, ['--config', configPath], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.connected = false;
        resolve({ code, signal });
      });
      this.child.once('error', (err) => {
        this.output += `\nspawn error: ${String(err)}\n`;
        this.connected = false;
        resolve({ code: -1, signal: null });
      });
    });
    const onData = (d: string): void => {
      this.output += d;
      log.write(d);
      const lines = (this.partial + d).split('\n');
      this.partial = lines.pop() ?? '';
      for (const line of lines) this.onLine(line);
    };
    this.child.stdout?.setEncoding('utf8').on('data', onData);
    this.child.stderr?.setEncoding('utf8').on('data', onData);
  }

  private onLine(line: string): void {
    if (line.includes('Initialization Sequence Completed')) {
      this.connected = true;
      this.initCount += 1;
    } else if (/SIG(USR1|HUP|TERM|INT)\[[^\]]*\] received, process (restarting|exiting)/.test(line) || line.includes('Restart pause')) {
      this.connected = false;
    } else if (line.startsWith(UP_MARK) || line.includes(`${UP_MARK} `)) {
      const m = / local=(\S+)/.exec(line);
      if (m?.[1] !== undefined) this.tunnelIp = m[1];
    }
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error('openvpn did not start');
    return this.child.pid;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && this.child.pid !== undefined;
  }

  tail(n = 40): string {
    return this.output.split('\n').slice(-n).join('\n');
  }

  /** SIGTERM, then SIGKILL after `graceMs` (at once when 0); resolves when the process is gone. This PID only. */
  async stop(graceMs = 3000): Promise<void> {
    if (!this.alive) {
      await this.exited;
      return;
    }
    this.child.kill(graceMs <= 0 ? 'SIGKILL' : 'SIGTERM');
    const timer = setTimeout(() => {
      if (this.alive) this.child.kill('SIGKILL');
    }, graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

async function waitInit(p: VpnProcess, what: string, timeoutMs: number, sinceCount = 0): Promise<void> {
  const withLog = (msg: string): Error => new Error(`${msg}\n--- openvpn log (pid ${p.child.pid ?? '?'}) ---\n${p.tail()}`);
  // An exit ends the wait at once (a probe that throws would only be retried until the timeout).
  const r = await waitFor(what, () => (p.connected && p.initCount > sinceCount ? 'up' : p.alive ? undefined : 'exited'), { timeoutMs, intervalMs: 25 }).catch((err: unknown) => {
    throw withLog(String(err instanceof Error ? err.message : err));
  });
  if (r === 'exited') throw withLog(`${what}: openvpn exited (${String(p.child.exitCode ?? p.child.signalCode)})`);
}

async function pingFromNs(ns: string, target: string, count: number, timeoutSec = 1): Promise<boolean> {
  const { ip, ping } = vpnBinaries();
  const r = await run(ip, ['netns', 'exec', ns, ping, '-n', '-q', '-c', String(count), '-i', '0.2', '-W', String(timeoutSec), target], (count * 0.2 + timeoutSec + 5) * 1000);
  return r.code === 0;
}

// ---------------------------------------------------------------------------------------------------------
// Management interface

/** Sends one command to an OpenVPN management socket and returns its response lines (">" notifications dropped). */
export function managementCommand(port: number, cmd: string, timeoutMs = 5000): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = '';
    let sent = false;
    const out: string[] = [];
    const timer = setTimeout(() => finish(new Error(`management ${port}: no answer to ${JSON.stringify(cmd)} in ${timeoutMs} ms`)), timeoutMs);
    function finish(err?: Error): void {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(out);
    }
    sock.setEncoding('utf8');
    sock.on('error', (err) => finish(err));
    sock.on('close', () => finish(new Error(`management ${port}: closed before the answer to ${JSON.stringify(cmd)}`)));
    sock.on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).replace(/\r$/, '');
        buf = buf.slice(i + 1);
        if (line.startsWith('>')) {
          // The banner (">INFO:OpenVPN Management Interface ...") means it is ready for the command.
          if (!sent && line.startsWith('>INFO:')) {
            sent = true;
            sock.write(`${cmd}\n`);
          }
          continue;
        }
        if (!sent) continue;
        out.push(line);
        if (line === 'END' || line.startsWith('SUCCESS:') || line.startsWith('ERROR:')) {
          sock.end('quit\n');
          finish();
          return;
        }
      }
    });
  });
}

export interface ConnectedClient {
  readonly cn: string;
  /** "127.0.0.1:54321" (UDP/TCP source as the server sees it). */
  readonly realAddress: string;
  readonly virtualAddress: string;
  readonly clientId: number;
}

/** Parses `status 3` (tab-separated) CLIENT_LIST rows. */
export function parseClientList(lines: readonly string[]): ConnectedClient[] {
  let header: string[] | undefined;
  const rows: ConnectedClient[] = [];
  for (const line of lines) {
    const f = line.split('\t');
    if (f[0] === 'HEADER' && f[1] === 'CLIENT_LIST') header = f.slice(1);
    else if (f[0] === 'CLIENT_LIST') {
      const col = (name: string, fallback: number): string => f[header?.indexOf(name) ?? fallback] ?? f[fallback] ?? '';
      rows.push({ cn: col('Common Name', 1), realAddress: col('Real Address', 2), virtualAddress: col('Virtual Address', 3), clientId: Number(col('Client ID', 10)) });
    }
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------------
// Servers and clients

export interface ServerOptions {
  readonly name: string;
  readonly proto: 'udp' | 'tcp';
  /** Listens on 127.0.0.1:port. */
  readonly port: number;
  /** "198.18.N.0" (a /24 from 198.18.0.0/15); the server takes .1, clients get .2 upwards. */
  readonly subnet: string;
  readonly pki: Pki;
  readonly tlsCrypt?: boolean;
  readonly tlsAuth?: boolean;
  readonly managementPort: number;
  /** Extra config lines appended verbatim. */
  readonly extraConfig?: readonly string[];
  readonly startTimeoutMs?: number;
}

export interface VpnServer {
  readonly name: string;
  readonly proto: 'udp' | 'tcp';
  readonly port: number;
  readonly pid: number;
  readonly ns: string;
  /** The server's own tunnel address (subnet .1), inside `ns`. */
  readonly tunnelIp: string;
  readonly managementPort: number;
  readonly dir: string;
  readonly alive: boolean;
  log(): string;
  /** CLIENT_LIST from `status 3` over the management socket. */
  clients(): Promise<ConnectedClient[]>;
  /** Any management command; response lines up to END/SUCCESS:/ERROR:. */
  command(cmd: string): Promise<string[]>;
  /** `client-kill <cid>` for each session of `cn` over management: the client gets RESTART and reconnects at once. */
  killClient(cn: string): Promise<string[]>;
  /** Ping from inside the server's namespace (e.g. a client's tunnel address). */
  ping(ip: string, count?: number): Promise<boolean>;
  /** SIGTERM (SIGKILL after graceMs, default 3000; at once if 0) and wait for exit; the namespace stays until lab.cleanup(). */
  stop(graceMs?: number): Promise<void>;
}

export interface ClientOptions {
  readonly name: string;
  readonly proto: 'udp' | 'tcp';
  readonly remote: { readonly host: string; readonly port: number };
  readonly pki: Pki;
  /** 0-based index into pki.clients (CN client-(index+1)). */
  readonly index: number;
  readonly tlsCrypt?: boolean;
  readonly tlsAuth?: boolean;
  readonly extraConfig?: readonly string[];
}

export interface VpnClient {
  readonly name: string;
  readonly cn: string;
  /** PID of the current openvpn process (changes on restart()). */
  readonly pid: number;
  /** Every PID this client has had. */
  readonly pids: readonly number[];
  readonly ns: string;
  /** The address the server pushed, as configured by the latest up script run; undefined before. */
  readonly tunnelIp: string | undefined;
  readonly connected: boolean;
  readonly alive: boolean;
  readonly dir: string;
  log(): string;
  /** Resolves once "Initialization Sequence Completed" is logged (and not since undone by a restart). */
  waitConnected(timeoutMs?: number): Promise<void>;
  /** Waits for a NEW "Initialization Sequence Completed" after the call (e.g. after a server-side kill). */
  waitReconnected(timeoutMs?: number): Promise<void>;
  /** `ping -c count -W 1 ip` from inside the client's namespace; true when it exits 0. */
  ping(ip: string, count?: number): Promise<boolean>;
  /** Soft restart (SIGUSR1): same process, new socket (new source port), new handshake. */
  reconnect(): void;
  /** Stops the process and starts a new one with the same config (does not wait for connection). */
  restart(): Promise<void>;
  stop(graceMs?: number): Promise<void>;
}

const liveLabs = new Set<VpnLab>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort if a test run dies without cleanup(): synchronous kills by PID, namespace and dir removal.
  process.once('exit', () => {
    for (const lab of liveLabs) lab.cleanupSync();
  });
}

/**
 * Owns everything the harness starts. Create one per suite (or test), call cleanup() in afterEach/afterAll.
 */
export class VpnLab {
  readonly root: string;
  /** Every openvpn PID ever started by this lab (for "nothing left behind" checks). */
  readonly startedPids: number[] = [];
  /** Every namespace ever created by this lab. */
  readonly createdNamespaces: string[] = [];
  private readonly procs = new Set<VpnProcess>();
  private readonly namespaces = new Set<string>();
  private readonly dirs = new Set<string>();
  private readonly logs = new Set<WriteStream>();
  /** Every server's name and log, for a client's failure message (the cause is often on the server). */
  private readonly serverLogs: { name: string; log: () => string }[] = [];
  private cleaning: Promise<void> | undefined;
  private readonly tag = randomBytes(3).toString('hex');

  constructor(prefix = 'anchorvpn-') {
    this.root = mkdtempSync(join(tmpdir(), prefix));
    this.dirs.add(this.root);
    liveLabs.add(this);
    installExitHook();
  }

  /** A PKI under this lab's temp dir. */
  makePki(opts: { clients: number; days?: number }): Promise<Pki> {
    return makePki(join(this.root, 'pki'), opts);
  }

  freePort(proto: 'udp' | 'tcp'): Promise<number> {
    return freePort(proto);
  }

  private subdir(kind: string, name: string): string {
    const d = mkdtempSync(join(this.root, `${kind}-${safeName(name)}-`));
    return d;
  }

  private async makeNs(kind: 'srv' | 'cli', name: string): Promise<string> {
    this.assertOpen();
    const { ip } = vpnBinaries();
    const ns = `anchorvpn-${kind}-${safeName(name)}-${this.tag}${randomBytes(2).toString('hex')}`;
    this.namespaces.add(ns);
    this.createdNamespaces.push(ns);
    await mustRun(ip, ['netns', 'add', ns]);
    await mustRun(ip, ['-n', ns, 'link', 'set', 'dev', 'lo', 'up']);
    return ns;
  }

  private spawn(configPath: string, dir: string): VpnProcess {
    this.assertOpen();
    const log = createWriteStream(join(dir, 'openvpn.log'), { flags: 'a' });
    this.logs.add(log);
    const p = new VpnProcess(vpnBinaries().openvpn, configPath, dir, log);
    if (p.child.pid !== undefined) this.startedPids.push(p.child.pid);
    this.procs.add(p);
    void p.exited.then(() => this.procs.delete(p));
    return p;
  }

  private assertOpen(): void {
    if (this.cleaning !== undefined) throw new Error('VpnLab: already cleaned up');
  }

  async startServer(o: ServerOptions): Promise<VpnServer> {
    this.assertOpen();
    const { ip } = vpnBinaries();
    const m = /^(\d+)\.(\d+)\.(\d+)\.0$/.exec(o.subnet);
    if (m === null) throw new Error(`subnet must look like 198.18.N.0, got ${o.subnet}`);
    const tunnelIp = `${m[1]}.${m[2]}.${m[3]}.1`;
    const dir = this.subdir('srv', o.name);
    const ns = await this.makeNs('srv', o.name);
    const up = join(dir, 'up.sh');
    writeFileSync(up, upScript(ip, ns), { mode: 0o755 });
    const { pki } = o;
    // The ports were free when the caller picked them; another process of the suite may bind one before
    // openvpn does (EADDRINUSE). Then the server starts again on fresh ones, at most twice.
    let port = o.port;
    let managementPort = o.managementPort;
    const configLines = (): string[] => [
      'mode server',
      'tls-server',
      'dev tun',
      'topology subnet',
      `server ${o.subnet} 255.255.255.0`,
      `proto ${o.proto === 'udp' ? 'udp' : 'tcp-server'}`,
      'local 127.0.0.1',
      `port ${port}`,
      `ca ${pki.ca}`,
      `cert ${pki.serverCert}`,
      `key ${pki.serverKey}`,
      'dh none',
      'keepalive 2 10',
      'hand-window 10',
      `management 127.0.0.1 ${managementPort}`,
      'verb 3',
      'persist-tun',
      'persist-key',
      'ping-timer-rem',
      ...(o.proto === 'udp' ? ['explicit-exit-notify 1'] : []),
      'disable-dco',
      'ifconfig-noexec',
      'route-noexec',
      'script-security 2',
      `up ${up}`,
      ...(o.tlsCrypt ? [`tls-crypt ${pki.tlsCrypt}`] : []),
      ...(o.tlsAuth ? [`tls-auth ${pki.tlsAuth} 0`] : []),
      ...(o.extraConfig ?? []),
    ];
    const cfg = join(dir, 'server.conf');
    let p: VpnProcess;
    for (let attempt = 0; ; attempt++) {
      writeFileSync(cfg, configLines().join('\n') + '\n');
      p = this.spawn(cfg, dir);
      try {
        await waitInit(p, `openvpn server ${o.name} to start`, o.startTimeoutMs ?? 15_000);
        break;
      } catch (err) {
        await p.stop(500);
        if (attempt >= 2 || !p.output.includes('Address already in use')) throw err;
        port = await freePort(o.proto);
        managementPort = await freePort('tcp');
      }
    }
    this.serverLogs.push({ name: o.name, log: () => p.output });
    let chain: Promise<unknown> = Promise.resolve();
    const command = (cmd: string): Promise<string[]> => {
      // The management interface serves one connection at a time: serialize.
      const r = chain.then(() => managementCommand(managementPort, cmd));
      chain = r.catch(() => undefined);
      return r;
    };
    return {
      name: o.name,
      proto: o.proto,
      port,
      pid: p.pid,
      ns,
      tunnelIp,
      managementPort,
      dir,
      get alive() {
        return p.alive;
      },
      log: () => p.output,
      command,
      clients: async () => parseClientList(await command('status 3')),
      async killClient(cn) {
        // `client-kill CID` (unlike `kill CN`) sends the client a RESTART control message, so it
        // reconnects at once instead of after its ping-restart timeout.
        const rows = parseClientList(await command('status 3')).filter((r) => r.cn === cn);
        if (rows.length === 0) throw new Error(`${o.name}: no client with CN ${cn}`);
        return (await Promise.all(rows.map((r) => command(`client-kill ${r.clientId}`)))).flat();
      },
      ping: (target, count = 1) => pingFromNs(ns, target, count),
      stop: (graceMs) => p.stop(graceMs),
    };
  }

  async startClient(o: ClientOptions): Promise<VpnClient> {
    this.assertOpen();
    const { ip } = vpnBinaries();
    const id = o.pki.clients[o.index];
    if (id === undefined) throw new Error(`pki has no client #${o.index} (it has ${o.pki.clients.length})`);
    const dir = this.subdir('cli', o.name);
    const ns = await this.makeNs('cli', o.name);
    const up = join(dir, 'up.sh');
    writeFileSync(up, upScript(ip, ns), { mode: 0o755 });
    const { pki } = o;
    const lines = [
      'client',
      'dev tun',
      // An ephemeral local port, unless the caller binds one (`bind`/`lport` and `nobind` exclude each other).
      ...(o.extraConfig?.some((l) => /^(bind|lport)\b/.test(l)) ? [] : ['nobind']),
      `proto ${o.proto === 'udp' ? 'udp' : 'tcp-client'}`,
      `remote ${o.remote.host} ${o.remote.port}`,
      'resolv-retry 0',
      'connect-retry 1 1',
      'server-poll-timeout 5',
      'hand-window 10',
      `ca ${pki.ca}`,
      `cert ${id.cert}`,
      `key ${id.key}`,
      'remote-cert-tls server',
      'verb 3',
      'persist-key',
      ...(o.proto === 'udp' ? ['explicit-exit-notify 1'] : []),
      'disable-dco',
      'ifconfig-noexec',
      'route-noexec',
      'script-security 2',
      `up ${up}`,
      ...(o.tlsCrypt ? [`tls-crypt ${pki.tlsCrypt}`] : []),
      ...(o.tlsAuth ? [`tls-auth ${pki.tlsAuth} 1`] : []),
      ...(o.extraConfig ?? []),
    ];
    const cfg = join(dir, 'client.conf');
    writeFileSync(cfg, lines.join('\n') + '\n');
    let p = this.spawn(cfg, dir);
    const pids = [p.pid];
    const lab = this;
    return {
      name: o.name,
      cn: id.cn,
      get pid() {
        return p.pid;
      },
      pids,
      ns,
      dir,
      get tunnelIp() {
        return p.tunnelIp;
      },
      get connected() {
        return p.connected;
      },
      get alive() {
        return p.alive;
      },
      log: () => p.output,
      waitConnected: (timeoutMs = 15_000) => lab.withServerLines(id.cn, waitInit(p, `openvpn client ${o.name} to connect`, timeoutMs)),
      waitReconnected(timeoutMs = 15_000) {
        const since = p.initCount;
        return lab.withServerLines(id.cn, waitInit(p, `openvpn client ${o.name} to reconnect`, timeoutMs, since));
      },
      ping: (target, count = 1) => pingFromNs(ns, target, count),
      reconnect() {
        if (p.alive) p.child.kill('SIGUSR1');
      },
      async restart() {
        await p.stop();
        p = lab.spawn(cfg, dir);
        pids.push(p.pid);
      },
      stop: (graceMs) => p.stop(graceMs),
    };
  }

  /**
   * `wait`, its failure told with the servers' log lines that name `cn` (a refusal such as AUTH_FAILED is
   * explained only there: "TLS object CN attempted to change", a verify error, ...).
   */
  private async withServerLines(cn: string, wait: Promise<void>): Promise<void> {
    try {
      await wait;
    } catch (err) {
      // 'client-1', client-1/127.0.0.1:…, CN=client-1 — but not client-10.
      const naming = new RegExp(`('${cn}'|${cn}/|CN=${cn}(?![\\w-]))`);
      const lines = this.serverLogs.flatMap((s) =>
        s
          .log()
          .split('\n')
          .filter((l) => naming.test(l))
          .slice(-20)
          .map((l) => `[${s.name}] ${l}`),
      );
      if (lines.length === 0) throw err;
      throw new Error(`${(err as Error).message}\n--- server log lines naming ${cn} ---\n${lines.join('\n')}`, { cause: err });
    }
  }

  /** Kills every process this lab started (by PID), deletes its namespaces and temp dirs. Idempotent. */
  cleanup(): Promise<void> {
    this.cleaning ??= this.doCleanup();
    return this.cleaning;
  }

  private async doCleanup(): Promise<void> {
    // SIGKILL at once: a graceful UDP exit (explicit-exit-notify) takes 1-2 s and nothing here needs it;
    // the kernel destroys each non-persistent tun device when its process's fd closes.
    await Promise.all([...this.procs].map((p) => p.stop(0)));
    const { ip } = vpnBinaries();
    const errors: string[] = [];
    await Promise.all(
      [...this.namespaces].map(async (ns) => {
        const r = await run(ip, ['netns', 'del', ns]);
        if (r.code === 0 || /No such file/i.test(r.stderr)) this.namespaces.delete(ns);
        else errors.push(`ip netns del ${ns}: ${r.stderr.trim()}`);
      }),
    );
    await Promise.all([...this.logs].map((l) => new Promise<void>((resolve) => l.end(() => resolve()))));
    this.logs.clear();
    if (process.env.ANCHOR_KEEP_VPNLAB === undefined) {
      for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
    }
    this.dirs.clear();
    liveLabs.delete(this);
    if (errors.length > 0) throw new Error(errors.join('\n'));
  }

  /** Synchronous last-resort cleanup (process exit hook). */
  cleanupSync(): void {
    for (const p of this.procs) {
      if (p.alive) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    for (const ns of this.namespaces) spawnSync(vpnBinaries().ip, ['netns', 'del', ns], { stdio: 'ignore' });
    this.namespaces.clear();
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
    this.dirs.clear();
    liveLabs.delete(this);
  }
}

/** Function forms of the lab methods. */
export const startServer = (lab: VpnLab, o: ServerOptions): Promise<VpnServer> => lab.startServer(o);
export const startClient = (lab: VpnLab, o: ClientOptions): Promise<VpnClient> => lab.startClient(o);

/** True while `pid` exists (signal 0). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Namespaces currently listed by `ip netns list` (names only). */
export async function listNamespaces(): Promise<string[]> {
  const out = await mustRun(vpnBinaries().ip, ['netns', 'list']);
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '');
}
