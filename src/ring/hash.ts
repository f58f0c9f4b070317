// Owns the one 64-bit hash (xxh64) that every ring computation uses; the only module that imports xxhash-wasm.
// Must never do I/O or keep state between calls: the same (bytes, seed) always gives the same hash.
import xxhash from 'xxhash-wasm';

/** A 64-bit hash function. Results are unsigned, in [0, 2^64). */
export interface Hasher {
  /**
   * xxh64 of `data` with `seed`. The seed is taken modulo 2^64 (xxh64 seeds are u64), so any bigint
   * is accepted; seeds produced by `h64` itself are already in range.
   */
  h64(data: Uint8Array, seed: bigint): bigint;
}

/**
 * Instantiates the WebAssembly xxh64 once. Call it in the composition root (or a test's `beforeAll`)
 * and pass the result to `buildRing`; it is synchronous from then on.
 */
export async function createHasher(): Promise<Hasher> {
  const { h64Raw } = await xxhash();
  return {
    h64(data: Uint8Array, seed: bigint): bigint {
      return h64Raw(data, seed);
    },
  };
}
