// ops.gatherBlocks and ops.scatterAddBlocks on both backends against plain loops written here: a
// gather copies blocks bit for bit, a scatter-add sums in table order with f32 rounding after each
// addition (the order the contract fixes, so the results are exact), over sizes that take many
// workgroups, blocks of vec4 and scalar width, ranges longer than one dispatch sums, and a dispatch
// of more than 65,535 workgroups.

import assert from "node:assert/strict";
import { type Device, ops, ShapeError } from "../mod.ts";
import { randnValues } from "../src/tensor/random.ts";
import { disposeAll, randomValues, readF32, testBothBackends } from "./helpers.ts";

/** n entries in [0, blocks), drawn from a seeded stream. */
function randomTable(n: number, blocks: number, seed: number): Int32Array {
  const values = randnValues(n, seed);
  return Int32Array.from(values, (v) => Math.floor(Math.abs(v) * 1e6) % blocks);
}

function gatherReference(x: Float32Array, table: Int32Array, block: number): Float32Array {
  const y = new Float32Array(table.length * block);
  table.forEach((source, i) => y.set(x.subarray(source * block, (source + 1) * block), i * block));
  return y;
}

function scatterAddReference(g: Float32Array, table: Int32Array, block: number, blocks: number): Float32Array {
  const y = new Float32Array(blocks * block);
  table.forEach((target, i) => {
    for (let e = 0; e < block; e++) y[target * block + e] = Math.fround(y[target * block + e] + g[i * block + e]);
  });
  return y;
}

async function checkGather(device: Device, blocks: number, block: number, table: Int32Array, seed: number): Promise<void> {
  const values = randomValues(blocks * block, seed);
  const x = device.tensor(values, [blocks, block]);
  const y = ops.gatherBlocks(x, table, block);
  assert.deepEqual(y.shape, [table.length, block]);
  assert.equal(y.requiresGrad, false);
  assert.deepEqual(await readF32(y), gatherReference(values, table, block), `gather of ${table.length} blocks of ${block}`);
  disposeAll(x, y);
}

async function checkScatterAdd(device: Device, blocks: number, block: number, table: Int32Array, seed: number): Promise<void> {
  const values = randomValues(table.length * block, seed);
  const g = device.tensor(values, [table.length * block]);
  const shape = [blocks, 1, block];
  const y = ops.scatterAddBlocks(g, table, block, shape);
  assert.deepEqual(y.shape, shape);
  assert.deepEqual(
    await readF32(y),
    scatterAddReference(values, table, block, blocks),
    `scatter-add of ${table.length} blocks of ${block} into ${blocks}`,
  );
  disposeAll(g, y);
}

testBothBackends("gatherBlocks: many workgroups, vec4 and scalar blocks, repeats and unused blocks", async (device) => {
  const before = device.stats().bytes;
  await checkGather(device, 50, 16, randomTable(700, 50, 1), 11);
  await checkGather(device, 37, 3, randomTable(900, 37, 2), 12);
  await checkGather(device, 5, 8, new Int32Array([4, 0, 4, 4]), 13);
  await checkGather(device, 3, 4, new Int32Array(0), 14);
  assert.equal(device.stats().bytes, before, "tables and results are freed");
});

testBothBackends("scatterAddBlocks: sums in table order, zeros where nothing lands", async (device) => {
  await checkScatterAdd(device, 40, 8, randomTable(900, 40, 3), 21);
  await checkScatterAdd(device, 40, 5, randomTable(900, 40, 4), 22);
  // Only every third block receives anything.
  await checkScatterAdd(device, 60, 4, Int32Array.from(randomTable(500, 20, 5), (t) => 3 * t), 23);
  // A permutation: the adjoint of a gather that is its own inverse's transpose.
  const permutation = Int32Array.from({ length: 300 }, (_, i) => (i * 7) % 300);
  await checkScatterAdd(device, 300, 16, permutation, 24);
});

testBothBackends("scatterAddBlocks: 65,000 terms per block, more than one kernel dispatch sums", async (device) => {
  const table = Int32Array.from({ length: 130_000 }, (_, i) => i % 2);
  await checkScatterAdd(device, 2, 1, table, 31);
});

testBothBackends("gatherBlocks: a dispatch of more than 65,535 workgroups", async (device) => {
  // 256 · 65,536 + 300 one-element blocks: the linear workgroup count folds into x and y.
  const n = 256 * 65_536 + 300;
  const table = Int32Array.from({ length: n }, (_, i) => (i * 5 + (i >> 11)) % 3);
  const x = device.tensor([1.5, -2, 7], [3]);
  const y = ops.gatherBlocks(x, table, 1, [n]);
  const values = await readF32(y);
  let wrong = -1;
  for (let i = 0; i < n && wrong < 0; i++) if (values[i] !== [1.5, -2, 7][table[i]]) wrong = i;
  assert.equal(wrong, -1, `element ${wrong} of ${n}`);
  disposeAll(x, y);
});

testBothBackends("gatherBlocks / scatterAddBlocks: bad tables and shapes name the values", (device) => {
  const x = device.tensor(randomValues(12, 41), [3, 4]);
  assert.throws(
    () => ops.gatherBlocks(x, new Int32Array([0, 3]), 4),
    (e) => e instanceof RangeError && /entry 3 at index 1/.test(e.message) && /3 blocks/.test(e.message),
  );
  assert.throws(
    () => ops.gatherBlocks(x, new Int32Array([-1]), 4),
    (e) => e instanceof RangeError && /entry -1 at index 0/.test(e.message),
  );
  assert.throws(
    () => ops.gatherBlocks(x, new Int32Array([0]), 5),
    (e) => e instanceof ShapeError && /12 elements/.test(e.message) && /blocks of 5/.test(e.message),
  );
  assert.throws(() => ops.gatherBlocks(x, new Int32Array([0]), 0), (e) => e instanceof RangeError && /got 0/.test(e.message));
  assert.throws(
    () => ops.gatherBlocks(x, new Int32Array([0, 1]), 4, [3, 4]),
    (e) => e instanceof ShapeError && /\[3, 4\]/.test(e.message) && /2 blocks of 4/.test(e.message),
  );
  assert.throws(
    () => ops.scatterAddBlocks(x, new Int32Array([0, 1]), 4, [2, 4]),
    (e) => e instanceof ShapeError && /3 blocks of 4/.test(e.message) && /2 entries/.test(e.message),
  );
  assert.throws(
    () => ops.scatterAddBlocks(x, new Int32Array([0, 1, 2]), 4, [2, 4]),
    (e) => e instanceof RangeError && /entry 2 at index 2/.test(e.message),
  );
  assert.throws(
    () => ops.scatterAddBlocks(x, new Int32Array([0, 1, 2]), 4, [2, 3]),
    (e) => e instanceof ShapeError && /\[2, 3\]/.test(e.message),
  );
  x.dispose();
  return Promise.resolve();
});
