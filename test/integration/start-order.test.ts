// A director reads no client datagram before it holds the store's sessions: a datagram of a live session
// read while they were still being loaded was answered REJECT UNKNOWN_SESSION (and its client gave the
// session up). The store's load is held here until the test lets it go, while a client keeps sending.
import { afterEach, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAnchor, type Anchor } from '../../src/anchor.js';
import { encodeJv1, sessionIdHex } from '../../src/codec/jv1.js';
import { PacketType } from '../../src/codec/types.js';
import { parseConfig } from '../../src/config/load.js';
import { MemoryStore } from '../../src/store/memory.js';
import { systemClock } from '../../src/util/clock.js';
import { captureLogs, inProcessYaml } from '../helpers/in-process.js';
import { metric } from '../helpers/director-proc.js';
import { waitFor } from '../helpers/wait.js';
import { counterId } from '../helpers/ownership-harness.js';

/** A store whose listing waits until `release` (and says when it was asked). */
class HeldStore extends MemoryStore {
  asked = false;
  #release!: () => void;
  readonly #gate = new Promise<void>((r) => (this.#release = r));
  release(): void {
    this.#release();
  }
  override async listByOwner(owner: string): ReturnType<MemoryStore['listByOwner']> {
    this.asked = true;
    await this.#gate;
    return super.listByOwner(owner);
  }
}

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

describe('start order', () => {
  it('no client datagram is read before the store\'s sessions are loaded: a live session\'s DATA meanwhile gets no REJECT, and it is served once started', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'anchor-start-order-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const port = await freeUdpPort();
    const config = parseConfig(inProcessYaml(join(dir, 'audit.jsonl'), { listen: '' }).replace('udp: ["127.0.0.1:0"]', `udp: ["127.0.0.1:${port}"]`));
    const store = new HeldStore();
    const id = counterId(42);
    const hex = sessionIdHex(id);
    expect((await store.create({ id: hex, owner: 'node-a', version: 1n, state: 'ATTACHED', transport: '127.0.0.1:1', director: 'earlier', expiresAt: Date.now() + 600_000, incarnation: 0 })).ok).toBe(true);

    const client = dgram.createSocket('udp4');
    cleanup.push(() => new Promise<void>((r) => client.close(() => r())));
    const replies: Buffer[] = [];
    client.on('message', (m) => replies.push(m));
    client.on('error', () => undefined); // ICMP port unreachable while nothing listens
    await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()));
    const data = encodeJv1(PacketType.DATA, id, Buffer.from('while-loading'));
    const send = setInterval(() => client.send(data, port, '127.0.0.1'), 5);
    cleanup.push(() => clearInterval(send));

    const { logger } = captureLogs();
    const starting = createAnchor(config, { clock: systemClock, logger, store });
    let anchor: Anchor | undefined;
    cleanup.push(async () => {
      store.release();
      anchor ??= await starting.catch(() => undefined);
      await anchor?.close();
    });
    await waitFor('the load to be asked for', () => store.asked || undefined);
    // Datagrams keep coming while the load is held (50 of them at 5 ms).
    const sentBy = Date.now() + 250;
    await waitFor('a while of datagrams', () => Date.now() >= sentBy || undefined);
    expect(replies).toEqual([]); // nothing read, nothing answered (before: REJECT UNKNOWN_SESSION to each)
    store.release();
    anchor = await starting;
    expect(anchor.udpAddresses[0]?.port).toBe(port);
    const admin = `http://127.0.0.1:${anchor.adminAddress.port}`;
    expect(((await (await fetch(`${admin}/v1/sessions/${hex}`)).json()) as { owner: string }).owner).toBe('node-a');
    // Its datagrams from here are jump candidates for node-a (the stored transport is another): forwarded,
    // never refused.
    await waitFor('datagrams forwarded for the loaded session', async () => (await metric(admin, 'anchor_client_datagrams_forwarded_total')) > 0 || undefined);
    expect(replies.filter((m) => m[3] === PacketType.REJECT)).toEqual([]);
  });
});
