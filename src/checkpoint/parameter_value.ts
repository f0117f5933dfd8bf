// One parameter's whole fp32 value from a checkpoint of either kind: put together from its
// fragments (distributed, any layout: only their byte ranges are read) or read from the universal
// fp32.safetensors, then checked against the SHA-256 the checkpoint recorded for it, so that a
// damaged checkpoint is never used silently. Callers go one parameter at a time (an export, a model
// loaded for generation), holding no more than about twice the parameter.

import { sizeOf } from "../tensor/shape.ts";
import { CheckpointError } from "./errors.ts";
import type { Checkpoint } from "./load.ts";
import { type HeaderCache, readParameter, readUniversalParameter } from "./save.ts";
import { sha256 } from "./sha256.ts";

export interface ParameterValue {
  value: Float32Array;
  /** Bytes of parameter data held at the peak of reading it (its pieces beside the whole value). */
  held: number;
}

/** The checked fp32 value of parameter `name` of `checkpoint`; `headers` caches the files' headers across calls. */
export async function checkedParameterValue(
  checkpoint: Checkpoint,
  name: string,
  headers: HeaderCache = new Map(),
): Promise<ParameterValue> {
  const { storage, folder, metadata } = checkpoint;
  const record = metadata.parameters.find((p) => p.name === name);
  if (!record) throw new CheckpointError(`${folder}: the checkpoint holds no parameter "${name}"`);
  const bytes = 4 * sizeOf(record.shape);
  const { fp32: value } = metadata.kind === "distributed"
    ? await readParameter(storage, folder, metadata.fragmentMap!, name, headers, ["fp32"])
    : await readUniversalParameter(storage, folder, name, headers, ["fp32"]);
  if (value.length !== bytes / 4) {
    throw new CheckpointError(`${folder}: parameter "${name}" holds ${value.length} values, not [${record.shape.join(", ")}]`);
  }
  if (await sha256(value) !== record.sha256.fp32) {
    throw new CheckpointError(
      `${folder}: parameter "${name}" does not match its saved SHA-256 (fp32); the checkpoint is damaged`,
    );
  }
  return { value, held: metadata.kind === "distributed" ? 2 * bytes : bytes };
}
