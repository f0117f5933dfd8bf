// A run whose learning rate is far too high stops at the first step whose loss or gradient norm is
// not finite, with TrainingDivergedError naming it, on one device and on a parallel layout, and
// leaves no checkpoint of that step or after it. The reference is an independent training loop on
// the CPU backend (the model, AdamW, the schedule and clipping, nothing of the trainer) run until
// its first non-finite step; the command line says the same in one line, without a stack trace.

import assert from "node:assert/strict";
import {
  AdamW,
  clipScale,
  fragmentMap,
  FsStorage,
  globalBatch,
  globalGradNorm,
  loadCheckpoint,
  openCheckpoint,
  Phi3ForCausalLM,
  presetConfig,
  type StepMetrics,
  tidy,
  train,
  type TrainConfig,
  warmupCosine,
} from "../mod.ts";
import { SINGLE_RANK } from "../src/parallel/layout.ts";
import { warmupStepsOf } from "../src/train/config.ts";
import { TrainingDivergedError } from "../src/train/divergence.ts";
import { shardlab } from "./cli_run.ts";
import { cpuDevice } from "./helpers.ts";

/** Each step's loss and gradient norm, up to and including the first step where either is not finite. */
async function untilNonFinite(config: TrainConfig): Promise<{ loss: number; gradNorm: number }[]> {
  const device = await cpuDevice();
  const model = new Phi3ForCausalLM(device, presetConfig(config.preset), { seed: config.seed });
  const named = model.namedParameters();
  const optimizer = new AdamW(named);
  const lrAt = warmupCosine({
    maxLr: config.lr,
    minLr: config.lr / 10,
    warmupSteps: warmupStepsOf(config),
    totalSteps: config.steps,
  });
  const figures: { loss: number; gradNorm: number }[] = [];
  try {
    for (let step = 0; step < config.steps; step++) {
      const { inputs, targets } = globalBatch({ seed: config.seed, step, batch: config.batch, seq: config.seq });
      const [loss, gradNorm] = await tidy(async () => {
        const loss = await model.loss(
          device.tensor(inputs, [config.batch, config.seq]),
          device.tensor(targets, [config.batch, config.seq]),
        );
        await loss.backward();
        return [(await loss.read())[0], await globalGradNorm(named.map(([, p]) => p))];
      });
      figures.push({ loss, gradNorm });
      if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) return figures;
      optimizer.step({ lr: lrAt(step), gradScale: clipScale(gradNorm, 1) });
      optimizer.zeroGrad();
    }
    throw new Error(`the reference run at lr ${config.lr} never diverged; the test needs one that does`);
  } finally {
    optimizer.dispose();
    model.dispose();
  }
}

/** The error train(config) rejects with, and the steps it reported before. */
async function divergedRun(config: TrainConfig): Promise<{ error: TrainingDivergedError; history: StepMetrics[] }> {
  const history: StepMetrics[] = [];
  const error = await train(config, (m) => history.push(m)).then(
    () => assert.fail("the run trained to the end without diverging"),
    (error) => error,
  );
  assert.ok(error instanceof TrainingDivergedError, `expected TrainingDivergedError, got ${error}`);
  return { error, history };
}

/** The checkpoint folders in `dir`, and the one `latest` names, whose whole state (loaded on one device) is finite. */
async function savedSteps(dir: string): Promise<{ folders: string[]; latest: string }> {
  const folders = [...Deno.readDirSync(dir)].map((entry) => entry.name).filter((name) => name.startsWith("step-")).sort();
  const checkpoint = await openCheckpoint(new FsStorage(dir), "");
  const model = presetConfig("tiny");
  const state = await loadCheckpoint(null, checkpoint, model, fragmentMap(model, SINGLE_RANK, []), 0);
  for (const key of ["fp32", "expAvg", "expAvgSq"] as const) {
    assert.ok(state[key].every(Number.isFinite), `${checkpoint.folder}: ${key} holds a non-finite value`);
  }
  return { folders, latest: checkpoint.folder };
}

const BASE = { preset: "tiny", batch: 4, seq: 16, seed: 0, backend: "cpu" } as const;

Deno.test("divergence: one device stops at the reference's first non-finite step, with no checkpoint from it on", async () => {
  const save = await Deno.makeTempDir();
  try {
    // lr 25 overflows the gradient norm at step 4 on the CPU backend, a save step of --save-every 2.
    const config: TrainConfig = { ...BASE, steps: 12, lr: 25, save, saveEvery: 2 };
    const reference = await untilNonFinite(config);
    const last = reference.at(-1)!;
    const { error, history } = await divergedRun(config);
    assert.equal(error.step, reference.length);
    assert.equal(error.what, Number.isFinite(last.loss) ? "gradient norm" : "loss");
    assert.ok(Object.is(error.value, Number.isFinite(last.loss) ? last.gradNorm : last.loss), `${error.value}`);
    assert.equal(error.lr, 25);
    assert.deepEqual(history.map((m) => m.loss), reference.slice(0, -1).map((r) => r.loss));
    // The saves of the steps before it exist; the save the diverged step was due never happens.
    const saves = history.map((m) => m.step).filter((step) => step % 2 === 0);
    const { folders, latest } = await savedSteps(save);
    assert.deepEqual(folders, saves.map((step) => `step-${String(step).padStart(8, "0")}`));
    assert.equal(latest, folders.at(-1));
    assert.equal(error.checkpoint, `${save}/${latest}`);
    assert.match(error.message, new RegExp(`at step ${error.step} \\(the learning rate 25 may be too high\\); the last good`));
  } finally {
    await Deno.remove(save, { recursive: true });
  }
});

Deno.test("divergence: dp 2 with ZeRO-1 stops every rank at the same step as one device, without saving it", async () => {
  const save = await Deno.makeTempDir();
  try {
    // At lr 1e6 the first update breaks the model on every layout; step 1 is a save step.
    const config: TrainConfig = { ...BASE, steps: 10, lr: 1e6, save, saveEvery: 1, dp: 2, zero: 1 };
    const reference = await untilNonFinite({ ...config, dp: 1, zero: 0 });
    const { error, history } = await divergedRun(config);
    assert.equal(error.step, reference.length);
    assert.equal(history.length, reference.length - 1);
    const { folders, latest } = await savedSteps(save);
    assert.deepEqual(folders, history.map((m) => `step-${String(m.step).padStart(8, "0")}`));
    assert.equal(error.checkpoint, `${save}/${latest}`);
  } finally {
    await Deno.remove(save, { recursive: true });
  }
});

Deno.test("divergence: under ZeRO++'s quantized gradients the rank that cannot quantize them names the step", async () => {
  const config: TrainConfig = { ...BASE, steps: 10, lr: 1e6, dp: 2, zero: 3, zeroQuantizedGradients: true };
  const reference = await untilNonFinite({ ...config, dp: 1, zero: 0, zeroQuantizedGradients: undefined });
  const { error, history } = await divergedRun(config);
  assert.equal(error.step, reference.length);
  assert.equal(history.length, reference.length - 1);
  assert.equal(error.what, "gradients");
  assert.match(error.message, /the gradients became NaN or ±Inf at step \d+ .*; no checkpoint was saved$/);
});

Deno.test("divergence: the command line names the step in one line and exits 3, also with --elastic", async () => {
  const save = await Deno.makeTempDir();
  try {
    const args = ["--lr", "1e6", "--steps", "30", "--batch", "4", "--seq", "16", "--backend", "cpu"];
    const json = `${save}/run.jsonl`;
    const single = await shardlab("train", ...args, "--json", json);
    assert.equal(single.code, 3, single.stderr);
    assert.equal(
      single.stderr.trim(),
      "shardlab: train: the gradient norm became NaN at step 2 (the learning rate 1e6 may be too high); no checkpoint was saved",
    );
    const records = (await Deno.readTextFile(json)).trim().split("\n").map((line) => JSON.parse(line));
    assert.deepEqual(records.map((r) => r.step), [1, 2]);
    assert.deepEqual(records[1], { event: "diverged", step: 2, what: "gradient norm", value: "NaN", checkpoint: null });
    const elastic = await shardlab("train", ...args, "--dp", "2", "--zero", "1", "--elastic", "--save", save);
    assert.equal(elastic.code, 3, elastic.stderr);
    assert.match(elastic.stderr.trim(), /^shardlab: train: the gradient norm became NaN at step 2 .*no checkpoint was saved$/);
    assert.doesNotMatch(elastic.stdout, /elastic:|failed/);
  } finally {
    await Deno.remove(save, { recursive: true });
  }
});
