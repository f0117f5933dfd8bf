// `shardlab train`: trains a preset on the procedural corpus and shows the loss against the
// corpus floor — a live progress bar on a terminal, plain lines otherwise, JSON lines on request.

import { dirname } from "node:path";
import { parseArgs } from "node:util";
import type { BackendChoice } from "../src/tensor/device.ts";
import { paramCount, type Phi3Config } from "../src/nn/config.ts";
import { corpusFloor } from "../src/data/corpus.ts";
import { type ParallelLayout, worldSize } from "../src/parallel/layout.ts";
import { checkTrainConfig, DEFAULT_TRAIN_CONFIG, type TrainConfig, trainLayout, zeroppOptions } from "../src/train/config.ts";
import type { ZeroppOptions } from "../src/parallel/zeropp_codec.ts";
import { trainParallel } from "../src/train/parallel_run.ts";
import { type ElasticEvent, trainElastic } from "../src/train/elastic.ts";
import { ElasticError } from "../src/train/elastic_layout.ts";
import { parseFailures, type PlannedFailure } from "../src/train/rank_failures.ts";
import { RankFailedError } from "../src/comm/errors.ts";
import { type StepMetrics, Trainer } from "../src/train/trainer.ts";
import { CheckpointError } from "../src/checkpoint/errors.ts";
import { openCheckpoint } from "../src/checkpoint/load.ts";
import { runStart, storageAt } from "../src/train/checkpointing.ts";
import { TrainingDivergedError } from "../src/train/divergence.ts";
import { LAYOUT_OPTIONS, LAYOUT_USAGE, layoutConfig, numberOption, optionalNumber, ZEROPP_USAGE } from "./layout_options.ts";
import { UsageError } from "./usage.ts";

/** The exit code of a run that diverged: apart from 1 (a failure), so that a learning-rate sweep can tell the two apart. */
const DIVERGED = 3;

export const TRAIN_USAGE = `usage: shardlab train [options]

  --preset tiny|small        model size (default ${DEFAULT_TRAIN_CONFIG.preset})
  --steps N                  optimizer steps (default ${DEFAULT_TRAIN_CONFIG.steps})
  --batch B                  rows per batch (default ${DEFAULT_TRAIN_CONFIG.batch})
  --seq T                    tokens per row (default ${DEFAULT_TRAIN_CONFIG.seq})
  --lr X                     peak learning rate (default ${DEFAULT_TRAIN_CONFIG.lr})
  --seed S                   seeds the weights and the data (default ${DEFAULT_TRAIN_CONFIG.seed})
  --backend auto|webgpu|cpu  (default auto: WebGPU when an adapter exists, otherwise CPU)
  --json FILE                write one JSON object per step to FILE
  --sample                   print a few generated lines at the end (one rank only)

${LAYOUT_USAGE}
  --bucket-cap-mb X          DDP's gradient bucket size in MiB (default 25)

${ZEROPP_USAGE}

checkpoints (any layout resumes on any other):
  --save DIR                 save into DIR/step-NNNNNNNN (one file per rank), DIR/latest names the last
  --save-every N             save every N steps as well as at the end (default: at the end)
  --resume PATH              go on from a checkpoint folder, or from DIR/latest; the checkpoint's seed,
                             learning-rate schedule, AdamW settings and clipping are kept, --steps is the end
  --init-from PATH           start a new run (step 0, fresh AdamW moments, this run's seed and schedule)
                             from a model folder written by ckpt export --hf, or a .safetensors file with
                             the model's Hugging Face names and shapes (F32, F16 or BF16)
  --elastic                  when a rank fails, go on from the last checkpoint on the best layout the
                             surviving ranks fit (tp and sp kept where they fit, dp shrunk first);
                             needs --save. For tests and demos, SHARDLAB_FAIL_RANKS=RANK@STEP[:HOW],…
                             makes ranks fail on purpose (HOW: throw, exit, hang, save)

A run whose loss or gradient norm stops being finite stops before that step is applied or saved,
naming the step and the last checkpoint. Exit codes: 0 trained, 1 a rank or a checkpoint failed,
2 a bad option, 3 the run diverged.
`;

function parseTrainArgs(
  argv: string[],
): { config: TrainConfig; modelConfig: Phi3Config; layout: ParallelLayout; json?: string; sample: boolean } {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        preset: { type: "string" },
        steps: { type: "string" },
        batch: { type: "string" },
        seq: { type: "string" },
        lr: { type: "string" },
        seed: { type: "string" },
        backend: { type: "string" },
        json: { type: "string" },
        sample: { type: "boolean", default: false },
        ...LAYOUT_OPTIONS,
        "bucket-cap-mb": { type: "string" },
        save: { type: "string" },
        "save-every": { type: "string" },
        resume: { type: "string" },
        "init-from": { type: "string" },
        elastic: { type: "boolean" },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const v = parsed.values;
  const d = DEFAULT_TRAIN_CONFIG;
  const config: TrainConfig = {
    preset: v.preset ?? d.preset,
    steps: numberOption("steps", v.steps, d.steps),
    batch: numberOption("batch", v.batch, d.batch),
    seq: numberOption("seq", v.seq, d.seq),
    lr: numberOption("lr", v.lr, d.lr),
    seed: numberOption("seed", v.seed, d.seed),
    backend: (v.backend ?? d.backend) as BackendChoice,
    ...layoutConfig(v),
    bucketCapMb: numberOption("bucket-cap-mb", v["bucket-cap-mb"], 25),
    save: v.save,
    saveEvery: optionalNumber("save-every", v["save-every"]),
    resume: v.resume,
    initFrom: v["init-from"],
    elastic: v.elastic,
  };
  let modelConfig: Phi3Config;
  try {
    modelConfig = checkTrainConfig(config);
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/^train: /, ""));
  }
  const layout = trainLayout(config);
  if (v.sample && worldSize(layout) > 1) {
    throw new UsageError("--sample generates on one rank; drop it or train with --dp 1 --tp 1 --sp 1");
  }
  if (v.json !== undefined) checkJsonFile(v.json);
  return { config, modelConfig, layout, json: v.json, sample: v.sample };
}

/** Refuses a --json path that cannot be written as a file, before anything is trained. */
function checkJsonFile(path: string): void {
  const kind = (where: string) => {
    try {
      return Deno.statSync(where).isDirectory ? "folder" : "file";
    } catch {
      return null;
    }
  };
  if (path.trim() === "") throw new UsageError(`--json needs a file name, got "${path}"`);
  if (kind(path) === "folder") throw new UsageError(`--json ${path} is a folder; give a file to write the records to`);
  const folder = dirname(path);
  if (kind(folder) !== "folder") throw new UsageError(`--json ${path}: there is no folder ${folder} to write it in`);
}

function formatRate(tokensPerSec: number): string {
  return tokensPerSec >= 1000 ? `${(tokensPerSec / 1000).toFixed(1)}k` : tokensPerSec.toFixed(0);
}

function progressLine(m: StepMetrics, steps: number, floor: number, barWidth: number): string {
  const filled = Math.round((m.step / steps) * barWidth);
  const bar = "█".repeat(filled) + "░".repeat(barWidth - filled);
  return `${bar} ${m.step}/${steps}  loss ${m.loss.toFixed(3)} (floor ${floor.toFixed(3)})  ` +
    `${formatRate(m.tokensPerSec)} tok/s`;
}

export async function trainCommand(argv: string[]): Promise<number> {
  const { config, modelConfig, layout, json, sample } = parseTrainArgs(argv);
  const failures = plannedFailures();
  const world = worldSize(layout);
  let trainer: Trainer | null = null;
  try {
    if (config.resume) {
      const checkpoint = await openCheckpoint(storageAt(config.resume), "");
      const { training, layout: saved } = checkpoint.metadata;
      const where = checkpoint.folder ? `${config.resume}/${checkpoint.folder}` : config.resume;
      console.log(`resuming from ${where} at step ${training.step} (saved on ${describeLayout(saved)})`);
    }
    if (config.initFrom) {
      const { initFrom } = await runStart(config, modelConfig);
      const dtypes = [...new Set([...initFrom!.header.tensors.values()].map(({ dtype }) => dtype))].join(", ");
      console.log(`initializing from ${initFrom!.where} (${dtypes}): step 0, AdamW's moments zero`);
    }
    trainer = world === 1 ? await Trainer.create(config) : null;
  } catch (error) {
    if (!(error instanceof CheckpointError)) throw error;
    console.error(`shardlab: ${error.message}`);
    return 1;
  }
  const where = trainer
    ? `on ${trainer.device.name} (${trainer.device.info.adapter})`
    : `on ${world} ranks (dp ${layout.dp} × tp ${layout.tp} × sp ${layout.sp}${
      layout.sp > 1 ? ` ${layout.spImpl}` : ""
    }, zero ${layout.zero}${describeZeropp(zeroppOptions(config))}, ` +
      `${layout.nodes} node${layout.nodes > 1 ? "s" : ""}, backend ${config.backend})`;
  console.log(
    `shardlab train: ${config.preset} (${paramCount(modelConfig).toLocaleString("en-US")} parameters) ${where}, ` +
      `${config.steps} steps of ${config.batch}×${config.seq} tokens`,
  );
  const floor = corpusFloor(config.seq);
  console.log(`corpus floor ${floor.toFixed(3)} nats/token (the loss of a perfect model)`);

  const jsonFile = json ? await Deno.open(json, { write: true, create: true, truncate: true }) : null;
  const encoder = new TextEncoder();
  const live = Deno.stdout.isTerminal();
  const plainEvery = Math.max(1, Math.round(config.steps / 30));
  const started = performance.now();
  const recentLosses: number[] = [];
  const lines: string[] = [];
  let stepsTrained = 0;
  const report = (m: StepMetrics, attempt?: number) => {
    stepsTrained++;
    recentLosses.push(m.loss);
    if (recentLosses.length > 10) recentLosses.shift();
    if (jsonFile) {
      const { step, loss, lr, gradNorm, tokensPerSec, deviceBytes, floor: batchFloor, commBytes, simTime, memory } = m;
      const record = {
        step,
        loss,
        lr,
        gradNorm,
        tokensPerSec,
        deviceBytes,
        floor: batchFloor,
        commBytes,
        simTime,
        memory,
        attempt,
      };
      lines.push(JSON.stringify(record));
    }
    if (live) {
      Deno.stdout.writeSync(encoder.encode(`\r${progressLine(m, config.steps, floor, 30)}\x1b[K`));
    } else if (m.step % plainEvery === 0 || m.step === config.steps) {
      const comm = world > 1 ? `  sent ${(m.commBytes.total / 2 ** 20).toFixed(2)} MiB (sim ${m.simTime.toFixed(3)} ms)` : "";
      console.log(
        `step ${m.step}/${config.steps}  loss ${m.loss.toFixed(4)}  lr ${m.lr.toExponential(2)}  ` +
          `grad norm ${m.gradNorm.toFixed(3)}  ${formatRate(m.tokensPerSec)} tok/s  ${
            (m.deviceBytes / 2 ** 20).toFixed(1)
          } MiB${comm}`,
      );
    }
  };
  try {
    if (trainer) {
      while (!trainer.done) report(await trainer.step());
    } else if (config.elastic) {
      const onFailure = (event: ElasticEvent) => {
        if (live) console.log();
        for (const line of describeFailure(event)) console.log(line);
        if (jsonFile) lines.push(JSON.stringify({ event: "rank-failed", ...event }));
      };
      const run = await trainElastic(config, { onStep: report, onFailure, failures });
      if (live) console.log();
      if (run.events.length > 0) {
        const lost = run.events.reduce((sum, event) => sum + event.stepsLost, 0);
        console.log(
          `elastic: ${run.events.length} failure${run.events.length > 1 ? "s" : ""}, ${lost} step${lost === 1 ? "" : "s"} ` +
            `trained again; finished on ${describeLayout(trainLayout(run.config))}`,
        );
      }
    } else {
      await trainParallel(config, report, { failures });
    }
    if (live) console.log();
    const seconds = (performance.now() - started) / 1000;
    const tokens = stepsTrained * config.batch * config.seq;
    const finalLoss = recentLosses.reduce((a, b) => a + b, 0) / recentLosses.length;
    console.log(
      `done in ${seconds.toFixed(1)} s (${formatRate(tokens / seconds)} tok/s): final loss ${finalLoss.toFixed(3)} ` +
        `(mean of the last ${recentLosses.length} steps), ${(finalLoss - floor).toFixed(3)} nats above the floor`,
    );
    if (config.save) {
      const latest = new TextDecoder().decode(await storageAt(config.save).read("latest")).trim();
      console.log(`checkpoint saved: ${config.save}/${latest} (${config.save}/latest names it)`);
    }
    if (sample && trainer) {
      console.log('\nsamples (each started from "the "):');
      for (const text of await trainer.sample("the ", 3, 120)) console.log(`  ${text.replaceAll("\n", "\n  ")}\n`);
    }
  } catch (error) {
    if (error instanceof TrainingDivergedError) {
      const { step, what, value, checkpoint } = error;
      if (jsonFile) lines.push(JSON.stringify({ event: "diverged", step, what, value: String(value), checkpoint }));
      console.error(`\nshardlab: ${error.message}`);
      return DIVERGED;
    }
    if (error instanceof ElasticError) {
      console.error(`\nshardlab: ${error.message}`);
      return 2;
    }
    if (!(error instanceof RankFailedError)) throw error;
    console.error(`\nshardlab: ${error.message.split("\n")[0]}\n(with --elastic and --save the run goes on without it)`);
    return 1;
  } finally {
    // Every step trained is written, also when the run stops early.
    if (jsonFile) {
      await jsonFile.write(encoder.encode(lines.map((line) => line + "\n").join("")));
      jsonFile.close();
    }
    trainer?.dispose();
  }
  return 0;
}

/** The failures SHARDLAB_FAIL_RANKS plans, for tests and demos (src/train/rank_failures.ts). */
function plannedFailures(): PlannedFailure[] {
  const text = Deno.env.get("SHARDLAB_FAIL_RANKS");
  if (!text) return [];
  try {
    return parseFailures(text);
  } catch (error) {
    throw new UsageError(`SHARDLAB_FAIL_RANKS: ${(error as Error).message}`);
  }
}

/** What happened when a rank failed and how the run goes on, in a few lines. */
function describeFailure(event: ElasticEvent): string[] {
  const { failedRank, failure, cause, lastStep, resumedFrom, resumedStep, oldLayout, newLayout, stepsLost, notes } = event;
  const lost = stepsLost > 0 ? ` (${resumedStep + 1}–${lastStep})` : "";
  const failed = `rank ${failedRank} failed after step ${lastStep} (${failure}): ${cause.split("\n")[0]}`;
  if (!newLayout) return [failed];
  return [
    failed,
    `elastic: going on from ${resumedFrom ?? "the start (no checkpoint was committed yet)"} at step ${resumedStep}`,
    `         layout ${describeLayout(oldLayout)} → ${describeLayout(newLayout)}${notes.length ? `; ${notes.join("; ")}` : ""}`,
    `         ${stepsLost} step${stepsLost === 1 ? "" : "s"} lost${lost}`,
  ];
}

/** ZeRO++'s techniques and the comm dtype in words, after "zero 3" ("" for plain f32 ZeRO). */
export function describeZeropp(options: ZeroppOptions): string {
  const { quantizedWeights, hpzPartitionSize, quantizedGradients, weightBits, gradientBits, quantBlock, commDtype } = options;
  const parts = [
    quantizedWeights ? `qwZ int${weightBits}` : "",
    hpzPartitionSize > 1 ? `hpZ ${hpzPartitionSize}` : "",
    quantizedGradients ? `qgZ int${gradientBits}` : "",
  ].filter(Boolean);
  const quantized = quantizedWeights || quantizedGradients ? ` blocks of ${quantBlock}` : "";
  return (parts.length ? ` + ${parts.join(", ")}${quantized}` : "") + (commDtype === "f32" ? "" : ` (${commDtype} on the wire)`);
}

/** A saved layout in words, as the header line prints the run's. */
function describeLayout(layout: ParallelLayout | null): string {
  if (!layout) return "any layout: a universal checkpoint";
  const { dp, tp, sp, spImpl, zero, nodes } = layout;
  return `dp ${dp} × tp ${tp} × sp ${sp}${sp > 1 ? ` ${spImpl}` : ""}, zero ${zero}, ${nodes} node${nodes > 1 ? "s" : ""}`;
}
