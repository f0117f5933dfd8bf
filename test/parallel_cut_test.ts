// cut(): gradients that cross cuts equal those of the same computation without
// cuts (the runtime's own autograd is the reference), cuts whose inputs share a graph are walked in
// one pass, a cut's adjoint is applied to the gradient that reaches it, and nothing leaks.

import assert from "node:assert/strict";
import { ops, type Tensor } from "../mod.ts";
import { cut } from "../src/parallel/cut.ts";
import { assertClose, cpuDevice, randomValues, readF32 } from "./helpers.ts";

const identity = ([x]: Tensor[]) => Promise.resolve([x]);

Deno.test("cut: a chain of cuts gives the gradients of the uncut graph", async () => {
  const device = await cpuDevice();
  const before = device.stats().bytes;
  const w1 = device.tensor(randomValues(6 * 5, 1), [6, 5], { requiresGrad: true });
  const w2 = device.tensor(randomValues(5 * 4, 2), [5, 4], { requiresGrad: true });
  const x = device.tensor(randomValues(3 * 6, 3), [3, 6]);
  const forward = (h: Tensor) => ops.tidy(() => ops.silu(ops.matmul(h, w1)));
  const head = (h: Tensor) => ops.tidy(() => ops.mean(ops.mul(ops.matmul(h, w2), ops.matmul(h, w2))));

  const hidden = forward(x);
  const reference = head(hidden);
  await reference.backward();
  const [g1, g2] = [await readF32(w1.grad!), await readF32(w2.grad!)];
  for (const w of [w1, w2]) {
    w.grad!.dispose();
    w.grad = null;
  }
  const h = forward(x);
  // Forward scales by 3 and backward by 3: the adjoint of a linear map, as a collective's would be.
  const scaled = (t: Tensor) => Promise.resolve([ops.scale(t, 3)]);
  const [hCut] = await cut("scale", [h], ([t]) => scaled(t), ([g]) => scaled(g));
  const [hPassed] = await cut("identity", [hCut], identity, identity);
  const unscaled = ops.scale(hPassed, 1 / 3);
  const loss = head(unscaled);
  await loss.backward();
  assertClose(await readF32(w1.grad!), g1, 1e-5, 1e-7, "w1 across two cuts");
  assertClose(await readF32(w2.grad!), g2, 1e-5, 1e-7, "w2 after the cuts");
  for (const t of [hidden, reference, h, hCut, hPassed, unscaled, loss, w1.grad!, w2.grad!, w1, w2, x]) t.dispose();
  assert.equal(device.stats().bytes, before, "every cut, leaf and gradient is freed");
});

Deno.test("cut: inputs of one cut that share a graph go back in one pass; unused outputs get zeros", async () => {
  const device = await cpuDevice();
  const w = device.tensor(randomValues(4 * 6, 4), [4, 6], { requiresGrad: true });
  const x = device.tensor(randomValues(2 * 4, 5), [2, 4]);
  const parts = () => ops.split(ops.matmul(x, w), 3, 1);

  const [a, b, c] = parts();
  const reference = ops.sum(ops.add(ops.mul(a, b), ops.exp(a)));
  await reference.backward();
  const expected = await readF32(w.grad!);
  w.grad!.dispose();
  w.grad = null;
  const [pa, pb, pc] = parts();
  const [ca, cb, cc] = await cut("three", [pa, pb, pc], (xs) => Promise.resolve(xs), (gs) => Promise.resolve(gs));
  const loss = ops.sum(ops.add(ops.mul(ca, cb), ops.exp(ca)));
  await loss.backward();
  assertClose(await readF32(w.grad!), expected, 1e-5, 1e-7, "w through a three-way cut");
  for (const t of [a, b, c, reference, pa, pb, pc, ca, cb, cc, loss, w.grad!, w, x]) t.dispose();
});

Deno.test("cut: a residual that skips a cut gets both paths' gradients, each once", async () => {
  const device = await cpuDevice();
  const w = device.tensor(randomValues(5 * 5, 6), [5, 5], { requiresGrad: true });
  const x = device.tensor(randomValues(2 * 5, 7), [2, 5], { requiresGrad: true });
  const block = (h: Tensor, inner: (t: Tensor) => Tensor) => ops.add(h, inner(ops.silu(ops.matmul(h, w))));

  const reference = ops.sum(block(block(x, (t) => t), (t) => t));
  await reference.backward();
  const [gw, gx] = [await readF32(w.grad!), await readF32(x.grad!)];
  for (const t of [w, x]) {
    t.grad!.dispose();
    t.grad = null;
  }

  // Each block's branch passes through a cut; its residual goes around it.
  const cutBlock = async (h: Tensor) => {
    const [branch] = await cut("branch", [ops.silu(ops.matmul(h, w))], identity, identity);
    return ops.add(h, branch);
  };
  const loss = ops.sum(await cutBlock(await cutBlock(x)));
  await loss.backward();
  assertClose(await readF32(w.grad!), gw, 1e-5, 1e-7, "w");
  assertClose(await readF32(x.grad!), gx, 1e-5, 1e-7, "x");
});

Deno.test("cut: a cut's backward may stop the gradient (null) for an input", async () => {
  const device = await cpuDevice();
  const w = device.tensor([2], [1], { requiresGrad: true });
  const [y] = await cut("stop", [ops.mul(w, w)], identity, () => Promise.resolve([null]));
  const loss = ops.sum(ops.add(y, w));
  await loss.backward();
  assert.deepEqual(await readF32(w.grad!), new Float32Array([1]), "only the path that bypasses the cut");
  for (const t of [loss, w.grad!, w]) t.dispose();
});
