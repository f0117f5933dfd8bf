// A rank's ZeRO partition on its device: the fp32 master values, AdamW's exp_avg and exp_avg_sq and
// the averaged gradient, each one flat tensor in partition order, so that a fragment's (start,
// numel) of the fragment map addresses the same elements of all of them. Shared by ZeRO-1/2
// (zero.ts) and ZeRO-3 (zero3.ts).
//
// Every movement of a flat group across the data group goes through the partition codec
// (partition_codec.ts): the all-gather of the master values, and the reduce-scatter of the
// gradients. AdamW steps the whole partition in one fused kernel, its weight decay given per run
// (matrices decayed, norm gains and padding not), which is, element for element, the update AdamW
// gives the parameters themselves; padding has zero values and gradients and stays zero.

import type { Comm } from "../comm/collectives.ts";
import type { DecayRun } from "../backend/backend.ts";
import { type AdamWHyperparameters, type AdamWStepOptions, checkStepOptions } from "../optim/adamw.ts";
import { type WeightedRun, weightedSquareSum } from "../optim/clip.ts";
import type { Device } from "../tensor/device.ts";
import * as ops from "../tensor/ops/index.ts";
import { keep, tidy } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { RankFragments, RankState } from "./fragment_map.ts";
import type { BlockGather, PartitionCodec } from "./partition_codec.ts";
import type { FlatGroup } from "./zero_partition.ts";

const F32 = 4;

/**
 * How much each element of a parameter's gradient counts in a weighted Σ g²: one weight for the
 * whole parameter, or weights for consecutive runs of its flattened elements (covering it).
 */
export type GradientWeight = (name: string) => number | WeightedRun[];

export class FlatPartition {
  readonly master: Tensor;
  readonly expAvg: Tensor;
  readonly expAvgSq: Tensor;
  /** The averaged gradient of the partition once every flat group is reduced; null after step. */
  grad: Tensor | null = null;
  /** AdamW updates applied. */
  step = 0;
  private readonly decayRuns: DecayRun[];
  /** Which flat groups' gradients have arrived since the last step. */
  private readonly reduced: boolean[];

  /**
   * `values(name)` gives the rank's shard of a parameter (any shape, f32); the master values are
   * its fragments, in partition order. `decayOf(name)` is that parameter's weight decay.
   */
  constructor(
    readonly device: Device,
    readonly layout: RankFragments,
    private readonly data: Comm,
    private readonly codec: PartitionCodec,
    private readonly hyper: AdamWHyperparameters,
    values: (name: string) => Tensor,
    decayOf: (name: string) => number,
  ) {
    // The fragments and the padding, in partition order.
    const stretches = [
      ...layout.fragments.map((f) => ({
        start: f.start,
        numel: f.numel,
        name: f.name as string | null,
        shardOffset: f.shardOffset,
      })),
      ...layout.padding.map(([start, numel]) => ({ start, numel, name: null, shardOffset: 0 })),
    ].sort((a, b) => a.start - b.start);
    this.master = keep(ops.noGrad(() =>
      tidy(() =>
        ops.concat(
          stretches.map((s) =>
            s.name ? ops.slice(ops.reshape(values(s.name), [-1]), [s.shardOffset], [s.numel]) : device.zeros([s.numel])
          ),
          0,
        )
      )
    ));
    this.expAvg = keep(device.zeros([layout.numel]));
    this.expAvgSq = keep(device.zeros([layout.numel]));
    this.decayRuns = [];
    for (const { start, name } of stretches) {
      // Padding takes the rate of the run before it (its values stay zero whatever the rate).
      const weightDecay = name ? decayOf(name) : this.decayRuns.at(-1)?.weightDecay ?? 0;
      if (this.decayRuns.at(-1)?.weightDecay !== weightDecay) this.decayRuns.push({ start, weightDecay });
    }
    this.reduced = layout.flatGroups.map(() => false);
  }

  get groups(): FlatGroup[] {
    return this.layout.flatGroups;
  }

  /**
   * The master values of flat group `group`, all-gathered over the data group: [paddedNumel] (tag
   * `tag`; `block` says which ZeRO-3 gather it is, for the codec).
   */
  allGather(group: number, tag: string, block?: { label: string; pass: "fwd" | "bwd" }): Promise<Tensor> {
    const { start, partNumel } = this.groups[group];
    const gather: BlockGather | undefined = block && { group, ...block };
    return tidy(() => this.codec.allGather(this.data, ops.slice(this.master, [start], [partNumel]), tag, gather));
  }

  /**
   * Reduce-scatters (average over the data group, tag `tag`; `label` names ZeRO-3's block) the
   * gradients of flat group `group`'s parameters, given in its order (null counts as zeros), into
   * this rank's part of the partition gradient. Each flat group is reduced once between steps.
   */
  async reduceScatter(group: number, grads: readonly (Tensor | null)[], tag: string, label?: string): Promise<void> {
    const { names, sizes, numel, paddedNumel, start } = this.groups[group];
    if (this.reduced[group]) throw new RangeError(`zero: flat group ${group} (${names[0]} …) was reduced twice before a step`);
    await tidy(async () => {
      const flat = ops.concat([
        ...grads.map((grad, i) => grad ? ops.reshape(grad, [-1]) : this.device.zeros([sizes[i]])),
        ...(paddedNumel > numel ? [this.device.zeros([paddedNumel - numel])] : []),
      ]);
      const part = await this.codec.reduceScatter(this.data, flat, tag, label);
      this.grad ??= keep(this.device.zeros([this.layout.numel]));
      ops.writeRange(this.grad, start, part);
    });
    this.reduced[group] = true;
  }

  /** Σ g² over the partition gradient (0 before any arrives), each element weighted as `weight` says of its parameter. */
  async gradSquares(weight: GradientWeight = () => 1): Promise<number> {
    if (!this.grad) return 0;
    return await weightedSquareSum([{ grad: this.grad, runs: weightedRuns(this.layout, weight) }]);
  }

  /** AdamW on the whole partition in one dispatch; then the gradient is freed. Requires every flat group's gradient. */
  stepAdamW(options: AdamWStepOptions): void {
    checkStepOptions("zero.step", options);
    const missing = this.reduced.indexOf(false);
    if (missing >= 0) {
      throw new RangeError(`zero.step: flat group ${missing} (${this.groups[missing].names[0]} …) has no gradient yet`);
    }
    this.step++;
    ops.adamwUpdate(this.master, this.grad!, this.expAvg, this.expAvgSq, {
      ...this.hyper,
      lr: options.lr,
      gradScale: options.gradScale ?? 1,
      step: this.step,
      decayRuns: this.decayRuns,
    });
    this.zeroGrad();
  }

  zeroGrad(): void {
    this.grad?.dispose();
    this.grad = null;
    this.reduced.fill(false);
  }

  /** Bytes of the master values, of the gradient, and of exp_avg with exp_avg_sq. */
  bytes(): { values: number; gradients: number; moments: number } {
    const values = F32 * this.layout.numel;
    return { values, gradients: this.grad ? values : 0, moments: 2 * values };
  }

  /** The partition's state, in fragment-map order. */
  async exportState(): Promise<RankState> {
    const [fp32, expAvg, expAvgSq] = await Promise.all([this.master.read(), this.expAvg.read(), this.expAvgSq.read()]);
    return { step: this.step, fp32: fp32 as Float32Array, expAvg: expAvg as Float32Array, expAvgSq: expAvgSq as Float32Array };
  }

  /** Overwrites the partition's state with `state` (laid out as this rank's fragment map). */
  importState(state: RankState): void {
    for (const [key, target] of [["fp32", this.master], ["expAvg", this.expAvg], ["expAvgSq", this.expAvgSq]] as const) {
      if (state[key].length !== this.layout.numel) {
        throw new RangeError(
          `zero: the state's ${key} holds ${state[key].length} elements, this rank's partition ${this.layout.numel}`,
        );
      }
      tidy(() => ops.writeRange(target, 0, this.device.tensor(state[key], [this.layout.numel])));
    }
    this.step = state.step;
  }

  dispose(): void {
    this.zeroGrad();
    for (const t of [this.master, this.expAvg, this.expAvgSq]) t.dispose();
  }
}

/** The partition cut into runs of equal weight (padding, whose gradient is zero, joins the run before it). */
function weightedRuns(layout: RankFragments, weight: GradientWeight): WeightedRun[] {
  const runs: WeightedRun[] = [];
  const push = (start: number, numel: number, w: number, name: string) => {
    if (!(Number.isFinite(w) && w >= 0)) {
      throw new RangeError(`zero: the gradient weight of "${name}" must be a finite number ≥ 0, got ${w}`);
    }
    const last = runs.at(-1);
    if (last && last.weight === w && last.start + last.numel === start) last.numel += numel;
    else runs.push({ start, numel, weight: w });
  };
  for (const fragment of [...layout.fragments].sort((a, b) => a.start - b.start)) {
    const w = weight(fragment.name);
    if (typeof w === "number") {
      push(fragment.start, fragment.numel, w, fragment.name);
      continue;
    }
    // The fragment holds elements [shardOffset, shardOffset + numel) of its shard: take each run's overlap.
    const [lo, hi] = [fragment.shardOffset, fragment.shardOffset + fragment.numel];
    for (const run of w) {
      const [from, to] = [Math.max(lo, run.start), Math.min(hi, run.start + run.numel)];
      if (from < to) push(fragment.start + from - lo, to - from, run.weight, fragment.name);
    }
  }
  return runs;
}
