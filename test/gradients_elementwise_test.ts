// Gradients of the elementwise ops against central finite differences (see finite_differences.ts):
// broadcasting arithmetic, every unary op, and the f16 round trip of cast, plus the exact gradient
// the round trip passes through.

import assert from "node:assert/strict";
import { ops } from "../mod.ts";
import { randomValues, readF32, testBothBackends } from "./helpers.ts";
import { type GradCase, gradTest, input, seededInputs } from "./finite_differences.ts";
import { f16Round } from "./references.ts";

const { normal, awayFromZero } = seededInputs(5016);

const CASES: GradCase[] = [
  // Broadcasting arithmetic.
  { name: "add same shape [3,4]", inputs: [input([3, 4], normal()), input([3, 4], normal())], fn: ([a, b]) => ops.add(a, b) },
  { name: "add [3,4]+[4]", inputs: [input([3, 4], normal()), input([4], normal())], fn: ([a, b]) => ops.add(a, b) },
  { name: "add [2,1,3]+[4,1]", inputs: [input([2, 1, 3], normal()), input([4, 1], normal())], fn: ([a, b]) => ops.add(a, b) },
  { name: "add []+[5]", inputs: [input([], normal()), input([5], normal())], fn: ([a, b]) => ops.add(a, b) },
  { name: "sub [3,1]-[1,4]", inputs: [input([3, 1], normal()), input([1, 4], normal())], fn: ([a, b]) => ops.sub(a, b) },
  { name: "sub [4]-[2,3,4]", inputs: [input([4], normal()), input([2, 3, 4], normal())], fn: ([a, b]) => ops.sub(a, b) },
  { name: "mul [2,3,4]*[3,1]", inputs: [input([2, 3, 4], normal()), input([3, 1], normal())], fn: ([a, b]) => ops.mul(a, b) },
  { name: "mul [5]*[5]", inputs: [input([5], normal()), input([5], normal())], fn: ([a, b]) => ops.mul(a, b) },
  {
    name: "div [3,4]/[4]",
    inputs: [input([3, 4], normal()), input([4], awayFromZero(0.7, 2))],
    fn: ([a, b]) => ops.div(a, b),
    h: 5e-3,
  },
  {
    name: "div [4]/[3,4]",
    inputs: [input([4], normal()), input([3, 4], awayFromZero(0.7, 2))],
    fn: ([a, b]) => ops.div(a, b),
    h: 5e-3,
  },
  // Unary.
  { name: "scale", inputs: [input([3, 5], normal())], fn: ([x]) => ops.scale(x, -1.7) },
  { name: "neg", inputs: [input([3, 5], normal())], fn: ([x]) => ops.neg(x) },
  { name: "exp", inputs: [input([3, 5], normal())], fn: ([x]) => ops.exp(x) },
  { name: "log", inputs: [input([3, 5], awayFromZero(0.5, 2.5, false))], fn: ([x]) => ops.log(x), h: 5e-3 },
  { name: "sqrt", inputs: [input([3, 5], awayFromZero(0.5, 3, false))], fn: ([x]) => ops.sqrt(x), h: 5e-3 },
  { name: "relu", inputs: [input([3, 5], awayFromZero(0.05, 2))], fn: ([x]) => ops.relu(x) },
  { name: "silu", inputs: [input([3, 5], normal(2))], fn: ([x]) => ops.silu(x) },
  { name: "gelu", inputs: [input([3, 5], normal(2))], fn: ([x]) => ops.gelu(x) },
  // The round trip is the identity up to f16 rounding, so a wide step sees its slope through the
  // quantization; the steps are off by up to one f16 ulp / 2h, hence the wider tolerance.
  {
    name: "cast f32 → f16 → f32",
    inputs: [input([3, 5], normal())],
    fn: ([x]) => ops.cast(ops.cast(x, "f16"), "f32"),
    h: 0.25,
    tolerance: [2e-2, 2e-3],
  },
];

for (const c of CASES) gradTest(c);

testBothBackends("grad: cast f32 → f16 → f32 passes the f16-rounded gradient through", async (device) => {
  const x = device.tensor(randomValues(12, 6100), [3, 4], { requiresGrad: true });
  const rValues = randomValues(12, 6101, 3);
  const loss = ops.tidy(() => ops.sum(ops.mul(ops.cast(ops.cast(x, "f16"), "f32"), device.tensor(rValues, [3, 4]))));
  await loss.backward();
  assert.ok(x.grad);
  const got = await readF32(x.grad);
  for (let i = 0; i < 12; i++) assert.equal(got[i], f16Round(rValues[i]), `element ${i}`);
  x.grad.dispose();
  x.dispose();
  loss.dispose();
});
