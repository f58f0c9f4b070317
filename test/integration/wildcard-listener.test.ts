// A UDP listener on a wildcard address. With the native UDP I/O the director reads which of the host's
// addresses each datagram was sent to (IP_PKTINFO): the node is told that address (PROXY v2 destination)
// and the reply leaves from it — a client that sent to one address of the host and got its answer from
// another would drop it. node:dgram cannot: the director says so at start. Everything runs in a network
// namespace this test makes (`unshare -n`: only its own loopback, with a second IPv6 address added), so
// nothing listens on the machine's addresses; root only, like the OpenVPN tests.
import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dump } from 'js-yaml';
import { loadNativeUdp } from '../../src/net/native/index.js';
import { MAIN, tempDir } from '../helpers/director-proc.js';

const isRoot = process.getuid?.() === 0;
const hasTools = spawnSync('sh', ['-c', 'command -v unshare && command -v ip'], { stdio: 'ignore' }).status === 0;
const native = loadNativeUdp();
const PPV2 = fileURLToPath(new URL('../../dist/src/codec/ppv2.js', import.meta.url));

/**
 * Runs `script` (an ES module) in a new network namespace beside a director started with `config`; the
 * script's stdout, and the director's output. The director is stopped (SIGINT) when the script ends.
 */
async function inNamespace(dir: string, config: object, script: string): Promise<{ code: number | null; out: string; director: string }> {
  const cfg = join(dir, 'anchor.yaml');
  writeFileSync(cfg, dump(config));
  const js = join(dir, 'probe.mjs');
  writeFileSync(js, script);
  const log = join(dir, 'director.log');
  const sh = [
    'ip link set lo up',
    'ip -6 addr add ::2/128 dev lo',
    `"$0" "$1" run --config "$2" > "${log}" 2>&1 & pid=$!`,
    '"$0" "$3"; code=$?',
    'kill -INT $pid; wait $pid',
    `cat "${log}" >&2`,
    'exit $code',
  ].join('; ');
  const child = spawn('unshare', ['-n', 'sh', '-c', sh, process.execPath, MAIN, cfg, js], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let director = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (director += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  clearTimeout(timer);
  return { code, out, director };
}

/**
 * The probe: a node of its own at 127.0.0.1:5001 / [::1]:5001 (decodes the PROXY v2 header, answers each
 * HELLO with a HELLO), and a client that sends a HELLO to each of the listener's addresses from an
 * unconnected socket, noting where each answer came from. Prints one JSON line.
 */
const PROBE = `
import dgram from 'node:dgram';
import { decodePpv2 } from ${JSON.stringify(PPV2)};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nodes = {};
const seen = [];
for (const [family, address] of [[4, '127.0.0.1'], [6, '::1']]) {
  const s = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
  await new Promise((r) => s.bind(5001, address, r));
  s.on('message', (m, from) => {
    const h = decodePpv2(m);
    if (h.kind !== 'ok' || h.value.command !== 'PROXY') return;
    const jv = m.subarray(h.value.headerLength);
    seen.push({ dst: h.value.dst.address + ':' + h.value.dst.port, type: jv[3] });
    if (jv[3] === 0x01) s.send(jv, from.port, from.address);
  });
  nodes[family] = s;
}
// Wait for the director's admin API.
for (let i = 0; ; i++) {
  try { if ((await fetch('http://127.0.0.1:9190/readyz')).ok) break; } catch {}
  if (i > 300) { console.log(JSON.stringify({ error: 'director not ready' })); process.exit(1); }
  await sleep(50);
}
const results = [];
for (const [family, to] of [[4, '127.0.0.2'], [4, '127.0.0.1'], [6, '::2'], [6, '::1']]) {
  const c = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
  await new Promise((r) => c.bind(0, family === 4 ? '127.0.0.1' : '::1', r));
  const id = Buffer.alloc(16, results.length + 1);
  const hello = Buffer.concat([Buffer.from([0x4a, 0x56, 0x01, 0x01]), id, Buffer.from('hi')]);
  const answer = new Promise((resolve) => c.on('message', (m, from) => resolve(from.address)));
  let from = null;
  for (let i = 0; i < 20 && from === null; i++) {
    c.send(hello, family === 4 ? 4600 : 4601, to);
    from = await Promise.race([answer, sleep(250).then(() => null)]);
  }
  results.push({ to, from });
  c.close();
}
for (const s of Object.values(nodes)) s.close();
console.log(JSON.stringify({ results, seen }));
`;

describe.skipIf(!isRoot || !hasTools)('a UDP listener on a wildcard address', () => {
  const base = (native: 'on' | 'off', dir: string): object => ({
    listen: { udp: ['0.0.0.0:4600', '[::]:4601', '127.0.0.1:4602'] },
    admin: { listen: '127.0.0.1:9190' },
    nodes: [
      { id: 'node-a', address: '127.0.0.1:5001' },
      { id: 'node-b', address: '[::1]:5001' },
    ],
    socket: { native },
    health: { enabled: false },
    // Stopped with its sessions live: the stop's drain waits for them only this long (30 s by default,
    // which the namespace's bound of 40 s could not always hold on a busy machine).
    drain: { deadline_s: 1 },
    audit: { path: join(dir, 'audit.jsonl') },
  });

  it.skipIf(!native.ok)('native I/O: each reply leaves from the address its client sent to, and nodes are told that address', async () => {
    const dir = tempDir();
    const r = await inNamespace(dir, base('on', dir), PROBE);
    expect(r.code, r.director).toBe(0);
    const { results, seen } = JSON.parse(r.out.trim().split('\n').at(-1)!) as { results: { to: string; from: string | null }[]; seen: { dst: string; type: number }[] };
    expect(results).toEqual([
      { to: '127.0.0.2', from: '127.0.0.2' },
      { to: '127.0.0.1', from: '127.0.0.1' },
      { to: '::2', from: '::2' },
      { to: '::1', from: '::1' },
    ]);
    // The nodes saw each HELLO with the address it was sent to, never the wildcard.
    const hellos = [...new Set(seen.filter((s) => s.type === 1).map((s) => s.dst))].sort();
    expect(hellos).toEqual(['127.0.0.1:4600', '127.0.0.2:4600', '::1:4601', '::2:4601'].sort());
    const said = r.director.split('\n').filter((l) => l.includes('UDP listener on a wildcard address'));
    expect(said.map((l) => (JSON.parse(l) as { listener: string; level: number }).listener).sort()).toEqual(['0.0.0.0:4600', '[::]:4601']);
    for (const l of said) expect(JSON.parse(l)).toMatchObject({ level: 30 }); // info: nothing to warn about
  }, 60_000);

  it('node:dgram: the director warns at start that it cannot tell, for the wildcard listeners only', async () => {
    const dir = tempDir();
    const r = await inNamespace(dir, base('off', dir), `${PROBE}`);
    expect(r.code, r.director).toBe(0);
    const warned = r.director.split('\n').filter((l) => l.includes('UDP listener on a wildcard address'));
    expect(warned.map((l) => (JSON.parse(l) as { listener: string }).listener).sort()).toEqual(['0.0.0.0:4600', '[::]:4601']);
    for (const l of warned) expect(JSON.parse(l)).toMatchObject({ level: 40 });
    expect(warned[0]).toContain('replies leave from the address the routing table picks');
  }, 60_000);
});
