// How the model's layers are built: on one device, or as one rank of a parallel layout.
//
// The Phi-3 modules ask a Phi3Layers for every layer that a parallel layout changes, by Hugging
// Face name and full size. localLayers builds the plain single-device layers; a rank of a parallel
// layout swaps in Megatron's column- and row-parallel linears, the vocabulary-parallel embedding and
// cross-entropy, and Ulysses attention (src/parallel/parallel_layers.ts), so one model definition
// serves every layout. Those layers wait for collectives, so a forward returns a tensor or a
// promise of one, and the model awaits each.

import * as ops from "../tensor/ops/index.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { attendFused, type AttentionHeads } from "./attention.ts";
import { Embedding, Linear, type Module } from "./modules.ts";
import type { ParameterFactory } from "./parameter.ts";

export type Forward = (x: Tensor) => Tensor | Promise<Tensor>;

export interface Layer extends Module {
  forward: Forward;
}

export interface Phi3Layers {
  /** The token embedding [vocab, hidden]: ids i32 [B, T] → [B, T, hidden]. */
  embedding(factory: ParameterFactory, name: string, vocab: number, hidden: number): Layer;
  /** A linear whose output features a layout may split over ranks: qkv_proj, gate_up_proj, lm_head. */
  columnLinear(factory: ParameterFactory, name: string, inFeatures: number, outFeatures: number): Layer;
  /** A linear whose input features a layout may split over ranks, the partial outputs summed: o_proj, down_proj. */
  rowLinear(factory: ParameterFactory, name: string, inFeatures: number, outFeatures: number): Layer;
  /** The attention of the module `name` (model.layers.i.self_attn) between its projections: qkv → [B, T, heads·D]. */
  attention(name: string, heads: AttentionHeads): Forward;
  /** The mean cross-entropy of logits [N, vocabulary columns] against targets i32 [N]. */
  crossEntropy(logits: Tensor, targets: Tensor): Tensor | Promise<Tensor>;
}

/** The layers of one device. */
export const localLayers: Phi3Layers = {
  embedding: (factory, name, vocab, hidden) => new Embedding(factory, name, vocab, hidden),
  columnLinear: (factory, name, inFeatures, outFeatures) => new Linear(factory, name, inFeatures, outFeatures),
  rowLinear: (factory, name, inFeatures, outFeatures) => new Linear(factory, name, inFeatures, outFeatures),
  attention: (_name, heads) => (qkv) => attendFused(qkv, heads),
  crossEntropy: (logits, targets) => ops.crossEntropy(logits, targets),
};
