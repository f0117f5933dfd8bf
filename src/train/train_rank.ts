// The entry every rank runs to train in parallel (launch({ entry: this module, args })): the
// rank's part of the model for the layout (src/parallel/engine.ts), trained on its share of each
// global batch. Every step it emits the global loss and the figures of its own step (bytes sent by
// link class, simulated communication time, memory); at the end it returns the losses, the
// consolidated parameters (on rank 0), its ledger and its fragment map.

import type { RankContext } from "../comm/rank_context.ts";
import type { CollectiveRecord } from "../comm/ledger.ts";
import { batchRows } from "../data/corpus.ts";
import { clipScale } from "../optim/clip.ts";
import { warmupCosine } from "../optim/schedule.ts";
import { ParallelEngine } from "../parallel/engine.ts";
import type { TokenBatch } from "../parallel/parallel_model.ts";
import type { TensorParallelShard } from "../parallel/tp_shards.ts";
import type { ZeroFragment } from "../parallel/zero_partition.ts";
import type { ZeroMemory } from "../parallel/zero.ts";
import { checkTrainConfig, type TrainConfig, trainLayout, warmupStepsOf } from "./config.ts";

export interface TrainRankArgs {
  config: TrainConfig;
}

/** What one rank reports after each step. */
export interface RankStepEvent {
  step: number;
  /** The global batch's mean loss (the same on every rank). */
  loss: number;
  gradNorm: number;
  lr: number;
  /** Tokens this rank trained on. */
  tokens: number;
  seconds: number;
  /** Bytes this rank sent during the step, by link class. */
  sent: { intra: number; inter: number };
  /** Simulated time of this rank's collectives in the step, ms. */
  simulatedMs: number;
  /** Bytes of parameters, gradients and optimizer state, once the gradients are reduced. */
  memory: ZeroMemory;
  /** Bytes held on this rank's device after the step. */
  deviceBytes: number;
}

export interface TrainRankResult {
  losses: number[];
  /** Every parameter after the last step, consolidated from all ranks' pieces (rank 0 only; empty elsewhere). */
  params: Record<string, Float32Array>;
  collectives: CollectiveRecord[];
  /** Where this rank's pieces lie: tensor-parallel shards and ZeRO fragments. */
  fragments: { tensorParallel: Record<string, TensorParallelShard>; zero: ZeroFragment[] };
  memory: ZeroMemory;
}

export default async function trainRank(ctx: RankContext, args: TrainRankArgs): Promise<TrainRankResult> {
  const { config } = args;
  const modelConfig = checkTrainConfig(config);
  const layout = trainLayout(config);
  const ddp = config.bucketCapMb === undefined ? {} : { bucketBytes: Math.round(config.bucketCapMb * 2 ** 20) };
  const engine = ParallelEngine.create(ctx.comm, ctx.device, modelConfig, {
    layout,
    seed: config.seed,
    weightDecay: config.weightDecay,
    ddp,
  });
  const lrAt = warmupCosine({
    maxLr: config.lr,
    minLr: config.lr / 10,
    warmupSteps: warmupStepsOf(config),
    totalSteps: config.steps,
  });
  const share = engine.share(config.batch, config.seq);
  const clipNorm = config.clipNorm ?? 1;
  let memory: ZeroMemory | null = null;
  try {
    const losses: number[] = [];
    for (let step = 0; step < config.steps; step++) {
      const start = performance.now();
      const recorded = ctx.comm.ledger.collectives.length;
      const rows = batchRows({ seed: config.seed, step, rowStart: share.rowStart, rowCount: share.rowCount, seq: config.seq });
      const batch: TokenBatch = {
        ids: tokenColumns(rows.inputs, config.seq, share.tokenStart, share.tokenCount),
        targets: tokenColumns(rows.targets, config.seq, share.tokenStart, share.tokenCount),
        rows: share.rowCount,
        tokens: share.tokenCount,
      };
      const lr = lrAt(step);
      const rankLoss = await engine.forwardBackward(batch);
      const gradNorm = await engine.reduceGradients();
      // Sampled with the gradients reduced and not yet freed (the full gradients exist during backward
      // under every stage: the reductions run after it).
      memory = engine.memory();
      await engine.step(lr, clipNorm > 0 ? clipScale(gradNorm, clipNorm) : 1);
      const loss = await engine.reduceLoss(rankLoss);
      losses.push(loss);

      const records = ctx.comm.ledger.collectives.slice(recorded);
      const sent = { intra: 0, inter: 0 };
      for (const record of records) for (const send of record.sends) sent[send.link] += send.bytes;
      const event: RankStepEvent = {
        step: step + 1,
        loss,
        gradNorm,
        lr,
        tokens: share.rowCount * share.tokenCount,
        seconds: (performance.now() - start) / 1000,
        sent,
        simulatedMs: records.reduce((sum, record) => sum + record.simulatedMs, 0),
        memory,
        deviceBytes: ctx.device.stats().bytes,
      };
      ctx.emit(event);
    }
    const params = await engine.consolidated();
    return {
      losses,
      params: ctx.rank === 0 ? Object.fromEntries(params) : {},
      collectives: ctx.comm.ledger.toJSON().collectives,
      fragments: engine.fragments(),
      memory: memory!,
    };
  } finally {
    engine.dispose();
  }
}

/** Columns [start, start + count) of every row of a row-major [rows, seq] array. */
function tokenColumns(values: Int32Array, seq: number, start: number, count: number): Int32Array {
  if (start === 0 && count === seq) return values;
  const rows = values.length / seq;
  const out = new Int32Array(rows * count);
  for (let r = 0; r < rows; r++) out.set(values.subarray(r * seq + start, r * seq + start + count), r * count);
  return out;
}
