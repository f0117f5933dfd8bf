// The Phi-3 model against an independent Float64 implementation written here from the model's
// definition (embedding, RMSNorm, fused qkv split q|k|v, rotate-half RoPE as in
// src/backend/cpu/rope.ts, grouped-query causal attention, SwiGLU with gate rows before up rows,
// untied lm_head, mean cross-entropy), on both backends; plus input checks, layer-by-layer
// calls, and a training-like loop that must leave device memory where it started.

import assert from "node:assert/strict";
import { type Device, DTypeError, ops, ShapeError, type Tensor } from "../mod.ts";
import type { Phi3Config } from "../src/nn/config.ts";
import type { ParameterFactory } from "../src/nn/parameter.ts";
import { Phi3ForCausalLM } from "../src/nn/phi3.ts";
import { assertClose, randomValues, readF32, testBothBackends } from "./helpers.ts";

// Grouped-query (4 query heads over 2 kv heads), a rope theta other than the default 10000.
const MICRO: Phi3Config = {
  vocabSize: 13,
  hiddenSize: 16,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  intermediateSize: 24,
  maxSeqLen: 8,
  ropeTheta: 500,
  rmsNormEps: 1e-5,
};
const [B, T] = [2, 6];
const IDS = Int32Array.from({ length: B * T }, (_, i) => (i * 5 + 3) % MICRO.vocabSize);
const TARGETS = Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 1) % MICRO.vocabSize);

/**
 * Parameters large enough that every part of the model shapes the logits (the 0.02 init would
 * leave attention almost uniform): matrices N(0, 0.3²), norm gains 1 + N(0, 0.2²).
 */
function spreadValues(name: string, size: number, init: string): Float32Array {
  const seed = [...name].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 1000003, 17);
  const noise = randomValues(size, seed, init === "ones" ? 0.2 : 0.3);
  if (init === "ones") { for (let i = 0; i < size; i++) noise[i] += 1; }
  return noise;
}

function spreadModel(device: Device): { model: Phi3ForCausalLM; values: Map<string, Float32Array> } {
  const values = new Map<string, Float32Array>();
  const factory: ParameterFactory = (name, shape, init) => {
    const v = spreadValues(name, shape.reduce((a, b) => a * b, 1), init);
    values.set(name, v);
    return device.tensor(v, shape, { requiresGrad: true });
  };
  return { model: new Phi3ForCausalLM(device, MICRO, { parameters: factory }), values };
}

// ---------------------------------------------------------------------------------------------
// the Float64 reference
// ---------------------------------------------------------------------------------------------

/** x [rows, inF] · W[outF, inF]ᵀ. */
function linear(x: Float64Array, w: Float32Array, rows: number, inF: number, outF: number): Float64Array {
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let s = 0;
      for (let i = 0; i < inF; i++) s += x[r * inF + i] * w[o * inF + i];
      y[r * outF + o] = s;
    }
  }
  return y;
}

function rmsnorm(x: Float64Array, w: Float32Array, rows: number, dim: number, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[r * dim + i] ** 2;
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[r * dim + i] = x[r * dim + i] * inv * w[i];
  }
  return y;
}

/** Rotates the head vector at position t in place: pairs (j, j + D/2), angle t·theta^(−2j/D). */
function rotate(vec: Float64Array, t: number, theta: number): void {
  const half = vec.length / 2;
  for (let j = 0; j < half; j++) {
    const angle = t * Math.pow(theta, (-2 * j) / vec.length);
    const [a, b] = [vec[j], vec[j + half]];
    vec[j] = a * Math.cos(angle) - b * Math.sin(angle);
    vec[j + half] = b * Math.cos(angle) + a * Math.sin(angle);
  }
}

function referenceLogits(
  cfg: Phi3Config,
  P: Map<string, Float32Array>,
  ids: Int32Array,
  batch: number,
  seq: number,
): Float64Array {
  const { hiddenSize: C, numHeads: H, numKvHeads: Hkv, intermediateSize: I, vocabSize: V, rmsNormEps: eps } = cfg;
  const D = C / H;
  const rows = batch * seq;
  const param = (name: string) => P.get(name)!;
  let x = new Float64Array(rows * C);
  for (let r = 0; r < rows; r++) for (let i = 0; i < C; i++) x[r * C + i] = param("model.embed_tokens.weight")[ids[r] * C + i];

  for (let l = 0; l < cfg.numLayers; l++) {
    const prefix = `model.layers.${l}`;
    const a = rmsnorm(x, param(`${prefix}.input_layernorm.weight`), rows, C, eps);
    const width = (H + 2 * Hkv) * D;
    const qkv = linear(a, param(`${prefix}.self_attn.qkv_proj.weight`), rows, C, width);
    // head(r, offset) = the D values of row r starting at column offset, rotated for q and k.
    const head = (r: number, offset: number, rope: boolean) => {
      const vec = qkv.slice(r * width + offset, r * width + offset + D);
      if (rope) rotate(vec, r % seq, cfg.ropeTheta);
      return vec;
    };
    const merged = new Float64Array(rows * C);
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < H; h++) {
        const g = Math.floor(h / (H / Hkv));
        for (let t = 0; t < seq; t++) {
          const q = head(b * seq + t, h * D, true);
          const scores: number[] = [];
          for (let s = 0; s <= t; s++) {
            const k = head(b * seq + s, H * D + g * D, true);
            scores.push(q.reduce((sum, qd, d) => sum + qd * k[d], 0) / Math.sqrt(D));
          }
          const m = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - m));
          const z = e.reduce((p, c) => p + c, 0);
          for (let s = 0; s <= t; s++) {
            const v = head(b * seq + s, (H + Hkv) * D + g * D, false);
            for (let d = 0; d < D; d++) merged[(b * seq + t) * C + h * D + d] += (e[s] / z) * v[d];
          }
        }
      }
    }
    const attn = linear(merged, param(`${prefix}.self_attn.o_proj.weight`), rows, C, C);
    x = x.map((xi, i) => xi + attn[i]);
    const n = rmsnorm(x, param(`${prefix}.post_attention_layernorm.weight`), rows, C, eps);
    const gu = linear(n, param(`${prefix}.mlp.gate_up_proj.weight`), rows, C, 2 * I);
    const act = new Float64Array(rows * I);
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < I; i++) {
        const gate = gu[r * 2 * I + i];
        act[r * I + i] = (gate / (1 + Math.exp(-gate))) * gu[r * 2 * I + I + i];
      }
    }
    const mlp = linear(act, param(`${prefix}.mlp.down_proj.weight`), rows, I, C);
    x = x.map((xi, i) => xi + mlp[i]);
  }
  const final = rmsnorm(x, param("model.norm.weight"), rows, C, eps);
  return linear(final, param("lm_head.weight"), rows, C, V);
}

function referenceLoss(logits: ArrayLike<number>, targets: Int32Array, vocab: number): number {
  let total = 0;
  for (let r = 0; r < targets.length; r++) {
    const row = Array.from({ length: vocab }, (_, j) => logits[r * vocab + j]);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, z) => s + Math.exp(z - m), 0));
    total += lse - row[targets[r]];
  }
  return total / targets.length;
}

// ---------------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------------

testBothBackends("nn: Phi-3 logits and loss equal a Float64 reference", async (device) => {
  const { model, values } = spreadModel(device);
  const expected = referenceLogits(MICRO, values, IDS, B, T);
  // The reference must not be trivially flat: logits spread over several units.
  const spread = Math.max(...expected) - Math.min(...expected);
  assert.ok(spread > 2, `reference logits span only ${spread}`);

  const ids = device.tensor(IDS, [B, T]);
  const targets = device.tensor(TARGETS, [B, T]);
  const logits = await ops.noGrad(() => model.forward(ids));
  assert.deepEqual(logits.shape, [B, T, MICRO.vocabSize]);
  // f32 storage between ops (CPU accumulates in f64, WebGPU in f32) against pure f64: a few f32
  // ulps per op through ~30 ops on logits of magnitude ~5.
  assertClose(await readF32(logits), expected, 1e-4, 1e-4, `${device.name} logits vs Float64 reference`);
  const loss = await ops.noGrad(() => model.loss(ids, targets));
  assert.deepEqual(loss.shape, []);
  assertClose(await readF32(loss), [referenceLoss(expected, TARGETS, MICRO.vocabSize)], 1e-5, 1e-5, "loss");
  for (const t of [logits, loss, ids, targets]) t.dispose();
  model.dispose();
});

testBothBackends("nn: the layers called one by one give the model's forward", async (device) => {
  const { model } = spreadModel(device);
  const ids = device.tensor(IDS, [B, T]);
  const [whole, stepwise] = await ops.noGrad(() =>
    ops.tidy(async () => {
      let h = await model.model.embedTokens.forward(ids);
      for (let i = 0; i < model.model.layers.length; i++) h = await model.model.layers[i].forward(h);
      return [await model.forward(ids), await model.lmHead.forward(model.model.norm.forward(h))];
    })
  );
  assert.deepEqual(await readF32(stepwise), await readF32(whole));
  for (const t of [whole, stepwise, ids]) t.dispose();
  model.dispose();
});

testBothBackends("nn: forward + backward + disposing gradients leaves device memory unchanged", async (device) => {
  const empty = device.stats();
  const { model } = spreadModel(device);
  const ids = device.tensor(IDS, [B, T]);
  const targets = device.tensor(TARGETS, [B, T]);
  const params = model.namedParameters();
  const start = device.stats();
  for (let step = 1; step <= 3; step++) {
    const loss = await model.loss(ids, targets);
    await loss.backward();
    for (const [name, p] of params) assert.ok(p.grad, `step ${step}: ${name} has no gradient`);
    assert.ok(Number.isFinite((await loss.read())[0]));
    loss.dispose();
    for (const [, p] of params) {
      p.grad?.dispose();
      p.grad = null;
    }
    const now = device.stats();
    assert.equal(now.tensors, start.tensors, `step ${step}: live tensors`);
    assert.equal(now.buffers, start.buffers, `step ${step}: live buffers`);
    assert.equal(now.bytes, start.bytes, `step ${step}: live bytes`);
  }
  ids.dispose();
  targets.dispose();
  model.dispose();
  const end = device.stats();
  assert.deepEqual(
    [end.tensors, end.buffers, end.bytes],
    [empty.tensors, empty.buffers, empty.bytes],
    "dispose() frees the parameters",
  );
});

Deno.test("nn: forward and loss reject bad token tensors, naming the problem", async () => {
  const device = await (await import("./helpers.ts")).cpuDevice();
  const { model } = spreadModel(device);
  const check = (fn: () => Promise<Tensor>, error: typeof ShapeError | typeof DTypeError, pattern: RegExp) => {
    assert.throws(() => ops.tidy(fn), (e: Error) => e instanceof error && pattern.test(e.message));
  };
  const ids = (shape: number[], dtype: "i32" | "f32" = "i32") =>
    device.tensor(new Int32Array(shape.reduce((a, b) => a * b, 1)), shape, { dtype });
  check(() => model.forward(ids([2, 9])), ShapeError, /\[2, 9\].*maxSeqLen 8/);
  check(() => model.forward(ids([6])), ShapeError, /\[6\] must be \[B, T\]/);
  check(() => model.forward(ids([1, 4], "f32")), DTypeError, /ids must be i32.*got f32/);
  check(() => model.loss(ids([1, 4]), ids([1, 5])), ShapeError, /\[1, 4\] and targets \[1, 5\]/);
  model.dispose();
});
