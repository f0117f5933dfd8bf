// Sampling text from a model, one token at a time: each step runs a full forward over the context
// (its last maxSeqLen tokens) and draws the next token from the last position's logits.

import * as ops from "../tensor/ops/index.ts";
import type { Phi3ForCausalLM } from "./phi3.ts";
import { deriveSeed } from "./seed.ts";

export interface GenerateOptions {
  maxNewTokens: number;
  /** 0 picks the most likely token; otherwise logits are divided by it before the softmax. */
  temperature: number;
  /** Step i draws with a uniform that depends only on (seed, i). */
  seed: number;
}

/** What `shardlab generate` and an exported model's generation_config.json use unless told otherwise. */
export const GENERATE_DEFAULTS: Readonly<GenerateOptions> = { maxNewTokens: 200, temperature: 0.8, seed: 0 };

/** The maxNewTokens tokens that follow promptIds (the prompt itself is not repeated). */
export async function generate(model: Phi3ForCausalLM, promptIds: Int32Array, options: GenerateOptions): Promise<Int32Array> {
  const { maxNewTokens, temperature, seed } = options;
  const { vocabSize, maxSeqLen } = model.config;
  checkOptions(promptIds, options, vocabSize);
  const tokens = new Int32Array(promptIds.length + maxNewTokens);
  tokens.set(promptIds);
  for (let step = 0; step < maxNewTokens; step++) {
    const length = promptIds.length + step;
    const context = tokens.subarray(Math.max(0, length - maxSeqLen), length);
    const logits = await ops.noGrad(() =>
      ops.tidy(async () => {
        const all = await model.forward(model.device.tensor(context, [1, context.length]));
        return (await ops.slice(all, [0, context.length - 1, 0], [1, 1, vocabSize]).read()) as Float32Array;
      })
    );
    tokens[length] = temperature === 0 ? argmax(logits) : sample(logits, temperature, deriveSeed(seed, `generate/${step}`));
  }
  return tokens.slice(promptIds.length);
}

function checkOptions(promptIds: Int32Array, options: GenerateOptions, vocabSize: number): void {
  if (!(promptIds instanceof Int32Array)) throw new TypeError("generate: promptIds must be an Int32Array");
  if (promptIds.length === 0) throw new RangeError("generate: promptIds is empty (give at least one token)");
  promptIds.forEach((id, i) => {
    if (id < 0 || id >= vocabSize) {
      throw new RangeError(`generate: prompt token ${id} at index ${i} is outside [0, ${vocabSize})`);
    }
  });
  const { maxNewTokens, temperature, seed } = options;
  if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0) {
    throw new RangeError(`generate: maxNewTokens must be a non-negative integer, got ${maxNewTokens}`);
  }
  if (!Number.isFinite(temperature) || temperature < 0) {
    throw new RangeError(`generate: temperature must be a finite number ≥ 0, got ${temperature}`);
  }
  if (!Number.isSafeInteger(seed)) throw new RangeError(`generate: seed must be a safe integer, got ${seed}`);
}

/** Index of the largest logit (the first one on ties). */
function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** Inverse-CDF draw from softmax(logits / temperature), in f64, with u = (bits + 0.5) / 2³². */
function sample(logits: Float32Array, temperature: number, bits: number): number {
  const max = logits[argmax(logits)];
  const weights = Float64Array.from(logits, (x) => Math.exp((x - max) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let remaining = ((bits + 0.5) / 4294967296) * total;
  for (let i = 0; i < weights.length; i++) {
    remaining -= weights[i];
    if (remaining < 0) return i;
  }
  return weights.length - 1;
}
