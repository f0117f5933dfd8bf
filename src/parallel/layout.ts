// A parallel layout: how many ranks along each axis of the mesh, the ZeRO stage, the simulated
// nodes and the sequence-parallel implementation. This file is the one place for the rules that
// tie a layout to the world, the model and the batch:
//
//   parallelGroups   which mesh axes make the data group and the tensor-parallel group
//   resolveLayout    a layout on its own (axes ≥ 1, nodes of equal size, a ZeRO stage with ranks to partition over)
//   checkLayoutFits  the model and the batch against a layout: rows over dp, tokens over sp, heads
//                    and MLP width over the tensor-parallel ranks, query heads over the Ulysses ranks
//
// Every error names the numbers that do not fit.

import type { Comm } from "../comm/collectives.ts";
import { mesh, meshCoords } from "../comm/mesh.ts";
import type { Phi3Config } from "../nn/config.ts";

/** "ulysses": DeepSpeed-Ulysses head exchange; "megatron": the sp group runs Megatron tensor + sequence parallelism. */
export type SpImpl = "ulysses" | "megatron";
export const SP_IMPLS: readonly SpImpl[] = ["ulysses", "megatron"];

export type ZeroStage = 0 | 1 | 2 | 3;

export interface ParallelLayout {
  /** Data-parallel replicas: each trains its own rows of the global batch. */
  dp: number;
  /** Tensor-parallel ranks (Megatron). */
  tp: number;
  /** Sequence-parallel ranks: each holds its own tokens of every row. */
  sp: number;
  /** ZeRO stage over the data group; 0 is plain DDP. */
  zero: ZeroStage;
  /** Simulated nodes: consecutive ranks share a node (world / nodes per node). */
  nodes: number;
  spImpl: SpImpl;
}

export const SINGLE_RANK: Readonly<ParallelLayout> = { dp: 1, tp: 1, sp: 1, zero: 0, nodes: 1, spImpl: "ulysses" };

export function worldSize(layout: ParallelLayout): number {
  return layout.dp * layout.tp * layout.sp;
}

/**
 * The size of the data group: the ranks that hold the same parameters and train different tokens,
 * over which gradients are averaged and ZeRO partitions. With Ulysses these are the dp × sp ranks
 * (each sp rank trains other tokens with the whole layer); with Megatron sequence parallelism the
 * sp ranks hold different weight shards, so only the dp ranks.
 */
export function dataParallelSize(layout: ParallelLayout): number {
  return layout.spImpl === "ulysses" ? layout.dp * layout.sp : layout.dp;
}

/** The size of the tensor-parallel group, over which the weights are split: tp, or sp under Megatron-SP. */
export function tensorParallelSize(layout: ParallelLayout): number {
  return layout.spImpl === "megatron" ? layout.sp : layout.tp;
}

/** The process groups one rank trains with, all derived from one mesh over the world. */
export interface ParallelGroups {
  /** The data group (see dataParallelSize). */
  data: Comm;
  /** The tensor-parallel group: the ranks that split the weights (tp, or sp under Megatron-SP). */
  tensorParallel: Comm;
  /** The Ulysses group, over which attention heads are exchanged; null without Ulysses. */
  ulysses: Comm | null;
  /** Megatron-SP: between the tensor-parallel regions, activations are split along the sequence. */
  sequenceParallel: boolean;
  /** The dp axis alone: this rank's replica picks the rows it trains. */
  dp: Comm;
}

/** The groups of `world`'s rank under `layout` ([pp, dp, sp, tp] mesh, tp fastest). */
export function parallelGroups(world: Comm, layout: ParallelLayout): ParallelGroups {
  const grid = mesh(world, { dp: layout.dp, sp: layout.sp, tp: layout.tp });
  const megatron = layout.spImpl === "megatron";
  return {
    data: megatron ? grid.dp : grid.spanning(["dp", "sp"]),
    tensorParallel: megatron ? grid.sp : grid.tp,
    ulysses: !megatron && layout.sp > 1 ? grid.sp : null,
    sequenceParallel: megatron && layout.sp > 1,
    dp: grid.dp,
  };
}

/** Where world rank `rank` sits in its data group and in its tensor-parallel group (the ranks' order in parallelGroups). */
export function groupIndices(layout: ParallelLayout, rank: number): { data: number; tensorParallel: number } {
  const { dp, sp } = meshCoords(rank, { pp: 1, dp: layout.dp, sp: layout.sp, tp: layout.tp });
  const tp = rank % layout.tp;
  return layout.spImpl === "megatron" ? { data: dp, tensorParallel: sp } : { data: dp * layout.sp + sp, tensorParallel: tp };
}

/** A full layout from the options given (the rest as on one rank), checked on its own. */
export function resolveLayout(options: Partial<ParallelLayout>): ParallelLayout {
  const layout = { ...SINGLE_RANK, ...dropUndefined(options) };
  for (const axis of ["dp", "tp", "sp", "nodes"] as const) {
    const value = layout[axis];
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`parallel: --${axis} must be an integer ≥ 1, got ${value}`);
  }
  if (![0, 1, 2, 3].includes(layout.zero)) throw new RangeError(`parallel: --zero must be 0, 1, 2 or 3, got ${layout.zero}`);
  if (!SP_IMPLS.includes(layout.spImpl)) {
    throw new RangeError(`parallel: --sp-impl must be one of ${SP_IMPLS.join(", ")}, got "${layout.spImpl}"`);
  }
  const world = worldSize(layout);
  if (world % layout.nodes !== 0) {
    throw new RangeError(
      `parallel: ${world} ranks (dp ${layout.dp} × tp ${layout.tp} × sp ${layout.sp}) do not split into ${layout.nodes} nodes of equal size`,
    );
  }
  if (layout.zero > 0 && dataParallelSize(layout) === 1) {
    throw new RangeError(
      `parallel: --zero ${layout.zero} partitions over data-parallel ranks, but there is only one (dp ${layout.dp}); use --dp 2 or more, or --zero 0`,
    );
  }
  if (layout.spImpl === "megatron" && layout.sp > 1 && layout.tp > 1) {
    throw new RangeError(
      `parallel: --sp-impl megatron runs tensor and sequence parallelism on the same ranks (the sp group); give --sp ${layout.sp} with --tp 1, not --tp ${layout.tp}`,
    );
  }
  return layout;
}

/** Checks that the model and the batch divide as the layout needs, naming the numbers that do not. */
export function checkLayoutFits(layout: ParallelLayout, model: Phi3Config, batch: number, seq: number): void {
  rowsPerReplica(batch, layout.dp);
  tokensPerRank(seq, layout.sp);
  const tpSize = tensorParallelSize(layout);
  checkTensorParallelFits(
    model,
    tpSize,
    layout.spImpl === "megatron" && layout.sp > 1 ? `sp ${tpSize} (megatron)` : `tp ${tpSize}`,
  );
  if (layout.spImpl === "ulysses") checkUlyssesHeads(model.numHeads / layout.tp, layout.sp);
}

/** The rows of a global batch of `batch` rows that each of `dp` replicas trains. */
export function rowsPerReplica(batch: number, dp: number): number {
  if (batch % dp !== 0) {
    throw new RangeError(
      `parallel: the global batch of ${batch} rows does not divide among dp ${dp} replicas (${batch} % ${dp} = ${batch % dp})`,
    );
  }
  return batch / dp;
}

/** The tokens of a row of `seq` tokens that each of `sp` sequence-parallel ranks holds. */
export function tokensPerRank(seq: number, sp: number): number {
  if (!Number.isInteger(sp) || sp < 1) throw new RangeError(`parallel: sp must be a positive integer, got ${sp}`);
  if (!Number.isInteger(seq) || seq < 1 || seq % sp !== 0) {
    throw new RangeError(
      `parallel: a sequence of ${seq} tokens does not divide among sp ${sp} ranks (${seq} % ${sp} = ${seq % sp})`,
    );
  }
  return seq / sp;
}

/**
 * Checks that the query heads, the key/value heads and the MLP width split evenly over `parts`
 * tensor-parallel ranks (`what` names them in the message): the query heads and the MLP width
 * divide by parts; the kv heads divide by parts when parts ≤ numKvHeads, and divide parts otherwise
 * (each kv head then sits on parts / numKvHeads ranks).
 */
export function checkTensorParallelFits(model: Phi3Config, parts: number, what = `tp ${parts}`): void {
  if (!Number.isInteger(parts) || parts < 1) throw new RangeError(`parallel: tp must be an integer ≥ 1, got ${parts}`);
  const { numHeads, numKvHeads, intermediateSize } = model;
  if (numHeads % parts !== 0) {
    throw new RangeError(
      `parallel: ${numHeads} attention heads do not split evenly over ${what} (${numHeads} % ${parts} = ${numHeads % parts})`,
    );
  }
  if (parts <= numKvHeads && numKvHeads % parts !== 0) {
    throw new RangeError(
      `parallel: ${numKvHeads} key/value heads do not split evenly over ${what} (${numKvHeads} % ${parts} = ${
        numKvHeads % parts
      })`,
    );
  }
  if (parts > numKvHeads && parts % numKvHeads !== 0) {
    throw new RangeError(
      `parallel: ${what} is more than the ${numKvHeads} key/value heads but not a multiple of them (${parts} % ${numKvHeads} = ${
        parts % numKvHeads
      }), so each kv head cannot sit on the same number of ranks`,
    );
  }
  if (intermediateSize % parts !== 0) {
    throw new RangeError(
      `parallel: an MLP width of ${intermediateSize} does not split evenly over ${what} (${intermediateSize} % ${parts} = ${
        intermediateSize % parts
      })`,
    );
  }
}

/** Ulysses gives each of its `sp` ranks at least one of the `numHeads` query heads (a tensor-parallel rank's own). */
export function checkUlyssesHeads(numHeads: number, sp: number): void {
  if (numHeads < sp) {
    throw new RangeError(
      `parallel: ${numHeads} query heads cannot be split over sp ${sp} ranks (each rank needs at least one head)`,
    );
  }
}

function dropUndefined<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}
