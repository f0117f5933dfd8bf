// `bench fuzz`: mutated checkpoint files against the readers (--reps N inputs, default 100,000).
//
// Half the inputs are rank files of a real checkpoint (tiny preset, dp2 ZeRO-1) with bytes flipped,
// cut off, appended, the header length rewritten or the header JSON edited, read as safetensors;
// half are its metadata.json with a field deleted, retyped or set to an extreme number, opened and
// loaded on another layout (tp2) and verified. Every input must end in a value or a CheckpointError:
// any other error is a crash, and an input that takes over a second is a hang. Every reader checks
// a byte count against the file's size before it allocates, and a loaded map against the model;
// the run also records the largest array any input made the readers allocate.

import { CheckpointError } from "../src/checkpoint/errors.ts";
import { loadRankState, openCheckpoint } from "../src/checkpoint/load.ts";
import type { TrainingRecord } from "../src/checkpoint/metadata.ts";
import { headerLength, parseHeader } from "../src/checkpoint/safetensors.ts";
import { commitCheckpoint, rankFile, saveRankFile, stepFolder } from "../src/checkpoint/save.ts";
import { MemoryStorage } from "../src/checkpoint/storage.ts";
import { verifyCheckpoint } from "../src/checkpoint/verify.ts";
import { presetConfig } from "../src/nn/config.ts";
import { shapeOnly } from "../src/nn/parameter.ts";
import { Phi3ForCausalLM } from "../src/nn/phi3.ts";
import { type FragmentMap, fragmentMap } from "../src/parallel/fragment_map.ts";
import { type ParallelLayout, resolveLayout } from "../src/parallel/layout.ts";
import { createDevice } from "../src/tensor/device.ts";
import type { SuiteOptions } from "./kernels.ts";
import { writeJsonReport } from "./report.ts";

const MODEL = presetConfig("tiny");
const TRAINING: TrainingRecord = {
  step: 1,
  seed: 0,
  preset: "tiny",
  batch: 4,
  seq: 16,
  schedule: { maxLr: 1e-3, minLr: 1e-4, warmupSteps: 0, totalSteps: 2 },
  adamw: { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 },
  clipNorm: 1,
};
const FOLDER = `run/${stepFolder(TRAINING.step)}`;

/** A small counter-based generator: the same inputs every run. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t ^= t + Math.imul(t ^ (t >>> 7), 61 | t);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

async function mapFor(layout: Partial<ParallelLayout>): Promise<FragmentMap> {
  const device = await createDevice({ backend: "cpu" });
  const blocks = new Phi3ForCausalLM(device, MODEL, { parameters: shapeOnly }).blocks.map((b) => b.parameters.map((p) => p.name));
  device.destroy();
  return fragmentMap(MODEL, resolveLayout(layout), blocks);
}

async function seedCheckpoint(map: FragmentMap): Promise<MemoryStorage> {
  const storage = new MemoryStorage();
  const files = [];
  for (const entry of map.ranks) {
    const fill = (k: number) => Float32Array.from({ length: entry.numel }, (_, i) => Math.sin(i + k));
    const state = { step: TRAINING.step, fp32: fill(0), expAvg: fill(1), expAvgSq: fill(2) };
    files.push(await saveRankFile(storage, FOLDER, entry.rank, state, TRAINING));
  }
  await commitCheckpoint(storage, "run", stepFolder(TRAINING.step), {
    model: MODEL,
    training: TRAINING,
    layout: map.layout,
    map,
    files,
  });
  return storage;
}

function mutateBytes(bytes: Uint8Array, next: () => number): Uint8Array {
  const out = bytes.slice();
  const headerEnd = Math.min(out.length, 8 + Number(new DataView(out.buffer).getBigUint64(0, true)));
  switch (Math.floor(next() * 5)) {
    case 0: // flip bytes, mostly in the header
      for (let k = 1 + Math.floor(next() * 8); k > 0; k--) {
        out[Math.floor(next() * (next() < 0.8 ? headerEnd : out.length))] ^= 1 << Math.floor(next() * 8);
      }
      return out;
    case 1: // cut off
      return out.slice(0, Math.floor(next() * out.length));
    case 2: { // append
      const more = new Uint8Array(out.length + 1 + Math.floor(next() * 64));
      more.set(out);
      return more;
    }
    case 3: // rewrite the header length
      new DataView(out.buffer).setBigUint64(0, BigInt(Math.floor(next() * 2 ** 52)) >> BigInt(Math.floor(next() * 52)), true);
      return out;
    default: { // edit a number in the header JSON
      const text = new TextDecoder().decode(out.subarray(8, headerEnd));
      const numbers = [...text.matchAll(/\d+/g)];
      if (numbers.length === 0) return out;
      const pick = numbers[Math.floor(next() * numbers.length)];
      const value = [0, 1, -1, 2 ** 31, 2 ** 53, 1e300, Number(pick[0]) + 4][Math.floor(next() * 7)];
      const edited = text.slice(0, pick.index) + String(value) + text.slice(pick.index! + pick[0].length);
      const body = new TextEncoder().encode(edited);
      const file = new Uint8Array(8 + body.length + out.length - headerEnd);
      new DataView(file.buffer).setBigUint64(0, BigInt(body.length), true);
      file.set(body, 8);
      file.set(out.subarray(headerEnd), 8 + body.length);
      return file;
    }
  }
}

/** A copy of `json` with one field somewhere in it deleted, retyped or set to an extreme number. */
function mutateJson(json: unknown, next: () => number): unknown {
  const copy = structuredClone(json);
  const paths: (string | number)[][] = [];
  const walk = (value: unknown, path: (string | number)[]) => {
    if (paths.length > 4000) return;
    paths.push(path);
    if (value && typeof value === "object") {
      for (const [k, v] of Object.entries(value)) walk(v, [...path, Array.isArray(value) ? Number(k) : k]);
    }
  };
  walk(copy, []);
  const path = paths[1 + Math.floor(next() * (paths.length - 1))];
  let parent = copy as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
  const last = path.at(-1)!;
  const replacements = [undefined, null, "x", -1, 0, 2 ** 31, 1e15, 3.5, [], {}, true];
  const choice = replacements[Math.floor(next() * replacements.length)];
  if (choice === undefined) delete parent[last];
  else parent[last] = choice;
  return copy;
}

interface Outcome {
  crashes: string[];
  hangs: number;
  rejected: number;
  accepted: number;
}

async function runOne(fn: () => Promise<unknown>, outcome: Outcome): Promise<void> {
  const start = performance.now();
  try {
    await fn();
    outcome.accepted++;
  } catch (error) {
    if (error instanceof CheckpointError) outcome.rejected++;
    else if (outcome.crashes.length < 20) {
      outcome.crashes.push(`${(error as Error).name}: ${(error as Error).message}`.slice(0, 300));
    } else outcome.crashes.push("");
  }
  if (performance.now() - start > 1000) outcome.hangs++;
}

export async function runFuzz(options: SuiteOptions): Promise<number> {
  const inputs = options.reps ?? 100_000;
  const source = await mapFor({ dp: 2, zero: 1 });
  const target = await mapFor({ tp: 2 });
  const storage = await seedCheckpoint(source);
  const rank = storage.files.get(`${FOLDER}/${rankFile(1)}`)!;
  const metadata = JSON.parse(new TextDecoder().decode(storage.files.get(`${FOLDER}/metadata.json`)!));
  const entry = target.ranks[1];
  const shards = new Map(target.parameters.map((p) => [p.name, p.shards[entry.tensorParallelRank]]));
  const next = random(2024);
  const files: Outcome = { crashes: [], hangs: 0, rejected: 0, accepted: 0 };
  const metas: Outcome = { crashes: [], hangs: 0, rejected: 0, accepted: 0 };
  const started = performance.now();
  for (let i = 0; i < inputs; i++) {
    if (i % 2 === 0) {
      const file = mutateBytes(rank, next);
      await runOne(() => {
        const n = headerLength(file.subarray(0, 8), file.length, "fuzz.safetensors");
        return Promise.resolve(parseHeader(file.subarray(8, 8 + n), file.length, "fuzz.safetensors"));
      }, files);
    } else {
      const mutated = new MemoryStorage();
      for (const [path, bytes] of storage.files) mutated.files.set(path, bytes);
      mutated.files.set(`${FOLDER}/metadata.json`, new TextEncoder().encode(JSON.stringify(mutateJson(metadata, next))));
      await runOne(async () => {
        const checkpoint = await openCheckpoint(mutated, "run");
        await loadRankState(checkpoint, MODEL, entry, shards);
        if (i % 16 === 1) await verifyCheckpoint(checkpoint);
      }, metas);
    }
    if ((i + 1) % 10_000 === 0) console.error(`bench fuzz: ${i + 1} inputs`);
  }
  const seconds = (performance.now() - started) / 1000;
  const report = (what: string, o: Outcome) =>
    `${what}: ${
      o.accepted + o.rejected + o.crashes.length
    } inputs, ${o.rejected} refused with CheckpointError, ${o.accepted} read, ` +
    `${o.crashes.length} crashes, ${o.hangs} over a second`;
  console.log(`fuzzed ${inputs} inputs in ${seconds.toFixed(1)} s`);
  console.log(report("rank files (safetensors reader)", files));
  console.log(report("metadata.json (open, load on tp2, verify)", metas));
  for (const crash of [...files.crashes, ...metas.crashes].filter((c) => c)) console.log(`  crash: ${crash}`);
  const clean = files.crashes.length + metas.crashes.length + files.hangs + metas.hangs === 0;
  console.log(
    clean ? "target: no crash but CheckpointError, no hang: met" : "target: no crash but CheckpointError, no hang: MISSED",
  );
  if (options.json) await writeJsonReport(options.json, "fuzz", { inputs, seconds, files, metadata: metas });
  return clean ? 0 : 1;
}
