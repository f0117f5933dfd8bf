// Block quantization (kernels/quantize.wgsl, kernels/dequantize.wgsl): two passes to quantize (each
// block's scale from its absmax, then each output word packed), and one to dequantize and sum, a
// word per invocation; the width is the kernels' BITS constant (one pipeline per width).
// Quantized tensors occupy whole words (quantizedBytes), so that several lie one after another.

import type { QuantLayout } from "../../backend.ts";
import { quantizedBytes } from "../../cpu/quantize.ts";
import { type GpuContext, type GpuStorage, Params } from "../gpu_context.ts";
import quantizeCode from "../../../../kernels/quantize.wgsl" with { type: "text" };
import dequantizeCode from "../../../../kernels/dequantize.wgsl" with { type: "text" };

const quantizeSource = { name: "quantize", code: quantizeCode };
const dequantizeSource = { name: "dequantize", code: dequantizeCode };

/** What quantize reads: f32 values (their chunks swizzled over `nodes`) or sets of quantized tensors to sum. */
export type QuantizeSource = { nodes: number } | { sum: { scales: GpuStorage; inputs: number } };

/** QuantParams of lib/quant.wgsl (the width is the BITS constant). */
function quantParams(layout: QuantLayout, inputs: number, factor: number, nodes = 1): Params {
  const { n, tensors, block, bits } = layout;
  return new Params(8).u32(n).u32(block).u32(Math.ceil(n / block)).u32(tensors).u32(inputs)
    .u32(quantizedBytes(n, bits) / 4).f32(factor).u32(nodes);
}

export function quantize(
  ctx: GpuContext,
  x: GpuStorage,
  layout: QuantLayout,
  source: QuantizeSource,
): { q: GpuStorage; scales: GpuStorage } {
  const sum = "sum" in source ? source.sum : undefined;
  const blocks = layout.tensors * Math.ceil(layout.n / layout.block);
  const words = layout.tensors * quantizedBytes(layout.n, layout.bits) / 4;
  const scales = ctx.allocate(4 * blocks, false);
  const q = ctx.allocate(4 * words, false);
  if (words === 0) return { q, scales };
  const params = quantParams(layout, sum?.inputs ?? 1, 1, "nodes" in source ? source.nodes : 1);
  const defines = { SUM: sum !== undefined };
  const constants = { BITS: layout.bits };
  const inputs = sum ? [x, sum.scales] : [x];
  ctx.dispatch(ctx.pipeline(quantizeSource, "scales_of_blocks", defines, constants), params, [...inputs, scales], blocks);
  ctx.dispatch(ctx.pipeline(quantizeSource, "pack", defines, constants), params, [...inputs, scales, q], Math.ceil(words / 256));
  return { q, scales };
}

export function dequantize(
  ctx: GpuContext,
  q: GpuStorage,
  scales: GpuStorage,
  layout: QuantLayout,
  inputs: number,
  factor: number,
): GpuStorage {
  const y = ctx.allocate(4 * layout.tensors * layout.n, false);
  const words = layout.tensors * quantizedBytes(layout.n, layout.bits) / 4;
  if (words === 0) return y;
  const pipeline = ctx.pipeline(dequantizeSource, "main", {}, { BITS: layout.bits });
  ctx.dispatch(pipeline, quantParams(layout, inputs, factor), [q, scales, y], Math.ceil(words / 256));
  return y;
}
