// Reductions over the middle axis of x viewed as [outer, length, inner], accumulated in f64.
// With inner == 1 each output is one scalar loop over a contiguous run; otherwise the loop runs
// over whole contiguous [inner] rows of x into an f64 accumulator row, so memory is read in order
// whatever axis is reduced.

import type { ReduceOp } from "../backend.ts";

/** sum, mean (sum / length) or max (NaN propagates) over the middle axis; length 0 gives 0, NaN and −Infinity. */
export function reduce(op: ReduceOp, x: Float32Array, outer: number, length: number, inner: number): Float32Array {
  const out = new Float32Array(outer * inner);
  const isMax = op === "max";
  const divisor = op === "mean" ? length : 1;
  if (inner === 1) {
    for (let o = 0; o < outer; o++) {
      const start = o * length;
      const end = start + length;
      let acc = isMax ? -Infinity : 0;
      if (isMax) { for (let l = start; l < end; l++) acc = Math.max(acc, x[l]); }
      else for (let l = start; l < end; l++) acc += x[l];
      out[o] = acc / divisor;
    }
    return out;
  }
  const acc = new Float64Array(inner);
  for (let o = 0; o < outer; o++) {
    acc.fill(isMax ? -Infinity : 0);
    const base = o * length * inner;
    for (let l = 0; l < length; l++) {
      const row = base + l * inner;
      if (isMax) { for (let i = 0; i < inner; i++) acc[i] = Math.max(acc[i], x[row + i]); }
      else for (let i = 0; i < inner; i++) acc[i] += x[row + i];
    }
    const outRow = o * inner;
    for (let i = 0; i < inner; i++) out[outRow + i] = acc[i] / divisor;
  }
  return out;
}
