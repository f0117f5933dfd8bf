// The rank side of the sequence-parallel scaling table of `bench parallel`: bench/parallel.ts
// launches this module on the S ranks of an sp group (Ulysses or Megatron-SP). Each rank builds its
// part of SCALING_MODEL, runs one forward and backward of its share of a batch of B rows of N tokens,
// and returns what its ledger recorded: the bytes of every forward collective of the first decoder
// layer by tag, their simulated time, and the totals of the whole forward and backward.

import type { RankContext } from "../src/comm/rank_context.ts";
import { batchRows } from "../src/data/corpus.ts";
import type { Phi3Config } from "../src/nn/config.ts";
import { ParallelEngine } from "../src/parallel/engine.ts";
import type { ParallelLayout } from "../src/parallel/layout.ts";

/**
 * A bench-only model with as many kv heads as query heads and 8 of them, so that Ulysses splits the
 * heads over S = 8 ranks, and Megatron-SP shards every weight over 8 as well (384 / 8 = 48).
 */
export const SCALING_MODEL: Phi3Config = {
  vocabSize: 96,
  hiddenSize: 128,
  numLayers: 2,
  numHeads: 8,
  numKvHeads: 8,
  intermediateSize: 384,
  maxSeqLen: 512,
  ropeTheta: 10000,
  rmsNormEps: 1e-5,
};

/** The forward collectives of the first decoder layer: Ulysses' two all-to-alls, Megatron-SP's all-gathers and reduce-scatters. */
export const LAYER0_FORWARD = /^(ulysses\.alltoall|tp\.allgather|tp\.reducescatter)\.fwd\.layer0\./;

export interface ScalingRankArgs {
  layout: ParallelLayout;
  /** Rows (B) and tokens per row (N) of the whole batch. */
  batch: number;
  seq: number;
  seed: number;
}

export interface ScalingRankResult {
  rank: number;
  /** Bytes this rank sent in each forward collective of layer 0, by tag. */
  layer0Bytes: Record<string, number>;
  /** Simulated time of those collectives on this rank, ms. */
  layer0SimulatedMs: number;
  /** Bytes this rank sent in the whole forward and backward, and their simulated time. */
  stepBytes: number;
  stepSimulatedMs: number;
  loss: number;
}

export default async function scalingRank(ctx: RankContext, args: ScalingRankArgs): Promise<ScalingRankResult> {
  const { layout, batch, seq, seed } = args;
  const engine = ParallelEngine.create(ctx.comm, ctx.device, SCALING_MODEL, { layout, seed });
  try {
    const share = engine.share(batch, seq);
    const rows = batchRows({ seed, step: 0, rowStart: share.rowStart, rowCount: share.rowCount, seq });
    const columns = (values: Int32Array) => {
      const out = new Int32Array(share.rowCount * share.tokenCount);
      for (let r = 0; r < share.rowCount; r++) {
        out.set(values.subarray(r * seq + share.tokenStart, r * seq + share.tokenStart + share.tokenCount), r * share.tokenCount);
      }
      return out;
    };
    const loss = await engine.forwardBackward({
      ids: columns(rows.inputs),
      targets: columns(rows.targets),
      rows: share.rowCount,
      tokens: share.tokenCount,
    });

    const records = ctx.comm.ledger.toJSON().collectives;
    const layer0 = records.filter((record) => LAYER0_FORWARD.test(record.tag));
    const layer0Bytes: Record<string, number> = {};
    for (const record of layer0) layer0Bytes[record.tag] = (layer0Bytes[record.tag] ?? 0) + record.bytes;
    return {
      rank: ctx.rank,
      layer0Bytes,
      layer0SimulatedMs: layer0.reduce((sum, record) => sum + record.simulatedMs, 0),
      stepBytes: records.reduce((sum, record) => sum + record.bytes, 0),
      stepSimulatedMs: records.reduce((sum, record) => sum + record.simulatedMs, 0),
      loss,
    };
  } finally {
    engine.dispose();
  }
}
