// Learning-rate schedule: linear warmup, then cosine decay to a floor.

export interface WarmupCosineOptions {
  /** Peak learning rate, reached at the last warmup step. */
  maxLr: number;
  /** Floor learning rate, reached at the last step and kept after it. */
  minLr: number;
  /** Number of warmup steps (0 for none). */
  warmupSteps: number;
  /** Number of training steps; the schedule ends at step totalSteps − 1. */
  totalSteps: number;
}

/**
 * lr(step) for a 0-based step:
 * - warmup, step < W: maxLr·(step + 1)/W, so step 0 gets maxLr/W and step W − 1 gets maxLr;
 * - decay, W ≤ step ≤ N − 1: minLr + ½(maxLr − minLr)(1 + cos(π·(step − W)/(N − 1 − W))), which is
 *   maxLr at step W and exactly minLr at step N − 1 (when W = N − 1 that single step is minLr);
 * - after the end, step > N − 1: minLr.
 * W = warmupSteps, N = totalSteps; W < N.
 */
export function warmupCosine({ maxLr, minLr, warmupSteps, totalSteps }: WarmupCosineOptions): (step: number) => number {
  if (!(Number.isFinite(maxLr) && maxLr >= 0)) {
    throw new RangeError(`warmupCosine: maxLr must be a finite number ≥ 0, got ${maxLr}`);
  }
  if (!(Number.isFinite(minLr) && minLr >= 0 && minLr <= maxLr)) {
    throw new RangeError(`warmupCosine: minLr must be in [0, maxLr = ${maxLr}], got ${minLr}`);
  }
  if (!(Number.isInteger(totalSteps) && totalSteps >= 1)) {
    throw new RangeError(`warmupCosine: totalSteps must be an integer ≥ 1, got ${totalSteps}`);
  }
  if (!(Number.isInteger(warmupSteps) && warmupSteps >= 0 && warmupSteps < totalSteps)) {
    throw new RangeError(`warmupCosine: warmupSteps must be an integer in [0, totalSteps = ${totalSteps}), got ${warmupSteps}`);
  }
  const decaySteps = totalSteps - 1 - warmupSteps;
  return (step: number): number => {
    if (!(Number.isInteger(step) && step >= 0)) throw new RangeError(`warmupCosine: step must be an integer ≥ 0, got ${step}`);
    if (step < warmupSteps) return maxLr * (step + 1) / warmupSteps;
    if (step >= totalSteps - 1) return minLr;
    const progress = (step - warmupSteps) / decaySteps;
    return minLr + 0.5 * (maxLr - minLr) * (1 + Math.cos(Math.PI * progress));
  };
}
