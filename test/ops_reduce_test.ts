// Forward values of sum, mean and max on both backends against a naive reference written here in
// plain JS doubles (never the CPU backend): every axis and the whole tensor, with and without
// keepDims, more than 65,535 rows, rows longer than 262,144 elements, and infinities.

import assert from "node:assert/strict";
import { type Device, ops } from "../mod.ts";
import { assertExact, assertWithin } from "./assertions.ts";
import { disposeAll, randomValues, readF32, type Shape, sizeOf, testBothBackends } from "./helpers.ts";

function reduceRef(
  op: "sum" | "mean" | "max",
  x: ArrayLike<number>,
  shape: Shape,
  axis: number | undefined,
): { out: Float64Array; magnitude: Float64Array } {
  let outer: number, length: number, inner: number;
  if (axis === undefined) [outer, length, inner] = [1, sizeOf(shape), 1];
  else {
    const a = axis < 0 ? axis + shape.length : axis;
    [outer, length, inner] = [sizeOf(shape.slice(0, a)), shape[a], sizeOf(shape.slice(a + 1))];
  }
  const out = new Float64Array(outer * inner);
  const magnitude = new Float64Array(outer * inner);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let s = 0;
      let m = 0;
      let best = -Infinity;
      for (let l = 0; l < length; l++) {
        const v = x[(o * length + l) * inner + i];
        s += v;
        m += Math.abs(v);
        best = Math.max(best, v);
      }
      out[o * inner + i] = op === "sum" ? s : op === "mean" ? s / length : best;
      magnitude[o * inner + i] = op === "mean" ? m / length : m;
    }
  }
  return { out, magnitude };
}

async function checkReduction(
  device: Device,
  shape: Shape,
  seed: number,
  ops_: ("sum" | "mean" | "max")[] = ["sum", "mean", "max"],
) {
  const values = randomValues(sizeOf(shape), seed);
  const x = device.tensor(values, shape);
  const axes: (number | undefined)[] = [undefined, ...shape.map((_, i) => i), -1];
  for (const op of ops_) {
    for (const axis of axes) {
      for (const keepDims of [false, true]) {
        const y = ops[op](x, axis, keepDims);
        const a = axis === undefined ? undefined : axis < 0 ? axis + shape.length : axis;
        const expectedShape = a === undefined
          ? (keepDims ? shape.map(() => 1) : [])
          : keepDims
          ? shape.map((d, i) => (i === a ? 1 : d))
          : shape.filter((_, i) => i !== a);
        const what = `${op} [${shape}] axis ${axis} keepDims ${keepDims}`;
        assert.deepEqual(y.shape, expectedShape, `${what}: shape`);
        const ref = reduceRef(op, values, shape, axis);
        const got = await readF32(y);
        if (op === "max") assertExact(got, Array.from(ref.out, Math.fround), what);
        else assertWithin(got, ref.out, (i) => 1e-6 * ref.magnitude[i] + 1e-6 * Math.abs(ref.out[i]) + 1e-30, what);
        y.dispose();
      }
    }
  }
  x.dispose();
}

testBothBackends("sum, mean, max: every axis and all, keepDims", async (device) => {
  await checkReduction(device, [1], 900);
  await checkReduction(device, [7], 901);
  await checkReduction(device, [7, 13, 5], 902);
  await checkReduction(device, [1, 33, 4], 903);
  await checkReduction(device, [2, 3, 129], 904);
  await checkReduction(device, [1031, 3], 905);
});

testBothBackends("sum, mean, max: more than 65,535 rows ([70001, 3])", async (device) => {
  await checkReduction(device, [70001, 3], 910);
  await checkReduction(device, [3, 70001], 911);
});

testBothBackends("sum, mean, max: rows longer than 262,144 elements", async (device) => {
  await checkReduction(device, [2, 300007], 912);
  await checkReduction(device, [1, 1048584], 913, ["sum", "max"]);
});

testBothBackends("max: all-negative rows and ±Infinity", async (device) => {
  const values = new Float32Array([-5, -3, -7, -Infinity, -1e30, -2, Infinity, 1, 0]);
  const x = device.tensor(values, [3, 3]);
  const y = ops.max(x, 1);
  assertExact(await readF32(y), [-3, -2, Infinity], "max rows");
  disposeAll(x, y);
});
