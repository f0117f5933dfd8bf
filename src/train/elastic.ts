// Elastic training: a run that goes on when a rank dies, as Universal Checkpointing's resilience
// runs do. When a rank throws, exits or stops answering (RankFailedError), every rank is stopped
// (launch does that), the last committed checkpoint of the run's save folder is taken, the
// survivors get the best layout that fits them (elastic_layout.ts), and the world is launched again
// on it, loading the checkpoint with resharding, to the run's step count. Each failure is recorded
// with what it cost; the steps after a resume are, bit for bit, those of a run started on the new
// layout from the same checkpoint.

import { openCheckpoint } from "../checkpoint/load.ts";
import { RankFailedError, type RankFailureKind } from "../comm/errors.ts";
import { type ParallelLayout, worldSize } from "../parallel/layout.ts";
import { storageAt } from "./checkpointing.ts";
import { checkTrainConfig, type TrainConfig, trainLayout } from "./config.ts";
import { ElasticError, type SurvivingLayout, survivingLayout } from "./elastic_layout.ts";
import { type ParallelRun, type ParallelRunOptions, trainParallel } from "./parallel_run.ts";
import type { PlannedFailure } from "./rank_failures.ts";
import type { StepMetrics } from "./trainer.ts";
import type { RankStepEvent } from "./train_rank.ts";

/** A rank that failed, and how the run went on. */
export interface ElasticEvent {
  failedRank: number;
  failure: RankFailureKind;
  /** The failed rank's error, or what its peers reported of it. */
  cause: string;
  /** The last step every rank finished; the rank failed after it (in the next step, or in the save after it). */
  lastStep: number;
  /** The checkpoint folder the run went on from; null when none was committed yet and it started over, or it stopped. */
  resumedFrom: string | null;
  resumedStep: number;
  oldLayout: ParallelLayout;
  /** The layout the survivors go on with; null when none fits them and the run stops (with an ElasticError). */
  newLayout: ParallelLayout | null;
  /** Steps trained after the checkpoint and before the failure, trained again. */
  stepsLost: number;
  /** What else changed (nodes, ZeRO stage, idle survivors), or why the run stops, in words. */
  notes: string[];
}

export interface ElasticRun {
  /** Every step as it was trained, lost steps included, with the attempt (0: the first launch) it belongs to. */
  history: (StepMetrics & { attempt: number })[];
  events: ElasticEvent[];
  /** The config of the last attempt: the layout the run ended on. */
  config: TrainConfig;
  /** The last attempt's ranks. */
  ranks: ParallelRun["ranks"];
}

export interface ElasticOptions {
  onStep?: (metrics: StepMetrics, attempt: number) => void;
  /** Called once a failure is dealt with, before the world is launched again. */
  onFailure?: (event: ElasticEvent) => void;
  /** Failures on purpose, for tests and demos (rank_failures.ts). */
  failures?: PlannedFailure[];
  /** How long a rank waits for a peer in a collective before it names it unresponsive (launch's timeoutMs). */
  timeoutMs?: number;
  /** Every rank's report of every step, as it arrives (trainParallel's onRankStep). */
  onRankStep?: ParallelRunOptions["onRankStep"];
  /** The rank worker's script, for a page that bundles shardlab (launch's workerUrl). */
  workerUrl?: string | URL;
}

/** Trains `config` (a layout of two or more ranks, saving with `save`) to its last step, going on after failed ranks. */
export async function trainElastic(config: TrainConfig, options: ElasticOptions = {}): Promise<ElasticRun> {
  checkTrainConfig({ ...config, elastic: true });
  const history: ElasticRun["history"] = [];
  const events: ElasticEvent[] = [];
  let failures = options.failures ?? [];
  let current = config;
  let startStep = config.resume ? (await openCheckpoint(storageAt(config.resume), "")).metadata.training.step : 0;
  for (let attempt = 0;; attempt++) {
    // The last step the world finished: once one rank reports a step, every rank has been through its
    // last collective (the others' reports may still be on their way when a failure stops them).
    let lastStep = startStep;
    const onRankStep = (rank: number, report: RankStepEvent) => {
      lastStep = Math.max(lastStep, report.step);
      options.onRankStep?.(rank, report);
    };
    const onStep = (metrics: StepMetrics) => {
      history.push({ ...metrics, attempt });
      options.onStep?.(metrics, attempt);
    };
    try {
      const { timeoutMs, workerUrl } = options;
      const run = await trainParallel(current, onStep, { timeoutMs, failures, onRankStep, workerUrl });
      return { history, events, config: current, ranks: run.ranks };
    } catch (error) {
      if (!(error instanceof RankFailedError)) throw error;
      const previous = events.at(-1);
      if (previous && lastStep === startStep && sameCause(previous.cause, error.cause)) {
        throw new ElasticError(
          `elastic: the world launched again failed the same way before finishing a step, so it is not a lost rank: ${error.message}`,
        );
      }
      // A planned failure has had its chance once its step is reached.
      failures = failures.filter((failure) => failure.step > lastStep + 1);
      const resume = await lastCheckpoint(config);
      let next: SurvivingLayout | null = null;
      let stop: ElasticError | null = null;
      try {
        next = survivingLayout(current, worldSize(trainLayout(current)) - 1);
      } catch (error) {
        if (!(error instanceof ElasticError)) throw error;
        stop = error;
      }
      const event: ElasticEvent = {
        failedRank: error.rank,
        failure: error.failure,
        cause: error.cause,
        lastStep,
        resumedFrom: next ? resume?.path ?? null : null,
        resumedStep: next ? resume?.step ?? 0 : lastStep,
        oldLayout: trainLayout(current),
        newLayout: next?.layout ?? null,
        stepsLost: next ? lastStep - (resume?.step ?? 0) : 0,
        notes: next?.notes ?? [stop!.message],
      };
      events.push(event);
      options.onFailure?.(event);
      if (!next) throw stop;
      // A run begun --init-from a model goes on from its checkpoint once it has one.
      current = { ...next.config, resume: resume?.path, initFrom: resume ? undefined : next.config.initFrom };
      startStep = event.resumedStep;
    }
  }
}

/** The last committed checkpoint of the run: its save folder's latest, else the checkpoint it started from. */
async function lastCheckpoint(config: TrainConfig): Promise<{ path: string; step: number } | null> {
  for (const path of [config.save!, config.resume]) {
    if (path === undefined) continue;
    const storage = storageAt(path);
    if (path === config.save && await storage.size("latest") === null) continue;
    const checkpoint = await openCheckpoint(storage, "");
    return { path: checkpoint.folder ? `${path}/${checkpoint.folder}` : path, step: checkpoint.metadata.training.step };
  }
  return null;
}

/** Whether two failures' causes read the same once rank numbers are set aside. */
function sameCause(a: string, b: string): boolean {
  const plain = (text: string) => text.split("\n")[0].replace(/\d+/g, "#");
  return plain(a) === plain(b);
}
