// Elementwise kernels on f32: unary ops, activation derivatives, and binary ops with numpy
// broadcasting. Each op has its own loop, so nothing is dispatched per element.

import type { ActivationOp, BinaryOp, UnaryOp } from "../backend.ts";
import { broadcastStrides, coalesce, forEachRow } from "./strided.ts";

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/**
 * Complementary error function by the Chebyshev fit of Numerical Recipes §6.2 (erfcc), whose
 * fractional error is below 1.2e-7 for every x. Being relative, the bound also holds deep in the
 * tail, where gelu(x) for x ≪ 0 is a tiny number; erf(x) = 1 − erfc(x).
 */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
                    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  const tail = t * Math.exp(-z * z + poly);
  return x >= 0 ? tail : 2 - tail;
}

/** Standard normal CDF Φ(x) = (1 + erf(x/√2)) / 2. */
function normalCdf(x: number): number {
  return 0.5 * erfc(-x * SQRT1_2);
}

/** y = op(x) for n elements; `scale` is y = alpha·x. */
export function unary(op: UnaryOp, x: Float32Array, n: number, alpha: number | undefined): Float32Array {
  const y = new Float32Array(n);
  switch (op) {
    case "neg":
      for (let i = 0; i < n; i++) y[i] = -x[i];
      break;
    case "exp":
      for (let i = 0; i < n; i++) y[i] = Math.exp(x[i]);
      break;
    case "log":
      for (let i = 0; i < n; i++) y[i] = Math.log(x[i]);
      break;
    case "sqrt":
      for (let i = 0; i < n; i++) y[i] = Math.sqrt(x[i]);
      break;
    case "relu":
      for (let i = 0; i < n; i++) y[i] = x[i] < 0 ? 0 : x[i];
      break;
    case "silu":
      for (let i = 0; i < n; i++) y[i] = x[i] / (1 + Math.exp(-x[i]));
      break;
    case "gelu":
      for (let i = 0; i < n; i++) y[i] = x[i] * normalCdf(x[i]);
      break;
    case "scale": {
      if (alpha === undefined) throw new Error("cpu unary scale: alpha is required");
      for (let i = 0; i < n; i++) y[i] = alpha * x[i];
      break;
    }
  }
  return y;
}

/** dx = op'(x)·dy for n elements. relu' is 1 for x > 0 and 0 elsewhere. */
export function activationGrad(op: ActivationOp, x: Float32Array, dy: Float32Array, n: number): Float32Array {
  const dx = new Float32Array(n);
  switch (op) {
    case "relu":
      for (let i = 0; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : 0;
      break;
    case "silu":
      for (let i = 0; i < n; i++) {
        const v = x[i];
        const s = 1 / (1 + Math.exp(-v));
        dx[i] = dy[i] * s * (1 + v * (1 - s));
      }
      break;
    case "gelu":
      for (let i = 0; i < n; i++) {
        const v = x[i];
        dx[i] = dy[i] * (normalCdf(v) + v * INV_SQRT_2PI * Math.exp(-0.5 * v * v));
      }
      break;
  }
  return dx;
}

/** out[offset + i·outStride] = a[...] op b[...] for i < length: one strided row of a binary op. */
function binaryRow(
  op: BinaryOp,
  a: Float32Array,
  aOffset: number,
  aStride: number,
  b: Float32Array,
  bOffset: number,
  bStride: number,
  out: Float32Array,
  outOffset: number,
  length: number,
): void {
  let ia = aOffset;
  let ib = bOffset;
  const end = outOffset + length;
  switch (op) {
    case "add":
      for (let o = outOffset; o < end; o++, ia += aStride, ib += bStride) out[o] = a[ia] + b[ib];
      break;
    case "sub":
      for (let o = outOffset; o < end; o++, ia += aStride, ib += bStride) out[o] = a[ia] - b[ib];
      break;
    case "mul":
      for (let o = outOffset; o < end; o++, ia += aStride, ib += bStride) out[o] = a[ia] * b[ib];
      break;
    case "div":
      for (let o = outOffset; o < end; o++, ia += aStride, ib += bStride) out[o] = a[ia] / b[ib];
      break;
    case "eq":
      for (let o = outOffset; o < end; o++, ia += aStride, ib += bStride) out[o] = a[ia] === b[ib] ? 1 : 0;
      break;
  }
}

/**
 * out = a op b with numpy broadcasting (shapes right-aligned). The output is walked with an
 * odometer over its coalesced dimensions; equal shapes and scalar operands coalesce to a single
 * flat row, so they run as one loop with strides 1/1, 1/0 or 0/1.
 */
export function binary(
  op: BinaryOp,
  a: Float32Array,
  aShape: readonly number[],
  b: Float32Array,
  bShape: readonly number[],
  outShape: readonly number[],
): Float32Array {
  const rank = outShape.length;
  let total = 1;
  for (const d of outShape) total *= d;
  const out = new Float32Array(total);
  if (total === 0) return out;
  const strides = [broadcastStrides(aShape, rank), broadcastStrides(bShape, rank), broadcastStrides(outShape, rank)];
  const space = coalesce(outShape, strides);
  const inner = space.shape.length - 1;
  const rowLength = space.shape[inner];
  const aStride = space.strides[0][inner];
  const bStride = space.strides[1][inner];
  forEachRow(space, [0, 0, 0], (offsets) => {
    binaryRow(op, a, offsets[0], aStride, b, offsets[1], bStride, out, offsets[2], rowLength);
  });
  return out;
}
