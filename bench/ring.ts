// Ring lookups per second for 8, 64 and 512 nodes, beside a baseline in the same run: one bare
// xxhash-wasm call per node (the hashing the ring cannot avoid).
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { createHasher } from '../src/ring/hash.js';
import { buildRing } from '../src/ring/ring.js';
import { machine, median, writeResult } from './lib.js';

export async function benchRing(): Promise<unknown> {
  const hasher = await createHasher();
  const ids = Array.from({ length: 4096 }, () => randomBytes(16));
  const rows = [];
  for (const n of [8, 64, 512]) {
    const ring = buildRing(hasher, Array.from({ length: n }, (_, i) => ({ id: `node-${i}`, weight: 1 + (i % 3) })));
    const seeds = Array.from({ length: n }, (_, i) => BigInt(i) * 0x9e3779b97f4a7c15n);
    const lookups = Math.max(2000, Math.floor(400_000 / n));
    const pickRates: number[] = [];
    const hashRates: number[] = [];
    for (let rep = 0; rep < 5; rep++) {
      let t0 = performance.now();
      let sink = 0;
      for (let i = 0; i < lookups; i++) sink += ring.pick(ids[i & 4095] as Uint8Array)!.length;
      pickRates.push(lookups / ((performance.now() - t0) / 1000));
      t0 = performance.now();
      let h = 0n;
      for (let i = 0; i < lookups; i++) for (const s of seeds) h ^= hasher.h64(ids[i & 4095] as Uint8Array, s);
      hashRates.push(lookups / ((performance.now() - t0) / 1000));
      if (sink === -1 || h === -1n) console.log('unreachable');
    }
    rows.push({
      nodes: n,
      picks_per_s: Math.round(median(pickRates)),
      baseline_hash_only_per_s: Math.round(median(hashRates)),
      ratio_pick_over_baseline: Number((median(pickRates) / median(hashRates)).toFixed(3)),
    });
  }
  console.log('ring (median of 5 runs)');
  console.table(rows);
  const result = { bench: 'ring', machine: machine(), rows };
  console.log('written', writeResult('ring', result));
  return result;
}
