// Matrix product over the last two axes, with broadcast batch axes in front.

import { recordOp } from "../autograd.ts";
import { ShapeError } from "../errors.ts";
import { broadcastShapes, formatShape, sizeOf } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { checkFloat } from "./checks.ts";
import { broadcastTo } from "./layout.ts";
import { sumToShapeAndFree } from "./reduce.ts";

export interface MatmulOptions {
  /** Use a's last two axes transposed: a holds [..., K, M]. */
  transA?: boolean;
  /** Use b's last two axes transposed: b holds [..., N, K]. */
  transB?: boolean;
}

/** a [..., M, K] × b [..., K, N] → [..., M, N]. */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const transA = options.transA ?? false;
  const transB = options.transB ?? false;
  checkFloat("matmul", a, b);
  if (a.shape.length < 2 || b.shape.length < 2) {
    throw new ShapeError(`matmul: needs tensors of rank ≥ 2, got a ${formatShape(a.shape)} and b ${formatShape(b.shape)}`);
  }
  const [aRows, aCols] = a.shape.slice(-2);
  const [bRows, bCols] = b.shape.slice(-2);
  const [M, K] = transA ? [aCols, aRows] : [aRows, aCols];
  const [K2, N] = transB ? [bCols, bRows] : [bRows, bCols];
  if (K !== K2) {
    throw new ShapeError(
      `matmul: inner dimensions differ: a ${formatShape(a.shape)}${transA ? "ᵀ" : ""} × b ${formatShape(b.shape)}${
        transB ? "ᵀ" : ""
      } (${K} vs ${K2})`,
    );
  }
  const batchShape = broadcastShapes("matmul", a.shape.slice(0, -2), b.shape.slice(0, -2));
  const batch = sizeOf(batchShape);
  const outShape = [...batchShape, M, N];
  a.device.checkFits("matmul", batch * M * N, "f32");

  // The kernel broadcasts a whole operand (stride 0) but not individual batch axes: expand those.
  const aBatch = sizeOf(a.shape.slice(0, -2));
  const bBatch = sizeOf(b.shape.slice(0, -2));
  const aFull = aBatch === batch || aBatch === 1 ? a : broadcastTo(a, [...batchShape, aRows, aCols]);
  const bFull = bBatch === batch || bBatch === 1 ? b : broadcastTo(b, [...batchShape, bRows, bCols]);
  const storage = a.device.backend.matmul(aFull.storageFor("matmul"), bFull.storageFor("matmul"), {
    batch,
    M,
    N,
    K,
    transA,
    transB,
    aBatchStride: aFull.size === M * K ? 0 : M * K,
    bBatchStride: bFull.size === K * N ? 0 : K * N,
  });
  if (aFull !== a) aFull.dispose();
  if (bFull !== b) bFull.dispose();
  const out = a.device.wrap(storage, outShape);

  return recordOp("matmul", out, [a, b], [a, b], (g, [sa, sb]) => {
    // With C = op(A)·op(B): d op(A) = dC·op(B)ᵀ and d op(B) = op(A)ᵀ·dC, transposed back where stored transposed.
    const ga = a.requiresGrad
      ? sumToShapeAndFree(transA ? matmul(sb, g, { transA: transB, transB: true }) : matmul(g, sb, { transB: !transB }), a.shape)
      : null;
    const gb = b.requiresGrad
      ? sumToShapeAndFree(transB ? matmul(g, sa, { transA: true, transB: transA }) : matmul(sa, g, { transA: !transA }), b.shape)
      : null;
    return [ga, gb];
  });
}
