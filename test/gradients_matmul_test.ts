// Gradients of ops.matmul against central finite differences (see finite_differences.ts): every
// transpose combination, and batches whose batch axes broadcast.

import { ops } from "../mod.ts";
import { type GradCase, gradTest, input, seededInputs } from "./finite_differences.ts";

const { normal } = seededInputs(5000);

const CASES: GradCase[] = [];
for (const transA of [false, true]) {
  for (const transB of [false, true]) {
    const [M, K, N] = [3, 4, 5];
    CASES.push({
      name: `matmul transA=${transA} transB=${transB}`,
      inputs: [input(transA ? [K, M] : [M, K], normal()), input(transB ? [N, K] : [K, N], normal())],
      fn: ([a, b]) => ops.matmul(a, b, { transA, transB }),
    });
  }
}
CASES.push(
  {
    name: "matmul batched, batch axes broadcast [2,1,3,4]×[3,4,2]",
    inputs: [input([2, 1, 3, 4], normal()), input([3, 4, 2], normal())],
    fn: ([a, b]) => ops.matmul(a, b),
  },
  {
    name: "matmul batched, shared b [2,3,4]×[4,5]",
    inputs: [input([2, 3, 4], normal()), input([4, 5], normal())],
    fn: ([a, b]) => ops.matmul(a, b),
  },
  {
    name: "matmul batched, shared a [3,4]×[2,4,5]",
    inputs: [input([3, 4], normal()), input([2, 4, 5], normal())],
    fn: ([a, b]) => ops.matmul(a, b),
  },
  {
    name: "matmul batched transA transB [2,1,4,3]ᵀ×[3,5,4]ᵀ",
    inputs: [input([2, 1, 4, 3], normal()), input([3, 5, 4], normal())],
    fn: ([a, b]) => ops.matmul(a, b, { transA: true, transB: true }),
  },
);

for (const c of CASES) gradTest(c);
