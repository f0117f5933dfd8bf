// Export to Hugging Face (`ckpt export --hf`), checked without training: checkpoints of known values
// saved on several layouts (known_states.ts). The model.safetensors written follows the safetensors
// rules as the reference reader checks them, byte for byte in this test (length prefix, JSON padded
// with spaces to 8 bytes, contiguous sorted offsets ending at the file's end, dtypes, shapes and byte
// counts); its values are the checkpoint's parameters exactly in f32 and, in f16 and bf16, a
// round-to-nearest-even reference computed here in float64; the export of a multi-rank checkpoint
// (tp2×dp2, ZeRO-3, Megatron-SP, universal) is the one-device export, byte for byte; a damaged
// checkpoint or a write that fails leaves no model.safetensors behind.

import assert from "node:assert/strict";
import { convertCheckpoint } from "../src/checkpoint/convert.ts";
import { decodeFloats, encodeFloats, type FloatDType } from "../src/checkpoint/float_encoding.ts";
import { exportHuggingFace } from "../src/checkpoint/hf_export.ts";
import { openCheckpoint } from "../src/checkpoint/load.ts";
import { parseHeader } from "../src/checkpoint/safetensors.ts";
import { rankFile, stepFolder } from "../src/checkpoint/save.ts";
import { type CheckpointStorage, type FileWriter, MemoryStorage } from "../src/checkpoint/storage.ts";
import type { ParallelLayout } from "../src/parallel/layout.ts";
import { randnValues } from "../src/tensor/random.ts";
import { KNOWN_TRAINING, knownValues, mapOf, MODEL, savedKnownCheckpoint } from "./known_states.ts";

const TRAINING = KNOWN_TRAINING;
const saved = savedKnownCheckpoint;

/** The export of the checkpoint of `layout` (known values) in `dtype`: the storage it went to, and its report. */
async function exported(layout: Partial<ParallelLayout>, dtype: FloatDType) {
  const out = new MemoryStorage();
  const report = await exportHuggingFace(await openCheckpoint(await saved(await mapOf(layout)), "run"), out, "hf", dtype);
  return { out, report, file: out.files.get("hf/model.safetensors")! };
}

/**
 * x rounded to a float format with `fraction` fraction bits, normal exponents down to `minExponent`
 * (subnormals below) and largest finite value `max`: to the nearest, ties to the even significand,
 * beyond `max` to ±Infinity. In float64, independent of the encoder.
 */
function roundNearestEven(x: number, fraction: number, minExponent: number, max: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  let exponent = Math.floor(Math.log2(Math.abs(x)));
  if (2 ** exponent > Math.abs(x)) exponent--;
  if (2 ** (exponent + 1) <= Math.abs(x)) exponent++;
  const ulp = 2 ** (Math.max(exponent, minExponent) - fraction);
  const q = x / ulp;
  const below = Math.floor(q);
  const rest = q - below;
  const units = rest > 0.5 ? below + 1 : rest < 0.5 ? below : below % 2 === 0 ? below : below + 1;
  const y = units * ulp;
  if (Math.abs(y) > max) return Math.sign(y) * Infinity;
  return y === 0 ? Math.sign(x) * 0 : y;
}

const REFERENCE: Record<FloatDType, (x: number) => number> = {
  F32: (x) => x,
  F16: (x) => roundNearestEven(x, 10, -14, 65504),
  BF16: (x) => roundNearestEven(x, 7, -126, (2 - 2 ** -7) * 2 ** 127),
};

/** Asserts every element of `actual` is the reference rounding of `values` (NaN as NaN, −0 as −0). */
function assertRounded(actual: Float32Array, values: Float32Array, dtype: FloatDType, what: string): void {
  for (let i = 0; i < values.length; i++) {
    const want = REFERENCE[dtype](values[i]);
    if (!(Object.is(actual[i], want) || (Number.isNaN(want) && Number.isNaN(actual[i])))) {
      assert.fail(`${what} ${dtype} element ${i}: ${values[i]} became ${actual[i]}, round-to-nearest-even gives ${want}`);
    }
  }
}

Deno.test("hf export: f16 and bf16 round to nearest even, ties, subnormals, overflow, ±0, ±Infinity and NaN included", () => {
  const f32 = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0];
  const special = new Float32Array([
    ...[0, -0, 1, -1, 1 / 3, 65504, 65519, 65520, -65520, 1e5, 3.4e38, Infinity, -Infinity, NaN],
    ...[1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 2 ** -26, 2 ** -14],
    ...[f32(0x3f808000), f32(0x3f818000), f32(0x00000001), f32(0x807fffff), f32(0x7f7fffff), f32(0x7f7f8000), f32(0x7f7f7fff)],
  ]);
  const random = randnValues(4096, 11).map((v, i) => v * 10 ** ((i % 13) - 8));
  // Every tie halfway between neighbouring finite f16 values, and between bf16 values (every 7th).
  const f16 = (bits: number) => bits < 0x400 ? bits * 2 ** -24 : (1024 + (bits & 0x3ff)) * 2 ** ((bits >> 10) - 25);
  const bf16 = (bits: number) => f32(bits << 16);
  const ties = new Float32Array([
    ...Array.from({ length: 0x7c00 }, (_, h) => [(f16(h) + f16(h + 1)) / 2, -(f16(h) + f16(h + 1)) / 2]).flat(),
    ...Array.from({ length: 0x7f80 / 7 }, (_, i) => (bf16(7 * i) + bf16(7 * i + 1)) / 2),
  ]);
  for (const values of [special, random, ties]) {
    for (const dtype of ["F32", "F16", "BF16"] as const) {
      const bytes = encodeFloats(values, dtype);
      assert.equal(bytes.byteLength, values.length * (dtype === "F32" ? 4 : 2));
      assertRounded(decodeFloats(bytes, dtype), values, dtype, "round trip");
    }
  }
});

Deno.test("hf export: model.safetensors follows the safetensors rules, config.json is Phi3Config, the values are the checkpoint's", async () => {
  const map = await mapOf({ tp: 2, dp: 2, zero: 1 });
  const values = knownValues(map);
  for (const dtype of ["F32", "F16", "BF16"] as const) {
    const { out, report, file } = await exported({ tp: 2, dp: 2, zero: 1 }, dtype);
    const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
    const n = Number(view.getBigUint64(0, true));
    assert.equal(n % 8, 0, `${dtype}: the header's ${n} bytes are padded to a multiple of 8`);
    const text = new TextDecoder().decode(file.subarray(8, 8 + n));
    assert.match(text, /^\{.*\} *$/s, "the JSON is padded with spaces only");
    assert.ok(text.length - text.trimEnd().length < 8, "less than 8 bytes of padding");
    const json = JSON.parse(text);
    assert.deepEqual(json.__metadata__, { format: "pt" }, "transformers loads files whose format is pt");
    const entries = Object.entries(json).filter(([name]) => name !== "__metadata__") as [string, {
      dtype: string;
      shape: number[];
      data_offsets: [number, number];
    }][];
    assert.deepEqual(entries.map(([name]) => name), map.parameters.map((p) => p.name), "every parameter, in model order");
    let end = 0;
    for (const [name, { dtype: stored, shape, data_offsets: [begin, stop] }] of entries) {
      const parameter = map.parameters.find((p) => p.name === name)!;
      assert.equal(stored, dtype, `${name}: dtype`);
      assert.deepEqual(shape, parameter.shape, `${name}: shape`);
      assert.equal(begin, end, `${name}: begins where the one before ends`);
      assert.equal(stop - begin, values.get(name)!.length * (dtype === "F32" ? 4 : 2), `${name}: bytes`);
      const data = file.slice(8 + n + begin, 8 + n + stop);
      assertRounded(decodeFloats(data, dtype), values.get(name)!, dtype, name);
      end = stop;
    }
    assert.equal(8 + n + end, file.length, "the last tensor ends at the end of the file");
    const header = parseHeader(file.subarray(8, 8 + n), file.length, "model.safetensors");
    assert.equal(header.tensors.size, map.parameters.length, "the reference reader's rules accept it");
    assert.equal(report.bytes, file.length);
    assert.equal(report.parameters, map.parameters.length);
    assert.ok(report.peakBytes <= 2.5 * report.largestParameterBytes, `held ${report.peakBytes} bytes`);

    const config = JSON.parse(new TextDecoder().decode(out.files.get("hf/config.json")));
    assert.deepEqual(config.architectures, ["Phi3ForCausalLM"]);
    assert.equal(config.model_type, "phi3");
    assert.equal(config.torch_dtype, { F32: "float32", F16: "float16", BF16: "bfloat16" }[dtype]);
    const shape = {
      vocab_size: MODEL.vocabSize,
      hidden_size: MODEL.hiddenSize,
      intermediate_size: MODEL.intermediateSize,
      num_hidden_layers: MODEL.numLayers,
      num_attention_heads: MODEL.numHeads,
      num_key_value_heads: MODEL.numKvHeads,
      max_position_embeddings: MODEL.maxSeqLen,
      original_max_position_embeddings: MODEL.maxSeqLen,
      rms_norm_eps: MODEL.rmsNormEps,
      rope_theta: MODEL.ropeTheta,
      tie_word_embeddings: false,
      hidden_act: "silu",
      rope_scaling: null,
      partial_rotary_factor: 1,
      sliding_window: null,
      attention_dropout: 0,
      resid_pdrop: 0,
      embd_pdrop: 0,
      bos_token_id: null,
      eos_token_id: null,
      pad_token_id: null,
    };
    for (const [field, value] of Object.entries(shape)) assert.deepEqual(config[field], value, `config.json ${field}`);
    const generation = JSON.parse(new TextDecoder().decode(out.files.get("hf/generation_config.json")));
    assert.deepEqual(generation, {
      do_sample: true,
      temperature: 0.8,
      max_new_tokens: 200,
      bos_token_id: null,
      eos_token_id: null,
      pad_token_id: null,
    });
    assert.deepEqual([...out.files.keys()].sort(), ["hf/config.json", "hf/generation_config.json", "hf/model.safetensors"]);
  }
});

Deno.test("hf export: a multi-rank checkpoint (tp2×dp2, ZeRO-3, Megatron-SP) and its universal form export the one-device file, byte for byte", async () => {
  for (const dtype of ["F32", "BF16"] as const) {
    const { file: single } = await exported({}, dtype);
    for (
      const layout of [{ tp: 2, dp: 2, zero: 1 }, { dp: 2, zero: 3 }, { tp: 4, dp: 2, zero: 2 }, {
        sp: 2,
        spImpl: "megatron",
      }] as const
    ) {
      const { file } = await exported(layout, dtype);
      assert.deepEqual(file, single, `${JSON.stringify(layout)} ${dtype}`);
    }
    const storage = await saved(await mapOf({ tp: 2, dp: 2, zero: 3 }));
    await convertCheckpoint(await openCheckpoint(storage, "run"), storage, "universal");
    const out = new MemoryStorage();
    await exportHuggingFace(await openCheckpoint(storage, "universal"), out, "hf", dtype);
    assert.deepEqual(out.files.get("hf/model.safetensors"), single, `universal ${dtype}`);
  }
});

Deno.test("hf export: a damaged checkpoint or a failed write leaves no model.safetensors under its name", async () => {
  const map = await mapOf({ dp: 2, zero: 3 });
  const folder = `run/${stepFolder(TRAINING.step)}`;

  // A flipped byte in a rank file's data: the parameter it lands in fails its saved SHA-256.
  const flipped = await saved(map);
  const bytes = flipped.files.get(`${folder}/${rankFile(1)}`)!;
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  const dataStart = 8 + Number(view.getBigUint64(0, true));
  bytes[dataStart + 4 * map.ranks[1].fragments[0].start + 1] ^= 0x10;
  const out = new MemoryStorage();
  await assert.rejects(
    exportHuggingFace(await openCheckpoint(flipped, "run"), out, "hf"),
    new RegExp(`parameter "${map.ranks[1].fragments[0].name.replaceAll(".", "\\.")}" does not match its saved SHA-256`),
  );
  assert.deepEqual([...out.files.keys()], [], "nothing written: no model.safetensors, no temporary file, no config.json");

  // A truncated rank file is named before anything is written.
  const truncated = await saved(map);
  truncated.files.set(`${folder}/${rankFile(0)}`, truncated.files.get(`${folder}/${rankFile(0)}`)!.slice(0, -8));
  await assert.rejects(exportHuggingFace(await openCheckpoint(truncated, "run"), out, "hf"), new RegExp(rankFile(0)));
  assert.deepEqual([...out.files.keys()], []);

  // A write that fails half-way through: the earlier export stays whole, and the temporary file is removed.
  const checkpoint = await openCheckpoint(await saved(map), "run");
  await exportHuggingFace(checkpoint, out, "hf");
  const before = out.files.get("hf/model.safetensors")!;
  let pieces = 0;
  const failing: CheckpointStorage = Object.assign(Object.create(out), {
    create: async (path: string): Promise<FileWriter> => {
      const writer = await out.create(path);
      return {
        write: (piece) => ++pieces > 5 ? Promise.reject(new Error("disk full")) : writer.write(piece),
        close: () => writer.close(),
      };
    },
  });
  await assert.rejects(exportHuggingFace(checkpoint, failing, "hf", "F16"), /disk full/);
  assert.equal(out.files.get("hf/model.safetensors"), before);
  assert.deepEqual([...out.files.keys()].sort(), ["hf/config.json", "hf/generation_config.json", "hf/model.safetensors"]);
  assert.equal(JSON.parse(new TextDecoder().decode(out.files.get("hf/config.json"))).torch_dtype, "float32");
});
