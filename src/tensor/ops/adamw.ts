// The fused AdamW update: one kernel per parameter, in place, outside autograd.

import type { AdamWParams, DecayRun } from "../../backend/backend.ts";
import { ShapeError } from "../errors.ts";
import { formatShape, sameShape } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { checkFloat } from "./checks.ts";

/**
 * Updates param, expAvg and expAvgSq in place from grad (PyTorch AdamW, decoupled weight decay).
 * All four tensors are f32 of one shape. `p.decayRuns`, if given, gives runs of elements of the
 * flattened tensors their own weight decay.
 */
export function adamwUpdate(param: Tensor, grad: Tensor, expAvg: Tensor, expAvgSq: Tensor, p: AdamWParams): void {
  checkFloat("adamwUpdate", param, grad, expAvg, expAvgSq);
  for (const t of [grad, expAvg, expAvgSq]) {
    if (!sameShape(t.shape, param.shape)) {
      throw new ShapeError(`adamwUpdate: shapes differ: param ${formatShape(param.shape)} vs ${formatShape(t.shape)}`);
    }
  }
  if (!Number.isInteger(p.step) || p.step < 1) throw new RangeError(`adamwUpdate: step must be an integer ≥ 1, got ${p.step}`);
  if (p.decayRuns) checkDecayRuns(p.decayRuns, param.size);
  const s = (t: Tensor) => t.storageFor("adamwUpdate");
  param.device.backend.adamw(s(param), s(grad), s(expAvg), s(expAvgSq), param.size, p);
}

function checkDecayRuns(runs: readonly DecayRun[], n: number): void {
  if (runs.length === 0 || runs[0].start !== 0) {
    throw new RangeError(
      `adamwUpdate: decayRuns must start at element 0, got ${runs.length ? `a first run at ${runs[0].start}` : "no runs"}`,
    );
  }
  runs.forEach(({ start, weightDecay }, r) => {
    if (!Number.isInteger(start) || start >= Math.max(n, 1) || (r > 0 && start <= runs[r - 1].start)) {
      throw new RangeError(`adamwUpdate: decay run ${r} starts at ${start}; starts must ascend strictly within [0, ${n})`);
    }
    if (!(Number.isFinite(weightDecay) && weightDecay >= 0)) {
      throw new RangeError(`adamwUpdate: decay run ${r} has weight decay ${weightDecay}; it must be a finite number ≥ 0`);
    }
  });
}
