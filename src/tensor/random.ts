// Counter-based random numbers: element i of a draw depends only on (seed, i), never on the shape,
// the backend or the order of calls. That is what lets any rank layout rebuild identical values.

/** A 32-bit mix of (seed, counter): a murmur3-style finalizer over both words. */
function hash(seed: number, counter: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(counter, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Uniform in the open interval (0, 1). */
function uniform(seed: number, counter: number): number {
  return (hash(seed, counter) + 0.5) / 4294967296;
}

/** Standard normal values by Box–Muller: elements 2k and 2k+1 share one pair of uniforms. */
export function randnValues(numel: number, seed: number): Float32Array {
  if (!Number.isInteger(seed)) throw new RangeError(`randn: seed must be an integer, got ${seed}`);
  const mixedSeed = hash(seed >>> 0, Math.floor(seed / 4294967296));
  const out = new Float32Array(numel);
  for (let i = 0; i < numel; i += 2) {
    const pair = i >>> 1;
    const radius = Math.sqrt(-2 * Math.log(uniform(mixedSeed, 2 * pair)));
    const angle = 2 * Math.PI * uniform(mixedSeed, 2 * pair + 1);
    out[i] = radius * Math.cos(angle);
    if (i + 1 < numel) out[i + 1] = radius * Math.sin(angle);
  }
  return out;
}
