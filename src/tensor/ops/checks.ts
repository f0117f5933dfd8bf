// Argument checks shared by the ops: device, dtype and disposal, with messages that name the op.

import { DTypeError, ShardlabError } from "../errors.ts";
import { formatShape } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import type { DType } from "../dtype.ts";

/** Every tensor must be f32, live, and on the first tensor's device. */
export function checkFloat(op: string, ...tensors: Tensor[]): void {
  checkDtype(op, "f32", ...tensors);
}

export function checkDtype(op: string, dtype: DType, ...tensors: Tensor[]): void {
  const device = tensors[0].device;
  for (const t of tensors) {
    t.storageFor(op);
    if (t.dtype !== dtype) {
      throw new DTypeError(`${op}: expected ${dtype}, got ${t.dtype} (tensor of shape ${formatShape(t.shape)})`);
    }
    if (t.device !== device) throw new ShardlabError(`${op}: tensors live on different devices`);
  }
}
