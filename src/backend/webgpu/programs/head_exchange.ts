// Block gather-sum (kernels/head_exchange.wgsl): the packing and unpacking around a head exchange,
// and with an inverse table their adjoints, without atomics.

import { type GpuContext, type GpuStorage, Params } from "../gpu_context.ts";
import code from "../../../../kernels/head_exchange.wgsl" with { type: "text" };

const source = { name: "head_exchange", code };
const WORKGROUP = 256;
/**
 * Terms of a range one dispatch adds: llvmpipe stops an invocation past 65,535 loop iterations
 * (see LOOP_BUDGET in softmax.ts), so longer ranges are summed over several dispatches.
 */
const TERMS_PER_DISPATCH = 60000;

/** y [n, block]: block j = Σ x block indices[k], k in [offsets[j], offsets[j + 1]), in k order. */
export function gatherBlocks(
  ctx: GpuContext,
  x: GpuStorage,
  offsets: GpuStorage,
  indices: GpuStorage,
  n: number,
  block: number,
  maxTerms: number,
): GpuStorage {
  const y = ctx.allocate(n * block * 4, false);
  if (n * block === 0) return y;
  const vec4 = block % 4 === 0;
  const units = vec4 ? block / 4 : block;
  const pipeline = ctx.pipeline(source, "gather_sum", { VEC4: vec4 });
  const workgroups = Math.ceil((n * units) / WORKGROUP);
  let first = 0;
  do {
    const params = new Params(4).u32(n).u32(units).u32(first).u32(TERMS_PER_DISPATCH);
    ctx.dispatch(pipeline, params, [x, offsets, indices, y], workgroups);
    first += TERMS_PER_DISPATCH;
  } while (first < maxTerms);
  return y;
}
