// `bench train`: the time of one training step (forward, backward, clipping, AdamW, the loss read
// back to the host) of the tiny and small presets, shardlab's Trainer against the same model and
// step written with TF.js on its WebGPU backend (bench/tfjs_phi3.ts), in one process on one adapter.
//
// Both sides start from shardlab's initial parameters and train on the same global batches at the
// same learning rates, in lockstep: shardlab's step s, then TF.js's step s. The first steps are
// untimed warm-up (pipeline compilation, buffer pools); their losses are compared as a check that
// the two sides compute the same thing. Each timed step is timed on its own; the median is reported.

import { createDevice, type Device } from "../mod.ts";
import type { WebGpuBackend } from "../src/backend/webgpu/webgpu_backend.ts";
import { globalBatch } from "../src/data/corpus.ts";
import { DEFAULT_TRAIN_CONFIG, type TrainConfig } from "../src/train/config.ts";
import { Trainer } from "../src/train/trainer.ts";
import type { SuiteOptions } from "./kernels.ts";
import { alignedTable, formatMs, writeJsonReport } from "./report.ts";
import { checkSameAdapter, loadTfjs, startTfjsWebGpu, tf } from "./tfjs.ts";
import { type HostParameter, type TfjsAdamWOptions, TfjsPhi3Trainer } from "./tfjs_phi3.ts";
import { median } from "./timing.ts";

/**
 * tiny at the Trainer's default batch and row length; small at the same 1024 tokens per step in
 * longer rows. On a 2-core llvmpipe adapter one lockstep pair of steps takes about 0.6 + 1.6 s
 * (tiny) and 1.5 + 4 s (small), so the suite runs in about two minutes.
 */
const TRAIN_CASES: TrainCase[] = [
  { preset: "tiny", batch: 16, seq: 64, warmUpSteps: 3, timedSteps: 15 },
  { preset: "small", batch: 8, seq: 128, warmUpSteps: 3, timedSteps: 10 },
];

const TARGET = { threshold: 1.3, rule: "shardlab ≥ 1.3× TF.js" };

/** A first-step loss further than this from TF.js's means the two sides compute different things. */
const MAX_LOSS_DIFFERENCE = 1e-4;

/**
 * The Trainer's optimizer: AdamW's default betas and eps; weight decay and clipping are passed to
 * the Trainer explicitly. The warm-up losses of later steps check that both sides agree.
 */
const ADAMW: TfjsAdamWOptions = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clipNorm: 1 };

interface TrainCase {
  preset: string;
  batch: number;
  seq: number;
  warmUpSteps: number;
  timedSteps: number;
}

interface LibraryFigures {
  /** Median over the timed steps. */
  msPerStep: number;
  tokensPerSec: number;
  /** Device bytes held after the last step: parameters, optimizer state and anything kept alive. */
  deviceBytes: number;
  /** Every timed step's time, in order. */
  stepMs: number[];
}

interface TrainCaseResult extends TrainCase {
  name: string;
  tokensPerStep: number;
  shardlab: LibraryFigures | null;
  tfjs: LibraryFigures | null;
  /** TF.js time / shardlab time. */
  speedup: number | null;
  /** |shardlab − TF.js| of the first step's loss (same parameters, same batch). */
  firstLossDifference: number | null;
  /** The largest |shardlab − TF.js| of the loss over the warm-up steps (checks gradients and AdamW too). */
  warmUpLossDifference: number | null;
  losses: { shardlab: number[]; tfjs: number[] };
  target: { rule: string; threshold: number; measured: number | null; met: boolean };
  error?: string;
}

export async function runTrain(options: SuiteOptions): Promise<number> {
  const device = await createDevice({ backend: "webgpu" });
  const tfjsMissing = await loadTfjs();
  if (tfjsMissing) progress(tfjsMissing);
  const tfBackend = tfjsMissing ? null : await startTfjsWebGpu();
  const gpu = (device.backend as WebGpuBackend).ctx.device;
  const adapter = tfBackend ? checkSameAdapter(gpu, tfBackend) : gpu.adapterInfo;
  progress(`adapter: ${adapter.description}`);
  const cases: TrainCaseResult[] = [];
  for (const trainCase of TRAIN_CASES) {
    const sized = { ...trainCase, timedSteps: options.reps ?? trainCase.timedSteps };
    progress(`${caseName(sized)}: ${sized.warmUpSteps} warm-up + ${sized.timedSteps} timed steps per library`);
    cases.push(await runCase(sized, device, tfBackend !== null));
  }
  printTrainTable(adapter.description, cases);
  if (tfjsMissing) console.log(`note: ${tfjsMissing}`);

  if (options.json) {
    await writeJsonReport(options.json, "train", {
      adapter,
      adamw: ADAMW,
      lr: DEFAULT_TRAIN_CONFIG.lr,
      seed: DEFAULT_TRAIN_CONFIG.seed,
      cases,
      target: { ...TARGET, met: cases.every((c) => c.target.met) },
      tfjsSkipped: tfjsMissing,
    });
    progress(`wrote ${options.json}`);
  }
  tfBackend?.dispose();
  device.destroy();
  return 0;
}

function progress(message: string): void {
  console.error(`bench train: ${message}`);
}

function caseName({ preset, batch, seq }: TrainCase): string {
  return `${preset} [${batch}×${seq}]`;
}

/** One case; with `withTfjs` false (TF.js not installed) only shardlab's side runs. */
async function runCase(trainCase: TrainCase, device: Device, withTfjs: boolean): Promise<TrainCaseResult> {
  const { preset, batch, seq, warmUpSteps, timedSteps } = trainCase;
  const config: TrainConfig = {
    ...DEFAULT_TRAIN_CONFIG,
    preset,
    batch,
    seq,
    steps: warmUpSteps + timedSteps,
    backend: "webgpu",
    weightDecay: ADAMW.weightDecay,
    clipNorm: ADAMW.clipNorm,
  };
  const losses = { shardlab: [] as number[], tfjs: [] as number[] };
  const times = { shardlab: [] as number[], tfjs: [] as number[] };
  let trainer: Trainer | null = null;
  let tfjsTrainer: TfjsPhi3Trainer | null = null;
  try {
    trainer = await Trainer.create(config, device);
    if (withTfjs) tfjsTrainer = new TfjsPhi3Trainer(trainer.modelConfig, batch, seq, await hostParameters(trainer), ADAMW);
    let shardlabBytes = 0;
    let tensorsBefore = { shardlab: 0, tfjs: 0 };
    for (let step = 0; step < warmUpSteps + timedSteps; step++) {
      if (step === warmUpSteps) tensorsBefore = { shardlab: device.stats().tensors, tfjs: tfjsTensors() };
      let start = performance.now();
      const metrics = await trainer.step();
      times.shardlab.push(performance.now() - start);
      losses.shardlab.push(metrics.loss);
      shardlabBytes = metrics.deviceBytes;

      // The TF.js step makes its own batch, as Trainer.step() does, at the learning rate shardlab just used.
      if (!tfjsTrainer) continue;
      start = performance.now();
      const data = globalBatch({ seed: config.seed, step, batch, seq });
      losses.tfjs.push(await tfjsTrainer.step(data.inputs, data.targets, metrics.lr));
      times.tfjs.push(performance.now() - start);
    }
    checkNoLeak("shardlab", tensorsBefore.shardlab, device.stats().tensors);
    checkNoLeak("TF.js", tensorsBefore.tfjs, tfjsTensors());
    const figures = (stepMs: number[], deviceBytes: number): LibraryFigures => {
      const msPerStep = median(stepMs);
      return { msPerStep, tokensPerSec: (batch * seq) / (msPerStep / 1000), deviceBytes, stepMs };
    };
    return caseResult(
      trainCase,
      figures(times.shardlab.slice(warmUpSteps), shardlabBytes),
      tfjsTrainer && figures(times.tfjs.slice(warmUpSteps), tf.memory().numBytes),
      losses,
    );
  } catch (error) {
    return { ...caseResult(trainCase, null, null, losses), error: (error as Error).message };
  } finally {
    tfjsTrainer?.dispose();
    trainer?.dispose();
  }
}

/** TF.js's live tensors; 0 when it is not loaded. */
function tfjsTensors(): number {
  return tf ? tf.memory().numTensors : 0;
}

/** shardlab's initial parameters, read back to the host to start the TF.js model from. */
async function hostParameters(trainer: Trainer): Promise<HostParameter[]> {
  const named = trainer.model.namedParameters();
  return await Promise.all(named.map(async ([name, tensor]) => ({
    name,
    shape: [...tensor.shape],
    values: (await tensor.read()) as Float32Array,
  })));
}

function checkNoLeak(library: string, before: number, after: number): void {
  if (after !== before) throw new Error(`${library} kept ${after - before} more tensors alive after the timed steps`);
}

function caseResult(
  trainCase: TrainCase,
  shardlab: LibraryFigures | null,
  tfjs: LibraryFigures | null,
  losses: { shardlab: number[]; tfjs: number[] },
): TrainCaseResult {
  const compared = Math.min(losses.shardlab.length, losses.tfjs.length, trainCase.warmUpSteps);
  const differences = Array.from({ length: compared }, (_, i) => Math.abs(losses.shardlab[i] - losses.tfjs[i]));
  const firstLossDifference = compared > 0 ? differences[0] : null;
  const speedup = shardlab && tfjs ? tfjs.msPerStep / shardlab.msPerStep : null;
  const sameLoss = firstLossDifference !== null && firstLossDifference <= MAX_LOSS_DIFFERENCE;
  return {
    ...trainCase,
    name: caseName(trainCase),
    tokensPerStep: trainCase.batch * trainCase.seq,
    shardlab,
    tfjs,
    speedup,
    firstLossDifference,
    warmUpLossDifference: compared > 0 ? Math.max(...differences) : null,
    losses,
    target: { ...TARGET, measured: speedup, met: speedup !== null && speedup >= TARGET.threshold && sameLoss },
  };
}

const HEADER = [
  "case",
  "shardlab ms/step",
  "TF.js ms/step",
  "shardlab tok/s",
  "TF.js tok/s",
  "shardlab bytes",
  "TF.js bytes",
  "speedup",
  "loss |diff|",
  "target",
  "met",
];

function printTrainTable(adapterDescription: string, cases: TrainCaseResult[]): void {
  const tokens = (figures: LibraryFigures | null) => (figures ? figures.tokensPerSec.toFixed(0) : "—");
  const bytes = (figures: LibraryFigures | null) => (figures ? formatBytes(figures.deviceBytes) : "—");
  const rows = cases.map((c) => [
    c.name,
    c.shardlab ? formatMs(c.shardlab.msPerStep) : "—",
    c.tfjs ? formatMs(c.tfjs.msPerStep) : "—",
    tokens(c.shardlab),
    tokens(c.tfjs),
    bytes(c.shardlab),
    bytes(c.tfjs),
    c.speedup === null ? "—" : `${c.speedup.toFixed(2)}×`,
    c.error ? "ERROR" : c.firstLossDifference === null ? "—" : wrongMark(c.firstLossDifference),
    c.target.rule.replace("shardlab ", ""),
    c.target.met ? "yes" : "MISSED",
  ]);
  console.log(
    `train — one step (forward, backward, clip, AdamW, loss read back), shardlab vs TF.js WebGPU on ${adapterDescription}`,
  );
  for (const line of alignedTable(HEADER, rows)) console.log(line);
  for (const c of cases) {
    console.log(
      `  ${c.name}: median of ${c.timedSteps} steps after ${c.warmUpSteps} warm-up; ${c.tokensPerStep} tokens/step; ` +
        `loss |diff| over the warm-up steps ≤ ${c.warmUpLossDifference?.toExponential(1) ?? "—"}`,
    );
  }
  for (const c of cases.filter((c) => c.error)) console.log(`ERROR ${c.name}: ${c.error}`);
  console.log("");
  const missed = cases.filter((c) => !c.target.met);
  console.log(`target train (${TARGET.rule}): ${missed.length ? "MISSED" : "met"}`);
  for (const c of missed) {
    const why = c.error ? "did not run" : c.speedup === null ? "not measured" : `${c.speedup.toFixed(2)}× TF.js`;
    console.log(
      `  ${c.name}: ${why}${c.firstLossDifference !== null && c.firstLossDifference > MAX_LOSS_DIFFERENCE ? ", WRONG loss" : ""}`,
    );
  }
}

function wrongMark(difference: number): string {
  return `${difference.toExponential(1)}${difference > MAX_LOSS_DIFFERENCE ? " WRONG" : ""}`;
}

function formatBytes(bytes: number): string {
  return bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : `${(bytes / 2 ** 10).toFixed(0)} KiB`;
}
