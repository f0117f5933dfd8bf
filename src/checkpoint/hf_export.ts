// Export to Hugging Face: a checkpoint of any layout (distributed or universal) written as a folder
// that transformers loads with Phi3ForCausalLM.from_pretrained(folder):
//
//   model.safetensors        every parameter whole under its Hugging Face name, in F32, F16 or BF16
//   generation_config.json   sampling defaults
//   config.json              transformers' Phi3Config of the model (hf_config.ts), written last
//
// It streams, as `ckpt convert` does: the safetensors header is known from the metadata, so the file
// is written front to back, one parameter at a time (assembled from its fragments, checked against
// its saved SHA-256, encoded, appended and dropped); nothing holds more than about twice the
// largest parameter. The data goes to model.safetensors.tmp, which becomes model.safetensors in one
// step once whole, so a crash never leaves a half-written model under its final name.

import { sizeOf } from "../tensor/shape.ts";
import { encodeFloats, type FloatDType } from "./float_encoding.ts";
import { hfConfig, hfGenerationConfig } from "./hf_config.ts";
import { type Checkpoint, requireWhole } from "./load.ts";
import { checkedParameterValue } from "./parameter_value.ts";
import { encodeHeader } from "./safetensors.ts";
import { type HeaderCache, writeReplacing } from "./save.ts";
import { type CheckpointStorage, joinPath } from "./storage.ts";

/** The file names of an exported model. */
export const HF_MODEL_FILE = "model.safetensors";
export const HF_CONFIG_FILE = "config.json";
export const HF_GENERATION_CONFIG_FILE = "generation_config.json";

export interface HfExportReport {
  parameters: number;
  dtype: FloatDType;
  /** Bytes of model.safetensors. */
  bytes: number;
  seconds: number;
  /** The most bytes of parameter data held at once, and the largest parameter's f32 bytes, for comparison. */
  peakBytes: number;
  largestParameterBytes: number;
}

/** Writes the Hugging Face form of `source`, its weights as `dtype`, into `folder` of `target`. */
export async function exportHuggingFace(
  source: Checkpoint,
  target: CheckpointStorage,
  folder: string,
  dtype: FloatDType = "F32",
): Promise<HfExportReport> {
  const started = performance.now();
  requireWhole(source);
  const { parameters, model } = source.metadata;
  const { bytes: header } = encodeHeader(
    parameters.map(({ name, shape }) => ({ name, dtype, shape })),
    { format: "pt" },
  );
  const report: HfExportReport = {
    parameters: parameters.length,
    dtype,
    bytes: header.length,
    seconds: 0,
    peakBytes: 0,
    largestParameterBytes: 0,
  };
  const path = joinPath(folder, HF_MODEL_FILE);
  const temp = `${path}.tmp`;
  const writer = await target.create(temp);
  let whole = false;
  try {
    await writer.write(header);
    const headers: HeaderCache = new Map();
    for (const { name, shape } of parameters) {
      const { value, held } = await checkedParameterValue(source, name, headers);
      const encoded = encodeFloats(value, dtype);
      await writer.write(encoded);
      report.bytes += encoded.byteLength;
      report.peakBytes = Math.max(report.peakBytes, held + (dtype === "F32" ? 0 : encoded.byteLength));
      report.largestParameterBytes = Math.max(report.largestParameterBytes, 4 * sizeOf(shape));
    }
    whole = true;
  } finally {
    await writer.close();
    if (!whole) await target.remove(temp);
  }
  await target.replace(temp, path);
  await writeReplacing(target, joinPath(folder, HF_GENERATION_CONFIG_FILE), JSON.stringify(hfGenerationConfig(), null, 2) + "\n");
  await writeReplacing(target, joinPath(folder, HF_CONFIG_FILE), JSON.stringify(hfConfig(model, dtype), null, 2) + "\n");
  report.seconds = (performance.now() - started) / 1000;
  return report;
}
