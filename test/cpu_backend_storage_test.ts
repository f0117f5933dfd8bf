// Smoke tests of the CPU reference backend's storage: allocation, upload, read, stats, release and
// destroy; casts between dtypes (rounding, saturation, f16 round trips); and strided copies, each
// against values worked out by hand.

import assert from "node:assert/strict";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { f16BitsToF32, f32ToF16Bits } from "../src/tensor/dtype.ts";
import { DisposedError } from "../src/tensor/errors.ts";

Deno.test("cpu memory: alloc, upload, read, stats, release and destroy", async () => {
  const backend = new CpuBackend();
  const zeros = backend.alloc(5, "f32");
  const ints = backend.upload(new Int32Array([1, -2, 3]), "i32");
  const halves = backend.upload(new Uint16Array([0x3c00, 0xc000]), "f16");
  assert.deepEqual(await backend.read(zeros, 5, "f32"), new Float32Array(5));
  assert.deepEqual(await backend.read(ints, 2, "i32"), new Int32Array([1, -2]));
  assert.deepEqual(await backend.read(halves, 2, "f16"), new Uint16Array([0x3c00, 0xc000]));
  assert.deepEqual(backend.stats(), { buffers: 3, bytes: 20 + 12 + 4, pooledBytes: 0, pipelines: 0 });
  backend.release(ints);
  assert.deepEqual(backend.stats(), { buffers: 2, bytes: 24, pooledBytes: 0, pipelines: 0 });
  assert.throws(() => backend.release(ints), DisposedError);
  assert.throws(() => backend.unary("neg", ints, 3), DisposedError);
  backend.destroy();
  assert.deepEqual(backend.stats(), { buffers: 0, bytes: 0, pooledBytes: 0, pipelines: 0 });
  assert.throws(() => backend.alloc(1, "f32"), DisposedError);
  assert.equal(backend.info.limits.maxBufferSize, 2 ** 31 - 1);
});

Deno.test("cpu cast: rounding, saturation and f16 round trips", async () => {
  const backend = new CpuBackend();
  const floats = new Float32Array([
    0.5,
    1.5,
    2.5,
    -0.5,
    -1.5,
    -2.5,
    2.4,
    -2.6,
    3e9,
    -3e9,
    NaN,
    Infinity,
    254.5,
    300,
    -3,
    127.5,
    -128.5,
  ]);
  const source = backend.upload(floats, "f32");
  const castTo = (to: "i32" | "u8" | "i8") => backend.read(backend.cast(source, floats.length, "f32", to), floats.length, to);
  const [maxI32, minI32] = [2147483647, -2147483648];
  const expectedI32 = [0, 2, 2, 0, -2, -2, 2, -3, maxI32, minI32, 0, maxI32, 254, 300, -3, 128, -128];
  assert.deepEqual(Array.from(await castTo("i32")), expectedI32);
  assert.deepEqual(Array.from(await castTo("u8")), [0, 2, 2, 0, 0, 0, 2, 0, 255, 0, 0, 255, 254, 255, 0, 128, 0]);
  assert.deepEqual(Array.from(await castTo("i8")), [0, 2, 2, 0, -2, -2, 2, -3, 127, -128, 0, 127, 127, 127, -3, 127, -128]);

  const exact = new Float32Array([1, -2.25, 0.5, 65504, 6.103515625e-5, 5.960464477539063e-8, 0, 1000.5]);
  const half = backend.cast(backend.upload(exact, "f32"), exact.length, "f32", "f16");
  assert.deepEqual(await backend.read(half, exact.length, "f16"), Uint16Array.from(exact, f32ToF16Bits));
  assert.deepEqual(await backend.read(backend.cast(half, exact.length, "f16", "f32"), exact.length, "f32"), exact);
  const overflow = backend.cast(backend.upload(new Float32Array([1e5, -1e5, 1 + 2 ** -12]), "f32"), 3, "f32", "f16");
  assert.deepEqual(Array.from(await backend.read(overflow, 3, "f16"), f16BitsToF32), [Infinity, -Infinity, 1]);

  const ints = backend.upload(new Int32Array([-129, -1, 0, 77, 256, 70000]), "i32");
  assert.deepEqual(Array.from(await backend.read(backend.cast(ints, 6, "i32", "u8"), 6, "u8")), [0, 0, 0, 77, 255, 255]);
  assert.deepEqual(Array.from(await backend.read(backend.cast(ints, 6, "i32", "f32"), 6, "f32")), [-129, -1, 0, 77, 256, 70000]);
  const halfInts = await backend.read(backend.cast(ints, 6, "i32", "f16"), 6, "f16");
  assert.deepEqual(Array.from(halfInts, f16BitsToF32), [-129, -1, 0, 77, 256, Infinity]);
  const bytes = backend.upload(new Int8Array([-128, 5, 127]), "i8");
  assert.deepEqual(Array.from(await backend.read(backend.cast(bytes, 3, "i8", "u8"), 3, "u8")), [0, 5, 127]);
});

Deno.test("cpu copyStrided: transpose and offset slice", async () => {
  const backend = new CpuBackend();
  const src = Float32Array.from({ length: 15 }, (_, i) => i);
  const source = backend.upload(src, "f32");
  const transposed = backend.alloc(15, "f32");
  const transpose = { shape: [5, 3], srcOffset: 0, srcStrides: [1, 5], dstOffset: 0, dstStrides: [3, 1] };
  backend.copyStrided(source, transposed, transpose, "f32");
  const expected = Array.from({ length: 15 }, (_, i) => src[(i % 3) * 5 + Math.floor(i / 3)]);
  assert.deepEqual(Array.from(await backend.read(transposed, 15, "f32")), expected);

  const ids = backend.upload(Int32Array.from({ length: 15 }, (_, i) => i * 10), "i32");
  const slice = backend.alloc(8, "i32");
  // Columns 1..2 of the [3, 5] rows 1..2, written at offset 2 with row stride 3.
  backend.copyStrided(ids, slice, { shape: [2, 2], srcOffset: 6, srcStrides: [5, 1], dstOffset: 2, dstStrides: [3, 1] }, "i32");
  assert.deepEqual(Array.from(await backend.read(slice, 8, "i32")), [0, 0, 60, 70, 0, 110, 120, 0]);
});
