// Fused AdamW update (kernels/adamw.wgsl): one weight decay for every element, or one per run of
// elements (the DECAY_RUNS variant, a table of (start, weight decay) bound beside the buffers).

import type { AdamWParams } from "../../backend.ts";
import { type GpuContext, GpuStorage, Params } from "../gpu_context.ts";
import code from "../../../../kernels/adamw.wgsl" with { type: "text" };

const source = { name: "adamw", code };

export function adamw(
  ctx: GpuContext,
  param: GpuStorage,
  grad: GpuStorage,
  expAvg: GpuStorage,
  expAvgSq: GpuStorage,
  n: number,
  p: AdamWParams,
): void {
  const runs = p.decayRuns ?? [];
  const params = new Params(10)
    .u32(n).f32(p.lr).f32(p.beta1).f32(p.beta2).f32(p.eps).f32(p.weightDecay)
    .f32(p.lr / (1 - p.beta1 ** p.step)).f32(Math.sqrt(1 - p.beta2 ** p.step)).f32(p.gradScale).u32(runs.length);
  const pipeline = ctx.pipeline(source, "main", { DECAY_RUNS: runs.length > 0 });
  if (runs.length === 0) {
    ctx.dispatch(pipeline, params, [param, grad, expAvg, expAvgSq], Math.ceil(n / 256));
    return;
  }
  const table = new ArrayBuffer(8 * runs.length);
  const starts = new Uint32Array(table);
  const decays = new Float32Array(table);
  runs.forEach(({ start, weightDecay }, r) => {
    starts[2 * r] = start;
    decays[2 * r + 1] = weightDecay;
  });
  const runsStorage = ctx.upload(new Uint8Array(table));
  ctx.dispatch(pipeline, params, [param, grad, expAvg, expAvgSq, runsStorage], Math.ceil(n / 256));
  ctx.release(runsStorage);
}
