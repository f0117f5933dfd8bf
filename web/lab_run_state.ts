// What the lab page knows of the run it shows, gathered from the run workers' messages: the loss of
// every step (per launch: an elastic run launches again after a failure), the corpus floor, the
// same run on one rank, every collective each rank has called in the current launch (the traffic
// heatmap sums them), the latest step's reports (memory, timeline), the fragment map, the elastic
// events and the last checkpoint. The page exposes it as `window.lab`, so that tests compare what
// the views draw with what the run returned.

import type { CollectiveRecord } from "../src/comm/ledger.ts";
import type { ElasticEvent } from "../src/train/elastic.ts";
import type { FragmentMap } from "../src/parallel/fragment_map.ts";
import type { RankStepEvent } from "../src/train/train_rank.ts";
import type { StepMetrics } from "../src/train/trainer.ts";
import type { LabSettings } from "./lab_params.ts";
import type { LabRunResult } from "./lab_worker.ts";
import type { LossPoint } from "./loss_chart.ts";

export type LabPhase = "idle" | "invalid" | "running" | "done" | "stopped" | "error";

export class LabRunState {
  phase: LabPhase = "running";
  /** The run's loss per step, one list per launch. */
  readonly attempts: LossPoint[][] = [[]];
  readonly floor: LossPoint[] = [];
  /** The same run on one rank: its losses so far. */
  readonly reference: LossPoint[] = [];
  /** Per source rank: every collective of the current launch, in call order. */
  records: CollectiveRecord[][] = [];
  /** The latest step's world metrics and every rank's report of it. */
  latest: { metrics: StepMetrics; ranks: RankStepEvent[] } | null = null;
  fragmentMap: FragmentMap | null = null;
  readonly events: ElasticEvent[] = [];
  /** The last checkpoint committed during this run, by step. */
  saved: number | null = null;
  /** What the finished run returned (its ledger's traffic, its ranks' memory). */
  result: LabRunResult | null = null;

  /** The step a resumed run began after (0 for a new run). */
  startStep = 0;

  constructor(readonly settings: LabSettings) {}

  /** The ranks per node of the current launch's layout. */
  get ranksPerNode(): number {
    const { dp = 1, tp = 1, sp = 1, nodes = 1 } = this.events.at(-1)?.newLayout ?? this.settings.config;
    return (dp * tp * sp) / nodes;
  }

  addStep(attempt: number, metrics: StepMetrics, ranks: RankStepEvent[]): void {
    while (this.attempts.length <= attempt) this.attempts.push([]);
    if (this.records.length !== ranks.length) this.records = ranks.map(() => []);
    this.attempts[attempt].push({ step: metrics.step, loss: metrics.loss });
    if (!this.floor.some((point) => point.step === metrics.step)) this.floor.push({ step: metrics.step, loss: metrics.floor });
    ranks.forEach((report, rank) => this.records[rank].push(...report.collectives));
    this.fragmentMap = ranks[0].fragmentMap ?? this.fragmentMap;
    this.latest = { metrics, ranks };
  }

  addFailure(event: ElasticEvent): void {
    this.events.push(event);
    // The next launch is a new world: its traffic and its map start afresh.
    this.records = [];
    this.fragmentMap = null;
  }
}
