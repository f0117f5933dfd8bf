// The Phi-3 model as one rank of a parallel layout holds and runs it.
//
// The rank builds the same modules as src/nn, under the same Hugging Face names and in the same
// order, with its local sizes: its tensor-parallel shard of each weight (tp_shards.ts), or the whole
// weight when the layout does not shard. The forward is a chain of blocks, the units ZeRO-3 gathers:
// the embedding, each decoder layer, and the head (final norm, lm_head, cross-entropy). A block runs
// as one graph, cut (cut.ts) at each collective of the layout:
//
//   tensor parallel (Megatron)   f → qkv_proj → heads → o_proj → g,  f → gate_up → down → g
//   Megatron-SP                  the same with f/g as all-gather / reduce-scatter along the sequence
//   Ulysses                      qkv_proj → all-to-all to heads → attention → all-to-all back → o_proj
//
// The loss a rank returns is the mean over the tokens it trained on; the engine turns the ranks'
// losses and gradients into those of the global batch.

import type { Comm } from "../comm/collectives.ts";
import { attendFused, type AttentionHeads } from "../nn/attention.ts";
import { headDim, type Phi3Config } from "../nn/config.ts";
import { Phi3MLP } from "../nn/mlp.ts";
import { Embedding, Linear, RMSNorm } from "../nn/modules.ts";
import type { Parameter, ParameterFactory } from "../nn/parameter.ts";
import * as ops from "../tensor/ops/index.ts";
import type { Tensor } from "../tensor/tensor.ts";
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

export interface ModelParallelism {
  /** The group the weights are sharded over: tp, or sp under Megatron-SP (one rank when unsharded). */
  shards: Comm;
  /** The Ulysses group the heads are exchanged over, or null. */
  ulysses: Comm | null;
  /** Megatron-SP: between the tensor-parallel regions, activations are split along the sequence over `shards`. */
  sequenceParallel: boolean;
}

/** This rank's tokens of a step: `rows` rows of `tokens` tokens, row-major. */
export interface TokenBatch {
  ids: Int32Array;
  targets: Int32Array;
  rows: number;
  tokens: number;
}

/** A unit of the forward: ZeRO-3 gathers its parameters before it runs and frees them after. */
export interface ModelBlock {
  /** "embed", "layer0" … or "head": names the block in collective tags. */
  label: string;
  parameters: Parameter[];
  /** x: the previous block's output (null for the embedding); the head returns the loss. */
  run(x: Tensor | null, batch: TokenBatch): Promise<Tensor>;
}

export class ParallelPhi3 {
  /** Every parameter's tensor-parallel piece on this rank. */
  readonly shards: Map<string, TensorParallelShard>;
  readonly blocks: ModelBlock[];

  constructor(factory: ParameterFactory, readonly config: Phi3Config, private readonly parallelism: ModelParallelism) {
    const { shards } = parallelism;
    this.shards = tensorParallelShards(config, shards.size, shards.rank);
    const local = (name: string) => this.shards.get(`${name}.weight`)!.shape;

    const embedShape = local("model.embed_tokens");
    const embedTokens = new Embedding(factory, "model.embed_tokens", embedShape[0], embedShape[1]);
    this.blocks = [{ label: "embed", parameters: embedTokens.parameters(), run: (_x, batch) => this.embed(embedTokens, batch) }];

    for (let i = 0; i < config.numLayers; i++) {
      const layer = this.buildLayer(factory, i, local);
      this.blocks.push({ label: `layer${i}`, parameters: layer.parameters, run: (x) => layer.forward(x!) });
    }

    const norm = new RMSNorm(factory, "model.norm", config.hiddenSize, config.rmsNormEps);
    const headShape = local("lm_head");
    const lmHead = new Linear(factory, "lm_head", headShape[1], headShape[0]);
    this.blocks.push({
      label: "head",
      parameters: [...norm.parameters(), ...lmHead.parameters()],
      run: (x, batch) => this.head(norm, lmHead, x!, batch),
    });
  }

  /** Every parameter slot in Hugging Face order. */
  parameters(): Parameter[] {
    return this.blocks.flatMap((block) => block.parameters);
  }

  private get tensorParallel(): boolean {
    return this.parallelism.shards.size > 1;
  }

  private async embed(embedTokens: Embedding, batch: TokenBatch): Promise<Tensor> {
    const { shards, sequenceParallel } = this.parallelism;
    const shape: [number, number] = [batch.rows, batch.tokens];
    if (!this.tensorParallel) {
      return ops.tidy(() => ops.reshape(ops.embedding(embedTokens.weight.tensor, batch.ids), [...shape, this.config.hiddenSize]));
    }
    const shard = this.shards.get("model.embed_tokens.weight")!;
    return await vocabParallelEmbedding(shards, embedTokens.weight.tensor, shard, batch.ids, shape, { sequenceParallel });
  }

  private buildLayer(factory: ParameterFactory, i: number, local: (name: string) => readonly number[]) {
    const { config } = this;
    const prefix = `model.layers.${i}`;
    const D = headDim(config);
    // Declared in Hugging Face's order, as Phi3DecoderLayer.
    const oShape = local(`${prefix}.self_attn.o_proj`);
    const qkvShape = local(`${prefix}.self_attn.qkv_proj`);
    const oProj = new Linear(factory, `${prefix}.self_attn.o_proj`, oShape[1], oShape[0]);
    const qkvProj = new Linear(factory, `${prefix}.self_attn.qkv_proj`, qkvShape[1], qkvShape[0]);
    const intermediate = local(`${prefix}.mlp.down_proj`)[1];
    const mlp = new Phi3MLP(factory, `${prefix}.mlp`, { ...config, intermediateSize: intermediate });
    const inputLayernorm = new RMSNorm(factory, `${prefix}.input_layernorm`, config.hiddenSize, config.rmsNormEps);
    const postAttentionLayernorm = new RMSNorm(
      factory,
      `${prefix}.post_attention_layernorm`,
      config.hiddenSize,
      config.rmsNormEps,
    );

    const numHeads = oShape[1] / D;
    const heads: AttentionHeads = {
      numHeads,
      numKvHeads: (qkvShape[0] / D - numHeads) / 2,
      headDim: D,
      ropeTheta: config.ropeTheta,
    };
    const forward = async (x: Tensor): Promise<Tensor> => {
      const attnIn = await this.enterTensorParallel(ops.tidy(() => inputLayernorm.forward(x)), `layer${i}.attn`);
      const qkv = ops.tidy(() => qkvProj.forward(attnIn));
      attnIn.dispose();
      const attended = this.parallelism.ulysses
        ? await ulyssesAttention(this.parallelism.ulysses, qkv, heads, `layer${i}`)
        : ops.tidy(() => attendFused(qkv, heads));
      qkv.dispose();
      const attnOut = await this.leaveTensorParallel(ops.tidy(() => oProj.forward(attended)), `layer${i}.attn`);
      attended.dispose();
      const h = ops.add(x, attnOut);
      const mlpIn = await this.enterTensorParallel(ops.tidy(() => postAttentionLayernorm.forward(h)), `layer${i}.mlp`);
      const mlpOut = await this.leaveTensorParallel(ops.tidy(() => mlp.forward(mlpIn)), `layer${i}.mlp`);
      const out = ops.add(h, mlpOut);
      for (const t of [attnOut, h, mlpIn, mlpOut]) t.dispose();
      return out;
    };
    const parameters = [
      ...oProj.parameters(),
      ...qkvProj.parameters(),
      ...mlp.parameters(),
      ...inputLayernorm.parameters(),
      ...postAttentionLayernorm.parameters(),
    ];
    return { forward, parameters };
  }

  private async head(norm: RMSNorm, lmHead: Linear, x: Tensor, batch: TokenBatch): Promise<Tensor> {
    const hidden = await this.enterTensorParallel(ops.tidy(() => norm.forward(x)), "head");
    const logits = ops.tidy(() => ops.reshape(lmHead.forward(hidden), [-1, lmHead.outFeatures]));
    hidden.dispose();
    try {
      if (!this.tensorParallel) return ops.crossEntropy(logits, batch.targets);
      return await vocabParallelCrossEntropy(
        this.parallelism.shards,
        logits,
        this.shards.get("lm_head.weight")!,
        batch.targets,
        "head",
      );
    } finally {
      logits.dispose();
    }
  }

  /** Into a column-parallel region: f (tensor parallel), or the all-gather along the sequence (Megatron-SP). */
  private async enterTensorParallel(x: Tensor, where: string): Promise<Tensor> {
    if (!this.tensorParallel) return x;
    const { shards, sequenceParallel } = this.parallelism;
    const entered = sequenceParallel
      ? await gatherFromSequenceParallel(shards, x, where)
      : await copyToTensorParallel(shards, x, where);
    x.dispose();
    return entered;
  }

  /** Out of a row-parallel region: g (tensor parallel), or the reduce-scatter along the sequence (Megatron-SP). */
  private async leaveTensorParallel(partial: Tensor, where: string): Promise<Tensor> {
    if (!this.tensorParallel) return partial;
    const { shards, sequenceParallel } = this.parallelism;
    const reduced = sequenceParallel
      ? await reduceScatterToSequenceParallel(shards, partial, where)
      : await reduceFromTensorParallel(shards, partial, where);
    partial.dispose();
    return reduced;
  }
}
