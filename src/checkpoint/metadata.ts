// A checkpoint's metadata.json: what the data files hold and how to trust them. Written last, so a
// folder without it is a torn checkpoint and never loaded.
//
//   format, version    "shardlab.checkpoint", 1 (a later version is refused by name)
//   kind               "distributed": one file per rank, laid out by `fragmentMap`;
//                      "universal": one file per state (fp32.safetensors, exp_avg…, exp_avg_sq…)
//                      holding every parameter whole under its Hugging Face name
//   model, training    the model config, and the rest of the training state (step, seed, the
//                      learning-rate schedule, AdamW's hyperparameters, clipping, batch and sequence)
//   layout, fragmentMap  where every fragment lies (distributed)
//   parameters         per parameter in model order: full shape, its meaning (how its pieces
//                      combine: full, replicated, column or row shard, sub-parameters, vocabulary
//                      padding), and the SHA-256 of each state's canonical value (row-major f32)
//   files              every data file with its size and SHA-256

import type { Phi3Config } from "../nn/config.ts";
import type { AdamWHyperparameters } from "../optim/adamw.ts";
import type { WarmupCosineOptions } from "../optim/schedule.ts";
import { FRAGMENT_MAP_VERSION, type FragmentMap } from "../parallel/fragment_map.ts";
import type { ParallelLayout } from "../parallel/layout.ts";
import type { TensorParallelShard } from "../parallel/tp_shards.ts";
import { CheckpointError } from "./errors.ts";

export const CHECKPOINT_FORMAT = "shardlab.checkpoint";
export const CHECKPOINT_VERSION = 1;

/** The optimizer states every parameter has, as named in files and metadata. */
export const STATES = ["fp32", "exp_avg", "exp_avg_sq"] as const;
export type StateName = typeof STATES[number];

/** The training state besides the tensors: enough, with them, to go on as if never stopped. */
export interface TrainingRecord {
  /** Steps done; the next step is step `step` (0-based), whose batch is a function of (seed, step). */
  step: number;
  seed: number;
  preset: string;
  /** Rows per global batch and tokens per row. */
  batch: number;
  seq: number;
  /** The learning-rate schedule; its position is `step`. */
  schedule: WarmupCosineOptions;
  adamw: AdamWHyperparameters;
  /** Gradient clipping by global norm (0: off). */
  clipNorm: number;
}

/** How the pieces of a parameter combine into its full value, recorded from the shards the ranks held. */
export type Meaning =
  | { kind: "full" }
  | { kind: "replicated"; parts: number }
  | { kind: "column"; dim: 0; parts: number }
  | { kind: "row"; dim: 1; parts: number }
  | { kind: "vocabulary"; dim: 0; parts: number; size: number; paddedSize: number }
  | { kind: "sub-parameters"; dim: 0; parts: number; subParams: { name: string; rows: number; replicas: number }[] };

export interface ParameterRecord {
  name: string;
  shape: number[];
  meaning: Meaning;
  sha256: Record<StateName, string>;
}

export interface FileRecord {
  name: string;
  bytes: number;
  sha256: string;
}

export interface CheckpointMetadata {
  format: typeof CHECKPOINT_FORMAT;
  version: typeof CHECKPOINT_VERSION;
  kind: "distributed" | "universal";
  model: Phi3Config;
  training: TrainingRecord;
  layout: ParallelLayout | null;
  fragmentMap: FragmentMap | null;
  parameters: ParameterRecord[];
  files: FileRecord[];
}

/** A parameter's meaning, from the shard every tensor-parallel rank held of it. */
export function meaningOf(shards: readonly TensorParallelShard[]): Meaning {
  const [first] = shards;
  const parts = shards.length;
  if (parts === 1) return { kind: "full" };
  switch (first.kind) {
    case "replicated":
      return { kind: "replicated", parts };
    case "row":
      return { kind: "row", dim: 1, parts };
    case "vocab":
      return { kind: "vocabulary", dim: 0, parts, size: first.fullShape[0], paddedSize: first.paddedSize! };
    case "column":
      if (!first.subParams) return { kind: "column", dim: 0, parts };
      return {
        kind: "sub-parameters",
        dim: 0,
        parts,
        subParams: first.subParams.map(({ name, fullRows, replicas }) => ({ name, rows: fullRows, replicas })),
      };
  }
}

/** Parses metadata.json of the checkpoint at `where`, refusing another format, a later version or a missing field. */
export function parseMetadata(text: string, where: string): CheckpointMetadata {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new CheckpointError(`${where}/metadata.json is not valid JSON (${(error as Error).message})`);
  }
  if (json === null || typeof json !== "object") throw new CheckpointError(`${where}/metadata.json is not a JSON object`);
  if (json.format !== CHECKPOINT_FORMAT) {
    throw new CheckpointError(`${where}/metadata.json has format ${JSON.stringify(json.format)}, not "${CHECKPOINT_FORMAT}"`);
  }
  if (json.version !== CHECKPOINT_VERSION) {
    throw new CheckpointError(
      `${where}/metadata.json is version ${JSON.stringify(json.version)}; this shardlab reads version ${CHECKPOINT_VERSION}` +
        (typeof json.version === "number" && json.version > CHECKPOINT_VERSION
          ? " (the checkpoint is from a later shardlab)"
          : ""),
    );
  }
  if (json.kind !== "distributed" && json.kind !== "universal") {
    throw new CheckpointError(`${where}/metadata.json has kind ${JSON.stringify(json.kind)} (valid: distributed, universal)`);
  }
  for (const field of ["model", "training", "parameters", "files"]) {
    if (json[field] === undefined || json[field] === null) throw new CheckpointError(`${where}/metadata.json has no "${field}"`);
  }
  const map = json.fragmentMap as FragmentMap | null;
  if (json.kind === "distributed") {
    if (!map || !json.layout) {
      throw new CheckpointError(`${where}/metadata.json is distributed but has no layout or fragment map`);
    }
    if (map.version !== FRAGMENT_MAP_VERSION) {
      throw new CheckpointError(
        `${where}/metadata.json has a fragment map of version ${map.version}; this shardlab reads ${FRAGMENT_MAP_VERSION}`,
      );
    }
  }
  if (!Array.isArray(json.files)) throw new CheckpointError(`${where}/metadata.json: "files" is not a list`);
  for (const file of json.files as (FileRecord | null)[]) {
    if (typeof file?.name !== "string" || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(file.name)) {
      throw new CheckpointError(
        `${where}/metadata.json names a data file ${JSON.stringify(file?.name)} that is not a plain file name`,
      );
    }
  }
  return json as unknown as CheckpointMetadata;
}

/** Refuses a checkpoint of another model, naming the first field that differs. */
export function checkSameModel(saved: Phi3Config, model: Phi3Config, where: string): void {
  for (const key of Object.keys(model) as (keyof Phi3Config)[]) {
    if (saved[key] !== model[key]) {
      throw new CheckpointError(
        `${where} holds a model with ${key} ${saved[key]}, but this run's model has ${key} ${model[key]}`,
      );
    }
  }
}
