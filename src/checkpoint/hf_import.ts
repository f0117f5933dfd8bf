// Hugging Face weights as a starting point: a folder with model.safetensors and config.json, as
// `ckpt export --hf` writes it, or any .safetensors file with the Hugging Face Phi-3 names and
// shapes. openHfModel reads the file's header and config.json; checkHfModel refuses, in one error
// naming each, every missing, extra or mis-shaped tensor and every dtype it cannot read, and a
// config.json of another model. readInitState gives one rank of any layout its flat state at step
// 0: the weights decoded from F32, F16 or BF16 into f32, AdamW's moments zero, reading only the
// byte ranges the rank's fragments need (reshard.ts plans the copies). readHfTensor reads one
// tensor whole.

import type { Phi3Config } from "../nn/config.ts";
import type { FragmentMap, RankState } from "../parallel/fragment_map.ts";
import { tensorParallelShards } from "../parallel/tp_shards.ts";
import { sizeOf } from "../tensor/shape.ts";
import { CheckpointError } from "./errors.ts";
import { decodeFloats, FLOAT_DTYPE_BYTES, FLOAT_DTYPES, type FloatDType, isFloatDType } from "./float_encoding.ts";
import { checkHfConfig } from "./hf_config.ts";
import { HF_CONFIG_FILE, HF_MODEL_FILE } from "./hf_export.ts";
import { type Copy, planCopies, type SourceLayout, touchingRuns } from "./reshard.ts";
import type { SafetensorsHeader } from "./safetensors.ts";
import { readHeader } from "./safetensors_io.ts";
import { type CheckpointStorage, joinPath } from "./storage.ts";

export interface HfModel {
  storage: CheckpointStorage;
  /** The safetensors file in the storage. */
  file: string;
  /** The path as the user gave it, and the file by it, for messages. */
  shownAs: string;
  where: string;
  header: SafetensorsHeader;
  /** config.json beside model.safetensors, parsed; null for a lone .safetensors file or a folder without one. */
  config: unknown;
}

/**
 * The model at `path` of `storage`: a .safetensors file, or a folder holding model.safetensors (and
 * config.json). `shownAs` is the path as the user gave it.
 */
export async function openHfModel(storage: CheckpointStorage, path: string, shownAs = path): Promise<HfModel> {
  const lone = path.endsWith(".safetensors");
  const file = lone ? path : joinPath(path, HF_MODEL_FILE);
  const where = lone ? shownAs : joinPath(shownAs, HF_MODEL_FILE);
  if (await storage.size(file) === null) {
    throw new CheckpointError(
      lone
        ? `${where}: no such file`
        : `${shownAs}: no ${HF_MODEL_FILE} here (a Hugging Face model folder holds it and ${HF_CONFIG_FILE})`,
    );
  }
  const header = await readHeader(storage, file);
  let config: unknown = null;
  const configFile = joinPath(path, HF_CONFIG_FILE);
  if (!lone && await storage.size(configFile) !== null) {
    try {
      config = JSON.parse(new TextDecoder().decode(await storage.read(configFile)));
    } catch (error) {
      throw new CheckpointError(`${joinPath(shownAs, HF_CONFIG_FILE)} is not valid JSON (${(error as Error).message})`);
    }
  }
  return { storage, file, shownAs, where, header, config };
}

/** Refuses a model whose config.json describes another model than `model`, or whose tensors are not `model`'s. */
export function checkHfModel(hf: HfModel, model: Phi3Config): void {
  if (hf.config !== null) checkHfConfig(hf.config, model, joinPath(hf.shownAs, HF_CONFIG_FILE));
  checkTensors(hf, [...tensorParallelShards(model, 1, 0)].map(([name, shard]) => ({ name, shape: shard.fullShape })));
}

/** Every missing, extra or mis-shaped tensor and every unreadable dtype, in one error. */
function checkTensors(hf: HfModel, expected: readonly { name: string; shape: readonly number[] }[]): void {
  const problems: string[] = [];
  const names = new Set(expected.map(({ name }) => name));
  for (const { name, shape } of expected) {
    const entry = hf.header.tensors.get(name);
    if (!entry) {
      problems.push(`missing "${name}" [${shape.join(", ")}]`);
      continue;
    }
    if (entry.shape.join() !== shape.join()) {
      problems.push(`"${name}" is [${entry.shape.join(", ")}], the model's is [${shape.join(", ")}]`);
    }
    if (!isFloatDType(entry.dtype)) {
      problems.push(`"${name}" is ${entry.dtype}, not a readable dtype (${FLOAT_DTYPES.join(", ")})`);
    }
  }
  for (const name of hf.header.tensors.keys()) {
    if (!names.has(name)) problems.push(`extra "${name}", which the model does not have`);
  }
  if (problems.length > 0) {
    throw new CheckpointError(
      `${hf.where} does not hold this model's weights (${problems.length} problem${problems.length > 1 ? "s" : ""}):\n  ${
        problems.join("\n  ")
      }`,
    );
  }
}

/**
 * World rank `rank`'s flat state under fragment map `map`, at step 0: its fragments' weights from
 * `hf` (only their byte ranges are read), AdamW's moments zero.
 */
export async function readInitState(hf: HfModel, map: FragmentMap, rank: number): Promise<RankState> {
  checkTensors(hf, map.parameters);
  const entry = map.ranks[rank];
  const shards = new Map(map.parameters.map((p) => [p.name, p.shards[entry.tensorParallelRank]]));
  const copies = planCopies(sourceLayout(hf), entry, shards);
  // Copies that touch or overlap in a tensor become one read.
  const byTensor = new Map<string, Copy[]>();
  for (const copy of copies) {
    const group = byTensor.get(copy.from.name);
    if (group) group.push(copy);
    else byTensor.set(copy.from.name, [copy]);
  }
  const spans = [...byTensor].flatMap(([tensor, group]) =>
    touchingRuns(group, (copy) => [copy.offset, copy.offset + copy.numel]).map((run) => ({ tensor, ...run }))
  );
  const reads = await hf.storage.readRanges(hf.file, spans.map(({ tensor, begin, end }) => byteRange(hf, tensor, begin, end)));
  const fp32 = new Float32Array(entry.numel);
  spans.forEach(({ tensor, begin, items }, i) => {
    const values = decodeFloats(reads[i], hf.header.tensors.get(tensor)!.dtype as FloatDType);
    for (const { offset, to, numel } of items) fp32.set(values.subarray(offset - begin, offset - begin + numel), to);
  });
  return { step: 0, fp32, expAvg: new Float32Array(entry.numel), expAvgSq: new Float32Array(entry.numel) };
}

/** Tensor `name` of `hf` whole, as f32 (checkHfModel has checked it). */
export async function readHfTensor(hf: HfModel, name: string): Promise<Float32Array> {
  const { shape, dtype } = hf.header.tensors.get(name)!;
  return decodeFloats(await hf.storage.read(hf.file, ...byteRange(hf, name, 0, sizeOf(shape))), dtype as FloatDType);
}

/** [offset, length] in the file of elements [begin, end) of tensor `name`. */
function byteRange(hf: HfModel, name: string, begin: number, end: number): readonly [number, number] {
  const entry = hf.header.tensors.get(name)!;
  const bytes = FLOAT_DTYPE_BYTES[entry.dtype as FloatDType];
  return [hf.header.dataStart + entry.begin + bytes * begin, bytes * (end - begin)];
}

/** The file as a source for resharding: every tensor one whole, unsharded fragment. */
function sourceLayout(hf: HfModel): SourceLayout {
  const layout: SourceLayout = { shards: new Map(), fragments: new Map() };
  for (const [name, { shape }] of hf.header.tensors) {
    layout.shards.set(name, [{ kind: "replicated", dim: 0, index: 0, parts: 1, fullShape: shape, shape }]);
    layout.fragments.set(name, [{
      name,
      shardIndex: 0,
      shardOffset: 0,
      numel: sizeOf(shape),
      at: () => ({ file: hf.file, tensor: name, element: 0 }),
    }]);
  }
  return layout;
}
