// Autograd across collectives: cut().
//
// A parallel forward crosses a collective at every cut: cut() runs the collective's async forward
// on the tensors before it and joins the results to the same graph through one node whose backward
// is asynchronous: the collective's adjoint (an all-reduce for an identity, an identity for an
// all-reduce of a result every rank holds alike, the inverse all-to-all for an all-to-all). A
// backward from the loss is then one pass in topological order that waits at each cut, so every
// gradient flows once however the graph branches around the cuts (a residual that skips one, say).
//
//   const [h] = await cut("g", [partial], async ([p]) => [await comm.allReduce(p)], async ([g]) => [g]);
//   ...
//   await loss.backward();            // every parameter's .grad holds d loss / d parameter

import { recordAsyncOp } from "../tensor/autograd.ts";
import * as ops from "../tensor/ops/index.ts";
import { tidy } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";

/**
 * The async adjoint of a cut: gradients of its outputs → gradients of its inputs (null: none); it
 * is handed the tensors the cut saved.
 */
export type CutBackward = (gradients: Tensor[], saved: Tensor[]) => Promise<(Tensor | null)[]>;

/**
 * Runs `forward` on `inputs` and returns its results, joined to the graph: in backward, `backward`
 * maps the gradients of the results (zeros where nothing used one) to gradients of `inputs`, each
 * of its input's shape. The cut's backward runs even when no input needs a gradient (it may make
 * gradients elsewhere). `save` lists tensors the backward needs again (a ZeRO-3 block's input),
 * held until the graph is freed. The results belong to the caller's scope, as any op's.
 */
export function cut(
  name: string,
  inputs: Tensor[],
  forward: (inputs: Tensor[]) => Promise<Tensor[]>,
  backward: CutBackward,
  save: Tensor[] = [],
): Promise<Tensor[]> {
  return tidy(async () => {
    const values = await forward(inputs);
    const shapes = values.map((value) => value.shape);
    const sizes = values.map((value) => value.size);
    // One tensor carries the cut's node: the single result (a new tensor, not an input), or all results flattened end to end.
    const joined = values.length > 1
      ? ops.noGrad(() => ops.concat(values.map((value) => ops.reshape(value, [-1])), 0))
      : inputs.includes(values[0])
      ? values[0].view(shapes[0])
      : values[0];
    recordAsyncOp(name, joined, inputs, save, (gradient, saved) =>
      tidy(async () => {
        const gradients = values.length === 1 ? [gradient] : ops.noGrad(() => splitFlat(gradient, sizes, shapes));
        return await backward(gradients, saved);
      }));
    return values.length === 1 ? [joined] : splitFlat(joined, sizes, shapes);
  });
}

/** The slices of a flat tensor, each under its own shape (differentiable). */
function splitFlat(flat: Tensor, sizes: number[], shapes: (readonly number[])[]): Tensor[] {
  let offset = 0;
  return shapes.map((shape, i) => {
    const slice = ops.reshape(ops.slice(flat, [offset], [sizes[i]]), shape);
    offset += sizes[i];
    return slice;
  });
}
