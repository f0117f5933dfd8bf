// The safetensors format, written and read by the reference implementation's rules: an 8-byte
// little-endian header length N, N bytes of UTF-8 JSON (space-padded to a multiple of 8 by the
// writer), then the data. Each header entry names a tensor: its dtype, shape and data_offsets
// [begin, end) relative to the data's start; `__metadata__` is a string → string map.
//
// A reader rejects, naming the file, the tensor and the value: fewer than 8 bytes, N over
// 100,000,000, invalid JSON, an unknown dtype, a shape that is not a list of counts or whose
// product overflows, offsets that are not contiguous when sorted (a gap or an overlap), a byte range
// that does not hold shape × dtype, and a last end that does not reach the end of the file.

import { CheckpointError } from "./errors.ts";

export const MAX_HEADER_BYTES = 100_000_000;

export const DTYPE_BYTES = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 } as const;
export type SafetensorsDType = keyof typeof DTYPE_BYTES;

export interface TensorEntry {
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte offsets [begin, end) relative to the start of the data (which is 8 + N into the file). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Where the data starts in the file: 8 + N. */
  dataStart: number;
  tensors: Map<string, TensorEntry>;
  metadata: Record<string, string>;
}

export interface TensorSpec {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
}

/**
 * The header bytes (length prefix, JSON, padding) of a file holding `tensors` in this order, one
 * after another with no holes, and each tensor's entry.
 */
export function encodeHeader(tensors: readonly TensorSpec[], metadata: Record<string, string> = {}): {
  bytes: Uint8Array;
  header: SafetensorsHeader;
} {
  const json: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) json.__metadata__ = metadata;
  const entries = new Map<string, TensorEntry>();
  let offset = 0;
  for (const { name, dtype, shape } of tensors) {
    if (name === "__metadata__" || entries.has(name)) {
      throw new CheckpointError(`safetensors: tensor name "${name}" is reserved or repeated`);
    }
    const bytes = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
    const entry = { dtype, shape: [...shape], begin: offset, end: offset + bytes };
    entries.set(name, entry);
    json[name] = { dtype, shape: entry.shape, data_offsets: [entry.begin, entry.end] };
    offset += bytes;
  }
  let text = JSON.stringify(json);
  text += " ".repeat((8 - (new TextEncoder().encode(text).length % 8)) % 8);
  const body = new TextEncoder().encode(text);
  const bytes = new Uint8Array(8 + body.length);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(body.length), true);
  bytes.set(body, 8);
  return { bytes, header: { dataStart: bytes.length, tensors: entries, metadata } };
}

/** The header length N from a file's first 8 bytes (`file` names it in errors). */
export function headerLength(prefix: Uint8Array, fileBytes: number, file: string): number {
  if (fileBytes < 8 || prefix.length < 8) {
    throw new CheckpointError(`${file}: ${fileBytes} bytes cannot hold a safetensors header length (8 bytes)`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new CheckpointError(`${file}: the header claims ${n} bytes, over the limit of ${MAX_HEADER_BYTES}`);
  }
  if (8n + n > BigInt(fileBytes)) {
    throw new CheckpointError(`${file}: the header claims ${n} bytes, but the file has ${fileBytes}`);
  }
  return Number(n);
}

/** Parses and checks the header JSON `body` of a file of `fileBytes` bytes. */
export function parseHeader(body: Uint8Array, fileBytes: number, file: string): SafetensorsHeader {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch (error) {
    throw new CheckpointError(`${file}: the header is not valid UTF-8 JSON (${(error as Error).message})`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new CheckpointError(`${file}: the header is not a JSON object`);
  }
  const dataStart = 8 + body.length;
  const metadata = checkMetadata((json as Record<string, unknown>).__metadata__, file);
  const tensors = new Map<string, TensorEntry>();
  for (const [name, value] of Object.entries(json)) {
    if (name === "__metadata__") continue;
    tensors.set(name, checkEntry(name, value, file));
  }
  const sorted = [...tensors].sort(([, a], [, b]) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const [name, { begin, end }] of sorted) {
    if (begin !== expected) {
      throw new CheckpointError(
        `${file}: tensor "${name}" begins at byte ${begin} of the data, but the one before it ends at ${expected} (${
          begin > expected ? "a gap" : "an overlap"
        })`,
      );
    }
    expected = end;
  }
  if (dataStart + expected !== fileBytes) {
    throw new CheckpointError(`${file}: the tensors end at byte ${dataStart + expected}, but the file has ${fileBytes}`);
  }
  return { dataStart, tensors, metadata };
}

function checkMetadata(value: unknown, file: string): Record<string, string> {
  if (value === undefined) return {};
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new CheckpointError(`${file}: __metadata__ is not an object`);
  }
  for (const [key, entry] of Object.entries(value)) {
    if (typeof entry !== "string") throw new CheckpointError(`${file}: __metadata__ "${key}" is not a string`);
  }
  return value as Record<string, string>;
}

function checkEntry(name: string, value: unknown, file: string): TensorEntry {
  const where = `${file}: tensor "${name}"`;
  if (value === null || typeof value !== "object") throw new CheckpointError(`${where} is not an object`);
  const { dtype, shape, data_offsets: offsets } = value as { dtype: unknown; shape: unknown; data_offsets: unknown };
  if (typeof dtype !== "string" || !Object.hasOwn(DTYPE_BYTES, dtype)) {
    throw new CheckpointError(`${where} has dtype ${JSON.stringify(dtype)} (valid: ${Object.keys(DTYPE_BYTES).join(", ")})`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new CheckpointError(`${where} has shape ${JSON.stringify(shape)}; expected a list of non-negative integers`);
  }
  let numel = 1;
  for (const d of shape as number[]) {
    numel *= d;
    if (!Number.isSafeInteger(numel)) throw new CheckpointError(`${where}: the shape [${shape.join(", ")}] overflows`);
  }
  const bytes = numel * DTYPE_BYTES[dtype as SafetensorsDType];
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new CheckpointError(`${where} has data_offsets ${JSON.stringify(offsets)}; expected [begin, end]`);
  }
  const [begin, end] = offsets as number[];
  if (end - begin !== bytes) {
    throw new CheckpointError(
      `${where}: data_offsets [${begin}, ${end}) hold ${end - begin} bytes, but ${dtype} [${shape.join(", ")}] needs ${bytes}`,
    );
  }
  return { dtype: dtype as SafetensorsDType, shape: shape as number[], begin, end };
}
