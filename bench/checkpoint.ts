// `bench checkpoint`: what saving, resharding and converting a checkpoint cost on this machine's
// disk, for the tiny and small presets and a synthetic model of a few hundred MB of state.
//
// Per model, on a dp2 ZeRO-3 layout (states from seeded values, no training):
//   raw write     the same bytes written and synced as plain files, in the same run, before and
//                 after the save (their mean): the bound
//   save          every rank's file hashed, written and synced (the ranks one after another here), then
//                 the commit (every parameter read back and hashed, metadata, latest)
//   reshard load  every rank of a tp2 × dp2 layout reading its byte ranges
//   convert       the universal form (and the most parameter data it held, against the largest
//                 parameter; the process's resident memory before and after, sampled while it runs)
//   universal load  every rank of the tp2 × dp2 layout from the universal form
// The save's goal: at least 70 % of the raw write bandwidth.

import { convertCheckpoint } from "../src/checkpoint/convert.ts";
import { FsStorage } from "../src/checkpoint/fs_storage.ts";
import { loadRankState, openCheckpoint } from "../src/checkpoint/load.ts";
import type { TrainingRecord } from "../src/checkpoint/metadata.ts";
import { commitCheckpoint, saveRankFile, stepFolder } from "../src/checkpoint/save.ts";
import { type Phi3Config, presetConfig } from "../src/nn/config.ts";
import { shapeOnly } from "../src/nn/parameter.ts";
import { Phi3ForCausalLM } from "../src/nn/phi3.ts";
import { type FragmentMap, fragmentMap, type RankState } from "../src/parallel/fragment_map.ts";
import { type ParallelLayout, resolveLayout } from "../src/parallel/layout.ts";
import { createDevice } from "../src/tensor/device.ts";
import type { SuiteOptions } from "./kernels.ts";
import { alignedTable, writeJsonReport } from "./report.ts";

/** A few hundred MB of state: hidden 512, 8 layers, vocabulary 8192 (about 33.6 M parameters, 12 bytes each). */
const SYNTHETIC: Phi3Config = {
  vocabSize: 8192,
  hiddenSize: 512,
  numLayers: 8,
  numHeads: 8,
  numKvHeads: 4,
  intermediateSize: 1536,
  maxSeqLen: 256,
  ropeTheta: 10000,
  rmsNormEps: 1e-5,
};

const MODELS: [string, Phi3Config][] = [["tiny", presetConfig("tiny")], ["small", presetConfig("small")], [
  "synthetic",
  SYNTHETIC,
]];
const SOURCE: Partial<ParallelLayout> = { dp: 2, zero: 3 };
const TARGET: Partial<ParallelLayout> = { dp: 2, tp: 2 };

const TRAINING: TrainingRecord = {
  step: 1,
  seed: 0,
  preset: "bench",
  batch: 8,
  seq: 64,
  schedule: { maxLr: 1e-3, minLr: 1e-4, warmupSteps: 0, totalSteps: 2 },
  adamw: { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 },
  clipNorm: 1,
};

interface ModelFigures {
  model: string;
  parameters: number;
  stateBytes: number;
  rawWriteGBps: number;
  saveGBps: number;
  saveOfRaw: number;
  commitSeconds: number;
  reshardLoadSeconds: number;
  convertSeconds: number;
  convertPeakBytes: number;
  largestParameterBytes: number;
  convertRssGrowthBytes: number;
  universalLoadSeconds: number;
}

async function mapFor(config: Phi3Config, layout: Partial<ParallelLayout>): Promise<FragmentMap> {
  const device = await createDevice({ backend: "cpu" });
  const blocks = new Phi3ForCausalLM(device, config, { parameters: shapeOnly }).blocks.map((b) =>
    b.parameters.map((p) => p.name)
  );
  device.destroy();
  return fragmentMap(config, resolveLayout(layout), blocks);
}

/** Every rank's state filled with a cheap pattern (the bytes, not their values, are measured). */
function statesOf(map: FragmentMap): RankState[] {
  return map.ranks.map(({ numel }, rank) => {
    const fill = (k: number) => Float32Array.from({ length: numel }, (_, i) => Math.sin(i * 0.001 + rank + k));
    return { step: TRAINING.step, fp32: fill(0), expAvg: fill(1), expAvgSq: fill(2) };
  });
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const value = await fn();
  return [value, (performance.now() - start) / 1000];
}

async function measure(name: string, config: Phi3Config, root: string): Promise<ModelFigures> {
  const storage = new FsStorage(`${root}/${name}`);
  const map = await mapFor(config, SOURCE);
  const states = statesOf(map);
  const stateBytes = states.reduce((sum, s) => sum + 12 * s.fp32.length, 0);

  // The raw writes before and after the save (their mean), so that neither meets the disk's cache in a better state.
  const raw = async (round: number) =>
    (await timed(async () => {
      for (const [rank, s] of states.entries()) {
        await storage.write(`raw${round}/rank-${rank}.bin`, [s.fp32, s.expAvg, s.expAvgSq]);
      }
    }))[1];
  const rawBefore = await raw(0);
  const folder = stepFolder(TRAINING.step);
  const [files, saveSeconds] = await timed(async () => {
    const records = [];
    for (const [rank, state] of states.entries()) {
      records.push(await saveRankFile(storage, `save/${folder}`, rank, state, TRAINING));
    }
    return records;
  });
  const rawSeconds = (rawBefore + await raw(1)) / 2;
  const [, commitSeconds] = await timed(() =>
    commitCheckpoint(storage, "save", folder, { model: config, training: TRAINING, layout: map.layout, map, files })
  );

  const target = await mapFor(config, TARGET);
  const loadAll = async (path: string) => {
    const checkpoint = await openCheckpoint(storage, path);
    for (const entry of target.ranks) {
      const shards = new Map(target.parameters.map((p) => [p.name, p.shards[entry.tensorParallelRank]]));
      await loadRankState(checkpoint, config, entry, shards);
    }
  };
  const [, reshardLoadSeconds] = await timed(() => loadAll("save"));

  const rssBefore = Deno.memoryUsage().rss;
  let rssPeak = rssBefore;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, Deno.memoryUsage().rss)), 5);
  const [report, convertSeconds] = await timed(async () =>
    await convertCheckpoint(await openCheckpoint(storage, "save"), storage, "universal")
  );
  clearInterval(sampler);
  rssPeak = Math.max(rssPeak, Deno.memoryUsage().rss);
  const [, universalLoadSeconds] = await timed(() => loadAll("universal"));

  const saveGBps = stateBytes / saveSeconds / 1e9;
  const rawWriteGBps = stateBytes / rawSeconds / 1e9;
  return {
    model: name,
    parameters: map.parameters.reduce((sum, p) => sum + p.shape.reduce((a, b) => a * b, 1), 0),
    stateBytes,
    rawWriteGBps,
    saveGBps,
    saveOfRaw: saveGBps / rawWriteGBps,
    commitSeconds,
    reshardLoadSeconds,
    convertSeconds,
    convertPeakBytes: report.peakBytes,
    largestParameterBytes: report.largestParameterBytes,
    convertRssGrowthBytes: rssPeak - rssBefore,
    universalLoadSeconds,
  };
}

export async function runCheckpoint(options: SuiteOptions): Promise<number> {
  const root = await Deno.makeTempDir({ prefix: "shardlab-bench-checkpoint-" });
  const figures: ModelFigures[] = [];
  try {
    for (const [name, config] of MODELS) {
      console.error(`bench checkpoint: ${name}`);
      figures.push(await measure(name, config, root));
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
  console.log(
    `checkpoints on this machine's disk: saved on dp2 ZeRO-3, loaded on dp2 × tp2 (load-time resharding) and made universal; ` +
      `raw: the same bytes written and synced as plain files in the same run`,
  );
  const lines = alignedTable(
    [
      "model",
      "params",
      "state MiB",
      "raw GB/s",
      "save GB/s",
      "of raw",
      "commit s",
      "reshard load s",
      "convert s",
      "convert held MiB",
      "largest param MiB",
      "RSS growth MiB",
      "universal load s",
    ],
    figures.map((f) => [
      f.model,
      f.parameters.toLocaleString("en-US"),
      mib(f.stateBytes),
      f.rawWriteGBps.toFixed(2),
      f.saveGBps.toFixed(2),
      `${(100 * f.saveOfRaw).toFixed(0)} %`,
      f.commitSeconds.toFixed(2),
      f.reshardLoadSeconds.toFixed(2),
      f.convertSeconds.toFixed(2),
      mib(f.convertPeakBytes),
      mib(f.largestParameterBytes),
      mib(f.convertRssGrowthBytes),
      f.universalLoadSeconds.toFixed(2),
    ]),
  );
  for (const line of lines) console.log(line);
  const missed = figures.filter((f) => f.saveOfRaw < 0.7);
  console.log(
    missed.length === 0
      ? "target: save at ≥ 70 % of the raw write bandwidth: met"
      : `target: save at ≥ 70 % of the raw write bandwidth: MISSED for ${missed.map((f) => f.model).join(", ")}`,
  );
  if (options.json) await writeJsonReport(options.json, "checkpoint", { source: SOURCE, target: TARGET, models: figures });
  return 0;
}
