// Safetensors files in a checkpoint storage: a header read and checked (safetensors.ts) without
// reading the data, and a file written from its tensors' bytes in one pass.

import { CheckpointError } from "./errors.ts";
import { encodeHeader, headerLength, parseHeader, type SafetensorsHeader, type TensorSpec } from "./safetensors.ts";
import type { CheckpointStorage } from "./storage.ts";

/** The checked header of the file at `path`. */
export async function readHeader(storage: CheckpointStorage, path: string): Promise<SafetensorsHeader> {
  const size = await storage.size(path);
  if (size === null) throw new CheckpointError(`${path}: no such file`);
  const n = headerLength(await storage.read(path, 0, Math.min(8, size)), size, path);
  return parseHeader(await storage.read(path, 8, n), size, path);
}

/** Writes `tensors` (each with its raw little-endian bytes) and `metadata` to `path`; returns the header written. */
export async function writeSafetensors(
  storage: CheckpointStorage,
  path: string,
  tensors: readonly (TensorSpec & { data: ArrayBufferView })[],
  metadata: Record<string, string> = {},
): Promise<{ header: Uint8Array }> {
  const { bytes, header } = encodeHeader(tensors, metadata);
  for (const tensor of tensors) {
    const { begin, end } = header.tensors.get(tensor.name)!;
    if (tensor.data.byteLength !== end - begin) {
      throw new CheckpointError(
        `${path}: tensor "${tensor.name}" is given ${tensor.data.byteLength} bytes, but its shape needs ${end - begin}`,
      );
    }
  }
  await storage.write(path, [bytes, ...tensors.map((t) => t.data)]);
  return { header: bytes };
}
