// Block gather-sum, the layout change around a head exchange: each output block is the sum of the
// input blocks its index range names (one index: a gather; an inverse table: a scatter-add).

/**
 * y [n, block]: block j = Σ x block indices[k] for k in [offsets[j], offsets[j + 1]), added in k
 * order straight into the f32 result (the rounding sequence the contract fixes).
 */
export function gatherBlocks(x: Float32Array, offsets: Int32Array, indices: Int32Array, n: number, block: number): Float32Array {
  const y = new Float32Array(n * block);
  for (let j = 0; j < n; j++) {
    const target = j * block;
    for (let k = offsets[j]; k < offsets[j + 1]; k++) {
      const source = indices[k] * block;
      for (let e = 0; e < block; e++) y[target + e] += x[source + e];
    }
  }
  return y;
}
