// Reductions over one axis (or all elements): sum, mean, max; and the sum that undoes broadcasting.

import type { ReduceOp } from "../../backend/backend.ts";
import { recordOp } from "../autograd.ts";
import { normalizeAxis, type Shape, sizeOf } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { checkFloat } from "./checks.ts";
import { div, equal, mul } from "./elementwise.ts";
import { broadcastTo } from "./layout.ts";

interface Reduction {
  /** Shape with the reduced axis kept as 1. */
  keptShape: number[];
  outShape: number[];
  outer: number;
  length: number;
  inner: number;
}

function plan(op: string, x: Tensor, axis: number | undefined, keepDims: boolean): Reduction {
  if (axis === undefined) {
    const keptShape = x.shape.map(() => 1);
    return { keptShape, outShape: keepDims ? keptShape : [], outer: 1, length: x.size, inner: 1 };
  }
  const a = normalizeAxis(op, axis, x.shape.length);
  const keptShape = x.shape.map((d, i) => (i === a ? 1 : d));
  return {
    keptShape,
    outShape: keepDims ? keptShape : x.shape.filter((_, i) => i !== a),
    outer: sizeOf(x.shape.slice(0, a)),
    length: x.shape[a],
    inner: sizeOf(x.shape.slice(a + 1)),
  };
}

function run(op: ReduceOp, x: Tensor, r: Reduction): Tensor {
  checkFloat(op, x);
  return x.device.wrap(x.device.backend.reduce(op, x.storageFor(op), r.outer, r.length, r.inner), r.outShape);
}

/** Sum over axis, or over everything when axis is omitted. */
export function sum(x: Tensor, axis?: number, keepDims = false): Tensor {
  const r = plan("sum", x, axis, keepDims);
  return recordOp("sum", run("sum", x, r), [x], [], (g) => [expand(g, r.keptShape, x.shape)]);
}

export function mean(x: Tensor, axis?: number, keepDims = false): Tensor {
  const r = plan("mean", x, axis, keepDims);
  return recordOp("mean", run("mean", x, r), [x], [], (g) => {
    const scaled = g.scale(1 / r.length);
    const gx = expand(scaled, r.keptShape, x.shape);
    scaled.dispose();
    return [gx];
  });
}

/** Maximum over axis; the gradient is shared equally among tied maxima. */
export function max(x: Tensor, axis?: number, keepDims = false): Tensor {
  const r = plan("max", x, axis, keepDims);
  const y = run("max", x, r);
  return recordOp("max", y, [x], [x, y], (g, [sx, sy]) => {
    const yKept = sy.retainedHandle(r.keptShape);
    const mask = equal(sx, yKept);
    const ties = sum(mask, axis, true);
    const gKept = g.retainedHandle(r.keptShape);
    const share = div(gKept, ties);
    const gx = mul(mask, share);
    for (const t of [yKept, mask, ties, gKept, share]) t.dispose();
    return [gx];
  });
}

/** g (with the reduced axis dropped or kept) broadcast back to the input's shape. */
function expand(g: Tensor, keptShape: Shape, shape: Shape): Tensor {
  const kept = g.retainedHandle(keptShape);
  const out = broadcastTo(kept, shape);
  kept.dispose();
  return out;
}

/**
 * Sums a broadcast result back to `shape` (the gradient of broadcasting). Returns t itself when
 * nothing was broadcast.
 */
export function sumToShape(t: Tensor, shape: Shape): Tensor {
  let current = t;
  const extra = t.shape.length - shape.length;
  if (extra > 0) {
    const lead = sizeOf(t.shape.slice(0, extra));
    current = t.device.wrap(t.device.backend.reduce("sum", t.storageFor("sum"), 1, lead, t.size / lead), t.shape.slice(extra));
  }
  for (let axis = 0; axis < shape.length; axis++) {
    if (shape[axis] !== 1 || current.shape[axis] === 1) continue;
    const next = sum(current, axis, true);
    if (current !== t) current.dispose();
    current = next;
  }
  return current;
}

/** sumToShape for a temporary: frees t when the result is a new tensor. */
export function sumToShapeAndFree(t: Tensor, shape: Shape): Tensor {
  const out = sumToShape(t, shape);
  if (out !== t) t.dispose();
  return out;
}
