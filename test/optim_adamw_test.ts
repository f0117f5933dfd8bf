// AdamW against an independent Float64 implementation of torch.optim.AdamW's algorithm: several
// steps on 2-D and 1-D parameters, steps where a parameter has no gradient, clipping through
// gradScale, memory that stays flat across steps, and option validation.

import assert from "node:assert/strict";
import type { Device, Tensor } from "../mod.ts";
import { AdamW } from "../src/optim/adamw.ts";
import { clipScale, globalGradNorm } from "../src/optim/clip.ts";
import { assertClose, randomValues, readF32, testBothBackends } from "./helpers.ts";

// ---- the reference: PyTorch's single-tensor AdamW step, written out in Float64 ----

interface Hyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

interface RefState {
  step: number;
  expAvg: Float64Array;
  expAvgSq: Float64Array;
}

/**
 * One torch.optim.AdamW step on one parameter that has a gradient: the state is created on the
 * first gradient, the step counter advances, decoupled decay multiplies the parameter by
 * (1 − lr·wd), the moments are updated, and the bias-corrected step is subtracted.
 */
function referenceAdamWStep(param: Float64Array, grad: Float64Array, state: RefState | undefined, h: Hyper): RefState {
  const s = state ?? { step: 0, expAvg: new Float64Array(param.length), expAvgSq: new Float64Array(param.length) };
  s.step += 1;
  const biasCorrection1 = 1 - h.beta1 ** s.step;
  const biasCorrection2 = 1 - h.beta2 ** s.step;
  for (let i = 0; i < param.length; i++) {
    param[i] *= 1 - h.lr * h.weightDecay;
    s.expAvg[i] = h.beta1 * s.expAvg[i] + (1 - h.beta1) * grad[i];
    s.expAvgSq[i] = h.beta2 * s.expAvgSq[i] + (1 - h.beta2) * grad[i] * grad[i];
    const denom = Math.sqrt(s.expAvgSq[i]) / Math.sqrt(biasCorrection2) + h.eps;
    param[i] -= (h.lr / biasCorrection1) * (s.expAvg[i] / denom);
  }
  return s;
}

// The defaults the optimizer promises for LLM training; decay only on parameters with ≥ 2 dims.
const DEFAULTS = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };

interface Case {
  name: string;
  shape: number[];
  tensor: Tensor;
  reference: Float64Array;
  state?: RefState;
}

function makeCases(device: Device): Case[] {
  const specs: [string, number[]][] = [["model.layers.0.mlp.down_proj.weight", [4, 3]], ["model.norm.weight", [3]], [
    "model.embed_tokens.weight",
    [5, 2],
  ]];
  return specs.map(([name, shape], k) => {
    const values = randomValues(shape.reduce((a, b) => a * b, 1), 100 + k);
    return { name, shape, tensor: device.tensor(values, shape, { requiresGrad: true }), reference: Float64Array.from(values) };
  });
}

/** Gradients of differing magnitude per step, so that clipping is active on some steps only. */
function gradValues(c: Case, caseIndex: number, step: number): Float32Array {
  return randomValues(c.tensor.size, 1000 * step + caseIndex, step % 2 === 0 ? 3 : 0.1);
}

// Tolerances: the device keeps parameters and moments in f32, the reference in f64. Each step
// rounds every stored value once (relative 6e-8) and the kernel's arithmetic is f32 (a few ulp),
// so after five steps the parameters agree to well under 1e-6 relative. A semantic slip is far
// larger: a missing bias correction changes the first update tenfold, decay on a 1-D parameter or
// a skipped parameter's step advancing moves values by lr·wd·|p| ≈ 1e-3 or more; gradScale ignored
// changes expAvg by its factor.
const PARAM_TOL = { rtol: 1e-5, atol: 1e-6 };
const MOMENT_TOL = { rtol: 1e-5, atol: 1e-9 };

async function assertMatchesReference(optimizer: AdamW, cases: Case[], what: string): Promise<void> {
  for (const c of cases) {
    const state = optimizer.state(c.name);
    assert.equal(state.step, c.state?.step ?? 0, `${what}: step count of ${c.name}`);
    assertClose(await readF32(c.tensor), c.reference, PARAM_TOL.rtol, PARAM_TOL.atol, `${what}: ${c.name}`);
    const zeros = new Float64Array(c.tensor.size);
    assertClose(
      await readF32(state.expAvg),
      c.state?.expAvg ?? zeros,
      MOMENT_TOL.rtol,
      MOMENT_TOL.atol,
      `${what}: exp_avg of ${c.name}`,
    );
    assertClose(
      await readF32(state.expAvgSq),
      c.state?.expAvgSq ?? zeros,
      MOMENT_TOL.rtol,
      MOMENT_TOL.atol,
      `${what}: exp_avg_sq of ${c.name}`,
    );
  }
}

/** Which parameters get a gradient at each step: the 1-D one skips step 3, the embedding steps 2 and 4. */
const hasGrad = (caseIndex: number, step: number) =>
  !(caseIndex === 1 && step === 3) && !(caseIndex === 2 && (step === 2 || step === 4));

testBothBackends("AdamW: five steps with skipped gradients match torch.optim.AdamW computed in Float64", async (device) => {
  const cases = makeCases(device);
  const optimizer = new AdamW(cases.map((c) => [c.name, c.tensor]));
  const lrs = [0.01, 0.02, 0.015, 0.03, 0.005];
  for (let step = 1; step <= lrs.length; step++) {
    cases.forEach((c, k) => {
      if (!hasGrad(k, step)) return;
      const g = gradValues(c, k, step);
      c.tensor.grad = device.tensor(g, c.shape);
      const weightDecay = c.shape.length >= 2 ? DEFAULTS.weightDecay : 0;
      c.state = referenceAdamWStep(c.reference, Float64Array.from(g), c.state, { ...DEFAULTS, weightDecay, lr: lrs[step - 1] });
    });
    optimizer.step({ lr: lrs[step - 1] });
    const grads = cases.map((c) => c.tensor.grad);
    optimizer.zeroGrad();
    for (const [k, g] of grads.entries()) {
      assert.equal(cases[k].tensor.grad, null, "zeroGrad leaves .grad null");
      if (g) assert.ok(g.isDisposed, "zeroGrad disposes the gradient");
    }
    await assertMatchesReference(optimizer, cases, `step ${step}`);
  }
  assert.deepEqual(cases.map((c) => c.state?.step), [5, 4, 3]);
  optimizer.dispose();
  cases.forEach((c) => c.tensor.dispose());
});

testBothBackends("AdamW: clipping by global norm through gradScale equals the update on scaled gradients", async (device) => {
  const cases = makeCases(device);
  const optimizer = new AdamW(cases.map((c) => [c.name, c.tensor]), { weightDecay: 0.2 });
  const maxNorm = 1;
  const scales: number[] = [];
  for (let step = 1; step <= 3; step++) {
    const grads = cases.map((c, k) => (hasGrad(k, step) ? gradValues(c, k, step) : null));
    cases.forEach((c, k) => (c.tensor.grad = grads[k] && device.tensor(grads[k], c.shape)));
    const norm = await globalGradNorm(cases.map((c) => c.tensor));
    let sumOfSquares = 0;
    for (const g of grads) for (const x of g ?? []) sumOfSquares += x * x;
    assertClose([norm], [Math.sqrt(sumOfSquares)], 1e-5, 0, `step ${step}: global norm`);
    const scale = clipScale(norm, maxNorm);
    scales.push(scale);
    cases.forEach((c, k) => {
      if (!grads[k]) return;
      const scaled = Float64Array.from(grads[k], (x) => x * scale);
      const weightDecay = c.shape.length >= 2 ? 0.2 : 0;
      c.state = referenceAdamWStep(c.reference, scaled, c.state, { ...DEFAULTS, weightDecay, lr: 0.02 });
    });
    optimizer.step({ lr: 0.02, gradScale: scale });
    optimizer.zeroGrad();
    await assertMatchesReference(optimizer, cases, `clipped step ${step}`);
  }
  // The gradients were drawn so that clipping bites on step 2 and not on steps 1 and 3.
  assert.equal(scales[0], 1);
  assert.ok(scales[1] < 0.5, `step 2 scale ${scales[1]} should clip`);
  assert.equal(scales[2], 1);
  optimizer.dispose();
  cases.forEach((c) => c.tensor.dispose());
});

testBothBackends("AdamW: repeated steps keep device memory at the state allocated up front", async (device) => {
  const cases = makeCases(device);
  const before = device.stats();
  const optimizer = new AdamW(cases.map((c) => [c.name, c.tensor]));
  const withState = device.stats();
  const paramBytes = cases.reduce((sum, c) => sum + c.tensor.size * 4, 0);
  assert.equal(withState.tensors, before.tensors + 2 * cases.length, "two moment tensors per parameter");
  assert.ok(
    withState.bytes - before.bytes >= 2 * paramBytes,
    `state holds ${withState.bytes - before.bytes} bytes, under 2 × ${paramBytes}`,
  );
  for (let step = 1; step <= 6; step++) {
    cases.forEach((c, k) => (c.tensor.grad = device.tensor(gradValues(c, k, step), c.shape)));
    optimizer.step({ lr: 0.01, gradScale: clipScale(await globalGradNorm(cases.map((c) => c.tensor)), 1) });
    optimizer.zeroGrad();
    const now = device.stats();
    assert.equal(now.tensors, withState.tensors, `step ${step}: live tensors`);
    assert.equal(now.buffers, withState.buffers, `step ${step}: live buffers`);
    assert.equal(now.bytes, withState.bytes, `step ${step}: live bytes`);
  }
  optimizer.dispose();
  const after = device.stats();
  assert.equal(after.tensors, before.tensors, "dispose() frees the state tensors");
  assert.equal(after.bytes, before.bytes, "dispose() frees the state bytes");
  cases.forEach((c) => c.tensor.dispose());
});

testBothBackends("AdamW: bad options and bad use give errors naming the value", async (device) => {
  const w = device.tensor(randomValues(6, 1), [2, 3], { requiresGrad: true });
  const original = await readF32(w);
  const bias = device.tensor(randomValues(3, 4), [3], { requiresGrad: true });
  const named: [string, Tensor][] = [["w", w], ["b", bias]];
  const before = device.stats();
  const rejects = (fn: () => unknown, name: string, message: RegExp) => assert.throws(fn, { name, message });
  rejects(() => new AdamW(named, { beta1: 1 }), "RangeError", /beta1 must be in \[0, 1\), got 1/);
  rejects(() => new AdamW(named, { beta2: -0.5 }), "RangeError", /beta2 must be in \[0, 1\), got -0.5/);
  rejects(() => new AdamW(named, { eps: 0 }), "RangeError", /eps must be a finite number > 0, got 0/);
  rejects(() => new AdamW(named, { weightDecay: -0.1 }), "RangeError", /weightDecay must be a finite number ≥ 0, got -0.1/);
  rejects(() => new AdamW(named, { weightDecay: NaN }), "RangeError", /weightDecay .* got NaN/);
  rejects(() => new AdamW([["w", w], ["w", w]]), "RangeError", /parameter name "w" appears more than once/);
  rejects(() => new AdamW([]), "RangeError", /empty parameter list/);
  const ids = device.tensor(new Int32Array([1, 2]), [2]);
  rejects(() => new AdamW([["w", w], ["ids", ids]]), "DTypeError", /"ids" must be f32.*got i32/);
  ids.dispose();
  assert.equal(device.stats().tensors, before.tensors, "rejected constructors allocate no state");

  const optimizer = new AdamW(named);
  assert.throws(() => optimizer.step({ lr: -1 }), /lr must be a finite number ≥ 0, got -1/);
  assert.throws(() => optimizer.step({ lr: NaN }), /lr must be a finite number ≥ 0, got NaN/);
  assert.throws(() => optimizer.step({ lr: 0.1, gradScale: Infinity }), /gradScale must be a finite number ≥ 0, got Infinity/);
  assert.throws(() => optimizer.state("model.nope.weight"), /no parameter named "model.nope.weight"/);
  w.grad = device.tensor(randomValues(6, 2), [2, 3]);
  bias.grad = device.tensor(randomValues(3, 3), [1, 3]);
  assert.throws(() => optimizer.step({ lr: 0.1 }), {
    name: "ShapeError",
    message: /gradient of "b" has shape \[1, 3\], the parameter \[3\]/,
  });
  assert.equal(optimizer.state("w").step, 0, "a rejected step does not count");
  assert.deepEqual(await readF32(w), original, "rejected updates leave the parameter as it was");
  optimizer.zeroGrad();
  optimizer.dispose();
  assert.throws(() => optimizer.step({ lr: 0.1 }), /AdamW.step: the optimizer was disposed/);
  w.dispose();
  bias.dispose();
});
