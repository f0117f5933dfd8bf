// `shardlab ckpt inspect|verify|convert|export`: look into a checkpoint, check it whole, make it
// universal, or export it for Hugging Face transformers.

import { parseArgs } from "node:util";
import { convertCheckpoint } from "../src/checkpoint/convert.ts";
import { exportHuggingFace } from "../src/checkpoint/hf_export.ts";
import type { FloatDType } from "../src/checkpoint/float_encoding.ts";
import { CheckpointError } from "../src/checkpoint/errors.ts";
import { type Checkpoint, openCheckpoint } from "../src/checkpoint/load.ts";
import { verifyCheckpoint } from "../src/checkpoint/verify.ts";
import { storageAt } from "../src/train/checkpointing.ts";
import { UsageError } from "./usage.ts";

export const CKPT_USAGE = `usage: shardlab ckpt <inspect|verify|convert|export> ...

  shardlab ckpt inspect PATH [--json]   layout, step, model, and every rank's file: pieces, elements, bytes
  shardlab ckpt verify PATH             every file's size and SHA-256, every parameter's checksums;
                                        exit 0 when whole, 1 naming what is not
  shardlab ckpt convert SRC DST         the universal form of SRC in DST: every parameter whole in
                                        fp32.safetensors, exp_avg.safetensors, exp_avg_sq.safetensors
  shardlab ckpt export PATH --hf OUT [--dtype f32|f16|bf16]
                                        a folder that Hugging Face transformers loads with
                                        Phi3ForCausalLM.from_pretrained(OUT): config.json,
                                        model.safetensors, generation_config.json; weights in f32
                                        (default), or f16 or bf16 rounded to nearest even

PATH and SRC: a checkpoint folder, or a save folder (its latest is followed).
`;

export async function ckptCommand(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      options: { json: { type: "boolean", default: false }, hf: { type: "string" }, dtype: { type: "string" } },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const paths = parsed.positionals;
  const wanted = action === "convert" ? 2 : 1;
  if (!["inspect", "verify", "convert", "export"].includes(action)) {
    throw new UsageError(`unknown ckpt action ${JSON.stringify(action)} (valid: inspect, verify, convert, export)`);
  }
  if (paths.length !== wanted) {
    throw new UsageError(`ckpt ${action} takes ${wanted === 2 ? "SRC and DST" : "one PATH"}, got ${paths.length} path(s)`);
  }
  const dtype = exportOptions(action, parsed.values);
  try {
    const checkpoint = await openCheckpoint(storageAt(paths[0]), "");
    if (action === "inspect") return inspect(checkpoint, paths[0], parsed.values.json);
    if (action === "verify") {
      const problems = await verifyCheckpoint(checkpoint);
      for (const problem of problems) console.log(`✗ ${problem}`);
      console.log(problems.length === 0 ? `✓ ${paths[0]}: every file and parameter checks out` : `${problems.length} problem(s)`);
      return problems.length === 0 ? 0 : 1;
    }
    const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(2)} MiB`;
    if (action === "export") {
      const out = parsed.values.hf!;
      const report = await exportHuggingFace(checkpoint, storageAt(out), "", dtype);
      console.log(
        `exported ${paths[0]} to ${out} for Hugging Face (Phi3ForCausalLM, ${dtype}): ${report.parameters} parameters, ` +
          `${mib(report.bytes)} of model.safetensors in ${report.seconds.toFixed(2)} s; held at most ${mib(report.peakBytes)} ` +
          `of parameter data (the largest parameter is ${mib(report.largestParameterBytes)} in f32)`,
      );
      return 0;
    }
    const started = performance.now();
    const report = await convertCheckpoint(checkpoint, storageAt(paths[1]), "");
    console.log(
      `wrote ${paths[1]}: ${report.parameters} parameters × 3 states, ${mib(report.bytes)} in ${
        ((performance.now() - started) / 1000).toFixed(2)
      } s; ` +
        `held at most ${mib(report.peakBytes)} of parameter data (the largest parameter is ${mib(report.largestParameterBytes)})`,
    );
    return 0;
  } catch (error) {
    if (!(error instanceof CheckpointError)) throw error;
    console.error(`shardlab: ${error.message}`);
    return 1;
  }
}

/** The dtype `ckpt export` writes (checked with --hf), refusing its options on the other actions. */
function exportOptions(action: string, values: { hf?: string; dtype?: string }): FloatDType {
  if (action !== "export") {
    const given = (["hf", "dtype"] as const).find((option) => values[option] !== undefined);
    if (given) throw new UsageError(`--${given} is an option of ckpt export, not of ckpt ${action}`);
    return "F32";
  }
  if (values.hf === undefined || values.hf.trim() === "") {
    throw new UsageError("ckpt export needs --hf OUT (the folder to write)");
  }
  const dtype = values.dtype ?? "f32";
  if (!["f32", "f16", "bf16"].includes(dtype)) throw new UsageError(`--dtype must be f32, f16 or bf16, got "${dtype}"`);
  return dtype.toUpperCase() as FloatDType;
}

function inspect({ folder, metadata }: Checkpoint, path: string, json: boolean): number {
  const { kind, training, layout, fragmentMap, files, model } = metadata;
  const ranks = fragmentMap?.ranks.map((entry, rank) => ({
    rank,
    file: files[rank]?.name,
    bytes: files[rank]?.bytes,
    dataRank: entry.dataRank,
    tensorParallelRank: entry.tensorParallelRank,
    fragments: entry.fragments.length,
    elements: entry.numel,
    padding: entry.padding.reduce((sum, [, n]) => sum + n, 0),
  })) ?? [];
  if (json) {
    console.log(JSON.stringify({ path, folder, kind, step: training.step, layout, model, ranks, files }, null, 2));
    return 0;
  }
  const l = layout;
  console.log(`${folder ? `${path}/${folder}` : path}: ${kind} checkpoint at step ${training.step}`);
  console.log(
    `model: hidden ${model.hiddenSize}, ${model.numLayers} layers, ${model.numHeads} heads (${model.numKvHeads} kv), vocabulary ${model.vocabSize}; ` +
      `${metadata.parameters.length} parameters`,
  );
  if (l) console.log(`layout: dp ${l.dp} × tp ${l.tp} × sp ${l.sp} (${l.spImpl}), zero ${l.zero}, ${l.nodes} node(s)`);
  console.log(
    `training: seed ${training.seed}, ${training.batch}×${training.seq} tokens per step, lr ${training.schedule.maxLr} → ${training.schedule.minLr}`,
  );
  if (ranks.length > 0) {
    console.log("rank  data  tp  fragments   elements   padding        bytes  file");
    for (const r of ranks) {
      console.log(
        `${String(r.rank).padStart(4)}  ${String(r.dataRank).padStart(4)}  ${String(r.tensorParallelRank).padStart(2)}  ` +
          `${String(r.fragments).padStart(9)}  ${String(r.elements).padStart(9)}  ${String(r.padding).padStart(8)}  ${
            String(r.bytes).padStart(11)
          }  ${r.file}`,
      );
    }
  } else {
    for (const file of files) console.log(`${String(file.bytes).padStart(11)}  ${file.name}`);
  }
  return 0;
}
