// The drain bench's C node (bench/native/node.c) over real sockets, with a test peer standing in for the
// director: probe echo, HELLO keys, DATA echo, REVOKE acknowledgement and fences, stale and misaddressed
// drops, jumps — and the same sequence against the reference node (src/refnode/node.ts): the answers and
// the record files must be the same (but for the wall-clock `t`), and so must the checker's verdict.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodeBind, encodeJv1, encodeRevoke } from '../../src/codec/jv1.js';
import { PP2_FLAG, encodePpv2 } from '../../src/codec/ppv2.js';
import { PacketType, type Transport } from '../../src/codec/types.js';
import { encodeProbe } from '../../src/nodes/prober.js';
import { checkRecords, type RecordLine } from '../../src/refnode/checker.js';
import { devSecret, sealPacket, sessionKey } from '../../src/refnode/keys.js';
import { ReferenceNode } from '../../src/refnode/node.js';
import { readRecords } from '../../src/refnode/records.js';
import { tempDir } from '../helpers/director-proc.js';
import { UdpPeer } from '../helpers/udp.js';
import { waitFor } from '../helpers/wait.js';
import { NATIVE_LIBS } from '../../bench/native.js';

const SRC = fileURLToPath(new URL('../../bench/native/node.c', import.meta.url));
const HAS_GCC = spawnSync('gcc', ['--version'], { stdio: 'ignore' }).status === 0;
const NODE_ID = 'node-x';

/** A running C node: its address, output, and a stop that waits for its exit (SIGTERM flushes the records). */
interface CNode {
  readonly proc: ChildProcess;
  readonly address: Transport;
  readonly out: string;
  /** SIGTERM, then waits (bounded) for the exit; returns its counters (the last stdout line, JSON). */
  stop(): Promise<Record<string, unknown>>;
}

const running: ChildProcess[] = [];

function kill(p: ChildProcess): void {
  if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
}

async function startCNode(bin: string, family: 4 | 6, args: string[]): Promise<CNode> {
  const listen = family === 6 ? '[::1]:0' : '127.0.0.1:0';
  const proc = spawn(bin, ['--id', NODE_ID, '--listen', listen, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.push(proc);
  const n = { proc, out: '' } as { proc: ChildProcess; out: string; address?: Transport };
  proc.stdout?.setEncoding('utf8').on('data', (d: string) => (n.out += d));
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => (n.out += d));
  const m = await waitFor(
    'the C node to listen',
    () => {
      if (proc.exitCode !== null) throw new Error(`C node exited ${proc.exitCode}: ${n.out}`);
      return /listening on \[?([0-9a-f.:]+?)\]?:(\d+) /.exec(n.out);
    },
    { timeoutMs: 10_000 },
  );
  const address: Transport = { family, address: m[1] as string, port: Number(m[2]) };
  const node: CNode = {
    proc,
    address,
    get out() {
      return n.out;
    },
    async stop() {
      const exited = new Promise<void>((r) => (proc.exitCode !== null || proc.signalCode !== null ? r() : proc.once('exit', () => r())));
      proc.kill('SIGTERM');
      await waitFor('the C node to exit on SIGTERM', () => proc.exitCode !== null || proc.signalCode !== null, { timeoutMs: 10_000 });
      await exited;
      expect(proc.exitCode).toBe(0);
      const lines = n.out.trim().split('\n');
      return JSON.parse(lines[lines.length - 1] as string) as Record<string, unknown>;
    },
  };
  return node;
}

const noT = (rs: readonly RecordLine[]): Omit<RecordLine, 't'>[] =>
  rs.map((r) => {
    const { t, ...rest } = r;
    expect(typeof t).toBe('number');
    return rest;
  });

describe.skipIf(!HAS_GCC)(HAS_GCC ? 'C bench node (bench/native/node.c)' : 'C bench node: SKIPPED, gcc not found on PATH', () => {
  let bin: string;

  beforeAll(() => {
    bin = join(tempDir('anchor-cnode-bin-'), 'node');
    const r = spawnSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', bin, SRC, ...NATIVE_LIBS.node], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`gcc failed (the node needs libcrypto's headers: apt-get install libssl-dev): ${r.stderr}`);
  });
  afterEach(() => {
    for (const p of running.splice(0)) kill(p);
  });
  afterAll(() => {
    for (const p of running.splice(0)) kill(p);
  });

  for (const family of [4, 6] as const) {
    const loop = family === 6 ? '::1' : '127.0.0.1';
    const client: Transport = { family, address: loop, port: 40001 };
    const jumped: Transport = { family, address: loop, port: 40002 };
    const director: Transport = { family, address: loop, port: 4500 };

    /**
     * One fixed sequence, as a director would send it, with assertions on the answers; returns every
     * answer in arrival order (for the comparison between the two nodes).
     */
    async function sequence(peer: UdpPeer, target: Transport): Promise<Buffer[]> {
      const answers: Buffer[] = [];
      const seqs = new Map<string, bigint>();
      const idOf = (n: number): Buffer => Buffer.from(`${n.toString(16).padStart(2, '0')}c0ffee`.repeat(4).slice(0, 32), 'hex');
      const [A, B, C, D] = [idOf(0xa1), idOf(0xb2), idOf(0xc3), idOf(0xd4)] as [Buffer, Buffer, Buffer, Buffer];
      const fwd = (jv1: Buffer, f: { version: bigint; flags?: number; owner?: string; src?: Transport }): void => {
        const id = jv1.subarray(4, 20);
        const k = id.toString('hex');
        const s = (seqs.get(k) ?? 0n) + 1n;
        seqs.set(k, s);
        const h = encodePpv2({ transport: 'DGRAM', src: f.src ?? client, dst: director, sessionId: id, version: f.version, owner: f.owner ?? NODE_ID, flags: f.flags ?? 0, seq: s });
        peer.send(Buffer.concat([h, jv1]), target);
      };
      const next = async (pred: (m: Buffer) => boolean = () => true): Promise<Buffer> => {
        const m = await peer.next(pred);
        answers.push(m);
        return m;
      };
      const key = (id: Buffer): Buffer => sessionKey(devSecret(), id);
      const data = (id: Buffer, app: string): Buffer => encodeJv1(PacketType.DATA, id, Buffer.from(app));
      /** A DATA of session C and its echo: everything the node answered before it has arrived. */
      let nb = 0;
      const barrier = async (): Promise<void> => {
        const p = data(C, `barrier-${nb++}`);
        fwd(p, { version: 1n });
        expect((await next((m) => m.equals(p))).equals(p)).toBe(true);
        expect(peer.inbox.map((x) => x.msg.toString('hex'))).toEqual([]); // nothing else was answered
      };

      // A health probe (PROXY v2 LOCAL with a nonce TLV): echoed whole.
      const probe = encodeProbe(Buffer.from('nonce-01'));
      peer.send(probe, target);
      expect((await next()).equals(probe)).toBe(true);
      // HELLO: header ‖ HMAC-SHA256(secret, id)[:16].
      fwd(encodeJv1(PacketType.HELLO, C), { version: 1n });
      expect((await next()).equals(encodeJv1(PacketType.HELLO, C, key(C)))).toBe(true);
      fwd(encodeJv1(PacketType.HELLO, A, Buffer.from('hello')), { version: 1n });
      expect((await next()).equals(encodeJv1(PacketType.HELLO, A, key(A)))).toBe(true);
      // DATA: echoed.
      const ping = data(A, 'ping');
      fwd(ping, { version: 1n });
      expect((await next()).equals(ping)).toBe(true);
      // REVOKE addressed to another node, and one without a PROXY v2 header: misaddressed, unanswered.
      fwd(encodeRevoke(A, 3n), { version: 3n, owner: 'node-other' });
      peer.send(encodeRevoke(A, 3n), target);
      await barrier();
      // REVOKE(3) to this node: acknowledged with REVOKE(3).
      fwd(encodeRevoke(A, 3n), { version: 3n });
      expect((await next()).equals(encodeRevoke(A, 3n))).toBe(true);
      // Below the fence: dropped (fenced), whatever the type; at the fence: accepted again.
      fwd(data(A, 'late'), { version: 2n });
      fwd(encodeJv1(PacketType.HELLO, A), { version: 1n });
      fwd(data(A, 'late replay'), { version: 2n, flags: PP2_FLAG.REPLAYED });
      await barrier();
      const back = data(A, 'back');
      fwd(back, { version: 3n, flags: PP2_FLAG.REPLAYED });
      expect((await next()).equals(back)).toBe(true);
      // A lower REVOKE is acknowledged but does not lower the fence.
      fwd(encodeRevoke(A, 2n), { version: 2n });
      expect((await next()).equals(encodeRevoke(A, 2n))).toBe(true);
      fwd(data(A, 'still fenced'), { version: 2n });
      await barrier();
      // Stale: a version below the one at which this node began to own the session.
      fwd(encodeJv1(PacketType.HELLO, B), { version: 5n });
      expect((await next()).equals(encodeJv1(PacketType.HELLO, B, key(B)))).toBe(true);
      fwd(data(B, 'old'), { version: 4n });
      await barrier();
      // A jump: a valid MAC gets BIND(version, PROXY source) then the echo; a forged one nothing.
      const jump = sealPacket(key(B), data(B, 'jumped'));
      fwd(jump, { version: 5n, flags: PP2_FLAG.UNBOUND_SOURCE, src: jumped });
      expect((await next()).equals(encodeBind(B, 5n, jumped))).toBe(true);
      expect((await next()).equals(jump)).toBe(true);
      fwd(sealPacket(randomBytes(16), data(B, 'forged')), { version: 5n, flags: PP2_FLAG.UNBOUND_SOURCE, src: jumped });
      // A CLOSE from an unbound source: delivered, ignored; from the bound one: the session ends.
      fwd(encodeJv1(PacketType.CLOSE, B), { version: 5n, flags: PP2_FLAG.UNBOUND_SOURCE, src: jumped });
      fwd(encodeJv1(PacketType.CLOSE, B), { version: 5n });
      await barrier();
      // Bare JV1 (encapsulation none): echoed, recorded without version, seq or dst.
      const bare = data(D, 'bare');
      peer.send(bare, target);
      expect((await next()).equals(bare)).toBe(true);
      // Malformed: never answered, never recorded.
      const badTlv = Buffer.concat([encodePpv2({ transport: 'DGRAM', src: client, dst: director, sessionId: D, version: 1n, owner: NODE_ID, flags: 0, seq: 1n }), data(D, 'x')]);
      badTlv[badTlv.indexOf(0xe1, 16) + 2] = 7; // E1 with length 7
      peer.send(badTlv, target);
      peer.send(encodeJv1(PacketType.DATA, Buffer.alloc(16), Buffer.from('zero id')), target);
      peer.send(encodeJv1(PacketType.BIND, D, Buffer.alloc(15)), target);
      peer.send(Buffer.from('JV'), target);
      await barrier();
      // "!close" app bytes: the node ends the session with a CLOSE.
      fwd(data(A, '!close now'), { version: 3n });
      expect((await next()).equals(encodeJv1(PacketType.CLOSE, A))).toBe(true);
      return answers;
    }

    it(`IPv${family}: answers and records exactly as the reference node does`, async () => {
      // The C node.
      const cDir = tempDir('anchor-cnode-');
      const c = await startCNode(bin, family, ['--record', join(cDir, `${NODE_ID}.jsonl`)]);
      const cPeer = await UdpPeer.open(family);
      let cAnswers: Buffer[];
      let counters: Record<string, unknown>;
      try {
        cAnswers = await sequence(cPeer, c.address);
      } finally {
        cPeer.close();
        counters = await c.stop();
      }
      expect(counters).toMatchObject({ probes: 1, revokes: 2, fenced: 4, stale: 1, forged: 1, misaddressed: 2, binds: 1, ignored: 1, malformed: 4, sessions: 2 });
      const cRecords = await readRecords(cDir);

      // The reference node, same sequence.
      const rDir = tempDir('anchor-refnode-cmp-');
      const ref = new ReferenceNode({ id: NODE_ID, listen: { family, address: loop, port: 0 }, recordPath: join(rDir, `${NODE_ID}.jsonl`), tcp: false });
      await ref.start();
      const rPeer = await UdpPeer.open(family);
      let rAnswers: Buffer[];
      try {
        rAnswers = await sequence(rPeer, ref.address);
      } finally {
        rPeer.close();
        await ref.close();
      }
      const rRecords = await readRecords(rDir);

      expect(cAnswers.map((b) => b.toString('hex'))).toEqual(rAnswers.map((b) => b.toString('hex')));
      expect(noT(cRecords)).toEqual(noT(rRecords));
      // The lines themselves: same keys in the same order (JSON.stringify of the reference node's objects).
      const strip = (f: string): string[] => readFileSync(f, 'utf8').trim().split('\n').map((l) => l.replace(/"t":\d+,/, ''));
      expect(strip(join(cDir, `${NODE_ID}.jsonl`))).toEqual(strip(join(rDir, `${NODE_ID}.jsonl`)));

      // What the checker relies on, spelt out.
      const a = cRecords.filter((r) => r.session.startsWith('a1c0ffee'));
      const dst = family === 6 ? '[::1]:4500' : '127.0.0.1:4500';
      expect(a.filter((r) => r.drop === 'misaddressed').map((r) => [r.version, r.dst])).toEqual([
        ['3', dst],
        [null, null],
      ]);
      expect(a.filter((r) => r.type === PacketType.REVOKE && r.accepted === true).map((r) => r.revoke)).toEqual(['3', '2']);
      expect(a.filter((r) => r.drop === 'fenced').map((r) => [r.type, r.version])).toEqual([
        [PacketType.DATA, '2'],
        [PacketType.HELLO, '1'],
        [PacketType.DATA, '2'],
        [PacketType.DATA, '2'],
      ]);
      expect(cRecords.filter((r) => r.drop === 'stale').map((r) => r.version)).toEqual(['4']);
      expect(cRecords.filter((r) => r.version === null && r.type === PacketType.DATA).map((r) => r.dst)).toEqual([null]);

      const cv = checkRecords(cRecords);
      expect(cv.ok).toBe(true);
      expect(cv).toEqual(checkRecords(rRecords));
    });
  }

  it('keeps thousands of fences (the table grows past its initial size) and flushes its records on SIGTERM', async () => {
    const dir = tempDir('anchor-cnode-many-');
    const c = await startCNode(bin, 4, ['--record', join(dir, `${NODE_ID}.jsonl`), '--sessions', '16']);
    const peer = await UdpPeer.open(4);
    peer.socket.setRecvBufferSize(8 * 1024 * 1024); // the answers come back faster than this test reads them
    const N = 3000;
    const director: Transport = { family: 4, address: '127.0.0.1', port: 4500 };
    const ids = Array.from({ length: N }, (_, i) => {
      const id = randomBytes(16);
      id.writeUInt32BE(i, 0);
      return id;
    });
    const seqs = new Uint32Array(N);
    const fwd = (i: number, jv1: Buffer, version: bigint): void => {
      const seq = (seqs[i] ?? 0) + 1;
      seqs[i] = seq;
      const h = encodePpv2({ transport: 'DGRAM', src: peer.address, dst: director, sessionId: ids[i] as Buffer, version, owner: NODE_ID, flags: 0, seq });
      peer.send(Buffer.concat([h, jv1]), c.address);
    };
    /** Sends `send(i)` for every i not yet answered with a datagram of `type`, until all are (bounded rounds). */
    const roundTrip = async (type: PacketType, send: (i: number) => void, what: string): Promise<void> => {
      const pending = new Set(ids.map((_, i) => i));
      for (let round = 0; round < 5 && pending.size > 0; round++) {
        let k = 0;
        for (const i of pending) {
          send(i);
          // Let the event loop read answers between bursts (a socket buffer holds a few hundred).
          if (++k % 200 === 0) await new Promise((r) => setImmediate(r));
        }
        await waitFor(
          what,
          () => {
            for (const { msg } of peer.inbox.splice(0)) if (msg[3] === type) pending.delete(msg.readUInt32BE(4));
            return pending.size === 0;
          },
          { timeoutMs: 5000 },
        ).catch(() => undefined);
      }
      expect(pending.size, `${what}: ${pending.size} unanswered; node output: ${c.out}`).toBe(0);
    };
    let counters: Record<string, unknown>;
    try {
      await roundTrip(PacketType.HELLO, (i) => fwd(i, encodeJv1(PacketType.HELLO, ids[i] as Buffer), 1n), 'every HELLO answered');
      await roundTrip(PacketType.REVOKE, (i) => fwd(i, encodeRevoke(ids[i] as Buffer, 2n), 2n), 'every REVOKE acknowledged');
      // One fenced DATA per session, then one at the fence: only the latter are echoed.
      for (let i = 0; i < N; i++) fwd(i, encodeJv1(PacketType.DATA, ids[i] as Buffer, Buffer.from('v1')), 1n);
      await roundTrip(PacketType.DATA, (i) => fwd(i, encodeJv1(PacketType.DATA, ids[i] as Buffer, Buffer.from('v2')), 2n), 'every DATA at the fence echoed');
    } finally {
      peer.close();
      counters = await c.stop();
    }
    expect(counters.fenced).toBe(N);
    expect(counters.sessions).toBe(N);
    expect((counters.table as { used: number; capacity: number }).used).toBe(N);
    expect((counters.table as { used: number; capacity: number }).capacity).toBeGreaterThanOrEqual(2 * N);
    const records = await readRecords(dir);
    expect(records.filter((r) => r.drop === 'fenced').length).toBe(N);
    expect(records.filter((r) => r.accepted === true && r.type === PacketType.DATA).every((r) => r.version === '2')).toBe(true);
    const v = checkRecords(records);
    expect(v.ok).toBe(true);
    expect(v.sessions).toBe(N);
  });
});
