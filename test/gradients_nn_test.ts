// Gradients of the neural-network ops (softmax, logSoftmax, rmsNorm, layerNorm, embedding, rope,
// crossEntropy) against central finite differences (see finite_differences.ts).

import { ops } from "../mod.ts";
import { type GradCase, gradTest, input, seededInputs } from "./finite_differences.ts";

const { normal } = seededInputs(5062);

const CASES: GradCase[] = [
  // Row-wise.
  { name: "softmax [3,7]", inputs: [input([3, 7], normal(2))], fn: ([x]) => ops.softmax(x) },
  { name: "softmax [2,1,5]", inputs: [input([2, 1, 5], normal())], fn: ([x]) => ops.softmax(x) },
  { name: "logSoftmax [2,3,5]", inputs: [input([2, 3, 5], normal(2))], fn: ([x]) => ops.logSoftmax(x) },
  {
    name: "rmsNorm x and weight [3,7]",
    inputs: [input([3, 7], normal()), input([7], normal())],
    fn: ([x, w]) => ops.rmsNorm(x, w),
  },
  {
    name: "rmsNorm [2,2,5] eps 0.1",
    inputs: [input([2, 2, 5], normal()), input([5], normal())],
    fn: ([x, w]) => ops.rmsNorm(x, w, 0.1),
  },
  {
    name: "layerNorm x, weight, bias [3,7]",
    inputs: [input([3, 7], normal()), input([7], normal()), input([7], normal())],
    fn: ([x, w, b]) => ops.layerNorm(x, w, b),
  },
  {
    name: "layerNorm [2,2,5] eps 0.1",
    inputs: [input([2, 2, 5], normal(2)), input([5], normal()), input([5], normal())],
    fn: ([x, w, b]) => ops.layerNorm(x, w, b, 0.1),
  },
  // Embedding, rotary embedding and cross-entropy.
  {
    name: "embedding with repeated Int32Array ids",
    inputs: [input([5, 3], normal())],
    fn: ([w]) => ops.embedding(w, new Int32Array([1, 3, 1, 4, 1, 0, 3])),
  },
  {
    name: "embedding with a [2, 3] i32 tensor of ids",
    inputs: [input([4, 5], normal())],
    fn: ([w], device) => ops.embedding(w, device.tensor(new Int32Array([2, 2, 0, 3, 2, 0]), [2, 3])),
  },
  { name: "rope [1,2,5,4] offset 3", inputs: [input([1, 2, 5, 4], normal())], fn: ([x]) => ops.rope(x, { positionOffset: 3 }) },
  { name: "rope [2,1,3,6] theta 100", inputs: [input([2, 1, 3, 6], normal())], fn: ([x]) => ops.rope(x, { theta: 100 }) },
  {
    name: "crossEntropy Int32Array targets [4,7]",
    inputs: [input([4, 7], normal(2))],
    fn: ([x]) => ops.crossEntropy(x, new Int32Array([0, 6, 3, 3])),
  },
  {
    name: "crossEntropy i32 tensor targets [5,3]",
    inputs: [input([5, 3], normal())],
    fn: ([x], device) => ops.crossEntropy(x, device.tensor(new Int32Array([2, 0, 1, 1, 2]), [5])),
  },
];

for (const c of CASES) gradTest(c);
