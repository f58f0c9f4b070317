// Properties of the ring over large seeded samples and fast-check: balance, weights, minimal disruption,
// and the consistency of pick / rank / pickExcluding / ringDelta. Deterministic seeds throughout.
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHasher } from '../../src/ring/hash.js';
import type { Hasher } from '../../src/ring/hash.js';
import { buildRing, ringDelta } from '../../src/ring/ring.js';
import type { Ring, RingNode } from '../../src/ring/ring.js';

const FC = { seed: 20240601, numRuns: 200 } as const;

/** mulberry32: a tiny seeded 32-bit PRNG, enough to make random-looking session ids reproducibly. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function fillId(next: () => number, out: Uint8Array): Uint8Array {
  for (let i = 0; i < 16; i += 4) {
    const w = next();
    out[i] = w >>> 24;
    out[i + 1] = (w >>> 16) & 0xff;
    out[i + 2] = (w >>> 8) & 0xff;
    out[i + 3] = w & 0xff;
  }
  return out;
}

/** `count` 16-byte session ids in one backing buffer. */
function sessionIds(seed: number, count: number): Uint8Array[] {
  const next = prng(seed);
  const buf = new Uint8Array(count * 16);
  const ids: Uint8Array[] = [];
  for (let i = 0; i < count; i++) ids.push(fillId(next, buf.subarray(i * 16, i * 16 + 16)));
  return ids;
}

/** Owner counts over `count` seeded ids, reusing one buffer (no per-id allocation). */
function shares(ring: Ring, seed: number, count: number): Map<string, number> {
  const next = prng(seed);
  const id = new Uint8Array(16);
  const counts = new Map<string, number>(ring.nodes.map((n) => [n.id, 0]));
  for (let i = 0; i < count; i++) {
    const owner = ring.pick(fillId(next, id))!;
    counts.set(owner, counts.get(owner)! + 1);
  }
  return counts;
}

let hasher: Hasher;
beforeAll(async () => {
  hasher = await createHasher();
});

const equalNodes = (n: number): RingNode[] => Array.from({ length: n }, (_, i) => ({ id: `node-${i}`, weight: 1 }));

describe('distribution over large seeded samples', () => {
  it('1,000,000 ids over 10 equal nodes: every share within ±2% (relative) of fair', () => {
    const N = 1_000_000;
    const counts = shares(buildRing(hasher, equalNodes(10)), 1, N);
    const fair = N / 10;
    for (const [id, c] of counts) expect(Math.abs(c / fair - 1), id).toBeLessThanOrEqual(0.02);
    expect([...counts.values()].reduce((a, b) => a + b, 0)).toBe(N);
  });

  it('1,000,000 ids over weights 1:2:7: shares 10% / 20% / 70% within ±1 percentage point', () => {
    const N = 1_000_000;
    const ring = buildRing(hasher, [{ id: 'w1', weight: 1 }, { id: 'w2', weight: 2 }, { id: 'w7', weight: 7 }]);
    const counts = shares(ring, 2, N);
    expect(Math.abs(counts.get('w1')! / N - 0.1)).toBeLessThanOrEqual(0.01);
    expect(Math.abs(counts.get('w2')! / N - 0.2)).toBeLessThanOrEqual(0.01);
    expect(Math.abs(counts.get('w7')! / N - 0.7)).toBeLessThanOrEqual(0.01);
  });

  describe('minimal disruption (100,000 ids, 10 equal nodes)', () => {
    const ids = sessionIds(3, 100_000);
    let ring: Ring;
    let owners: (string | undefined)[];
    beforeAll(() => {
      ring = buildRing(hasher, equalNodes(10));
      owners = ids.map((s) => ring.pick(s));
    });

    it('removing a node moves exactly the sessions it owned', () => {
      const after = ring.without(['node-4']);
      let moved = 0;
      for (let i = 0; i < ids.length; i++) {
        const to = after.pick(ids[i]!);
        if (owners[i] === 'node-4') {
          expect(to).not.toBe('node-4');
          moved++;
        } else if (to !== owners[i]) {
          expect.fail(`session ${i} moved from ${owners[i]} to ${to}`);
        }
      }
      expect(moved / ids.length).toBeGreaterThan(0.09); // node-4 did own about a tenth
      expect(moved / ids.length).toBeLessThan(0.11);
    });

    it('adding a node moves sessions only onto the new node', () => {
      const after = ring.with({ id: 'node-new', weight: 1 });
      let moved = 0;
      for (let i = 0; i < ids.length; i++) {
        const to = after.pick(ids[i]!);
        if (to === owners[i]) continue;
        if (to !== 'node-new') expect.fail(`session ${i} moved from ${owners[i]} to ${to}`);
        moved++;
      }
      expect(moved / ids.length).toBeGreaterThan(1 / 11 - 0.01);
      expect(moved / ids.length).toBeLessThan(1 / 11 + 0.01);
    });
  });
});

// ---- fast-check ----
const sessionId = fc.uint8Array({ minLength: 1, maxLength: 32 });
const node: fc.Arbitrary<RingNode> = fc.record({
  id: fc.string({ minLength: 0, maxLength: 12 }),
  weight: fc.double({ min: 0.001, max: 1000, noNaN: true, noDefaultInfinity: true }),
});
const nodeSet = (minLength: number): fc.Arbitrary<RingNode[]> =>
  fc.uniqueArray(node, { minLength, maxLength: 12, selector: (n) => n.id });

describe('fast-check properties', () => {
  it('pick is deterministic and independent of node order and of the id buffer', () => {
    fc.assert(
      fc.property(nodeSet(0), sessionId, (nodes, s) => {
        const ring = buildRing(hasher, nodes);
        const again = buildRing(hasher, [...nodes].reverse());
        const owner = ring.pick(s);
        expect(ring.pick(s)).toBe(owner);
        expect(ring.pick(Uint8Array.from(s))).toBe(owner);
        expect(again.pick(s)).toBe(owner);
      }),
      FC,
    );
  });

  it('pick is one of the node ids, undefined only for an empty ring', () => {
    fc.assert(
      fc.property(nodeSet(0), sessionId, (nodes, s) => {
        const owner = buildRing(hasher, nodes).pick(s);
        if (nodes.length === 0) expect(owner).toBeUndefined();
        else expect(nodes.map((n) => n.id)).toContain(owner);
      }),
      FC,
    );
  });

  it('rank is a permutation of the node ids and rank()[0] === pick()', () => {
    fc.assert(
      fc.property(nodeSet(1), sessionId, (nodes, s) => {
        const ring = buildRing(hasher, nodes);
        const rank = ring.rank(s);
        expect([...rank].sort()).toEqual(nodes.map((n) => n.id).sort());
        expect(rank[0]).toBe(ring.pick(s));
      }),
      FC,
    );
  });

  it('pickExcluding never returns an excluded id, and is the best of the rest', () => {
    fc.assert(
      fc.property(
        nodeSet(1).chain((nodes) =>
          fc.tuple(fc.constant(nodes), fc.subarray(nodes.map((n) => n.id)), sessionId),
        ),
        ([nodes, excluded, s]) => {
          const ring = buildRing(hasher, nodes);
          const exclude = new Set(excluded);
          const got = ring.pickExcluding(s, exclude);
          if (got !== undefined) expect(exclude.has(got)).toBe(false);
          expect(got).toBe(ring.rank(s).find((id) => !exclude.has(id)));
          expect(got).toBe(ring.without(excluded).pick(s));
        },
      ),
      FC,
    );
  });

  it('ringDelta agrees with comparing pick() on both rings', () => {
    fc.assert(
      fc.property(nodeSet(0), nodeSet(0), fc.array(sessionId, { maxLength: 40 }), (a, b, ids) => {
        const before = buildRing(hasher, a);
        const after = buildRing(hasher, b);
        const expected = ids
          .filter((s) => before.pick(s) !== after.pick(s))
          .map((s) => ({ sessionId: s, from: before.pick(s), to: after.pick(s) }));
        expect(ringDelta(before, after, ids)).toEqual(expected);
      }),
      FC,
    );
  });

  it('without(x) moves only the sessions x owned; with(x) moves sessions only onto x', () => {
    fc.assert(
      fc.property(nodeSet(2), fc.array(sessionId, { minLength: 1, maxLength: 40 }), (nodes, ids) => {
        const ring = buildRing(hasher, nodes);
        const [gone] = nodes;
        const smaller = ring.without([gone!.id]);
        for (const m of ringDelta(ring, smaller, ids)) expect(m.from).toBe(gone!.id);
        for (const m of ringDelta(smaller, ring, ids)) expect(m.to).toBe(gone!.id);
        expect(smaller.with(gone!).nodes.map((n) => n.id).sort()).toEqual(nodes.map((n) => n.id).sort());
        for (const s of ids) expect(smaller.with(gone!).pick(s)).toBe(ring.pick(s));
      }),
      FC,
    );
  });
});
