// Draws the lab's run into the page: the loss chart, the rank × rank traffic of the current launch,
// every rank's memory at the latest step, the latest step's collectives per rank, and (under ZeRO)
// which rank owns which piece of which parameter. The pictures are the renderers of web/views/,
// whose markup this module puts into the page's containers.

import { renderCollectiveTimeline } from "./views/collective_timeline.ts";
import { renderMemoryBars } from "./views/memory_bars.ts";
import { renderTrafficHeatmap, trafficMatrix } from "./views/traffic_matrix.ts";
import { renderZeroOwnership } from "./views/zero_ownership.ts";
import { dataTable } from "./views/markup.ts";
import { type LossPoint, renderLossChart } from "./loss_chart.ts";
import type { LabRunState } from "./lab_run_state.ts";
import type { FragmentMap } from "../src/parallel/fragment_map.ts";
import type { ParallelLayout } from "../src/parallel/layout.ts";
import type { TrainConfig } from "../src/train/config.ts";

const byId = (id: string) => document.getElementById(id)!;
/** The fragment map the ownership view shows. */
let drawnMap: FragmentMap | null = null;

/** "dp2 × tp2, ZeRO-1, 2 nodes": a layout as the page names it. */
export function layoutName(layout: Partial<ParallelLayout> | TrainConfig): string {
  const { dp = 1, tp = 1, sp = 1, zero = 0, nodes = 1, spImpl = "ulysses" } = layout;
  const axes = [`dp${dp}`, ...(tp > 1 ? [`tp${tp}`] : []), ...(sp > 1 ? [`sp${sp} (${spImpl})`] : [])].join(" × ");
  const config = layout as TrainConfig;
  const zeropp = [
    ["qwZ", config.zeroQuantizedWeights],
    ["hpZ", (config.zeroHpzPartitionSize ?? 1) > 1],
    ["qgZ", config.zeroQuantizedGradients],
  ].filter(([, on]) => on).map(([name]) => name);
  const stage = zero ? `ZeRO-${zero}${zeropp.length ? ` with ${zeropp.join(", ")}` : ""}` : "DDP";
  return `${axes}, ${stage}, ${nodes} node${nodes > 1 ? "s" : ""}`;
}

/** The loss chart and its summary line. */
export function drawLoss(state: LabRunState): void {
  const marks = state.events.flatMap((event) => [
    { step: event.lastStep, label: `rank ${event.failedRank} failed after step ${event.lastStep}` },
    ...(event.newLayout ? [{ step: event.resumedStep, label: `resumed at step ${event.resumedStep}` }] : []),
  ]);
  if (state.startStep > 0) marks.unshift({ step: state.startStep, label: `resumed at step ${state.startStep}` });
  byId("loss-chart").innerHTML = renderLossChart({
    totalSteps: state.settings.config.steps,
    attempts: state.attempts,
    reference: state.reference,
    floor: state.floor,
    marks,
  });
  const atStep = (points: LossPoint[], step: number) => points.find((point) => point.step === step)?.loss.toFixed(4) ?? "";
  byId("loss-numbers").innerHTML = dataTable({
    headers: ["Launch", "Step", "Loss (nats/token)", "One rank", "Corpus floor"],
    rows: state.attempts.flatMap((points, attempt) =>
      points.map(({ step, loss }) => [attempt, step, loss.toFixed(4), atStep(state.reference, step), atStep(state.floor, step)])
    ),
  });
  const last = state.attempts.flat().at(-1);
  const reference = last && state.reference.find((point) => point.step === last.step);
  const floor = last && state.floor.find((point) => point.step === last.step);
  byId("loss-summary").textContent = last
    ? `Step ${last.step}: loss ${last.loss.toFixed(3)}` + (reference ? `, one rank ${reference.loss.toFixed(3)}` : "") +
      (floor ? `, floor ${floor.loss.toFixed(3)}` : "") + "."
    : "";
}

/** The views of the latest step: traffic so far, memory, the step's collectives, the fragment map. */
export function drawStepViews(state: LabRunState): void {
  if (!state.latest) return;
  const { metrics, ranks } = state.latest;
  const layout = state.events.at(-1)?.newLayout ?? state.settings.config;
  const name = layoutName(layout);
  const launchSteps = state.attempts.at(-1)!.length;
  byId("traffic").innerHTML = renderTrafficHeatmap(
    trafficMatrix(state.records, state.ranksPerNode),
    `Bytes each rank sent to each other rank over the ${launchSteps} step${launchSteps > 1 ? "s" : ""} of this ` +
      `launch (${name}), within a node and across nodes.`,
  );
  byId("memory").innerHTML = renderMemoryBars(
    metrics.memory,
    `Bytes each rank holds at step ${metrics.step}, once the gradients are reduced (${name}).`,
  );
  byId("timeline").innerHTML = renderCollectiveTimeline(
    ranks.map((report) => report.collectives),
    `The collectives of step ${metrics.step}, rank by rank, in call order: kind, tag, bytes, measured and ` +
      `simulated time.`,
  );
  // The map changes only with a launch; its picture is the largest, so it is drawn once per launch.
  const ownership = byId("ownership");
  if (state.fragmentMap === drawnMap) return;
  drawnMap = state.fragmentMap;
  if (state.fragmentMap && state.fragmentMap.layout.zero > 0) {
    ownership.innerHTML = renderZeroOwnership(
      state.fragmentMap,
      `ZeRO-${state.fragmentMap.layout.zero}: which rank owns which piece of each parameter's optimizer state (${name}).`,
    );
  } else if (state.fragmentMap) {
    ownership.innerHTML = `<p class="muted">Without ZeRO every data-parallel rank holds the whole optimizer state of ` +
      `its tensor-parallel shard: choose a ZeRO stage to see it partitioned.</p>`;
  }
}
