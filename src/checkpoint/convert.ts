// Universal conversion: a distributed checkpoint into one consolidated atom per parameter and
// state, written as three safetensors files (fp32, exp_avg, exp_avg_sq: every parameter whole,
// under its Hugging Face name), with the step and the metadata.
//
// It streams. Each output file's header is known from the metadata, so the files are written
// front to back, one state and one parameter at a time: the parameter's fragments are read (their
// byte ranges only), put together as the pattern table's rule says (checked against the recorded
// meaning), checked against the saved checksum, appended and dropped. Peak memory is about twice
// the largest parameter (its shards and its whole value), whatever the model's size, and nothing
// is written but the result: no temporary copy of the checkpoint.

import { type CheckpointPatterns, PHI3_CHECKPOINT_PATTERNS } from "../nn/checkpoint_patterns.ts";
import type { StateKey } from "../parallel/fragment_map.ts";
import { sizeOf } from "../tensor/shape.ts";
import { CheckpointError } from "./errors.ts";
import { type Checkpoint, requireWhole } from "./load.ts";
import { CHECKPOINT_FORMAT, type CheckpointMetadata, type FileRecord } from "./metadata.ts";
import { checkRule, matchPatterns, type Rule } from "./patterns.ts";
import { encodeHeader } from "./safetensors.ts";
import { type HeaderCache, METADATA, rankFile, readParameter, STATE_TENSORS, writeReplacing } from "./save.ts";
import { readHeader } from "./safetensors_io.ts";
import { Sha256, sha256 } from "./sha256.ts";
import { type CheckpointStorage, joinPath } from "./storage.ts";

export interface ConvertReport {
  parameters: number;
  /** Bytes of the three data files written. */
  bytes: number;
  /** The most bytes of parameter data held at once, and the largest parameter's bytes, for comparison. */
  peakBytes: number;
  largestParameterBytes: number;
}

/** Writes the universal form of `source` into `folder` of `target`; returns what it wrote and held. */
export async function convertCheckpoint(
  source: Checkpoint,
  target: CheckpointStorage,
  folder: string,
  patterns: CheckpointPatterns = PHI3_CHECKPOINT_PATTERNS,
): Promise<ConvertReport> {
  const { metadata } = source;
  if (metadata.kind !== "distributed") throw new CheckpointError(`${source.folder} is already universal`);
  requireWhole(source);
  const rules = matchPatterns(patterns, metadata.model, metadata.parameters.map((p) => p.name));
  for (const { name, meaning } of metadata.parameters) checkRule(name, rules.get(name)!, meaning, metadata.model);

  const headers: HeaderCache = new Map();
  const report: ConvertReport = { parameters: metadata.parameters.length, bytes: 0, peakBytes: 0, largestParameterBytes: 0 };
  const files: FileRecord[] = [];
  for (const key of Object.keys(STATE_TENSORS) as StateKey[]) {
    const state = STATE_TENSORS[key];
    const name = `${state}.safetensors`;
    const { bytes: header } = encodeHeader(
      metadata.parameters.map((p) => ({ name: p.name, dtype: "F32", shape: p.shape })),
      { format: CHECKPOINT_FORMAT, state },
    );
    const writer = await target.create(joinPath(folder, name));
    const hash = new Sha256();
    let written = header.length;
    await writer.write(header);
    hash.update(header);
    for (const { name: parameter, shape, sha256: saved } of metadata.parameters) {
      const { value, held } = await consolidate(source, parameter, rules.get(parameter)!, key, headers);
      report.peakBytes = Math.max(report.peakBytes, held);
      report.largestParameterBytes = Math.max(report.largestParameterBytes, 4 * sizeOf(shape));
      if (await sha256(value) !== saved[state]) {
        throw new CheckpointError(`${source.folder}: the pieces of "${parameter}" ${state} do not give its saved SHA-256`);
      }
      await writer.write(value);
      hash.update(value);
      written += value.byteLength;
    }
    await writer.close();
    files.push({ name, bytes: written, sha256: hash.hex() });
    report.bytes += written;
  }
  const universal: CheckpointMetadata = {
    ...metadata,
    kind: "universal",
    layout: null,
    fragmentMap: null,
    parameters: metadata.parameters.map((p) => ({ ...p, meaning: { kind: "full" } })),
    files,
  };
  await writeReplacing(target, joinPath(folder, METADATA), JSON.stringify(universal));
  return report;
}

/**
 * One state of one parameter, whole: by the map's geometry (assembleParameter), or, for a
 * replicated or averaged parameter split over tensor-parallel ranks, from every rank's copy (which
 * must be equal, or are averaged). `held`: the bytes of parameter data held at the peak.
 */
async function consolidate(
  { storage, folder, metadata }: Checkpoint,
  name: string,
  rule: Rule,
  key: StateKey,
  headers: HeaderCache,
): Promise<{ value: Float32Array; held: number }> {
  const map = metadata.fragmentMap!;
  const size = sizeOf(metadata.parameters.find((p) => p.name === name)!.shape);
  if ((rule.kind !== "replicated" && rule.kind !== "average") || map.tensorParallelSize === 1) {
    const value = (await readParameter(storage, folder, map, name, headers, [key]))[key];
    // Its shards (the size of the parameter, padding aside) were held beside the whole value.
    return { value, held: 8 * size };
  }
  // Every tensor-parallel rank holds the whole parameter: read each copy.
  const copies = Array.from({ length: map.tensorParallelSize }, () => new Float32Array(size));
  for (const entry of map.ranks) {
    if (entry.dataRank !== 0 && map.layout.zero === 0) continue;
    const path = joinPath(folder, rankFile(entry.rank));
    if (!headers.has(path)) headers.set(path, await readHeader(storage, path));
    const header = headers.get(path)!;
    const tensor = header.tensors.get(STATE_TENSORS[key])!;
    for (const fragment of entry.fragments.filter((f) => f.name === name)) {
      const bytes = await storage.read(path, header.dataStart + tensor.begin + 4 * fragment.start, 4 * fragment.numel);
      copies[entry.tensorParallelRank].set(
        new Float32Array(bytes.buffer, bytes.byteOffset, fragment.numel),
        fragment.shardOffset,
      );
    }
  }
  const value = copies[0];
  for (const [index, copy] of copies.entries()) {
    if (rule.kind === "average") {
      if (index > 0) { for (let i = 0; i < size; i++) value[i] += copy[i]; }
    } else if (copy.some((v, i) => !Object.is(v, value[i]))) {
      throw new CheckpointError(
        `${folder}: "${name}" ${
          STATE_TENSORS[key]
        } is replicated, but tensor-parallel rank ${index}'s copy differs from rank 0's`,
      );
    }
  }
  if (rule.kind === "average") { for (let i = 0; i < size; i++) value[i] /= copies.length; }
  return { value, held: 4 * size * copies.length };
}
