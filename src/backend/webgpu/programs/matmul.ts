// Batched, register-tiled matrix product (kernels/matmul.wgsl).

import type { MatmulParams } from "../../backend.ts";
import { type GpuContext, type GpuStorage, Params } from "../gpu_context.ts";
import code from "../../../../kernels/matmul.wgsl" with { type: "text" };
import { reduce } from "./reduce.ts";

const source = { name: "matmul", code };

/** The output tile one workgroup computes, BM × BN in kernels/matmul.wgsl. */
const TILE_M = 128;
const TILE_N = 128;
/** The kernel's step along K (BK): a slice of K is a multiple of it. */
const K_STEP = 16;
/**
 * Products of fewer output tiles than this are split along K (see kSlices). Measured on llvmpipe
 * (2 cores): a one-tile product with a long K runs about 1.9× faster split (64×64×4096: 17 → 9 ms;
 * 128×128×8192: 37 → 19.5 ms), while splitting products that already had 2 to 12 tiles only added
 * the summing pass (the `small` preset's step went from about 560 to 600 ms at 16).
 */
const SPLIT_K_WORKGROUPS = 4;
/** The shortest slice of K worth its partial tile's write and sum. */
const MIN_SLICE_K = 256;

/**
 * Mesa's llvmpipe runs a matmul pipeline about 5× slower for as long as every dispatch it has seen
 * had 4, 8 or 16 workgroups — the common grids of transformer-shaped products — and at full speed
 * for good once it has run any other grid (measured on Mesa llvmpipe; the cause lies in the driver).
 * Each new pipeline therefore runs once on a one-tile product of zeros; elsewhere that costs one
 * tiny dispatch per pipeline.
 */
const primed = new WeakSet<GPUComputePipeline>();

function prime(ctx: GpuContext, pipeline: GPUComputePipeline): void {
  primed.add(pipeline);
  const [a, b, c] = [ctx.allocate(64, true), ctx.allocate(64, true), ctx.allocate(64, true)];
  const params = new Params(11).u32(4).u32(4).u32(4).u32(0).u32(0).u32(1).u32(1).u32(1).u32(1).u32(K_STEP).u32(0);
  ctx.dispatch(pipeline, params, [a, b, c], 1);
  for (const storage of [a, b, c]) ctx.release(storage);
}

/**
 * How many slices of K the product is split into: enough that `tiles` output tiles make about
 * SPLIT_K_WORKGROUPS workgroups, each slice at least MIN_SLICE_K long. One (no split) once there
 * are that many tiles. Depends only on the sizes, so a shape rounds the same way on every adapter.
 */
export function kSlices(tiles: number, K: number): number {
  if (tiles >= SPLIT_K_WORKGROUPS) return 1;
  return Math.max(1, Math.min(Math.ceil(SPLIT_K_WORKGROUPS / tiles), Math.floor(K / MIN_SLICE_K)));
}

/**
 * c = op(a)·op(b) for p's batch of products. A product of few output tiles and a long K (a weight
 * gradient, for instance, is [out, in] summed over every token) is split along K: each slice's
 * partial tiles go to [slices, batch, M, N], then they are summed in slice order. `slices`
 * overrides the split (tests use it); it is rounded so that every slice is a whole number of
 * K_STEP and none is empty.
 */
export function matmul(ctx: GpuContext, a: GpuStorage, b: GpuStorage, p: MatmulParams, slices?: number): GpuStorage {
  const { batch, M, N, K, transA, transB, aBatchStride, bBatchStride } = p;
  const outputs = batch * M * N;
  if (outputs === 0 || K === 0) {
    // With K = 0 every output is an empty sum.
    return ctx.allocate(outputs * 4, true);
  }

  const aContiguous = transA ? M : K;
  const bContiguous = transB ? K : N;
  const vec4 = [aContiguous, bContiguous, aBatchStride, bBatchStride].every((n) => n % 4 === 0);
  const tilesM = Math.ceil(M / TILE_M);
  const tilesN = Math.ceil(N / TILE_N);
  const tiles = batch * tilesM * tilesN;
  const kSlice = Math.ceil(K / (slices ?? kSlices(tiles, K)) / K_STEP) * K_STEP;
  const sliceCount = Math.ceil(K / kSlice);
  const params = new Params(11).u32(M).u32(N).u32(K).u32(aBatchStride).u32(bBatchStride).u32(tilesN).u32(tilesM)
    .u32(tiles * sliceCount).u32(tiles).u32(kSlice).u32(outputs);
  // The transposes are override constants, so a training step compiles three matmul pipelines
  // (on llvmpipe 1.5–2 s each without Mesa's shader cache, two thirds of a cold step's compiling).
  // As uniform fields they make one pipeline that compiles in about 1.5× the time of one, but its
  // products ran 1.3–1.5× slower (the tiny preset's shapes, llvmpipe), so they stay constants.
  const pipeline = ctx.pipeline(source, "main", { VEC4: vec4 }, { TRANS_A: Number(transA), TRANS_B: Number(transB) });
  if (!primed.has(pipeline)) prime(ctx, pipeline);
  if (sliceCount === 1) {
    const out = ctx.allocate(outputs * 4, false);
    ctx.dispatch(pipeline, params, [a, b, out], tiles);
    return out;
  }
  const partials = ctx.allocate(sliceCount * outputs * 4, false);
  ctx.dispatch(pipeline, params, [a, b, partials], tiles * sliceCount);
  const out = reduce(ctx, "sum", partials, 1, sliceCount, outputs);
  ctx.release(partials);
  return out;
}
