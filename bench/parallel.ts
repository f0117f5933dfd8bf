// `bench parallel`: what each parallel layout costs, on the ranks' ledgers and on this machine.
//
// 1. Strategies. The tiny and small presets train a few steps in every layout (one rank, DDP,
//    ZeRO-1/2/3, Megatron TP, Ulysses and Megatron-SP, and their products) through train(); the
//    first step is warm-up and is dropped. Per layout: tokens/s of the wall clock here, the bytes all
//    ranks sent per step by link class, the cost model's communication time per step (the slowest
//    rank's), and the largest rank's parameters, gradients and optimizer state. Layouts of 4 ranks
//    run as 2 simulated nodes of 2, so that their inter-node bytes show; smaller ones on one node.
//    A layout the model cannot take is skipped with the reason the layout check gives.
// 2. Sequence-parallel scaling. On SCALING_MODEL (8 query and 8 kv heads), S = 1, 2, 4, 8 ranks
//    with N = 64·S tokens per sequence run one forward and backward with Ulysses and with
//    Megatron-SP (bench/parallel_rank.ts). Per rank, the bytes of the first decoder layer's forward
//    collectives against the analytic volume (floats, B rows of N tokens, hidden h):
//      Ulysses       the q, k, v all-to-all and the output all-to-all send all heads but the rank's
//                    own of its N/S tokens: B·(N/S)·(S−1)/S·(2·Hq + 2·Hkv)·D = 4·B·N·h·(S−1)/S²
//      Megatron-SP   two all-gathers and two reduce-scatters along the sequence of [B, N, h], each
//                    (S−1)/S of it: 4·B·N·h·(S−1)/S
//    so with N growing as S, Ulysses' per-rank volume tends to a constant while Megatron-SP's grows
//    with N. S = 1 sends nothing; ratios are to S = 2.
// 3. ZeRO++ against ZeRO-3 on 2, 4 and 8 simulated nodes (bench/zeropp.ts).

import { launch } from "../src/comm/launch.ts";
import { DEFAULT_LINKS } from "../src/comm/cost_model.ts";
import { headDim } from "../src/nn/config.ts";
import {
  checkLayoutFits,
  type ParallelLayout,
  resolveLayout,
  type SpImpl,
  worldSize,
  type ZeroStage,
} from "../src/parallel/layout.ts";
import { checkTrainConfig, DEFAULT_TRAIN_CONFIG, type TrainConfig } from "../src/train/config.ts";
import type { RankMemory } from "../src/parallel/strategy.ts";
import { type StepMetrics, train } from "../src/train/trainer.ts";
import type { SuiteOptions } from "./kernels.ts";
import { SCALING_MODEL, type ScalingRankArgs, type ScalingRankResult } from "./parallel_rank.ts";
import { printScaling, printStrategies } from "./parallel_report.ts";
import { printZeropp, runZeropp } from "./zeropp.ts";
import { writeJsonReport } from "./report.ts";
import { median } from "./timing.ts";
import { rankEntry } from "./rank_entry.ts";

export interface ParallelOptions extends SuiteOptions {
  /** Each rank's device; default "cpu" (llvmpipe WebGPU with 4 ranks on 2 cores is very slow). */
  backend?: "cpu" | "webgpu";
  /** Training steps per layout, the first of them warm-up; default DEFAULT_STEPS. */
  steps?: number;
}

export const DEFAULT_STEPS = 4;

/** Rows and tokens per row of a strategy run's global batch: divisible by dp 4 and sp 2. */
const STRATEGY_PRESETS = [
  { preset: "tiny", batch: 8, seq: 64 },
  { preset: "small", batch: 8, seq: 64 },
];

interface StrategyLayout {
  name: string;
  dp?: number;
  tp?: number;
  sp?: number;
  zero?: ZeroStage;
  spImpl?: SpImpl;
}

const STRATEGY_LAYOUTS: StrategyLayout[] = [
  { name: "1 rank" },
  { name: "dp2", dp: 2 },
  { name: "dp2 zero1", dp: 2, zero: 1 },
  { name: "dp2 zero2", dp: 2, zero: 2 },
  { name: "dp2 zero3", dp: 2, zero: 3 },
  { name: "dp4 zero3", dp: 4, zero: 3 },
  { name: "tp2", tp: 2 },
  { name: "tp4", tp: 4 },
  { name: "sp2 ulysses", sp: 2, spImpl: "ulysses" },
  { name: "sp2 megatron", sp: 2, spImpl: "megatron" },
  { name: "dp2×tp2", dp: 2, tp: 2 },
  { name: "dp2×sp2", dp: 2, sp: 2 },
  { name: "tp2×sp2", tp: 2, sp: 2 },
];

/** Worlds of this many ranks run as 2 simulated nodes. */
const TWO_NODE_RANKS = 4;

const SCALING_SIZES = [1, 2, 4, 8];
const SCALING_TOKENS_PER_RANK = 64;
const SCALING_ROWS = 1;
const SP_IMPLS: SpImpl[] = ["ulysses", "megatron"];

export interface StrategyRow {
  preset: string;
  layout: string;
  ranks: number;
  nodes: number;
  batch: number;
  seq: number;
  /** The steps measured (after the warm-up step). */
  timedSteps: number;
  /** Median over the timed steps: tokens of the global batch / the slowest rank's step time. */
  tokensPerSec: number;
  stepMs: number;
  /** Bytes all ranks sent to each other in the last step, by link class. */
  commBytes: { total: number; intra: number; inter: number };
  /** Every timed step sent the same bytes. */
  bytesSteady: boolean;
  /** The cost model's communication time of the last step, the slowest rank's, ms. */
  simulatedMs: number;
  /** Per rank after the last step, bytes. */
  memory: RankMemory[];
  /** The largest rank's parameters + gradients + optimizer state. */
  memoryMiB: number;
  losses: number[];
  /** Why the layout did not run: the layout check's message. */
  skipped?: string;
  /** The layout ran and failed. */
  error?: string;
}

export interface ScalingRow {
  impl: SpImpl;
  sp: number;
  /** Tokens per sequence (N) and rows (B). */
  seq: number;
  batch: number;
  /** Bytes each rank sent in layer 0's forward collectives (the largest and the smallest). */
  bytesPerRank: number;
  minBytesPerRank: number;
  /** Rank 0's bytes by tag. */
  byTag: Record<string, number>;
  analyticBytes: number;
  /** Every rank sent exactly the analytic volume. */
  exact: boolean;
  /** bytesPerRank / that of S = 2 with the same implementation (null for S = 1). */
  ratioToS2: number | null;
  /** The slowest rank's simulated time of layer 0's forward collectives, ms. */
  simulatedMs: number;
  /** The whole forward and backward: the largest rank's bytes and simulated time. */
  stepBytesPerRank: number;
  stepSimulatedMs: number;
}

export async function runParallel(options: ParallelOptions): Promise<number> {
  const backend = options.backend ?? "cpu";
  const steps = options.steps ?? DEFAULT_STEPS;
  const strategies: StrategyRow[] = [];
  for (const shape of STRATEGY_PRESETS) {
    for (const layout of STRATEGY_LAYOUTS) {
      progress(`${shape.preset} ${layout.name}: ${steps} steps (${backend})`);
      strategies.push(await runStrategy(shape, layout, backend, steps));
    }
  }
  printStrategies(strategies, { backend, steps, twoNodeRanks: TWO_NODE_RANKS });

  const scaling: ScalingRow[] = [];
  for (const impl of SP_IMPLS) {
    for (const sp of SCALING_SIZES) {
      progress(`scaling ${impl} S = ${sp}, N = ${SCALING_TOKENS_PER_RANK * sp}`);
      scaling.push(await runScaling(impl, sp, backend));
    }
  }
  for (const row of scaling) {
    const base = scaling.find((other) => other.impl === row.impl && other.sp === 2)!;
    row.ratioToS2 = row.sp === 1 ? null : row.bytesPerRank / base.bytesPerRank;
  }
  printScaling(scaling, SCALING_MODEL);

  const zeropp = await runZeropp(backend, steps, progress);
  printZeropp(zeropp);

  if (options.json) {
    await writeJsonReport(options.json, "parallel", {
      hardwareConcurrency: navigator.hardwareConcurrency,
      backend,
      steps,
      warmUpSteps: 1,
      links: DEFAULT_LINKS,
      lr: DEFAULT_TRAIN_CONFIG.lr,
      seed: DEFAULT_TRAIN_CONFIG.seed,
      twoNodeRanks: TWO_NODE_RANKS,
      strategies,
      scalingModel: SCALING_MODEL,
      scaling,
      zeropp,
    });
    progress(`wrote ${options.json}`);
  }
  // A layout that fails while training, or a ledger that disagrees with the analytic volume, fails the suite.
  const failed = strategies.some((row) => row.error) || scaling.some((row) => !row.exact) || zeropp.rows.some((row) => row.error);
  return failed ? 1 : 0;
}

function progress(message: string): void {
  console.error(`bench parallel: ${message}`);
}

async function runStrategy(
  shape: { preset: string; batch: number; seq: number },
  layout: StrategyLayout,
  backend: "cpu" | "webgpu",
  steps: number,
): Promise<StrategyRow> {
  const { name, ...axes } = layout;
  const ranks = (axes.dp ?? 1) * (axes.tp ?? 1) * (axes.sp ?? 1);
  const nodes = ranks >= TWO_NODE_RANKS ? 2 : 1;
  const config: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, ...shape, steps, backend, ...axes, nodes };
  const row: StrategyRow = {
    preset: shape.preset,
    layout: name,
    ranks,
    nodes,
    batch: shape.batch,
    seq: shape.seq,
    timedSteps: 0,
    tokensPerSec: NaN,
    stepMs: NaN,
    commBytes: { total: 0, intra: 0, inter: 0 },
    bytesSteady: true,
    simulatedMs: NaN,
    memory: [],
    memoryMiB: NaN,
    losses: [],
  };
  try {
    checkTrainConfig(config);
  } catch (error) {
    return { ...row, skipped: (error as Error).message };
  }
  let history: StepMetrics[];
  try {
    history = await train(config);
  } catch (error) {
    progress(`${shape.preset} ${name} failed: ${(error as Error).message}`);
    return { ...row, error: (error as Error).message };
  }
  const timed = history.slice(1);
  const last = timed.at(-1)!;
  const sameBytes = (metrics: StepMetrics) =>
    (["intra", "inter"] as const).every((link) => metrics.commBytes[link] === last.commBytes[link]);
  return {
    ...row,
    timedSteps: timed.length,
    tokensPerSec: median(timed.map((metrics) => metrics.tokensPerSec)),
    stepMs: median(timed.map((metrics) => (1000 * shape.batch * shape.seq) / metrics.tokensPerSec)),
    commBytes: last.commBytes,
    bytesSteady: timed.every(sameBytes),
    simulatedMs: last.simTime,
    memory: last.memory,
    memoryMiB: Math.max(...last.memory.map((m) => m.parameters + m.gradients + m.optimizer)) / 2 ** 20,
    losses: history.map((metrics) => metrics.loss),
  };
}

/** Floats one rank sends in one decoder layer's forward, for B rows of N tokens over S ranks (see the header). */
function analyticFloats(impl: SpImpl, B: number, N: number, S: number): number {
  const { numHeads, numKvHeads, hiddenSize } = SCALING_MODEL;
  if (impl === "ulysses") return ((B * (N / S) * (S - 1)) / S) * (2 * numHeads + 2 * numKvHeads) * headDim(SCALING_MODEL);
  return (4 * B * N * hiddenSize * (S - 1)) / S;
}

async function runScaling(impl: SpImpl, sp: number, backend: "cpu" | "webgpu"): Promise<ScalingRow> {
  const seq = SCALING_TOKENS_PER_RANK * sp;
  const layout: ParallelLayout = resolveLayout({ sp, spImpl: impl });
  checkLayoutFits(layout, SCALING_MODEL, SCALING_ROWS, seq);
  const args: ScalingRankArgs = { layout, batch: SCALING_ROWS, seq, seed: DEFAULT_TRAIN_CONFIG.seed };
  const results = await launch<ScalingRankResult>({
    ranks: worldSize(layout),
    entry: rankEntry("parallel_rank", import.meta.url),
    args,
    backend,
  });
  const reports = results.map((result) => result.value);
  const perRank = reports.map((report) => Object.values(report.layer0Bytes).reduce((sum, bytes) => sum + bytes, 0));
  const analyticBytes = 4 * analyticFloats(impl, SCALING_ROWS, seq, sp);
  const bytesPerRank = Math.max(...perRank);
  return {
    impl,
    sp,
    seq,
    batch: SCALING_ROWS,
    bytesPerRank,
    minBytesPerRank: Math.min(...perRank),
    byTag: reports[0].layer0Bytes,
    analyticBytes,
    exact: perRank.every((bytes) => bytes === analyticBytes),
    ratioToS2: null,
    simulatedMs: Math.max(...reports.map((report) => report.layer0SimulatedMs)),
    stepBytesPerRank: Math.max(...reports.map((report) => report.stepBytes)),
    stepSimulatedMs: Math.max(...reports.map((report) => report.stepSimulatedMs)),
  };
}
