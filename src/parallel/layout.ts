// A parallel layout: how many ranks along each axis of the mesh, the ZeRO stage, the simulated
// nodes and the sequence-parallel implementation, checked against the model and the batch before
// any worker starts, with errors that name the numbers that do not fit.

import type { Phi3Config } from "../nn/config.ts";

/** "ulysses": DeepSpeed-Ulysses head exchange; "megatron": the sp group runs Megatron tensor + sequence parallelism. */
export type SpImpl = "ulysses" | "megatron";
export const SP_IMPLS: readonly SpImpl[] = ["ulysses", "megatron"];

export type ZeroStage = 0 | 1 | 2 | 3;

export interface ParallelLayout {
  /** Data-parallel replicas. */
  dp: number;
  /** Tensor-parallel ranks (Megatron). */
  tp: number;
  /** Sequence-parallel ranks. */
  sp: number;
  /** ZeRO stage over the data-parallel ranks; 0 is plain DDP. */
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
 * The ranks that hold the same parameters and see different tokens: over them gradients are
 * averaged and ZeRO partitions. With Ulysses these are the dp × sp ranks (each sp rank trains other
 * tokens with the whole layer); with Megatron sequence parallelism the sp ranks hold different
 * weight shards, so only the dp ranks.
 */
function dataParallelSize(layout: ParallelLayout): number {
  return layout.spImpl === "ulysses" ? layout.dp * layout.sp : layout.dp;
}

/** The tensor-parallel degree the weights are sharded over: tp, or sp when Megatron-SP shards over the sp group. */
function weightShards(layout: ParallelLayout): number {
  return layout.spImpl === "megatron" ? layout.sp : layout.tp;
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
  if (batch % layout.dp !== 0) {
    throw new RangeError(
      `parallel: the global batch of ${batch} rows does not divide among dp ${layout.dp} replicas (${batch} % ${layout.dp} = ${
        batch % layout.dp
      })`,
    );
  }
  if (seq % layout.sp !== 0) {
    throw new RangeError(
      `parallel: a sequence of ${seq} tokens does not divide among sp ${layout.sp} ranks (${seq} % ${layout.sp} = ${
        seq % layout.sp
      })`,
    );
  }
  const shards = weightShards(layout);
  const { numHeads, numKvHeads, intermediateSize } = model;
  const what = layout.spImpl === "megatron" && layout.sp > 1 ? `sp ${shards} (megatron)` : `tp ${shards}`;
  if (numHeads % shards !== 0) throw new RangeError(`parallel: ${numHeads} attention heads do not split evenly over ${what}`);
  if (shards <= numKvHeads ? numKvHeads % shards !== 0 : shards % numKvHeads !== 0) {
    throw new RangeError(
      `parallel: ${numKvHeads} key/value heads fit ${what} only when one divides the other (each rank holds a share of them, or one replicated head)`,
    );
  }
  if (intermediateSize % shards !== 0) {
    throw new RangeError(`parallel: an MLP width of ${intermediateSize} does not split evenly over ${what}`);
  }
}

function dropUndefined<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}
