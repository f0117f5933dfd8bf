// What every rank of a layout holds for training, worked out from the model's shape alone: the
// figures the strategies report as RankMemory once they run (strategy.ts memory()), for a model of
// any size, phi3-mini's 3.8 billion parameters included, without allocating a tensor. All values
// are f32 (4 bytes), AdamW keeps two moments (8 bytes), and ZeRO partitions are padded as
// zero_partition.ts pads them:
//
//   DDP        parameters 4Ψ, gradients 4Ψ, optimizer 8Ψ                    (Ψ: the rank's tp shards)
//   ZeRO-1     parameters 4Ψ, gradients 4Ψ + 4P, optimizer 12P           (P: its partition, Ψ/N padded;
//   ZeRO-2     parameters 4Ψ, gradients 4P,      optimizer 12P            the fp32 master values 4P and
//   ZeRO-3     parameters 4P, gradients 4P,      optimizer 8P             the moments 8P)
//
// ZeRO-3's partition is also the parameter storage; each block is partitioned on its own (P sums
// each block's part, padded), `gathered` is the largest block's values and gradients while it runs
// (8 bytes per element of the rank's shards of it), and ZeRO++'s hpZ keeps each block's gathered
// values over the node's g ranks: `secondary` is Σ padded block / g, in the dtype it travels in.

import { CpuBackend } from "../backend/cpu/cpu_backend.ts";
import { paramCount, type Phi3Config } from "../nn/config.ts";
import { shapeOnly } from "../nn/parameter.ts";
import { Phi3ForCausalLM } from "../nn/phi3.ts";
import { Device } from "../tensor/device.ts";
import { sizeOf } from "../tensor/shape.ts";
import { checkLayoutFits, dataParallelSize, groupIndices, type ParallelLayout, tensorParallelSize, worldSize } from "./layout.ts";
import type { RankMemory } from "./strategy.ts";
import { tensorParallelShards } from "./tp_shards.ts";
import { partitionParameters } from "./zero_partition.ts";
import { NO_ZEROPP, type ZeroppOptions } from "./zeropp_codec.ts";

const F32 = 4;

export interface MemoryPlan {
  /** Parameters of the whole model. */
  parameters: number;
  layout: ParallelLayout;
  zeropp: ZeroppOptions;
  /** What each rank holds, in world-rank order, as the strategy on that rank reports it. */
  ranks: RankMemory[];
}

/**
 * The memory every rank of `layout` holds to train `model` (with ZeRO++'s options under ZeRO-3),
 * computed from shapes; throws, naming the numbers, when the layout does not fit the model.
 */
export function memoryPlan(model: Phi3Config, layout: ParallelLayout, zeropp: ZeroppOptions = NO_ZEROPP): MemoryPlan {
  // Memory does not depend on the batch: one row per replica and one token per sp rank fit any layout.
  checkLayoutFits(layout, model, layout.dp, layout.sp);
  const blocks = blockNames(model);
  const tpSize = tensorParallelSize(layout);
  const byShard = Array.from({ length: tpSize }, (_, index) => shardMemory(model, layout, zeropp, blocks, index));
  const ranks = Array.from(
    { length: worldSize(layout) },
    (_, rank) => ({ ...byShard[groupIndices(layout, rank).tensorParallel] }),
  );
  return { parameters: paramCount(model), layout: { ...layout }, zeropp: { ...zeropp }, ranks };
}

/** Bytes of all the kinds of memory a rank holds together. */
export function memoryTotal(memory: RankMemory): number {
  return memory.parameters + memory.gradients + memory.optimizer + memory.gathered + memory.secondary;
}

/** What a rank holding tensor-parallel shard `index` holds (every rank of a data group holds as much). */
function shardMemory(
  model: Phi3Config,
  layout: ParallelLayout,
  zeropp: ZeroppOptions,
  blocks: string[][],
  index: number,
): RankMemory {
  const shards = tensorParallelShards(model, tensorParallelSize(layout), index);
  const numel = new Map([...shards].map(([name, shard]) => [name, sizeOf(shard.shape)]));
  const shardsNumel = [...numel.values()].reduce((a, b) => a + b, 0);
  if (layout.zero === 0) {
    const bytes = F32 * shardsNumel;
    return { parameters: bytes, gradients: bytes, optimizer: 2 * bytes, gathered: 0, secondary: 0 };
  }
  const groups = layout.zero === 3 ? blocks : [blocks.flat()];
  const data = dataParallelSize(layout);
  const partition = partitionParameters([...numel], groups, data, 0);
  const part = F32 * partition.numel;
  if (layout.zero === 1) {
    return { parameters: F32 * shardsNumel, gradients: F32 * shardsNumel + part, optimizer: 3 * part, gathered: 0, secondary: 0 };
  }
  if (layout.zero === 2) {
    return { parameters: F32 * shardsNumel, gradients: part, optimizer: 3 * part, gathered: 0, secondary: 0 };
  }
  const largestBlock = Math.max(...blocks.map((names) => names.reduce((sum, name) => sum + numel.get(name)!, 0)));
  const hpz = zeropp.hpzPartitionSize;
  const secondaryBytes = zeropp.commDtype === "f16" ? 2 : F32;
  const secondary = hpz > 1 ? partition.groups.reduce((sum, group) => sum + (group.paddedNumel / hpz) * secondaryBytes, 0) : 0;
  return { parameters: part, gradients: part, optimizer: 2 * part, gathered: 2 * F32 * largestBlock, secondary };
}

/** The parameter names of the model's blocks (the embedding, each decoder layer, the head), from a model of shapes alone. */
function blockNames(model: Phi3Config): string[][] {
  const shapes = new Phi3ForCausalLM(new Device(new CpuBackend()), model, { parameters: shapeOnly });
  return shapes.blocks.map((block) => block.parameters.map((p) => p.name));
}
