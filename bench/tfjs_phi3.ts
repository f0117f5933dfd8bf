// The training benchmark's TF.js side: shardlab's Phi-3 decoder and its training step (forward,
// backward, global-norm clipping, AdamW) written with TF.js's functional API on its WebGPU backend.
//
// It is the same computation as Phi3ForCausalLM + Trainer, op for op:
// - token embedding; per layer: RMSNorm → fused qkv projection (rows q, then k, then v; y = x·Wᵀ)
//   → rotary embedding (rotate-half form) → causal grouped-query attention with each kv head
//   repeated for its group of query heads, scaled 1/√headDim, as matmul + causal bias + softmax +
//   matmul → o_proj → residual; RMSNorm → fused gate_up (gate rows first) → silu(gate)·up →
//   down_proj → residual; final RMSNorm; untied lm_head; mean cross-entropy;
// - AdamW with PyTorch semantics (decay only on parameters with ≥ 2 dims), gradients scaled by
//   min(1, clipNorm / (‖g‖ + 1e-6)) for the global norm ‖g‖.
// TF.js keeps the clipping scale on the device; shardlab reads the norm back to the host (one
// extra sync per step that TF.js does not pay).

import type { Phi3Config } from "../src/nn/config.ts";
import { tf, type Tfjs } from "./tfjs.ts";
import { registerTfjsGradients } from "./tfjs_gradients.ts";

/** A parameter's initial values, keyed by its Hugging Face name. */
export interface HostParameter {
  name: string;
  shape: number[];
  values: Float32Array;
}

export interface TfjsAdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  /** Applied to parameters with ≥ 2 dims only. */
  weightDecay: number;
  /** Global gradient norm the gradients are clipped to. */
  clipNorm: number;
}

interface Parameter {
  variable: Tfjs.Variable;
  expAvg: Tfjs.Variable;
  expAvgSq: Tfjs.Variable;
  weightDecay: number;
}

interface Layer {
  inputNorm: Tfjs.Variable;
  qkv: Tfjs.Variable;
  out: Tfjs.Variable;
  postNorm: Tfjs.Variable;
  gateUp: Tfjs.Variable;
  down: Tfjs.Variable;
}

export class TfjsPhi3Trainer {
  private readonly params = new Map<string, Parameter>();
  private readonly embed: Tfjs.Variable;
  private readonly layers: Layer[];
  private readonly finalNorm: Tfjs.Variable;
  private readonly lmHead: Tfjs.Variable;
  /** [seq, headDim] tables of the rotary embedding: cos and sin of each (position, frequency), both halves. */
  private readonly cos: Tfjs.Tensor;
  private readonly sin: Tfjs.Tensor;
  /** [seq, seq]: 0 where a query may attend, −∞ above the diagonal. */
  private readonly causalBias: Tfjs.Tensor;
  private steps = 0;

  constructor(
    private readonly config: Phi3Config,
    private readonly batch: number,
    private readonly seq: number,
    initial: HostParameter[],
    private readonly adamw: TfjsAdamWOptions,
  ) {
    registerTfjsGradients();
    // tidy frees the tensors the variables were made from; variables outlive every tidy scope.
    tf.tidy(() => {
      for (const { name, shape, values } of initial) {
        this.params.set(name, {
          variable: tf.variable(tf.tensor(values, shape), true),
          expAvg: tf.variable(tf.zeros(shape), false),
          expAvgSq: tf.variable(tf.zeros(shape), false),
          weightDecay: shape.length >= 2 ? adamw.weightDecay : 0,
        });
      }
    });
    this.embed = this.param("model.embed_tokens.weight");
    this.layers = Array.from({ length: config.numLayers }, (_, i) => {
      const prefix = `model.layers.${i}`;
      return {
        inputNorm: this.param(`${prefix}.input_layernorm.weight`),
        qkv: this.param(`${prefix}.self_attn.qkv_proj.weight`),
        out: this.param(`${prefix}.self_attn.o_proj.weight`),
        postNorm: this.param(`${prefix}.post_attention_layernorm.weight`),
        gateUp: this.param(`${prefix}.mlp.gate_up_proj.weight`),
        down: this.param(`${prefix}.mlp.down_proj.weight`),
      };
    });
    this.finalNorm = this.param("model.norm.weight");
    this.lmHead = this.param("lm_head.weight");
    [this.cos, this.sin] = rotaryTables(seq, config.hiddenSize / config.numHeads, config.ropeTheta);
    this.causalBias = causalBias(seq);
  }

  /**
   * One training step on the [batch, seq] inputs and targets at learning rate lr: forward,
   * backward, clipping, AdamW; resolves to the step's loss once it is back on the host.
   */
  async step(inputs: Int32Array, targets: Int32Array, lr: number): Promise<number> {
    this.steps++;
    const loss = tf.tidy(() => {
      const ids = tf.tensor1d(inputs, "int32");
      const targetRows = tf.cast(tf.oneHot(tf.tensor1d(targets, "int32"), this.config.vocabSize), "float32");
      const variables = [...this.params.values()].map((p) => p.variable);
      const { value, grads } = tf.variableGrads(() => this.loss(ids, targetRows), variables);
      this.update(grads, lr);
      return value;
    });
    const [value] = await loss.data();
    loss.dispose();
    return value;
  }

  dispose(): void {
    for (const { variable, expAvg, expAvgSq } of this.params.values()) tf.dispose([variable, expAvg, expAvgSq]);
    tf.dispose([this.cos, this.sin, this.causalBias]);
  }

  private param(name: string): Tfjs.Variable {
    const parameter = this.params.get(name);
    if (!parameter) throw new RangeError(`TfjsPhi3Trainer: no initial value for parameter "${name}"`);
    return parameter.variable;
  }

  /** Mean cross-entropy of the logits against one-hot target rows [B·T, vocab]. */
  private loss(ids: Tfjs.Tensor, targetRows: Tfjs.Tensor): Tfjs.Scalar {
    let x = tf.gather(this.embed, ids);
    for (const layer of this.layers) {
      x = tf.add(x, this.attention(rmsNorm(x, layer.inputNorm, this.config.rmsNormEps), layer));
      x = tf.add(x, mlp(rmsNorm(x, layer.postNorm, this.config.rmsNormEps), layer));
    }
    const logits = tf.matMul(rmsNorm(x, this.finalNorm, this.config.rmsNormEps), this.lmHead, false, true);
    return tf.neg(tf.mean(tf.sum(tf.mul(targetRows, tf.logSoftmax(logits)), 1)));
  }

  /** Causal grouped-query self-attention of x [B·T, hidden], projected back to [B·T, hidden]. */
  private attention(x: Tfjs.Tensor, layer: Layer): Tfjs.Tensor {
    const { numHeads, numKvHeads, hiddenSize } = this.config;
    const headDim = hiddenSize / numHeads;
    const qkv = tf.matMul(x, layer.qkv, false, true);
    const [q, k, v] = tf.split(qkv, [numHeads * headDim, numKvHeads * headDim, numKvHeads * headDim], 1);
    const heads = (t: Tfjs.Tensor, count: number) =>
      tf.transpose(tf.reshape(t, [this.batch, this.seq, count, headDim]), [0, 2, 1, 3]);
    const query = this.rope(heads(q, numHeads));
    const key = this.repeatKv(this.rope(heads(k, numKvHeads)));
    const value = this.repeatKv(heads(v, numKvHeads));
    const scores = tf.add(tf.mul(tf.matMul(query, key, false, true), 1 / Math.sqrt(headDim)), this.causalBias);
    const mixed = tf.matMul(tf.softmax(scores), value);
    const merged = tf.reshape(tf.transpose(mixed, [0, 2, 1, 3]), [this.batch * this.seq, hiddenSize]);
    return tf.matMul(merged, layer.out, false, true);
  }

  /** x·cos + rotateHalf(x)·sin on [B, H, T, D], rotateHalf(x) = [−x₂, x₁]. */
  private rope(x: Tfjs.Tensor): Tfjs.Tensor {
    const [first, second] = tf.split(x, 2, 3);
    const rotated = tf.concat([tf.neg(second), first], 3);
    return tf.add(tf.mul(x, this.cos), tf.mul(rotated, this.sin));
  }

  /** [B, Hkv, T, D] → [B, Hq, T, D]: query head h reads kv head ⌊h / (Hq / Hkv)⌋. */
  private repeatKv(x: Tfjs.Tensor): Tfjs.Tensor {
    const { numHeads, numKvHeads } = this.config;
    const [B, , T, D] = x.shape;
    const group = numHeads / numKvHeads;
    // Rank 4, as TF.js's WebGPU tile (behind broadcastTo) runs rank-5 tensors on the CPU.
    const repeated = tf.broadcastTo(tf.reshape(x, [B, numKvHeads, 1, T * D]), [B, numKvHeads, group, T * D]);
    return tf.reshape(repeated, [B, numHeads, T, D]);
  }

  /** Clips by global norm on the device, then one AdamW update of every parameter in place. */
  private update(grads: Tfjs.NamedTensorMap, lr: number): void {
    const { beta1, beta2, eps, clipNorm } = this.adamw;
    const params = [...this.params.values()];
    // stack + sum rather than addN: on llvmpipe, TF.js's WebGPU addN of these 15+ scalars returns only its last input.
    const norm = tf.sqrt(tf.sum(tf.stack(params.map((p) => tf.sum(tf.square(grads[p.variable.name]))))));
    const scale = tf.minimum(1, tf.div(clipNorm, tf.add(norm, 1e-6)));
    const stepSize = lr / (1 - beta1 ** this.steps);
    const secondCorrection = Math.sqrt(1 - beta2 ** this.steps);
    for (const { variable, expAvg, expAvgSq, weightDecay } of params) {
      const g = tf.mul(grads[variable.name], scale);
      const m = tf.add(tf.mul(expAvg, beta1), tf.mul(g, 1 - beta1));
      const v = tf.add(tf.mul(expAvgSq, beta2), tf.mul(tf.square(g), 1 - beta2));
      const decayed = weightDecay > 0 ? tf.mul(variable, 1 - lr * weightDecay) : variable;
      const direction = tf.div(m, tf.add(tf.div(tf.sqrt(v), secondCorrection), eps));
      variable.assign(tf.sub(decayed, tf.mul(direction, stepSize)));
      expAvg.assign(m);
      expAvgSq.assign(v);
    }
  }
}

/** x / sqrt(mean(x²) + eps) · weight over the last axis. */
function rmsNorm(x: Tfjs.Tensor, weight: Tfjs.Variable, eps: number): Tfjs.Tensor {
  const meanSquare = tf.mean(tf.square(x), 1, true);
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSquare, eps))), weight);
}

/** down(silu(gate)·up) with [gate; up] = x·gate_upᵀ. */
function mlp(x: Tfjs.Tensor, layer: Layer): Tfjs.Tensor {
  const [gate, up] = tf.split(tf.matMul(x, layer.gateUp, false, true), 2, 1);
  const hidden = tf.mul(tf.mul(gate, tf.sigmoid(gate)), up);
  return tf.matMul(hidden, layer.down, false, true);
}

/** cos and sin of p·theta^(−2j/D) for positions p < seq, laid out [seq, D] with both halves equal. */
function rotaryTables(seq: number, headDim: number, theta: number): [Tfjs.Tensor, Tfjs.Tensor] {
  const half = headDim / 2;
  const cos = new Float32Array(seq * headDim);
  const sin = new Float32Array(seq * headDim);
  for (let p = 0; p < seq; p++) {
    for (let j = 0; j < half; j++) {
      const angle = p * theta ** (-2 * j / headDim);
      for (const column of [p * headDim + j, p * headDim + j + half]) {
        cos[column] = Math.cos(angle);
        sin[column] = Math.sin(angle);
      }
    }
  }
  return [tf.tensor2d(cos, [seq, headDim]), tf.tensor2d(sin, [seq, headDim])];
}

function causalBias(seq: number): Tfjs.Tensor {
  const bias = new Float32Array(seq * seq);
  for (let query = 0; query < seq; query++) bias.fill(-Infinity, query * seq + query + 1, (query + 1) * seq);
  return tf.tensor2d(bias, [seq, seq]);
}
