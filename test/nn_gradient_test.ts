// The whole model's gradients against central finite differences of its loss, on the CPU device.
//
// As in gradients_test.ts, the analytic gradients come from loss.backward(), and the finite
// differences (L(θ + h·e_i) − L(θ − h·e_i)) / 2h run the model in f32 on the device, with only the
// last step, the mean cross-entropy of the read-back logits, done in doubles on the host so that
// f32 rounding of the scalar loss stays out of the quotient; the quotients at h and h/2 are
// combined by Richardson extrapolation. Every parameter is checked at 8 elements spread over it (all 8 gains
// of each norm).

import assert from "node:assert/strict";
import { type Device, ops } from "../mod.ts";
import type { Phi3Config } from "../src/nn/config.ts";
import type { Parameter, ParameterFactory } from "../src/nn/parameter.ts";
import { Phi3ForCausalLM } from "../src/nn/phi3.ts";
import { assertClose, cpuDevice, randomValues, readF32 } from "./helpers.ts";

const MICRO: Phi3Config = {
  vocabSize: 11,
  hiddenSize: 8,
  numLayers: 2,
  numHeads: 2,
  numKvHeads: 1,
  intermediateSize: 12,
  maxSeqLen: 8,
  ropeTheta: 100,
  rmsNormEps: 1e-5,
};
const [B, T] = [2, 6];
// Every token appears, so every embedding row has a gradient.
const IDS = Int32Array.from({ length: B * T }, (_, i) => (i * 4) % MICRO.vocabSize);
const TARGETS = Int32Array.from({ length: B * T }, (_, i) => (i * 3 + 2) % MICRO.vocabSize);
const CHECKS_PER_PARAMETER = 8;
const H = 1e-2;

// The finite differences carry two errors. f32 rounding of the logits (≈ 1e-7 of the loss) over
// the step: ≈ 1e-7 / h · 4/3 ≈ 1.3e-5 absolute (the quotient at h/2 dominates). Truncation: the
// plain central difference at h = 1e-2 is off by up to 0.3% on the first layer's norm gains
// (attention softmax curvature); the extrapolation takes that to ≈ 5e-4 relative at worst. The
// observed worst excesses are 8e-5 on a gradient of 0.17 and 1.2e-5 on one of 0.007, so these
// tolerances leave a margin of 4 to 6 and still fail a 1% error on any gradient above 5e-3.
const TOLERANCE: [number, number] = [3e-3, 3e-5];

/** Matrices N(0, 0.3²) and norm gains 1 + N(0, 0.2²): large enough that every path matters. */
function spreadFactory(device: Device): ParameterFactory {
  let seed = 900;
  return (_name, shape, init) => {
    const values = randomValues(shape.reduce((a, b) => a * b, 1), seed++, init === "ones" ? 0.2 : 0.3);
    if (init === "ones") { for (let i = 0; i < values.length; i++) values[i] += 1; }
    return device.tensor(values, shape, { requiresGrad: true });
  };
}

/** The mean cross-entropy of the model's f32 logits, in doubles on the host. */
async function hostLoss(model: Phi3ForCausalLM, device: Device): Promise<number> {
  const logits = await ops.noGrad(() => ops.tidy(() => model.forward(device.tensor(IDS, [B, T]))));
  const values = await readF32(logits);
  logits.dispose();
  const V = MICRO.vocabSize;
  let total = 0;
  for (let r = 0; r < B * T; r++) {
    const row = values.subarray(r * V, (r + 1) * V);
    const max = Math.max(...row);
    let sum = 0;
    for (const z of row) sum += Math.exp(z - max);
    total += max + Math.log(sum) - row[TARGETS[r]];
  }
  return total / (B * T);
}

/** Elements to check: evenly spread, offset so that they do not all fall in one column. */
function checkedIndices(size: number): number[] {
  const count = Math.min(size, CHECKS_PER_PARAMETER);
  return Array.from({ length: count }, (_, k) => Math.floor(((k + 0.37) * size) / count));
}

/**
 * dL/dθ_i by central differences at h and h/2 combined by Richardson extrapolation, which cancels
 * the h² term: O(h⁴) remains. Each quotient divides by the step actually taken in f32.
 */
async function finiteDifference(
  model: Phi3ForCausalLM,
  device: Device,
  p: Parameter,
  base: Float32Array,
  i: number,
): Promise<number> {
  const original = p.tensor;
  const lossAt = async (value: number) => {
    const shifted = base.slice();
    shifted[i] = value;
    p.value = device.tensor(shifted, p.shape);
    const loss = await hostLoss(model, device);
    p.value.dispose();
    p.value = original;
    return loss;
  };
  const central = async (h: number) => {
    const [plus, minus] = [Math.fround(base[i] + h), Math.fround(base[i] - h)];
    return ((await lossAt(plus)) - (await lossAt(minus))) / (plus - minus);
  };
  return (4 * (await central(H / 2)) - (await central(H))) / 3;
}

Deno.test("nn gradients: every parameter of a Phi-3 model matches central finite differences", async () => {
  const device = await cpuDevice();
  const model = new Phi3ForCausalLM(device, MICRO, { parameters: spreadFactory(device) });
  const loss = await ops.tidy(() => model.loss(device.tensor(IDS, [B, T]), device.tensor(TARGETS, [B, T])));
  const deviceLoss = (await loss.read())[0];
  await loss.backward();
  loss.dispose();
  assertClose([deviceLoss], [await hostLoss(model, device)], 1e-6, 0, "device loss vs host cross-entropy of its logits");

  for (const p of model.parameters()) {
    const weight = p.tensor;
    assert.ok(weight.grad, `${p.name}: no gradient`);
    assert.deepEqual(weight.grad.shape, weight.shape, `${p.name}: gradient shape`);
    const analytic = await readF32(weight.grad);
    const base = await readF32(weight);
    const indices = checkedIndices(p.size);
    const numeric: number[] = [];
    for (const i of indices) numeric.push(await finiteDifference(model, device, p, base, i));
    const got = indices.map((i) => analytic[i]);
    assert.ok(got.some((g) => Math.abs(g) > 1e-3), `${p.name}: the checked gradients are all near zero (${got})`);
    assertClose(got, numeric, ...TOLERANCE, `${p.name} at elements ${indices}`);
  }
  model.dispose();
});
