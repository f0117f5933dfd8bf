// Load-time resharding: the byte ranges that give a rank its fragments, from a checkpoint saved on
// any layout, as PyTorch's distributed checkpoint plans its reads. Nothing is gathered and nothing
// is read twice: each target fragment is walked in runs whose elements are contiguous in the
// target shard, in the full parameter and in one source fragment (tp_shards.ts shardRun,
// locateInShards), and each run becomes one copy; copies from the same tensor of a file are then
// merged into one read where they touch.

import type { RankFragments, RankState } from "../parallel/fragment_map.ts";
import { locateInShards, shardRun, type TensorParallelShard } from "../parallel/tp_shards.ts";
import { sizeOf } from "../tensor/shape.ts";
import { CheckpointError } from "./errors.ts";
import { type StateName, STATES } from "./metadata.ts";
import { readHeader } from "./safetensors_io.ts";
import { type CheckpointStorage, joinPath } from "./storage.ts";

/** A stretch of a saved shard, and where each state of it lies: a file, a tensor in it, an element of that tensor. */
export interface SourceFragment {
  name: string;
  /** The tensor-parallel index of the source shard, and the element of it the fragment begins at. */
  shardIndex: number;
  shardOffset: number;
  numel: number;
  at(state: StateName): { file: string; tensor: string; element: number };
}

/** What a checkpoint holds of every parameter: each source tensor-parallel rank's shard, and fragments covering them. */
export interface SourceLayout {
  shards: Map<string, readonly TensorParallelShard[]>;
  /** Per parameter, sorted by shard index, then shard offset; one replica of each. */
  fragments: Map<string, SourceFragment[]>;
}

/** Elements [offset, offset + numel) of a source fragment go to [to, to + numel) of the flat state. */
export interface Copy {
  from: SourceFragment;
  offset: number;
  to: number;
  numel: number;
}

/** The copies that fill the flat state of `target` (whose shards are `targetShards`) from `source`. */
export function planCopies(source: SourceLayout, target: RankFragments, targetShards: Map<string, TensorParallelShard>): Copy[] {
  const copies: Copy[] = [];
  for (const fragment of target.fragments) {
    const shard = targetShards.get(fragment.name)!;
    const sourceShards = source.shards.get(fragment.name);
    if (!sourceShards) throw new CheckpointError(`the checkpoint holds no parameter "${fragment.name}"`);
    if (sourceShards[0].fullShape.join() !== shard.fullShape.join()) {
      throw new CheckpointError(
        `the checkpoint's "${fragment.name}" is [${sourceShards[0].fullShape.join(", ")}], this model's [${
          shard.fullShape.join(", ")
        }]`,
      );
    }
    const pieces = source.fragments.get(fragment.name)!;
    for (let local = fragment.shardOffset; local < fragment.shardOffset + fragment.numel;) {
      const remaining = fragment.shardOffset + fragment.numel - local;
      const run = shardRun(shard, local);
      const length = Math.min(run.numel, remaining);
      // Vocabulary padding rows hold no element of the parameter: they stay zero.
      for (let done = 0; run.full >= 0 && done < length;) {
        const place = locateInShards(sourceShards, run.full + done);
        const from = findFragment(pieces, place.index, place.local, fragment.name);
        const numel = Math.min(length - done, place.numel, from.shardOffset + from.numel - place.local);
        copies.push({
          from,
          offset: place.local - from.shardOffset,
          to: fragment.start + local - fragment.shardOffset + done,
          numel,
        });
        done += numel;
      }
      local += length;
    }
  }
  return copies;
}

function findFragment(pieces: SourceFragment[], index: number, local: number, name: string): SourceFragment {
  let lo = 0;
  let hi = pieces.length;
  // The last fragment at or before (index, local).
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    const p = pieces[mid];
    if (p.shardIndex < index || (p.shardIndex === index && p.shardOffset <= local)) lo = mid;
    else hi = mid;
  }
  const found = pieces[lo];
  if (!found || found.shardIndex !== index || local < found.shardOffset || local >= found.shardOffset + found.numel) {
    throw new CheckpointError(`the checkpoint holds no fragment with element ${local} of "${name}" shard ${index}`);
  }
  return found;
}

/**
 * Carries out `copies` into a new flat state of `numel` elements (padding zero) at AdamW step
 * `step`, reading `folder`'s files: each tensor's byte range once, checked against its header.
 */
export async function readCopies(
  storage: CheckpointStorage,
  folder: string,
  copies: readonly Copy[],
  numel: number,
  step: number,
): Promise<RankState> {
  const state: RankState = {
    step,
    fp32: new Float32Array(numel),
    expAvg: new Float32Array(numel),
    expAvgSq: new Float32Array(numel),
  };
  const arrays: Record<StateName, Float32Array> = { fp32: state.fp32, exp_avg: state.expAvg, exp_avg_sq: state.expAvgSq };
  const headers = new Map<string, Awaited<ReturnType<typeof readHeader>>>();
  for (const name of STATES) {
    const groups = new Map<string, { file: string; tensor: string; element: number; copy: Copy }[]>();
    for (const copy of copies) {
      const at = copy.from.at(name);
      const key = `${at.file}\u0000${at.tensor}`;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key)!.push({ ...at, element: at.element + copy.offset, copy });
    }
    for (const group of groups.values()) {
      const { file, tensor } = group[0];
      const path = joinPath(folder, file);
      if (!headers.has(path)) headers.set(path, await readHeader(storage, path));
      const header = headers.get(path)!;
      const entry = header.tensors.get(tensor);
      if (!entry || entry.dtype !== "F32") {
        throw new CheckpointError(
          `${path}: ${entry ? `tensor "${tensor}" is ${entry.dtype}, not F32` : `no tensor "${tensor}"`}`,
        );
      }
      const elements = sizeOf(entry.shape);
      const spans = touchingRuns(group, ({ element, copy }) => [element, element + copy.numel]);
      const past = spans.find(({ end }) => end > elements);
      if (past) {
        throw new CheckpointError(`${path}: tensor "${tensor}" has ${elements} elements; element ${past.end - 1} was asked for`);
      }
      const reads = await storage.readRanges(
        path,
        spans.map(({ begin, end }) => [header.dataStart + entry.begin + 4 * begin, 4 * (end - begin)] as const),
      );
      spans.forEach(({ begin, end, items }, r) => {
        const values = new Float32Array(reads[r].buffer, reads[r].byteOffset, end - begin);
        for (const { element, copy } of items) {
          arrays[name].set(values.subarray(element - begin, element - begin + copy.numel), copy.to);
        }
      });
    }
  }
  return state;
}

/**
 * Ranges [begin, end) of `items` merged where they touch or overlap, in order: one read each, with
 * the items it covers.
 */
export function touchingRuns<T>(
  items: readonly T[],
  range: (item: T) => [number, number],
): { begin: number; end: number; items: T[] }[] {
  const runs: { begin: number; end: number; items: T[] }[] = [];
  for (const item of items.toSorted((a, b) => range(a)[0] - range(b)[0])) {
    const [begin, end] = range(item);
    const last = runs.at(-1);
    if (last && begin <= last.end) {
      last.end = Math.max(last.end, end);
      last.items.push(item);
    } else {
      runs.push({ begin, end, items: [item] });
    }
  }
  return runs;
}
