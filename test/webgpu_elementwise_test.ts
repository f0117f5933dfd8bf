// The WebGPU elementwise, cast and strided-copy kernels against the CPU reference: every unary op
// and activation derivative, binary ops on equal shapes, with a single-element operand on either
// side and with general broadcasting (including more than 8 dimensions), casts between every pair
// of dtypes over their special values, and strided copies (transposes, slices, broadcasts,
// reversals, more than 8 dimensions) that must leave the rest of dst alone. Sizes are awkward
// (1, primes, non-multiples of 4). Every kernel also runs on a context that folds its dispatches
// over x and y past 23 workgroups, and a cast runs over more than 65,535 real workgroups (the other
// kernels cover 1,024 or more elements per workgroup, too many to fit 65,536 workgroups in a
// 128 MiB binding).

import assert from "node:assert/strict";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import type { ActivationOp, BinaryOp, Storage, StridedCopy, UnaryOp } from "../src/backend/backend.ts";
import { type DType, DTYPES, f16BitsToF32, type RawArray } from "../src/tensor/dtype.ts";
import { GpuContext, type GpuStorage } from "../src/backend/webgpu/gpu_context.ts";
import { activationGrad, binary, unary } from "../src/backend/webgpu/programs/elementwise.ts";
import { cast } from "../src/backend/webgpu/programs/cast.ts";
import { copyStrided } from "../src/backend/webgpu/programs/copy.ts";
import { assertClose } from "./assertions.ts";
import { gpuTest, randomValues, readGpu } from "./helpers.ts";

const cpu = new CpuBackend();

async function readCpu(storage: Storage, n: number): Promise<Float32Array> {
  return (await cpu.read(storage, n, "f32")) as Float32Array;
}

function numel(shape: readonly number[]): number {
  return shape.reduce((product, size) => product * size, 1);
}

const SIZES = [1, 2, 3, 4, 5, 7, 8, 13, 64, 1000, 1001, 4099, 65537];
const UNARY_OPS: UnaryOp[] = ["neg", "exp", "log", "sqrt", "relu", "silu", "gelu", "scale"];
const ACTIVATIONS: ActivationOp[] = ["relu", "silu", "gelu"];
const BINARY_OPS: BinaryOp[] = ["add", "sub", "mul", "div", "eq"];

/** Normal values with exact zeros, duplicates and a few large magnitudes mixed in. */
function testValues(n: number, seed: number): Float32Array {
  const values = randomValues(n, seed, 3);
  for (let i = 0; i < n; i += 7) values[i] = 0;
  for (let i = 3; i < n; i += 11) values[i] = Math.round(values[i]);
  for (let i = 5; i < n; i += 13) values[i] *= 10;
  return values;
}

gpuTest("unary ops match the CPU on every size, vec4 and scalar", async (ctx) => {
  for (const n of SIZES) {
    const values = testValues(n, n);
    const x = ctx.upload(values);
    const xCpu = cpu.upload(values, "f32");
    for (const op of UNARY_OPS) {
      const y = unary(ctx, op, x, n, -1.75);
      const expected = await readCpu(cpu.unary(op, xCpu, n, -1.75), n);
      // exp, silu and gelu lose a few ulps to the GPU's exp (WGSL allows 3 + 2·|x| ulps).
      assertClose(await readGpu(ctx, y, n), expected, 1e-5, 1e-6, `${op} n=${n}`);
      ctx.release(y);
    }
    ctx.release(x);
  }
});

gpuTest("unary ops keep IEEE special values", async (ctx) => {
  const values = new Float32Array([0, -0, -1, 1, Infinity, -Infinity, NaN, 40, -40, 100, -100]);
  const x = ctx.upload(values);
  for (const op of UNARY_OPS) {
    const y = unary(ctx, op, x, values.length, 2);
    const expected = await readCpu(cpu.unary(op, cpu.upload(values, "f32"), values.length, 2), values.length);
    assertClose(await readGpu(ctx, y, values.length), expected, 1e-5, 1e-30, `${op} of special values`);
    ctx.release(y);
  }
  ctx.release(x);
});

gpuTest("activation derivatives match the CPU", async (ctx) => {
  for (const n of SIZES) {
    const xValues = testValues(n, 2 * n);
    const dyValues = randomValues(n, 2 * n + 1);
    const x = ctx.upload(xValues);
    const dy = ctx.upload(dyValues);
    for (const op of ACTIVATIONS) {
      const dx = activationGrad(ctx, op, x, dy, n);
      const expected = await readCpu(cpu.activationGrad(op, cpu.upload(xValues, "f32"), cpu.upload(dyValues, "f32"), n), n);
      assertClose(await readGpu(ctx, dx, n), expected, 1e-5, 1e-6, `${op}' n=${n}`);
      ctx.release(dx);
    }
    ctx.release(x);
    ctx.release(dy);
  }
});

/** Runs op on both backends for the shapes and compares; values share elements so eq sees matches. */
async function checkBinary(ctx: GpuContext, aShape: number[], bShape: number[], outShape: number[]): Promise<void> {
  const aValues = testValues(numel(aShape), numel(aShape) + 3);
  const bValues = testValues(numel(bShape), numel(bShape) + 5);
  for (let i = 0; i < Math.min(aValues.length, bValues.length); i += 3) bValues[i] = aValues[i];
  const a = ctx.upload(aValues);
  const b = ctx.upload(bValues);
  const n = numel(outShape);
  for (const op of BINARY_OPS) {
    const out = binary(ctx, op, a, aShape, b, bShape, outShape);
    const expected = await readCpu(
      cpu.binary(op, cpu.upload(aValues, "f32"), aShape, cpu.upload(bValues, "f32"), bShape, outShape),
      n,
    );
    assertClose(await readGpu(ctx, out, n), expected, 1e-6, 0, `${op} [${aShape}] with [${bShape}]`);
    ctx.release(out);
  }
  ctx.release(a);
  ctx.release(b);
}

gpuTest("binary ops on equal shapes and with a single element on either side", async (ctx) => {
  for (const n of SIZES) {
    await checkBinary(ctx, [n], [n], [n]);
    await checkBinary(ctx, [n], [1], [n]);
    await checkBinary(ctx, [1], [n], [n]);
  }
  await checkBinary(ctx, [3, 5], [], [3, 5]);
  await checkBinary(ctx, [1, 1], [2, 4], [2, 4]);
});

gpuTest("binary ops broadcast in any dimension, including more than 8", async (ctx) => {
  const cases: [number[], number[], number[]][] = [
    [[7, 5], [5], [7, 5]],
    [[7, 5], [7, 1], [7, 5]],
    [[4, 1, 3], [1, 5, 1], [4, 5, 3]],
    [[2, 3, 4, 5], [3, 1, 5], [2, 3, 4, 5]],
    [[1, 13], [11, 1], [11, 13]],
    [[6, 1, 1, 2], [6, 1], [6, 1, 6, 2]],
    [[2, 1, 2, 1, 2, 1, 2, 1, 2, 1], [1, 3, 1, 3, 1, 3, 1, 3, 1, 3], [2, 3, 2, 3, 2, 3, 2, 3, 2, 3]],
    // Last dimensions that are multiples of 4 (vec4 units): both operands contiguous along it, or
    // one of them broadcast along it (one element splatted).
    [[5, 8], [8], [5, 8]],
    [[5, 8], [5, 1], [5, 8]],
    [[1, 12], [7, 1], [7, 12]],
    [[2, 4, 1], [8], [2, 4, 8]],
    [[3, 1, 4], [1, 5, 4], [3, 5, 4]],
    [[2, 1, 2, 1, 2, 1, 2, 1, 2, 4], [1, 3, 1, 3, 1, 3, 1, 3, 1, 4], [2, 3, 2, 3, 2, 3, 2, 3, 2, 4]],
  ];
  for (const [aShape, bShape, outShape] of cases) await checkBinary(ctx, aShape, bShape, outShape);
});

gpuTest("empty elementwise ops dispatch nothing", async (ctx) => {
  const x = ctx.upload(new Float32Array(4));
  for (
    const out of [unary(ctx, "exp", x, 0), activationGrad(ctx, "gelu", x, x, 0), binary(ctx, "add", x, [0, 3], x, [3], [0, 3])]
  ) {
    assert.equal((await ctx.read(out, 0)).byteLength, 0);
    ctx.release(out);
  }
  ctx.release(x);
});

// ---- cast ----

/** Source values for each dtype, as its raw host array: the type's special values plus random ones. */
function castSource(dtype: DType): RawArray {
  switch (dtype) {
    case "f32":
      return new Float32Array([
        0,
        -0,
        0.5,
        1.5,
        2.5,
        -0.5,
        -1.5,
        -2.5,
        0.49999997,
        126.5,
        127.5,
        128.5,
        254.5,
        255.5,
        256,
        -127.5,
        -128.5,
        -129,
        1e10,
        -1e10,
        2147483520,
        2147483648,
        -2147483648,
        -2147483904,
        NaN,
        Infinity,
        -Infinity,
        65504,
        65519.99,
        65520,
        -65520,
        1e-8,
        2.98e-8,
        5.96e-8,
        3e-5,
        6.1e-5,
        1 / 3,
        1e-40,
        16777217,
        ...randomValues(1000, 11, 300),
      ]);
    case "f16":
      return Uint16Array.from({ length: 65536 }, (_, i) => i);
    case "i32":
      return new Int32Array([
        0,
        1,
        -1,
        127,
        128,
        -128,
        -129,
        255,
        256,
        2047,
        2049,
        65504,
        65519,
        65520,
        16777216,
        16777217,
        -16777217,
        2147483647,
        -2147483648,
        2147483584,
        ...Array.from(randomValues(1000, 12, 1e6), Math.round),
      ]);
    case "u8":
      return Uint8Array.from({ length: 256 }, (_, i) => i);
    case "i8":
      return Int8Array.from({ length: 256 }, (_, i) => i - 128);
  }
}

/** Element i as comparable text: NaNs of a float dtype all read the same, everything else exactly. */
function castElement(dtype: DType, values: RawArray, i: number): string {
  if (dtype === "f32") return Number.isNaN(values[i]) ? "NaN" : Object.is(values[i], -0) ? "-0" : String(values[i]);
  if (dtype === "f16") return Number.isNaN(f16BitsToF32(values[i])) ? "NaN" : `0x${values[i].toString(16)}`;
  return String(values[i]);
}

gpuTest("cast between every pair of dtypes matches the CPU exactly", async (ctx) => {
  for (const from of DTYPES) {
    const values = castSource(from);
    // Odd lengths leave a partly used last word in the packed dtypes.
    for (const n of [values.length, values.length - 1, values.length - 3, 1]) {
      const x = ctx.upload(values);
      for (const to of DTYPES) {
        const out = cast(ctx, x, n, from, to);
        const expected = await cpu.read(cpu.cast(cpu.upload(values, from), n, from, to), n, to);
        const bytes = new Uint8Array(await ctx.read(out, n * expected.BYTES_PER_ELEMENT));
        const actual = new (expected.constructor as new (buffer: ArrayBuffer) => RawArray)(bytes.buffer);
        for (let i = 0; i < n; i++) {
          const got = castElement(to, actual, i);
          const want = castElement(to, expected, i);
          if (got !== want) {
            assert.fail(
              `cast ${from} → ${to}, n=${n}: element ${i} (${castElement(from, values, i)}) gave ${got}, expected ${want}`,
            );
          }
        }
        ctx.release(out);
      }
      ctx.release(x);
    }
  }
});

gpuTest("cast of nothing gives an empty storage", async (ctx) => {
  const x = ctx.upload(new Float32Array(1));
  const out = cast(ctx, x, 0, "f32", "u8");
  assert.equal((await ctx.read(out, 0)).byteLength, 0);
  ctx.release(out);
  ctx.release(x);
});

// ---- strided copy ----

function rowMajorStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let stride = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    strides[d] = stride;
    stride *= shape[d];
  }
  return strides;
}

/** A copy of src viewed with `shape` and the permutation `axes`, into a dense dst. */
function transposeCopy(shape: number[], axes: number[], dstOffset = 0): StridedCopy {
  const srcStrides = rowMajorStrides(shape);
  const outShape = axes.map((a) => shape[a]);
  return {
    shape: outShape,
    srcOffset: 0,
    srcStrides: axes.map((a) => srcStrides[a]),
    dstOffset,
    dstStrides: rowMajorStrides(outShape),
  };
}

async function checkCopy(
  ctx: GpuContext,
  copy: StridedCopy,
  srcSize: number,
  dstSize: number,
  dtype: "f32" | "i32",
): Promise<void> {
  const srcValues = dtype === "f32"
    ? randomValues(srcSize, srcSize)
    : Int32Array.from({ length: srcSize }, (_, i) => (i * 2654435761) | 0);
  const dstValues = dtype === "f32" ? randomValues(dstSize, dstSize + 1) : new Int32Array(dstSize).fill(-7);
  const src = ctx.upload(srcValues);
  const dst = ctx.upload(dstValues);
  copyStrided(ctx, src, dst, copy);
  const dstCpu = cpu.upload(dstValues, dtype);
  cpu.copyStrided(cpu.upload(srcValues, dtype), dstCpu, copy, dtype);
  const expected = new Uint32Array((await cpu.read(dstCpu, dstSize, dtype)).buffer);
  const actual = new Uint32Array(await ctx.read(dst, dstSize * 4));
  for (let i = 0; i < dstSize; i++) {
    if (actual[i] !== expected[i]) {
      assert.fail(`copy [${copy.shape}] ${dtype}: dst word ${i} is ${actual[i]}, expected ${expected[i]}`);
    }
  }
  ctx.release(src);
  ctx.release(dst);
}

gpuTest("strided copies write exactly the elements they name", async (ctx) => {
  for (const dtype of ["f32", "i32"] as const) {
    await checkCopy(ctx, transposeCopy([7, 5], [1, 0]), 35, 35, dtype);
    await checkCopy(ctx, transposeCopy([2, 3, 4, 5], [0, 2, 1, 3]), 120, 120, dtype);
    await checkCopy(ctx, transposeCopy([3, 1, 13], [2, 0, 1]), 39, 39, dtype);
    await checkCopy(ctx, transposeCopy([17], [0], 4), 17, 25, dtype);
    // A slice [1:4, 2:5] of a [6, 7] source into the middle of a larger dst.
    await checkCopy(ctx, { shape: [3, 3], srcOffset: 9, srcStrides: [7, 1], dstOffset: 5, dstStrides: [4, 1] }, 42, 20, dtype);
    // broadcastTo [5] → [3, 5] (source stride 0) and a reversal (negative stride).
    await checkCopy(ctx, { shape: [3, 5], srcOffset: 0, srcStrides: [0, 1], dstOffset: 0, dstStrides: [5, 1] }, 5, 15, dtype);
    await checkCopy(ctx, { shape: [11], srcOffset: 10, srcStrides: [-1], dstOffset: 0, dstStrides: [1] }, 11, 11, dtype);
    // Concatenation along axis 1: a [4, 3] block into columns 2..4 of a [4, 6] dst.
    await checkCopy(ctx, { shape: [4, 3], srcOffset: 0, srcStrides: [3, 1], dstOffset: 2, dstStrides: [6, 1] }, 12, 24, dtype);
    await checkCopy(ctx, { shape: [1], srcOffset: 3, srcStrides: [1], dstOffset: 2, dstStrides: [1] }, 4, 4, dtype);
    // Rows of the last dimension that are contiguous and 4-aligned on both sides move as vec4s.
    await checkCopy(ctx, transposeCopy([2, 3, 4, 8], [0, 2, 1, 3]), 192, 192, dtype);
    await checkCopy(ctx, { shape: [3, 8], srcOffset: 4, srcStrides: [16, 1], dstOffset: 8, dstStrides: [8, 1] }, 48, 36, dtype);
    await checkCopy(ctx, { shape: [4, 4], srcOffset: 0, srcStrides: [4, 1], dstOffset: 4, dstStrides: [12, 1] }, 16, 48, dtype);
    await checkCopy(ctx, { shape: [3, 8], srcOffset: 2, srcStrides: [16, 1], dstOffset: 0, dstStrides: [8, 1] }, 48, 24, dtype);
    await checkCopy(ctx, { shape: [0, 3], srcOffset: 0, srcStrides: [3, 1], dstOffset: 0, dstStrides: [3, 1] }, 3, 3, dtype);
  }
  // Ten dimensions that cannot be merged: the copy runs as several dispatches of 8 dimensions.
  const shape = [2, 3, 2, 3, 2, 3, 2, 3, 2, 3];
  await checkCopy(ctx, transposeCopy(shape, [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]), numel(shape), numel(shape), "f32");
  const vec4Shape = [2, 3, 2, 3, 2, 3, 2, 3, 2, 4];
  await checkCopy(ctx, transposeCopy(vec4Shape, [8, 7, 6, 5, 4, 3, 2, 1, 0, 9]), numel(vec4Shape), numel(vec4Shape), "i32");
});

gpuTest("a cast over more than 65,535 workgroups covers every element", async (ctx) => {
  // One output word per invocation: 65,537 workgroups of 256, folded over x and y by the context.
  const n = 65_537 * 256;
  const values = randomValues(n, 1, 1000);
  const x = ctx.upload(values);
  const ints = cast(ctx, x, n, "f32", "i32");
  assert.deepEqual(
    new Int32Array(await ctx.read(ints, n * 4)),
    await cpu.read(cpu.cast(cpu.upload(values, "f32"), n, "f32", "i32"), n, "i32"),
  );
  ctx.release(ints);
  ctx.release(x);
});

gpuTest("dispatches folded over x and y skip the workgroups past the end", async (ctx) => {
  // A context that folds past 23 workgroups per dimension, so small sizes take the 2-D path and the
  // last row of workgroups is partly past the end.
  const folded = Object.assign(new GpuContext(ctx.device), { maxWorkgroupsPerDimension: 23 });
  for (const n of [123_456, 123_457]) {
    const xValues = testValues(n, 5);
    const yValues = testValues(n, 6);
    const x = folded.upload(xValues);
    const y = folded.upload(yValues);
    const xCpu = cpu.upload(xValues, "f32");
    const yCpu = cpu.upload(yValues, "f32");
    // The broadcast reads the first rows · 643 elements of x as [rows, 643] (643 is prime).
    const rows = Math.floor(n / 643);
    const results: [string, GpuStorage, Storage, number][] = [
      ["gelu", unary(folded, "gelu", x, n), cpu.unary("gelu", xCpu, n), n],
      ["silu'", activationGrad(folded, "silu", x, y, n), cpu.activationGrad("silu", xCpu, yCpu, n), n],
      ["sub", binary(folded, "sub", x, [n], y, [n], [n]), cpu.binary("sub", xCpu, [n], yCpu, [n], [n]), n],
      ["div by one element", binary(folded, "div", x, [n], y, [1], [n]), cpu.binary("div", xCpu, [n], yCpu, [1], [n]), n],
      [
        "broadcast mul",
        binary(folded, "mul", x, [rows, 643], y, [643], [rows, 643]),
        cpu.binary("mul", xCpu, [rows, 643], yCpu, [643], [rows, 643]),
        rows * 643,
      ],
    ];
    for (const [name, actual, expected, count] of results) {
      assertClose(await readGpu(folded, actual, count), await readCpu(expected, count), 1e-5, 1e-6, `${name} n=${n}, folded`);
      folded.release(actual);
    }
    const bytes = cast(folded, x, n, "f32", "i8");
    assert.deepEqual(new Int8Array(await folded.read(bytes, n)), await cpu.read(cpu.cast(xCpu, n, "f32", "i8"), n, "i8"));
    folded.release(bytes);
    const copy: StridedCopy = { shape: [n], srcOffset: n - 1, srcStrides: [-1], dstOffset: 0, dstStrides: [1] };
    const reversed = folded.allocate(n * 4, true);
    copyStrided(folded, x, reversed, copy);
    assert.deepEqual(await readGpu(folded, reversed, n), xValues.slice().reverse());
    folded.release(reversed);
    if (n % 4 === 0) {
      // A transpose that keeps rows of 4 contiguous elements: the vec4 copy.
      const rowsCopy = transposeCopy([n / 192, 48, 4], [1, 0, 2]);
      const transposed = folded.allocate(n * 4, true);
      copyStrided(folded, x, transposed, rowsCopy);
      const expected = cpu.alloc(n, "f32");
      cpu.copyStrided(xCpu, expected, rowsCopy, "f32");
      assert.deepEqual(await readGpu(folded, transposed, n), await readCpu(expected, n));
      folded.release(transposed);
    }
    folded.release(x);
    folded.release(y);
  }
});
