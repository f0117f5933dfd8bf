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
import { keep } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";

/** The async adjoint of a cut: gradients of its outputs → gradients of its inputs (null: none). */
export type CutBackward = (gradients: Tensor[]) => Promise<(Tensor | null)[]>;

/**
 * Runs `forward` on `inputs` and returns its results, joined to the graph: in backward, `backward`
 * maps the gradients of the results (zeros where nothing used one) to gradients of `inputs`, each
 * of its input's shape. The cut's backward runs even when no input needs a gradient (it may make
 * gradients elsewhere). The caller owns the results.
 */
export async function cut(
  name: string,
  inputs: Tensor[],
  forward: (inputs: Tensor[]) => Promise<Tensor[]>,
  backward: CutBackward,
): Promise<Tensor[]> {
  const values = await forward(inputs);
  const shapes = values.map((value) => value.shape);
  const sizes = values.map((value) => value.size);
  // One tensor carries the cut's node: the single result, or all results flattened end to end.
  const joined = keep(
    values.length === 1 && !inputs.includes(values[0])
      ? values[0]
      : values.length === 1
      ? values[0].view(shapes[0])
      : ops.noGrad(() => ops.tidy(() => ops.concat(values.map((value) => ops.reshape(value, [-1])), 0))),
  );
  if (values.length > 1) { for (const value of values) if (!inputs.includes(value)) value.dispose(); }

  recordAsyncOp(name, joined, inputs, async (gradient) => {
    const gradients = values.length === 1 ? [gradient] : ops.noGrad(() => ops.tidy(() => splitFlat(gradient, sizes, shapes)));
    const inputGradients = await backward(gradients);
    for (const g of gradients) if (g !== gradient && !inputGradients.includes(g)) g.dispose();
    return inputGradients;
  });
  if (values.length === 1) return [joined];
  const outputs = ops.tidy(() => splitFlat(joined, sizes, shapes)).map((output) => keep(output));
  joined.dispose();
  return outputs;
}

/** The pieces of a flat tensor, each under its own shape (differentiable: slices of the flat one). */
function splitFlat(flat: Tensor, sizes: number[], shapes: (readonly number[])[]): Tensor[] {
  let offset = 0;
  return shapes.map((shape, i) => {
    const piece = ops.reshape(ops.slice(flat, [offset], [sizes[i]]), shape);
    offset += sizes[i];
    return piece;
  });
}
