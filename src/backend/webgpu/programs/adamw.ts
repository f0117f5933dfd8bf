// Fused AdamW update (kernels/adamw.wgsl).

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
  const params = new Params(9)
    .u32(n).f32(p.lr).f32(p.beta1).f32(p.beta2).f32(p.eps).f32(p.weightDecay)
    .f32(p.lr / (1 - p.beta1 ** p.step)).f32(Math.sqrt(1 - p.beta2 ** p.step)).f32(p.gradScale);
  ctx.dispatch(ctx.pipeline(source, "main"), params, [param, grad, expAvg, expAvgSq], Math.ceil(n / 256));
}
