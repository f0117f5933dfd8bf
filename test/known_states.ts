// Fragment maps of the tiny model on any layout, and rank states made from known full values, so
// that what puts states back together (assembleState, checkpoints) can be checked exactly without
// training.

import type { TrainingRecord } from "../src/checkpoint/metadata.ts";
import { commitCheckpoint, saveRankFile, stepFolder } from "../src/checkpoint/save.ts";
import { MemoryStorage } from "../src/checkpoint/storage.ts";
import { type Phi3Config, presetConfig } from "../src/nn/config.ts";
import { shapeOnly } from "../src/nn/parameter.ts";
import { Phi3ForCausalLM } from "../src/nn/phi3.ts";
import { type FragmentMap, fragmentMap, type RankState } from "../src/parallel/fragment_map.ts";
import { type ParallelLayout, resolveLayout } from "../src/parallel/layout.ts";
import { shardValues } from "../src/parallel/tp_shards.ts";
import { randnValues } from "../src/tensor/random.ts";
import { cpuDevice } from "./helpers.ts";

/** The tiny preset with a vocabulary that tp 2 and 4 must pad. */
export const MODEL: Phi3Config = { ...presetConfig("tiny"), vocabSize: 97 };

export async function mapOf(options: Partial<ParallelLayout>, model: Phi3Config = MODEL): Promise<FragmentMap> {
  const shapes = new Phi3ForCausalLM(await cpuDevice(), model, { parameters: shapeOnly });
  return fragmentMap(model, resolveLayout(options), shapes.blocks.map((block) => block.parameters.map((p) => p.name)));
}

/** Known full values of every parameter of the map's model (seeded). */
export function knownValues(map: FragmentMap, seed = 70): Map<string, Float32Array> {
  return new Map(map.parameters.map(({ name, shape }, i) => [name, randnValues(shape.reduce((a, b) => a * b, 1), seed + i)]));
}

/**
 * Each rank's state made from known full values: its shards' elements placed where its fragments
 * say, padding zero; exp_avg is twice the value and exp_avg_sq its square.
 */
export function statesFrom(map: FragmentMap, full: Map<string, Float32Array>, step: number): RankState[] {
  return map.ranks.map((entry) => {
    const state = {
      step,
      fp32: new Float32Array(entry.numel),
      expAvg: new Float32Array(entry.numel),
      expAvgSq: new Float32Array(entry.numel),
    };
    for (const f of entry.fragments) {
      const { shards } = map.parameters.find((p) => p.name === f.name)!;
      const shard = shardValues(full.get(f.name)!, shards[entry.tensorParallelRank]);
      const piece = shard.subarray(f.shardOffset, f.shardOffset + f.numel);
      state.fp32.set(piece, f.start);
      state.expAvg.set(piece.map((v) => 2 * v), f.start);
      state.expAvgSq.set(piece.map((v) => v * v), f.start);
    }
    return state;
  });
}

/** The training record the known checkpoints carry. */
export const KNOWN_TRAINING: TrainingRecord = {
  step: 7,
  seed: 3,
  preset: "tiny",
  batch: 4,
  seq: 16,
  schedule: { maxLr: 1e-3, minLr: 1e-4, warmupSteps: 2, totalSteps: 20 },
  adamw: { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 },
  clipNorm: 1,
};

/** A committed checkpoint of `map`'s layout holding the known values, in memory under "run". */
export async function savedKnownCheckpoint(map: FragmentMap): Promise<MemoryStorage> {
  const storage = new MemoryStorage();
  const folder = stepFolder(KNOWN_TRAINING.step);
  const files = [];
  for (const [rank, state] of statesFrom(map, knownValues(map), KNOWN_TRAINING.step).entries()) {
    files.push(await saveRankFile(storage, `run/${folder}`, rank, state, KNOWN_TRAINING));
  }
  await commitCheckpoint(storage, "run", folder, { model: MODEL, training: KNOWN_TRAINING, layout: map.layout, map, files });
  return storage;
}
