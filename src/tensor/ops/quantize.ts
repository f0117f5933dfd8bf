// Block quantization (ZeRO++), outside autograd: symmetric INT8 or INT4 with one f32 scale per
// block, on the tensor's device (kernels/quantize.wgsl and kernels/dequantize.wgsl; the CPU backend
// is the reference). The quantizer is backend.ts's: per block of largest magnitude a,
// scale = a / (2^(bits−1) − 1) and q = round(v / scale), so |v − q · scale| ≤ scale / 2.
//
// Several tensors of n elements are handled at once, each with its own blocks (ZeRO++ sends each to
// another rank): quantize(x, { tensors }) cuts x into `tensors` equal tensors. A quantized result is
// a u8 tensor q of tensors · quantizedBytes(n, bits) bytes and an f32 tensor of tensors · ⌈n / block⌉
// scales. A block holding NaN or ±Inf gets a NaN scale, which checkScales turns into an error.

import type { QuantLayout, Storage } from "../../backend/backend.ts";
import { quantizedBytes } from "../../backend/cpu/quantize.ts";
import { NonFiniteError, ShapeError } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { checkDtype, checkFloat } from "./checks.ts";

export { quantizedBytes };

/** How values are quantized: the width and the block size in elements. */
export interface QuantSpec {
  bits: 4 | 8;
  block: number;
}

export interface Quantized {
  /** u8 [tensors · quantizedBytes(n, bits)]. */
  q: Tensor;
  /** f32 [tensors · ⌈n / block⌉]. */
  scales: Tensor;
}

/** Which quantized tensors a call reads: `inputs` sets of `tensors` tensors of n elements, set after set. */
export interface QuantizedSets {
  n: number;
  tensors?: number;
  inputs?: number;
}

/**
 * x (f32) cut into `tensors` equal chunks (default 1), each quantized in blocks of spec.block. With
 * `nodes` (dividing tensors; g = tensors / nodes), the chunks are swizzled as they are read: chunk
 * b · g + l becomes tensor l · nodes + b (qgZ: the chunks bound for local rank l of every node lie
 * together, so one all-to-all over the node sends them).
 */
export function quantize(x: Tensor, spec: QuantSpec & { tensors?: number; nodes?: number }): Quantized {
  const op = "quantize";
  checkFloat(op, x);
  const [tensors, nodes] = [spec.tensors ?? 1, spec.nodes ?? 1];
  checkCount(op, "tensors", tensors, 1);
  checkCount(op, "nodes", nodes, 1);
  if (x.size % tensors !== 0) throw new ShapeError(`${op}: ${x.size} elements do not cut into ${tensors} equal tensors`);
  if (tensors % nodes !== 0) throw new RangeError(`${op}: ${tensors} tensors do not spread over ${nodes} nodes`);
  const layout = checkLayout(op, spec, x.size / tensors, tensors);
  x.device.checkFits(op, tensors * quantizedBytes(layout.n, layout.bits), "u8");
  return wrapQuantized(x, layout, x.device.backend.quantize(x.storageFor(op), layout, { nodes }));
}

/**
 * The sum over `sets.inputs` sets of each of `sets.tensors` quantized tensors, dequantized,
 * quantized again (one dispatch each way: qgZ's middle hop).
 */
export function requantizeSum(q: Tensor, scales: Tensor, spec: QuantSpec, sets: QuantizedSets): Quantized {
  const op = "requantizeSum";
  const { layout, inputs } = checkSets(op, q, scales, spec, sets);
  const sum = { scales: scales.storageFor(op), inputs };
  return wrapQuantized(q, layout, q.device.backend.quantize(q.storageFor(op), layout, { sum }));
}

/** f32 [tensors · n]: tensor t = factor · Σ over the sets of their tensor t, dequantized (factor default 1). */
export function dequantize(q: Tensor, scales: Tensor, spec: QuantSpec, sets: QuantizedSets & { factor?: number }): Tensor {
  const op = "dequantize";
  const { layout, inputs } = checkSets(op, q, scales, spec, sets);
  const factor = sets.factor ?? 1;
  if (!Number.isFinite(factor)) throw new RangeError(`${op}: factor must be a finite number, got ${factor}`);
  q.device.checkFits(op, layout.tensors * layout.n, "f32");
  const y = q.device.backend.dequantize(q.storageFor(op), scales.storageFor(op), layout, inputs, factor);
  return q.device.wrap(y, [layout.tensors * layout.n]);
}

/** Throws, naming `what` and the first block, if a scale is NaN: its block held NaN or ±Inf. */
export function checkScales(scales: Float32Array, block: number, what: string): void {
  const bad = scales.findIndex((s) => Number.isNaN(s));
  if (bad >= 0) {
    throw new NonFiniteError(
      `${what}: block ${bad} (elements ${bad * block}..${(bad + 1) * block - 1}) holds NaN or ±Inf and cannot be quantized`,
    );
  }
}

function checkCount(op: string, name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new RangeError(`${op}: ${name} must be an integer ≥ ${min}, got ${value}`);
}

function checkLayout(op: string, spec: QuantSpec, n: number, tensors: number): QuantLayout {
  if (spec.bits !== 4 && spec.bits !== 8) throw new RangeError(`${op}: bits must be 8 or 4, got ${spec.bits}`);
  checkCount(op, "block", spec.block, 1);
  checkCount(op, "n", n, 0);
  return { n, tensors, block: spec.block, bits: spec.bits };
}

function checkSets(
  op: string,
  q: Tensor,
  scales: Tensor,
  spec: QuantSpec,
  sets: QuantizedSets,
): { layout: QuantLayout; inputs: number } {
  checkDtype(op, "u8", q);
  checkFloat(op, scales);
  const [tensors, inputs] = [sets.tensors ?? 1, sets.inputs ?? 1];
  checkCount(op, "tensors", tensors, 1);
  checkCount(op, "inputs", inputs, 1);
  const layout = checkLayout(op, spec, sets.n, tensors);
  const count = inputs * tensors;
  const [bytes, blocks] = [count * quantizedBytes(layout.n, layout.bits), count * Math.ceil(layout.n / layout.block)];
  if (q.size !== bytes || scales.size !== blocks) {
    throw new ShapeError(
      `${op}: ${count} quantized tensors of ${layout.n} elements (INT${layout.bits}, blocks of ${layout.block}) ` +
        `need ${bytes} bytes and ${blocks} scales, got ${q.size} bytes and ${scales.size} scales`,
    );
  }
  return { layout, inputs };
}

function wrapQuantized(like: Tensor, layout: QuantLayout, result: { q: Storage; scales: Storage }): Quantized {
  const { n, tensors, block, bits } = layout;
  return {
    q: like.device.wrap(result.q, [tensors * quantizedBytes(n, bits)], "u8"),
    scales: like.device.wrap(result.scales, [tensors * Math.ceil(n / block)]),
  };
}
