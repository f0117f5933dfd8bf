// Strided copy in place on dst (kernels/copy.wgsl), and the index-space helpers it shares with
// the broadcasting binary ops: coalescing dimensions, packing shape/stride tables into the uniform,
// and splitting spaces of rank above the kernels' 8 into several dispatches.

import type { StridedCopy } from "../../backend.ts";
import { type GpuContext, type GpuStorage, Params } from "../gpu_context.ts";
import code from "../../../../kernels/copy.wgsl" with { type: "text" };

const source = { name: "copy", code };
const WORKGROUP = 256;
/** Consecutive units (vec4s or words) of the last dimension per invocation. */
const SEGMENT = 4;

/** The most dimensions a kernel's shape/stride tables hold. */
export const MAX_KERNEL_RANK = 8;

/** An index space shared by several operands, each with its own element strides per dimension. */
export interface IndexSpace {
  /** Sizes, at least one dimension (a scalar space is [1]). */
  shape: number[];
  /** strides[operand][dimension], aligned with shape. */
  strides: number[][];
}

/**
 * Drops size-1 dimensions and merges neighbours that every operand walks as one run
 * (stride[d] == stride[d + 1] · shape[d + 1], which includes two broadcast strides of 0).
 */
export function coalesce(shape: readonly number[], strides: readonly (readonly number[])[]): IndexSpace {
  const outShape: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = outShape.length - 1;
    if (last >= 0 && strides.every((s, k) => outStrides[k][last] === s[d] * shape[d])) {
      outShape[last] *= shape[d];
      strides.forEach((s, k) => outStrides[k][last] = s[d]);
    } else {
      outShape.push(shape[d]);
      strides.forEach((s, k) => outStrides[k].push(s[d]));
    }
  }
  if (outShape.length === 0) {
    outShape.push(1);
    for (const s of outStrides) s.push(0);
  }
  return { shape: outShape, strides: outStrides };
}

/**
 * Calls dispatchPart once per index of the dimensions beyond the last MAX_KERNEL_RANK (once, with
 * the base offsets, when the space fits), with the space of those last dimensions and each
 * operand's offset to the part's first element.
 */
export function forEachKernelPart(
  space: IndexSpace,
  baseOffsets: readonly number[],
  dispatchPart: (part: IndexSpace, offsets: number[]) => void,
): void {
  const lead = Math.max(0, space.shape.length - MAX_KERNEL_RANK);
  const part = { shape: space.shape.slice(lead), strides: space.strides.map((s) => s.slice(lead)) };
  const counters = new Array<number>(lead).fill(0);
  for (;;) {
    const offsets = baseOffsets.map((base, k) => counters.reduce((sum, c, d) => sum + c * space.strides[k][d], base));
    dispatchPart(part, offsets);
    let d = lead - 1;
    while (d >= 0 && ++counters[d] === space.shape[d]) counters[d--] = 0;
    if (d < 0) return;
  }
}

/** Appends the shape and each operand's strides as MAX_KERNEL_RANK-entry tables (zero-padded). */
export function packTables(params: Params, space: IndexSpace): Params {
  for (const table of [space.shape, ...space.strides]) {
    for (let d = 0; d < MAX_KERNEL_RANK; d++) params.u32(d < table.length ? table[d] : 0);
  }
  return params;
}

/** The number of elements of shape (1 for a scalar). */
export function numel(shape: readonly number[]): number {
  return shape.reduce((product, size) => product * size, 1);
}

/** Row-major element strides of shape, right-aligned to rank, with 0 where shape broadcasts (size 1 or missing). */
export function broadcastStrides(shape: readonly number[], rank: number): number[] {
  const strides = new Array<number>(rank).fill(0);
  let stride = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[rank - shape.length + i] = shape[i] === 1 ? 0 : stride;
    stride *= shape[i];
  }
  return strides;
}

/**
 * For every index i of copy.shape: dst[dstOffset + Σ i_k·dstStrides_k] = src[srcOffset + Σ i_k·srcStrides_k].
 * The element type is any 4-byte dtype (f32, i32). A copy that coalesces to one contiguous run is
 * a buffer-to-buffer copy; otherwise the kernel moves vec4s where every row of the last dimension
 * is contiguous and 4-aligned on both sides.
 */
export function copyStrided(ctx: GpuContext, src: GpuStorage, dst: GpuStorage, copy: StridedCopy): void {
  const n = numel(copy.shape);
  if (n === 0) return;
  const space = coalesce(copy.shape, [copy.srcStrides, copy.dstStrides]);
  if (space.shape.length === 1 && space.strides.every((s) => s[0] === 1 || n === 1)) {
    ctx.copy(src, copy.srcOffset * 4, dst, copy.dstOffset * 4, n * 4);
    return;
  }
  const last = space.shape.length - 1;
  const inner = space.shape[last];
  const vec4 = inner % 4 === 0 && copy.srcOffset % 4 === 0 && copy.dstOffset % 4 === 0 &&
    space.strides.every((s) => s[last] === 1 && s.slice(0, last).every((stride) => stride % 4 === 0));
  const pipeline = ctx.pipeline(source, "main", { VEC4: vec4 });
  const segments = Math.ceil((vec4 ? inner / 4 : inner) / SEGMENT);
  forEachKernelPart(space, [copy.srcOffset, copy.dstOffset], (part, [srcOffset, dstOffset]) => {
    const rows = numel(part.shape) / inner;
    const params = packTables(
      new Params(4 + 3 * MAX_KERNEL_RANK).u32(rows).u32(part.shape.length).u32(srcOffset).u32(dstOffset),
      part,
    );
    ctx.dispatch(pipeline, params, [src, dst], Math.ceil(rows * segments / WORKGROUP));
  });
}
