// `shardlab train`: trains a preset on the procedural corpus and shows the loss against the
// corpus floor — a live progress bar on a terminal, plain lines otherwise, JSON lines on request.

import { parseArgs } from "node:util";
import type { BackendChoice } from "../src/tensor/device.ts";
import { paramCount } from "../src/nn/config.ts";
import { checkTrainConfig, DEFAULT_TRAIN_CONFIG, type TrainConfig } from "../src/train/config.ts";
import { type StepMetrics, Trainer } from "../src/train/trainer.ts";
import { UsageError } from "./usage.ts";

export const TRAIN_USAGE = `usage: shardlab train [options]

  --preset tiny|small        model size (default ${DEFAULT_TRAIN_CONFIG.preset})
  --steps N                  optimizer steps (default ${DEFAULT_TRAIN_CONFIG.steps})
  --batch B                  rows per batch (default ${DEFAULT_TRAIN_CONFIG.batch})
  --seq T                    tokens per row (default ${DEFAULT_TRAIN_CONFIG.seq})
  --lr X                     peak learning rate (default ${DEFAULT_TRAIN_CONFIG.lr})
  --seed S                   seeds the weights and the data (default ${DEFAULT_TRAIN_CONFIG.seed})
  --backend auto|webgpu|cpu  (default auto: WebGPU when an adapter exists, otherwise CPU)
  --json FILE                write one JSON object per step to FILE
  --sample                   print a few generated lines at the end
`;

/** Reads a numeric option, naming it when the text is not a number. */
function numberOption(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === "" || Number.isNaN(value)) throw new UsageError(`--${name} must be a number, got "${text}"`);
  return value;
}

function parseTrainArgs(argv: string[]): { config: TrainConfig; json?: string; sample: boolean } {
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
  };
  try {
    checkTrainConfig(config);
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/^train: /, ""));
  }
  return { config, json: v.json, sample: v.sample };
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
  const { config, json, sample } = parseTrainArgs(argv);
  const trainer = await Trainer.create(config);
  const { device, modelConfig, floor } = trainer;
  console.log(
    `shardlab train: ${config.preset} (${paramCount(modelConfig).toLocaleString("en-US")} parameters) on ${device.name}` +
      ` (${device.info.adapter}), ${config.steps} steps of ${config.batch}×${config.seq} tokens`,
  );
  console.log(`corpus floor ${floor.toFixed(3)} nats/token (the loss of a perfect model)`);

  const jsonFile = json ? await Deno.open(json, { write: true, create: true, truncate: true }) : null;
  const encoder = new TextEncoder();
  const live = Deno.stdout.isTerminal();
  const plainEvery = Math.max(1, Math.round(config.steps / 30));
  const started = performance.now();
  let last: StepMetrics | null = null;
  const recentLosses: number[] = [];
  try {
    while (!trainer.done) {
      last = await trainer.step();
      recentLosses.push(last.loss);
      if (recentLosses.length > 10) recentLosses.shift();
      if (jsonFile) {
        const { step, loss, lr, gradNorm, tokensPerSec, deviceBytes, floor: batchFloor } = last;
        const record = { step, loss, lr, gradNorm, tokensPerSec, deviceBytes, floor: batchFloor };
        await jsonFile.write(encoder.encode(JSON.stringify(record) + "\n"));
      }
      if (live) {
        await Deno.stdout.write(encoder.encode(`\r${progressLine(last, config.steps, floor, 30)}\x1b[K`));
      } else if (last.step % plainEvery === 0 || trainer.done) {
        console.log(
          `step ${last.step}/${config.steps}  loss ${last.loss.toFixed(4)}  lr ${last.lr.toExponential(2)}  ` +
            `grad norm ${last.gradNorm.toFixed(3)}  ${formatRate(last.tokensPerSec)} tok/s  ${(last.deviceBytes / 2 ** 20).toFixed(1)} MiB`,
        );
      }
    }
    if (live) console.log();
    const seconds = (performance.now() - started) / 1000;
    const tokens = config.steps * config.batch * config.seq;
    const finalLoss = recentLosses.reduce((a, b) => a + b, 0) / recentLosses.length;
    console.log(
      `done in ${seconds.toFixed(1)} s (${formatRate(tokens / seconds)} tok/s): final loss ${finalLoss.toFixed(3)} ` +
        `(mean of the last ${recentLosses.length} steps), ${(finalLoss - floor).toFixed(3)} nats above the floor`,
    );
    if (sample) {
      console.log("\nsamples (each started from \"the \"):");
      for (const text of await trainer.sample("the ", 3, 120)) console.log(`  ${text.replaceAll("\n", "\n  ")}\n`);
    }
  } finally {
    jsonFile?.close();
    trainer.dispose();
  }
  return 0;
}
