// Distributed data parallelism (DDP): every rank of the data group holds the whole model (its
// tensor-parallel shards of it) and trains its own equal share of the global batch's tokens; after
// backward, the gradients are averaged over the group so that every replica applies the same
// update, the one a single rank would apply to the whole batch. AdamW keeps each parameter's state;
// exported, the rank's flat state is its shards and their moments one after another in model order.
//
// The average goes in buckets, as in PyTorch's DistributedDataParallel: the parameters are taken
// in reverse order (the order backward finishes their gradients), and a bucket closes once it
// holds at least `bucketBytes`; a parameter is never split. Each bucket's gradients are flattened
// into one reused host array (each gradient read once), averaged with one in-place all-reduce
// tagged `ddp.allreduce.bucket{i}`, and written back as each parameter's .grad on its device.
//
// Why the result is not bit-identical to one rank: one rank sums the per-token gradients of the
// whole batch in one order; here each replica sums its rows' gradients (scaled by 1/its tokens),
// and the all-reduce then adds the replicas' sums in ring order and divides by dp. The same real
// number, rounded along a different summation order: equal to one rank to float precision.

import type { Comm } from "../comm/collectives.ts";
import { runAsIs } from "../nn/phi3.ts";
import { AdamW, type AdamWStepOptions } from "../optim/adamw.ts";
import { weightedSquareSum } from "../optim/clip.ts";
import * as ops from "../tensor/ops/index.ts";
import { keep, tidy } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { GradientWeight } from "./flat_partition.ts";
import type { RankFragments, RankState } from "./fragment_map.ts";
import { checkGradients, type RankMemory, type Strategy, type StrategyContext } from "./strategy.ts";

/** PyTorch DDP's default bucket cap. */
export const DEFAULT_BUCKET_BYTES = 25 * 2 ** 20;

export interface DdpOptions {
  /** A bucket closes once its gradients hold at least this many bytes (default 25 MiB). */
  bucketBytes?: number;
}

/** The parameters whose gradients travel in one all-reduce, and where each lies in its flat array. */
export interface Bucket {
  names: string[];
  offsets: number[];
  sizes: number[];
  /** The bucket's gradients, flattened; reused every step. */
  flat: Float32Array;
}

/** Buckets over the parameters in reverse order, each closing once it reaches `bucketBytes`. */
export function planBuckets(params: readonly (readonly [string, { size: number }])[], bucketBytes: number): Bucket[] {
  const buckets: Bucket[] = [];
  let names: string[] = [];
  let sizes: number[] = [];
  let elements = 0;
  const close = () => {
    const offsets = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a + b, 0));
    buckets.push({ names, offsets, sizes, flat: new Float32Array(elements) });
    names = [];
    sizes = [];
    elements = 0;
  };
  for (let i = params.length - 1; i >= 0; i--) {
    const [name, param] = params[i];
    names.push(name);
    sizes.push(param.size);
    elements += param.size;
    if (elements * Float32Array.BYTES_PER_ELEMENT >= bucketBytes) close();
  }
  if (names.length > 0) close();
  return buckets;
}

/** DDP: the whole model on every rank of the data group, gradients averaged in buckets, AdamW per parameter. */
export class DataParallel implements Strategy {
  readonly runBlock = runAsIs;
  readonly bucketBytes: number;
  readonly fragments: RankFragments;
  private readonly named: [string, Tensor][];
  private readonly optimizer: AdamW;
  private readonly data: Comm;
  private buckets: Bucket[] | null = null;

  constructor(private readonly context: StrategyContext) {
    const bucketBytes = context.ddp?.bucketBytes ?? DEFAULT_BUCKET_BYTES;
    if (!Number.isInteger(bucketBytes) || bucketBytes < 1) {
      throw new RangeError(`ddp: bucketBytes must be a positive integer number of bytes, got ${bucketBytes}`);
    }
    this.bucketBytes = bucketBytes;
    this.data = context.data;
    this.fragments = context.fragments;
    this.named = context.parameters.map((p) => [p.name, p.tensor]);
    this.optimizer = new AdamW(this.named, context.adamw);
  }

  /** The buckets of the last reduction (planned on the first). */
  get plan(): readonly Bucket[] {
    return this.buckets ?? [];
  }

  /**
   * Sums the rows several tensor-parallel ranks hold alike, then replaces every parameter's .grad
   * by its average over the data group (a missing .grad counts as zeros).
   */
  async reduceGradients(): Promise<void> {
    checkGradients("ddp.reduceGradients", this.context.parameters);
    await this.context.sumReplicated(this.context.parameters);
    this.buckets ??= planBuckets(this.named, this.bucketBytes);
    const byName = new Map(this.named);
    for (const [i, bucket] of this.buckets.entries()) {
      const members = bucket.names.map((name) => byName.get(name)!);
      // Every read-back of the bucket in flight at once: each waits for the device to finish.
      const grads = await Promise.all(members.map((param) => param.grad?.read() ?? null));
      grads.forEach((grad, j) => {
        const target = bucket.flat.subarray(bucket.offsets[j], bucket.offsets[j] + bucket.sizes[j]);
        if (grad) target.set(grad as Float32Array);
        else target.fill(0);
      });
      await this.data.allReduce(bucket.flat, { op: "avg", tag: `ddp.allreduce.bucket${i}`, out: bucket.flat });
      for (const [j, param] of members.entries()) {
        const values = bucket.flat.slice(bucket.offsets[j], bucket.offsets[j] + bucket.sizes[j]);
        param.grad?.dispose();
        param.grad = keep(param.device.tensor(values, param.shape));
      }
    }
  }

  /** The gradients are the same on every rank of the data group: this rank's own weighted Σ g². */
  async gradSquares(weight: GradientWeight): Promise<number> {
    const terms = this.named.flatMap(([name, param]) => {
      if (!param.grad) return [];
      const w = weight(name);
      return [{ grad: param.grad, runs: typeof w === "number" ? [{ start: 0, numel: param.grad.size, weight: w }] : w }];
    });
    return await weightedSquareSum(terms);
  }

  step(options: AdamWStepOptions): Promise<void> {
    this.optimizer.step(options);
    return Promise.resolve();
  }

  zeroGrad(): void {
    this.optimizer.zeroGrad();
  }

  /** Parameters, their gradients and both moments, whole on every rank. */
  memory(): RankMemory {
    const bytes = this.named.reduce((sum, [, p]) => sum + 4 * p.size, 0);
    return { parameters: bytes, gradients: bytes, optimizer: 2 * bytes, gathered: 0, secondary: 0 };
  }

  exportState(): Promise<RankState> {
    return exportShardState(this.named, this.optimizer, this.fragments);
  }

  importState(state: RankState): Promise<void> {
    importShardState(this.named, this.optimizer, this.fragments, state);
    return Promise.resolve();
  }

  dispose(): void {
    this.optimizer.zeroGrad();
    this.optimizer.dispose();
  }
}

/** Where parameter `name`'s shard begins in a flat state of whole shards. */
function startOf(fragments: RankFragments, name: string): number {
  return Math.min(...fragments.fragments.filter((f) => f.name === name).map((f) => f.start));
}

/**
 * The flat state of whole shards, one after another in model order (DDP's, and one device's), from
 * the parameters and their AdamW state; every parameter must have taken as many steps.
 */
export async function exportShardState(
  named: readonly [string, Tensor][],
  optimizer: AdamW,
  fragments: RankFragments,
): Promise<RankState> {
  const { numel } = fragments;
  const state: RankState = {
    step: 0,
    fp32: new Float32Array(numel),
    expAvg: new Float32Array(numel),
    expAvgSq: new Float32Array(numel),
  };
  const steps = new Set<number>();
  for (const [name, param] of named) {
    const record = optimizer.state(name);
    steps.add(record.step);
    const start = startOf(fragments, name);
    const [fp32, expAvg, expAvgSq] = await Promise.all([param.read(), record.expAvg.read(), record.expAvgSq.read()]);
    state.fp32.set(fp32 as Float32Array, start);
    state.expAvg.set(expAvg as Float32Array, start);
    state.expAvgSq.set(expAvgSq as Float32Array, start);
  }
  if (steps.size > 1) {
    throw new RangeError(`ddp: the parameters have taken different numbers of steps (${[...steps].join(", ")})`);
  }
  state.step = [...steps][0];
  return state;
}

/** Puts a flat state of whole shards (exportShardState's layout) into the parameters and their AdamW state. */
export function importShardState(
  named: readonly [string, Tensor][],
  optimizer: AdamW,
  fragments: RankFragments,
  state: RankState,
): void {
  for (const key of ["fp32", "expAvg", "expAvgSq"] as const) {
    if (state[key].length !== fragments.numel) {
      throw new RangeError(`ddp: the state's ${key} holds ${state[key].length} elements, this rank's shards ${fragments.numel}`);
    }
  }
  for (const [name, param] of named) {
    const record = optimizer.state(name);
    const start = startOf(fragments, name);
    tidy(() => {
      for (const [key, target] of [["fp32", param], ["expAvg", record.expAvg], ["expAvgSq", record.expAvgSq]] as const) {
        ops.writeRange(target, 0, param.device.tensor(state[key].subarray(start, start + param.size), [param.size]));
      }
    });
    record.step = state.step;
  }
}
