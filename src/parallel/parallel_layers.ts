// One rank's layers of a parallel layout, swapped into the one Phi-3 model of src/nn (its
// Phi3Layers): each layer declares this rank's shard of its weight (tp_shards.ts) under the
// parameter's Hugging Face name, and crosses the layout's collectives with cuts (tp_layers.ts,
// ulysses.ts). Over the tensor-parallel group, Megatron's layers:
//
//   column linear   f → x·Wᵀ on this rank's output rows          qkv_proj, gate_up_proj, lm_head
//   row linear      x·Wᵀ on this rank's input columns → g         o_proj, down_proj
//   embedding       lookup of this rank's vocabulary rows → g
//   attention       this rank's query heads and the kv heads they use
//   cross-entropy   over the vocabulary columns of every rank
//
// Under Megatron-SP, f and g are the all-gather and reduce-scatter along the sequence. With a
// Ulysses group, attention exchanges this rank's heads for its tokens (ulyssesAttention). Tags name
// the call site: "embed", "layer3.attn", "layer3.mlp", "head".

import type { AttentionHeads } from "../nn/attention.ts";
import type { Phi3Config } from "../nn/config.ts";
import { type Forward, type Layer, localLayers, type Phi3Layers } from "../nn/layers.ts";
import { Embedding, Linear } from "../nn/modules.ts";
import type { ParameterFactory } from "../nn/parameter.ts";
import { tidy } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { ParallelGroups } from "./layout.ts";
import {
  copyToTensorParallel,
  gatherFromSequenceParallel,
  reduceFromTensorParallel,
  reduceScatterToSequenceParallel,
  vocabParallelCrossEntropy,
  vocabParallelEmbedding,
} from "./tp_layers.ts";
import { type TensorParallelShard, tensorParallelShards } from "./tp_shards.ts";
import { ulyssesAttention } from "./ulysses.ts";

/** The layers of one rank whose groups are `groups`; one device's layers where the layout changes none. */
export function parallelLayers(config: Phi3Config, groups: ParallelGroups): Phi3Layers {
  const { tensorParallel: tp, ulysses, sequenceParallel } = groups;
  if (tp.size === 1 && !ulysses) return localLayers;
  const shards = tensorParallelShards(config, tp.size, tp.rank);
  const shardOf = (name: string) => shards.get(`${name}.weight`)!;
  const sharded = tp.size > 1;

  /** Into a column-parallel region: f, or the all-gather along the sequence. */
  const enter = (x: Tensor, where: string) =>
    sequenceParallel ? gatherFromSequenceParallel(tp, x, where) : copyToTensorParallel(tp, x, where);
  /** Out of a row-parallel region: g, or the reduce-scatter along the sequence. */
  const leave = (x: Tensor, where: string) =>
    sequenceParallel ? reduceScatterToSequenceParallel(tp, x, where) : reduceFromTensorParallel(tp, x, where);

  return {
    embedding(factory, name, vocab, hidden) {
      if (!sharded) return localLayers.embedding(factory, name, vocab, hidden);
      const shard = shardOf(name);
      const local = new Embedding(factory, name, shard.shape[0], hidden);
      return {
        forward: async (ids) => {
          const shape: [number, number] = [ids.shape[0], ids.shape[1]];
          const held = (await ids.read()) as Int32Array;
          return await vocabParallelEmbedding(tp, local.weight.tensor, shard, held, shape, { sequenceParallel });
        },
        parameters: () => local.parameters(),
      };
    },
    columnLinear(factory, name, inFeatures, outFeatures) {
      if (!sharded) return localLayers.columnLinear(factory, name, inFeatures, outFeatures);
      const local = localLinear(factory, name, shardOf(name));
      const where = regionOf(name);
      return { forward: (x) => tidy(async () => local.forward(await enter(x, where))), parameters: () => local.parameters() };
    },
    rowLinear(factory, name, inFeatures, outFeatures) {
      if (!sharded) return localLayers.rowLinear(factory, name, inFeatures, outFeatures);
      const local = localLinear(factory, name, shardOf(name));
      const where = regionOf(name);
      return {
        forward: (x) => tidy(async () => await leave(await local.forward(x), where)),
        parameters: () => local.parameters(),
      };
    },
    attention(name, heads) {
      const local = sharded ? shardHeads(heads, shardOf(`${name}.qkv_proj`)) : heads;
      if (!ulysses) return localLayers.attention(name, local);
      const where = regionOf(name).replace(/\.attn$/, "");
      return ((qkv) => ulyssesAttention(ulysses, qkv, local, where)) satisfies Forward;
    },
    crossEntropy(logits, targets) {
      if (!sharded) return localLayers.crossEntropy(logits, targets);
      return tidy(async () =>
        await vocabParallelCrossEntropy(tp, logits, shardOf("lm_head"), (await targets.read()) as Int32Array, "head")
      );
    },
  };
}

/** A plain linear over the shard's local shape [rows, columns]. */
function localLinear(factory: ParameterFactory, name: string, shard: TensorParallelShard): Layer {
  const [rows, columns] = shard.shape;
  return new Linear(factory, name, columns, rows);
}

/** The heads of a rank's qkv_proj shard: its q rows and its k rows, in heads of headDim. */
function shardHeads(heads: AttentionHeads, shard: TensorParallelShard): AttentionHeads {
  const [q, k] = shard.subParams!;
  return { ...heads, numHeads: q.localRows / heads.headDim, numKvHeads: k.localRows / heads.headDim };
}

/** The call site of a parameter's collectives in ledger tags: "embed", "layer3.attn", "layer3.mlp" or "head". */
function regionOf(name: string): string {
  if (name === "lm_head") return "head";
  if (name === "model.embed_tokens") return "embed";
  const match = /^model\.layers\.(\d+)\.(self_attn|mlp)/.exec(name);
  if (!match) throw new RangeError(`parallel: no collective region for parameter ${name}`);
  return `layer${match[1]}.${match[2] === "self_attn" ? "attn" : "mlp"}`;
}
