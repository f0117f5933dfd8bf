// 32-bit seeds derived from a run's seed and a label (a parameter name, a sampling step): values
// keyed this way do not depend on the order in which they are made, nor on the backend.

const encoder = new TextEncoder();

/** FNV-1a over the UTF-8 bytes of `${seed}/${label}`, then a murmur3 finalizer to spread the bits. */
export function deriveSeed(seed: number, label: string): number {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`deriveSeed: seed must be a safe integer, got ${seed}`);
  let h = 0x811c9dc5;
  for (const byte of encoder.encode(`${seed}/${label}`)) h = Math.imul(h ^ byte, 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
