// A TcpFront on loopback over the ownership harness's core, Ownership and store, for tests that drive
// the front with scripted nodes: node:stream data path (or the native pump when given), PROXY v2 to the
// nodes, JV1 clients, short timeouts.
import pino from 'pino';
import { createCodec } from '../../src/codec/codec.js';
import { TcpFront } from '../../src/net/tcp-front.js';
import type { NativeTcpBinding } from '../../src/net/native/index.js';
import type { Harness } from './ownership-harness.js';

/** Starts a front whose nodes are `nodes` (id → port on 127.0.0.1), with `timeouts` (and `encapsulation`) over the defaults; the caller closes it. */
export async function startTcpFront(
  h: Harness,
  nodes: readonly { id: string; port: number }[],
  timeouts: Partial<Record<'preambleTimeoutMs' | 'connectTimeoutMs' | 'bindTimeoutMs', number>> & {
    readonly encapsulation?: 'ppv2' | 'none';
    readonly native?: NativeTcpBinding | null;
  } = {},
): Promise<TcpFront> {
  const front = new TcpFront(
    {
      listen: [{ family: 4, address: '127.0.0.1', port: 0 }],
      nodes: nodes.map((n) => ({ id: n.id, address: { family: 4 as const, address: '127.0.0.1', port: n.port } })),
      encapsulation: 'ppv2',
      preambleTimeoutMs: 5000,
      preambleMaxBytes: 4096,
      idleTimeoutMs: 60_000,
      connectTimeoutMs: 5000,
      bindTimeoutMs: 5000,
      maxConnections: 100,
      native: null,
      ...timeouts,
      codecs: [createCodec({ codec: 'jv1' }).stream],
    },
    { core: h.core, ownership: h.own, clock: h.clock, logger: pino({ level: 'silent' }), stats: h.stats },
  );
  await front.start();
  return front;
}
