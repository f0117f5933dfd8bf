// Naive references shared by several test files, written in plain JS doubles and independent of
// the backends: numpy broadcasting, and rounding to IEEE half precision.

import { type Shape, sizeOf } from "./helpers.ts";

/** numpy broadcast of two shapes (inputs are known to be compatible). */
export function broadcastShape(a: Shape, b: Shape): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** For every flat index of outShape, the flat index it reads in the (broadcast) inShape. */
export function broadcastIndices(outShape: Shape, inShape: Shape): Int32Array {
  const n = sizeOf(outShape);
  const rank = outShape.length;
  const extra = rank - inShape.length;
  const inStrides: number[] = new Array(rank).fill(0);
  let stride = 1;
  for (let i = inShape.length - 1; i >= 0; i--) {
    inStrides[i + extra] = inShape[i] === 1 ? 0 : stride;
    stride *= inShape[i];
  }
  const out = new Int32Array(n);
  const index = new Array(rank).fill(0);
  for (let flat = 0; flat < n; flat++) {
    let offset = 0;
    for (let d = 0; d < rank; d++) offset += index[d] * inStrides[d];
    out[flat] = offset;
    for (let d = rank - 1; d >= 0; d--) {
      if (++index[d] < outShape[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

/** Round-to-nearest-even of an integer-plus-fraction quotient. */
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const diff = v - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** The value an f32 takes once rounded to IEEE half precision (ties to even; overflow → ±∞). */
export function f16Round(x: number): number {
  if (Number.isNaN(x) || !Number.isFinite(x) || x === 0) return x;
  const sign = x < 0 ? -1 : 1;
  const ax = Math.abs(x);
  const exponent = Math.max(Math.floor(Math.log2(ax)), -14);
  // Guard log2 rounding at powers of two.
  const e = 2 ** exponent > ax ? exponent - 1 : 2 ** (exponent + 1) <= ax ? exponent + 1 : exponent;
  const quantum = 2 ** (Math.max(e, -14) - 10);
  const rounded = roundHalfEven(ax / quantum) * quantum;
  if (rounded > 65504) return sign * Infinity;
  return sign * rounded;
}
