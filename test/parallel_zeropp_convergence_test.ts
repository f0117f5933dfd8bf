// ZeRO++ trains as well as ZeRO-3: the tiny preset for 400 steps on dp 4 over 2 nodes, with the
// CLI's defaults (batch 16 × 64 tokens, lr 1e-2), once with plain ZeRO-3 and once with all three
// techniques (INT8 weights, hpZ, INT4 gradients). The paper's bar is a loss within a few percent of
// the baseline; this test's: the final losses (each the mean of the last 10 steps) within 2 % of
// each other, and their gaps to the corpus floor within 0.05 nats.

import assert from "node:assert/strict";
import { corpusFloor } from "../src/data/corpus.ts";
import type { TrainConfig } from "../src/train/config.ts";
import { trainParallel } from "../src/train/parallel_run.ts";

const CONFIG: TrainConfig = {
  preset: "tiny",
  steps: 400,
  batch: 16,
  seq: 64,
  lr: 1e-2,
  seed: 0,
  backend: "cpu",
  dp: 4,
  zero: 3,
  nodes: 2,
};

async function finalLoss(config: TrainConfig): Promise<number> {
  const { history } = await trainParallel(config);
  assert.equal(history.length, config.steps);
  const last = history.slice(-10).map((m) => m.loss);
  return last.reduce((a, b) => a + b, 0) / last.length;
}

Deno.test("zeropp: 400 steps of the tiny preset end within 2 % of ZeRO-3's loss, the floor gap within 0.05 nats", async () => {
  const floor = corpusFloor(CONFIG.seq);
  const zero3 = await finalLoss(CONFIG);
  const zeropp = await finalLoss({ ...CONFIG, zeropp: true });
  const relative = Math.abs(zeropp - zero3) / zero3;
  console.log(
    `final loss (mean of the last 10 steps), floor ${floor.toFixed(3)}: ZeRO-3 ${zero3.toFixed(4)} (gap ${
      (zero3 - floor).toFixed(4)
    }), ` +
      `ZeRO++ ${zeropp.toFixed(4)} (gap ${(zeropp - floor).toFixed(4)}); ${(100 * relative).toFixed(2)} % apart`,
  );
  assert.ok(zero3 - floor < 0.5, `ZeRO-3 learned: ${zero3} against the floor ${floor}`);
  assert.ok(relative <= 0.02, `ZeRO++ ${zeropp} vs ZeRO-3 ${zero3}: ${(100 * relative).toFixed(2)} % apart`);
  assert.ok(Math.abs(zeropp - zero3) <= 0.05, `floor gaps ${zeropp - floor} and ${zero3 - floor}`);
});
