// Cross-entropy loss and its gradient (kernels/cross_entropy.wgsl), in the row layout of
// programs/softmax.ts. The loss gradient dloss stays on the GPU: the kernel reads dloss[0].

import { type GpuContext, type GpuStorage, Params } from "../gpu_context.ts";
import { type RowLanes, rowLanes, rowUnits, rowWorkgroups } from "./softmax.ts";
import code from "../../../../kernels/cross_entropy.wgsl" with { type: "text" };

const source = { name: "cross_entropy", code };

function dispatch(
  ctx: GpuContext,
  entry: string,
  rows: number,
  vocab: number,
  scale: number,
  storages: GpuStorage[],
  lanes?: RowLanes,
): void {
  const { vec4, units } = rowUnits(vocab);
  const rowLanesUsed = lanes ?? rowLanes(rows, units);
  const pipeline = ctx.pipeline(source, entry, { VEC4: vec4 }, { LANES: rowLanesUsed });
  const params = new Params(4).u32(rows).u32(units).u32(vocab).f32(scale);
  ctx.dispatch(pipeline, params, storages, rowWorkgroups(rows, rowLanesUsed));
}

/** loss [rows] = logsumexp(logits[r]) − logits[r, targets[r]]; NaN where the target is out of range. */
export function crossEntropy(
  ctx: GpuContext,
  logits: GpuStorage,
  targets: GpuStorage,
  rows: number,
  vocab: number,
  lanes?: RowLanes,
): GpuStorage {
  const loss = ctx.allocate(rows * 4, false);
  if (rows > 0) dispatch(ctx, "forward", rows, vocab, 1, [logits, targets, loss], lanes);
  return loss;
}

/** dlogits = (softmax(logits) − onehot(targets)) · dloss[0] · scale; NaN rows where the target is out of range. */
export function crossEntropyGrad(
  ctx: GpuContext,
  logits: GpuStorage,
  targets: GpuStorage,
  dloss: GpuStorage,
  rows: number,
  vocab: number,
  scale: number,
  lanes?: RowLanes,
): GpuStorage {
  const dlogits = ctx.allocate(rows * vocab * 4, false);
  if (rows * vocab > 0) dispatch(ctx, "backward", rows, vocab, scale, [logits, targets, dloss, dlogits], lanes);
  return dlogits;
}
