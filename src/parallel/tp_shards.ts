// Megatron tensor parallelism: which piece of each parameter a tp rank holds.
//
// Every Hugging Face parameter of the Phi-3 model gets a TensorParallelShard, a plain JSON object
// that is also the parameter's fragment-map entry for checkpoints:
//   embed_tokens, lm_head [V, h]     "vocab"   rows of the vocabulary padded to Vp = ⌈V/tp⌉·tp;
//                                               rank r holds rows [r·Vp/tp, (r+1)·Vp/tp), padding rows 0
//   qkv_proj [(Hq+2Hkv)·D, h]        "column"  sub-parameters q, k, v: Hq/tp q heads per rank; kv heads
//                                               Hkv/tp per rank when tp ≤ Hkv, else the one kv head
//                                               ⌊r·Hkv/tp⌋ that the rank's q heads use (tp/Hkv replicas)
//   gate_up_proj [2I, h]             "column"  sub-parameters gate, up: I/tp rows each
//   o_proj [h, Hq·D], down_proj [h, I] "row"   columns split on dim 1
//   the norms                        "replicated"
// A rank builds its modules with local sizes and tensorParallelParameters as the factory: each
// piece is a slice of the seeded full value, so any tp gives the same model as one rank.

import { headDim, type Phi3Config, validateConfig } from "../nn/config.ts";
import { Linear } from "../nn/modules.ts";
import { type ParameterFactory, seededValues } from "../nn/parameter.ts";
import { checkTensorParallelFits } from "./layout.ts";
import { Phi3Model } from "../nn/phi3.ts";
import type { Device } from "../tensor/device.ts";
import { ShapeError } from "../tensor/errors.ts";
import { keep } from "../tensor/scope.ts";
import { formatShape, sameShape, sizeOf } from "../tensor/shape.ts";

/**
 * Rows of one sub-parameter of a fused column-parallel weight. fullStart/fullRows: the whole
 * sub-parameter's rows in the full tensor; localStart/localRows: its rows in this piece. The rows
 * this rank holds are [fullStart + ⌊index/replicas⌋·localRows, … + localRows): `replicas` ranks in a
 * row hold the same ones (kv heads when tp > Hkv).
 */
export interface SubParam {
  name: string;
  fullStart: number;
  fullRows: number;
  localStart: number;
  localRows: number;
  replicas: number;
}

export interface TensorParallelShard {
  kind: "replicated" | "column" | "row" | "vocab";
  /** The split dimension: 0 for column and vocab, 1 for row, 0 for replicated. */
  dim: number;
  /** The tp rank. */
  index: number;
  /** The tp size. */
  parts: number;
  /** The unpadded full parameter's shape (the Hugging Face shape). */
  fullShape: number[];
  /** This rank's local piece. */
  shape: number[];
  /** vocab: the vocabulary padded to a multiple of tp. */
  paddedSize?: number;
  /** column: each sub-parameter's rows in the full tensor and in this piece, in order. */
  subParams?: SubParam[];
}

/** The shard of every Hugging Face parameter of the model that tp rank `tpRank` of `tp` holds. */
export function tensorParallelShards(config: Phi3Config, tp: number, tpRank: number): Map<string, TensorParallelShard> {
  validateConfig(config);
  checkTensorParallelFits(config, tp);
  if (!Number.isInteger(tpRank) || tpRank < 0 || tpRank >= tp) {
    throw new RangeError(`tensor parallel: tp rank must be an integer in [0, ${tp}), got ${tpRank}`);
  }
  const shards = new Map<string, TensorParallelShard>();
  for (const [name, fullShape] of parameterShapes(config)) shards.set(name, shardOf(name, fullShape, config, tp, tpRank));
  return shards;
}

/** Every parameter of the model by name, with its full shape, in Hugging Face order. */
function parameterShapes(config: Phi3Config): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  const record: ParameterFactory = (name, shape) => {
    shapes.set(name, [...shape]);
    return null;
  };
  new Phi3Model(record, config);
  new Linear(record, "lm_head", config.hiddenSize, config.vocabSize);
  return shapes;
}

function shardOf(name: string, fullShape: number[], config: Phi3Config, tp: number, index: number): TensorParallelShard {
  const base = { index, parts: tp, fullShape };
  const [rows, cols] = fullShape;
  if (name === "lm_head.weight" || name.endsWith("embed_tokens.weight")) {
    const paddedSize = Math.ceil(rows / tp) * tp;
    return { kind: "vocab", dim: 0, ...base, shape: [paddedSize / tp, cols], paddedSize };
  }
  if (name.endsWith("qkv_proj.weight")) return columnShard(base, cols, qkvSubParams(config, tp));
  if (name.endsWith("gate_up_proj.weight")) {
    const I = config.intermediateSize;
    return columnShard(base, cols, [["gate", I, I / tp, 1], ["up", I, I / tp, 1]]);
  }
  if (name.endsWith("o_proj.weight") || name.endsWith("down_proj.weight")) {
    return { kind: "row", dim: 1, ...base, shape: [rows, cols / tp] };
  }
  if (name.endsWith("norm.weight")) return { kind: "replicated", dim: 0, ...base, shape: [...fullShape] };
  throw new RangeError(`tensor parallel: no split rule for parameter ${name} ${formatShape(fullShape)}`);
}

/** [name, full rows, local rows, replicas] of q, k and v. */
function qkvSubParams(config: Phi3Config, tp: number): [string, number, number, number][] {
  const { numHeads: Hq, numKvHeads: Hkv } = config;
  const D = headDim(config);
  const kvHeads = tp <= Hkv ? Hkv / tp : 1;
  const replicas = tp <= Hkv ? 1 : tp / Hkv;
  return [["q", Hq * D, (Hq / tp) * D, 1], ["k", Hkv * D, kvHeads * D, replicas], ["v", Hkv * D, kvHeads * D, replicas]];
}

function columnShard(
  base: { index: number; parts: number; fullShape: number[] },
  cols: number,
  parts: [string, number, number, number][],
): TensorParallelShard {
  let fullStart = 0;
  let localStart = 0;
  const subParams = parts.map(([name, fullRows, localRows, replicas]) => {
    const sub = { name, fullStart, fullRows, localStart, localRows, replicas };
    fullStart += fullRows;
    localStart += localRows;
    return sub;
  });
  return { kind: "column", dim: 0, ...base, shape: [localStart, cols], subParams };
}

/** The first row of the full tensor that the rank `index` holds of sub-parameter `sub`. */
function heldRow(sub: SubParam, index: number): number {
  return sub.fullStart + Math.floor(index / sub.replicas) * sub.localRows;
}

/** The sub-parameters of a column shard; one spanning every row when the shard names none. */
function subParamsOf(shard: TensorParallelShard): SubParam[] {
  return shard.subParams ??
    [{ name: "", fullStart: 0, fullRows: shard.fullShape[0], localStart: 0, localRows: shard.shape[0], replicas: 1 }];
}

/** vocab: the first row this rank holds, and how many of its rows are real (not padding). */
function vocabRows(shard: TensorParallelShard): { start: number; real: number } {
  const rows = shard.shape[0];
  const start = shard.index * rows;
  return { start, real: Math.max(0, Math.min(rows, shard.fullShape[0] - start)) };
}

function checkLength(op: string, values: Float32Array, shape: number[], what: string): void {
  if (values.length !== sizeOf(shape)) {
    throw new ShapeError(
      `${op}: ${what} has ${values.length} values, but its shape ${formatShape(shape)} needs ${sizeOf(shape)}`,
    );
  }
}

/**
 * Where element `local` of the shard (flat, row-major) lies in the full parameter, and for how many
 * elements from there both run on contiguously: `full` is -1 on vocabulary padding rows (which hold
 * no element of the parameter). Resharding copies a fragment run by run.
 */
export function shardRun(shard: TensorParallelShard, local: number): { full: number; numel: number } {
  const width = shard.shape.length === 1 ? 1 : shard.shape[1];
  const size = sizeOf(shard.shape);
  const row = Math.floor(local / width);
  switch (shard.kind) {
    case "replicated":
      return { full: local, numel: size - local };
    case "vocab": {
      const { start, real } = vocabRows(shard);
      if (row >= real) return { full: -1, numel: size - local };
      return { full: start * width + local, numel: real * width - local };
    }
    case "column": {
      const sub = subParamsOf(shard).find((s) => row < s.localStart + s.localRows)!;
      const end = (sub.localStart + sub.localRows) * width;
      return { full: (heldRow(sub, shard.index) + row - sub.localStart) * width + (local % width), numel: end - local };
    }
    case "row": {
      const column = local % width;
      return { full: row * shard.fullShape[1] + shard.index * width + column, numel: width - column };
    }
  }
}

/**
 * Which shard of `shards` (every tensor-parallel rank's, in rank order) first holds element `full`
 * of the parameter, where in it, and for how many elements from there both run on contiguously.
 */
export function locateInShards(
  shards: readonly TensorParallelShard[],
  full: number,
): { index: number; local: number; numel: number } {
  const first = shards[0];
  const width = first.fullShape.length === 1 ? 1 : first.fullShape[1];
  const row = Math.floor(full / width);
  const column = full % width;
  switch (first.kind) {
    case "replicated":
      return { index: 0, local: full, numel: sizeOf(first.fullShape) - full };
    case "vocab": {
      const rows = first.shape[0];
      const index = Math.floor(row / rows);
      const last = Math.min((index + 1) * rows, first.fullShape[0]);
      return { index, local: full - index * rows * width, numel: last * width - full };
    }
    case "column": {
      const sub = subParamsOf(first).find((s) => row < s.fullStart + s.fullRows)!;
      const block = Math.floor((row - sub.fullStart) / sub.localRows);
      const local = (sub.localStart + row - sub.fullStart - block * sub.localRows) * width + column;
      return { index: block * sub.replicas, local, numel: (sub.fullStart + (block + 1) * sub.localRows) * width - full };
    }
    case "row": {
      const columns = first.shape[1];
      const index = Math.floor(column / columns);
      return { index, local: row * columns + column - index * columns, numel: columns - (column - index * columns) };
    }
  }
}

/** The piece of `full` (a value of the full parameter) that the shard's rank holds; vocab padding rows are 0. */
export function shardValues(full: Float32Array, shard: TensorParallelShard): Float32Array {
  checkLength("shardValues", full, shard.fullShape, "the full value");
  const piece = new Float32Array(sizeOf(shard.shape));
  const width = shard.fullShape[1];
  switch (shard.kind) {
    case "replicated":
      piece.set(full);
      break;
    case "vocab": {
      const { start, real } = vocabRows(shard);
      piece.set(full.subarray(start * width, (start + real) * width));
      break;
    }
    case "column":
      for (const sub of subParamsOf(shard)) {
        const row = heldRow(sub, shard.index);
        piece.set(full.subarray(row * width, (row + sub.localRows) * width), sub.localStart * width);
      }
      break;
    case "row": {
      const cols = shard.shape[1];
      for (let r = 0; r < shard.fullShape[0]; r++) {
        const from = r * width + shard.index * cols;
        piece.set(full.subarray(from, from + cols), r * cols);
      }
      break;
    }
  }
  return piece;
}

/**
 * The full, unpadded value from every rank's piece (pieces[i] held by shards[i], in tp rank order).
 * Replicated values and replicated kv heads are taken from their first holder.
 */
export function unshardValues(pieces: Float32Array[], shards: TensorParallelShard[]): Float32Array {
  if (pieces.length === 0 || pieces.length !== shards.length) {
    throw new RangeError(`unshardValues: needs one piece per shard, got ${pieces.length} pieces and ${shards.length} shards`);
  }
  const first = shards[0];
  shards.forEach((shard, i) => {
    if (
      shard.index !== i || shard.parts !== shards.length || shard.kind !== first.kind ||
      !sameShape(shard.fullShape, first.fullShape)
    ) {
      throw new RangeError(
        `unshardValues: shard ${i} (${shard.kind} ${shard.index} of ${shard.parts}, full ${formatShape(shard.fullShape)}) ` +
          `does not follow shard 0 (${first.kind} of ${first.parts}, full ${
            formatShape(first.fullShape)
          }) as tp rank ${i} of ${shards.length}`,
      );
    }
    checkLength("unshardValues", pieces[i], shard.shape, `piece ${i}`);
  });
  const full = new Float32Array(sizeOf(first.fullShape));
  const width = first.fullShape[1];
  shards.forEach((shard, i) => {
    const piece = pieces[i];
    switch (shard.kind) {
      case "replicated":
        if (i === 0) full.set(piece);
        break;
      case "vocab": {
        const { start, real } = vocabRows(shard);
        full.set(piece.subarray(0, real * width), start * width);
        break;
      }
      case "column":
        for (const sub of subParamsOf(shard)) {
          if (i % sub.replicas !== 0) continue;
          full.set(piece.subarray(sub.localStart * width, (sub.localStart + sub.localRows) * width), heldRow(sub, i) * width);
        }
        break;
      case "row": {
        const cols = shard.shape[1];
        for (let r = 0; r < shard.fullShape[0]; r++) full.set(piece.subarray(r * cols, (r + 1) * cols), r * width + i * cols);
        break;
      }
    }
  });
  return full;
}

/**
 * A ParameterFactory for modules built with tp rank `tpRank`'s local sizes: each parameter is this
 * rank's piece of the value seededParameters(device, seed) gives the full parameter (the same f32
 * bits), as a leaf with requiresGrad that belongs to the model (outside any tidy()).
 */
export function tensorParallelParameters(
  device: Device,
  seed: number,
  config: Phi3Config,
  tp: number,
  tpRank: number,
): ParameterFactory {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`tensorParallelParameters: seed must be a safe integer, got ${seed}`);
  const shards = tensorParallelShards(config, tp, tpRank);
  return (name, shape, init) => {
    const shard = shards.get(name);
    if (!shard) throw new RangeError(`tensorParallelParameters: ${name} is not a parameter of the model`);
    if (!sameShape(shape, shard.shape)) {
      throw new ShapeError(
        `tensorParallelParameters: ${name} was declared ${formatShape(shape)}, but tp rank ${tpRank} of ${tp} holds ` +
          `${formatShape(shard.shape)} of its full ${formatShape(shard.fullShape)}`,
      );
    }
    const full = seededValues(seed, name, sizeOf(shard.fullShape), init);
    return keep(device.tensor(shardValues(full, shard), shape, { requiresGrad: true }));
  };
}
