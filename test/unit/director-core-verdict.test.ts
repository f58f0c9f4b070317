// The per-datagram entry points of DirectorCore (decideClient / decideNode, the verdict written in place)
// against the object API (onClient / onNode) that the table tests use: over random packet sequences from
// transports that share an IP, a port or nothing, both give the same decisions; and the bound-transport
// forward and the owner's relay reuse the verdict object and the session's own transport.
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DirectorCore, type ClientOutcome, type CoreLimits, type NodeOutcome } from '../../src/director/core.js';
import { encodeBind, encodeJv1 } from '../../src/codec/jv1.js';
import { transportKey } from '../../src/codec/ip.js';
import { PacketType, type Transport } from '../../src/codec/types.js';
import { createHasher } from '../../src/ring/hash.js';
import { buildRing, type Ring } from '../../src/ring/ring.js';
import { sid } from '../helpers/packet-builder.js';

let ring: Ring;
beforeAll(async () => {
  ring = buildRing(await createHasher(), [
    { id: 'node-a', weight: 1 },
    { id: 'node-b', weight: 1 },
  ]);
});

const LIMITS: CoreLimits = {
  sessionMax: 4,
  idleTtlMs: 50,
  tombstoneMs: 30,
  admissionRate: 1000,
  admissionBurst: 1000,
  rejectRate: 1000,
  rejectBurst: 1000,
  holdMax: 4,
};

const TRANSPORTS: readonly Transport[] = [
  { family: 4, address: '198.51.100.7', port: 40000 },
  { family: 4, address: '198.51.100.7', port: 40001 },
  { family: 4, address: '203.0.113.9', port: 40000 },
  { family: 6, address: '2001:db8::1', port: 40000 },
];
const IDS = [sid(0x11), sid(0x22), sid(0x33)];
const TYPES = [PacketType.HELLO, PacketType.DATA, PacketType.CLOSE, PacketType.REVOKE, 0x7f] as const;

type Op =
  | { k: 'client'; t: number; id: number; type: number; len: number; dt: number }
  | { k: 'node'; node: number; id: number; type: number; dt: number }
  | { k: 'bind'; id: number; t: number; dt: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant('client' as const), t: fc.nat(3), id: fc.nat(2), type: fc.nat(4), len: fc.constantFrom(0, 4, 40), dt: fc.nat(20) }),
  fc.record({ k: fc.constant('node' as const), node: fc.nat(1), id: fc.nat(2), type: fc.constantFrom(PacketType.DATA, PacketType.CLOSE, PacketType.REJECT), dt: fc.nat(20) }),
  fc.record({ k: fc.constant('bind' as const), id: fc.nat(2), t: fc.nat(3), dt: fc.nat(20) }),
);

/** An outcome with records replaced by what identifies them, comparable across two cores. */
function plain(o: ClientOutcome | NodeOutcome): unknown {
  return JSON.parse(
    JSON.stringify(o, (k, v: unknown) => {
      if (typeof v === 'bigint') return `${v}n`;
      if (k === 'session' && typeof v === 'object' && v !== null && 'id' in v) {
        const r = v as { id: string; version: bigint; owner: string; transportKey: string };
        return { id: r.id, version: `${r.version}n`, owner: r.owner, transport: r.transportKey };
      }
      if (k === 'candidate' && typeof v === 'object' && v !== null && 'key' in v) return (v as { key: string }).key;
      if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
      return v;
    }),
  );
}

describe('DirectorCore limits', () => {
  it('reserveRows reserves the table rows up front (the shell passes session.max); none: the columns start small and grow', () => {
    expect(new DirectorCore({ ...LIMITS, reserveRows: 5000 }, ring).table.rowCapacity).toBe(5000);
    expect(new DirectorCore(LIMITS, ring).table.rowCapacity).toBe(16);
  });
});

describe('DirectorCore verdicts in place', () => {
  it('decideClient / decideNode decide exactly as onClient / onNode over random sequences', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const a = new DirectorCore(LIMITS, ring);
        const b = new DirectorCore(LIMITS, ring);
        let now = 0;
        for (const o of ops) {
          now += o.dt;
          if (o.k === 'client') {
            const msg = encodeJv1(TYPES[o.type] as PacketType, IDS[o.id]!, new Uint8Array(o.len));
            const t = TRANSPORTS[o.t]!;
            const oa = a.onClient(msg, { ...t }, transportKey(t), 0, now);
            const v = b.decideClient(msg, t.address, t.port, t.family, 0, now);
            const ob = v.toClientOutcome();
            expect(plain(ob)).toEqual(plain(oa));
            for (const [core, out] of [
              [a, oa],
              [b, ob],
            ] as const) {
              if (out.kind === 'admit') core.admitted(out.session, now);
            }
            expect(b.expiredOnArrival.splice(0).map((e) => e.session.id)).toEqual(a.expiredOnArrival.splice(0).map((e) => e.session.id));
          } else {
            const id = IDS[o.id]!;
            const msg = o.k === 'bind' ? encodeBind(id, a.table.get(Buffer.from(id).toString('hex'))?.version ?? 1n, TRANSPORTS[o.t]!) : encodeJv1(o.type as PacketType, id, new Uint8Array(4));
            const node = o.k === 'bind' ? (a.table.get(Buffer.from(id).toString('hex'))?.owner ?? 'node-a') : o.node === 0 ? 'node-a' : 'node-b';
            const oa = a.onNode(node, msg, now);
            const ob = b.decideNode(node, msg, now).toNodeOutcome();
            expect(plain(ob)).toEqual(plain(oa));
          }
          expect(b.table.size).toBe(a.table.size);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a bound DATA and its reply reuse the verdict and the session transport (nothing allocated for them)', () => {
    const core = new DirectorCore(LIMITS, ring);
    const t = TRANSPORTS[0]!;
    const hello = core.decideClient(encodeJv1(PacketType.HELLO, IDS[0]!, new Uint8Array(4)), t.address, t.port, t.family, 0, 0);
    expect(hello.kind).toBe('admit');
    const rec = hello.session!;
    core.admitted(rec, 0);
    const v = core.decideClient(encodeJv1(PacketType.DATA, IDS[0]!, new Uint8Array(4)), t.address, t.port, t.family, 0, 1);
    expect(v).toBe(core.clientVerdict);
    expect(v.kind).toBe('forward');
    expect(v.session).toBe(rec);
    expect(v.src).toBe(rec.transport);
    expect(v.seq).toBe(2);
    const r = core.decideNode(rec.owner, encodeJv1(PacketType.DATA, IDS[0]!, new Uint8Array(4)), 2);
    expect(r).toBe(core.nodeVerdict);
    expect(r.kind).toBe('relay');
    expect(r.session).toBe(rec);
    expect(r.transition).toBeNull();
    // Another port of the same IP is a jump candidate, not the bound transport.
    const other = TRANSPORTS[1]!;
    const c = core.decideClient(encodeJv1(PacketType.DATA, IDS[0]!, new Uint8Array(4)), other.address, other.port, other.family, 0, 3);
    expect(c.kind).toBe('forward');
    expect(c.flags).toBe(1);
    expect(c.src).toEqual(other);
  });
});
