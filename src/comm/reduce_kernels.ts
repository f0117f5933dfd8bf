// Element-wise reductions of the collectives on host arrays (often views of channel slots).
// One monomorphic loop per (op, array type) so each stays fast. f32 results round to f32 after
// every combination and f16 results (a Uint16Array of f16 bits) to f16, as NCCL's half reductions
// do; i32 sums wrap modulo 2^32 and u8 sums modulo 2^8; max and min follow Math.max and Math.min
// (NaN wins, +0 is above -0), so they do not depend on the order of the ranks.

import { f16BitsToF32, f32ToF16Bits } from "../tensor/dtype.ts";

export type CommArray = Float32Array | Int32Array | Uint8Array | Uint16Array;
export type ReduceOp = "sum" | "avg" | "max" | "min";

function sumF32(d: Float32Array, a: Float32Array, b: Float32Array): void {
  for (let i = 0; i < d.length; i++) d[i] = a[i] + b[i];
}
function sumI32(d: Int32Array, a: Int32Array, b: Int32Array): void {
  for (let i = 0; i < d.length; i++) d[i] = a[i] + b[i];
}
function sumU8(d: Uint8Array, a: Uint8Array, b: Uint8Array): void {
  for (let i = 0; i < d.length; i++) d[i] = a[i] + b[i];
}
function maxF32(d: Float32Array, a: Float32Array, b: Float32Array): void {
  for (let i = 0; i < d.length; i++) d[i] = Math.max(a[i], b[i]);
}
function maxI32(d: Int32Array, a: Int32Array, b: Int32Array): void {
  for (let i = 0; i < d.length; i++) d[i] = Math.max(a[i], b[i]);
}
function maxU8(d: Uint8Array, a: Uint8Array, b: Uint8Array): void {
  for (let i = 0; i < d.length; i++) d[i] = Math.max(a[i], b[i]);
}
function minF32(d: Float32Array, a: Float32Array, b: Float32Array): void {
  for (let i = 0; i < d.length; i++) d[i] = Math.min(a[i], b[i]);
}
function minI32(d: Int32Array, a: Int32Array, b: Int32Array): void {
  for (let i = 0; i < d.length; i++) d[i] = Math.min(a[i], b[i]);
}
function minU8(d: Uint8Array, a: Uint8Array, b: Uint8Array): void {
  for (let i = 0; i < d.length; i++) d[i] = Math.min(a[i], b[i]);
}

/** f16 values as bits: the f64 result of the decoded operands, rounded once to f16 (exact: f16 sums fit an f64). */
function combineF16(op: ReduceOp, d: Uint16Array, a: Uint16Array, b: Uint16Array): void {
  const f = op === "max" ? Math.max : op === "min" ? Math.min : (x: number, y: number) => x + y;
  for (let i = 0; i < d.length; i++) d[i] = f32ToF16Bits(f(f16BitsToF32(a[i]), f16BitsToF32(b[i])));
}

/** d[i] = a[i] op b[i] for the first d.length elements; avg combines as sum (see finishAvg). d may alias a or b. */
export function combine(op: ReduceOp, d: CommArray, a: CommArray, b: CommArray): void {
  if (d instanceof Uint16Array) combineF16(op, d, a as Uint16Array, b as Uint16Array);
  else if (d instanceof Float32Array) {
    const [x, y] = [a as Float32Array, b as Float32Array];
    if (op === "max") maxF32(d, x, y);
    else if (op === "min") minF32(d, x, y);
    else sumF32(d, x, y);
  } else if (d instanceof Int32Array) {
    const [x, y] = [a as Int32Array, b as Int32Array];
    if (op === "max") maxI32(d, x, y);
    else if (op === "min") minI32(d, x, y);
    else sumI32(d, x, y);
  } else {
    const [x, y] = [a as Uint8Array, b as Uint8Array];
    if (op === "max") maxU8(d, x, y);
    else if (op === "min") minU8(d, x, y);
    else sumU8(d, x, y);
  }
}

/** Turns a finished sum over `ranks` ranks into the average: d[i] = d[i] / ranks, rounded to f32 (or f16). */
export function finishAvg(d: Float32Array | Uint16Array, ranks: number): void {
  if (d instanceof Uint16Array) { for (let i = 0; i < d.length; i++) d[i] = f32ToF16Bits(f16BitsToF32(d[i]) / ranks); }
  else for (let i = 0; i < d.length; i++) d[i] = d[i] / ranks;
}
