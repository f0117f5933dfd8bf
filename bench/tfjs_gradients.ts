// Gradient functions for the TF.js kernels the benchmark's Phi-3 model runs.
//
// @tensorflow/tfjs-core ships its gradient functions only as separate ES modules
// (dist/register_all_gradients.js) whose extensionless imports Deno cannot load, and its Node bundle
// registers none, so tf.variableGrads fails with "gradient function not found". shardlab depends
// on tfjs-core and the WebGPU backend alone (not the @tensorflow/tfjs union package, which bundles
// them), so the benchmark registers the gradients it needs here, through TF.js's public
// registerGradient. Each is the textbook derivative, composed of TF.js ops as TF.js's own are.

import type { NamedAttrMap, Tensor } from "@tensorflow/tfjs-core";
import { tf, type Tfjs } from "./tfjs.ts";

type GradFunc = (dy: Tensor | Tensor[], saved: Tensor[], attrs: NamedAttrMap) => Record<string, () => Tensor>;

interface Gradient {
  kernelName: string;
  inputsToSave?: string[];
  saveAllInputs?: boolean;
  outputsToSave?: boolean[];
  gradFunc: GradFunc;
}

/** Sums dy over the axes its shape was broadcast along, back to shape. */
function unbroadcast(dy: Tensor, shape: number[]): Tensor {
  const axes = tf.backend_util.getReductionAxes(shape, dy.shape);
  return axes.length ? tf.reshape(tf.sum(dy, axes), shape) : dy;
}

/** dy of a reduction over axes of x, broadcast back to x's shape (and divided by count for a mean). */
function unreduce(dy: Tensor, x: Tensor, axis: number | number[], count: (axes: number[]) => number): Tensor {
  const axes = tf.util.parseAxisParam(axis, x.shape);
  const kept = x.shape.map((size, i) => (axes.includes(i) ? 1 : size));
  const spread = tf.broadcastTo(tf.reshape(dy, kept), x.shape);
  const n = count(axes);
  return n === 1 ? spread : tf.div(spread, n);
}

const GRADIENTS: Gradient[] = [
  {
    kernelName: "Add",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => ({ a: () => unbroadcast(dy as Tensor, a.shape), b: () => unbroadcast(dy as Tensor, b.shape) }),
  },
  {
    kernelName: "Sub",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => ({
      a: () => unbroadcast(dy as Tensor, a.shape),
      b: () => tf.neg(unbroadcast(dy as Tensor, b.shape)),
    }),
  },
  {
    kernelName: "Multiply",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => ({
      a: () => unbroadcast(tf.mul(dy as Tensor, b), a.shape),
      b: () => unbroadcast(tf.mul(dy as Tensor, a), b.shape),
    }),
  },
  { kernelName: "Neg", gradFunc: (dy) => ({ x: () => tf.neg(dy as Tensor) }) },
  { kernelName: "Square", inputsToSave: ["x"], gradFunc: (dy, [x]) => ({ x: () => tf.mul(dy as Tensor, tf.mul(x, 2)) }) },
  {
    // y = x^(−1/2): dy/dx = −y³/2.
    kernelName: "Rsqrt",
    outputsToSave: [true],
    gradFunc: (dy, [y]) => ({ x: () => tf.mul(dy as Tensor, tf.mul(tf.mul(y, tf.square(y)), -0.5)) }),
  },
  {
    kernelName: "Sigmoid",
    outputsToSave: [true],
    gradFunc: (dy, [y]) => ({ x: () => tf.mul(dy as Tensor, tf.mul(y, tf.sub(1, y))) }),
  },
  {
    // dx = y·(dy − Σ dy·y) along the softmax axis.
    kernelName: "Softmax",
    outputsToSave: [true],
    gradFunc: (dy, [y], attrs) => ({
      logits: () => {
        const weighted = tf.mul(dy as Tensor, y);
        return tf.sub(weighted, tf.mul(tf.sum(weighted, attrs.dim as number[], true), y));
      },
    }),
  },
  {
    kernelName: "Sum",
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => ({ x: () => unreduce(dy as Tensor, x, attrs.axis as number[], () => 1) }),
  },
  {
    kernelName: "Mean",
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => ({
      x: () => unreduce(dy as Tensor, x, attrs.axis as number[], (axes) => axes.reduce((n, axis) => n * x.shape[axis], 1)),
    }),
  },
  {
    // C = op(A)·op(B) over equal batch axes; the four transpose cases of dA and dB.
    kernelName: "BatchMatMul",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b], attrs) => {
      const g = dy as Tensor;
      const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
      if (!transposeA && !transposeB) return { a: () => tf.matMul(g, b, false, true), b: () => tf.matMul(a, g, true, false) };
      if (!transposeA && transposeB) return { a: () => tf.matMul(g, b, false, false), b: () => tf.matMul(g, a, true, false) };
      if (transposeA && !transposeB) return { a: () => tf.matMul(b, g, false, true), b: () => tf.matMul(a, g, false, false) };
      return { a: () => tf.matMul(b, g, true, true), b: () => tf.matMul(g, a, true, true) };
    },
  },
  {
    // Rows picked from x along axis 0: their gradients summed back into the rows they came from.
    kernelName: "GatherV2",
    inputsToSave: ["x", "indices"],
    gradFunc: (dy, [x, indices], attrs) => {
      if (attrs.axis !== 0 || attrs.batchDims !== 0 || indices.rank !== 1) {
        throw new RangeError(
          `GatherV2 gradient: only axis 0 with 1-D indices, got axis ${attrs.axis}, indices rank ${indices.rank}`,
        );
      }
      return { x: () => tf.unsortedSegmentSum(dy as Tensor, indices as Tensor<Tfjs.Rank.R1>, x.shape[0]) };
    },
  },
  { kernelName: "Reshape", inputsToSave: ["x"], gradFunc: (dy, [x]) => ({ x: () => tf.reshape(dy as Tensor, x.shape) }) },
  {
    kernelName: "Transpose",
    gradFunc: (dy, _saved, attrs) => ({
      x: () => tf.transpose(dy as Tensor, tf.backend_util.getUndoAxesPermutation(attrs.perm as number[])),
    }),
  },
  {
    kernelName: "SplitV",
    gradFunc: (dy, _saved, attrs) => ({ x: () => tf.concat(dy as Tensor[], attrs.axis as number) }),
  },
  {
    kernelName: "Concat",
    saveAllInputs: true,
    gradFunc: (dy, saved, attrs) => {
      const [axis] = tf.util.parseAxisParam(attrs.axis as number, saved[0].shape);
      const parts = tf.split(dy as Tensor, saved.map((t) => t.shape[axis]), axis);
      return Object.fromEntries(parts.map((part, i) => [String(i), () => part]));
    },
  },
  {
    // Tiling (broadcastTo) of size-1 axes: the copies' gradients summed back onto the one row.
    kernelName: "Tile",
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => {
      const reps = attrs.reps as number[];
      const tiled = reps.flatMap((r, axis) => (r > 1 ? [axis] : []));
      if (tiled.some((axis) => x.shape[axis] !== 1)) {
        throw new RangeError(`Tile gradient: only axes of size 1 may be tiled, got shape [${x.shape}] with reps [${reps}]`);
      }
      return { x: () => (tiled.length ? tf.sum(dy as Tensor, tiled, true) : (dy as Tensor)) };
    },
  },
];

let registered = false;

/** Registers the gradients once per process. */
export function registerTfjsGradients(): void {
  if (registered) return;
  registered = true;
  for (const gradient of GRADIENTS) tf.registerGradient(gradient);
}
