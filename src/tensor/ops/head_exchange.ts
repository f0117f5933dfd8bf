// Block gather and its adjoint: the layout changes around a head exchange (rows packed per
// destination before an all-to-all, heads unpacked after it), outside autograd. A tensor is seen as
// consecutive blocks of `block` elements (one head's D values, say), and a host table names, for
// every block of the result, the block of the input it comes from. Both ops run one kernel
// (backend.gatherBlocks); their results do not require grad: a caller that needs the backward of a
// gather calls scatterAddBlocks with the same table.

import { ShapeError } from "../errors.ts";
import { checkShape, formatShape, type Shape, sizeOf } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { checkFloat } from "./checks.ts";

/**
 * Block i of the result is block table[i] of x. The result has `shape` (table.length · block
 * elements; [table.length, block] by default). A block may be picked several times or not at all.
 */
export function gatherBlocks(x: Tensor, table: Int32Array, block: number, shape: Shape = [table.length, block]): Tensor {
  const op = "gatherBlocks";
  checkFloat(op, x);
  const blocks = blockCount(op, "x", x, block);
  checkTable(op, table, blocks, x.shape);
  checkResult(op, shape, table.length * block, `${table.length} blocks of ${block}`);
  const offsets = Int32Array.from({ length: table.length + 1 }, (_, j) => j);
  return sumBlocks(op, x, offsets, table, 1, block, shape);
}

/**
 * The adjoint of gatherBlocks(x, table, block): block j of the result (of `shape`, x's shape) is the
 * sum of g's blocks i with table[i] == j, added in increasing i; blocks no entry names are zero.
 * g holds table.length blocks.
 */
export function scatterAddBlocks(g: Tensor, table: Int32Array, block: number, shape: Shape): Tensor {
  const op = "scatterAddBlocks";
  checkFloat(op, g);
  if (blockCount(op, "g", g, block) !== table.length) {
    throw new ShapeError(
      `${op}: g ${formatShape(g.shape)} holds ${g.size / block} blocks of ${block}, but the table has ${table.length} entries`,
    );
  }
  checkShape(op, shape);
  const size = sizeOf(shape);
  if (!Number.isInteger(size / block)) {
    throw new ShapeError(`${op}: result ${formatShape(shape)} is not whole blocks of ${block}`);
  }
  checkTable(op, table, size / block, shape);
  // The inverse table: for each result block, the g blocks that go to it, in increasing order.
  const counts = new Int32Array(size / block);
  for (const target of table) counts[target]++;
  const offsets = new Int32Array(counts.length + 1);
  for (let j = 0; j < counts.length; j++) offsets[j + 1] = offsets[j] + counts[j];
  const next = offsets.slice(0, counts.length);
  const sources = new Int32Array(table.length);
  table.forEach((target, i) => (sources[next[target]++] = i));
  const maxTerms = counts.reduce((max, c) => Math.max(max, c), 0);
  return sumBlocks(op, g, offsets, sources, maxTerms, block, shape);
}

function sumBlocks(
  op: string,
  x: Tensor,
  offsets: Int32Array,
  indices: Int32Array,
  maxTerms: number,
  block: number,
  shape: Shape,
): Tensor {
  const device = x.device;
  const n = offsets.length - 1;
  device.checkFits(op, n * block, "f32");
  const offsetsTensor = device.tensor(offsets, [offsets.length]);
  const indicesTensor = device.tensor(indices, [indices.length]);
  try {
    const s = (t: Tensor) => t.storageFor(op);
    return device.wrap(device.backend.gatherBlocks(s(x), s(offsetsTensor), s(indicesTensor), n, block, maxTerms), shape);
  } finally {
    offsetsTensor.dispose();
    indicesTensor.dispose();
  }
}

/** The number of blocks in t, which must be a whole number of them. */
function blockCount(op: string, name: string, t: Tensor, block: number): number {
  if (!Number.isInteger(block) || block < 1) throw new RangeError(`${op}: block must be a positive integer, got ${block}`);
  if (t.size % block !== 0) {
    throw new ShapeError(`${op}: ${name} ${formatShape(t.shape)} (${t.size} elements) is not whole blocks of ${block}`);
  }
  return t.size / block;
}

function checkTable(op: string, table: Int32Array, blocks: number, shape: Shape): void {
  if (!(table instanceof Int32Array)) throw new TypeError(`${op}: table must be an Int32Array`);
  for (let i = 0; i < table.length; i++) {
    if (table[i] < 0 || table[i] >= blocks) {
      throw new RangeError(
        `${op}: table entry ${table[i]} at index ${i} is outside the ${blocks} blocks of ${formatShape(shape)}`,
      );
    }
  }
}

function checkResult(op: string, shape: Shape, size: number, what: string): void {
  checkShape(op, shape);
  if (sizeOf(shape) !== size) {
    throw new ShapeError(`${op}: result shape ${formatShape(shape)} does not hold ${what} (${size} elements)`);
  }
}
