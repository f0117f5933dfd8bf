// Universal Checkpointing: stop on one layout, go on on another.
//
// A run trains on one layout (by default dp 2 × tp 2 with ZeRO-3: four ranks, each holding a ZeRO
// partition of a tensor-parallel shard) and saves a checkpoint after step K into a temporary
// folder; every rank writes only what it holds. A second run resumes from that checkpoint on
// another layout (by default dp 4 with ZeRO-1): each of its ranks reads just the byte ranges of the
// fragments its new place needs (load-time resharding, as Universal Checkpointing does), and it
// trains on to the end. The test of success, as the paper puts it: the resumed run's loss goes on
// along the curve of the run that never stopped.
//
// What to look for: the resumed losses continue the uninterrupted run's, here to every printed
// digit. Another layout adds in another order, so the last bits may differ: the repository's tests
// hold every pair of layouts to 1e-4 relative, and a run resumed on its own layout to every bit.
//
//   deno run -A examples/reshard_resume.ts [--from dp2,tp2,zero3] [--to dp4,zero1] [--steps 6] [--save-at 3]
//                                         [--backend cpu] [--json]
//
// A layout is a comma-separated list of dpN, tpN, spN, zeroN, nodesN and megatron (Megatron-SP
// instead of Ulysses); what it leaves out is 1 (ZeRO 0).

import { type ParallelLayout, train, type TrainConfig } from "shardlab";
import { integer, printJson, printTable, readFlags, usageError } from "./cli.ts";

const { flags, json } = readFlags({ from: "dp2,tp2,zero3", to: "dp4,zero1", steps: "6", "save-at": "3", backend: "cpu" });
const steps = integer("steps", flags.steps, 2);
const saveAt = integer("save-at", flags["save-at"], 1);
if (saveAt >= steps) usageError(`--save-at ${saveAt} must come before the last step, --steps ${steps}`);

/** "dp2,tp2,zero3" → { dp: 2, tp: 2, zero: 3 }. */
function parseLayout(flag: string, text: string): Partial<ParallelLayout> {
  const layout: Record<string, unknown> = {};
  for (const part of text.split(",").filter((part) => part !== "")) {
    const axis = part.match(/^(dp|tp|sp|zero|nodes)(\d+)$/);
    if (part === "megatron") layout.spImpl = "megatron";
    else if (axis) layout[axis[1]] = Number(axis[2]);
    else usageError(`--${flag}: "${part}" is not dpN, tpN, spN, zeroN, nodesN or megatron (in "${text}")`);
  }
  return layout as Partial<ParallelLayout>;
}

const from = parseLayout("from", flags.from);
const to = parseLayout("to", flags.to);
const folder = await Deno.makeTempDir({ prefix: "shardlab-reshard-" });
// A global batch that every data-parallel degree here divides, 16 tokens per row.
const base: TrainConfig = {
  preset: "tiny",
  steps,
  batch: 12,
  seq: 16,
  lr: 1e-3,
  seed: 0,
  backend: flags.backend as "cpu" | "webgpu" | "auto",
};

try {
  // The uninterrupted run, which saves after step K on the way.
  const uninterrupted = await train({ ...base, ...from, save: folder, saveEvery: saveAt });
  // The resumed run: the checkpoint of step K, loaded on the other layout, trained to the end.
  const checkpoint = `${folder}/step-${String(saveAt).padStart(8, "0")}`;
  const resumed = await train({ ...base, ...to, resume: checkpoint });

  const rows = uninterrupted.map(({ step, loss }) => {
    const after = resumed.find((metrics) => metrics.step === step);
    return { step, uninterrupted: loss, resumed: after?.loss ?? null };
  });
  const [source, target] = [flags.from || "one rank", flags.to || "one rank"];
  console.log(`trained on ${source}, saved after step ${saveAt}, resumed on ${target} (tiny preset, 12×16 tokens per step)`);
  printTable(
    ["step", `loss on ${source}`, `loss resumed on ${target}`, "relative difference", ""],
    rows.map((row) => [
      String(row.step),
      row.uninterrupted.toFixed(6),
      row.resumed === null ? "" : row.resumed.toFixed(6),
      row.resumed === null ? "" : (Math.abs(row.resumed - row.uninterrupted) / row.uninterrupted).toExponential(1),
      row.step === saveAt ? `checkpoint saved after step ${saveAt}` : "",
    ]),
  );
  printJson(json, { from, to, saveAt, rows });
} finally {
  await Deno.remove(folder, { recursive: true });
}
