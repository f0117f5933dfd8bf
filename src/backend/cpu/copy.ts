// Strided copy between two storages of the same dtype (f32 or i32), in place on dst: the one
// kernel behind transpose, slice, concat, split and broadcastTo.

import type { StridedCopy } from "../backend.ts";
import { coalesce, forEachRow } from "./strided.ts";

/** For every index i of copy.shape: dst[dstOffset + Σ i_k·dstStrides_k] = src[srcOffset + Σ i_k·srcStrides_k]. */
export function copyStrided(src: Float32Array | Int32Array, dst: Float32Array | Int32Array, copy: StridedCopy): void {
  const space = coalesce(copy.shape, [copy.srcStrides, copy.dstStrides]);
  const inner = space.shape.length - 1;
  const rowLength = space.shape[inner];
  const srcStride = space.strides[0][inner];
  const dstStride = space.strides[1][inner];
  forEachRow(space, [copy.srcOffset, copy.dstOffset], (offsets) => {
    const srcStart = offsets[0];
    const dstStart = offsets[1];
    if (srcStride === 1 && dstStride === 1) {
      dst.set(src.subarray(srcStart, srcStart + rowLength), dstStart);
      return;
    }
    for (let i = 0, s = srcStart, d = dstStart; i < rowLength; i++, s += srcStride, d += dstStride) dst[d] = src[s];
  });
}
