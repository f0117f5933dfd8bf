// Batched matrix product on packed panels with a 4×4 register-blocked micro-kernel, accumulated in
// f64.
//
// Per batch entry both operands are first copied into panel order, whatever their transposes:
// A as row panels of 4 rows stored [K, 4] (the 4 values of one k side by side), B as column panels
// of 4 columns stored [K, 4]. Ragged edges are padded with zeros. The micro-kernel then walks one
// A panel and one B panel front to back, keeping the 4×4 output tile in 16 local f64 variables,
// and rounds each sum to f32 once when it stores the tile.
//
// Every output element is the f64 sum of its products in increasing k, each product of two f32
// values being exact in f64, so the result does not depend on the transposes or the padding.
// An operand shared by every batch entry (batch stride 0) is packed once.

import type { MatmulParams } from "../backend.ts";

const TILE = 4;

/** out[batch, M, N] = op(a)·op(b) per batch entry, with op the transpose where transA / transB say. */
export function matmul(a: Float32Array, b: Float32Array, p: MatmulParams): Float32Array {
  const { batch, M, N, K, transA, transB, aBatchStride, bBatchStride } = p;
  const out = new Float32Array(batch * M * N);
  if (out.length === 0) return out;
  const rowPanels = Math.ceil(M / TILE);
  const colPanels = Math.ceil(N / TILE);
  const panelSize = K * TILE;
  const packedA = new Float32Array(rowPanels * panelSize);
  const packedB = new Float32Array(colPanels * panelSize);
  // Element (i, k) of A sits at i·aRowStride + k·aDepthStride, element (k, j) of B at
  // k·bDepthStride + j·bColStride, within their batch entries.
  const aRowStride = transA ? 1 : K;
  const aDepthStride = transA ? M : 1;
  const bDepthStride = transB ? 1 : N;
  const bColStride = transB ? K : 1;
  let packedABase = -1;
  let packedBBase = -1;

  for (let e = 0; e < batch; e++) {
    const aBase = e * aBatchStride;
    const bBase = e * bBatchStride;
    if (aBase !== packedABase) {
      packPanels(a, aBase, M, K, aRowStride, aDepthStride, packedA);
      packedABase = aBase;
    }
    if (bBase !== packedBBase) {
      packPanels(b, bBase, N, K, bColStride, bDepthStride, packedB);
      packedBBase = bBase;
    }
    const outBase = e * M * N;
    for (let ip = 0; ip < rowPanels; ip++) {
      const i0 = ip * TILE;
      const rows = Math.min(TILE, M - i0);
      for (let jp = 0; jp < colPanels; jp++) {
        const j0 = jp * TILE;
        const cols = Math.min(TILE, N - j0);
        multiplyTile(packedA, ip * panelSize, packedB, jp * panelSize, K, out, outBase + i0 * N + j0, N, rows, cols);
      }
    }
  }
  return out;
}

/**
 * Copies a matrix whose element (r, k) sits at base + r·lineStride + k·depthStride (r < lines,
 * k < K) into panels of TILE lines: packed[(r / TILE)·K·TILE + k·TILE + r % TILE], zeros past the
 * last line.
 */
function packPanels(
  source: Float32Array,
  base: number,
  lines: number,
  K: number,
  lineStride: number,
  depthStride: number,
  packed: Float32Array,
): void {
  const panels = Math.ceil(lines / TILE);
  for (let panel = 0; panel < panels; panel++) {
    const panelStart = panel * K * TILE;
    for (let r = 0; r < TILE; r++) {
      const line = panel * TILE + r;
      let target = panelStart + r;
      if (line >= lines) {
        for (let k = 0; k < K; k++, target += TILE) packed[target] = 0;
        continue;
      }
      let index = base + line * lineStride;
      for (let k = 0; k < K; k++, target += TILE, index += depthStride) packed[target] = source[index];
    }
  }
}

/** Sums of the rows of one packed A panel times the columns of one packed B panel into out (rows × cols of the tile). */
function multiplyTile(
  packedA: Float32Array,
  aStart: number,
  packedB: Float32Array,
  bStart: number,
  K: number,
  out: Float32Array,
  outStart: number,
  ldOut: number,
  rows: number,
  cols: number,
): void {
  let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
  let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
  let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  for (let k = 0, ai = aStart, bi = bStart; k < K; k++, ai += TILE, bi += TILE) {
    const a0 = packedA[ai], a1 = packedA[ai + 1], a2 = packedA[ai + 2], a3 = packedA[ai + 3];
    const b0 = packedB[bi], b1 = packedB[bi + 1], b2 = packedB[bi + 2], b3 = packedB[bi + 3];
    c00 += a0 * b0, c01 += a0 * b1, c02 += a0 * b2, c03 += a0 * b3;
    c10 += a1 * b0, c11 += a1 * b1, c12 += a1 * b2, c13 += a1 * b3;
    c20 += a2 * b0, c21 += a2 * b1, c22 += a2 * b2, c23 += a2 * b3;
    c30 += a3 * b0, c31 += a3 * b1, c32 += a3 * b2, c33 += a3 * b3;
  }
  if (rows === TILE && cols === TILE) {
    let o = outStart;
    out[o] = c00, out[o + 1] = c01, out[o + 2] = c02, out[o + 3] = c03;
    o += ldOut;
    out[o] = c10, out[o + 1] = c11, out[o + 2] = c12, out[o + 3] = c13;
    o += ldOut;
    out[o] = c20, out[o + 1] = c21, out[o + 2] = c22, out[o + 3] = c23;
    o += ldOut;
    out[o] = c30, out[o + 1] = c31, out[o + 2] = c32, out[o + 3] = c33;
    return;
  }
  const tile = [c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33];
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[outStart + r * ldOut + c] = tile[r * TILE + c];
  }
}
