// Element types a tensor can hold, their sizes, and the host arrays that carry them.
// f16 travels between host and backends as raw bits (Uint16Array); Tensor.read() decodes it to f32.

export type DType = "f32" | "f16" | "i32" | "u8" | "i8";

/** The host-side representation of a buffer's contents, per dtype (f16 as raw bits). */
export type RawArray = Float32Array | Uint16Array | Int32Array | Uint8Array | Int8Array;

/** What Tensor.read() returns: f32 and f16 as Float32Array, integers as their own array. */
export type HostArray = Float32Array | Int32Array | Uint8Array | Int8Array;

export const DTYPES: readonly DType[] = ["f32", "f16", "i32", "u8", "i8"];

export const DTYPE_BYTES: Record<DType, number> = { f32: 4, f16: 2, i32: 4, u8: 1, i8: 1 };

export function isDType(value: unknown): value is DType {
  return typeof value === "string" && (DTYPES as readonly string[]).includes(value);
}

export function rawArray(dtype: DType, numel: number): RawArray {
  switch (dtype) {
    case "f32":
      return new Float32Array(numel);
    case "f16":
      return new Uint16Array(numel);
    case "i32":
      return new Int32Array(numel);
    case "u8":
      return new Uint8Array(numel);
    case "i8":
      return new Int8Array(numel);
  }
}

const conversion = new DataView(new ArrayBuffer(4));

/** IEEE half-precision bits of x, rounded to nearest even (overflow to ±Infinity, NaN kept). */
export function f32ToF16Bits(x: number): number {
  conversion.setFloat32(0, x);
  const bits = conversion.getUint32(0);
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rounded = mantissa + half - 1 + ((mantissa >>> shift) & 1);
    return sign | (rounded >>> shift);
  }
  const rounded = mantissa + 0xfff + ((mantissa >>> 13) & 1);
  if (rounded & 0x800000) return e + 1 >= 0x1f ? sign | 0x7c00 : sign | ((e + 1) << 10);
  return sign | (e << 10) | (rounded >>> 13);
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
