// Row-wise softmax / log-softmax and its backward (kernels/softmax.wgsl), and the row layout that
// every row-wise program (softmax, norms, cross-entropy) shares.
//
// Row-wise kernels run 64 invocations per workgroup, of which `lanes` (1, 8 or 64) share a row.
// The choice weighs two machines. On a CPU adapter (llvmpipe, SwiftShader) invocations are SIMD
// lanes of one thread and a workgroup barrier is a coroutine switch per 8-lane subgroup, so every
// lane beyond the first costs; on a GPU a row wants several lanes so that long rows are read by
// many invocations at once. Measured on llvmpipe (2 cores), softmax / rmsNorm over 4096 × 1024:
// 1 lane 1.66 / 1.78 GB/s, 8 lanes 1.59 / 1.65, 64 lanes 1.26 / 1.01 (a loaded machine; the ratios
// held across 1,024 to 32,064 columns); over 65,536 × 64, 1 lane 2.0 against 8 lanes 1.0. Hence:
// one lane for rows of up to 32 units (no barrier at all), 64 lanes for fewer than 64 rows (they
// would otherwise leave a GPU, or the CPU's cores, idle), 8 lanes (one barrier) otherwise. The
// layout depends only on the sizes, never on the adapter, so a given shape always rounds the same.

import { type GpuContext, type GpuStorage, Params } from "../gpu_context.ts";
import code from "../../../../kernels/softmax.wgsl" with { type: "text" };

const source = { name: "softmax", code };

/** How many invocations share one row in a row-wise kernel. */
export type RowLanes = 1 | 8 | 64;

export const ROW_WORKGROUP = 64;

/** A row read as vec4s when its length allows, else as scalars. */
export interface RowUnits {
  vec4: boolean;
  /** Row length in units (cols or cols / 4). */
  units: number;
}

export function rowUnits(cols: number): RowUnits {
  const vec4 = cols % 4 === 0;
  return { vec4, units: vec4 ? cols / 4 : cols };
}

/**
 * Loop iterations an invocation may run on llvmpipe, every loop of the shader counted together
 * (each entry into a loop costs one more, for its final test): past them it stops looping,
 * silently. A row-wise kernel walks its share of a row at most twice.
 */
export const LOOP_BUDGET = 65535;

/**
 * The lanes per row for `rows` rows of `units` units (see the file header); 64 as well when 8
 * lanes would loop past LOOP_BUDGET (rows of over 262,000 units). Rows of over 2 million units
 * exceed it even then.
 */
export function rowLanes(rows: number, units: number): RowLanes {
  if (units <= 32) return 1;
  if (rows < ROW_WORKGROUP || 2 * Math.ceil(units / 8) + 64 > LOOP_BUDGET) return 64;
  return 8;
}

/** Workgroups that cover `rows` rows with `lanes` invocations per row. */
export function rowWorkgroups(rows: number, lanes: RowLanes): number {
  return Math.ceil(rows / (ROW_WORKGROUP / lanes));
}

/** y = softmax(x) (or log-softmax when log) of each row of x [rows, cols]. `lanes` overrides the layout. */
export function softmax(ctx: GpuContext, x: GpuStorage, rows: number, cols: number, log: boolean, lanes?: RowLanes): GpuStorage {
  const y = ctx.allocate(rows * cols * 4, false);
  if (rows * cols === 0) return y;
  const { vec4, units } = rowUnits(cols);
  const rowLanesUsed = lanes ?? rowLanes(rows, units);
  const pipeline = ctx.pipeline(source, "forward", { VEC4: vec4 }, { LANES: rowLanesUsed, LOG: log ? 1 : 0 });
  ctx.dispatch(pipeline, new Params(2).u32(rows).u32(units), [x, y], rowWorkgroups(rows, rowLanesUsed));
  return y;
}

/** softmax: dx = y·(dy − Σ dy·y); log-softmax: dx = dy − exp(y)·Σ dy, per row. */
export function softmaxGrad(
  ctx: GpuContext,
  y: GpuStorage,
  dy: GpuStorage,
  rows: number,
  cols: number,
  log: boolean,
  lanes?: RowLanes,
): GpuStorage {
  const dx = ctx.allocate(rows * cols * 4, false);
  if (rows * cols === 0) return dx;
  const { vec4, units } = rowUnits(cols);
  const rowLanesUsed = lanes ?? rowLanes(rows, units);
  const pipeline = ctx.pipeline(source, "backward", { VEC4: vec4 }, { LANES: rowLanesUsed, LOG: log ? 1 : 0 });
  ctx.dispatch(pipeline, new Params(2).u32(rows).u32(units), [y, dy, dx], rowWorkgroups(rows, rowLanesUsed));
  return dx;
}
