// Ops that move elements without arithmetic: reshape (a view), permute and transpose, slice,
// concat, split and broadcastTo, and the in-place write of a range, writeRange. All but reshape
// are one strided copy each.

import type { StridedCopy } from "../../backend/backend.ts";
import { recordOp } from "../autograd.ts";
import { DTypeError, ShapeError } from "../errors.ts";
import { checkShape, formatShape, normalizeAxis, type Shape, sizeOf, stridesOf } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { sumToShape } from "./reduce.ts";

function copyInto(op: string, src: Tensor, dst: Tensor, copy: StridedCopy): void {
  if (src.dtype !== "f32" && src.dtype !== "i32") {
    throw new DTypeError(`${op}: supports f32 and i32 tensors, got ${src.dtype} (cast first)`);
  }
  src.device.backend.copyStrided(src.storageFor(op), dst.storageFor(op), copy, src.dtype);
}

function empty(op: string, like: Tensor, shape: Shape): Tensor {
  return like.device.wrap(like.device.allocate(op, sizeOf(shape), like.dtype), shape, like.dtype);
}

/** Same elements, new shape (one dimension may be −1). Shares memory with x. */
export function reshape(x: Tensor, shape: Shape): Tensor {
  x.storageFor("reshape");
  const inferred = shape.indexOf(-1);
  const resolved = [...shape];
  if (inferred >= 0) {
    const known = sizeOf(shape.filter((_, i) => i !== inferred));
    if (known === 0 || x.size % known !== 0 || shape.lastIndexOf(-1) !== inferred) {
      throw new ShapeError(`reshape: cannot reshape ${formatShape(x.shape)} to ${formatShape(shape)}`);
    }
    resolved[inferred] = x.size / known;
  }
  checkShape("reshape", resolved);
  if (sizeOf(resolved) !== x.size) {
    throw new ShapeError(`reshape: cannot reshape ${formatShape(x.shape)} (${x.size} elements) to ${formatShape(shape)}`);
  }
  const out = x.view(resolved);
  return recordOp("reshape", out, [x], [], (g) => [g.retainedHandle(x.shape)]);
}

/** Reorders axes: output axis i is input axis order[i]. */
export function permute(x: Tensor, order: readonly number[]): Tensor {
  const rank = x.shape.length;
  const axes = order.map((a) => normalizeAxis("permute", a, rank));
  if (axes.length !== rank || new Set(axes).size !== rank) {
    throw new ShapeError(
      `permute: order [${order.join(", ")}] is not a permutation of the ${rank} axes of ${formatShape(x.shape)}`,
    );
  }
  const shape = axes.map((a) => x.shape[a]);
  const inStrides = stridesOf(x.shape);
  const out = empty("permute", x, shape);
  copyInto("permute", x, out, {
    shape,
    srcOffset: 0,
    srcStrides: axes.map((a) => inStrides[a]),
    dstOffset: 0,
    dstStrides: stridesOf(shape),
  });
  const inverse = new Array<number>(rank);
  axes.forEach((a, i) => (inverse[a] = i));
  return recordOp("permute", out, [x], [], (g) => [permute(g, inverse)]);
}

/** Swaps two axes (the last two by default). */
export function transpose(x: Tensor, axis0 = -2, axis1 = -1): Tensor {
  const rank = x.shape.length;
  const a = normalizeAxis("transpose", axis0, rank);
  const b = normalizeAxis("transpose", axis1, rank);
  const order = x.shape.map((_, i) => (i === a ? b : i === b ? a : i));
  return permute(x, order);
}

/** The block starting at `begin` with extent `size` (−1 = to the end) in every axis. */
export function slice(x: Tensor, begin: readonly number[], size: readonly number[]): Tensor {
  const rank = x.shape.length;
  if (begin.length !== rank || size.length !== rank) {
    throw new ShapeError(
      `slice: begin [${begin.join(", ")}] and size [${size.join(", ")}] must both have ${rank} entries for ${
        formatShape(x.shape)
      }`,
    );
  }
  const extent = size.map((s, i) => (s === -1 ? x.shape[i] - begin[i] : s));
  extent.forEach((s, i) => {
    if (!Number.isInteger(begin[i]) || begin[i] < 0 || !Number.isInteger(s) || s < 0 || begin[i] + s > x.shape[i]) {
      throw new ShapeError(
        `slice: begin [${begin.join(", ")}] size [${size.join(", ")}] is outside ${formatShape(x.shape)} in axis ${i}`,
      );
    }
  });
  const strides = stridesOf(x.shape);
  const offset = begin.reduce((sum, b, i) => sum + b * strides[i], 0);
  const out = empty("slice", x, extent);
  copyInto("slice", x, out, {
    shape: extent,
    srcOffset: offset,
    srcStrides: strides,
    dstOffset: 0,
    dstStrides: stridesOf(extent),
  });
  return recordOp("slice", out, [x], [], (g) => {
    const gx = x.device.wrap(x.device.allocate("slice", x.size, "f32"), x.shape);
    copyInto("slice", g, gx, {
      shape: extent,
      srcOffset: 0,
      srcStrides: stridesOf(extent),
      dstOffset: offset,
      dstStrides: strides,
    });
    return [gx];
  });
}

/** Joins tensors along axis; all other dimensions must agree. */
export function concat(tensors: readonly Tensor[], axis = 0): Tensor {
  if (tensors.length === 0) throw new ShapeError("concat: needs at least one tensor");
  const first = tensors[0];
  const a = normalizeAxis("concat", axis, first.shape.length);
  for (const t of tensors) {
    const agrees = t.shape.length === first.shape.length && t.shape.every((d, i) => i === a || d === first.shape[i]);
    if (!agrees) {
      throw new ShapeError(`concat: shapes ${tensors.map((u) => formatShape(u.shape)).join(", ")} differ outside axis ${a}`);
    }
    if (t.dtype !== first.dtype) throw new DTypeError(`concat: dtypes differ (${first.dtype} and ${t.dtype})`);
  }
  const shape = [...first.shape];
  shape[a] = tensors.reduce((sum, t) => sum + t.shape[a], 0);
  const out = empty("concat", first, shape);
  const outStrides = stridesOf(shape);
  const offsets: number[] = [];
  let position = 0;
  for (const t of tensors) {
    offsets.push(position);
    copyInto("concat", t, out, {
      shape: t.shape,
      srcOffset: 0,
      srcStrides: stridesOf(t.shape),
      dstOffset: position * outStrides[a],
      dstStrides: outStrides,
    });
    position += t.shape[a];
  }
  return recordOp("concat", out, tensors, [], (g) =>
    tensors.map((t, i) => {
      if (!t.requiresGrad) return null;
      const begin = shape.map((_, d) => (d === a ? offsets[i] : 0));
      return slice(g, begin, t.shape);
    }));
}

/** Splits along axis into pieces of the given sizes, or into `sections` equal pieces. */
export function split(x: Tensor, sizesOrSections: number | readonly number[], axis = 0): Tensor[] {
  const a = normalizeAxis("split", axis, x.shape.length);
  const length = x.shape[a];
  let sizes: number[];
  if (typeof sizesOrSections === "number") {
    if (!Number.isInteger(sizesOrSections) || sizesOrSections <= 0 || length % sizesOrSections !== 0) {
      throw new ShapeError(`split: ${sizesOrSections} sections do not divide axis ${a} of ${formatShape(x.shape)} evenly`);
    }
    sizes = new Array(sizesOrSections).fill(length / sizesOrSections);
  } else {
    sizes = [...sizesOrSections];
    if (sizes.reduce((s, n) => s + n, 0) !== length) {
      throw new ShapeError(`split: sizes [${sizes.join(", ")}] do not add up to ${length}, axis ${a} of ${formatShape(x.shape)}`);
    }
  }
  let position = 0;
  return sizes.map((n) => {
    const begin = x.shape.map((_, d) => (d === a ? position : 0));
    const extent = x.shape.map((s, d) => (d === a ? n : s));
    position += n;
    return slice(x, begin, extent);
  });
}

/** Repeats x along its size-1 (or missing leading) dimensions to fill shape. */
export function broadcastTo(x: Tensor, shape: Shape): Tensor {
  const extra = shape.length - x.shape.length;
  const fits = extra >= 0 && x.shape.every((d, i) => d === shape[extra + i] || d === 1);
  if (!fits) throw new ShapeError(`broadcastTo: cannot broadcast ${formatShape(x.shape)} to ${formatShape(shape)}`);
  const inStrides = stridesOf(x.shape);
  const out = empty("broadcastTo", x, shape);
  copyInto("broadcastTo", x, out, {
    shape,
    srcOffset: 0,
    srcStrides: shape.map((_, i) => (i < extra || x.shape[i - extra] === 1 ? 0 : inStrides[i - extra])),
    dstOffset: 0,
    dstStrides: stridesOf(shape),
  });
  return recordOp("broadcastTo", out, [x], [], (g) => [sumToShape(g, x.shape)]);
}

/**
 * In place, outside autograd: elements [srcOffset, srcOffset + numel) of src, flattened, overwrite
 * elements [dstOffset, dstOffset + numel) of dst, flattened (a ZeRO partition's range, say).
 */
export function writeRange(dst: Tensor, dstOffset: number, src: Tensor, srcOffset = 0, numel = src.size - srcOffset): void {
  const op = "writeRange";
  if (src.dtype !== dst.dtype) throw new DTypeError(`${op}: src is ${src.dtype}, dst ${dst.dtype}`);
  for (const [what, offset, size] of [["src", srcOffset, src.size], ["dst", dstOffset, dst.size]] as const) {
    if (!Number.isInteger(offset) || offset < 0 || !Number.isInteger(numel) || numel < 0 || offset + numel > size) {
      throw new ShapeError(`${op}: elements [${offset}, ${offset + numel}) fall outside ${what}'s ${size}`);
    }
  }
  copyInto(op, src, dst, { shape: [numel], srcOffset, srcStrides: [1], dstOffset, dstStrides: [1] });
}
