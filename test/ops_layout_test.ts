// Forward values of the layout ops (reshape, transpose, permute, slice, concat, split, broadcastTo)
// on both backends against naive index arithmetic written here: f32 and i32, negative axes, -1
// sizes, and more than 65,535 rows.

import assert from "node:assert/strict";
import { ops, type Tensor } from "../mod.ts";
import { assertExact } from "./assertions.ts";
import { disposeAll, randomValues, readF32, type Shape, sizeOf, testBothBackends } from "./helpers.ts";
import { broadcastIndices } from "./references.ts";

/** Naive permute: output axis i is input axis order[i]. */
function permuteRef(x: ArrayLike<number>, shape: Shape, order: readonly number[]): number[] {
  const outShape = order.map((a) => shape[a]);
  const inStrides = shape.map((_, i) => sizeOf(shape.slice(i + 1)));
  const out: number[] = [];
  const index = new Array(outShape.length).fill(0);
  for (let flat = 0; flat < sizeOf(outShape); flat++) {
    out.push(x[index.reduce((s, v, i) => s + v * inStrides[order[i]], 0)]);
    for (let d = outShape.length - 1; d >= 0; d--) {
      if (++index[d] < outShape[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

function sliceRef(x: ArrayLike<number>, shape: Shape, begin: readonly number[], size: readonly number[]): number[] {
  const extent = size.map((s, i) => (s === -1 ? shape[i] - begin[i] : s));
  const strides = shape.map((_, i) => sizeOf(shape.slice(i + 1)));
  const out: number[] = [];
  const index = new Array(shape.length).fill(0);
  for (let flat = 0; flat < sizeOf(extent); flat++) {
    out.push(x[index.reduce((s, v, i) => s + (v + begin[i]) * strides[i], 0)]);
    for (let d = extent.length - 1; d >= 0; d--) {
      if (++index[d] < extent[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

testBothBackends("reshape: explicit and -1, values unchanged", async (device) => {
  const values = randomValues(105, 1900);
  const x = device.tensor(values, [3, 5, 7]);
  for (
    const [target, resolved] of [[[-1, 7], [15, 7]], [[105], [105]], [[7, -1, 3], [7, 5, 3]], [[1, 105, 1], [1, 105, 1]], [[
      5,
      21,
    ], [5, 21]]]
  ) {
    const y = ops.reshape(x, target);
    assert.deepEqual(y.shape, resolved, `reshape to [${target}]`);
    assertExact(await readF32(y), values, `reshape to [${target}]`);
    y.dispose();
  }
  x.dispose();
});

testBothBackends("transpose and permute: 2-D, 3-D, 4-D, negative axes, i32", async (device) => {
  let seed = 2000;
  const cases: [Shape, (x: Tensor) => Tensor, number[]][] = [
    [[1, 1], (x) => ops.transpose(x), [1, 0]],
    [[7, 13], (x) => ops.transpose(x), [1, 0]],
    [[3, 5, 7], (x) => ops.transpose(x), [0, 2, 1]],
    [[3, 5, 7], (x) => ops.transpose(x, 0, 2), [2, 1, 0]],
    [[3, 5, 7], (x) => ops.transpose(x, -3, -2), [1, 0, 2]],
    [[3, 5, 7], (x) => ops.permute(x, [2, 0, 1]), [2, 0, 1]],
    [[2, 3, 5, 7], (x) => ops.permute(x, [1, 3, 0, 2]), [1, 3, 0, 2]],
    [[2, 3, 5, 7], (x) => ops.permute(x, [0, 2, 1, 3]), [0, 2, 1, 3]],
    [[2, 1, 33, 1, 3], (x) => ops.permute(x, [4, 2, 0, 3, 1]), [4, 2, 0, 3, 1]],
    [[70001, 3], (x) => ops.transpose(x), [1, 0]],
  ];
  for (const [shape, run, order] of cases) {
    const values = randomValues(sizeOf(shape), seed++);
    const x = device.tensor(values, shape);
    const y = run(x);
    assert.deepEqual(y.shape, order.map((a) => shape[a]), `permute [${shape}] by [${order}]: shape`);
    assertExact(await readF32(y), permuteRef(values, shape, order), `permute [${shape}] by [${order}]`);
    disposeAll(x, y);
  }
  const ints = Int32Array.from({ length: 30 }, (_, i) => i * 1000003 - 7);
  const xi = device.tensor(ints, [2, 3, 5]);
  const yi = ops.permute(xi, [2, 0, 1]);
  assert.equal(yi.dtype, "i32");
  assertExact(Array.from(await yi.read()), permuteRef(ints, [2, 3, 5], [2, 0, 1]), "permute i32");
  disposeAll(xi, yi);
});

testBothBackends("slice: begins, sizes, -1 to the end, i32", async (device) => {
  let seed = 2100;
  const cases: [Shape, number[], number[]][] = [
    [[1], [0], [1]],
    [[13], [3], [7]],
    [[7, 13], [2, 5], [5, -1]],
    [[3, 5, 7], [1, 2, 0], [2, -1, 4]],
    [[3, 5, 7], [0, 0, 6], [3, 5, 1]],
    [[2, 3, 5, 7], [1, 1, 1, 1], [1, 2, 3, 5]],
    [[7, 13], [3, 4], [0, 2]],
    [[70001, 3], [1, 1], [70000, 2]],
  ];
  for (const [shape, begin, size] of cases) {
    const values = randomValues(sizeOf(shape), seed++);
    const x = device.tensor(values, shape);
    const y = ops.slice(x, begin, size);
    assert.deepEqual(y.shape, size.map((s, i) => (s === -1 ? shape[i] - begin[i] : s)));
    assertExact(await readF32(y), sliceRef(values, shape, begin, size), `slice [${shape}] begin [${begin}] size [${size}]`);
    disposeAll(x, y);
  }
  const ints = Int32Array.from({ length: 35 }, (_, i) => -i * 77);
  const xi = device.tensor(ints, [5, 7]);
  const yi = ops.slice(xi, [1, 2], [3, 4]);
  assert.equal(yi.dtype, "i32");
  assertExact(Array.from(await yi.read()), sliceRef(ints, [5, 7], [1, 2], [3, 4]), "slice i32");
  disposeAll(xi, yi);
});

function concatRef(parts: { values: ArrayLike<number>; shape: Shape }[], axis: number): number[] {
  const outer = sizeOf(parts[0].shape.slice(0, axis));
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const p of parts) {
      const chunk = sizeOf(p.shape.slice(axis));
      for (let i = 0; i < chunk; i++) out.push(p.values[o * chunk + i]);
    }
  }
  return out;
}

testBothBackends("concat: axes 0, 1, -1, three inputs, i32", async (device) => {
  let seed = 2200;
  const cases: [Shape[], number][] = [
    [[[2, 5], [3, 5], [1, 5]], 0],
    [[[3, 2], [3, 7]], 1],
    [[[3, 2, 4], [3, 2, 1], [3, 2, 7]], -1],
    [[[2, 1, 3], [2, 5, 3]], 1],
    [[[1]], 0],
    [[[7, 3], [0, 3], [6, 3]], 0],
  ];
  for (const [shapes, axis] of cases) {
    const parts = shapes.map((shape) => ({ shape, values: randomValues(sizeOf(shape), seed++) }));
    const xs = parts.map((p) => device.tensor(p.values, p.shape));
    const y = ops.concat(xs, axis);
    const a = axis < 0 ? axis + shapes[0].length : axis;
    const expectedShape = shapes[0].map((d, i) => (i === a ? shapes.reduce((s, sh) => s + sh[a], 0) : d));
    assert.deepEqual(y.shape, expectedShape);
    assertExact(await readF32(y), concatRef(parts, a), `concat [${shapes.map((s) => `[${s}]`)}] axis ${axis}`);
    disposeAll(xs, y);
  }
  const a = device.tensor(new Int32Array([1, 2, 3, 4]), [2, 2]);
  const b = device.tensor(new Int32Array([-5, -6]), [2, 1]);
  const y = ops.concat([a, b], 1);
  assertExact(Array.from(await y.read()), [1, 2, -5, 3, 4, -6], "concat i32");
  disposeAll(a, b, y);
});

testBothBackends("split: equal sections and explicit sizes", async (device) => {
  const values = randomValues(42, 2300);
  const x = device.tensor(values, [6, 7]);
  const rows = ops.split(x, 3);
  assert.equal(rows.length, 3);
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(rows[i].shape, [2, 7]);
    assertExact(await readF32(rows[i]), values.slice(i * 14, i * 14 + 14), `split rows ${i}`);
  }
  const cols = ops.split(x, [1, 4, 2], 1);
  let begin = 0;
  for (const [i, width] of [1, 4, 2].entries()) {
    assert.deepEqual(cols[i].shape, [6, width]);
    assertExact(await readF32(cols[i]), sliceRef(values, [6, 7], [0, begin], [6, width]), `split cols ${i}`);
    begin += width;
  }
  const last = ops.split(x, [7], -1);
  assertExact(await readF32(last[0]), values, "split into one piece");
  disposeAll(x, rows, cols, last);
});

testBothBackends("broadcastTo: size-1 and missing leading axes", async (device) => {
  let seed = 2400;
  const cases: [Shape, Shape][] = [[[3, 1], [2, 3, 5]], [[], [4]], [[1], [3, 2]], [[7], [7]], [[1, 13, 1], [5, 13, 3]], [[
    2,
    1,
    3,
  ], [4, 2, 7, 3]]];
  for (const [from, to] of cases) {
    const values = randomValues(sizeOf(from), seed++);
    const x = device.tensor(values, from);
    const y = ops.broadcastTo(x, to);
    assert.deepEqual(y.shape, to);
    const index = broadcastIndices(to, from);
    assertExact(await readF32(y), Array.from(index, (i) => values[i]), `broadcastTo [${from}] → [${to}]`);
    disposeAll(x, y);
  }
});
