// 32-bit hashing for the corpus: row seeds are hashed from (seed, step, row) and each generated
// character draws one uniform from (row seed, position), so any row can be rebuilt on its own.

/** A 32-bit hash of two 32-bit words: both are multiplied in, then a murmur3 finalizer. */
export function mix32(a: number, b: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ Math.imul(b ^ 0x7f4a7c15, 0xc2b2ae35), 0x27d4eb2f);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 32-bit hash of a safe integer (negative ones too): its low and high words mixed. */
export function hashInteger(key: number, value: number): number {
  return mix32(mix32(key, value >>> 0), Math.floor(value / 4294967296) >>> 0);
}

/** Uniform in the open interval (0, 1), a function of (seed, counter) only. */
export function uniform(seed: number, counter: number): number {
  return (mix32(seed, counter) + 0.5) / 4294967296;
}
