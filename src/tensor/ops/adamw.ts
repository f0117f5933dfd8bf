// The fused AdamW update: one kernel per parameter, in place, outside autograd.

import type { AdamWParams } from "../../backend/backend.ts";
import { ShapeError } from "../errors.ts";
import { formatShape, sameShape } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { checkFloat } from "./checks.ts";

/**
 * Updates param, expAvg and expAvgSq in place from grad (PyTorch AdamW, decoupled weight decay).
 * All four tensors are f32 of one shape.
 */
export function adamwUpdate(param: Tensor, grad: Tensor, expAvg: Tensor, expAvgSq: Tensor, p: AdamWParams): void {
  checkFloat("adamwUpdate", param, grad, expAvg, expAvgSq);
  for (const t of [grad, expAvg, expAvgSq]) {
    if (!sameShape(t.shape, param.shape)) {
      throw new ShapeError(`adamwUpdate: shapes differ: param ${formatShape(param.shape)} vs ${formatShape(t.shape)}`);
    }
  }
  if (!Number.isInteger(p.step) || p.step < 1) throw new RangeError(`adamwUpdate: step must be an integer ≥ 1, got ${p.step}`);
  const s = (t: Tensor) => t.storageFor("adamwUpdate");
  param.device.backend.adamw(s(param), s(grad), s(expAvg), s(expAvgSq), param.size, p);
}
