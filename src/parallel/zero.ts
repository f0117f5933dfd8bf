// ZeRO stages 1 and 2 (DeepSpeed semantics) over the data group.
//
// Every rank holds the whole model, trains its share of the batch and runs backward as in DDP. The
// optimizer state is partitioned (zero_partition.ts, flat_partition.ts): each rank keeps the fp32
// master values of its partition of one flat group of every parameter, with AdamW's exp_avg and
// exp_avg_sq, 12 bytes per element of the partition instead of 12 per parameter. After backward
// the flat gradient is reduce-scattered (avg, tag zero{stage}.reducescatter.grads): each rank
// receives its partition's averaged gradient. step() runs AdamW on the partition, then all-gathers
// the updated partitions (tag zero{stage}.allgather.params) into every parameter: Ψ + Ψ per step,
// DDP's volume (the ZeRO paper's point). The stages differ in gradient memory: stage 1 keeps every
// parameter's full .grad until zeroGrad() (DeepSpeed stage 1 does not partition gradients), stage 2
// frees them as soon as they are reduced.

import { runAsIs } from "../nn/phi3.ts";
import type { Parameter } from "../nn/parameter.ts";
import { type AdamWStepOptions, weightDecayOf } from "../optim/adamw.ts";
import * as ops from "../tensor/ops/index.ts";
import { tidy } from "../tensor/scope.ts";
import { FlatPartition, type GradientWeight } from "./flat_partition.ts";
import type { RankFragments, RankState } from "./fragment_map.ts";
import { checkGradients, type RankMemory, type Strategy, type StrategyContext } from "./strategy.ts";

const F32 = 4;

export class ZeroOptimizer implements Strategy {
  readonly runBlock = runAsIs;
  readonly fragments: RankFragments;
  private readonly partition: FlatPartition;
  private readonly byName: Map<string, Parameter>;

  constructor(private readonly context: StrategyContext, readonly stage: 1 | 2) {
    const { parameters, fragments, data, codec, adamw } = context;
    this.fragments = fragments;
    this.byName = new Map(parameters.map((p) => [p.name, p]));
    const device = parameters[0].tensor.device;
    const value = (name: string) => this.byName.get(name)!.tensor;
    const decay = (name: string) => weightDecayOf(this.byName.get(name)!.shape, adamw.weightDecay);
    this.partition = new FlatPartition(device, fragments, data, codec, adamw, value, decay);
  }

  /**
   * After backward, with every parameter's .grad holding this rank's gradient: sums the pieces
   * several tensor-parallel ranks hold alike, then reduce-scatters the average over the data group
   * into this rank's partition. Stage 1 leaves the full .grads in place, stage 2 frees them.
   */
  async reduceGradients(): Promise<void> {
    checkGradients(`zero${this.stage}.reduceGradients`, this.context.parameters);
    await this.context.sumReplicated(this.context.parameters);
    for (const [g, group] of this.partition.groups.entries()) {
      const params = group.names.map((name) => this.byName.get(name)!.tensor);
      await this.partition.reduceScatter(g, params.map((p) => p.grad), `zero${this.stage}.reducescatter.grads`);
      if (this.stage === 2) { for (const param of params) (param.grad?.dispose(), param.grad = null); }
    }
  }

  /** Σ g² over every rank's partition: this rank's, all-reduced over the data group. */
  async gradSquares(weight: GradientWeight): Promise<number> {
    const partial = await this.partition.gradSquares(weight);
    const [total] = await this.context.data.allReduce(new Float32Array([partial]), { op: "sum", tag: "zero.allreduce.gradnorm" });
    return total;
  }

  /** AdamW on the partition, then every parameter takes the all-gathered updated values. */
  async step(options: AdamWStepOptions): Promise<void> {
    this.partition.stepAdamW(options);
    await this.gatherParameters(`zero${this.stage}.allgather.params`);
  }

  zeroGrad(): void {
    for (const param of this.byName.values()) {
      param.tensor.grad?.dispose();
      param.tensor.grad = null;
    }
    this.partition.zeroGrad();
  }

  memory(): RankMemory {
    const { values, gradients, moments } = this.partition.bytes();
    let parameters = 0;
    let full = 0;
    for (const { tensor } of this.byName.values()) {
      parameters += F32 * tensor.size;
      full += F32 * (tensor.grad?.size ?? 0);
    }
    return { parameters, gradients: full + gradients, optimizer: values + moments, gathered: 0, secondary: 0 };
  }

  exportState(): Promise<RankState> {
    return this.partition.exportState();
  }

  /** Puts the partition back, then every parameter takes the all-gathered master values (tag zero{stage}.allgather.load). */
  async importState(state: RankState): Promise<void> {
    this.partition.importState(state);
    await this.gatherParameters(`zero${this.stage}.allgather.load`);
  }

  dispose(): void {
    this.partition.dispose();
  }

  /** Every flat group's master values all-gathered and written into the parameters' own memory. */
  private async gatherParameters(tag: string): Promise<void> {
    for (const [g, group] of this.partition.groups.entries()) {
      await tidy(async () => {
        const full = await this.partition.allGather(g, tag);
        let offset = 0;
        for (const name of group.names) {
          const param = this.byName.get(name)!.tensor;
          ops.writeRange(param, 0, full, offset, param.size);
          offset += param.size;
        }
      });
    }
  }
}
