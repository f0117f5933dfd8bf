// Reductions over the middle axis of [outer, length, inner] (kernels/reduce.wgsl).
//
// When the reduced axis is the last one (inner == 1) a row is reduced by a workgroup of 64 (a
// strided loop, then a tree in workgroup memory), except rows of at most 64 elements: those take
// one invocation each (the `columns` kernel, which handles inner == 1 as well), since most of a
// workgroup would idle, and on a CPU adapter (llvmpipe) each workgroup barrier is a coroutine
// switch — measured on llvmpipe, [70001, 3] took 280 ms by workgroups against 5 ms by invocations.
// The choice depends only on the sizes, so a shape rounds the same way on every adapter.
// When inner > 1 every output is an invocation looping over length, reading coalesced across inner.
// No invocation loops more than about 4,096 times: a longer axis is reduced in pieces, then the
// pieces are reduced (llvmpipe cuts a shader's loops off after 65,535 iterations, silently).

import type { ReduceOp } from "../../backend.ts";
import { type GpuContext, type GpuStorage, Params } from "../gpu_context.ts";
import code from "../../../../kernels/reduce.wgsl" with { type: "text" };

const source = { name: "reduce", code };
const WORKGROUP = 256;
/** Rows up to this long are reduced by one invocation each. */
const SHORT_ROW = 64;
/** Longest piece of the reduced axis that one invocation loops over in the columns kernel. */
const COLUMN_CHUNK = 4096;
/** Longest piece a rows workgroup reduces: 4,096 loop steps per invocation (of vec4s when they fit). */
const ROW_CHUNK_STEPS = 4096 * 64;
/** What a reduction over an empty axis gives. */
const EMPTY: Record<ReduceOp, number> = { sum: 0, mean: NaN, max: -Infinity };

/** `rows`: a workgroup per output (inner == 1 only); `columns`: an invocation per output. */
export type ReduceLayout = "rows" | "columns";

/** The layout the program picks for a reduction of this shape (see the file header). */
export function reduceLayout(length: number, inner: number): ReduceLayout {
  return inner > 1 || length <= SHORT_ROW ? "columns" : "rows";
}

/**
 * sum, mean or max over the middle axis of x [outer, length, inner], to [outer, inner]. An axis
 * longer than one piece is reduced to [outer, pieces, inner] first, and again until one piece is
 * left. `layout` overrides the program's choice for every pass (tests use it to run both kernels
 * on the same shapes).
 */
export function reduce(
  ctx: GpuContext,
  op: ReduceOp,
  x: GpuStorage,
  outer: number,
  length: number,
  inner: number,
  layout?: ReduceLayout,
): GpuStorage {
  if (outer * inner === 0) return ctx.allocate(0, false);
  let input = x;
  let remaining = length;
  for (;;) {
    const passLayout = layout ?? reduceLayout(remaining, inner);
    const output = reducePass(ctx, op, input, outer, remaining, inner, passLayout, length);
    if (input !== x) ctx.release(input);
    if (output.chunks === 1) return output.storage;
    input = output.storage;
    remaining = output.chunks;
  }
}

/** One pass: each piece of `chunk` elements along the axis reduced to one value, [outer, chunks, inner]. */
function reducePass(
  ctx: GpuContext,
  op: ReduceOp,
  x: GpuStorage,
  outer: number,
  length: number,
  inner: number,
  layout: ReduceLayout,
  fullLength: number,
): { storage: GpuStorage; chunks: number } {
  if (layout === "rows" && inner !== 1) throw new Error(`reduce: the rows layout needs inner == 1, got ${inner}`);
  const vec4 = layout === "rows" ? length % 4 === 0 : inner % 4 === 0;
  const chunk = layout === "rows" ? ROW_CHUNK_STEPS * (vec4 ? 4 : 1) : COLUMN_CHUNK;
  const chunks = Math.max(1, Math.ceil(length / chunk));
  const last = chunks === 1;
  const out = ctx.allocate(outer * chunks * inner * 4, false);
  const params = new Params(8).u32(outer).u32(length).u32(inner).u32(chunk).u32(chunks)
    .f32(op === "max" ? -Infinity : 0).f32(EMPTY[op]).f32(last && op === "mean" ? fullLength : 1);
  const pipeline = ctx.pipeline(source, layout, { VEC4: vec4 }, { OP: op === "max" ? 1 : 0 });
  if (layout === "rows") {
    ctx.dispatch(pipeline, params, [x, out], outer * chunks);
  } else {
    const invocations = outer * chunks * (vec4 ? inner / 4 : inner);
    ctx.dispatch(pipeline, params, [x, out], Math.ceil(invocations / WORKGROUP));
  }
  return { storage: out, chunks };
}
