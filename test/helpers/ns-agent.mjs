// A UDP and HTTP agent run inside a network namespace a test created (`ip netns exec NS node ns-agent.mjs`),
// so that a test outside it can reach what runs in it. Plain JavaScript with Node builtins only: it runs
// without the test's TypeScript loader.
//
// Argument: a JSON list of UDP ports to listen on at 127.0.0.1 (the test's "nodes").
// stdin, one JSON command per line:   {"id", "op": "send", "from": PORT, "to": PORT, "hex"}
//                                      {"id", "op": "http", "method", "url", "body"?}
// stdout, one JSON line per event:     {"id", "ok": true, ...} / {"id", "ok": false, "error"} answering a command
//                                      {"ev": "recv", "at": PORT, "from": PORT, "hex"}   a datagram to a listening port
//                                      {"ev": "ready"}                                  once every port listens
// The agent ends when stdin closes.
import dgram from 'node:dgram';
import { createInterface } from 'node:readline';

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const senders = new Map();
const listeners = [];

async function sender(port) {
  let s = senders.get(port);
  if (s === undefined) {
    s = dgram.createSocket('udp4');
    await new Promise((resolve, reject) => {
      s.once('error', reject);
      s.bind(port, '127.0.0.1', () => {
        s.off('error', reject);
        resolve();
      });
    });
    senders.set(port, s);
  }
  return s;
}

async function handle(cmd) {
  if (cmd.op === 'send') {
    const s = await sender(cmd.from);
    await new Promise((resolve, reject) => s.send(Buffer.from(cmd.hex, 'hex'), cmd.to, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
    return {};
  }
  if (cmd.op === 'http') {
    const r = await fetch(cmd.url, { method: cmd.method, body: cmd.body, signal: AbortSignal.timeout(5000) });
    return { status: r.status, text: await r.text() };
  }
  throw new Error(`unknown op ${String(cmd.op)}`);
}

for (const port of JSON.parse(process.argv[2] ?? '[]')) {
  const s = dgram.createSocket('udp4');
  s.on('message', (msg, rinfo) => out({ ev: 'recv', at: port, from: rinfo.port, hex: msg.toString('hex') }));
  await new Promise((resolve) => s.bind(port, '127.0.0.1', resolve));
  listeners.push(s);
}
out({ ev: 'ready' });

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch {
    out({ ok: false, error: `not JSON: ${line.slice(0, 80)}` });
    return;
  }
  handle(cmd).then(
    (r) => out({ id: cmd.id, ok: true, ...r }),
    (err) => out({ id: cmd.id, ok: false, error: String(err?.message ?? err) }),
  );
});
rl.on('close', () => {
  for (const s of [...listeners, ...senders.values()]) s.close();
});
