// `shardlab memory` and memoryPlan against two independent references: what the strategies report
// per rank (StepMetrics.memory) after one real step on the CPU backend, for the tiny preset on DDP,
// ZeRO-1, 2 and 3 (dp 3, whose partitions are padded), tp 2, dp 2 × tp 2 with ZeRO-3 and ZeRO++
// with hpZ; and the ZeRO paper's formulas in f32 for phi3-mini, which no run here could hold.

import assert from "node:assert/strict";
import { memoryPlan, paramCount, presetConfig, type RankMemory, type TrainConfig, trainParallel } from "../mod.ts";
import { trainLayout, zeroppOptions } from "../src/train/config.ts";
import { shardlab } from "./cli_run.ts";

interface MemoryJson {
  preset: string;
  parameters: number;
  ranks: RankMemory[];
}

async function memoryCommand(...args: string[]): Promise<MemoryJson> {
  const result = await shardlab("memory", ...args, "--json");
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout);
}

/** The rest of a run's config, which memory does not depend on. */
const RUN = { preset: "tiny", steps: 1, batch: 1, seq: 16, lr: 1e-3, seed: 0, backend: "cpu" as const };

/** What each rank reports after one real step of the tiny preset on `layout` (CPU ranks). */
async function realStep(layout: Partial<TrainConfig>): Promise<RankMemory[]> {
  return (await trainParallel({ ...RUN, batch: layout.dp ?? 1, ...layout })).history[0].memory;
}

const LAYOUTS: Partial<TrainConfig>[] = [
  { dp: 2, zero: 1 },
  { dp: 2, zero: 2 },
  { dp: 3, zero: 3 },
  { tp: 2 },
  { dp: 2, tp: 2, zero: 3 },
  { dp: 4, nodes: 2, zero: 3, zeropp: true },
];

for (const layout of LAYOUTS) {
  Deno.test(`memory: memoryPlan for ${JSON.stringify(layout)} is what each rank of a real step reports`, async () => {
    const config = { ...RUN, ...layout };
    const plan = memoryPlan(presetConfig("tiny"), trainLayout(config), zeroppOptions(config));
    assert.equal(plan.parameters, 110_912);
    assert.deepEqual(plan.ranks, await realStep(layout));
  });
}

Deno.test("memory: `shardlab memory --dp 2 --json` prints the per-rank figures of a real DDP step", async () => {
  const printed = await memoryCommand("--dp", "2");
  assert.equal(printed.preset, "tiny");
  assert.equal(printed.parameters, 110_912);
  assert.deepEqual(printed.ranks, await realStep({ dp: 2 }));
});

Deno.test("memory: phi3-mini on every ZeRO stage follows the ZeRO paper's formulas in f32, padding included", async () => {
  const model = presetConfig("phi3-mini");
  const { vocabSize: V, hiddenSize: C, numLayers: L, numHeads: H, numKvHeads: K, intermediateSize: I } = model;
  const D = C / H;
  const embed = V * C;
  const layer = (H + 2 * K) * D * C + C * H * D + 3 * I * C + 2 * C;
  const head = C + V * C;
  const psi = 3_821_079_552;
  assert.equal(embed + L * layer + head, psi);
  assert.equal(paramCount(model), psi);
  const part = (n: number, N: number) => Math.ceil(n / N);
  const zero3Part = (N: number) => part(embed, N) + L * part(layer, N) + part(head, N);
  const largest = Math.max(embed, layer, head);

  const expected: [Partial<TrainConfig>, RankMemory][] = [
    [{}, { parameters: 4 * psi, gradients: 4 * psi, optimizer: 8 * psi, gathered: 0, secondary: 0 }],
    // 7 does not divide Ψ nor any block: every partition is padded.
    [{ dp: 7, zero: 1 }, {
      parameters: 4 * psi,
      gradients: 4 * psi + 4 * part(psi, 7),
      optimizer: 12 * part(psi, 7),
      gathered: 0,
      secondary: 0,
    }],
    [{ dp: 7, zero: 2 }, {
      parameters: 4 * psi,
      gradients: 4 * part(psi, 7),
      optimizer: 12 * part(psi, 7),
      gathered: 0,
      secondary: 0,
    }],
    [{ dp: 7, zero: 3 }, {
      parameters: 4 * zero3Part(7),
      gradients: 4 * zero3Part(7),
      optimizer: 8 * zero3Part(7),
      gathered: 8 * largest,
      secondary: 0,
    }],
    // hpZ over 4 ranks per node keeps M/4 more per rank (M: the model, padded per block, in f32).
    [{ dp: 8, nodes: 2, zero: 3, zeroHpzPartitionSize: 4 }, {
      parameters: 4 * zero3Part(8),
      gradients: 4 * zero3Part(8),
      optimizer: 8 * zero3Part(8),
      gathered: 8 * largest,
      secondary: (4 * 8 * zero3Part(8)) / 4,
    }],
  ];
  for (const [layout, memory] of expected) {
    const config = { ...RUN, ...layout };
    const plan = memoryPlan(model, trainLayout(config), zeroppOptions(config));
    assert.equal(plan.parameters, psi);
    assert.equal(plan.ranks.length, layout.dp ?? 1);
    for (const [rank, held] of plan.ranks.entries()) assert.deepEqual(held, memory, `${JSON.stringify(layout)}: rank ${rank}`);
  }
  // The command line prints the same.
  const printed = await memoryCommand(
    "--preset",
    "phi3-mini",
    "--dp",
    "8",
    "--nodes",
    "2",
    "--zero",
    "3",
    "--zero-hpz-partition-size",
    "4",
  );
  assert.equal(printed.parameters, psi);
  assert.deepEqual(printed.ranks, Array(8).fill(expected.at(-1)![1]));
});

Deno.test("memory: the table names the parameters and each kind in bytes and GiB; bad input exits 2", async () => {
  const table = await shardlab("memory", "--preset", "phi3-mini");
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /phi3-mini, 3,821,079,552 parameters/);
  // DDP on one rank: 16 bytes per parameter.
  assert.match(table.stdout, /total +61,137,272,832 B +56\.939 GiB/);
  const refusals: [string[], string][] = [
    [["memory", "--preset", "huge"], 'unknown preset "huge" (valid: tiny, small, phi3-mini)'],
    [["memory", "--tp", "3"], "4 attention heads do not split evenly over tp 3"],
    // Training phi3-mini is refused, pointing at this command.
    [["train", "--preset", "phi3-mini"], "the phi3-mini preset is for parameter and memory arithmetic only (shardlab memory"],
  ];
  for (const [args, message] of refusals) {
    const result = await shardlab(...args);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stdout}`);
    assert.ok(result.stderr.includes(message), `${args.join(" ")}: ${result.stderr}`);
  }
});
