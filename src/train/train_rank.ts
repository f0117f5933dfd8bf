// The entry every rank runs to train in parallel (launch({ entry: this module, args })): the
// rank's part of the model for the layout (src/parallel/engine.ts), trained on its share of each
// global batch. Every step it emits the global loss and the figures of its own step (bytes sent by
// link class, simulated communication time, memory, the step's collective records; rank 0 adds the
// fragment map on its first step, so that a page can show who holds what); at the end it returns
// the losses, its optimizer state and its entry of the fragment map (rank 0 adds the whole map:
// with every rank's state, assembleState puts the whole training state back together), and its
// ledger.

import type { RankContext } from "../comm/rank_context.ts";
import type { CollectiveRecord } from "../comm/ledger.ts";
import { batchRows } from "../data/corpus.ts";
import { clipScale } from "../optim/clip.ts";
import { NonFiniteError } from "../tensor/errors.ts";
import { warmupCosine } from "../optim/schedule.ts";
import { ParallelEngine, type TokenBatch } from "../parallel/engine.ts";
import type { FragmentMap, RankFragments, RankState } from "../parallel/fragment_map.ts";
import type { RankMemory } from "../parallel/strategy.ts";
import { loadCheckpoint, saveCheckpoint } from "../checkpoint/distributed.ts";
import { readInitState } from "../checkpoint/hf_import.ts";
import { failAsStepBegins, failDuringSave, type PlannedFailure } from "./rank_failures.ts";
import { runStart, saveDue, storageAt, trainingRecord } from "./checkpointing.ts";
import { checkTrainConfig, type TrainConfig, trainLayout, zeroppOptions } from "./config.ts";
import { divergenceAt, TrainingDivergedError } from "./divergence.ts";

export interface TrainRankArgs {
  config: TrainConfig;
  /** For tests and demos only: ranks that fail on purpose at chosen steps (rank_failures.ts). */
  failures?: PlannedFailure[];
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
  memory: RankMemory;
  /** Bytes held on this rank's device after the step. */
  deviceBytes: number;
  /** This rank's collectives of the step, in call order (its ledger's records since the previous step). */
  collectives: CollectiveRecord[];
  /** Rank 0's first step of a launch only: where every piece of the training state lies on every rank. */
  fragmentMap?: FragmentMap;
}

export interface TrainRankResult {
  losses: number[];
  /** This rank's optimizer state after the last step, laid out as `fragments` says. */
  state: RankState;
  /** This rank's entry of the fragment map. */
  fragments: RankFragments;
  /** The fragment map of the whole layout (rank 0 only; null elsewhere). */
  fragmentMap: FragmentMap | null;
  collectives: CollectiveRecord[];
  memory: RankMemory;
}

export default async function trainRank(ctx: RankContext, args: TrainRankArgs): Promise<TrainRankResult> {
  const { config, failures = [] } = args;
  const modelConfig = checkTrainConfig(config);
  const layout = trainLayout(config);
  const start = await runStart(config, modelConfig);
  const ddp = config.bucketCapMb === undefined ? {} : { bucketBytes: Math.round(config.bucketCapMb * 2 ** 20) };
  const engine = ParallelEngine.create(ctx.comm, ctx.device, modelConfig, {
    layout,
    seed: start.seed,
    adamw: start.adamw,
    ddp,
    zeropp: zeroppOptions(config),
  });
  const lrAt = warmupCosine(start.schedule);
  const share = engine.share(config.batch, config.seq);
  let memory: RankMemory | null = null;
  // The last checkpoint of the run, which a divergence names: the one it resumed from, then each one it saved.
  let lastCheckpoint = config.resume ?? null;
  try {
    if (start.checkpoint) {
      await engine.importState(await loadCheckpoint(ctx.comm, start.checkpoint, modelConfig, engine.fragmentMap(), ctx.rank));
    }
    if (start.initFrom) await engine.importState(await readInitState(start.initFrom, engine.fragmentMap(), ctx.rank));
    const losses: number[] = [];
    for (let step = start.step; step < config.steps; step++) {
      await failAsStepBegins(ctx, failures, step + 1);
      const began = performance.now();
      const recorded = ctx.comm.ledger.collectives.length;
      const rows = batchRows({ seed: start.seed, step, rowStart: share.rowStart, rowCount: share.rowCount, seq: config.seq });
      const batch: TokenBatch = {
        ids: tokenColumns(rows.inputs, config.seq, share.tokenStart, share.tokenCount),
        targets: tokenColumns(rows.targets, config.seq, share.tokenStart, share.tokenCount),
        rows: share.rowCount,
        tokens: share.tokenCount,
      };
      const lr = lrAt(step);
      const rankLoss = await engine.forwardBackward(batch).catch((error) => {
        // ZeRO++'s quantized gradients refuse NaN or ±Inf on the rank that holds them, in backward.
        if (!(error instanceof NonFiniteError)) throw error;
        throw new TrainingDivergedError({
          step: step + 1,
          what: "gradients",
          value: NaN,
          lr: config.lr,
          checkpoint: lastCheckpoint,
        });
      });
      const gradNorm = await engine.reduceGradients();
      // Sampled with the gradients reduced and not yet freed (the full gradients exist during backward
      // under every stage: the reductions run after it).
      memory = engine.memory();
      // The gradient norm is the world's, the same on every rank, so every rank stops here together
      // (reducing the loss first, to name it when it is not finite either) and none applies the step.
      const diverged = (loss: number) =>
        divergenceAt(step + 1, { loss, gradNorm }, { lr: config.lr, checkpoint: lastCheckpoint });
      if (!Number.isFinite(gradNorm)) throw diverged(await engine.reduceLoss(rankLoss))!;
      await engine.step(lr, start.clipNorm > 0 ? clipScale(gradNorm, start.clipNorm) : 1);
      const loss = await engine.reduceLoss(rankLoss);
      // Cross-entropy's gradients are bounded, so a loss can overflow while they stay finite: the
      // step's update is then finite, but the run stops before it reports or saves the step.
      const lossDiverged = diverged(loss);
      if (lossDiverged) throw lossDiverged;
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
        seconds: (performance.now() - began) / 1000,
        sent,
        simulatedMs: records.reduce((sum, record) => sum + record.simulatedMs, 0),
        memory,
        deviceBytes: ctx.device.stats().bytes,
        collectives: records,
        ...(ctx.rank === 0 && step === start.step ? { fragmentMap: engine.fragmentMap() } : {}),
      };
      ctx.emit(event);
      // After the step's figures, so that a save's own traffic is not counted as the step's.
      if (saveDue(config, step + 1)) {
        const state = await engine.exportState();
        await failDuringSave(ctx, failures, step + 1, storageAt(config.save!), state);
        const folder = await saveCheckpoint(ctx.comm, storageAt(config.save!), "", {
          state,
          map: engine.fragmentMap(),
          model: modelConfig,
          training: trainingRecord(config, start, step + 1),
        });
        lastCheckpoint = `${config.save}/${folder}`;
      }
    }
    return {
      losses,
      state: await engine.exportState(),
      fragments: engine.fragments(),
      fragmentMap: ctx.rank === 0 ? engine.fragmentMap() : null,
      collectives: ctx.comm.ledger.toJSON().collectives,
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
