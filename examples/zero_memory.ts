// ZeRO's memory per rank: DDP against ZeRO-1, 2 and 3.
//
// Training with AdamW in f32 holds 16 bytes per parameter: the parameter (4), its gradient (4) and
// Adam's two moments (8). DDP keeps all of it on every one of the D data-parallel ranks. ZeRO
// (Rajbhandari et al., 2020) partitions it over the ranks instead: stage 1 the optimizer state,
// stage 2 also the gradients, stage 3 also the parameters, so that each rank holds 1/D of each.
// With Ψ parameters, per rank (bytes):
//
//   DDP      parameters 4Ψ     gradients 4Ψ              optimizer 8Ψ
//   ZeRO-1   parameters 4Ψ     gradients 4Ψ + 4Ψ/D       optimizer 12Ψ/D
//   ZeRO-2   parameters 4Ψ     gradients 4Ψ/D            optimizer 12Ψ/D
//   ZeRO-3   parameters 4Ψ/D   gradients 4Ψ/D            optimizer 8Ψ/D
//
// Stages 1 and 2 keep an fp32 master copy of their partition beside the moments (the paper's
// K = 12 bytes of optimizer state per parameter), and stage 1 keeps every full gradient plus the
// averaged gradient of its partition that the optimizer reads; under stage 3 the partition itself
// is the master copy. The figures are what each strategy counts it holds (StepMetrics.memory,
// once the gradients are reduced), not recomputed here. ZeRO pads each flat group to a multiple of
// D, so a preset whose groups do not divide by D shows a few bytes more than the formula.
//
// What to look for: the totals fall from 16Ψ towards 16Ψ/D; ZeRO-3 also needs room to gather one
// block at a time ("gathered": one decoder layer's values and gradients), whatever D.
//
//   deno run -A examples/zero_memory.ts [--preset tiny|small] [--dp 4] [--backend cpu] [--json]

import { paramCount, presetConfig, type RankMemory, train, type ZeroStage } from "shardlab";
import { integer, kib, printJson, printTable, readFlags, usageError } from "./cli.ts";

const { flags, json } = readFlags({ preset: "tiny", dp: "4", backend: "cpu" });
const dp = integer("dp", flags.dp, 2);
if (flags.preset !== "tiny" && flags.preset !== "small") usageError(`--preset must be tiny or small, got "${flags.preset}"`);
const psi = paramCount(presetConfig(flags.preset));

type Held = Pick<RankMemory, "parameters" | "gradients" | "optimizer">;

/** The formula's bytes per rank, from Ψ and D alone. */
function formula(stage: ZeroStage): Held {
  const [whole, part] = [4 * psi, (4 * psi) / dp];
  if (stage === 0) return { parameters: whole, gradients: whole, optimizer: 2 * whole };
  if (stage === 1) return { parameters: whole, gradients: whole + part, optimizer: 3 * part };
  if (stage === 2) return { parameters: whole, gradients: part, optimizer: 3 * part };
  return { parameters: part, gradients: part, optimizer: 2 * part };
}

function total(memory: Held): number {
  return memory.parameters + memory.gradients + memory.optimizer;
}

const stages = [
  { name: "DDP", zero: 0 },
  { name: "ZeRO-1", zero: 1 },
  { name: "ZeRO-2", zero: 2 },
  { name: "ZeRO-3", zero: 3 },
] as const;

const rows = [];
for (const { name, zero } of stages) {
  // One step of dp ranks, one row of 16 tokens each: memory is sampled once the gradients are reduced.
  const [step] = await train({
    preset: flags.preset,
    steps: 1,
    batch: dp,
    seq: 16,
    lr: 1e-3,
    seed: 0,
    backend: flags.backend as "cpu" | "webgpu" | "auto",
    dp,
    zero,
  });
  const largest = step.memory.reduce((a, b) => total(b) > total(a) ? b : a); // the fullest rank
  rows.push({ name, zero, measured: largest, everyRank: step.memory, formula: formula(zero) });
}

console.log(`${flags.preset}: Ψ = ${psi.toLocaleString("en-US")} parameters, dp ${dp}, f32 AdamW; KiB per rank (the fullest)`);
const columns = (memory: Held) => [memory.parameters, memory.gradients, memory.optimizer, total(memory)].map(kib);
const ofDdp = (memory: Held) => `${(100 * total(memory) / total(formula(0))).toFixed(1)}%`;
printTable(
  ["strategy", "", "parameters", "gradients", "optimizer", "total", "of DDP", "gathered"],
  rows.flatMap(({ name, measured, formula }) => [
    [name, "measured", ...columns(measured), ofDdp(measured), kib(measured.gathered)],
    ["", "formula", ...columns(formula), ofDdp(formula), "—"],
  ]),
);
printJson(json, { preset: flags.preset, psi, dp, stages: rows });
