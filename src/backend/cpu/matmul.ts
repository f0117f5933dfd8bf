// Batched matrix product, cache-blocked, accumulated in f64.
//
// Every case runs the same i-k-j kernel: for each row i of a tile and each k of a K block, one
// element of A is loaded and the innermost loop streams a contiguous row of the B block into a
// contiguous f64 accumulator row. Only the A element load depends on transA (it sits in the
// middle loop, so a strided A costs nothing in the inner loop). For transB, B is stored [N, K],
// so each panel of NB columns is transposed once into a contiguous [K, NB] scratch panel and then
// reused by every row tile.
//
// Blocking: NB output columns × KB of K keep a B block (KB·NB f32 = 64 KiB) and an accumulator
// tile (MB·NB f64 = 64 KiB) in cache while MB rows of A stream past.

import type { MatmulParams } from "../backend.ts";

const BLOCK_N = 128;
const BLOCK_K = 128;
const BLOCK_M = 64;
const PACK_CHUNK_K = 32;

/** out[batch, M, N] = op(a)·op(b) per batch entry, with op the transpose where transA / transB say. */
export function matmul(a: Float32Array, b: Float32Array, p: MatmulParams): Float32Array {
  const { batch, M, N, K, transA, transB, aBatchStride, bBatchStride } = p;
  const out = new Float32Array(batch * M * N);
  if (out.length === 0) return out;
  // Element (i, k) of A sits at i·aRowStride + k·aColStride within its batch entry.
  const aRowStride = transA ? 1 : K;
  const aColStride = transA ? M : 1;
  const panelWidth = Math.min(BLOCK_N, N);
  const panel = transB ? new Float32Array(K * panelWidth) : null;
  const acc = new Float64Array(Math.min(BLOCK_M, M) * panelWidth);

  for (let e = 0; e < batch; e++) {
    const aBase = e * aBatchStride;
    const bBase = e * bBatchStride;
    const outBase = e * M * N;
    for (let j0 = 0; j0 < N; j0 += BLOCK_N) {
      const nb = Math.min(BLOCK_N, N - j0);
      // The B block for columns j0..j0+nb: rows of length nb at bRowStart + k·ldb.
      let bSource: Float32Array;
      let bRowStart: number;
      let ldb: number;
      if (panel) {
        packTransposedPanel(b, bBase, K, j0, nb, panel);
        bSource = panel;
        bRowStart = 0;
        ldb = nb;
      } else {
        bSource = b;
        bRowStart = bBase + j0;
        ldb = N;
      }
      for (let i0 = 0; i0 < M; i0 += BLOCK_M) {
        const mb = Math.min(BLOCK_M, M - i0);
        acc.fill(0, 0, mb * nb);
        for (let k0 = 0; k0 < K; k0 += BLOCK_K) {
          const kEnd = Math.min(K, k0 + BLOCK_K);
          for (let i = 0; i < mb; i++) {
            const accRow = i * nb;
            const accEnd = accRow + nb;
            let aIndex = aBase + (i0 + i) * aRowStride + k0 * aColStride;
            for (let k = k0; k < kEnd; k++, aIndex += aColStride) {
              const aik = a[aIndex];
              let bIndex = bRowStart + k * ldb;
              for (let c = accRow; c < accEnd; c++, bIndex++) acc[c] += aik * bSource[bIndex];
            }
          }
        }
        for (let i = 0; i < mb; i++) {
          const outRow = outBase + (i0 + i) * N + j0;
          const accRow = i * nb;
          for (let j = 0; j < nb; j++) out[outRow + j] = acc[accRow + j];
        }
      }
    }
  }
  return out;
}

/**
 * panel[k·nb + j] = bT[base + (j0 + j)·K + k]: columns j0..j0+nb of B, read from its [N, K]
 * storage in chunks of K so the written panel rows stay in cache while the reads run contiguous.
 */
function packTransposedPanel(bT: Float32Array, base: number, K: number, j0: number, nb: number, panel: Float32Array): void {
  for (let k0 = 0; k0 < K; k0 += PACK_CHUNK_K) {
    const kEnd = Math.min(K, k0 + PACK_CHUNK_K);
    for (let j = 0; j < nb; j++) {
      const source = base + (j0 + j) * K;
      for (let k = k0, target = k0 * nb + j; k < kEnd; k++, target += nb) panel[target] = bT[source + k];
    }
  }
}
