// What each rank holds under DDP and ZeRO-1/2/3, as train_rank.ts reports it, against the byte counts
// worked out here from the model's parameter count M and the layout; and the figures train(config)
// returns for a parallel run (per-rank memory, bytes by link class, simulated time).
//
// When the figures are taken. A rank samples memory() once backward is done and the gradients are
// reduced, before the optimizer step frees them. Then:
//   DDP     parameters 4·M, gradients 4·M (the averaged gradient), optimizer 8·M (exp_avg, exp_avg_sq)
//   ZeRO-1  parameters 4·M; gradients 4·M of every full .grad (stage 1 does not partition them)
//           plus 4·M_padded/dp of the partition's averaged gradient; optimizer 12·M_padded/dp
//           (fp32 master and two moments of the partition)
//   ZeRO-2  as ZeRO-1, but the full gradients are freed once reduce-scattered: gradients 4·M_padded/dp
//   ZeRO-3  parameters 4·M_padded/dp (the partition is the parameter storage and the master copy),
//           gradients 4·M_padded/dp, optimizer 8·M_padded/dp: 16 bytes per partition element;
//           gathered: the largest working copy, one decoder layer's values and gradients during
//           its backward
// M_padded is M with every ZeRO group padded to a multiple of dp (one group for stages 1 and 2; for
// stage 3 embed_tokens, each decoder layer, and model.norm with lm_head).

import assert from "node:assert/strict";
import { launch, type LaunchResult } from "../src/comm/launch.ts";
import type { CollectiveRecord, LinkClass } from "../src/comm/ledger.ts";
import { paramCount, presetConfig } from "../src/nn/config.ts";
import type { RankMemory } from "../src/parallel/strategy.ts";
import type { TrainConfig } from "../src/train/config.ts";
import { trainParallel } from "../src/train/parallel_run.ts";
import { train } from "../src/train/trainer.ts";
import type { RankStepEvent, TrainRankResult } from "../src/train/train_rank.ts";

const ENTRY = new URL("../src/train/train_rank.ts", import.meta.url).href;
const BASE: TrainConfig = { preset: "tiny", steps: 2, batch: 4, seq: 16, lr: 1e-3, seed: 7, backend: "cpu" };
const MODEL = presetConfig("tiny");
const M = paramCount(MODEL);
const F32 = 4;

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function paddedTo(numel: number, dp: number): number {
  return Math.ceil(numel / dp) * dp;
}

/** The ZeRO-3 groups' sizes: a decoder layer is what one more layer adds to the count, embed_tokens V·h, the head the rest. */
function zero3Groups(): number[] {
  const layer = M - paramCount({ ...MODEL, numLayers: MODEL.numLayers - 1 });
  const embed = MODEL.vocabSize * MODEL.hiddenSize;
  const head = M - embed - MODEL.numLayers * layer;
  return [embed, ...new Array<number>(MODEL.numLayers).fill(layer), head];
}

/** Every rank's memory after each step (from its events) and at the end (from its result). */
async function memories(
  layout: Partial<TrainConfig>,
): Promise<{ results: LaunchResult<TrainRankResult>; figures: RankMemory[] }> {
  const config: TrainConfig = { ...BASE, ...layout };
  const figures: RankMemory[] = [];
  const results = await launch<TrainRankResult>({
    ranks: config.dp ?? 1,
    entry: ENTRY,
    args: { config },
    backend: "cpu",
    onEvent: ({ event }) => figures.push((event as RankStepEvent).memory),
  });
  assert.equal(figures.length, (config.dp ?? 1) * config.steps, "one report per rank and step");
  return { results, figures: [...figures, ...results.map(({ value }) => value.memory)] };
}

function assertEvery(figures: RankMemory[], expected: RankMemory, what: string): void {
  for (const figure of figures) assert.deepEqual(figure, expected, what);
}

function zero3Expected(dp: number): RankMemory {
  const padded = sum(zero3Groups().map((g) => paddedTo(g, dp)));
  const partition = (F32 * padded) / dp;
  return {
    parameters: partition,
    gradients: partition,
    optimizer: 2 * partition,
    gathered: 2 * F32 * Math.max(...zero3Groups()),
    secondary: 0,
  };
}

function total(memory: RankMemory): number {
  return memory.parameters + memory.gradients + memory.optimizer;
}

for (const dp of [2, 4]) {
  Deno.test(`memory: DDP and ZeRO-1, 2, 3 over dp ${dp} hold the bytes the stage keeps`, async () => {
    const ddp = { parameters: F32 * M, gradients: F32 * M, optimizer: 2 * F32 * M, gathered: 0, secondary: 0 };
    assertEvery((await memories({ dp })).figures, ddp, `DDP dp ${dp}`);

    const flatPadded = paddedTo(M, dp);
    const partition = (F32 * flatPadded) / dp;
    const zero1 = { parameters: F32 * M, gradients: F32 * M + partition, optimizer: 3 * partition, gathered: 0, secondary: 0 };
    assertEvery((await memories({ dp, zero: 1 })).figures, zero1, `ZeRO-1 dp ${dp}`);
    assertEvery((await memories({ dp, zero: 2 })).figures, { ...zero1, gradients: partition }, `ZeRO-2 dp ${dp}`);

    const { results, figures } = await memories({ dp, zero: 3 });
    const zero3 = zero3Expected(dp);
    assertEvery(figures, zero3, `ZeRO-3 dp ${dp}`);
    assert.ok(zero3.gathered > 0);
    const padding = sum(zero3Groups().map((g) => paddedTo(g, dp) - g));
    // DDP's 16 bytes per parameter split dp ways, up to the padding.
    assert.ok(
      total(zero3) <= total(ddp) / dp + 16 * padding,
      `ZeRO-3 dp ${dp}: ${total(zero3)} bytes vs DDP's ${total(ddp)} / ${dp} + padding ${padding}`,
    );
    // The reported partition is the one the fragments describe: every parameter element on one rank.
    assert.equal(sum(results.flatMap(({ value }) => value.fragments.fragments.map((f) => f.numel))), M);
  });
}

Deno.test("memory: ZeRO-3 over dp 3 counts the padding of every group", async () => {
  const padding = sum(zero3Groups().map((g) => paddedTo(g, 3) - g));
  assert.ok(padding > 0, "the tiny groups do not all divide by 3");
  const zero3 = zero3Expected(3);
  assertEvery((await memories({ dp: 3, zero: 3, batch: 6 })).figures, zero3, "ZeRO-3 dp 3");
  assert.ok(total(zero3) <= (16 * M) / 3 + 16 * padding);
});

// ---- train(config) ----

/** Bytes each rank sends in a ZeRO-3 step: three passes over its partition's share, and two one-float all-reduces. */
function zero3StepBytesPerRank(dp: number): number {
  const padded = sum(zero3Groups().map((g) => paddedTo(g, dp)));
  return (3 * (dp - 1) * padded * F32) / dp + 2 * (dp - 1) * F32;
}

Deno.test("memory: train(config) over dp 2 with ZeRO-3 reports every rank's memory, the bytes sent and the simulated time", async () => {
  const history = await train({ ...BASE, dp: 2, zero: 3 });
  assert.equal(history.length, BASE.steps);
  for (const metrics of history) {
    assert.equal(metrics.memory.length, 2, "one entry per rank");
    for (const memory of metrics.memory) assert.deepEqual(memory, zero3Expected(2));
    const { total, intra, inter } = metrics.commBytes;
    assert.equal(total, intra + inter);
    assert.equal(inter, 0, "one node: every link is inside it");
    assert.equal(total, 2 * zero3StepBytesPerRank(2));
    assert.ok(metrics.simTime > 0, `simulated time ${metrics.simTime} ms`);
  }
});

/** Bytes by link class of the records of one step on every rank (each rank's ledger cut at its loss all-reduces). */
function linkBytes(ledgers: CollectiveRecord[][], step: number | "after"): Record<LinkClass, number> {
  const bytes = { intra: 0, inter: 0 };
  for (const records of ledgers) {
    const ends = records.flatMap((r, i) => r.tag === "engine.allreduce.loss" ? [i] : []);
    const from = step === "after" ? ends.at(-1)! + 1 : step === 0 ? 0 : ends[step - 1] + 1;
    const to = step === "after" ? records.length : ends[step] + 1;
    for (const record of records.slice(from, to)) for (const send of record.sends) bytes[send.link] += send.bytes;
  }
  return bytes;
}

Deno.test("memory: over two nodes the step's bytes split into intra- and inter-node links as the merged ledger does", async () => {
  const dp = 4;
  const { history, ranks } = await trainParallel({ ...BASE, dp, zero: 3, nodes: 2 });
  const ledgers = ranks.map(({ value }) => value.collectives);
  history.forEach((metrics, step) => {
    const { total, intra, inter } = metrics.commBytes;
    assert.ok(inter > 0, `step ${step + 1}: ranks 1 → 2 and 3 → 0 cross nodes`);
    assert.equal(total, intra + inter);
    assert.equal(total, dp * zero3StepBytesPerRank(dp));
    assert.deepEqual({ intra, inter }, linkBytes(ledgers, step), `step ${step + 1}`);
    assert.equal(metrics.memory.length, dp);
    for (const memory of metrics.memory) assert.deepEqual(memory, zero3Expected(dp));
  });
  // The steps and the final consolidation make up the merged ledger, whose links follow the nodes.
  const after = linkBytes(ledgers, "after");
  for (const link of ["intra", "inter"] as const) {
    assert.equal(sum(history.map((m) => m.commBytes[link])) + after[link], ranks.traffic.byLink[link], link);
  }
  const node = (rank: number) => Math.floor(rank / (dp / 2));
  const crossing = sum(ranks.traffic.matrix.flatMap((row, src) => row.filter((_, dst) => node(src) !== node(dst))));
  assert.equal(ranks.traffic.byLink.inter, crossing);
});

// Nothing a step allocates outlives it: from the second step on (the first allocates the optimizer
// state some strategies create lazily), every rank's device holds the same bytes after each step.
Deno.test("memory: device bytes stay flat from step to step under every strategy", async () => {
  const layouts: Partial<TrainConfig>[] = [
    { dp: 2 },
    { dp: 2, zero: 1 },
    { dp: 2, zero: 2 },
    { dp: 2, zero: 3 },
    { tp: 2 },
    { sp: 2 },
    { sp: 2, spImpl: "megatron" },
    { dp: 2, tp: 2, zero: 1 },
  ];
  for (const layout of layouts) {
    const perRank = new Map<number, number[]>();
    await launch<TrainRankResult>({
      ranks: (layout.dp ?? 1) * (layout.tp ?? 1) * (layout.sp ?? 1),
      entry: ENTRY,
      args: { config: { ...BASE, steps: 4, ...layout } },
      backend: "cpu",
      onEvent: ({ rank, event }) => perRank.set(rank, [...(perRank.get(rank) ?? []), (event as RankStepEvent).deviceBytes]),
    });
    for (const [rank, bytes] of perRank) {
      assert.deepEqual(
        bytes.slice(2),
        bytes.slice(1, -1),
        `${JSON.stringify(layout)} rank ${rank}: device bytes after each step ${bytes.join(", ")}`,
      );
    }
  }
});
