// Embedding lookup and its backward (kernels/embedding.wgsl). The backward is a deterministic,
// atomic-free scatter: each workgroup owns a block of vocabulary rows and walks all ids in order.

import { type GpuContext, type GpuStorage, Params } from "../gpu_context.ts";
import code from "../../../../kernels/embedding.wgsl" with { type: "text" };

const source = { name: "embedding", code };

/**
 * Workgroups of the backward. Each scans all ids, and on a CPU adapter every 8-lane SIMD subgroup
 * of a workgroup repeats that scan, so the kernel's workgroups are one such subgroup and there are
 * few of them; on a GPU the scan is a broadcast load and the additions still spread over 512 lanes.
 * Measured on llvmpipe, 4096 ids into 32,064 × 256: 26 ms, against 56 ms with workgroups of 32 and
 * 337 ms with 256 workgroups of 64.
 */
const SCATTER_WORKGROUPS = 64;
/** Invocations per workgroup of the backward (a constant of the kernel). */
const SCATTER_WORKGROUP = 8;
/**
 * Loop iterations one backward dispatch may cost an invocation: llvmpipe stops an invocation past
 * 65,535 (see LOOP_BUDGET in softmax.ts), so the ids go in ranges whose worst case stays below it.
 * Each entry into a loop costs its iterations plus one (the final test), so an id costs one
 * iteration, and one of the workgroup's ids ceil(dim_units / 8) + 1 more.
 */
const SCATTER_LOOP_BUDGET = 60000;

function units(dim: number): { vec4: boolean; dimUnits: number } {
  const vec4 = dim % 4 === 0;
  return { vec4, dimUnits: vec4 ? dim / 4 : dim };
}

/** y [n, dim] = w[ids[i]] from a [vocab, dim] table; ids (i32) outside [0, vocab) give zero rows. */
export function embedding(ctx: GpuContext, w: GpuStorage, ids: GpuStorage, n: number, vocab: number, dim: number): GpuStorage {
  const y = ctx.allocate(n * dim * 4, false);
  if (n * dim === 0) return y;
  const { vec4, dimUnits } = units(dim);
  const params = new Params(3).u32(n).u32(dimUnits).u32(vocab);
  ctx.dispatch(ctx.pipeline(source, "gather", { VEC4: vec4 }), params, [w, ids, y], Math.ceil((n * dimUnits) / 256));
  return y;
}

/** dW [vocab, dim]: the dy rows of each id summed in token order; ids outside [0, vocab) are skipped. */
export function embeddingGrad(
  ctx: GpuContext,
  ids: GpuStorage,
  dy: GpuStorage,
  n: number,
  vocab: number,
  dim: number,
): GpuStorage {
  const dw = ctx.allocate(vocab * dim * 4, true);
  if (n * vocab * dim === 0) return dw;
  const { vec4, dimUnits } = units(dim);
  const rowsPerGroup = Math.ceil(vocab / Math.min(vocab, SCATTER_WORKGROUPS));
  const pipeline = ctx.pipeline(source, "scatter", { VEC4: vec4 });
  const tokensPerDispatch = Math.max(1, Math.floor(SCATTER_LOOP_BUDGET / (2 + Math.ceil(dimUnits / SCATTER_WORKGROUP))));
  for (let first = 0; first < n; first += tokensPerDispatch) {
    const params = new Params(5).u32(first).u32(Math.min(n, first + tokensPerDispatch)).u32(dimUnits).u32(vocab).u32(
      rowsPerGroup,
    );
    ctx.dispatch(pipeline, params, [ids, dy, dw], Math.ceil(vocab / rowsPerGroup));
  }
  return dw;
}
