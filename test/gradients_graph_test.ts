// Gradients through whole graphs and the tape's bookkeeping: a two-layer MLP against central finite
// differences (see finite_differences.ts), gradients accumulated over two backward() calls, a tensor
// used twice, and inputs that do not require a gradient.

import assert from "node:assert/strict";
import { ops } from "../mod.ts";
import { assertClose } from "./assertions.ts";
import { randomValues, readF32, testBothBackends } from "./helpers.ts";
import { gradTest, input, seededInputs } from "./finite_differences.ts";

const { normal } = seededInputs(5114);

gradTest({
  name: "two-layer MLP (matmul, add, gelu, crossEntropy)",
  inputs: [
    input([5, 7], normal()),
    input([7, 6], normal(0.5)),
    input([6], normal(0.1)),
    input([6, 4], normal(0.5)),
    input([4], normal(0.1)),
  ],
  fn: ([x, w1, b1, w2, b2]) => {
    const hidden = ops.gelu(ops.add(ops.matmul(x, w1), b1));
    return ops.crossEntropy(ops.add(ops.matmul(hidden, w2), b2), new Int32Array([0, 3, 1, 1, 2]));
  },
});

testBothBackends("grad: accumulates over two backward() calls", async (device) => {
  const xv = randomValues(15, 6200);
  const r1 = randomValues(15, 6201);
  const r2 = randomValues(15, 6202);
  const x = device.tensor(xv, [3, 5], { requiresGrad: true });
  const first = ops.tidy(() => ops.sum(ops.mul(x, device.tensor(r1, [3, 5]))));
  await first.backward();
  assert.ok(x.grad);
  assertClose(await readF32(x.grad), r1, 1e-6, 1e-7, "after the first backward");
  const second = ops.tidy(() => ops.sum(ops.mul(ops.exp(x), device.tensor(r2, [3, 5]))));
  await second.backward();
  const expected = Array.from(xv, (v, i) => r1[i] + Math.exp(v) * r2[i]);
  assertClose(await readF32(x.grad!), expected, 1e-5, 1e-6, "after the second backward");
  x.grad!.dispose();
  x.dispose();
  first.dispose();
  second.dispose();
});

testBothBackends("grad: a tensor used twice (x·x) gets both contributions", async (device) => {
  const xv = randomValues(13, 6300);
  const rv = randomValues(13, 6301);
  const x = device.tensor(xv, [13], { requiresGrad: true });
  const loss = ops.tidy(() => ops.sum(ops.mul(ops.mul(x, x), device.tensor(rv, [13]))));
  await loss.backward();
  assert.ok(x.grad);
  assertClose(await readF32(x.grad), Array.from(xv, (v, i) => 2 * v * rv[i]), 1e-6, 1e-7, "d(x·x)");
  // Disposing .grad resets it (Tensor.grad's documented contract).
  x.grad.dispose();
  // Also through two different paths: x + exp(x) → 1 + exp(x).
  const loss2 = ops.tidy(() => ops.sum(ops.mul(ops.add(x, ops.exp(x)), device.tensor(rv, [13]))));
  await loss2.backward();
  assertClose(await readF32(x.grad!), Array.from(xv, (v, i) => (1 + Math.exp(v)) * rv[i]), 1e-5, 1e-6, "d(x + exp x)");
  x.grad!.dispose();
  x.dispose();
  loss.dispose();
  loss2.dispose();
});

testBothBackends("grad: inputs without requiresGrad get none", async (device) => {
  const a = device.tensor(randomValues(6, 6400), [2, 3], { requiresGrad: true });
  const b = device.tensor(randomValues(6, 6401), [3, 2]);
  const loss = ops.tidy(() => ops.sum(ops.matmul(a, b)));
  await loss.backward();
  assert.equal(b.grad, null);
  assert.ok(a.grad);
  // d sum(a·b)/da[i, k] = Σ_j b[k, j].
  const bv = await readF32(b);
  const expected = Array.from({ length: 6 }, (_, i) => bv[(i % 3) * 2] + bv[(i % 3) * 2 + 1]);
  assertClose(await readF32(a.grad), expected, 1e-6, 1e-7, "d sum(a·b)/da");
  a.grad.dispose();
  for (const t of [a, b, loss]) t.dispose();
});
