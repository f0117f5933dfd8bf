// The WebGPU reductions (sum, mean, max over the middle axis of [outer, length, inner]) against the
// CPU reference: rows reduced by a workgroup (inner == 1, lengths 0, 1, primes, multiples of 4 and
// a million), columns reduced by one invocation each (inner > 1, with and without vec4), empty axes,
// NaN and infinities, and more than 65,535 rows.

import assert from "node:assert/strict";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import type { ReduceOp } from "../src/backend/backend.ts";
import { GpuContext } from "../src/backend/webgpu/gpu_context.ts";
import { reduce, type ReduceLayout } from "../src/backend/webgpu/programs/reduce.ts";
import { assertClose } from "./assertions.ts";
import { gpuTest, randomValues, readGpu } from "./helpers.ts";

const cpu = new CpuBackend();
const OPS: ReduceOp[] = ["sum", "mean", "max"];

/**
 * Reduces values on both backends with every op and compares, in the layout the program picks and,
 * for rows (inner == 1), in both layouts; f32 sums round by about √length ulps.
 */
async function checkReduce(ctx: GpuContext, values: Float32Array, outer: number, length: number, inner: number): Promise<void> {
  assert.equal(values.length, outer * length * inner);
  const x = ctx.upload(values);
  const xCpu = cpu.upload(values, "f32");
  const n = outer * inner;
  const layouts: (ReduceLayout | undefined)[] = inner === 1 ? [undefined, "rows", "columns"] : [undefined];
  for (const op of OPS) {
    const expected = (await cpu.read(cpu.reduce(op, xCpu, outer, length, inner), n, "f32")) as Float32Array;
    for (const layout of layouts) {
      const out = reduce(ctx, op, x, outer, length, inner, layout);
      const actual = await readGpu(ctx, out, n);
      const atol = op === "max" ? 0 : 2e-6 * Math.sqrt(length);
      const what = `${op} over [${outer}, ${length}, ${inner}] (${layout ?? "auto"})`;
      assertClose(actual, expected, 1e-5, atol, what);
      assert.deepEqual(Array.from(actual, Number.isNaN), Array.from(expected, Number.isNaN), `${what}: NaN positions`);
      ctx.release(out);
    }
  }
  ctx.release(x);
}

gpuTest("rows (inner == 1) reduce to the CPU's values for any length", async (ctx) => {
  const shapes: [number, number][] = [[1, 1], [3, 1], [1, 7], [5, 4], [4, 13], [2, 255], [3, 256], [2, 257], [7, 1000], [
    3,
    1003,
  ]];
  for (const [outer, length] of shapes) await checkReduce(ctx, randomValues(outer * length, outer + length, 5), outer, length, 1);
});

gpuTest("long axes are reduced in pieces, then the pieces", async (ctx) => {
  const length = 1_000_000;
  const values = randomValues(length + 8, 3);
  for (let i = 0; i < values.length; i += 1000) values[i] += 0.5;
  // Rows: one piece of vec4s, then more than one piece (1,048,581 scalars, 2,097,160 / 4 vec4s).
  await checkReduce(ctx, values.subarray(0, length), 1, length, 1);
  await checkReduce(ctx, randomValues(1_048_581, 4), 1, 1_048_581, 1);
  await checkReduce(ctx, randomValues(2 * 1_048_580, 5), 2, 1_048_580, 1);
  // Columns: 4,096 elements per piece.
  await checkReduce(ctx, values, 2, 125_001, 4);
  await checkReduce(ctx, values.subarray(0, 3 * 9001), 1, 9001, 3);
});

gpuTest("columns (inner > 1) reduce to the CPU's values, with and without vec4", async (ctx) => {
  const shapes: [number, number, number][] = [
    [1, 1, 2],
    [1, 7, 3],
    [3, 5, 4],
    [2, 9, 7],
    [7, 1, 5],
    [1, 100, 300],
    [4, 33, 8],
    [5, 17, 1001],
    [1, 2000, 13],
  ];
  for (const [outer, length, inner] of shapes) {
    await checkReduce(ctx, randomValues(outer * length * inner, outer * 7 + length * 3 + inner, 5), outer, length, inner);
  }
});

gpuTest("an empty axis gives 0 for sum, NaN for mean and −Infinity for max", async (ctx) => {
  const x = ctx.upload(new Float32Array(4));
  for (const [outer, inner] of [[3, 1], [2, 5], [1, 8]]) {
    for (const op of OPS) {
      for (const layout of inner === 1 ? ["rows", "columns"] as const : ["columns"] as const) {
        const out = reduce(ctx, op, x, outer, 0, inner, layout);
        const expected = op === "sum" ? 0 : op === "mean" ? NaN : -Infinity;
        assert.deepEqual(Array.from(await readGpu(ctx, out, outer * inner)), new Array(outer * inner).fill(expected));
        ctx.release(out);
      }
    }
  }
  const nothing = reduce(ctx, "sum", x, 0, 5, 1);
  assert.equal((await ctx.read(nothing, 0)).byteLength, 0);
  ctx.release(nothing);
  ctx.release(x);
});

gpuTest("NaN propagates through max, infinities through every op", async (ctx) => {
  const rows = [
    [1, NaN, 3, 2, 5],
    [-Infinity, -Infinity, -Infinity, -Infinity, -Infinity],
    [1, Infinity, 3, -2, 0],
    [4, 3, 2, 1, NaN],
    [NaN, -1, -2, -3, -4],
  ];
  const values = new Float32Array(rows.flat());
  await checkReduce(ctx, values, 5, 5, 1);
  await checkReduce(ctx, values, 1, 5, 5);
});

gpuTest("more than 65,535 rows", async (ctx) => {
  const outer = 70_001;
  await checkReduce(ctx, randomValues(outer * 3, 9), outer, 3, 1);
  await checkReduce(ctx, randomValues(outer * 8, 10), outer, 8, 1);
});

gpuTest("dispatches folded over x and y skip the workgroups past the end", async (ctx) => {
  // A context that folds past 23 workgroups per dimension: 300 rows take 23 × 14 workgroups.
  const folded = Object.assign(new GpuContext(ctx.device), { maxWorkgroupsPerDimension: 23 });
  await checkReduce(folded, randomValues(300 * 70, 11), 300, 70, 1);
  await checkReduce(folded, randomValues(301 * 5 * 97, 12), 301, 5, 97);
});
