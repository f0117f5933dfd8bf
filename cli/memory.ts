// `shardlab memory`: the parameter count of a preset and what every rank of a layout holds to train
// it (parameters, gradients, AdamW's state, ZeRO-3's gathered block, hpZ's secondary partitions), in
// bytes and GiB, worked out from shapes without allocating anything, so phi3-mini's 3.8 billion
// parameters are as quick as tiny. The figures are those a run on that layout reports per rank.

import { parseArgs } from "node:util";
import { presetConfig, PRESETS } from "../src/nn/config.ts";
import { memoryPlan, memoryTotal } from "../src/parallel/memory_plan.ts";
import type { RankMemory } from "../src/parallel/strategy.ts";
import { trainLayout, zeroppOptions } from "../src/train/config.ts";
import { LAYOUT_OPTIONS, LAYOUT_USAGE, layoutConfig, ZEROPP_USAGE } from "./layout_options.ts";
import { describeZeropp } from "./train.ts";
import { UsageError } from "./usage.ts";

const PRESET_NAMES = Object.keys(PRESETS);

export const MEMORY_USAGE = `usage: shardlab memory [options]

  --preset ${PRESET_NAMES.join("|")}
                             model (default tiny; phi3-mini is the published Phi-3-mini shape)
  --json                     print the figures as one JSON object: parameters, layout, zeropp, and
                             per rank the bytes of parameters, gradients, optimizer, gathered, secondary

${LAYOUT_USAGE}

${ZEROPP_USAGE}

Every value is f32 (4 bytes) and AdamW keeps two moments (8 bytes); ZeRO-1/2's fp32 master partition
counts as optimizer state. Activations are not counted: they depend on the batch.
`;

const KINDS: [keyof RankMemory, string][] = [
  ["parameters", "parameters"],
  ["gradients", "gradients"],
  ["optimizer", "optimizer state"],
  ["gathered", "gathered block (ZeRO-3)"],
  ["secondary", "secondary (hpZ)"],
];

export function memoryCommand(argv: string[]): number {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { preset: { type: "string", default: "tiny" }, json: { type: "boolean", default: false }, ...LAYOUT_OPTIONS },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { preset, json, ...values } = parsed.values;
  if (!PRESET_NAMES.includes(preset)) throw new UsageError(`unknown preset "${preset}" (valid: ${PRESET_NAMES.join(", ")})`);
  const model = presetConfig(preset);
  let plan;
  try {
    // trainLayout and zeroppOptions read the layout and ZeRO++ fields; the rest only completes a TrainConfig.
    const config = { preset, steps: 1, batch: 1, seq: 1, lr: 1, seed: 0, backend: "cpu" as const, ...layoutConfig(values) };
    plan = memoryPlan(model, trainLayout(config), zeroppOptions(config));
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    throw new UsageError(error.message.replace(/^(train|parallel): /, ""));
  }
  if (json) {
    console.log(
      JSON.stringify({ preset, parameters: plan.parameters, layout: plan.layout, zeropp: plan.zeropp, ranks: plan.ranks }),
    );
    return 0;
  }
  const { hiddenSize, numLayers, numHeads, numKvHeads, vocabSize } = model;
  console.log(
    `shardlab memory: ${preset}, ${plan.parameters.toLocaleString("en-US")} parameters ` +
      `(hidden ${hiddenSize}, ${numLayers} layers, ${numHeads} heads (${numKvHeads} kv), vocabulary ${vocabSize})`,
  );
  const { dp, tp, sp, spImpl, zero, nodes } = plan.layout;
  console.log(
    `layout: dp ${dp} × tp ${tp} × sp ${sp}${sp > 1 ? ` ${spImpl}` : ""}, zero ${zero}${describeZeropp(plan.zeropp)}, ` +
      `${nodes} node${nodes > 1 ? "s" : ""}, ${plan.ranks.length} rank${plan.ranks.length > 1 ? "s" : ""}`,
  );
  console.log("per rank, f32 values and AdamW's two moments, activations aside; nothing is allocated\n");
  for (const [ranks, memory] of alike(plan.ranks)) {
    console.log(`${ranks}:`);
    for (const [kind, label] of KINDS) console.log(row(label, memory[kind]));
    console.log(row("total", memoryTotal(memory)));
  }
  return 0;
}

function row(label: string, bytes: number): string {
  return `  ${label.padEnd(26)}${bytes.toLocaleString("en-US").padStart(18)} B${(bytes / 2 ** 30).toFixed(3).padStart(12)} GiB`;
}

/** The ranks holding the same bytes, in words ("ranks 0–3", "rank 1, 3"), each with what they hold. */
function alike(ranks: RankMemory[]): [string, RankMemory][] {
  const groups = new Map<string, number[]>();
  ranks.forEach((memory, rank) => {
    const key = JSON.stringify(memory);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push(rank);
  });
  return [...groups].map(([key, members]) => {
    const contiguous = members.at(-1)! - members[0] === members.length - 1;
    const list = contiguous && members.length > 2 ? `${members[0]}–${members.at(-1)}` : members.join(", ");
    return [`rank${members.length > 1 ? "s" : ""} ${list}${members.length > 1 ? " (each)" : ""}`, JSON.parse(key)];
  });
}
