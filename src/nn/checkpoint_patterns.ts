// How each Phi-3 parameter's pieces combine into the whole parameter when a checkpoint saved on a
// parallel layout is made universal: the Universal Checkpointing pattern language, by Hugging Face
// name. The checkpoint module matches every parameter against this table in strict mode (a
// parameter no pattern matches, or a pattern that matches no parameter, is an error naming it) and
// checks each rule against the meaning the ranks recorded for their pieces.

import { headDim, type Phi3Config } from "./config.ts";

export interface CheckpointPatterns {
  /** Every tensor-parallel rank holds it whole (norms): all copies must be equal; one is kept. */
  replicated: RegExp[];
  /** Each rank holds a block of rows: joined along dim 0. */
  columnParallel: RegExp[];
  /** Each rank holds a block of columns (Megatron's row-parallel linear): joined along dim 1. */
  rowParallel: RegExp[];
  /** Rows of the vocabulary, padded to a multiple of the ranks: joined along dim 0, padding stripped. */
  vocabulary: RegExp[];
  /** Two sub-parameters of equal rows fused along dim 0 (gate and up), each split on its own. */
  twoSubParameters: RegExp[];
  /** Sub-parameters of the given rows fused along dim 0 (q, k, v under grouped-query attention), each split on its own. */
  subParametersWithShapes: { pattern: RegExp; rows: (config: Phi3Config) => [string, number][] }[];
  /** Each rank holds its own estimate: the copies are averaged. */
  average: RegExp[];
}

export const PHI3_CHECKPOINT_PATTERNS: CheckpointPatterns = {
  replicated: [/^model\.layers\.\d+\.(input_layernorm|post_attention_layernorm)\.weight$/, /^model\.norm\.weight$/],
  columnParallel: [],
  rowParallel: [/^model\.layers\.\d+\.self_attn\.o_proj\.weight$/, /^model\.layers\.\d+\.mlp\.down_proj\.weight$/],
  vocabulary: [/^model\.embed_tokens\.weight$/, /^lm_head\.weight$/],
  twoSubParameters: [/^model\.layers\.\d+\.mlp\.gate_up_proj\.weight$/],
  subParametersWithShapes: [{
    pattern: /^model\.layers\.\d+\.self_attn\.qkv_proj\.weight$/,
    rows: (config) => {
      const D = headDim(config);
      return [["q", config.numHeads * D], ["k", config.numKvHeads * D], ["v", config.numKvHeads * D]];
    },
  }],
  average: [],
};
