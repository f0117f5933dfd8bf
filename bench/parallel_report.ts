// The stdout of `bench parallel`: the strategy table of each preset, with the layouts that were
// skipped or failed named below it, then the Ulysses vs Megatron-SP scaling table.

import { DEFAULT_LINKS } from "../src/comm/cost_model.ts";
import type { Phi3Config } from "../src/nn/config.ts";
import type { RankMemory } from "../src/parallel/strategy.ts";
import type { ScalingRow, StrategyRow } from "./parallel.ts";
import { alignedTable, formatMs } from "./report.ts";

const MIB = 2 ** 20;

const STRATEGY_HEADER = [
  "layout",
  "ranks",
  "nodes",
  "tokens/s",
  "step ms",
  "intra B/step",
  "inter B/step",
  "sim ms/step",
  "params MiB",
  "grads MiB",
  "optim MiB",
  "total MiB",
  "gathered MiB",
  "last loss",
];

const SCALING_HEADER = [
  "impl",
  "S",
  "N",
  "per rank",
  "analytic",
  "ledger",
  "÷ S=2",
  "sim µs",
  "fwd+bwd per rank",
  "fwd+bwd sim µs",
];

export function printStrategies(rows: StrategyRow[], run: { backend: string; steps: number; twoNodeRanks: number }): void {
  const { intra, inter } = DEFAULT_LINKS;
  console.log(
    `parallel strategies — ${run.backend} backend, rank workers on ${navigator.hardwareConcurrency} cores; ` +
      `${run.steps} training steps per layout, the first dropped as warm-up, median of the rest`,
  );
  if (run.backend === "cpu") {
    console.log(
      "(the default backend is cpu: llvmpipe WebGPU with 4 rank workers on a 2-core machine is very slow; --backend webgpu to use it)",
    );
  }
  console.log(
    `layouts of ${run.twoNodeRanks} ranks run as 2 simulated nodes (consecutive ranks share a node, tp fastest, then sp, then dp), ` +
      "so their inter-node bytes show; smaller layouts run on one node.",
  );
  console.log(
    "tokens/s: the global batch's tokens / the slowest rank's step (wall clock, this machine); B/step: bytes all ranks sent in one step, " +
      `by link class; sim: the cost model's communication time of the step, the slowest rank's (intra ${intra.bandwidthGBps} GB/s + ` +
      `${intra.latencyUs} µs, inter ${inter.bandwidthGBps} GB/s + ${inter.latencyUs} µs per message); ` +
      "MiB: the largest rank's parameters, gradients and AdamW state once its gradients are reduced " +
      "(ZeRO's optimizer column holds the fp32 partition and its two moments; ZeRO-1 keeps every full gradient beside its partition's; " +
      "gathered: ZeRO-3's largest working copy of a block).",
  );
  for (const preset of [...new Set(rows.map((row) => row.preset))]) {
    const members = rows.filter((row) => row.preset === preset);
    console.log("");
    console.log(`${preset} [${members[0].batch}×${members[0].seq}]`);
    for (const line of alignedTable(STRATEGY_HEADER, members.map(strategyRow))) console.log(line);
    for (const row of members) {
      if (row.skipped) console.log(`SKIPPED ${preset} ${row.layout}: ${row.skipped}`);
      if (row.error) console.log(`ERROR ${preset} ${row.layout}: ${row.error}`);
      if (!row.skipped && !row.error && !row.bytesSteady) {
        console.log(`NOTE ${preset} ${row.layout}: the timed steps sent different bytes; the last step is shown`);
      }
    }
  }
  console.log("");
}

function strategyRow(row: StrategyRow): string[] {
  const head = [row.layout, String(row.ranks), String(row.nodes)];
  if (row.skipped || row.error) {
    return [...head, row.skipped ? "skipped" : "ERROR", ...new Array(STRATEGY_HEADER.length - 4).fill("—")];
  }
  const largest = row.memory.reduce((a, b) => (total(b) > total(a) ? b : a));
  return [
    ...head,
    row.tokensPerSec.toFixed(0),
    formatMs(row.stepMs),
    formatBytes(row.commBytes.intra),
    formatBytes(row.commBytes.inter),
    row.simulatedMs.toFixed(3),
    mib(largest.parameters),
    mib(largest.gradients),
    mib(largest.optimizer),
    mib(total(largest)),
    largest.gathered ? mib(largest.gathered) : "—",
    row.losses.at(-1)!.toFixed(4),
  ];
}

function total(memory: RankMemory): number {
  return memory.parameters + memory.gradients + memory.optimizer;
}

export function printScaling(rows: ScalingRow[], model: Phi3Config): void {
  const { hiddenSize: h, numHeads, numKvHeads, numLayers, vocabSize, intermediateSize } = model;
  console.log(
    `sequence parallel scaling — Ulysses vs Megatron-SP on a bench model (hidden ${h}, ${numHeads} query and ${numKvHeads} kv heads, ` +
      `${numLayers} layers, MLP ${intermediateSize}, vocab ${vocabSize}); B = ${rows[0].batch} row of N = 64·S tokens; ` +
      "one forward and backward, S ranks on one node",
  );
  console.log(
    "per rank: bytes one rank sent in decoder layer 0's forward collectives (Ulysses: ulysses.alltoall.fwd.layer0.{qkv,out}; " +
      "Megatron-SP: tp.allgather.fwd.layer0.{attn,mlp} and tp.reducescatter.fwd.layer0.{attn,mlp}); analytic, in f32 floats: " +
      "Ulysses 4·B·N·h·(S−1)/S², Megatron-SP 4·B·N·h·(S−1)/S (the DeepSpeed-Ulysses paper's 4Nh/S and 4Nh per link, × (S−1)/S); " +
      "ledger: exact when every rank sent the analytic bytes; ÷ S=2: per rank over S = 2's (S = 1 sends nothing); " +
      "sim: the slowest rank's cost-model time of those collectives.",
  );
  for (const line of alignedTable(SCALING_HEADER, rows.map(scalingRow))) console.log(line);
  for (const row of rows.filter((row) => !row.exact)) {
    console.log(
      `LEDGER ${row.impl} S = ${row.sp}: ranks sent ${row.minBytesPerRank} … ${row.bytesPerRank} B, analytic ${row.analyticBytes} B ` +
        `(rank 0 by tag: ${JSON.stringify(row.byTag)})`,
    );
  }
  for (const impl of [...new Set(rows.map((row) => row.impl))]) {
    const members = rows.filter((row) => row.impl === impl && row.ratioToS2 !== null);
    const largest = members.at(-1)!;
    console.log(
      `${impl}: per-rank bytes from S = 2 to S = ${largest.sp} (N ×${largest.sp / 2}): ×${largest.ratioToS2!.toFixed(2)}`,
    );
  }
  console.log("");
}

function scalingRow(row: ScalingRow): string[] {
  return [
    row.impl,
    String(row.sp),
    String(row.seq),
    formatBytes(row.bytesPerRank),
    formatBytes(row.analyticBytes),
    row.exact ? "exact" : "DIFF",
    row.ratioToS2 === null ? "—" : `${row.ratioToS2.toFixed(2)}×`,
    (row.simulatedMs * 1000).toFixed(2),
    formatBytes(row.stepBytesPerRank),
    (row.stepSimulatedMs * 1000).toFixed(2),
  ];
}

function mib(bytes: number): string {
  return (bytes / MIB).toFixed(3);
}

function formatBytes(bytes: number): string {
  if (bytes === 0) return "0";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < MIB) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / MIB).toFixed(2)} MiB`;
}
