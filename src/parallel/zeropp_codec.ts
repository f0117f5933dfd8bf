// ZeRO++ (Wang et al., 2023) as a partition codec of ZeRO-3: each of its three techniques replaces
// one of ZeRO-3's collectives, and ZeRO-3's schedule (zero3.ts) does not change.
//
//   qwZ  quantizedWeights     the forward all-gather (and the backward one without hpZ) moves
//                             block-quantized weights (INT8 by default), tag zeropp.qwz.<pass>.<label>
//   hpZ  hpzPartitionSize     every rank keeps a secondary partition of each block's gathered
//                             parameters over its node only (size = ranks per node), taken from
//                             the forward gather; the backward all-gather runs on it, over intra-node
//                             links alone (tag zeropp.hpz.bwd.<label>). It costs M/g of memory per
//                             rank, the paper's M/α, counted as RankMemory.secondary
//   qgZ  quantizedGradients   the gradient reduce-scatter becomes the hierarchical quantized
//                             all-to-all (INT4 by default; quantized_collectives.ts), tags
//                             zeropp.qgz.intra.<label> and zeropp.qgz.inter.<label>
//
// What none of them quantizes travels in commDtype (f32, or f16 as the paper's baseline). The
// master weights stay f32 and unquantized; the secondary partition is derived state, refreshed by
// every forward and never saved.

import type { Comm } from "../comm/collectives.ts";
import * as ops from "../tensor/ops/index.ts";
import { keep, tidy } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { type BlockGather, type CommDType, type PartitionCodec, plainAllGather, plainCodec } from "./partition_codec.ts";
import { quantizedAllGather, quantizedReduceScatter } from "./quantized_collectives.ts";

export interface ZeroppOptions {
  /** qwZ: block-quantized weight all-gathers. */
  quantizedWeights: boolean;
  /** hpZ: the size of the secondary partition, the ranks per node; 1 turns it off (DeepSpeed's zero_hpz_partition_size). */
  hpzPartitionSize: number;
  /** qgZ: the hierarchical quantized all-to-all for the gradients. */
  quantizedGradients: boolean;
  /** Width of qwZ's weights (default 8) and of qgZ's gradients (default 4). */
  weightBits: 4 | 8;
  gradientBits: 4 | 8;
  /** Elements per quantization block, one f32 scale each. */
  quantBlock: number;
  /** The dtype of what is not quantized. */
  commDtype: CommDType;
}

/** Plain ZeRO-3 in f32: nothing of ZeRO++ on. */
export const NO_ZEROPP: Readonly<ZeroppOptions> = {
  quantizedWeights: false,
  hpzPartitionSize: 1,
  quantizedGradients: false,
  weightBits: 8,
  gradientBits: 4,
  quantBlock: 2048,
  commDtype: "f32",
};

/** Whether any ZeRO++ technique is on (commDtype alone is plain ZeRO-3). */
export function usesZeropp(options: ZeroppOptions): boolean {
  return options.quantizedWeights || options.quantizedGradients || options.hpzPartitionSize > 1;
}

/** The codec of `options` over the data group `data`: plainCodec when no ZeRO++ technique is on. */
export function createCodec(options: ZeroppOptions, data: Comm): PartitionCodec {
  return usesZeropp(options) ? new ZeroppCodec(options, data) : plainCodec(options.commDtype);
}

export class ZeroppCodec implements PartitionCodec {
  /** hpZ: this rank's secondary partition of each flat group, from its last forward gather. */
  private readonly secondary = new Map<number, Tensor>();
  private readonly node: Comm;

  constructor(readonly options: ZeroppOptions, data: Comm) {
    if (data.size !== data.worldSize) {
      throw new RangeError(
        `parallel: ZeRO++ partitions over the whole world, but the data group holds ${data.size} of its ${data.worldSize} ranks ` +
          `(run it without tensor parallelism or Megatron-SP)`,
      );
    }
    const { hpzPartitionSize } = options;
    if (hpzPartitionSize !== 1 && hpzPartitionSize !== data.ranksPerNode) {
      throw new RangeError(
        `parallel: the hpZ partition size must be the ranks per node (${data.ranksPerNode}), or 1 to turn hpZ off; got ${hpzPartitionSize}`,
      );
    }
    this.node = data.nodeGroup();
  }

  async allGather(data: Comm, part: Tensor, tag: string, block?: BlockGather): Promise<Tensor> {
    const hpz = this.options.hpzPartitionSize > 1 && block !== undefined;
    if (hpz && block.pass === "bwd") return await this.gatherSecondary(block);
    const full = this.options.quantizedWeights && block
      ? await quantizedAllGather(data, part, this.spec(this.options.weightBits), `zeropp.qwz.${block.pass}.${block.label}`)
      : await plainAllGather(data, part, this.options.commDtype, tag);
    if (hpz) this.keepSecondary(block.group, full);
    return full;
  }

  reduceScatter(data: Comm, flat: Tensor, tag: string, label?: string): Promise<Tensor> {
    if (this.options.quantizedGradients && label !== undefined) {
      return quantizedReduceScatter(data, flat, this.spec(this.options.gradientBits), label);
    }
    return plainCodec(this.options.commDtype).reduceScatter(data, flat, tag);
  }

  /** Bytes of the secondary partitions held. */
  memory(): number {
    let bytes = 0;
    for (const t of this.secondary.values()) bytes += t.size * (t.dtype === "f16" ? 2 : 4);
    return bytes;
  }

  dispose(): void {
    for (const t of this.secondary.values()) t.dispose();
    this.secondary.clear();
  }

  private spec(bits: 4 | 8): ops.QuantSpec {
    return { bits, block: this.options.quantBlock };
  }

  /** This rank's node-local share of a forward gather, in commDtype, replacing the last one. */
  private keepSecondary(group: number, full: Tensor): void {
    const share = full.size / this.node.size;
    const slice = tidy(() => {
      const mine = ops.slice(full, [this.node.rank * share], [share]);
      return keep(this.options.commDtype === "f16" ? ops.cast(mine, "f16") : mine);
    });
    this.secondary.get(group)?.dispose();
    this.secondary.set(group, slice);
  }

  /** The backward gather over the node's secondary partitions. */
  private gatherSecondary(block: BlockGather): Promise<Tensor> {
    const secondary = this.secondary.get(block.group);
    if (!secondary) {
      throw new RangeError(`hpZ: block ${block.label} has no secondary partition yet; its forward gathers one`);
    }
    const tag = `zeropp.hpz.bwd.${block.label}`;
    if (secondary.dtype === "f16") return tidy(async () => ops.cast(await this.node.allGather(secondary, { tag }), "f32"));
    return this.node.allGather(secondary, { tag });
  }
}
