// The trainer end to end: the loss falls on both backends, both backends give the same losses from
// the same seed, and device memory stays flat once the first steps have allocated optimizer state.

import assert from "node:assert/strict";
import { type StepMetrics, Trainer } from "../src/train/trainer.ts";
import type { TrainConfig } from "../src/train/config.ts";
import { corpusFloor } from "../src/data/corpus.ts";
import { cpuDevice, skipWebGpu, testBothBackends, webgpuDevice } from "./helpers.ts";
import type { Device } from "../mod.ts";

const BASE: TrainConfig = { preset: "tiny", steps: 30, batch: 8, seq: 32, lr: 1e-2, seed: 7, backend: "cpu" };

async function run(device: Device, config: Partial<TrainConfig>, eachStep?: (m: StepMetrics) => void): Promise<StepMetrics[]> {
  const trainer = await Trainer.create({ ...BASE, ...config }, device);
  const history: StepMetrics[] = [];
  try {
    while (!trainer.done) {
      const metrics = await trainer.step();
      eachStep?.(metrics);
      history.push(metrics);
    }
  } finally {
    trainer.dispose();
  }
  return history;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

testBothBackends("trainer: the loss falls from ln(vocab) toward the corpus floor", async (device) => {
  const history = await run(device, {});
  const losses = history.map((m) => m.loss);
  assert.ok(
    Math.abs(losses[0] - Math.log(96)) < 0.3,
    `the first loss ${losses[0]} should be near ln(96) = ${Math.log(96).toFixed(3)}`,
  );
  const first = mean(losses.slice(0, 5)), last = mean(losses.slice(-5));
  assert.ok(last < first - 1, `the loss did not fall: first five ${first.toFixed(3)}, last five ${last.toFixed(3)}`);
  assert.ok(last > corpusFloor(BASE.seq) - 0.05, `the loss ${last.toFixed(3)} went below the corpus floor`);
  for (const m of history) {
    assert.ok(Number.isFinite(m.gradNorm) && m.gradNorm > 0, `step ${m.step}: grad norm ${m.gradNorm}`);
    assert.ok(m.tokensPerSec > 0 && m.deviceBytes > 0);
  }
});

Deno.test({
  name: "trainer: the same seed gives the same losses on cpu and webgpu (10 steps, within 1e-3)",
  ignore: skipWebGpu,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const gpu = await webgpuDevice();
    assert.ok(gpu, "no WebGPU device");
    const config = { steps: 10, batch: 4, seq: 32 };
    const onCpu = (await run(await cpuDevice(), config)).map((m) => m.loss);
    const onGpu = (await run(gpu, config)).map((m) => m.loss);
    for (let i = 0; i < onCpu.length; i++) {
      assert.ok(Math.abs(onCpu[i] - onGpu[i]) <= 1e-3, `step ${i + 1}: cpu ${onCpu[i]} vs webgpu ${onGpu[i]}`);
    }
  },
});

testBothBackends("trainer: no device-memory growth between step 5 and step 50", async (device) => {
  const bytes = new Map<number, number>();
  await run(device, { steps: 50, batch: 2, seq: 16 }, (m) => bytes.set(m.step, m.deviceBytes));
  assert.equal(bytes.get(50), bytes.get(5), `device bytes grew from ${bytes.get(5)} at step 5 to ${bytes.get(50)} at step 50`);
});

testBothBackends("trainer: bad options are rejected before anything is built, naming the value", async (device) => {
  const before = device.stats().bytes;
  await assert.rejects(Trainer.create({ ...BASE, preset: "huge" }, device), /unknown preset "huge" \(valid: tiny, small\)/);
  await assert.rejects(Trainer.create({ ...BASE, seq: 100000 }, device), /--seq 100000 exceeds .* 256/);
  await assert.rejects(Trainer.create({ ...BASE, batch: 0 }, device), /--batch must be an integer ≥ 1, got 0/);
  await assert.rejects(Trainer.create({ ...BASE, lr: -1 }, device), /--lr must be a positive number, got -1/);
  assert.equal(device.stats().bytes, before);
});
