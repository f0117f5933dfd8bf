// Dtype conversion. Values travel as JS numbers; f16 is decoded from and encoded to raw bits with
// the dtype.ts helpers (round to nearest even, overflow to ±Infinity). Conversions into an integer
// type round to nearest with ties to even (like WGSL round()), saturate to the target range and
// map NaN to 0; this applies to integer sources too, so i32 → u8 clamps rather than wraps.

import { type DType, f16BitsToF32, f32ToF16Bits, type RawArray, rawArray } from "../../tensor/dtype.ts";

const INTEGER_RANGE: Partial<Record<DType, readonly [number, number]>> = {
  i32: [-2147483648, 2147483647],
  u8: [0, 255],
  i8: [-128, 127],
};

/** Nearest integer to v, ties to even. */
export function roundHalfToEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Converts the first n elements of x from one dtype to another into a new array. */
export function cast(x: RawArray, n: number, from: DType, to: DType): RawArray {
  const out = rawArray(to, n);
  if (from === to) {
    out.set(x.subarray(0, n));
    return out;
  }
  const source = from === "f16" ? decodeF16(x as Uint16Array, n) : x;
  if (to === "f32") {
    out.set(source.subarray(0, n));
  } else if (to === "f16") {
    for (let i = 0; i < n; i++) out[i] = f32ToF16Bits(source[i]);
  } else {
    const [low, high] = INTEGER_RANGE[to]!;
    for (let i = 0; i < n; i++) {
      const v = source[i];
      out[i] = v !== v ? 0 : v <= low ? low : v >= high ? high : roundHalfToEven(v);
    }
  }
  return out;
}

function decodeF16(bits: Uint16Array, n: number): Float32Array {
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = f16BitsToF32(bits[i]);
  return values;
}
