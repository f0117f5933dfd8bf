// The lab's run worker: trains one run off the page's thread and posts what each step did. The
// ranks are Web Workers nested inside this one (the bundled src/comm/rank_worker.ts); their
// checkpoints go to OPFS, whose synchronous file handles only dedicated workers have. A run with a
// planned failure goes through trainElastic, which resumes the survivors from the last checkpoint on
// the layout they fit; any other run through trainParallel. The page starts one of these for the
// lab's run and, to compare, another for the same run on one rank; stopping a run ends its worker.
//
// In: {type: "start", config, failure}. Out: "step" (the world's metrics and every rank's report of
// that step, the attempt it belongs to), "saved" (a checkpoint committed), "failure" (an elastic
// event), "done" (the ranks' ledgers and traffic matrix, memory and state sizes, as the run returned them),
// "error" (a message).

import type { TrafficJSON } from "../src/comm/cost_model.ts";
import type { CollectiveRecord } from "../src/comm/ledger.ts";
import type { RankMemory } from "../src/parallel/strategy.ts";
import { saveDue } from "../src/train/checkpointing.ts";
import type { TrainConfig } from "../src/train/config.ts";
import { type ElasticEvent, trainElastic } from "../src/train/elastic.ts";
import { trainParallel } from "../src/train/parallel_run.ts";
import type { PlannedFailure } from "../src/train/rank_failures.ts";
import type { RankStepEvent } from "../src/train/train_rank.ts";
import type { StepMetrics } from "../src/train/trainer.ts";

export type LabRequest = { type: "start"; config: TrainConfig; failure: PlannedFailure | null };

/** What a finished run returned: the layout it ended on and its ledger and memory, rank by rank. */
export interface LabRunResult {
  config: TrainConfig;
  /** The merged ledgers of the last launch's ranks (matrix[src][dst] bytes, by link class). */
  traffic: Pick<TrafficJSON, "ranks" | "matrix" | "byLink" | "totalBytes">;
  /** Each rank's memory at its last step. */
  memory: RankMemory[];
  /** Rank 0's losses of the last launch. */
  losses: number[];
  /** Each rank's ledger: every collective it called in the last launch. */
  collectives: CollectiveRecord[][];
  /** Elements of each rank's exported optimizer state (its flat fp32 array, padding included). */
  stateElements: number[];
}

export type LabReply =
  | { type: "step"; attempt: number; metrics: StepMetrics; ranks: RankStepEvent[] }
  | { type: "saved"; step: number }
  | { type: "failure"; event: ElasticEvent }
  | { type: "done"; result: LabRunResult }
  | { type: "error"; message: string };

const post = (reply: LabReply) => (self as unknown as Worker).postMessage(reply);
const workerUrl = new URL("./rank_worker.js", self.location.href);

/** Removes the lab's save folder, so that a new run's elastic resume never finds an older run's checkpoint. */
async function clearFolder(folder: string): Promise<void> {
  const root = await navigator.storage.getDirectory();
  await root.removeEntry(folder, { recursive: true }).catch((error: DOMException) => {
    if (error.name !== "NotFoundError") throw error;
  });
}

async function run(config: TrainConfig, failure: PlannedFailure | null): Promise<void> {
  if (config.save && !config.resume) await clearFolder(config.save);
  // Every rank's report of a step, until the world's metrics for it arrive.
  const reports = new Map<number, RankStepEvent[]>();
  let attempt = 0;
  let unsaved: number | null = null;
  const onRankStep = (rank: number, report: RankStepEvent) => {
    // A step's reports arrive after the previous step's save is committed.
    if (unsaved !== null && unsaved < report.step) {
      post({ type: "saved", step: unsaved });
      unsaved = null;
    }
    const step = reports.get(report.step) ?? [];
    step[rank] = report;
    reports.set(report.step, step);
  };
  const onStep = (metrics: StepMetrics) => {
    const ranks = reports.get(metrics.step)!;
    reports.delete(metrics.step);
    post({ type: "step", attempt, metrics, ranks });
    if (saveDue(config, metrics.step)) unsaved = metrics.step;
  };
  let result: LabRunResult;
  if (failure) {
    const elastic = await trainElastic(config, {
      failures: [failure],
      workerUrl,
      onRankStep,
      onStep: (metrics, at) => {
        attempt = at;
        onStep(metrics);
      },
      onFailure: (event) => {
        reports.clear();
        unsaved = null;
        post({ type: "failure", event });
      },
    });
    result = runResult(elastic.config, elastic.ranks);
  } else {
    const { ranks } = await trainParallel(config, onStep, { onRankStep, workerUrl });
    result = runResult(config, ranks);
  }
  if (unsaved !== null) post({ type: "saved", step: unsaved });
  post({ type: "done", result });
}

function runResult(config: TrainConfig, ranks: Awaited<ReturnType<typeof trainParallel>>["ranks"]): LabRunResult {
  const { ranks: count, matrix, byLink, totalBytes } = ranks.traffic;
  return {
    config,
    traffic: { ranks: count, matrix, byLink, totalBytes },
    memory: ranks.map(({ value }) => value.memory),
    losses: ranks[0].value.losses,
    collectives: ranks.map(({ value }) => value.collectives),
    stateElements: ranks.map(({ value }) => value.state.fp32.length),
  };
}

self.onmessage = (event: MessageEvent<LabRequest>) => {
  const { config, failure } = event.data;
  run(config, failure).catch((error) => post({ type: "error", message: error instanceof Error ? error.message : String(error) }));
};
