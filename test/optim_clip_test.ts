// Gradient clipping: the global gradient norm on the device against a host computation in Float64,
// with parameters lacking a gradient left out and every intermediate freed; clipScale against
// clip_grad_norm_'s formula; and its validation.

import assert from "node:assert/strict";
import { clipScale, globalGradNorm } from "../src/optim/clip.ts";
import { assertClose, randomValues, testBothBackends } from "./helpers.ts";

testBothBackends("globalGradNorm: sqrt of the sum of squares over the gradients that exist, one value", async (device) => {
  const shapes = [[7, 5], [5], [3, 4, 2], [6]];
  const params = shapes.map((shape, k) =>
    device.tensor(randomValues(shape.reduce((a, b) => a * b, 1), 10 + k), shape, { requiresGrad: true })
  );
  const grads = shapes.map((shape, k) => (k === 1 ? null : randomValues(shape.reduce((a, b) => a * b, 1), 20 + k, k + 1)));
  params.forEach((p, k) => (p.grad = grads[k] && device.tensor(grads[k], shapes[k])));
  let sumOfSquares = 0;
  for (const g of grads) for (const x of g ?? []) sumOfSquares += x * x;

  const before = device.stats();
  const norm = await globalGradNorm(params);
  const after = device.stats();
  // f32 squares summed on the device: relative error of a few 1e-7 over 65 terms.
  assertClose([norm], [Math.sqrt(sumOfSquares)], 1e-5, 0, "global norm");
  assert.equal(after.tensors, before.tensors, "intermediate tensors freed");
  assert.equal(after.bytes, before.bytes, "intermediate bytes freed");

  params.forEach((p) => p.grad?.dispose());
  params.forEach((p) => (p.grad = null));
  assert.equal(await globalGradNorm(params), 0, "no gradients, norm 0");
  params.forEach((p) => p.dispose());
});

Deno.test("clipScale: min(1, maxNorm / (norm + 1e-6)) as in clip_grad_norm_", () => {
  assert.equal(clipScale(10, 1), 1 / (10 + 1e-6));
  assert.equal(clipScale(4, 2), 2 / 4.000001);
  assert.equal(clipScale(0.5, 1), 1);
  assert.equal(clipScale(0, 1), 1);
  // Just above maxNorm the 1e-6 keeps the scale at 1 minus a hair, never above 1.
  assert.ok(clipScale(1, 1) < 1 && clipScale(1, 1) > 1 - 1e-5);
});

Deno.test("clipScale: bad arguments name the value", () => {
  assert.throws(() => clipScale(1, 0), { name: "RangeError", message: /maxNorm must be a finite number > 0, got 0/ });
  assert.throws(() => clipScale(1, -2), { name: "RangeError", message: /maxNorm .* got -2/ });
  assert.throws(() => clipScale(NaN, 1), { name: "RangeError", message: /norm must be a finite number ≥ 0, got NaN/ });
  assert.throws(() => clipScale(Infinity, 1), { name: "RangeError", message: /got Infinity \(the gradients hold Inf or NaN\)/ });
});
