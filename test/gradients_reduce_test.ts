// Gradients of sum, mean and max against central finite differences (see finite_differences.ts)
// over every kind of axis, and max's split of the gradient among tied maxima.

import assert from "node:assert/strict";
import { ops } from "../mod.ts";
import { assertClose } from "./assertions.ts";
import { readF32, testBothBackends } from "./helpers.ts";
import { type GradCase, gradTest, input, seededInputs } from "./finite_differences.ts";

const { normal, distinct } = seededInputs(5044);

const REDUCE_AXES: [number | undefined, boolean][] = [[undefined, false], [undefined, true], [0, true], [1, false], [-1, true], [
  2,
  false,
]];
const CASES: GradCase[] = [];
for (const op of ["sum", "mean", "max"] as const) {
  for (const [axis, keepDims] of REDUCE_AXES) {
    CASES.push({
      name: `${op} [3,4,5] axis ${axis} keepDims ${keepDims}`,
      inputs: [input([3, 4, 5], op === "max" ? distinct(0.05) : normal())],
      fn: ([x]) => ops[op](x, axis, keepDims),
      h: op === "max" ? 5e-3 : 1e-2,
    });
  }
}

for (const c of CASES) gradTest(c);

testBothBackends("grad: max shares the gradient equally among tied maxima", async (device) => {
  const x = device.tensor([1, 3, 3, 2, 5, 5, 5, 0], [2, 4], { requiresGrad: true });
  const r = [0.7, -1.3];
  const loss = ops.tidy(() => ops.sum(ops.mul(ops.max(x, 1), device.tensor(r, [2]))));
  await loss.backward();
  assert.ok(x.grad);
  assertClose(await readF32(x.grad), [0, 0.35, 0.35, 0, -1.3 / 3, -1.3 / 3, -1.3 / 3, 0], 1e-6, 1e-7, "max ties");
  x.grad.dispose();
  x.dispose();
  loss.dispose();
});
