// generate(): deterministic for a seed, greedy decoding equal to the argmax of the model's own
// logits over the context cropped to maxSeqLen, temperature sampling that follows
// softmax(logits / temperature), and no tensor left behind.

import assert from "node:assert/strict";
import { type Device, ops } from "../mod.ts";
import type { Phi3Config } from "../src/nn/config.ts";
import { generate } from "../src/nn/generate.ts";
import type { ParameterFactory } from "../src/nn/parameter.ts";
import { Phi3ForCausalLM } from "../src/nn/phi3.ts";
import { cpuDevice, randomValues, readF32, testBothBackends } from "./helpers.ts";

const MICRO: Phi3Config = {
  vocabSize: 13,
  hiddenSize: 16,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  intermediateSize: 24,
  maxSeqLen: 8,
  ropeTheta: 10000,
  rmsNormEps: 1e-5,
};
const PROMPT = Int32Array.from([3, 1, 4, 1, 5]);

/** Parameters with N(0, 0.4²) matrices, so that the next-token distribution is far from uniform. */
function peakedModel(device: Device): Phi3ForCausalLM {
  let seed = 300;
  const factory: ParameterFactory = (_name, shape, init) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const values = init === "ones" ? new Float32Array(size).fill(1) : randomValues(size, seed++, 0.4);
    return device.tensor(values, shape, { requiresGrad: true });
  };
  return new Phi3ForCausalLM(device, MICRO, { parameters: factory });
}

/** The model's logits for the token after `context`, read from a plain forward. */
async function nextLogits(model: Phi3ForCausalLM, device: Device, context: Int32Array): Promise<Float32Array> {
  const logits = await ops.noGrad(() => ops.tidy(() => model.forward(device.tensor(context, [1, context.length]))));
  const values = await readF32(logits);
  logits.dispose();
  return values.slice((context.length - 1) * MICRO.vocabSize);
}

testBothBackends(
  "nn generate: greedy decoding is the argmax of forward's logits, context cropped to maxSeqLen",
  async (device) => {
    const model = peakedModel(device);
    const steps = device.name === "cpu" ? 6 : 4;
    const start = device.stats();
    const out = await generate(model, PROMPT, { maxNewTokens: steps, temperature: 0, seed: 1 });
    const end = device.stats();
    assert.deepEqual(
      [end.tensors, end.buffers, end.bytes],
      [start.tensors, start.buffers, start.bytes],
      "generate leaves no tensor behind",
    );
    assert.equal(out.length, steps);

    const sequence = [...PROMPT];
    for (let step = 0; step < steps; step++) {
      const logits = await nextLogits(model, device, Int32Array.from(sequence.slice(-MICRO.maxSeqLen)));
      const best = logits.indexOf(Math.max(...logits));
      assert.equal(out[step], best, `step ${step}: generate picked ${out[step]}, forward's argmax is ${best} (logits ${logits})`);
      sequence.push(best);
    }
    assert.ok(sequence.length > MICRO.maxSeqLen, "the test must reach past maxSeqLen");
    model.dispose();
  },
);

Deno.test("nn generate: the same seed gives the same tokens; other seeds give others", async () => {
  const device = await cpuDevice();
  const model = peakedModel(device);
  const options = { maxNewTokens: 12, temperature: 1, seed: 42 };
  const first = await generate(model, PROMPT, options);
  assert.deepEqual(await generate(model, PROMPT, options), first);
  const others = [];
  for (const seed of [43, 44, 45]) others.push(await generate(model, PROMPT, { ...options, seed }));
  assert.ok(others.every((o) => o.some((token, i) => token !== first[i])), `seed 42 ${first}, others ${others.join(" | ")}`);
  assert.ok(first.every((t) => t >= 0 && t < MICRO.vocabSize));
  model.dispose();
});

Deno.test("nn generate: sampled tokens follow softmax(logits / temperature)", async () => {
  const device = await cpuDevice();
  const model = peakedModel(device);
  const temperature = 0.7;
  const logits = await nextLogits(model, device, PROMPT);
  const max = Math.max(...logits);
  const weights = Array.from(logits, (z) => Math.exp((z - max) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  const expected = weights.map((w) => w / total);
  assert.ok(Math.max(...expected) > 0.2, `the distribution is too flat to test: ${expected}`);

  const draws = 400;
  const counts = new Array(MICRO.vocabSize).fill(0);
  for (let seed = 0; seed < draws; seed++) {
    counts[(await generate(model, PROMPT, { maxNewTokens: 1, temperature, seed }))[0]]++;
  }
  // Each frequency has a standard error of at most √(0.25 / 400) = 0.025: allow 4 of them.
  counts.forEach((c, token) => {
    assert.ok(
      Math.abs(c / draws - expected[token]) < 0.1,
      `token ${token}: frequency ${c / draws}, probability ${expected[token]}`,
    );
  });
  model.dispose();
});

Deno.test("nn generate: bad arguments are named", async () => {
  const device = await cpuDevice();
  const model = peakedModel(device);
  const options = { maxNewTokens: 2, temperature: 1, seed: 0 };
  await assert.rejects(generate(model, new Int32Array(0), options), /promptIds is empty/);
  await assert.rejects(generate(model, Int32Array.from([1, 13]), options), /prompt token 13 at index 1 is outside \[0, 13\)/);
  await assert.rejects(
    generate(model, PROMPT, { ...options, temperature: -1 }),
    /temperature must be a finite number ≥ 0, got -1/,
  );
  await assert.rejects(
    generate(model, PROMPT, { ...options, maxNewTokens: 1.5 }),
    /maxNewTokens must be a non-negative integer, got 1.5/,
  );
  await assert.rejects(generate(model, PROMPT, { ...options, seed: 0.5 }), /seed must be a safe integer, got 0.5/);
  assert.deepEqual(await generate(model, PROMPT, { ...options, maxNewTokens: 0 }), new Int32Array(0));
  model.dispose();
});
