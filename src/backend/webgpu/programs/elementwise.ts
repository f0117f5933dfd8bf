// Elementwise f32 programs (kernels/elementwise.wgsl): unary ops, activation derivatives and
// broadcasting binary ops. Each op is an override constant, so it compiles to its own pipeline.
//
// Dense kernels read and write vec4s when the element count is a multiple of 4, and each invocation
// handles ITEMS units so that a big tensor takes few workgroups. Binary ops take the dense kernel
// when both operands have the output's size, the scalar kernel when one operand is a single
// element, and the broadcasting kernel (N-d index decomposition) otherwise.

import type { ActivationOp, BinaryOp, UnaryOp } from "../../backend.ts";
import { type GpuContext, type GpuStorage, Params } from "../gpu_context.ts";
import type { Defines } from "../pipeline_cache.ts";
import { broadcastStrides, coalesce, forEachKernelPart, MAX_KERNEL_RANK, numel, packTables } from "./copy.ts";
import code from "../../../../kernels/elementwise.wgsl" with { type: "text" };

const source = { name: "elementwise", code };
const WORKGROUP = 256;
/** Units (vec4s or elements) per invocation in the dense kernels. */
const ITEMS = 4;
/** Consecutive units (vec4s or elements) of the last dimension per invocation in the broadcasting kernel. */
const BROADCAST_SEGMENT = 4;

const UNARY_OPS: Record<UnaryOp, number> = { neg: 0, exp: 1, log: 2, sqrt: 3, relu: 4, silu: 5, gelu: 6, scale: 7 };
const GRAD_OPS: Record<ActivationOp, number> = { relu: 0, silu: 1, gelu: 2 };
const BINARY_OPS: Record<BinaryOp, number> = { add: 0, sub: 1, mul: 2, div: 3, eq: 4 };

/** Runs a dense kernel over n elements: vec4 units when n % 4 == 0. */
function dense(
  ctx: GpuContext,
  defines: Defines,
  constants: Record<string, number>,
  storages: GpuStorage[],
  n: number,
  alpha?: number,
): void {
  const vec4 = n % 4 === 0;
  const units = vec4 ? n / 4 : n;
  const params = new Params(2).u32(units);
  if (alpha !== undefined) params.f32(alpha);
  const pipeline = ctx.pipeline(source, "main", { ...defines, VEC4: vec4 }, { ...constants, ITEMS });
  ctx.dispatch(pipeline, params, storages, Math.ceil(units / (WORKGROUP * ITEMS)));
}

/** y = op(x); `scale` is y = alpha·x. */
export function unary(ctx: GpuContext, op: UnaryOp, x: GpuStorage, n: number, alpha = 1): GpuStorage {
  const y = ctx.allocate(n * 4, false);
  dense(ctx, { UNARY: true }, { OP: UNARY_OPS[op] }, [x, y], n, alpha);
  return y;
}

/** dx = op'(x)·dy. */
export function activationGrad(ctx: GpuContext, op: ActivationOp, x: GpuStorage, dy: GpuStorage, n: number): GpuStorage {
  const dx = ctx.allocate(n * 4, false);
  dense(ctx, { GRAD: true }, { OP: GRAD_OPS[op] }, [x, dy, dx], n);
  return dx;
}

/** out = a op b with numpy broadcasting (shapes right-aligned, already checked compatible). */
export function binary(
  ctx: GpuContext,
  op: BinaryOp,
  a: GpuStorage,
  aShape: readonly number[],
  b: GpuStorage,
  bShape: readonly number[],
  outShape: readonly number[],
): GpuStorage {
  const n = numel(outShape);
  const out = ctx.allocate(n * 4, false);
  if (n === 0) return out;
  const aSize = numel(aShape);
  const bSize = numel(bShape);
  const OP = BINARY_OPS[op];
  if (aSize === n && bSize === n) {
    dense(ctx, { BINARY: true }, { OP }, [a, b, out], n);
  } else if (aSize === n && bSize === 1) {
    dense(ctx, { BINARY: true, SCALAR: true }, { OP, SWAP: 0 }, [a, b, out], n);
  } else if (bSize === n && aSize === 1) {
    dense(ctx, { BINARY: true, SCALAR: true }, { OP, SWAP: 1 }, [b, a, out], n);
  } else {
    broadcast(ctx, OP, a, aShape, b, bShape, outShape, out);
  }
  return out;
}

/**
 * The broadcasting kernel over the coalesced output space, in parts of at most 8 dimensions. With
 * a last dimension that is a multiple of 4 it moves vec4s: an operand's last-dimension stride is
 * then 1 (read as vec4s) or 0 (one element, splatted).
 */
function broadcast(
  ctx: GpuContext,
  OP: number,
  a: GpuStorage,
  aShape: readonly number[],
  b: GpuStorage,
  bShape: readonly number[],
  outShape: readonly number[],
  out: GpuStorage,
): void {
  const rank = outShape.length;
  const strides = [broadcastStrides(aShape, rank), broadcastStrides(bShape, rank), broadcastStrides(outShape, rank)];
  const space = coalesce(outShape, strides);
  const last = space.shape.length - 1;
  const inner = space.shape[last];
  const vec4 = inner % 4 === 0;
  const defines = {
    BROADCAST: true,
    BINARY: true,
    VEC4: vec4,
    A_VEC4: vec4 && space.strides[0][last] === 1,
    B_VEC4: vec4 && space.strides[1][last] === 1,
  };
  const pipeline = ctx.pipeline(source, "main", defines, { OP });
  const segments = Math.ceil((vec4 ? inner / 4 : inner) / BROADCAST_SEGMENT);
  forEachKernelPart(space, [0, 0, 0], (part, [aOffset, bOffset, outOffset]) => {
    const rows = numel(part.shape) / inner;
    const params = new Params(8 + 3 * MAX_KERNEL_RANK)
      .u32(rows).u32(part.shape.length).u32(aOffset).u32(bOffset).u32(outOffset).u32(0).u32(0).u32(0);
    packTables(params, { shape: part.shape, strides: part.strides.slice(0, 2) });
    ctx.dispatch(pipeline, params, [a, b, out], Math.ceil(rows * segments / WORKGROUP));
  });
}
