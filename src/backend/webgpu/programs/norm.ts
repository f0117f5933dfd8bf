// RMSNorm and LayerNorm, forward and backward (kernels/norm.wgsl). The row kernels use the shared
// row layout of programs/softmax.ts; the weight and bias gradients are column sums over row
// blocks followed, when there is more than one block, by an in-order sum of the blocks.

import { type GpuContext, type GpuStorage, Params } from "../gpu_context.ts";
import { ROW_WORKGROUP, type RowLanes, rowLanes, rowUnits, rowWorkgroups } from "./softmax.ts";
import code from "../../../../kernels/norm.wgsl" with { type: "text" };

const source = { name: "norm", code };

/** Column-sum workgroups aimed for: enough to fill a GPU, while the partial sums stay small. */
const TARGET_COLUMN_WORKGROUPS = 128;
/** Rows a column-sum block covers at least, so that the partial sums stay a fraction of dy. */
const MIN_ROWS_PER_BLOCK = 32;
/** Rows a column-sum block covers at most, well inside llvmpipe's loop budget (see softmax.ts). */
const MAX_ROWS_PER_BLOCK = 4096;

function rowDispatch(
  ctx: GpuContext,
  entry: string,
  rows: number,
  cols: number,
  eps: number,
  storages: GpuStorage[],
  lanes?: RowLanes,
): void {
  const { vec4, units } = rowUnits(cols);
  const rowLanesUsed = lanes ?? rowLanes(rows, units);
  const pipeline = ctx.pipeline(source, entry, { VEC4: vec4 }, { LANES: rowLanesUsed });
  const params = new Params(4).u32(rows).u32(units).u32(cols).f32(eps);
  ctx.dispatch(pipeline, params, storages, rowWorkgroups(rows, rowLanesUsed));
}

/**
 * Sums over rows per column, deterministically: `entry` (rms_columns or ln_columns) writes one
 * partial sum per row block for each output, then column_sum adds the blocks in order.
 */
function columnSums(
  ctx: GpuContext,
  entry: string,
  inputs: GpuStorage[],
  rows: number,
  cols: number,
  outputs: number,
): GpuStorage[] {
  const { vec4, units } = rowUnits(cols);
  const defines = { VEC4: vec4 };
  const groups = Math.ceil(units / ROW_WORKGROUP);
  const wantedBlocks = Math.max(1, Math.min(Math.ceil(TARGET_COLUMN_WORKGROUPS / groups), Math.ceil(rows / MIN_ROWS_PER_BLOCK)));
  const rowsPerBlock = Math.min(Math.ceil(rows / wantedBlocks), MAX_ROWS_PER_BLOCK);
  const blocks = Math.ceil(rows / rowsPerBlock);
  const params = new Params(4).u32(rows).u32(units).u32(rowsPerBlock).u32(blocks);
  const partials = Array.from({ length: outputs }, () => ctx.allocate(blocks * cols * 4, false));
  const [x, rstd, dy, mean] = inputs;
  const storages = entry === "ln_columns" ? [x, rstd, dy, partials[0], mean, partials[1]] : [x, rstd, dy, partials[0]];
  ctx.dispatch(ctx.pipeline(source, entry, defines), params, storages, groups * blocks);
  if (blocks === 1) return partials;
  const sum = ctx.pipeline(source, "column_sum", defines);
  return partials.map((partial) => {
    const total = ctx.allocate(cols * 4, false);
    ctx.dispatch(sum, params, [partial, total], groups);
    ctx.release(partial);
    return total;
  });
}

/** y = x / sqrt(mean(x²) + eps) · w per row of x [rows, cols]; rstd [rows]. `lanes` overrides the row layout. */
export function rmsNorm(
  ctx: GpuContext,
  x: GpuStorage,
  w: GpuStorage,
  rows: number,
  cols: number,
  eps: number,
  lanes?: RowLanes,
): { y: GpuStorage; rstd: GpuStorage } {
  const y = ctx.allocate(rows * cols * 4, false);
  // A row of no columns has mean(x²) = 0/0; it is never read, so zeros stand in.
  const rstd = ctx.allocate(rows * 4, cols === 0);
  if (rows * cols > 0) rowDispatch(ctx, "rms_forward", rows, cols, eps, [x, w, y, rstd], lanes);
  return { y, rstd };
}

export function rmsNormGrad(
  ctx: GpuContext,
  x: GpuStorage,
  w: GpuStorage,
  rstd: GpuStorage,
  dy: GpuStorage,
  rows: number,
  cols: number,
  lanes?: RowLanes,
): { dx: GpuStorage; dw: GpuStorage } {
  const dx = ctx.allocate(rows * cols * 4, false);
  if (rows * cols === 0) return { dx, dw: ctx.allocate(cols * 4, true) };
  rowDispatch(ctx, "rms_backward", rows, cols, 0, [x, w, dx, rstd, dy], lanes);
  const [dw] = columnSums(ctx, "rms_columns", [x, rstd, dy], rows, cols, 1);
  return { dx, dw };
}

/** y = (x − mean) · rstd · w + b per row; mean and rstd [rows]. */
export function layerNorm(
  ctx: GpuContext,
  x: GpuStorage,
  w: GpuStorage,
  b: GpuStorage,
  rows: number,
  cols: number,
  eps: number,
  lanes?: RowLanes,
): { y: GpuStorage; mean: GpuStorage; rstd: GpuStorage } {
  const y = ctx.allocate(rows * cols * 4, false);
  const mean = ctx.allocate(rows * 4, cols === 0);
  const rstd = ctx.allocate(rows * 4, cols === 0);
  if (rows * cols > 0) rowDispatch(ctx, "ln_forward", rows, cols, eps, [x, w, y, rstd, b, mean], lanes);
  return { y, mean, rstd };
}

export function layerNormGrad(
  ctx: GpuContext,
  x: GpuStorage,
  w: GpuStorage,
  mean: GpuStorage,
  rstd: GpuStorage,
  dy: GpuStorage,
  rows: number,
  cols: number,
  lanes?: RowLanes,
): { dx: GpuStorage; dw: GpuStorage; db: GpuStorage } {
  const dx = ctx.allocate(rows * cols * 4, false);
  if (rows * cols === 0) return { dx, dw: ctx.allocate(cols * 4, true), db: ctx.allocate(cols * 4, true) };
  rowDispatch(ctx, "ln_backward", rows, cols, 0, [x, w, dx, rstd, dy, mean], lanes);
  const [dw, db] = columnSums(ctx, "ln_columns", [x, rstd, dy, mean], rows, cols, 2);
  return { dx, dw, db };
}
