// ZeRO++ on ranks: the quantized collectives against float64 references worked out here from the
// same seeded inputs, hpZ against plain ZeRO-3, the memory hpZ costs, and the options' checks.
//
// qwZ's all-gather returns each rank's part within the quantizer's bound, scale / 2 per element
// (scale = the block's absmax / (2^(bits−1) − 1)). qgZ's reduce-scatter returns the average over
// the world of each rank's chunk within the bound its hops add up to: every rank's first
// quantization (s₁ / 2 each), then, between nodes, each node's requantized partial sum (s₂ / 2,
// where s₂ is bounded by the partial sum's absmax plus the first hop's error), all divided by the
// world size once; INT8 makes that bound tight enough that an average divided twice, or not at all,
// fails it. Worlds of 2 nodes of 2 ranks, 1 node of 4 (intra-node hop only) and 4 nodes of 1
// (inter-node hop only).

import assert from "node:assert/strict";
import { launch } from "../src/comm/launch.ts";
import { headDim, presetConfig } from "../src/nn/config.ts";
import { checkTrainConfig, type TrainConfig, zeroppOptions } from "../src/train/config.ts";
import { trainParallel } from "../src/train/parallel_run.ts";
import { type ZeroppCase, zeroppInputs } from "./fixtures/zeropp_rank.ts";

const ENTRY = new URL("./fixtures/zeropp_rank.ts", import.meta.url).href;
const CASES: ZeroppCase[] = [
  { bits: 4, block: 100, chunk: 300, seed: 1 },
  { bits: 8, block: 64, chunk: 301, seed: 2 },
  { bits: 8, block: 4096, chunk: 77, seed: 3 },
];

interface RankOutput {
  results: { reduced: Float32Array; plain: Float32Array; gathered: Float32Array }[];
  tags: string[];
}

/** The scale of each block of `values` (blocks of `block` from its start). */
function scales(values: ArrayLike<number>, block: number, bits: number): number[] {
  const top = 2 ** (bits - 1) - 1;
  const out: number[] = [];
  for (let first = 0; first < values.length; first += block) {
    let absmax = 0;
    for (let i = first; i < Math.min(first + block, values.length); i++) absmax = Math.max(absmax, Math.abs(values[i]));
    out.push(absmax / top);
  }
  return out;
}

function checkGathered(c: ZeroppCase, world: number, gathered: Float32Array, what: string): void {
  for (let r = 0; r < world; r++) {
    const part = zeroppInputs(c, r, world).part;
    const s = scales(part, c.block, c.bits);
    part.forEach((v, i) => {
      const error = Math.abs(gathered[r * c.chunk + i] - v);
      const bound = (s[Math.floor(i / c.block)] / 2) * (1 + 1e-5);
      if (error > bound) assert.fail(`${what}: rank ${r}'s element ${i} came back ${error} off, over ${bound}`);
    });
  }
}

/** Element-wise bound of qgZ's error on chunk p, and the exact average, in float64. */
function reduceBound(c: ZeroppCase, world: number, ranksPerNode: number, p: number): { average: number[]; bound: number[] } {
  const nodes = world / ranksPerNode;
  const chunks = Array.from({ length: world }, (_, k) => zeroppInputs(c, k, world).flat.subarray(p * c.chunk, (p + 1) * c.chunk));
  const average = Array.from({ length: c.chunk }, (_, i) => chunks.reduce((sum, x) => sum + x[i], 0) / world);
  const first = chunks.map((x) => scales(x, c.block, c.bits));
  const bound = new Array<number>(c.chunk).fill(0);
  for (let n = 0; n < nodes; n++) {
    const members = Array.from({ length: ranksPerNode }, (_, l) => n * ranksPerNode + l);
    const hop1 = Array.from(
      { length: c.chunk },
      (_, i) => members.reduce((sum, k) => sum + first[k][Math.floor(i / c.block)] / 2, 0),
    );
    let hop2 = new Array<number>(c.chunk).fill(0);
    if (ranksPerNode > 1 && nodes > 1) {
      // s₂ of a block: at most (the exact partial sum's absmax + the first hop's error) / T.
      const partial = Array.from({ length: c.chunk }, (_, i) => members.reduce((sum, k) => sum + chunks[k][i], 0));
      const widened = partial.map((v, i) => Math.abs(v) + hop1[i]);
      const s2 = scales(widened, c.block, c.bits);
      hop2 = hop2.map((_, i) => s2[Math.floor(i / c.block)] / 2);
    }
    for (let i = 0; i < c.chunk; i++) bound[i] += hop1[i] + hop2[i];
  }
  return { average, bound: bound.map((b, i) => (b / world) * (1 + 1e-4) + 1e-6 * Math.abs(average[i])) };
}

for (const ranksPerNode of [2, 4, 1]) {
  const world = 4;
  const nodes = world / ranksPerNode;
  Deno.test(`zeropp: qwZ and qgZ on ${nodes} node(s) of ${ranksPerNode} stay within the quantizer's bounds`, async () => {
    const ranks = await launch<RankOutput>({ ranks: world, ranksPerNode, entry: ENTRY, args: CASES, backend: "cpu" });
    CASES.forEach((c, n) => {
      const what = `INT${c.bits}, blocks of ${c.block}, chunks of ${c.chunk}`;
      for (const { rank, value } of ranks) {
        const { reduced, plain, gathered } = value.results[n];
        checkGathered(c, world, gathered, `${what}, rank ${rank}'s gather`);
        const { average, bound } = reduceBound(c, world, ranksPerNode, rank);
        let worst = 0;
        average.forEach((v, i) => {
          const error = Math.abs(reduced[i] - v);
          worst = Math.max(worst, error / bound[i]);
          if (error > bound[i]) {
            assert.fail(`${what}, rank ${rank}: element ${i} is ${reduced[i]}, the average ${v} ± ${bound[i]}`);
          }
          // The plain f32 reduce-scatter is the average up to f32 rounding.
          assert.ok(Math.abs(plain[i] - v) <= 1e-5 * (1 + Math.abs(v)), `${what}, rank ${rank}: plain element ${i}`);
        });
        assert.ok(worst > 0, `${what}: quantization changed something`);
      }
    });
    const tags = ranks[0].value.tags;
    assert.equal(tags.includes("zeropp.qgz.intra.test"), ranksPerNode > 1, `intra-node hop with ${ranksPerNode} ranks per node`);
    assert.equal(tags.includes("zeropp.qgz.inter.test"), nodes > 1, `inter-node hop over ${nodes} nodes`);
  });
}

Deno.test("zeropp: a rank whose gradients hold NaN refuses to send them, naming itself and the tag", async () => {
  const args: ZeroppCase[] = [{ bits: 4, block: 100, chunk: 300, seed: 4, nanRank: 1, nanAt: 650 }];
  await assert.rejects(
    launch({ ranks: 4, ranksPerNode: 2, entry: ENTRY, args, backend: "cpu" }),
    /rank 1 failed .*zeropp\.qgz\.intra\.test: rank 1's values: block \d+ \(elements \d+\.\.\d+\) holds NaN or ±Inf/,
  );
});

// ---- hpZ, memory, options ----

const BASE: TrainConfig = {
  preset: "tiny",
  steps: 4,
  batch: 8,
  seq: 16,
  lr: 1e-2,
  seed: 7,
  backend: "cpu",
  dp: 4,
  zero: 3,
  nodes: 2,
};

Deno.test("zeropp: hpZ alone gives ZeRO-3's losses (within 1e-4) and holds M/g of secondary partitions per rank", async () => {
  const plain = await trainParallel(BASE);
  const hpz = await trainParallel({ ...BASE, zeroHpzPartitionSize: 2 });
  const losses = (run: typeof plain) => run.history.map((m) => m.loss);
  console.log(
    `ZeRO-3 ${losses(plain).map((l) => l.toFixed(6)).join(" ")}\nhpZ    ${losses(hpz).map((l) => l.toFixed(6)).join(" ")}`,
  );
  losses(hpz).forEach((loss, step) => assert.ok(Math.abs(loss - losses(plain)[step]) <= 1e-4, `step ${step + 1}`));
  // Each rank keeps its node's share, 1/2, of every block's gathered f32 parameters.
  const model = presetConfig(BASE.preset);
  const { vocabSize: V, hiddenSize: h, numHeads: Hq, numKvHeads: Hkv, intermediateSize: I } = model;
  const layer = (Hq + 2 * Hkv) * headDim(model) * h + h * Hq * headDim(model) + 2 * I * h + h * I + 2 * h;
  const padded = [V * h, ...new Array(model.numLayers).fill(layer), h + V * h].reduce((sum, n) => sum + Math.ceil(n / 4) * 4, 0);
  for (const m of hpz.history) for (const memory of m.memory) assert.equal(memory.secondary, (4 * padded) / 2);
  for (const m of plain.history) for (const memory of m.memory) assert.equal(memory.secondary, 0);
});

Deno.test("zeropp: the options are checked, naming the flag and the value", () => {
  const check = (options: Partial<TrainConfig>, pattern: RegExp) =>
    assert.throws(() => checkTrainConfig({ ...BASE, ...options }), pattern);
  check({ zero: 2, zeropp: true }, /--zeropp works on ZeRO-3's partitions: it needs --zero 3, got --zero 2/);
  check({ zero: 0, commDtype: "f16" }, /--comm-dtype works on ZeRO-3's partitions: it needs --zero 3, got --zero 0/);
  check(
    { zeroHpzPartitionSize: 3 },
    /--zero-hpz-partition-size must be the ranks per node, 2 \(4 ranks over 2 nodes\), or 1 to turn hpZ off; got 3/,
  );
  check({ zeroQuantizedWeights: true, quantBits: 6 as 8 }, /--quant-bits must be 8 or 4, got 6/);
  check({ zeroQuantizedWeights: true, quantBlock: 0 }, /--quant-block must be an integer ≥ 1, got 0/);
  check(
    { quantBits: 4 },
    /--quant-bits sets ZeRO\+\+'s quantization: add --zero-quantized-weights, --zero-quantized-gradients or --zeropp/,
  );
  check({ commDtype: "bf16" as "f16" }, /--comm-dtype must be f32 or f16, got "bf16"/);
  check({ dp: 2, tp: 2, zeropp: true }, /--zeropp partitions over the whole world: run it with --tp 1/);
  // What the flags turn on.
  assert.deepEqual(zeroppOptions({ ...BASE, zeropp: true }), {
    quantizedWeights: true,
    hpzPartitionSize: 2,
    quantizedGradients: true,
    weightBits: 8,
    gradientBits: 4,
    quantBlock: 2048,
    commDtype: "f32",
  });
  const int4 = zeroppOptions({ ...BASE, zeroQuantizedWeights: true, quantBits: 4, quantBlock: 512 });
  assert.deepEqual([int4.quantizedWeights, int4.quantizedGradients, int4.hpzPartitionSize, int4.weightBits, int4.quantBlock], [
    true,
    false,
    1,
    4,
    512,
  ]);
});
