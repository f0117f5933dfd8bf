// Model configuration and parameter layout: presets, validation errors, the parameter count of
// Phi-3-mini by hand, the count of the modules themselves (Phi-3-mini walked without allocating),
// and the Hugging Face Phi-3 parameter names, order and shapes written out independently here.

import assert from "node:assert/strict";
import { ShapeError, type Tensor } from "../mod.ts";
import { paramCount, type Phi3Config, presetConfig, PRESETS, validateConfig } from "../src/nn/config.ts";
import { type ParameterFactory, shapeOnly } from "../src/nn/parameter.ts";
import { Phi3ForCausalLM } from "../src/nn/phi3.ts";
import { cpuDevice } from "./helpers.ts";

/**
 * The layout of transformers' Phi3ForCausalLM.named_parameters(): per layer, Phi3Attention
 * declares o_proj before qkv_proj; the decoder layer holds self_attn, mlp, input_layernorm,
 * post_attention_layernorm; nn.Linear weights are [out_features, in_features].
 */
function hfPhi3Layout(c: Phi3Config): [string, number[]][] {
  const headDim = c.hiddenSize / c.numHeads;
  const layout: [string, number[]][] = [["model.embed_tokens.weight", [c.vocabSize, c.hiddenSize]]];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    layout.push(
      [`${p}.self_attn.o_proj.weight`, [c.hiddenSize, c.numHeads * headDim]],
      [`${p}.self_attn.qkv_proj.weight`, [c.numHeads * headDim + 2 * c.numKvHeads * headDim, c.hiddenSize]],
      [`${p}.mlp.gate_up_proj.weight`, [2 * c.intermediateSize, c.hiddenSize]],
      [`${p}.mlp.down_proj.weight`, [c.hiddenSize, c.intermediateSize]],
      [`${p}.input_layernorm.weight`, [c.hiddenSize]],
      [`${p}.post_attention_layernorm.weight`, [c.hiddenSize]],
    );
  }
  layout.push(["model.norm.weight", [c.hiddenSize]], ["lm_head.weight", [c.vocabSize, c.hiddenSize]]);
  return layout;
}

// Multi-head (kv heads = heads) with three layers, beside tiny's grouped-query 4 over 2.
const MHA: Phi3Config = { ...PRESETS.tiny, hiddenSize: 24, numLayers: 3, numHeads: 3, numKvHeads: 3, intermediateSize: 40 };

Deno.test("nn config: presets hold the documented shapes, and presetConfig copies them", () => {
  assert.deepEqual(presetConfig("tiny"), {
    vocabSize: 96,
    hiddenSize: 64,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    intermediateSize: 192,
    maxSeqLen: 256,
    ropeTheta: 10000,
    rmsNormEps: 1e-5,
  });
  assert.deepEqual(presetConfig("small"), {
    ...presetConfig("tiny"),
    hiddenSize: 128,
    numLayers: 4,
    intermediateSize: 384,
    maxSeqLen: 512,
  });
  assert.deepEqual(presetConfig("phi3-mini"), {
    vocabSize: 32064,
    hiddenSize: 3072,
    numLayers: 32,
    numHeads: 32,
    numKvHeads: 32,
    intermediateSize: 8192,
    maxSeqLen: 4096,
    ropeTheta: 10000,
    rmsNormEps: 1e-5,
  });
  const copy = presetConfig("tiny");
  copy.hiddenSize = 1;
  assert.equal(PRESETS.tiny.hiddenSize, 64, "presetConfig hands out a copy");
  assert.throws(() => presetConfig("medium"), /unknown preset "medium" \(valid: tiny, small, phi3-mini\)/);
  for (const name of Object.keys(PRESETS)) validateConfig(presetConfig(name));
});

Deno.test("nn config: validateConfig names the numbers that do not fit", () => {
  const tiny = PRESETS.tiny;
  const cases: [Partial<Phi3Config>, RegExp][] = [
    [{ hiddenSize: 66 }, /hiddenSize 66 is not divisible by numHeads 4/],
    [{ numKvHeads: 3 }, /numHeads 4 is not divisible by numKvHeads 3/],
    [{ hiddenSize: 12 }, /head dim 3 \(hiddenSize 12 \/ numHeads 4\) must be even/],
    [{ numLayers: 0 }, /numLayers must be a positive integer, got 0/],
    [{ vocabSize: -5 }, /vocabSize must be a positive integer, got -5/],
    [{ intermediateSize: 1.5 }, /intermediateSize must be a positive integer, got 1.5/],
    [{ maxSeqLen: NaN }, /maxSeqLen must be a positive integer, got NaN/],
    [{ ropeTheta: 0 }, /ropeTheta must be a positive number, got 0/],
    [{ rmsNormEps: -1e-5 }, /rmsNormEps must be a positive number, got -0.00001/],
  ];
  for (const [change, message] of cases) {
    assert.throws(
      () => validateConfig({ ...tiny, ...change }),
      (e: Error) => e instanceof RangeError && message.test(e.message),
      JSON.stringify(change),
    );
  }
  assert.throws(() => paramCount({ ...tiny, numHeads: 5 }), /hiddenSize 64 is not divisible by numHeads 5/);
});

Deno.test("nn config: Phi-3-mini has 3,821,079,552 parameters", () => {
  // Per layer: qkv 3·3072² + o_proj 3072² + gate_up 2·8192·3072 + down 3072·8192 + two norms of 3072;
  // embeddings and the untied lm_head 32064·3072 each; the final norm 3072.
  const perLayer = 3 * 3072 * 3072 + 3072 * 3072 + 2 * 8192 * 3072 + 3072 * 8192 + 2 * 3072;
  assert.equal(perLayer, 113_252_352);
  const byHand = 32 * perLayer + 2 * 32064 * 3072 + 3072;
  assert.equal(byHand, 3_821_079_552);
  assert.equal(paramCount(presetConfig("phi3-mini")), byHand);
});

Deno.test("nn config: paramCount equals the modules' own parameters, Phi-3-mini built without allocating", async () => {
  const device = await cpuDevice();
  const before = device.stats();
  for (const config of [presetConfig("tiny"), presetConfig("small"), presetConfig("phi3-mini"), MHA]) {
    const model = new Phi3ForCausalLM(device, config, { parameters: shapeOnly });
    const total = model.parameters().reduce((sum, p) => sum + p.size, 0);
    assert.equal(total, paramCount(config), JSON.stringify(config));
    assert.ok(model.parameters().every((p) => p.value === null));
  }
  assert.deepEqual(device.stats(), before, "shape-only models allocate nothing");
});

Deno.test("nn layout: parameter names, order and shapes are Hugging Face Phi-3's", async () => {
  const device = await cpuDevice();
  for (const config of [presetConfig("tiny"), MHA]) {
    const expected = hfPhi3Layout(config);
    const layout = new Phi3ForCausalLM(device, config, { parameters: shapeOnly });
    assert.deepEqual(layout.parameters().map((p) => [p.name, [...p.shape]]), expected, "shape-only layout");
    const model = new Phi3ForCausalLM(device, config, { seed: 1 });
    const named = model.namedParameters();
    assert.deepEqual(named.map(([name, t]) => [name, [...t.shape]]), expected, "allocated layout");
    assert.ok(named.every(([, t]) => t.dtype === "f32" && t.requiresGrad));
    model.dispose();
  }
});

Deno.test("nn layout: namedParameters names an unallocated parameter; a factory must honour the shape", async () => {
  const device = await cpuDevice();
  const layout = new Phi3ForCausalLM(device, presetConfig("phi3-mini"), { parameters: shapeOnly });
  assert.throws(() => layout.namedParameters(), /model\.embed_tokens\.weight \[32064, 3072\] holds no tensor/);
  const made: Tensor[] = [];
  const wrongShape: ParameterFactory = (_name, shape) => {
    made.push(device.zeros([shape[0] + 1, ...shape.slice(1)]));
    return made.at(-1)!;
  };
  assert.throws(
    () => new Phi3ForCausalLM(device, presetConfig("tiny"), { parameters: wrongShape }),
    (e: Error) =>
      e instanceof ShapeError &&
      /model\.embed_tokens\.weight: the factory made a tensor of shape \[97, 64\], expected \[96, 64\]/.test(e.message),
  );
  for (const t of made) t.dispose();
});
