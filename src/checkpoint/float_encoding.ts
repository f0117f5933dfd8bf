// Floating-point tensors as safetensors bytes (little-endian): f32 values encoded as F32, F16 or
// BF16, each rounded to the nearest value, ties to even (as PyTorch's .to(torch.float16) and
// .to(torch.bfloat16) round), and F32, F16 or BF16 bytes decoded back to f32 (exactly: every F16
// and BF16 value is an f32).

import { f16BitsToF32, f32ToF16Bits } from "../tensor/dtype.ts";

/** The safetensors dtypes a model's weights are written in and read from. */
export const FLOAT_DTYPES = ["F32", "F16", "BF16"] as const;
export type FloatDType = typeof FLOAT_DTYPES[number];

/** Bytes per element of each. */
export const FLOAT_DTYPE_BYTES: Record<FloatDType, number> = { F32: 4, F16: 2, BF16: 2 };

export function isFloatDType(dtype: string): dtype is FloatDType {
  return (FLOAT_DTYPES as readonly string[]).includes(dtype);
}

/** The bytes of `values` as `dtype` (F32: a view of the same memory). */
export function encodeFloats(values: Float32Array, dtype: FloatDType): Uint8Array {
  if (dtype === "F32") return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new Uint16Array(values.length);
  if (dtype === "F16") {
    for (let i = 0; i < values.length; i++) out[i] = f32ToF16Bits(values[i]);
  } else {
    const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
    for (let i = 0; i < values.length; i++) out[i] = bf16Bits(bits[i]);
  }
  return new Uint8Array(out.buffer);
}

/** The f32 values of `bytes` holding elements of `dtype` (F32: a view of them where they are aligned). */
export function decodeFloats(bytes: Uint8Array, dtype: FloatDType): Float32Array {
  // A typed array over file bytes needs its element alignment; a copy has offset 0.
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const count = bytes.length / FLOAT_DTYPE_BYTES[dtype];
  if (dtype === "F32") return new Float32Array(aligned.buffer, aligned.byteOffset, count);
  const halves = new Uint16Array(aligned.buffer, aligned.byteOffset, count);
  const out = new Float32Array(count);
  if (dtype === "F16") {
    for (let i = 0; i < count; i++) out[i] = f16BitsToF32(halves[i]);
  } else {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) bits[i] = halves[i] << 16;
  }
  return out;
}

/** The bfloat16 bits of the f32 with bits `f32`: its top half, rounded to nearest even; NaN stays a (quiet) NaN. */
export function bf16Bits(f32: number): number {
  if ((f32 & 0x7fffffff) >>> 0 > 0x7f800000) return (f32 >>> 16) | 0x0040;
  return ((f32 + 0x7fff + ((f32 >>> 16) & 1)) >>> 16) & 0xffff;
}
