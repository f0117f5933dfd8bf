// The values collectives move, on the host: checking what a caller passes, reading Tensors to host
// arrays, choosing the array a result is written into, and wrapping results back into Tensors on the
// caller's device with its dtype.

import { DTypeError, ShapeError } from "../tensor/errors.ts";
import { Tensor } from "../tensor/tensor.ts";
import { type ChunkLayout, chunkLayout, equalSplit } from "./ring.ts";
import type { CommArray, ReduceOp } from "./reduce_kernels.ts";

export type CommData = Tensor | CommArray;
export type CommDType = "f32" | "i32" | "u8" | "f16";

export const ARRAYS = { f32: Float32Array, i32: Int32Array, u8: Uint8Array, f16: Uint16Array };
const OPS: readonly ReduceOp[] = ["sum", "avg", "max", "min"];

export function checkTag(kind: string, tag: unknown): string {
  if (tag !== undefined && typeof tag !== "string") throw new TypeError(`${kind}: tag must be a string, got ${describe(tag)}`);
  return tag ?? "";
}

export function checkOp(kind: string, op: ReduceOp | undefined, x: CommData): ReduceOp {
  const chosen = op ?? "sum";
  if (!OPS.includes(chosen)) throw new RangeError(`${kind}: unknown op "${chosen}" (valid: ${OPS.join(", ")})`);
  if (chosen === "avg" && dtypeOf(kind, x) !== "f32" && dtypeOf(kind, x) !== "f16") {
    throw new DTypeError(`${kind}: op "avg" needs f32 or f16 values, got ${dtypeOf(kind, x)}`);
  }
  return chosen;
}

export function isCommData(x: unknown): x is CommData {
  return x instanceof Tensor || x instanceof Float32Array || x instanceof Int32Array || x instanceof Uint8Array ||
    x instanceof Uint16Array;
}

export function dtypeOf(kind: string, x: CommData): CommDType {
  if (x instanceof Tensor) {
    if (x.dtype === "f32" || x.dtype === "i32" || x.dtype === "u8" || x.dtype === "f16") return x.dtype;
    throw new DTypeError(`${kind}: tensors of dtype ${x.dtype} cannot be communicated (valid: f32, f16, i32, u8)`);
  }
  if (x instanceof Float32Array) return "f32";
  if (x instanceof Int32Array) return "i32";
  if (x instanceof Uint8Array) return "u8";
  if (x instanceof Uint16Array) return "f16";
  throw new TypeError(
    `${kind}: expected a Tensor, Float32Array, Int32Array, Uint8Array or Uint16Array (f16 bits), got ${describe(x)}`,
  );
}

function describe(x: unknown): string {
  return x === null ? "null" : typeof x === "object" ? (x as object).constructor?.name ?? "object" : typeof x;
}

/** x's values on the host (f16 as its bits): a Tensor is read into a new array this call owns; a typed array is used as is. */
export async function toHost(x: CommData): Promise<CommArray> {
  return x instanceof Tensor ? await x.readRaw() as CommArray : x;
}

export function newLike(array: CommArray, length: number): CommArray {
  return new (array.constructor as new (length: number) => CommArray)(length);
}

/**
 * Checks a caller's `out` array for a result of `length` elements: only with typed arrays, of x's
 * type; it may be x itself only where `inPlace` allows, and may not otherwise share memory with x
 * (`whyNotX`, if given, says why the collective cannot write over x).
 */
export function checkOut(
  kind: string,
  x: CommData,
  out: CommArray | undefined,
  length: number,
  inPlace: boolean,
  whyNotX = "",
): void {
  if (out === undefined) return;
  if (x instanceof Tensor) throw new TypeError(`${kind}: out is for typed arrays; a Tensor's result is a new Tensor`);
  if (out.constructor !== x.constructor) {
    throw new TypeError(`${kind}: out must be a ${x.constructor.name} like x, got ${describe(out)}`);
  }
  if (out.length !== length) throw new RangeError(`${kind}: out has ${out.length} elements, the result has ${length}`);
  const shared = out.buffer === x.buffer && out.byteOffset < x.byteOffset + x.byteLength &&
    x.byteOffset < out.byteOffset + out.byteLength;
  const same = out.byteOffset === x.byteOffset && out.length === x.length && out.buffer === x.buffer;
  if (shared && !(inPlace && same)) {
    throw new RangeError(
      `${kind}: out overlaps x${inPlace ? " without being x itself" : ""}; pass a separate array${
        whyNotX ? ` (${whyNotX})` : ""
      }`,
    );
  }
}

/**
 * The array a same-length result goes into: the caller's `out`, the host copy of a Tensor (which
 * this call owns), or a new array.
 */
export function sameLengthOutput(x: CommData, input: CommArray, out: CommArray | undefined): CommArray {
  return out ?? (x instanceof Tensor ? input : newLike(input, input.length));
}

/**
 * Checks `out` of a collective whose result length other ranks decide (all-gather, all-to-all): the
 * length comes from the per-rank counts passed as option `name`, which `out` therefore needs.
 */
export function checkOutByCounts(
  kind: string,
  x: CommData,
  out: CommArray | undefined,
  counts: number[] | undefined,
  name: string,
  whyNotX: string,
): void {
  if (out === undefined) return;
  if (!(x instanceof Tensor) && counts === undefined) {
    throw new TypeError(
      `${kind}: out needs ${name} (one per group rank): without them the result's length is known only after the call`,
    );
  }
  checkOut(kind, x, out, (counts ?? []).reduce((a, b) => a + b, 0), false, whyNotX);
}

/** Checks a reduce-scatter's `out`: this rank's chunk of the result, a separate array or this rank's chunk of x (in place). */
export function checkReduceScatterOut(
  n: number,
  rank: number,
  x: CommData,
  out: CommArray | undefined,
  counts: number[] | undefined,
): void {
  if (out === undefined) return;
  const split = x instanceof Tensor ? [] : splitCounts(n, "reduceScatter", x, x, counts, "counts");
  const length = split[rank] ?? 0;
  const inPlace = !(x instanceof Tensor) && out.length === length && isViewAt(out, x, chunkLayout(split).offsets[rank]);
  if (!inPlace) checkOut("reduceScatter", x, out, length, false);
}

/** Checks an all-gather's `out`: a separate array, or one whose block for this rank is x (in place). */
export function checkAllGatherOut(rank: number, x: CommData, out: CommArray | undefined, counts: number[] | undefined): void {
  const layout = counts ? chunkLayout(counts) : null;
  const inPlace = out !== undefined && layout !== null && !(x instanceof Tensor) && x.length === layout.sizes[rank] &&
    isViewAt(x, out, layout.offsets[rank]);
  if (inPlace && out.length !== total(layout)) {
    throw new RangeError(`allGather: out has ${out.length} elements, the result has ${total(layout)}`);
  }
  if (!inPlace) checkOutByCounts("allGather", x, out, counts, "counts", "x cannot be out: the gathered result is longer than x");
}

/** Checks an all-to-all's `out` and returns whether it is x itself (in place, where the receive counts must equal the send counts). */
export function checkAllToAllOut(
  n: number,
  x: CommData,
  out: CommArray | undefined,
  sendCounts: number[] | undefined,
  recvCounts: number[] | undefined,
): boolean {
  const inPlace = out !== undefined && !(x instanceof Tensor) && out.length === x.length && isViewAt(x, out, 0);
  if (!inPlace) {
    checkOutByCounts("allToAll", x, out, recvCounts, "recvCounts", "x may be out itself only (in place)");
    return false;
  }
  const sends = splitCounts(n, "allToAll", x, x, sendCounts, "sendCounts");
  if (JSON.stringify(sends) !== JSON.stringify(recvCounts)) {
    throw new RangeError(
      `allToAll: in place needs recvCounts equal to sendCounts, got recvCounts ${JSON.stringify(recvCounts)} and sendCounts ${
        JSON.stringify(sends)
      }`,
    );
  }
  return true;
}

/** Checks per-rank counts of a group of n ranks, passed as option `name`. */
export function checkCounts(n: number, kind: string, counts: readonly number[], name: string): void {
  if (!Array.isArray(counts) || counts.length !== n || !counts.every((c) => Number.isInteger(c) && c >= 0)) {
    throw new RangeError(
      `${kind}: ${name} must list ${n} non-negative integers (one per group rank), got ${JSON.stringify(counts)}`,
    );
  }
}

/** The given per-rank counts (checked to add up to x's size), or x split equally by rows over n ranks. */
export function splitCounts(
  n: number,
  kind: string,
  x: CommData,
  input: CommArray,
  counts: number[] | undefined,
  name: string,
): number[] {
  if (counts) {
    checkCounts(n, kind, counts, name);
    const sum = counts.reduce((a, b) => a + b, 0);
    if (sum !== input.length) throw new RangeError(`${kind}: ${name} add up to ${sum}, but x has ${input.length} elements`);
    return [...counts];
  }
  if (input.length === 0) return new Array<number>(n).fill(0);
  const row = x instanceof Tensor ? x.shape.slice(1).reduce((a, b) => a * b, 1) : 1;
  return equalSplit(input.length / row, n).map((rows) => rows * row);
}

/** Whether `inner` is exactly `outer`'s elements [start, start + inner.length), of the same type: an in-place argument. */
export function isViewAt(inner: CommData, outer: CommArray, start: number): boolean {
  return !(inner instanceof Tensor) && inner.constructor === outer.constructor && inner.buffer === outer.buffer &&
    inner.byteOffset === outer.byteOffset + start * outer.BYTES_PER_ELEMENT && start + inner.length <= outer.length;
}

export function block(array: CommArray, layout: ChunkLayout, r: number): CommArray {
  return array.subarray(layout.offsets[r], layout.offsets[r] + layout.sizes[r]);
}

export function total(layout: ChunkLayout): number {
  return layout.sizes.reduce((a, b) => a + b, 0);
}

/** The result as x's kind: a typed array as is, or a Tensor on x's device with x's dtype. */
export function wrapLike(x: CommData, output: CommArray, kind: string, sameShape: boolean): CommData {
  if (!(x instanceof Tensor)) return output;
  const shape = sameShape ? x.shape : rowsShape(kind, x.shape, output.length);
  x.device.checkFits(kind, output.length, x.dtype);
  return x.device.wrap(x.device.backend.upload(output, x.dtype), shape, x.dtype);
}

/** The shape of `count` elements as rows of the trailing dimensions of `shape`. */
function rowsShape(kind: string, shape: readonly number[], count: number): number[] {
  const trailing = shape.slice(1);
  const row = trailing.reduce((a, b) => a * b, 1);
  if (count % row !== 0) {
    throw new ShapeError(
      `${kind}: ${count} elements do not form whole rows of [${trailing.join(", ")}] (x has shape [${shape.join(", ")}])`,
    );
  }
  return [count / row, ...trailing];
}
