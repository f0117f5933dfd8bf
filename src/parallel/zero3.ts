// ZeRO stage 3 (DeepSpeed semantics): the parameters themselves live only as partitions.
//
// Each rank keeps its partition of every flat group (one per model block: the embedding, each
// decoder layer, the head) on its device (flat_partition.ts); that partition is both the parameter
// storage and AdamW's fp32 master values, so a rank holds 4 bytes of values, 4 of gradient and 8 of
// exp_avg and exp_avg_sq per element of its partition, about 16·M/dp in all. A block's full
// parameters exist only while it runs. runBlock makes each block one cut (cut.ts):
//
//   forward    all-gather the block's flat group (tag zero3.allgather.fwd.<label>) into its Parameter
//              slots, run it without a graph, free the parameters; only its input is kept
//   backward   all-gather again (zero3.allgather.bwd.<label>), recompute the block from its input,
//              backpropagate the incoming gradient through it, sum the pieces several tensor-parallel
//              ranks hold alike, reduce-scatter its gradients into the owners' partitions (average,
//              zero3.reducescatter.grads.<label>) and free the parameters
//
// as activation checkpointing does: keeping the block's graph would keep its gathered parameters
// alive until backward. step() runs AdamW on the partition in place; the next forward gathers.

import type { BlockRunner, ModelBlock } from "../nn/phi3.ts";
import type { Parameter } from "../nn/parameter.ts";
import { type AdamWStepOptions, weightDecayOf } from "../optim/adamw.ts";
import { noGrad } from "../tensor/autograd.ts";
import * as ops from "../tensor/ops/index.ts";
import { keep, tidy } from "../tensor/scope.ts";
import { cut } from "./cut.ts";
import { FlatPartition, type GradientWeight } from "./flat_partition.ts";
import type { RankFragments, RankState } from "./fragment_map.ts";
import type { RankMemory, Strategy, StrategyContext } from "./strategy.ts";

const F32 = 4;

export class Zero3 implements Strategy {
  readonly fragments: RankFragments;
  private readonly partition: FlatPartition;
  private largestGathered = 0;

  /** The context's parameter slots must hold their values (f32, on one device); they are freed and left empty. */
  constructor(private readonly context: StrategyContext) {
    const { parameters, blocks, fragments, data, codec, adamw } = context;
    this.fragments = fragments;
    const byName = new Map(parameters.map((slot) => [slot.name, slot]));
    for (const slot of parameters) {
      if (!slot.value) {
        throw new RangeError(
          `zero3: parameter "${slot.name}" holds no value; build the model with a factory that allocates each shard once`,
        );
      }
    }
    blocks.forEach((block, g) => {
      const names = fragments.flatGroups[g]?.names ?? [];
      if (names.join() !== block.parameters.map((p) => p.name).join()) {
        throw new RangeError(
          `zero3: block ${block.label} does not match flat group ${g} of the fragment map (${names.join(", ")})`,
        );
      }
    });
    const value = (name: string) => byName.get(name)!.value!;
    const decay = (name: string) => weightDecayOf(byName.get(name)!.shape, adamw.weightDecay);
    this.partition = new FlatPartition(parameters[0].value!.device, fragments, data, codec, adamw, value, decay);
    for (const slot of parameters) {
      slot.value!.dispose();
      slot.value = null;
    }
  }

  readonly runBlock: BlockRunner = async (block, x, tokens) => {
    const g = this.context.blocks.indexOf(block);
    if (g < 0) throw new RangeError(`zero3: block ${block.label} is not one of the model's blocks`);
    const [y] = await cut(
      `zero3.${block.label}`,
      x ? [x] : [],
      () => this.gathered(g, "fwd", () => noGrad(async () => [await block.run(x, tokens)])),
      ([gradient], [input]) =>
        this.gathered(g, "bwd", () =>
          tidy(async () => {
            const leaf = input ? input.view(input.shape) : null;
            if (leaf) leaf.requiresGrad = true;
            await (await block.run(leaf, tokens)).backward(gradient);
            await this.context.sumReplicated(block.parameters);
            await this.reduceScatterGradients(g, block);
            const inputGradient = leaf?.grad ?? null;
            if (leaf) leaf.grad = null;
            return [inputGradient];
          })),
      x ? [x] : [],
    );
    return y;
  };

  /** Nothing left to do: each block's gradients were reduce-scattered in its backward. */
  reduceGradients(): Promise<void> {
    return Promise.resolve();
  }

  /** Σ g² over every rank's partition: this rank's, all-reduced over the data group. */
  async gradSquares(weight: GradientWeight): Promise<number> {
    const partial = await this.partition.gradSquares(weight);
    const [total] = await this.context.data.allReduce(new Float32Array([partial]), { op: "sum", tag: "zero.allreduce.gradnorm" });
    return total;
  }

  /** AdamW on the partition, in place. No all-gather: the next forward gathers. */
  step(options: AdamWStepOptions): Promise<void> {
    this.partition.stepAdamW(options);
    return Promise.resolve();
  }

  zeroGrad(): void {
    this.partition.zeroGrad();
  }

  memory(): RankMemory {
    const { values, gradients, moments } = this.partition.bytes();
    return {
      parameters: values,
      gradients,
      optimizer: moments,
      gathered: this.largestGathered,
      secondary: this.context.codec.memory(),
    };
  }

  exportState(): Promise<RankState> {
    return this.partition.exportState();
  }

  importState(state: RankState): Promise<void> {
    this.partition.importState(state);
    return Promise.resolve();
  }

  /** Frees the partition and its state (and any block still gathered). */
  dispose(): void {
    this.context.blocks.forEach((block) => this.release(block.parameters));
    this.partition.dispose();
  }

  /** Runs `fn` with block g's parameters gathered into its slots (requiresGrad leaves), and frees them after. */
  private async gathered<T>(g: number, pass: "fwd" | "bwd", fn: () => Promise<T>): Promise<T> {
    const block = this.context.blocks[g];
    await tidy(async () => {
      const full = await this.partition.allGather(g, `zero3.allgather.${pass}.${block.label}`, { label: block.label, pass });
      let offset = 0;
      for (const slot of block.parameters) {
        const value = ops.reshape(ops.slice(full, [offset], [slot.size]), slot.shape);
        value.requiresGrad = true;
        slot.value = keep(value);
        offset += slot.size;
      }
    });
    this.noteGathered();
    try {
      return await fn();
    } finally {
      this.release(block.parameters);
    }
  }

  /** The block's gradients (zeros for a slot without one), averaged over the data group into this rank's partition. */
  private async reduceScatterGradients(g: number, block: ModelBlock): Promise<void> {
    this.noteGathered();
    const grads = block.parameters.map((slot) => slot.tensor.grad);
    await this.partition.reduceScatter(g, grads, `zero3.reducescatter.grads.${block.label}`, block.label);
    for (const slot of block.parameters) {
      slot.tensor.grad?.dispose();
      slot.tensor.grad = null;
    }
  }

  private release(slots: readonly Parameter[]): void {
    for (const slot of slots) {
      slot.value?.grad?.dispose();
      slot.value?.dispose();
      slot.value = null;
    }
  }

  /** Tracks the largest working copy: every gathered value and gradient held right now. */
  private noteGathered(): void {
    let bytes = 0;
    for (const slot of this.context.parameters) bytes += F32 * ((slot.value?.size ?? 0) + (slot.value?.grad?.size ?? 0));
    this.largestGathered = Math.max(this.largestGathered, bytes);
  }
}
