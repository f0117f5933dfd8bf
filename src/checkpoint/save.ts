// Saving a checkpoint, distributed: every rank writes only what it holds, then one rank commits.
//
//   ROOT/step-00000020/rank-00000.safetensors   each rank's flat state: tensors fp32, exp_avg and
//   ROOT/step-00000020/rank-00001.safetensors   exp_avg_sq, with the training record in __metadata__
//   ROOT/step-00000020/metadata.json            written last (a temp file, then replaced into place)
//   ROOT/latest                                 "step-00000020", replaced atomically after it
//
// A crash at any moment leaves the previous checkpoint whole and `latest` naming it: a folder
// without metadata.json is torn and never loaded. Every parameter is read back from the ranks'
// files, one at a time, to record the SHA-256 of its canonical value (parameterRecords; the ranks
// share this work when they save together).

import type { Phi3Config } from "../nn/config.ts";
import {
  type FragmentMap,
  heldFragments,
  ParameterAssembly,
  type RankState,
  type StateKey,
  type StateValues,
} from "../parallel/fragment_map.ts";
import type { ParallelLayout } from "../parallel/layout.ts";
import { CheckpointError } from "./errors.ts";
import {
  CHECKPOINT_FORMAT,
  CHECKPOINT_VERSION,
  type CheckpointMetadata,
  type FileRecord,
  meaningOf,
  type ParameterRecord,
  STATES,
  type TrainingRecord,
} from "./metadata.ts";
import type { SafetensorsHeader } from "./safetensors.ts";
import { sha256 } from "./sha256.ts";
import { readHeader } from "./safetensors_io.ts";
import { encodeHeader } from "./safetensors.ts";
import { type CheckpointStorage, joinPath } from "./storage.ts";

export const LATEST = "latest";
export const METADATA = "metadata.json";

/** The folder of the checkpoint taken after `step` steps. */
export function stepFolder(step: number): string {
  return `step-${String(step).padStart(8, "0")}`;
}

/** The data file of world rank `rank`. */
export function rankFile(rank: number): string {
  return `rank-${String(rank).padStart(5, "0")}.safetensors`;
}

/** Writes world rank `rank`'s flat state into `folder` and syncs it; returns the file's record. */
export async function saveRankFile(
  storage: CheckpointStorage,
  folder: string,
  rank: number,
  state: RankState,
  training: TrainingRecord,
): Promise<FileRecord> {
  const name = rankFile(rank);
  const shape = [state.fp32.length];
  const { bytes: header } = encodeHeader([
    { name: "fp32", dtype: "F32", shape },
    { name: "exp_avg", dtype: "F32", shape },
    { name: "exp_avg_sq", dtype: "F32", shape },
  ], { format: CHECKPOINT_FORMAT, rank: String(rank), training: JSON.stringify(training) });
  // Hashed from the bytes the rank means to write, as they go to the storage, so that a file damaged later cannot pass.
  const digest = await storage.write(joinPath(folder, name), [header, state.fp32, state.expAvg, state.expAvgSq]);
  return { name, bytes: header.length + 12 * shape[0], sha256: digest };
}

export interface CommitOptions {
  model: Phi3Config;
  training: TrainingRecord;
  layout: ParallelLayout;
  map: FragmentMap;
  /** Every rank's file record, in rank order. */
  files: FileRecord[];
  /** Every parameter's record in model order (parameterRecords; by default computed here, all of them). */
  parameters?: ParameterRecord[];
}

/**
 * The records of the parameters of `map` at `indices` (model order): shape, meaning, and the SHA-256
 * of each state's canonical value, read back from the rank files in `path` one parameter at a time.
 */
export async function parameterRecords(
  storage: CheckpointStorage,
  path: string,
  map: FragmentMap,
  indices: readonly number[],
): Promise<ParameterRecord[]> {
  const records: ParameterRecord[] = [];
  const headers: HeaderCache = new Map();
  for (const i of indices) {
    const { name, shape, shards } = map.parameters[i];
    const value = await readParameter(storage, path, map, name, headers);
    const sha = { fp32: await sha256(value.fp32), exp_avg: await sha256(value.expAvg), exp_avg_sq: await sha256(value.expAvgSq) };
    records.push({ name, shape, meaning: meaningOf(shards), sha256: sha });
  }
  return records;
}

/**
 * Commits the checkpoint in ROOT/`folder` once every rank's file is written: metadata.json (with the
 * parameter records, computed here unless given), then `latest`.
 */
export async function commitCheckpoint(
  storage: CheckpointStorage,
  root: string,
  folder: string,
  options: CommitOptions,
): Promise<void> {
  const { model, training, layout, map, files } = options;
  const path = joinPath(root, folder);
  const parameters = options.parameters ?? await parameterRecords(storage, path, map, map.parameters.map((_, i) => i));
  const metadata: CheckpointMetadata = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    kind: "distributed",
    model,
    training,
    layout,
    fragmentMap: map,
    parameters,
    files,
  };
  await writeReplacing(storage, joinPath(path, METADATA), JSON.stringify(metadata));
  await writeReplacing(storage, joinPath(root, LATEST), folder);
}

/** Writes a small text file through a temporary name, then replaces the file with it in one step. */
export async function writeReplacing(storage: CheckpointStorage, path: string, text: string): Promise<void> {
  const temp = `${path}.tmp`;
  await storage.write(temp, [new TextEncoder().encode(text)]);
  await storage.replace(temp, path);
}

/** Headers already read, by path. */
export type HeaderCache = Map<string, SafetensorsHeader>;

/** The tensor of a rank file that holds each state. */
export const STATE_TENSORS: Record<StateKey, typeof STATES[number]> = { fp32: "fp32", expAvg: "exp_avg", expAvgSq: "exp_avg_sq" };

/**
 * One parameter's full value and moments (the states `keys`, all by default), read from the rank
 * files in `path` by the map: one replica of each fragment, its byte range only, placed as it
 * arrives (about the parameter's size held beside the result).
 */
export async function readParameter<K extends StateKey = StateKey>(
  storage: CheckpointStorage,
  path: string,
  map: FragmentMap,
  name: string,
  headers: HeaderCache = new Map(),
  keys: readonly K[] = Object.keys(STATE_TENSORS) as K[],
): Promise<Pick<StateValues, K>> {
  const assembly = new ParameterAssembly(map, name, keys);
  for (const { rank, fragment } of heldFragments(map, name)) {
    const file = joinPath(path, rankFile(rank));
    if (!headers.has(file)) headers.set(file, await readHeader(storage, file));
    const header = headers.get(file)!;
    const read = async (state: typeof STATES[number]) => {
      const entry = header.tensors.get(state);
      if (!entry || entry.dtype !== "F32" || entry.end - entry.begin < 4 * (fragment.start + fragment.numel)) {
        throw new CheckpointError(
          `${file}: tensor "${state}" does not hold elements [${fragment.start}, ${fragment.start + fragment.numel})`,
        );
      }
      const bytes = await storage.read(file, header.dataStart + entry.begin + 4 * fragment.start, 4 * fragment.numel);
      return new Float32Array(bytes.buffer, bytes.byteOffset, fragment.numel);
    };
    const got = {} as Pick<StateValues, K>;
    for (const key of keys) got[key] = await read(STATE_TENSORS[key]) as StateValues[K];
    assembly.place(rank, fragment, got);
  }
  return assembly.join();
}

/**
 * One parameter's full value and moments (the states `keys`, all by default), read from a universal
 * checkpoint's files in `path` (one safetensors file per state, each parameter whole).
 */
export async function readUniversalParameter<K extends StateKey = StateKey>(
  storage: CheckpointStorage,
  path: string,
  name: string,
  headers: HeaderCache = new Map(),
  keys: readonly K[] = Object.keys(STATE_TENSORS) as K[],
): Promise<Pick<StateValues, K>> {
  const got = {} as Pick<StateValues, K>;
  for (const key of keys) {
    const file = joinPath(path, `${STATE_TENSORS[key]}.safetensors`);
    if (!headers.has(file)) headers.set(file, await readHeader(storage, file));
    const header = headers.get(file)!;
    const entry = header.tensors.get(name);
    if (!entry || entry.dtype !== "F32") throw new CheckpointError(`${file}: no F32 tensor "${name}"`);
    const bytes = await storage.read(file, header.dataStart + entry.begin, entry.end - entry.begin);
    got[key] = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4) as StateValues[K];
  }
  return got;
}
