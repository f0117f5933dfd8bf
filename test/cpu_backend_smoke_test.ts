// Smoke tests of the CPU reference backend: every kernel against an independent naive
// computation written here (plain loops in f64), and every backward kernel against central finite
// differences of its forward.

import assert from "node:assert/strict";
import { CpuBackend, CpuStorage } from "../src/backend/cpu/cpu_backend.ts";
import type { AttentionParams, BinaryOp, MatmulParams, Storage } from "../src/backend/backend.ts";
import { f16BitsToF32, f32ToF16Bits } from "../src/tensor/dtype.ts";
import { DisposedError } from "../src/tensor/errors.ts";

// ---- helpers ----

/** Deterministic uniform values in [-1, 1) (mulberry32). */
function random(n: number, seed: number): Float32Array {
  let state = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

function values(storage: Storage): Float32Array {
  return (storage as CpuStorage).data as Float32Array;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string, rtol = 1e-5, atol = 1e-6): void {
  assert.equal(actual.length, expected.length, `${label}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (Number.isNaN(e) && Number.isNaN(a)) continue;
    if (a === e) continue;
    assert.ok(Math.abs(a - e) <= atol + rtol * Math.abs(e), `${label}[${i}]: got ${a}, expected ${e}`);
  }
}

/** Σ output·cotangent in f64: the scalar whose gradient a backward kernel computes. */
function dotProduct(output: Float32Array, cotangent: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < output.length; i++) sum += output[i] * cotangent[i];
  return sum;
}

/** Central differences of loss with respect to every element of x (perturbed in place). */
function numericGradient(x: Float32Array, loss: () => number, eps = 1e-2): Float64Array {
  const grad = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const saved = x[i];
    x[i] = saved + eps;
    const plus = loss();
    x[i] = saved - eps;
    const minus = loss();
    x[i] = saved;
    grad[i] = (plus - minus) / (2 * eps);
  }
  return grad;
}

function assertGradient(analytic: Float32Array, x: Float32Array, loss: () => number, label: string): void {
  assertClose(analytic, numericGradient(x, loss), label, 1e-2, 2e-3);
}

// ---- memory ----

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

// ---- elementwise ----

/** erf by its Taylor series, accurate in f64 for |x| ≤ 3. */
function erfSeries(x: number): number {
  let term = x;
  let sum = x;
  for (let n = 1; n < 80; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

const geluReference = (x: number) => 0.5 * x * (1 + erfSeries(x / Math.SQRT2));
const siluReference = (x: number) => x / (1 + Math.exp(-x));

Deno.test("cpu unary and activationGrad", () => {
  const backend = new CpuBackend();
  const x = random(41, 1).map((v) => v * 4);
  const positive = x.map(Math.abs);
  const sx = backend.upload(x, "f32");
  const sp = backend.upload(positive, "f32");
  const cases: [Parameters<CpuBackend["unary"]>[0], Storage, Float32Array, (v: number) => number][] = [
    ["neg", sx, x, (v) => -v],
    ["exp", sx, x, Math.exp],
    ["log", sp, positive, Math.log],
    ["sqrt", sp, positive, Math.sqrt],
    ["relu", sx, x, (v) => Math.max(v, 0)],
    ["silu", sx, x, siluReference],
    ["gelu", sx, x, geluReference],
  ];
  for (const [op, storage, input, reference] of cases) {
    assertClose(values(backend.unary(op, storage, input.length)), input.map(reference), op, 1e-6, 1e-7);
  }
  assertClose(values(backend.unary("scale", sx, x.length, -2.5)), x.map((v) => -2.5 * v), "scale");
  // Tail accuracy: gelu(-5) is about -1.4e-6 and must stay accurate relative to itself.
  const tail = values(backend.unary("gelu", backend.upload(new Float32Array([-5, -3]), "f32"), 2));
  assertClose(tail, [-1.4332578597e-6, -0.0040496940948], "gelu tail", 1e-5, 0);

  const dy = random(41, 2);
  const sdy = backend.upload(dy, "f32");
  const derivative = (f: (v: number) => number) => (v: number) => (f(v + 1e-5) - f(v - 1e-5)) / 2e-5;
  const grads: [Parameters<CpuBackend["activationGrad"]>[0], (v: number) => number][] = [
    ["relu", (v) => (v > 0 ? 1 : 0)],
    ["silu", derivative(siluReference)],
    ["gelu", derivative(geluReference)],
  ];
  for (const [op, reference] of grads) {
    const expected = Array.from(x, (v, i) => reference(v) * dy[i]);
    assertClose(values(backend.activationGrad(op, sx, sdy, x.length)), expected, `${op}'`, 1e-5, 1e-6);
  }
});

/** Naive broadcasting: decompose each output index and map it into a and b. */
function binaryReference(
  op: BinaryOp, a: Float32Array, aShape: number[], b: Float32Array, bShape: number[], outShape: number[],
): number[] {
  const total = outShape.reduce((p, d) => p * d, 1);
  const index = (flat: number, shape: number[]) => {
    let offset = 0;
    let stride = 1;
    let rest = flat;
    for (let d = outShape.length - 1; d >= 0; d--) {
      const i = rest % outShape[d];
      rest = Math.floor(rest / outShape[d]);
      const k = d - (outShape.length - shape.length);
      if (k >= 0) {
        if (shape[k] !== 1) offset += i * stride;
        stride *= shape[k];
      }
    }
    return offset;
  };
  const apply = {
    add: (x: number, y: number) => x + y,
    sub: (x: number, y: number) => x - y,
    mul: (x: number, y: number) => x * y,
    div: (x: number, y: number) => x / y,
    eq: (x: number, y: number) => (x === y ? 1 : 0),
  }[op];
  return Array.from({ length: total }, (_, i) => Math.fround(apply(a[index(i, aShape)], b[index(i, bShape)])));
}

Deno.test("cpu binary with broadcasting", () => {
  const backend = new CpuBackend();
  const cases: [number[], number[], number[]][] = [
    [[2, 3, 4], [2, 3, 4], [2, 3, 4]],
    [[2, 3, 4], [], [2, 3, 4]],
    [[1], [2, 3, 4], [2, 3, 4]],
    [[2, 3, 4], [3, 1], [2, 3, 4]],
    [[2, 1, 4], [3, 1], [2, 3, 4]],
    [[5, 1, 1, 3], [1, 6, 2, 1], [5, 6, 2, 3]],
    [[0, 3], [3], [0, 3]],
  ];
  for (const [aShape, bShape, outShape] of cases) {
    const a = random(aShape.reduce((p, d) => p * d, 1), 3);
    const b = random(bShape.reduce((p, d) => p * d, 1), 4);
    // Make some elements equal so that eq sees both outcomes.
    for (let i = 0; i < Math.min(a.length, b.length); i += 2) b[i] = a[i];
    const sa = backend.upload(a, "f32");
    const sb = backend.upload(b, "f32");
    for (const op of ["add", "sub", "mul", "div", "eq"] as const) {
      const out = values(backend.binary(op, sa, aShape, sb, bShape, outShape));
      assert.deepEqual(Array.from(out), binaryReference(op, a, aShape, b, bShape, outShape), `${op} ${aShape} ${bShape}`);
    }
  }
});

Deno.test("cpu cast: rounding, saturation and f16 round trips", async () => {
  const backend = new CpuBackend();
  const floats = new Float32Array([
    0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, -2.6, 3e9, -3e9, NaN, Infinity, 254.5, 300, -3, 127.5, -128.5,
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

// ---- reductions ----

Deno.test("cpu reduce over each axis of [3, 5, 7]", () => {
  const backend = new CpuBackend();
  const shape = [3, 5, 7];
  const x = random(105, 5);
  const sx = backend.upload(x, "f32");
  for (let axis = 0; axis < 3; axis++) {
    const outer = shape.slice(0, axis).reduce((p, d) => p * d, 1);
    const length = shape[axis];
    const inner = shape.slice(axis + 1).reduce((p, d) => p * d, 1);
    for (const op of ["sum", "mean", "max"] as const) {
      const expected: number[] = [];
      for (let o = 0; o < outer; o++) {
        for (let i = 0; i < inner; i++) {
          const column = Array.from({ length }, (_, l) => x[(o * length + l) * inner + i]);
          const sum = column.reduce((p, v) => p + v, 0);
          expected.push(op === "max" ? Math.max(...column) : op === "mean" ? sum / length : sum);
        }
      }
      assertClose(values(backend.reduce(op, sx, outer, length, inner)), expected, `${op} axis ${axis}`);
    }
  }
  const empty = backend.alloc(0, "f32");
  assert.deepEqual(Array.from(values(backend.reduce("sum", empty, 2, 0, 3))), [0, 0, 0, 0, 0, 0]);
  assert.deepEqual(Array.from(values(backend.reduce("max", empty, 1, 0, 2))), [-Infinity, -Infinity]);
});

// ---- matmul ----

function matmulReference(a: Float32Array, b: Float32Array, p: MatmulParams): Float64Array {
  const { batch, M, N, K, transA, transB, aBatchStride, bBatchStride } = p;
  const out = new Float64Array(batch * M * N);
  for (let e = 0; e < batch; e++) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let sum = 0;
        for (let k = 0; k < K; k++) {
          const av = a[e * aBatchStride + (transA ? k * M + i : i * K + k)];
          const bv = b[e * bBatchStride + (transB ? j * K + k : k * N + j)];
          sum += av * bv;
        }
        out[(e * M + i) * N + j] = sum;
      }
    }
  }
  return out;
}

Deno.test("cpu matmul: all transposes, awkward sizes, broadcast batch", () => {
  const backend = new CpuBackend();
  const sizes: [number, number, number][] = [[1, 1, 1], [7, 13, 33], [33, 1, 7], [13, 33, 1], [1, 7, 13], [70, 140, 150]];
  let seed = 10;
  for (const [M, N, K] of sizes) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        for (const [aShared, bShared] of [[false, false], [true, false], [false, true]]) {
          const batch = M * N * K > 100000 ? 1 : 3;
          const aBatchStride = aShared ? 0 : M * K;
          const bBatchStride = bShared ? 0 : N * K;
          const p: MatmulParams = { batch, M, N, K, transA, transB, aBatchStride, bBatchStride };
          const a = random((aShared ? 1 : batch) * M * K, seed++);
          const b = random((bShared ? 1 : batch) * N * K, seed++);
          const out = values(backend.matmul(backend.upload(a, "f32"), backend.upload(b, "f32"), p));
          const label = `matmul ${M}x${N}x${K} transA=${transA} transB=${transB} shared=${aShared},${bShared}`;
          assertClose(out, matmulReference(a, b, p), label, 1e-5, 1e-5);
        }
      }
    }
  }
  const empty = backend.matmul(backend.alloc(0, "f32"), backend.alloc(0, "f32"), {
    batch: 1, M: 2, N: 3, K: 0, transA: false, transB: false, aBatchStride: 0, bBatchStride: 0,
  });
  assert.deepEqual(Array.from(values(empty)), [0, 0, 0, 0, 0, 0]);
});

// ---- row normalizations ----

Deno.test("cpu softmax and log-softmax, forward and backward", () => {
  const backend = new CpuBackend();
  const rows = 4;
  const cols = 9;
  const x = random(rows * cols, 20).map((v) => v * 5);
  const sx = backend.upload(x, "f32");
  const y = values(backend.softmax(sx, rows, cols, false));
  const logY = values(backend.softmax(sx, rows, cols, true));
  for (let r = 0; r < rows; r++) {
    const row = y.subarray(r * cols, (r + 1) * cols);
    assert.ok(Math.abs(row.reduce((p, v) => p + v, 0) - 1) < 1e-6, `row ${r} sums to 1`);
    const exps = Array.from(x.subarray(r * cols, (r + 1) * cols), Math.exp);
    const total = exps.reduce((p, v) => p + v, 0);
    assertClose(row, exps.map((v) => v / total), `softmax row ${r}`);
  }
  assertClose(logY, Array.from(y, Math.log), "log-softmax = log(softmax)", 1e-5, 1e-6);

  const cotangent = random(rows * cols, 21);
  const dy = backend.upload(cotangent, "f32");
  for (const log of [false, true]) {
    const forward = log ? logY : y;
    const dx = values(backend.softmaxGrad(backend.upload(forward, "f32"), dy, rows, cols, log));
    const loss = () => dotProduct(values(backend.softmax(backend.upload(x, "f32"), rows, cols, log)), cotangent);
    assertGradient(dx, x, loss, `softmaxGrad log=${log}`);
  }
});

Deno.test("cpu rmsNorm and layerNorm, forward and backward", () => {
  const backend = new CpuBackend();
  const rows = 3;
  const cols = 11;
  const eps = 1e-5;
  const x = random(rows * cols, 30).map((v) => v * 2 + 0.3);
  const w = random(cols, 31).map((v) => v + 1.5);
  const b = random(cols, 32);
  const cotangent = random(rows * cols, 33);
  const up = (a: Float32Array) => backend.upload(a, "f32");

  const rms = backend.rmsNorm(up(x), up(w), rows, cols, eps);
  const layer = backend.layerNorm(up(x), up(w), up(b), rows, cols, eps);
  const rmsExpected: number[] = [];
  const layerExpected: number[] = [];
  for (let r = 0; r < rows; r++) {
    const row = Array.from(x.subarray(r * cols, (r + 1) * cols));
    const meanSquare = row.reduce((p, v) => p + v * v, 0) / cols;
    const mean = row.reduce((p, v) => p + v, 0) / cols;
    const variance = row.reduce((p, v) => p + (v - mean) ** 2, 0) / cols;
    row.forEach((v, j) => {
      rmsExpected.push((v / Math.sqrt(meanSquare + eps)) * w[j]);
      layerExpected.push(((v - mean) / Math.sqrt(variance + eps)) * w[j] + b[j]);
    });
  }
  assertClose(values(rms.y), rmsExpected, "rmsNorm");
  assertClose(values(layer.y), layerExpected, "layerNorm");

  const rmsLoss = () => dotProduct(values(backend.rmsNorm(up(x), up(w), rows, cols, eps).y), cotangent);
  const rmsGrads = backend.rmsNormGrad(up(x), up(w), rms.rstd, up(cotangent), rows, cols);
  assertGradient(values(rmsGrads.dx), x, rmsLoss, "rmsNormGrad dx");
  assertGradient(values(rmsGrads.dw), w, rmsLoss, "rmsNormGrad dw");

  const layerLoss = () => dotProduct(values(backend.layerNorm(up(x), up(w), up(b), rows, cols, eps).y), cotangent);
  const layerGrads = backend.layerNormGrad(up(x), up(w), layer.mean, layer.rstd, up(cotangent), rows, cols);
  assertGradient(values(layerGrads.dx), x, layerLoss, "layerNormGrad dx");
  assertGradient(values(layerGrads.dw), w, layerLoss, "layerNormGrad dw");
  assertGradient(values(layerGrads.db), b, layerLoss, "layerNormGrad db");
});

// ---- transformer pieces ----

/** Materializes every score matrix, masks with −Infinity and normalizes without a max shift. */
function attentionReference(
  q: Float32Array, k: Float32Array, v: Float32Array, p: AttentionParams,
): { o: number[]; lse: number[] } {
  const { B, Hq, Hkv, T, D, causal, scale } = p;
  const o: number[] = [];
  const lse: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const kvHead = Math.floor(h / (Hq / Hkv));
      const qAt = (t: number, d: number) => q[((b * Hq + h) * T + t) * D + d];
      const kAt = (t: number, d: number) => k[((b * Hkv + kvHead) * T + t) * D + d];
      const vAt = (t: number, d: number) => v[((b * Hkv + kvHead) * T + t) * D + d];
      for (let i = 0; i < T; i++) {
        const scores = Array.from({ length: T }, (_, j) => {
          if (causal && j > i) return -Infinity;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += qAt(i, d) * kAt(j, d);
          return dot * scale;
        });
        const exps = scores.map(Math.exp);
        const total = exps.reduce((s, e) => s + e, 0);
        lse.push(Math.log(total));
        for (let d = 0; d < D; d++) o.push(exps.reduce((s, e, j) => s + (e / total) * vAt(j, d), 0));
      }
    }
  }
  return { o, lse };
}

Deno.test("cpu attention and attentionGrad: causal and not, grouped-query", () => {
  const backend = new CpuBackend();
  const up = (a: Float32Array) => backend.upload(a, "f32");
  for (const causal of [false, true]) {
    const p: AttentionParams = { B: 2, Hq: 4, Hkv: 2, T: 5, D: 3, causal, scale: 1 / Math.sqrt(3) };
    const q = random(2 * 4 * 5 * 3, 40).map((v) => v * 2);
    const k = random(2 * 2 * 5 * 3, 41).map((v) => v * 2);
    const v = random(2 * 2 * 5 * 3, 42);
    const { o, lse } = backend.attention(up(q), up(k), up(v), p);
    const expected = attentionReference(q, k, v, p);
    assertClose(values(o), expected.o, `attention o causal=${causal}`);
    assertClose(values(lse), expected.lse, `attention lse causal=${causal}`);

    const cotangent = random(q.length, 43);
    const grads = backend.attentionGrad(up(q), up(k), up(v), o, lse, up(cotangent), p);
    const loss = () => dotProduct(values(backend.attention(up(q), up(k), up(v), p).o), cotangent);
    assertGradient(values(grads.dq), q, loss, `attentionGrad dq causal=${causal}`);
    assertGradient(values(grads.dk), k, loss, `attentionGrad dk causal=${causal}`);
    assertGradient(values(grads.dv), v, loss, `attentionGrad dv causal=${causal}`);
  }
});

Deno.test("cpu crossEntropy and crossEntropyGrad", () => {
  const backend = new CpuBackend();
  const rows = 4;
  const vocab = 7;
  const logits = random(rows * vocab, 50).map((v) => v * 6 + 40);
  const targets = new Int32Array([0, 6, 3, 3]);
  const st = backend.upload(targets, "i32");
  const loss = values(backend.crossEntropy(backend.upload(logits, "f32"), st, rows, vocab));
  const expected = Array.from({ length: rows }, (_, r) => {
    const row = Array.from(logits.subarray(r * vocab, (r + 1) * vocab), (v) => v - 40);
    return Math.log(row.reduce((s, v) => s + Math.exp(v), 0)) - row[targets[r]];
  });
  assertClose(loss, expected, "crossEntropy", 1e-5, 1e-5);

  const scale = 1 / rows;
  const dloss = backend.upload(new Float32Array([1.7]), "f32");
  const dlogits = values(backend.crossEntropyGrad(backend.upload(logits, "f32"), st, dloss, rows, vocab, scale));
  const meanLoss = () => {
    const perRow = values(backend.crossEntropy(backend.upload(logits, "f32"), st, rows, vocab));
    return 1.7 * scale * perRow.reduce((s, v) => s + v, 0);
  };
  assertGradient(dlogits, logits, meanLoss, "crossEntropyGrad");
});

Deno.test("cpu rope: formula, inverse undoes it, inverse is the backward", () => {
  const backend = new CpuBackend();
  const [rows, T, D, theta, offset] = [3, 5, 6, 10000, 7];
  const x = random(rows * T * D, 60);
  const y = values(backend.rope(backend.upload(x, "f32"), rows, T, D, theta, offset, false));
  const expected: number[] = new Array(x.length);
  for (let r = 0; r < rows; r++) {
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < D / 2; j++) {
        const angle = (t + offset) / Math.pow(theta, (2 * j) / D);
        const base = (r * T + t) * D;
        expected[base + j] = x[base + j] * Math.cos(angle) - x[base + j + D / 2] * Math.sin(angle);
        expected[base + j + D / 2] = x[base + j + D / 2] * Math.cos(angle) + x[base + j] * Math.sin(angle);
      }
    }
  }
  assertClose(y, expected, "rope");
  assertClose(values(backend.rope(backend.upload(y, "f32"), rows, T, D, theta, offset, true)), x, "rope inverse", 1e-5, 1e-6);

  const cotangent = random(x.length, 61);
  const backward = values(backend.rope(backend.upload(cotangent, "f32"), rows, T, D, theta, offset, true));
  const loss = () => dotProduct(values(backend.rope(backend.upload(x, "f32"), rows, T, D, theta, offset, false)), cotangent);
  assertGradient(backward, x, loss, "rope backward");
});

Deno.test("cpu embedding and embeddingGrad, with out-of-range ids", () => {
  const backend = new CpuBackend();
  const [vocab, dim] = [4, 3];
  const w = random(vocab * dim, 70);
  const ids = backend.upload(new Int32Array([2, -1, 0, 4, 2]), "i32");
  const y = values(backend.embedding(backend.upload(w, "f32"), ids, 5, vocab, dim));
  assert.deepEqual(Array.from(y), [...w.subarray(6, 9), 0, 0, 0, ...w.subarray(0, 3), 0, 0, 0, ...w.subarray(6, 9)]);
  const dy = random(5 * dim, 71);
  const dw = values(backend.embeddingGrad(ids, backend.upload(dy, "f32"), 5, vocab, dim));
  const expected = [dy[6], dy[7], dy[8], 0, 0, 0, dy[0] + dy[12], dy[1] + dy[13], dy[2] + dy[14], 0, 0, 0].map(Math.fround);
  assert.deepEqual(Array.from(dw), expected);
});

Deno.test("cpu adamw: one step by hand", () => {
  const backend = new CpuBackend();
  const param = backend.upload(new Float32Array([1, -2]), "f32");
  const grad = backend.upload(new Float32Array([0.5, 4]), "f32");
  const m = backend.upload(new Float32Array([0.1, 0]), "f32");
  const v = backend.upload(new Float32Array([0.01, 0]), "f32");
  const p = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 2, gradScale: 0.5 };
  backend.adamw(param, grad, m, v, 2, p);
  // Element 0: g = 0.25; m = 0.09 + 0.025 = 0.115; v = 0.00999 + 0.0000625 = 0.0100525.
  // Element 1: g = 2; m = 0.2; v = 0.004. Bias corrections: 1 − 0.9² = 0.19, 1 − 0.999² = 0.001999.
  const update = (theta: number, mHat: number, vHat: number) =>
    theta * (1 - 0.1 * 0.01) - (0.1 / 0.19) * mHat / (Math.sqrt(vHat) / Math.sqrt(0.001999) + 1e-8);
  assertClose(values(m), [0.115, 0.2], "m");
  assertClose(values(v), [0.0100525, 0.004], "v");
  assertClose(values(param), [update(1, 0.115, 0.0100525), update(-2, 0.2, 0.004)], "param");
});
