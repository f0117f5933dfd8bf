// Starting a run from Hugging Face weights (`train --init-from`), and loading a model to generate
// from. A dp2 × tp2 run saves a checkpoint, which is exported (f32 and bf16): a one-device run
// initialized from the export computes logits bit for bit equal to the checkpoint's model, at step
// 0 with AdamW's moments zero; parallel layouts initialized from it take the same first step (loss
// within f32 tolerance). Without training, known values exported from memory give every rank of
// every layout exactly its part (vocabulary padding, ZeRO partitions, sub-parameters) while reading
// only its own bytes. Every missing, extra or mis-shaped tensor, an unreadable dtype, a config.json of
// another model and --init-from with --resume are refused, naming each.

import assert from "node:assert/strict";
import { decodeFloats, encodeFloats } from "../src/checkpoint/float_encoding.ts";
import { FsStorage } from "../src/checkpoint/fs_storage.ts";
import { exportHuggingFace } from "../src/checkpoint/hf_export.ts";
import { checkHfModel, openHfModel, readInitState } from "../src/checkpoint/hf_import.ts";
import { openCheckpoint } from "../src/checkpoint/load.ts";
import { loadModel } from "../src/checkpoint/load_model.ts";
import { checkedParameterValue } from "../src/checkpoint/parameter_value.ts";
import { commitCheckpoint, saveRankFile } from "../src/checkpoint/save.ts";
import { writeSafetensors } from "../src/checkpoint/safetensors_io.ts";
import { type CheckpointStorage, MemoryStorage } from "../src/checkpoint/storage.ts";
import { launch } from "../src/comm/launch.ts";
import { globalBatch } from "../src/data/corpus.ts";
import type { Phi3ForCausalLM } from "../src/nn/phi3.ts";
import { assembleState, type FragmentMap } from "../src/parallel/fragment_map.ts";
import { type ParallelLayout, worldSize } from "../src/parallel/layout.ts";
import { checkTrainConfig, type TrainConfig } from "../src/train/config.ts";
import type { TrainRankResult } from "../src/train/train_rank.ts";
import { Trainer } from "../src/train/trainer.ts";
import { cpuDevice } from "./helpers.ts";
import { knownValues, mapOf, MODEL, statesFrom } from "./known_states.ts";

const ENTRY = new URL("../src/train/train_rank.ts", import.meta.url).href;
const BASE: TrainConfig = { preset: "tiny", steps: 2, batch: 4, seq: 16, lr: 1e-2, seed: 5, backend: "cpu" };

/** The losses of `config` trained on its ranks (workers). */
async function trainRanks(config: TrainConfig): Promise<number[]> {
  const ranks = worldSize({ dp: 1, tp: 1, sp: 1, zero: 0, nodes: 1, spImpl: "ulysses", ...config } as ParallelLayout);
  const results = await launch<TrainRankResult>({ ranks, ranksPerNode: ranks, entry: ENTRY, args: { config }, backend: "cpu" });
  return results[0].value.losses;
}

// A trained checkpoint of a dp2 × tp2 run, and its exports.
const root = await Deno.makeTempDir({ prefix: "shardlab-hf-import-" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
await trainRanks({ ...BASE, dp: 2, tp: 2, zero: 1, save: `${root}/run` });
const checkpoint = await openCheckpoint(new FsStorage(`${root}/run`), "");
await exportHuggingFace(checkpoint, new FsStorage(`${root}/hf`), "", "F32");
await exportHuggingFace(checkpoint, new FsStorage(`${root}/hf-bf16`), "", "BF16");
const ids = globalBatch({ seed: 1, step: 0, batch: 2, seq: 16 }).inputs;

Deno.test("hf import: a run initialized from the export computes the checkpoint's logits bit for bit, at step 0 with zero moments", async () => {
  const device = await cpuDevice();
  const logitsOf = async (model: Phi3ForCausalLM) => await (await model.forward(device.tensor(ids, [2, 16]))).read();
  const held = await loadModel(device, new FsStorage(`${root}/run`), "");
  assert.match(held.source, /a distributed checkpoint at step 2 \(dp 2 × tp 2 × sp 1, zero 1\)/);
  const expected = await logitsOf(held.model);
  held.model.dispose();
  for (const initFrom of [`${root}/hf`, `${root}/hf/model.safetensors`]) {
    const trainer = await Trainer.create({ ...BASE, seed: 9, initFrom }, device);
    try {
      assert.equal(trainer.stepCount, 0, "a new run starts at step 0");
      assert.deepEqual(await logitsOf(trainer.model), expected, `${initFrom}: logits`);
      for (const [name] of trainer.model.namedParameters()) {
        const { expAvg, expAvgSq, step } = trainer.optimizer.state(name);
        assert.equal(step, 0);
        assert.ok((await expAvg.read()).every((v) => v === 0) && (await expAvgSq.read()).every((v) => v === 0), name);
      }
    } finally {
      trainer.dispose();
    }
  }
  const exported = await loadModel(device, new FsStorage(`${root}/hf`), "");
  assert.equal(exported.source, "an exported Hugging Face model (F32)");
  assert.deepEqual(await logitsOf(exported.model), expected, "generate's model from the export");
  exported.model.dispose();

  // bf16: every weight is the checkpoint's rounded to nearest even.
  const trainer = await Trainer.create({ ...BASE, initFrom: `${root}/hf-bf16` }, device);
  try {
    for (const [name, tensor] of trainer.model.namedParameters()) {
      const { value } = await checkedParameterValue(checkpoint, name);
      assert.deepEqual(await tensor.read(), decodeFloats(encodeFloats(value, "BF16"), "BF16"), name);
    }
  } finally {
    trainer.dispose();
  }
});

Deno.test("hf import: parallel layouts initialized from the export take the one-device run's first step", async () => {
  for (const initFrom of [`${root}/hf`, `${root}/hf-bf16`]) {
    const trainer = await Trainer.create({ ...BASE, steps: 1, initFrom }, await cpuDevice());
    const { loss: expected } = await trainer.step();
    trainer.dispose();
    for (const layout of [{ dp: 2, tp: 2, zero: 1 }, { dp: 2, zero: 3 }, { sp: 2 }] as const) {
      const [loss] = await trainRanks({ ...BASE, steps: 1, ...layout, initFrom });
      assert.ok(Math.abs(loss - expected) <= 1e-5 * expected, `${initFrom} ${JSON.stringify(layout)}: ${loss} vs ${expected}`);
    }
  }
});

/** Known values of MODEL (its vocabulary of 97 pads under tp 2 and 4) exported in memory as `dtype`. */
async function knownExport(
  dtype: "F32" | "F16",
): Promise<{ storage: MemoryStorage; values: Map<string, Float32Array>; map: FragmentMap }> {
  const map = await mapOf({ tp: 2, dp: 2, zero: 3 });
  const storage = new MemoryStorage();
  const training = {
    step: 3,
    seed: 1,
    preset: "tiny",
    batch: 4,
    seq: 16,
    schedule: { maxLr: 1e-3, minLr: 1e-4, warmupSteps: 1, totalSteps: 9 },
    adamw: { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 },
    clipNorm: 1,
  };
  const files = [];
  for (const [rank, state] of statesFrom(map, knownValues(map), 3).entries()) {
    files.push(await saveRankFile(storage, "run/step-00000003", rank, state, training));
  }
  await commitCheckpoint(storage, "run", "step-00000003", { model: MODEL, training, layout: map.layout, map, files });
  await exportHuggingFace(await openCheckpoint(storage, "run"), storage, "hf", dtype);
  const rounded = new Map([...knownValues(map)].map(([name, v]) => [name, decodeFloats(encodeFloats(v, dtype), dtype)]));
  return { storage, values: rounded, map };
}

Deno.test("hf import: every rank of every layout gets exactly its part, and reads only its own bytes", async () => {
  for (const dtype of ["F32", "F16"] as const) {
    const { storage, values } = await knownExport(dtype);
    const hf = await openHfModel(storage, "hf");
    checkHfModel(hf, MODEL);
    const layouts: Partial<ParallelLayout>[] = [{}, { dp: 2, zero: 3 }, { tp: 4, dp: 2, zero: 2 }, { tp: 2, sp: 2 }, {
      sp: 2,
      spImpl: "megatron",
      zero: 1,
      dp: 2,
    }];
    for (const layout of layouts) {
      const map = await mapOf(layout);
      const expected = statesFrom(map, values, 0);
      for (const entry of map.ranks) {
        let read = 0;
        const counting: CheckpointStorage = Object.assign(Object.create(storage), {
          readRanges: (path: string, ranges: readonly (readonly [number, number])[]) => {
            read += ranges.reduce((sum, [, length]) => sum + length, 0);
            return storage.readRanges(path, ranges);
          },
        });
        const state = await readInitState({ ...hf, storage: counting }, map, entry.rank);
        const what = `${dtype} ${JSON.stringify(layout)} rank ${entry.rank}`;
        assert.equal(state.step, 0, what);
        assert.deepEqual(state.fp32, expected[entry.rank].fp32, `${what}: weights`);
        assert.ok(state.expAvg.every((v) => v === 0) && state.expAvgSq.every((v) => v === 0), `${what}: moments zero`);
        const held = entry.fragments.reduce((sum, f) => sum + f.numel, 0);
        assert.ok(read <= (dtype === "F32" ? 4 : 2) * held, `${what}: read ${read} bytes for ${held} elements`);
      }
      const { parameters } = assembleState(map, map.ranks.map((entry) => expected[entry.rank]));
      for (const [name, { fp32 }] of parameters) assert.deepEqual(fp32, values.get(name), `${JSON.stringify(layout)} ${name}`);
    }
  }
});

Deno.test("hf import: missing, extra and mis-shaped tensors, unreadable dtypes and another model's config.json are each named", async () => {
  const { storage, values, map } = await knownExport("F32");
  const tensors = map.parameters.map(({ name, shape }) => ({ name, dtype: "F32" as const, shape, data: values.get(name)! }));
  const downShape = map.parameters.find((p) => p.name === "model.layers.0.mlp.down_proj.weight")!.shape;
  const bad = new MemoryStorage();
  await writeSafetensors(bad, "bad.safetensors", [
    ...tensors.filter(({ name }) => name !== "lm_head.weight" && name !== "model.norm.weight" && !name.includes("0.mlp.down")),
    { name: "model.norm.weight", dtype: "F32", shape: [32], data: new Float32Array(32) },
    { name: "model.layers.0.mlp.down_proj.weight", dtype: "I32", shape: downShape, data: new Int32Array(64 * 192) },
    { name: "model.rotary_emb.inv_freq", dtype: "F32", shape: [8], data: new Float32Array(8) },
  ]);
  const error = await checkRejects(bad, "bad.safetensors");
  assert.match(error, /bad\.safetensors does not hold this model's weights \(4 problems\)/);
  assert.match(error, /missing "lm_head\.weight" \[97, 64\]/);
  assert.match(error, /"model\.norm\.weight" is \[32\], the model's is \[64\]/);
  assert.match(error, /"model\.layers\.0\.mlp\.down_proj\.weight" is I32, not a readable dtype \(F32, F16, BF16\)/);
  assert.match(error, /extra "model\.rotary_emb\.inv_freq", which the model does not have/);

  const config = JSON.parse(new TextDecoder().decode(storage.files.get("hf/config.json")));
  const withConfig = async (edit: Record<string, unknown>) => {
    storage.files.set("hf/config.json", new TextEncoder().encode(JSON.stringify({ ...config, ...edit })));
    return await checkRejects(storage, "hf");
  };
  assert.match(
    await withConfig({ hidden_size: 128, num_hidden_layers: 4 }),
    /hf\/config\.json describes another model: hidden_size 128 \(this run's model has 64\), num_hidden_layers 4 \(this run's model has 2\)/,
  );
  assert.match(await withConfig({ model_type: "llama" }), /model_type "llama"; shardlab runs "phi3" models/);
  const forward = await withConfig({ tie_word_embeddings: true, rope_scaling: { type: "longrope" }, hidden_act: "gelu" });
  assert.match(
    forward,
    /settings shardlab's Phi-3 forward does not run: tie_word_embeddings true, hidden_act "gelu", rope_scaling \{"type":"longrope"\}/,
  );
  storage.files.set("hf/config.json", new TextEncoder().encode("{ not json"));
  await assert.rejects(openHfModel(storage, "hf"), /hf\/config\.json is not valid JSON/);
  await assert.rejects(openHfModel(storage, "nothing"), /nothing: no model\.safetensors here/);

  await assert.rejects(
    Trainer.create({ ...BASE, preset: "small", initFrom: `${root}/hf` }, await cpuDevice()),
    /config\.json describes another model: hidden_size 64 \(this run's model has 128\)/,
  );
  assert.throws(
    () => checkTrainConfig({ ...BASE, initFrom: `${root}/hf`, resume: `${root}/run` }),
    /--init-from starts a new run from a model's weights and --resume goes on with a saved run; give one of them/,
  );
});

/** The message of the error opening and checking the model at `path` of `storage` against MODEL gives. */
async function checkRejects(storage: CheckpointStorage, path: string): Promise<string> {
  try {
    checkHfModel(await openHfModel(storage, path), MODEL);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error(`${path} was accepted`);
}
