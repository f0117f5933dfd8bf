// Block quantization (ZeRO++), the reference: the arithmetic of kernels/quantize.wgsl and
// kernels/dequantize.wgsl in f32 (Math.fround after every operation the kernel rounds), so that the
// WebGPU kernels agree with it up to the order of the f32 additions. The quantizer and the packed
// layout are described in backend.ts.

import type { QuantLayout } from "../backend.ts";

/** Bytes of a quantized tensor of n elements: whole 32-bit words, so that several sent together stay word-aligned. */
export function quantizedBytes(n: number, bits: 4 | 8): number {
  return 4 * Math.ceil((n * bits) / 32);
}

/** Quantized tensors laid out one after another: q and scales of the given sets of `layout`. */
export interface QuantizedSets {
  q: Uint8Array;
  scales: Float32Array;
  inputs: number;
}

/** Round to nearest, ties to even, as WGSL's round. */
function roundEven(v: number): number {
  const floor = Math.floor(v);
  if (v - floor !== 0.5) return Math.round(v);
  return floor % 2 === 0 ? floor : floor + 1;
}

/** Element i of the packed tensor that starts at byte `base`. */
function level(q: Uint8Array, base: number, i: number, bits: 4 | 8): number {
  if (bits === 8) return (q[base + i] << 24) >> 24;
  const byte = q[base + (i >> 1)];
  const nibble = i % 2 === 0 ? byte >> 4 : byte & 15;
  return (nibble << 28) >> 28;
}

/** Element i of tensor t, summed over the sets and dequantized, in f32. */
function dequantized(sets: QuantizedSets, layout: QuantLayout): (t: number, i: number) => number {
  const { n, tensors, block, bits } = layout;
  const bytes = quantizedBytes(n, bits);
  const blocks = Math.ceil(n / block);
  return (t, i) => {
    let v = 0;
    for (let k = 0; k < sets.inputs; k++) {
      const j = k * tensors + t;
      v = Math.fround(v + Math.fround(level(sets.q, j * bytes, i, bits) * sets.scales[j * blocks + Math.floor(i / block)]));
    }
    return v;
  };
}

/**
 * Quantizes x [tensors · n], tensor t being x's chunk (t mod nodes) · (tensors / nodes) + ⌊t / nodes⌋,
 * or the sum of the sets' dequantized tensors.
 */
export function quantize(
  source: { x: Float32Array; nodes: number } | { sum: QuantizedSets },
  layout: QuantLayout,
): { q: Uint8Array; scales: Float32Array } {
  const { n, tensors, block, bits } = layout;
  const value = "sum" in source ? dequantized(source.sum, layout) : (t: number, i: number) => {
    const { x, nodes } = source;
    return x[((t % nodes) * (tensors / nodes) + Math.floor(t / nodes)) * n + i];
  };
  const blocks = Math.ceil(n / block);
  const bytes = quantizedBytes(n, bits);
  const scales = new Float32Array(tensors * blocks);
  const q = new Uint8Array(tensors * bytes);
  const top = 2 ** (bits - 1) - 1;
  for (let t = 0; t < tensors; t++) {
    for (let b = 0; b < blocks; b++) {
      let absmax = 0;
      let finite = true;
      for (let i = b * block; i < Math.min((b + 1) * block, n); i++) {
        const v = Math.abs(value(t, i));
        if (Number.isFinite(v)) absmax = Math.max(absmax, v);
        else finite = false;
      }
      scales[t * blocks + b] = finite ? Math.fround(absmax / top) : NaN;
    }
    for (let i = 0; i < n; i++) {
      const scale = scales[t * blocks + Math.floor(i / block)];
      const l = scale > 0 ? Math.min(top, Math.max(-top, roundEven(Math.fround(value(t, i) / scale)))) : 0;
      if (bits === 8) q[t * bytes + i] = l & 255;
      else q[t * bytes + (i >> 1)] |= i % 2 === 0 ? (l & 15) << 4 : l & 15;
    }
  }
  return { q, scales };
}

export function dequantize(sets: QuantizedSets, layout: QuantLayout, factor: number): Float32Array {
  const { n, tensors } = layout;
  const value = dequantized(sets, layout);
  const y = new Float32Array(tensors * n);
  const f = Math.fround(factor);
  for (let t = 0; t < tensors; t++) for (let i = 0; i < n; i++) y[t * n + i] = Math.fround(f * value(t, i));
  return y;
}
