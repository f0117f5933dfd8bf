// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_: the norm is computed on the
// device, and the resulting scale goes to AdamW.step({ gradScale }) so that no extra pass rewrites
// the gradients. Ranks that hold sharded or replicated gradients (ZeRO, tensor parallelism) build
// the same norm from weighted sums of squares over runs of their elements.

import { noGrad } from "../tensor/autograd.ts";
import { ShardlabError } from "../tensor/errors.ts";
import { concat } from "../tensor/ops/layout.ts";
import { tidy } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";

/**
 * sqrt(Σ over the parameters that have a .grad of Σ g²). One sum of squares per gradient on the
 * device, gathered into one tensor and read back once; every intermediate is freed. 0 when no
 * parameter has a gradient. All gradients must live on one device.
 */
export async function globalGradNorm(params: Tensor[]): Promise<number> {
  const grads = params.flatMap((p) => (p.grad ? [p.grad] : []));
  if (grads.length === 0) return 0;
  const device = grads[0].device;
  if (grads.some((g) => g.device !== device)) throw new ShardlabError("globalGradNorm: the gradients live on different devices");
  const sumsOfSquares = noGrad(() => tidy(() => concat(grads.map((g) => g.mul(g).sum().reshape([1])), 0)));
  try {
    const sums = await sumsOfSquares.read();
    let total = 0;
    for (const s of sums) total += s;
    return Math.sqrt(total);
  } finally {
    sumsOfSquares.dispose();
  }
}

/** A run of a flattened gradient's elements, counted `weight` times in a sum of squares. */
export interface WeightedRun {
  start: number;
  numel: number;
  weight: number;
}

/**
 * Σ over the parts, Σ over their runs of weight · Σ g² (g the part's gradient flattened): one term
 * per run on the device, gathered into one tensor and read back once; every intermediate is freed.
 * 0 when there are no runs.
 */
export async function weightedSquareSum(parts: readonly { grad: Tensor; runs: readonly WeightedRun[] }[]): Promise<number> {
  const terms = noGrad(() =>
    tidy(() => {
      const sums: Tensor[] = [];
      for (const { grad, runs } of parts) {
        const flat = grad.reshape([-1]);
        for (const run of runs) {
          const part = run.numel === flat.size ? flat : flat.slice([run.start], [run.numel]);
          sums.push(part.mul(part).sum().scale(run.weight).reshape([1]));
        }
      }
      return sums.length > 0 ? concat(sums, 0) : null;
    })
  );
  if (!terms) return 0;
  try {
    return ((await terms.read()) as Float32Array).reduce((total, value) => total + value, 0);
  } finally {
    terms.dispose();
  }
}

/**
 * The factor that brings a gradient of global norm `norm` down to at most maxNorm:
 * min(1, maxNorm / (norm + 1e-6)), as clip_grad_norm_ computes it. A non-finite norm (overflowed
 * or NaN gradients) is an error rather than a silent scale.
 */
export function clipScale(norm: number, maxNorm: number): number {
  if (!(Number.isFinite(maxNorm) && maxNorm > 0)) {
    throw new RangeError(`clipScale: maxNorm must be a finite number > 0, got ${maxNorm}`);
  }
  if (!(Number.isFinite(norm) && norm >= 0)) {
    throw new RangeError(`clipScale: norm must be a finite number ≥ 0, got ${norm} (the gradients hold Inf or NaN)`);
  }
  return Math.min(1, maxNorm / (norm + 1e-6));
}
