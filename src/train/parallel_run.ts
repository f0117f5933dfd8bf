// Training across ranks from the launching side: starts dp × tp × sp workers, each running
// train_rank.ts, and turns their per-step reports into one StepMetrics per step for the world (the
// global loss, bytes sent by all ranks by link class, the slowest rank's simulated communication
// time, and every rank's memory).

import { launch, type LaunchResult } from "../comm/launch.ts";
import { globalBatch } from "../data/corpus.ts";
import { worldSize } from "../parallel/layout.ts";
import { runStart } from "./checkpointing.ts";
import { checkTrainConfig, type TrainConfig, trainLayout } from "./config.ts";
import { trainingDivergence } from "./divergence.ts";
import type { PlannedFailure } from "./rank_failures.ts";
import type { StepMetrics } from "./trainer.ts";
import type { RankStepEvent, TrainRankArgs, TrainRankResult } from "./train_rank.ts";

/** train_rank.ts, by the name the rank worker knows it under (a bundled worker carries it inside). */
const ENTRY = "shardlab:train-rank";

export interface ParallelRun {
  /** One entry per step, for the whole world. */
  history: StepMetrics[];
  /** Every rank's result and the merged traffic of the run. */
  ranks: LaunchResult<TrainRankResult>;
}

export interface ParallelRunOptions {
  /** How long a rank waits for a peer in a collective (launch's timeoutMs). */
  timeoutMs?: number;
  /** Failures on purpose, for tests and demos (rank_failures.ts). */
  failures?: PlannedFailure[];
  /** Every rank's report of every step, as it arrives (onStep waits for the whole world's). */
  onRankStep?: (rank: number, report: RankStepEvent) => void;
  /** The rank worker's script, for a page that bundles shardlab (launch's workerUrl). */
  workerUrl?: string | URL;
}

export async function trainParallel(
  config: TrainConfig,
  onStep?: (metrics: StepMetrics) => void,
  options: ParallelRunOptions = {},
): Promise<ParallelRun> {
  const model = checkTrainConfig(config);
  const layout = trainLayout(config);
  // The seed of the data: the config's, or the checkpoint's when the run resumes one.
  const { seed } = await runStart(config, model);
  const ranks = worldSize(layout);
  const pending = new Map<number, RankStepEvent[]>();
  const history: StepMetrics[] = [];
  const onEvent = ({ rank, event }: { rank: number; event: unknown }) => {
    const report = event as RankStepEvent;
    options.onRankStep?.(rank, report);
    const reports = pending.get(report.step) ?? new Array<RankStepEvent>(ranks);
    reports[rank] = report;
    pending.set(report.step, reports);
    if (Object.keys(reports).length < ranks) return;
    pending.delete(report.step);
    const metrics = worldMetrics(config, seed, reports);
    history.push(metrics);
    onStep?.(metrics);
  };
  const args: TrainRankArgs = { config, failures: options.failures };
  try {
    const result = await launch<TrainRankResult>({
      ranks,
      ranksPerNode: ranks / layout.nodes,
      entry: ENTRY,
      args,
      backend: config.backend,
      timeoutMs: options.timeoutMs,
      onEvent,
      workerUrl: options.workerUrl,
    });
    return { history, ranks: result };
  } catch (error) {
    // Every rank stopped on the same non-finite loss or gradient norm: the run diverged, no rank was lost.
    throw trainingDivergence(error) ?? error;
  }
}

function worldMetrics(config: TrainConfig, seed: number, reports: RankStepEvent[]): StepMetrics {
  const { step, loss, gradNorm, lr } = reports[0];
  const slowest = Math.max(...reports.map((report) => report.seconds));
  const intra = reports.reduce((sum, report) => sum + report.sent.intra, 0);
  const inter = reports.reduce((sum, report) => sum + report.sent.inter, 0);
  return {
    step,
    loss,
    floor: globalBatch({ seed, step: step - 1, batch: config.batch, seq: config.seq }).floor,
    lr,
    gradNorm,
    tokensPerSec: (config.batch * config.seq) / slowest,
    deviceBytes: Math.max(...reports.map((report) => report.deviceBytes)),
    commBytes: { total: intra + inter, intra, inter },
    simTime: Math.max(...reports.map((report) => report.simulatedMs)),
    memory: reports.map((report) => report.memory),
  };
}
