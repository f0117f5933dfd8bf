// Reverse-mode autograd: a graph of GradNodes built as ops run, walked backwards by backward().
//
// Every tensor that requires a gradient has a node. A leaf node accumulates into its tensor's
// `.grad`; an op node holds the op's backward function and the tensors it saved. Saved tensors are
// private handles on the same memory, so a user may dispose the tensors they came from. A node is
// reference-counted (its own tensor plus every node that consumes it) and frees what it saved when
// the count reaches zero, or when backward() has run through it (PyTorch's retain_graph=False).
//
// A node's backward may also be asynchronous (recordAsyncOp): a collective between ranks, whose
// adjoint is another collective. The pass then waits for it at its place in the topological order,
// so every gradient still flows through the graph exactly once; a graph without such nodes is
// walked to the end synchronously.

import { DisposedError } from "./errors.ts";
import type { Tensor } from "./tensor.ts";

export type BackwardFn = (grad: Tensor, saved: Tensor[]) => (Tensor | null)[];
export type AsyncBackwardFn = (grad: Tensor, saved: Tensor[]) => Promise<(Tensor | null)[]>;

/** How many noGrad() calls are running; gradients are recorded when none is. */
let noGradDepth = 0;

export function isGradEnabled(): boolean {
  return noGradDepth === 0;
}

/**
 * Runs fn without recording gradients (like torch.no_grad). When fn returns a promise, gradients
 * stay off until it settles (across its awaits, as tidy's scopes do: one flow of tensor work per
 * thread at a time) and noGrad returns a promise of the same value.
 */
export function noGrad<T>(fn: () => T): T {
  noGradDepth++;
  let result: T;
  try {
    result = fn();
  } catch (error) {
    noGradDepth--;
    throw error;
  }
  if (!(result instanceof Promise)) {
    noGradDepth--;
    return result;
  }
  return result.finally(() => noGradDepth--) as T;
}

export class GradNode {
  refs = 1;
  freed = false;

  constructor(
    readonly name: string,
    readonly inputs: (GradNode | null)[],
    private backwardFn: BackwardFn | AsyncBackwardFn | null,
    private saved: Tensor[],
    /** Set for leaves: the tensor whose .grad receives the gradient. */
    readonly leaf: Tensor | null,
    private readonly isAsync = false,
  ) {
    for (const input of inputs) if (input) input.refs++;
  }

  /** The gradient for each input (null where an input needs none), or a promise of them for an async node. */
  apply(grad: Tensor): (Tensor | null)[] | Promise<(Tensor | null)[]> {
    if (!this.backwardFn) {
      throw new DisposedError(`${this.name}: backward through a graph that was already freed (call backward() once per forward)`);
    }
    if (this.isAsync) return (this.backwardFn as AsyncBackwardFn)(grad, this.saved);
    return noGrad(() => (this.backwardFn as BackwardFn)(grad, this.saved));
  }

  /** Frees what this node saved; its inputs stay referenced until the node itself is released. */
  freeSaved(): void {
    for (const t of this.saved) t.dispose();
    this.saved = [];
    this.backwardFn = null;
    this.freed = true;
  }

  release(): void {
    if (--this.refs > 0) return;
    this.freeSaved();
    for (const input of this.inputs) input?.release();
  }
}

/**
 * Records `out` as produced by an op from `inputs`, when gradients are on and an input needs one.
 * `save` lists tensors the backward needs; they are retained until the node is freed.
 */
export function recordOp(
  name: string,
  out: Tensor,
  inputs: readonly Tensor[],
  save: readonly Tensor[],
  backward: BackwardFn,
): Tensor {
  if (!isGradEnabled() || !inputs.some((t) => t.requiresGrad)) return out;
  const saved = save.map((t) => t.retainedHandle());
  out.setGradNode(new GradNode(name, inputs.map((t) => t.gradNode()), backward, saved, null));
  return out;
}

/**
 * Records `out` as produced from `inputs` by a step whose backward is asynchronous, when gradients
 * are on; `save` lists tensors the backward is handed again (retained until the node is freed). Unlike recordOp it records even when no input needs a gradient: the backward itself may
 * produce gradients elsewhere (a ZeRO-3 block recomputed in backward fills its parameters' gradients).
 */
export function recordAsyncOp(
  name: string,
  out: Tensor,
  inputs: readonly Tensor[],
  save: readonly Tensor[],
  backward: AsyncBackwardFn,
): Tensor {
  if (!isGradEnabled()) return out;
  const saved = save.map((t) => t.retainedHandle());
  out.setGradNode(new GradNode(name, inputs.map((t) => t.gradNode()), backward, saved, null, true));
  return out;
}

/**
 * Runs the backward pass from `root` seeded with `seed` (which the pass takes over); gradients
 * accumulate into the leaves' .grad. The root must require grad (Tensor.backward checks).
 */
export async function runBackward(root: Tensor, seed: Tensor): Promise<void> {
  const order = topologicalOrder(root.gradNode()!);
  const grads = new Map<GradNode, Tensor>([[order[0], seed]]);
  for (const node of order) {
    const grad = grads.get(node);
    if (!grad) continue;
    grads.delete(node);
    if (node.leaf) {
      node.leaf.accumulateGrad(grad);
      continue;
    }
    let inputGrads: (Tensor | null)[];
    try {
      const applied = node.apply(grad);
      inputGrads = applied instanceof Promise ? await applied : applied;
    } catch (error) {
      // The pending gradients belong to this pass alone: free them before giving up.
      grad.dispose();
      for (const pending of grads.values()) pending.dispose();
      throw error;
    }
    // A backward may pass its incoming gradient through, or hand one tensor to several inputs:
    // give each input its own handle so that each can be freed on its own.
    const handedOut = new Set<Tensor>();
    if (!inputGrads.includes(grad)) grad.dispose();
    node.inputs.forEach((input, i) => {
      let g = inputGrads[i];
      if (g && handedOut.has(g)) g = g.retainedHandle();
      if (g) handedOut.add(g);
      if (!input || !g) {
        g?.dispose();
        return;
      }
      const previous = grads.get(input);
      if (!previous) {
        grads.set(input, g);
        return;
      }
      grads.set(input, noGrad(() => previous.add(g)));
      previous.dispose();
      g.dispose();
    });
  }
  for (const node of order) if (!node.leaf) node.freeSaved();
}

/** Nodes reachable from root, each before every node it consumes (root first). */
function topologicalOrder(root: GradNode): GradNode[] {
  const visited = new Set<GradNode>([root]);
  const postorder: GradNode[] = [];
  const stack: [GradNode, number][] = [[root, 0]];
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [node, next] = top;
    if (next < node.inputs.length) {
      top[1]++;
      const input = node.inputs[next];
      if (input && !visited.has(input)) {
        visited.add(input);
        stack.push([input, 0]);
      }
    } else {
      stack.pop();
      postorder.push(node);
    }
  }
  return postorder.reverse();
}
