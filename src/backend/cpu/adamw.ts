// The fused AdamW step (PyTorch semantics), in place on the parameter and both moment buffers.

import type { AdamWParams } from "../backend.ts";

/**
 * g = grad·gradScale; param ·= 1 − lr·weightDecay (the element's run's, given decayRuns); m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
 * param −= lr/(1−β1^step) · m / (sqrt(v)/sqrt(1−β2^step) + eps). Each element is computed in f64
 * from the stored f32 values; m and v are rounded to f32 when stored and used as stored.
 */
export function adamw(
  param: Float32Array,
  grad: Float32Array,
  expAvg: Float32Array,
  expAvgSq: Float32Array,
  n: number,
  p: AdamWParams,
): void {
  const { lr, beta1, beta2, eps, step, gradScale } = p;
  const stepSize = lr / (1 - beta1 ** step);
  const secondCorrection = Math.sqrt(1 - beta2 ** step);
  const runs = p.decayRuns ?? [{ start: 0, weightDecay: p.weightDecay }];
  runs.forEach(({ start, weightDecay }, r) => {
    const decay = 1 - lr * weightDecay;
    const end = r + 1 < runs.length ? runs[r + 1].start : n;
    for (let i = start; i < end; i++) {
      const g = grad[i] * gradScale;
      const m = Math.fround(beta1 * expAvg[i] + (1 - beta1) * g);
      const v = Math.fround(beta2 * expAvgSq[i] + (1 - beta2) * g * g);
      expAvg[i] = m;
      expAvgSq[i] = v;
      param[i] = param[i] * decay - stepSize * m / (Math.sqrt(v) / secondCorrection + eps);
    }
  });
}
