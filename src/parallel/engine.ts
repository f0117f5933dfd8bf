// The parallel training engine: one rank's model, optimizer and communication for a layout, as
// DeepSpeed's engine is. A step on every rank of the world:
//
//   forwardBackward   the rank's tokens through its blocks, one graph cut at each collective (ZeRO-3:
//                     each block gathered before its forward, gathered again and recomputed in
//                     backward, its replicated pieces summed and its gradients reduce-scattered),
//                     backward through every cut
//   reduceGradients   replicated pieces summed where each rank saw only part of their uses, then
//                     the average over the data group (DDP buckets, or ZeRO's reduce-scatter);
//                     returns the global gradient norm
//   step              AdamW: on whole parameters (DDP) or on this rank's flat partition (ZeRO)
//
// The groups come from one mesh over the world. The data group holds the ranks that keep the same
// parameters and train different tokens: dp × sp with Ulysses, dp with Megatron-SP.

import type { Comm } from "../comm/collectives.ts";
import { mesh } from "../comm/mesh.ts";
import type { Phi3Config } from "../nn/config.ts";
import { AdamW } from "../optim/adamw.ts";
import type { Device } from "../tensor/device.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { DataParallel, type DdpOptions } from "./ddp.ts";
import type { ParallelLayout } from "./layout.ts";
import { type ModelBlock, ParallelPhi3, type TokenBatch } from "./parallel_model.ts";
import { gradientSquares, gradientWeights, sumReplicatedGradients } from "./replicated_gradients.ts";
import { cut } from "./cut.ts";
import { tensorParallelParameters, type TensorParallelShard, tensorParallelShards, unshardValues } from "./tp_shards.ts";
import type { ZeroFragment } from "./zero_partition.ts";
import { type ZeroMemory, ZeroOptimizer } from "./zero.ts";
import { Zero3Parameters } from "./zero3.ts";

export interface EngineOptions {
  layout: ParallelLayout;
  seed: number;
  /** AdamW's decoupled weight decay (default 0.1). */
  weightDecay?: number;
  ddp?: DdpOptions;
}

/** Which tokens of the global batch a rank trains: rows from its dp rank, a column range from its sp rank (Ulysses). */
export interface TokenShare {
  rowStart: number;
  rowCount: number;
  tokenStart: number;
  tokenCount: number;
}

export class ParallelEngine {
  readonly model: ParallelPhi3;
  private readonly named: [string, Tensor][];
  private readonly adamw: AdamW | null = null;
  private readonly ddp: DataParallel | null = null;
  private readonly zero: ZeroOptimizer | null = null;
  private readonly zero3: Zero3Parameters | null = null;

  private constructor(
    readonly layout: ParallelLayout,
    readonly device: Device,
    readonly config: Phi3Config,
    /** The group the losses and gradients are averaged over. */
    readonly data: Comm,
    readonly groups: { shards: Comm; ulysses: Comm | null; dp: Comm },
    options: EngineOptions,
  ) {
    const { shards } = groups;
    const sequenceParallel = layout.spImpl === "megatron" && layout.sp > 1;
    const factory = tensorParallelParameters(device, options.seed, config, shards.size, shards.rank);
    this.model = new ParallelPhi3(factory, config, { shards, ulysses: groups.ulysses, sequenceParallel });
    const adamwOptions = { weightDecay: options.weightDecay ?? 0.1 };
    if (layout.zero === 3) {
      // The partitions are taken from the values just built, which are then freed.
      this.zero3 = new Zero3Parameters(data, this.model.parameters(), this.model.blocks.map(blockNames), adamwOptions);
      this.named = [];
      return;
    }
    this.named = this.model.parameters().map((p) => [p.name, p.tensor]);
    if (layout.zero === 0) {
      this.adamw = new AdamW(this.named, adamwOptions);
      this.ddp = new DataParallel(data, options.ddp);
    } else {
      this.zero = new ZeroOptimizer(data, this.named, {
        stage: layout.zero,
        groups: [this.named.map(([name]) => name)],
        adamw: adamwOptions,
      });
    }
  }

  /** Builds this rank's part of the model for `layout` over the world communicator `comm`. */
  static create(comm: Comm, device: Device, config: Phi3Config, options: EngineOptions): ParallelEngine {
    const { layout } = options;
    const grid = mesh(comm, { dp: layout.dp, sp: layout.sp, tp: layout.tp });
    const megatron = layout.spImpl === "megatron";
    // Ranks that share this rank's parameters: the dp × sp ranks (under Megatron-SP the sp ranks hold other shards).
    const data = megatron ? grid.dp : grid.spanning(["dp", "sp"]);
    const shards = megatron ? grid.sp : grid.tp;
    const ulysses = !megatron && layout.sp > 1 ? grid.sp : null;
    return new ParallelEngine(layout, device, config, data, { shards, ulysses, dp: grid.dp }, options);
  }

  /** The tokens of a global batch of `batch` rows of `seq` tokens this rank trains. */
  share(batch: number, seq: number): TokenShare {
    const rowCount = batch / this.layout.dp;
    const ulysses = this.groups.ulysses;
    const tokenCount = ulysses ? seq / ulysses.size : seq;
    return {
      rowStart: this.groups.dp.rank * rowCount,
      rowCount,
      tokenStart: ulysses ? ulysses.rank * tokenCount : 0,
      tokenCount,
    };
  }

  /** Forward and backward of this rank's tokens; returns its mean loss over them. */
  async forwardBackward(batch: TokenBatch): Promise<number> {
    let x: Tensor | null = null;
    for (const [g, block] of this.model.blocks.entries()) {
      const y: Tensor = this.zero3 ? await this.recomputedBlock(g, block, x, batch) : await block.run(x, batch);
      x?.dispose();
      x = y;
    }
    const loss = x!;
    try {
      await loss.backward();
      // Read after backward, so that a step without collectives in backward waits for the device once.
      const [value] = await loss.read();
      return value;
    } finally {
      loss.dispose();
    }
  }

  /**
   * Averages the gradients over the data group (after summing replicated pieces where each rank saw
   * only part of their uses) and returns the global gradient norm before clipping.
   */
  async reduceGradients(): Promise<number> {
    const { shards } = this.groups;
    if (!this.zero3) await sumReplicatedGradients(this.model, this.named, shards, this.layout.spImpl === "megatron");
    if (this.ddp) await this.ddp.reduceGradients(this.named);
    if (this.zero) await this.zero.reduceGradients();
    let squares: number;
    if (this.zero || this.zero3) {
      const partial = await (this.zero ?? this.zero3)!.partitionGradSquares(gradientWeights(this.model, shards.size));
      [squares] = await this.data.allReduce(new Float32Array([partial]), { op: "sum", tag: "zero.allreduce.gradnorm" });
    } else {
      squares = await gradientSquares(this.model, this.named, shards.size);
    }
    if (shards.size > 1) {
      [squares] = await shards.allReduce(new Float32Array([squares]), { op: "sum", tag: "tp.allreduce.gradnorm" });
    }
    return Math.sqrt(squares);
  }

  async step(lr: number, gradScale: number): Promise<void> {
    if (this.adamw) {
      this.adamw.step({ lr, gradScale });
      this.adamw.zeroGrad();
    } else if (this.zero) {
      await this.zero.step({ lr, gradScale });
      this.zero.zeroGrad();
    } else {
      this.zero3!.step({ lr, gradScale });
      this.zero3!.zeroGrad();
    }
  }

  /** The global batch's mean loss from this rank's mean over its tokens (every rank trains as many tokens). */
  async reduceLoss(loss: number): Promise<number> {
    const [mean] = await this.data.allReduce(new Float32Array([loss]), { op: "avg", tag: "engine.allreduce.loss" });
    return mean;
  }

  /** Bytes this rank holds for parameters, gradients and optimizer state. */
  memory(): ZeroMemory {
    if (this.zero) return this.zero.memory();
    if (this.zero3) return this.zero3.memory();
    const bytes = this.named.reduce((sum, [, p]) => sum + 4 * p.size, 0);
    return { parameters: bytes, gradients: bytes, optimizer: 2 * bytes, gathered: 0 };
  }

  /** Where this rank's pieces lie: its tensor-parallel shards and its ZeRO fragments (plain data for checkpoints). */
  fragments(): { tensorParallel: Record<string, TensorParallelShard>; zero: ZeroFragment[] } {
    return { tensorParallel: Object.fromEntries(this.model.shards), zero: (this.zero ?? this.zero3)?.partition.fragments ?? [] };
  }

  /** Every parameter's full value by Hugging Face name, put together from all ranks' pieces (collective). */
  async consolidated(): Promise<Map<string, Float32Array>> {
    const local = this.zero3
      ? await this.zero3.consolidated()
      : new Map(await Promise.all(this.named.map(async ([name, p]) => [name, (await p.read()) as Float32Array] as const)));
    const { shards } = this.groups;
    const full = new Map<string, Float32Array>();
    for (const [name, values] of local) {
      if (shards.size === 1) {
        full.set(name, values);
        continue;
      }
      const gathered = await shards.allGather(values, { tag: "engine.allgather.consolidate" });
      const pieces = Array.from({ length: shards.size }, (_, r) => gathered.subarray(r * values.length, (r + 1) * values.length));
      const shardsOf = Array.from(
        { length: shards.size },
        (_, r) => tensorParallelShards(this.config, shards.size, r).get(name)!,
      );
      full.set(name, unshardValues(pieces, shardsOf));
    }
    return full;
  }

  dispose(): void {
    this.adamw?.dispose();
    this.zero?.dispose();
    this.zero3?.dispose();
    for (const p of this.model.parameters()) {
      p.value?.grad?.dispose();
      p.value?.dispose();
      p.value = null;
    }
  }

  /**
   * ZeRO-3: the block runs once in the forward with its parameters gathered and freed after (its
   * graph dropped: only its input is kept), and once more in backward, gathered again, to compute
   * its gradients, which are reduce-scattered into the owners' partitions before the parameters
   * are freed again.
   */
  private async recomputedBlock(g: number, block: ModelBlock, x: Tensor | null, batch: TokenBatch): Promise<Tensor> {
    const zero3 = this.zero3!;
    const input = x?.retainedHandle() ?? null;
    const [y] = await cut(`zero3.${block.label}`, x ? [x] : [], async () => {
      await zero3.gather(g, "fwd", block.label);
      try {
        const out = await block.run(input, batch);
        const value = out.retainedHandle();
        out.dispose();
        return [value];
      } finally {
        zero3.release(g);
      }
    }, async ([gradient]) => {
      await zero3.gather(g, "bwd", block.label);
      const leaf = input ? input.view(input.shape) : null;
      if (leaf) leaf.requiresGrad = true;
      try {
        const out = await block.run(leaf, batch);
        await out.backward(gradient);
        out.dispose();
        const named = block.parameters.map((p): [string, Tensor] => [p.name, p.tensor]);
        await sumReplicatedGradients(this.model, named, this.groups.shards, this.layout.spImpl === "megatron");
        await zero3.reduceScatterGradients(g, block.label);
        const inputGradient = leaf?.grad ?? null;
        if (leaf) leaf.grad = null;
        return [inputGradient];
      } finally {
        zero3.release(g);
        leaf?.dispose();
        input?.dispose();
      }
    });
    return y;
  }
}

function blockNames(block: ModelBlock): string[] {
  return block.parameters.map((p) => p.name);
}
