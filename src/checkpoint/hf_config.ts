// The Hugging Face description of a shardlab model: the config.json and generation_config.json of
// an export, as transformers' Phi3Config reads them, with every field that makes its forward
// shardlab's (rotary positions over the whole head without scaling, no sliding window, no dropout,
// an untied lm_head, SiLU; no special tokens, as the character tokenizer has none). And the way
// back: a config.json read as a Phi3Config, refusing a setting shardlab's forward does not run, or
// checked against a run's model, naming each field that differs.

import { type Phi3Config, validateConfig } from "../nn/config.ts";
import { GENERATE_DEFAULTS } from "../nn/generate.ts";
import { INIT_STD } from "../nn/parameter.ts";
import { CheckpointError } from "./errors.ts";
import type { FloatDType } from "./float_encoding.ts";

/** transformers' torch_dtype of each safetensors dtype. */
export const TORCH_DTYPES: Record<FloatDType, string> = { F32: "float32", F16: "float16", BF16: "bfloat16" };

/** Each field of shardlab's Phi3Config and its name in config.json. */
const FIELDS: readonly (readonly [keyof Phi3Config, string])[] = [
  ["vocabSize", "vocab_size"],
  ["hiddenSize", "hidden_size"],
  ["intermediateSize", "intermediate_size"],
  ["numLayers", "num_hidden_layers"],
  ["numHeads", "num_attention_heads"],
  ["numKvHeads", "num_key_value_heads"],
  ["maxSeqLen", "max_position_embeddings"],
  ["rmsNormEps", "rms_norm_eps"],
  ["ropeTheta", "rope_theta"],
];

/** config.json of `model` with weights stored as `dtype`. */
export function hfConfig(model: Phi3Config, dtype: FloatDType): Record<string, unknown> {
  return {
    architectures: ["Phi3ForCausalLM"],
    model_type: "phi3",
    ...Object.fromEntries(FIELDS.map(([key, field]) => [field, model[key]])),
    original_max_position_embeddings: model.maxSeqLen,
    rope_scaling: null,
    partial_rotary_factor: 1,
    sliding_window: null,
    hidden_act: "silu",
    attention_dropout: 0,
    resid_pdrop: 0,
    embd_pdrop: 0,
    initializer_range: INIT_STD,
    tie_word_embeddings: false,
    use_cache: true,
    bos_token_id: null,
    eos_token_id: null,
    pad_token_id: null,
    torch_dtype: TORCH_DTYPES[dtype],
  };
}

/** generation_config.json: sampling as `shardlab generate` samples by default. */
export function hfGenerationConfig(): Record<string, unknown> {
  return {
    do_sample: true,
    temperature: GENERATE_DEFAULTS.temperature,
    max_new_tokens: GENERATE_DEFAULTS.maxNewTokens,
    bos_token_id: null,
    eos_token_id: null,
    pad_token_id: null,
  };
}

/**
 * The Phi3Config a parsed config.json (`where` names it) describes. It must be a phi3 model whose
 * forward is shardlab's; every setting that is not is named in one error.
 */
export function phi3ConfigFromHf(json: unknown, where: string): Phi3Config {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new CheckpointError(`${where} is not a JSON object`);
  }
  const fields = json as Record<string, unknown>;
  if (fields.model_type !== "phi3") {
    throw new CheckpointError(`${where} has model_type ${JSON.stringify(fields.model_type)}; shardlab runs "phi3" models`);
  }
  const rope = (fields.rope_parameters ?? {}) as Record<string, unknown>;
  const values: Record<string, unknown> = {
    ...fields,
    num_key_value_heads: fields.num_key_value_heads ?? fields.num_attention_heads,
    rope_theta: fields.rope_theta ?? rope.rope_theta,
  };
  const problems = FIELDS.filter(([, field]) => typeof values[field] !== "number").map(([, field]) =>
    `${field} is ${JSON.stringify(values[field])}, not a number`
  );
  const hidden = fields.hidden_size as number;
  const heads = fields.num_attention_heads as number;
  const unsupported: [string, unknown, boolean][] = [
    ["tie_word_embeddings", fields.tie_word_embeddings, (fields.tie_word_embeddings ?? false) === false],
    ["hidden_act", fields.hidden_act, (fields.hidden_act ?? "silu") === "silu"],
    ["rope_scaling", fields.rope_scaling, fields.rope_scaling == null],
    ["rope_parameters.rope_type", rope.rope_type, (rope.rope_type ?? "default") === "default"],
    [
      "partial_rotary_factor",
      fields.partial_rotary_factor ?? rope.partial_rotary_factor,
      (fields.partial_rotary_factor ?? rope.partial_rotary_factor ?? 1) === 1,
    ],
    [
      "sliding_window",
      fields.sliding_window,
      fields.sliding_window == null || (fields.sliding_window as number) >= (fields.max_position_embeddings as number),
    ],
    ["head_dim", fields.head_dim, fields.head_dim == null || fields.head_dim === hidden / heads],
  ];
  const refused = unsupported.filter(([, , ok]) => !ok).map(([field, value]) => `${field} ${JSON.stringify(value)}`);
  if (refused.length > 0) problems.push(`settings shardlab's Phi-3 forward does not run: ${refused.join(", ")}`);
  if (problems.length > 0) throw new CheckpointError(`${where}: ${problems.join("; ")}`);
  const config = Object.fromEntries(FIELDS.map(([key, field]) => [key, values[field]])) as unknown as Phi3Config;
  try {
    validateConfig(config);
  } catch (error) {
    throw new CheckpointError(`${where}: ${(error as Error).message}`);
  }
  return config;
}

/** Refuses a config.json that does not describe `model`, naming every field that differs. */
export function checkHfConfig(json: unknown, model: Phi3Config, where: string): void {
  const found = phi3ConfigFromHf(json, where);
  const differ = FIELDS.filter(([key]) => found[key] !== model[key]).map(([key, field]) =>
    `${field} ${found[key]} (this run's model has ${model[key]})`
  );
  if (differ.length > 0) throw new CheckpointError(`${where} describes another model: ${differ.join(", ")}`);
}
