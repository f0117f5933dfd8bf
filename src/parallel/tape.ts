// The communication tape: autograd across collectives.
//
// The runtime's autograd is synchronous, and a collective is not: it reads tensors back, waits for
// peers and uploads the result. So a parallel forward is cut at every collective. A cut takes the
// tensors before it (still attached to their graph), runs its async forward on them, and hands the
// results on as fresh leaves that require grad: the graph after the cut starts there. The tape
// remembers every cut; its backward first runs the ordinary backward from the loss, which fills the
// newest cut's leaves' .grad, sends those gradients through the cut's async backward (the
// collective's adjoint: all-reduce for an identity, identity for an all-reduce of a replicated
// result, the inverse all-to-all for an all-to-all) and continues from the cut's inputs, cut by
// cut, newest first. A cut made later consumes only tensors made earlier, so newest first is an
// order in which every leaf's gradient is complete before it travels further back.
//
//   const tape = new CommTape();
//   const h = await tape.cut([partial], async ([p]) => [await allReduceSum(p)], async ([g]) => [g]);
//   ...
//   await tape.backward(loss);        // every parameter's .grad holds d loss / d parameter
//   tape.dispose();

import { noGrad, runBackward } from "../tensor/autograd.ts";
import { keep } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";

/** The async adjoint of a cut: gradients of its outputs → gradients of its inputs (null: none). */
export type CutBackward = (gradients: Tensor[]) => Promise<(Tensor | null)[]>;

interface Cut {
  name: string;
  /** Handles on the tensors before the cut, attached to their graph. */
  inputs: Tensor[];
  /** The leaves the graph after the cut starts from. */
  outputs: Tensor[];
  backward: CutBackward;
}

export class CommTape {
  private cuts: Cut[] = [];

  /**
   * Runs `forward` on the tensors `inputs` and returns its results as new leaves that require grad.
   * `backward` later maps the gradients of those leaves (zeros where nothing used one) to gradients
   * of `inputs`, each of its input's shape. The returned tensors belong to the tape: dispose() frees them.
   */
  async cut(
    name: string,
    inputs: Tensor[],
    forward: (inputs: Tensor[]) => Promise<Tensor[]>,
    backward: CutBackward,
  ): Promise<Tensor[]> {
    const values = await forward(inputs);
    const outputs = values.map((value) => {
      const leaf = keep(value.view(value.shape));
      leaf.requiresGrad = true;
      if (!inputs.includes(value)) value.dispose();
      return leaf;
    });
    const attached = inputs.map((input) => input.retainedHandle());
    // A handle carries no graph of its own: give it the input's node so backward can start there.
    attached.forEach((handle, i) => {
      const node = inputs[i].gradNode();
      if (node) {
        node.refs++;
        handle.setGradNode(node);
      }
    });
    this.cuts.push({ name, inputs: attached, outputs, backward });
    return outputs;
  }

  /**
   * Backpropagates from `output` through the graph and every cut, newest cut first: from a scalar
   * loss, or from any tensor given the gradient with respect to it (a block recomputed in backward).
   */
  async backward(output: Tensor, gradient?: Tensor): Promise<void> {
    await output.backward(gradient);
    while (this.cuts.length > 0) {
      const cut = this.cuts.pop()!;
      try {
        const gradients = cut.outputs.map((leaf) => leaf.grad ?? noGrad(() => leaf.device.zeros(leaf.shape)));
        const inputGradients = await cut.backward(gradients);
        const roots: Tensor[] = [];
        const seeds: Tensor[] = [];
        cut.inputs.forEach((input, i) => {
          const gradient = inputGradients[i];
          if (!gradient || !input.requiresGrad) return;
          roots.push(input);
          seeds.push(gradient.retainedHandle());
        });
        for (const gradient of new Set([...gradients, ...inputGradients])) gradient?.dispose();
        if (roots.length > 0) runBackward(roots, seeds);
      } finally {
        freeCut(cut);
      }
    }
  }

  /** Frees every cut still on the tape (after backward there are none). */
  dispose(): void {
    for (const cut of this.cuts) freeCut(cut);
    this.cuts = [];
  }
}

function freeCut(cut: Cut): void {
  for (const leaf of cut.outputs) {
    leaf.grad?.dispose();
    leaf.grad = null;
    leaf.dispose();
  }
  for (const input of cut.inputs) input.dispose();
}
