// How the ranks of a data group share the training of one model: the one interface that DDP
// (ddp.ts), ZeRO-1/2 (zero.ts) and ZeRO-3 (zero3.ts) implement. The engine picks one, once
// (engine.ts createStrategy); after that nothing asks which (as picotron wraps the model once and
// its training loop never branches on the strategy).
//
//   runBlock          runs a block of the model: as it is, or ZeRO-3's gather, run, and recompute in backward
//   reduceGradients   after backward: every gradient averaged over the data group (into the partition under ZeRO)
//   gradSquares       Σ g² of the averaged gradient of this rank's shards, every element counted once over the data group
//   step, zeroGrad    AdamW on what the rank holds; the gradients freed
//   memory            bytes of parameters, gradients, optimizer state, gathered blocks and hpZ's secondary partitions
//   fragments         where this rank's state lies (its entry of the fragment map)
//   exportState       the state in fragment-map order; importState puts one back

import type { Comm } from "../comm/collectives.ts";
import type { BlockRunner, ModelBlock } from "../nn/phi3.ts";
import type { Parameter } from "../nn/parameter.ts";
import type { AdamWHyperparameters, AdamWStepOptions } from "../optim/adamw.ts";
import { ShapeError } from "../tensor/errors.ts";
import { formatShape, sameShape } from "../tensor/shape.ts";
import type { DdpOptions } from "./ddp.ts";
import type { GradientWeight } from "./flat_partition.ts";
import type { RankFragments, RankState } from "./fragment_map.ts";
import type { PartitionCodec } from "./partition_codec.ts";

/**
 * What one rank holds, in bytes; `gathered` is the largest ZeRO-3 working copy of a block's
 * parameters, `secondary` ZeRO++'s hpZ partitions (kept from each forward to the next).
 */
export interface RankMemory {
  parameters: number;
  gradients: number;
  optimizer: number;
  gathered: number;
  secondary: number;
}

export interface Strategy {
  readonly runBlock: BlockRunner;
  reduceGradients(): Promise<void>;
  /** `weight` scales each parameter's elements (1/k for a piece k tensor-parallel ranks hold alike). */
  gradSquares(weight: GradientWeight): Promise<number>;
  step(options: AdamWStepOptions): Promise<void>;
  zeroGrad(): void;
  memory(): RankMemory;
  readonly fragments: RankFragments;
  exportState(): Promise<RankState>;
  importState(state: RankState): Promise<void>;
  /** Frees the optimizer state and whatever the strategy gathered; the model's own tensors are the model's. */
  dispose(): void;
}

/** What a strategy is built from. */
export interface StrategyContext {
  /** The model's parameter slots in model order, each holding this rank's shard (ZeRO-3 empties them). */
  parameters: Parameter[];
  /** The model's blocks, whose parameters are ZeRO-3's flat groups in order. */
  blocks: readonly ModelBlock[];
  /** The data group: the ranks that hold the same parameters and train different tokens. */
  data: Comm;
  /** This rank's entry of the layout's fragment map. */
  fragments: RankFragments;
  adamw: AdamWHyperparameters;
  /** Sums the gradients of the pieces several tensor-parallel ranks hold alike, of these parameters. */
  sumReplicated(parameters: readonly Parameter[]): Promise<void>;
  codec: PartitionCodec;
  ddp?: DdpOptions;
}

/** Checks every parameter's gradient against its shape, naming both (`where`: the caller). */
export function checkGradients(where: string, parameters: readonly Parameter[]): void {
  for (const { name, shape, tensor } of parameters) {
    if (tensor.grad && !sameShape(tensor.grad.shape, shape)) {
      throw new ShapeError(
        `${where}: the gradient of "${name}" has shape ${formatShape(tensor.grad.shape)}, the parameter ${formatShape(shape)}`,
      );
    }
  }
}
