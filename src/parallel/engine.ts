// The parallel training engine: one rank's model, strategy and communication for a layout, as
// DeepSpeed's engine is. The model is src/nn's Phi-3, built from this rank's shards of the weights
// and the layout's parallel layers (parallel_layers.ts); the strategy (strategy.ts: DDP, ZeRO-1/2
// or ZeRO-3) is chosen once, in create(). A step on every rank of the world:
//
//   forwardBackward   the rank's tokens through the model's blocks, each run by the strategy, one
//                     graph cut at each collective; backward through every cut
//   reduceGradients   the strategy averages the gradients over the data group; returns the global
//                     gradient norm, every element counted once however many ranks hold it
//   step              the strategy's AdamW on what this rank holds
//
// The process groups come from one mesh over the world (layout.ts parallelGroups).

import type { Comm } from "../comm/collectives.ts";
import type { Phi3Config } from "../nn/config.ts";
import { Phi3ForCausalLM } from "../nn/phi3.ts";
import { adamwHyperparameters, type AdamWOptions } from "../optim/adamw.ts";
import type { Device } from "../tensor/device.ts";
import { tidy } from "../tensor/scope.ts";
import { DataParallel, type DdpOptions } from "./ddp.ts";
import { type FragmentMap, fragmentMap, type RankFragments, rankFragments, type RankState } from "./fragment_map.ts";
import {
  type ParallelGroups,
  parallelGroups,
  type ParallelLayout,
  rowsPerReplica,
  tokensPerRank,
  type ZeroStage,
} from "./layout.ts";
import { parallelLayers } from "./parallel_layers.ts";
import type { PartitionCodec } from "./partition_codec.ts";
import { gradientWeights, sumReplicatedGradients } from "./replicated_gradients.ts";
import type { RankMemory, Strategy, StrategyContext } from "./strategy.ts";
import { tensorParallelParameters, type TensorParallelShard, tensorParallelShards } from "./tp_shards.ts";
import { ZeroOptimizer } from "./zero.ts";
import { createCodec, NO_ZEROPP, usesZeropp, type ZeroppOptions } from "./zeropp_codec.ts";
import { Zero3 } from "./zero3.ts";

export interface EngineOptions {
  layout: ParallelLayout;
  seed: number;
  /** AdamW's hyperparameters (defaults: β 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices). */
  adamw?: AdamWOptions;
  ddp?: DdpOptions;
  /** ZeRO++ and the dtype ZeRO-3's partitions travel in (default: plain ZeRO-3 in f32). */
  zeropp?: ZeroppOptions;
}

/** Which tokens of the global batch a rank trains: rows from its dp rank, a column range from its sp rank (Ulysses). */
export interface TokenShare {
  rowStart: number;
  rowCount: number;
  tokenStart: number;
  tokenCount: number;
}

/** This rank's tokens of a step: `rows` rows of `tokens` tokens, row-major. */
export interface TokenBatch {
  ids: Int32Array;
  targets: Int32Array;
  rows: number;
  tokens: number;
}

export class ParallelEngine {
  private constructor(
    readonly layout: ParallelLayout,
    readonly config: Phi3Config,
    readonly device: Device,
    readonly groups: ParallelGroups,
    readonly model: Phi3ForCausalLM,
    /** This rank's shard of every parameter. */
    readonly shards: Map<string, TensorParallelShard>,
    readonly strategy: Strategy,
    private readonly codec: PartitionCodec,
  ) {}

  /** Builds this rank's part of the model for `options.layout` over the world communicator `world`. */
  static create(world: Comm, device: Device, config: Phi3Config, options: EngineOptions): ParallelEngine {
    const { layout } = options;
    const zeropp = options.zeropp ?? NO_ZEROPP;
    if (layout.zero !== 3 && (usesZeropp(zeropp) || zeropp.commDtype !== "f32")) {
      throw new RangeError(
        `parallel: ZeRO++ and the f16 comm dtype work on ZeRO-3's partitions; the layout has ZeRO stage ${layout.zero}`,
      );
    }
    const groups = parallelGroups(world, layout);
    const tp = groups.tensorParallel;
    const model = new Phi3ForCausalLM(device, config, {
      parameters: tensorParallelParameters(device, options.seed, config, tp.size, tp.rank),
      layers: parallelLayers(config, groups),
    });
    const shards = tensorParallelShards(config, tp.size, tp.rank);
    const everyShard = Array.from({ length: tp.size }, (_, index) => tensorParallelShards(config, tp.size, index));
    const codec = createCodec(zeropp, groups.data);
    const strategy = createStrategy(layout.zero, {
      parameters: model.parameters(),
      blocks: model.blocks,
      data: groups.data,
      fragments: rankFragments(layout, everyShard, blockNames(model), world.rank),
      adamw: adamwHyperparameters(options.adamw),
      sumReplicated: (parameters) => sumReplicatedGradients(shards, parameters, tp, groups.sequenceParallel),
      codec,
      ddp: options.ddp,
    });
    return new ParallelEngine(layout, config, device, groups, model, shards, strategy, codec);
  }

  /** The tokens of a global batch of `batch` rows of `seq` tokens this rank trains. */
  share(batch: number, seq: number): TokenShare {
    const rowCount = rowsPerReplica(batch, this.layout.dp);
    const ulysses = this.groups.ulysses;
    const tokenCount = ulysses ? tokensPerRank(seq, ulysses.size) : seq;
    return {
      rowStart: this.groups.dp.rank * rowCount,
      rowCount,
      tokenStart: ulysses ? ulysses.rank * tokenCount : 0,
      tokenCount,
    };
  }

  /** Forward and backward of this rank's tokens; returns its mean loss over them. */
  forwardBackward(batch: TokenBatch): Promise<number> {
    return tidy(async () => {
      const shape = [batch.rows, batch.tokens];
      const loss = await this.model.loss(
        this.device.tensor(batch.ids, shape),
        this.device.tensor(batch.targets, shape),
        this.strategy.runBlock,
      );
      await loss.backward();
      // Read after backward, so that a step without collectives in backward waits for the device once.
      const [value] = await loss.read();
      return value;
    });
  }

  /** Averages the gradients over the data group and returns the global gradient norm before clipping. */
  async reduceGradients(): Promise<number> {
    const tp = this.groups.tensorParallel;
    await this.strategy.reduceGradients();
    let squares = await this.strategy.gradSquares(gradientWeights(this.shards, tp.size));
    if (tp.size > 1) [squares] = await tp.allReduce(new Float32Array([squares]), { op: "sum", tag: "tp.allreduce.gradnorm" });
    return Math.sqrt(squares);
  }

  /** AdamW with this step's learning rate and clipping scale; the gradients are freed. */
  async step(lr: number, gradScale: number): Promise<void> {
    await this.strategy.step({ lr, gradScale });
    this.strategy.zeroGrad();
  }

  /** The global batch's mean loss from this rank's mean over its tokens (every rank trains as many tokens). */
  async reduceLoss(loss: number): Promise<number> {
    const [mean] = await this.groups.data.allReduce(new Float32Array([loss]), { op: "avg", tag: "engine.allreduce.loss" });
    return mean;
  }

  /** Bytes this rank holds for parameters, gradients and optimizer state. */
  memory(): RankMemory {
    return this.strategy.memory();
  }

  /** Where this rank's state lies: its entry of the fragment map. */
  fragments(): RankFragments {
    return this.strategy.fragments;
  }

  /** The fragment map of the whole layout (every rank's entry). */
  fragmentMap(): FragmentMap {
    return fragmentMap(this.config, this.layout, blockNames(this.model));
  }

  /** This rank's optimizer state, laid out as its entry of the fragment map. */
  exportState(): Promise<RankState> {
    return this.strategy.exportState();
  }

  /** Puts back a state laid out as this rank's fragments (every rank at once: ZeRO-1/2 gather the parameters). */
  importState(state: RankState): Promise<void> {
    return this.strategy.importState(state);
  }

  dispose(): void {
    this.strategy.dispose();
    this.codec.dispose();
    this.model.dispose();
  }
}

/** The strategy of ZeRO stage `stage` (0: DDP): the one place that asks which. */
export function createStrategy(stage: ZeroStage, context: StrategyContext): Strategy {
  switch (stage) {
    case 0:
      return new DataParallel(context);
    case 1:
    case 2:
      return new ZeroOptimizer(context, stage);
    case 3:
      return new Zero3(context);
  }
}

function blockNames(model: Phi3ForCausalLM): string[][] {
  return model.blocks.map((block) => block.parameters.map((p) => p.name));
}
