// Batched, register-tiled matrix product (kernels/matmul.wgsl).

import type { MatmulParams } from "../../backend.ts";
import { type GpuContext, type GpuStorage, Params } from "../gpu_context.ts";
import code from "../../../../kernels/matmul.wgsl" with { type: "text" };

const source = { name: "matmul", code };

/** The output tile one workgroup computes, BM × BN in kernels/matmul.wgsl. */
const TILE_M = 128;
const TILE_N = 128;

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
  const params = new Params(8).u32(4).u32(4).u32(4).u32(0).u32(0).u32(1).u32(1).u32(1);
  ctx.dispatch(pipeline, params, [a, b, c], 1);
  for (const storage of [a, b, c]) ctx.release(storage);
}

export function matmul(ctx: GpuContext, a: GpuStorage, b: GpuStorage, p: MatmulParams): GpuStorage {
  const { batch, M, N, K, transA, transB, aBatchStride, bBatchStride } = p;
  const outputs = batch * M * N;
  // With K = 0 every output is an empty sum; the kernel writes each element it covers, so only then zero-fill.
  const out = ctx.allocate(outputs * 4, K === 0);
  if (outputs === 0 || K === 0) return out;

  const aContiguous = transA ? M : K;
  const bContiguous = transB ? K : N;
  const vec4 = [aContiguous, bContiguous, aBatchStride, bBatchStride].every((n) => n % 4 === 0);
  const tilesM = Math.ceil(M / TILE_M);
  const tilesN = Math.ceil(N / TILE_N);
  const tiles = batch * tilesM * tilesN;
  const params = new Params(8).u32(M).u32(N).u32(K).u32(aBatchStride).u32(bBatchStride).u32(tilesN).u32(tilesM).u32(tiles);
  const pipeline = ctx.pipeline(source, "main", { VEC4: vec4 }, { TRANS_A: Number(transA), TRANS_B: Number(transB) });
  if (!primed.has(pipeline)) prime(ctx, pipeline);
  ctx.dispatch(pipeline, params, [a, b, out], tiles);
  return out;
}
