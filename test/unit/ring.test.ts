// Pins the ring: the xxh64 hasher against known outputs and a from-scratch BigInt xxh64, the owner of fixed
// session ids over fixed node sets (golden vectors, re-derived here independently), and the snapshot API.
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import xxhash from 'xxhash-wasm';
import type { XXHashAPI } from 'xxhash-wasm';
import { createHasher } from '../../src/ring/hash.js';
import type { Hasher } from '../../src/ring/hash.js';
import { buildRing, ringDelta } from '../../src/ring/ring.js';
import type { RingNode } from '../../src/ring/ring.js';

// ---- A from-scratch xxh64 (spec: github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md), slow and obvious. ----
const M64 = (1n << 64n) - 1n;
const P1 = 0x9e3779b185ebca87n;
const P2 = 0xc2b2ae3d27d4eb4fn;
const P3 = 0x165667b19e3779f9n;
const P4 = 0x85ebca77c2b2ae63n;
const P5 = 0x27d4eb2f165667c5n;
const rotl = (x: bigint, r: bigint): bigint => ((x << r) | (x >> (64n - r))) & M64;
const round = (acc: bigint, lane: bigint): bigint => (rotl((acc + lane * P2) & M64, 31n) * P1) & M64;
const merge = (acc: bigint, v: bigint): bigint => (((acc ^ round(0n, v)) * P1 + P4) & M64);
function readLE(b: Uint8Array, at: number, n: number): bigint {
  let v = 0n;
  for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[at + i]!);
  return v;
}
function refXxh64(input: Uint8Array, seedIn: bigint): bigint {
  const seed = seedIn & M64;
  const len = input.length;
  let p = 0;
  let h: bigint;
  if (len >= 32) {
    let v1 = (seed + P1 + P2) & M64;
    let v2 = (seed + P2) & M64;
    let v3 = seed;
    let v4 = (seed - P1) & M64;
    for (; p + 32 <= len; p += 32) {
      v1 = round(v1, readLE(input, p, 8));
      v2 = round(v2, readLE(input, p + 8, 8));
      v3 = round(v3, readLE(input, p + 16, 8));
      v4 = round(v4, readLE(input, p + 24, 8));
    }
    h = (rotl(v1, 1n) + rotl(v2, 7n) + rotl(v3, 12n) + rotl(v4, 18n)) & M64;
    h = merge(merge(merge(merge(h, v1), v2), v3), v4);
  } else {
    h = (seed + P5) & M64;
  }
  h = (h + BigInt(len)) & M64;
  for (; p + 8 <= len; p += 8) h = (rotl(h ^ round(0n, readLE(input, p, 8)), 27n) * P1 + P4) & M64;
  if (p + 4 <= len) {
    h = (rotl(h ^ ((readLE(input, p, 4) * P1) & M64), 23n) * P2 + P3) & M64;
    p += 4;
  }
  for (; p < len; p++) h = (rotl(h ^ ((BigInt(input[p]!) * P5) & M64), 11n) * P1) & M64;
  h = ((h ^ (h >> 33n)) * P2) & M64;
  h = ((h ^ (h >> 29n)) * P3) & M64;
  return h ^ (h >> 32n);
}

// ---- The rendezvous formula written out literally, over any 64-bit hash. ----
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));
function refOwner(h64: (d: Uint8Array, seed: bigint) => bigint, nodes: readonly RingNode[], sid: Uint8Array): string | undefined {
  let best: string | undefined;
  let bestScore = -Infinity;
  for (const n of nodes) {
    const u = (Number(h64(sid, h64(utf8(n.id), 0n)) >> 11n) + 0.5) / 2 ** 53;
    const score = -n.weight / Math.log(u);
    if (score > bestScore || (score === bestScore && best !== undefined && n.id < best)) {
      best = n.id;
      bestScore = score;
    }
  }
  return best;
}

// ---- Golden vectors: computed once with src/ring, then frozen here. Changing any owner is a breaking change. ----
const SESSION_IDS = [
  '00000000000000000000000000000001',
  'ffffffffffffffffffffffffffffffff',
  '000102030405060708090a0b0c0d0e0f',
  '0f0e0d0c0b0a09080706050403020100',
  'deadbeefdeadbeefdeadbeefdeadbeef',
  '0123456789abcdef0123456789abcdef',
  '80000000000000000000000000000000',
  'a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5',
  '5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a',
  'c0ffee00c0ffee00c0ffee00c0ffee00',
  '1122334455667788', // an 8-byte (OpenVPN-style) session id
  '6a09e667f3bcc908bb67ae8584caa73b',
] as const;

const GOLDEN: readonly { name: string; nodes: readonly RingNode[]; owners: readonly string[] }[] = [
  {
    name: 'three equal nodes',
    nodes: [{ id: 'node-a', weight: 1 }, { id: 'node-b', weight: 1 }, { id: 'node-c', weight: 1 }],
    owners: ['node-c', 'node-b', 'node-a', 'node-a', 'node-b', 'node-c', 'node-c', 'node-a', 'node-c', 'node-b', 'node-b', 'node-b'],
  },
  {
    name: 'five equal nodes',
    nodes: ['n1', 'n2', 'n3', 'n4', 'n5'].map((id) => ({ id, weight: 1 })),
    owners: ['n3', 'n1', 'n4', 'n3', 'n5', 'n2', 'n1', 'n3', 'n1', 'n5', 'n1', 'n2'],
  },
  {
    name: 'weights 1:2:7',
    nodes: [{ id: 'w1', weight: 1 }, { id: 'w2', weight: 2 }, { id: 'w7', weight: 7 }],
    owners: ['w7', 'w7', 'w7', 'w2', 'w7', 'w7', 'w7', 'w2', 'w7', 'w1', 'w2', 'w1'],
  },
];

let hasher: Hasher;
let wasm: XXHashAPI;
beforeAll(async () => {
  hasher = await createHasher();
  wasm = await xxhash();
});

describe('hasher (xxh64)', () => {
  it('matches published xxh64 outputs', () => {
    expect(hasher.h64(new Uint8Array(0), 0n)).toBe(0xef46db3751d8e999n);
    expect(hasher.h64(utf8('a'), 0n)).toBe(0xd24ec4f1a98c6e5bn);
    expect(hasher.h64(utf8('abc'), 0n)).toBe(0x44bc2cf5ad770999n);
    // Cross-checked against xxhash-wasm's string API.
    expect(hasher.h64(utf8('a'), 0n)).toBe(wasm.h64('a'));
    expect(hasher.h64(utf8('hello world'), 0x9e3779b97f4a7c15n)).toBe(wasm.h64('hello world', 0x9e3779b97f4a7c15n));
  });

  it('agrees with a from-scratch BigInt xxh64 for any bytes and u64 seed', () => {
    expect(refXxh64(new Uint8Array(0), 0n)).toBe(0xef46db3751d8e999n);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), fc.bigInt({ min: 0n, max: M64 }), (data, seed) => {
        const h = hasher.h64(data, seed);
        expect(h).toBe(refXxh64(data, seed));
        expect(h >= 0n && h <= M64).toBe(true);
      }),
      { seed: 0x5eed, numRuns: 500 },
    );
  });
});

describe('golden vectors', () => {
  for (const g of GOLDEN) {
    it(`${g.name}: fixed owners`, () => {
      const ring = buildRing(hasher, g.nodes);
      expect(SESSION_IDS.map((s) => ring.pick(hex(s)))).toEqual(g.owners);
    });

    it(`${g.name}: owners re-derived from the formula with direct xxhash-wasm calls and with the BigInt xxh64`, () => {
      const direct = (d: Uint8Array, seed: bigint): bigint => wasm.h64Raw(d, seed);
      expect(SESSION_IDS.map((s) => refOwner(direct, g.nodes, hex(s)))).toEqual(g.owners);
      // The slow reference on a few of them is enough to take the wasm out of the loop entirely.
      for (const i of [0, 4, 9]) expect(refOwner(refXxh64, g.nodes, hex(SESSION_IDS[i]!))).toBe(g.owners[i]);
    });
  }

  it('the owner does not depend on the order the nodes are listed in', () => {
    for (const g of GOLDEN) {
      const ring = buildRing(hasher, [...g.nodes].reverse());
      expect(SESSION_IDS.map((s) => ring.pick(hex(s)))).toEqual(g.owners);
    }
  });
});

// A hasher with scripted outputs, to reach the corners of the score: node seeds are the id's first char code,
// and the session hash is whatever `bySeed` says for that node.
function scriptedHasher(bySeed: Record<string, bigint>): Hasher {
  return {
    h64(data, seed) {
      if (seed === 0n) return BigInt(data[0] ?? 0);
      return bySeed[String.fromCharCode(Number(seed))] ?? 0n;
    },
  };
}

describe('score corners', () => {
  it('breaks exact ties toward the smallest id, whatever the input order', () => {
    const h = scriptedHasher({ a: 1n << 40n, b: 1n << 40n, c: 1n << 40n });
    const nodes = [{ id: 'c', weight: 1 }, { id: 'a', weight: 1 }, { id: 'b', weight: 1 }];
    const ring = buildRing(h, nodes);
    expect(ring.pick(hex('01'))).toBe('a');
    expect(ring.rank(hex('01'))).toEqual(['a', 'b', 'c']);
    expect(ring.pickExcluding(hex('01'), new Set(['a']))).toBe('b');
  });

  it('keeps u inside (0,1): the largest hash wins and the zero hash loses', () => {
    const h = scriptedHasher({ a: 0n, b: 1n << 63n, c: M64 });
    const ring = buildRing(h, [{ id: 'a', weight: 1 }, { id: 'b', weight: 1 }, { id: 'c', weight: 1 }]);
    // With u computed as a rounded double, h = 2^64-1 gives u = 1, ln(u) = 0 and a score of -Infinity.
    expect(ring.rank(hex('01'))).toEqual(['c', 'b', 'a']);
  });

  it('weight scales the score: equal hashes, heavier node wins', () => {
    const h = scriptedHasher({ a: 1n << 62n, b: 1n << 62n });
    expect(buildRing(h, [{ id: 'a', weight: 1 }, { id: 'b', weight: 1.0001 }]).pick(hex('01'))).toBe('b');
  });
});

describe('snapshot API', () => {
  const three: RingNode[] = [{ id: 'node-a', weight: 1 }, { id: 'node-b', weight: 2 }, { id: 'node-c', weight: 3 }];

  it('an empty ring picks nothing', () => {
    const ring = buildRing(hasher, []);
    expect(ring.nodes).toEqual([]);
    expect(ring.pick(hex('00'.repeat(16)))).toBeUndefined();
    expect(ring.pickExcluding(hex('00'.repeat(16)), new Set())).toBeUndefined();
    expect(ring.rank(hex('00'.repeat(16)))).toEqual([]);
  });

  it('rejects a duplicate id, naming it', () => {
    expect(() => buildRing(hasher, [...three, { id: 'node-b', weight: 5 }])).toThrow(/duplicate node id "node-b"/);
    expect(() => buildRing(hasher, three).with({ id: 'node-c', weight: 1 })).toThrow(/duplicate node id "node-c"/);
  });

  it('rejects weights that are not finite and > 0, naming the node', () => {
    for (const weight of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => buildRing(hasher, [{ id: 'bad', weight }])).toThrow(/node "bad" has invalid weight/);
      expect(() => buildRing(hasher, three).with({ id: 'bad', weight })).toThrow(/node "bad"/);
    }
  });

  it('keeps nodes in the order given, frozen and copied', () => {
    const input = [{ id: 'z', weight: 1 }, { id: 'a', weight: 2 }];
    const ring = buildRing(hasher, input);
    input[0]!.weight = 99;
    expect(ring.nodes).toEqual([{ id: 'z', weight: 1 }, { id: 'a', weight: 2 }]);
    expect(Object.isFrozen(ring.nodes)).toBe(true);
    expect(Object.isFrozen(ring.nodes[0])).toBe(true);
    expect(Object.isFrozen(ring)).toBe(true);
  });

  it('with/without build new snapshots and leave the old one untouched', () => {
    const ring = buildRing(hasher, three);
    const smaller = ring.without(['node-b', 'not-there']);
    const bigger = ring.with({ id: 'node-d', weight: 1 });
    expect(ring.nodes.map((n) => n.id)).toEqual(['node-a', 'node-b', 'node-c']);
    expect(smaller.nodes.map((n) => n.id)).toEqual(['node-a', 'node-c']);
    expect(bigger.nodes.map((n) => n.id)).toEqual(['node-a', 'node-b', 'node-c', 'node-d']);
    expect(ring.without(['not-there'])).toBe(ring);
    expect(ring.without([])).toBe(ring);
    // A derived snapshot behaves exactly like one built from scratch.
    const scratch = buildRing(hasher, [three[0]!, three[2]!]);
    for (const s of SESSION_IDS) expect(smaller.pick(hex(s))).toBe(scratch.pick(hex(s)));
  });

  it('pickExcluding skips excluded ids and gives undefined when all are excluded', () => {
    const ring = buildRing(hasher, three);
    for (const s of SESSION_IDS) {
      const rank = ring.rank(hex(s));
      expect(ring.pickExcluding(hex(s), new Set())).toBe(rank[0]);
      expect(ring.pickExcluding(hex(s), new Set([rank[0]!]))).toBe(rank[1]);
      expect(ring.pickExcluding(hex(s), new Set([rank[0]!, rank[1]!]))).toBe(rank[2]);
      expect(ring.pickExcluding(hex(s), new Set(rank))).toBeUndefined();
    }
  });

  it('ringDelta lists only the sessions that change owner, from and to', () => {
    const before = buildRing(hasher, three);
    const after = before.without(['node-c']);
    const ids = SESSION_IDS.map(hex);
    const delta = ringDelta(before, after, ids);
    const expected = ids
      .filter((s) => before.pick(s) === 'node-c')
      .map((s) => ({ sessionId: s, from: 'node-c', to: after.pick(s) }));
    expect(delta).toEqual(expected);
    expect(delta.length).toBeGreaterThan(0);
    expect(ringDelta(before, before, ids)).toEqual([]);
    const empty = buildRing(hasher, []);
    expect(ringDelta(empty, before, ids.slice(0, 2))).toEqual(
      ids.slice(0, 2).map((s) => ({ sessionId: s, from: undefined, to: before.pick(s) })),
    );
  });
});
