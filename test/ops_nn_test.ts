// Forward values of the neural-network ops (softmax, logSoftmax, rmsNorm, layerNorm, embedding,
// rope, crossEntropy) on both backends against naive references written here in plain JS doubles
// (never the CPU backend). Rows are awkward on purpose: 1, primes, non-multiples of 4, and more
// than 65,535 of them.

import assert from "node:assert/strict";
import { ops } from "../mod.ts";
import { assertClose, assertExact, assertWithin } from "./assertions.ts";
import { disposeAll, randomValues, readF32, type Shape, sizeOf, testBothBackends } from "./helpers.ts";

function softmaxRef(x: ArrayLike<number>, rows: number, cols: number, log: boolean): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let max = -Infinity;
    for (let c = 0; c < cols; c++) max = Math.max(max, x[r * cols + c]);
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += Math.exp(x[r * cols + c] - max);
    for (let c = 0; c < cols; c++) {
      const z = x[r * cols + c] - max;
      out[r * cols + c] = log ? z - Math.log(sum) : Math.exp(z) / sum;
    }
  }
  return out;
}

function rmsNormRef(x: ArrayLike<number>, w: ArrayLike<number>, rows: number, cols: number, eps: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = 0; c < cols; c++) ss += x[r * cols + c] ** 2;
    const rstd = 1 / Math.sqrt(ss / cols + eps);
    for (let c = 0; c < cols; c++) out[r * cols + c] = x[r * cols + c] * rstd * w[c];
  }
  return out;
}

function layerNormRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number>,
  rows: number,
  cols: number,
  eps: number,
): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let c = 0; c < cols; c++) mean += x[r * cols + c];
    mean /= cols;
    let variance = 0;
    for (let c = 0; c < cols; c++) variance += (x[r * cols + c] - mean) ** 2;
    variance /= cols;
    const rstd = 1 / Math.sqrt(variance + eps);
    for (let c = 0; c < cols; c++) out[r * cols + c] = (x[r * cols + c] - mean) * rstd * w[c] + b[c];
  }
  return out;
}

function ropeRef(x: ArrayLike<number>, shape: Shape, theta: number, offset: number): Float64Array {
  const [B, H, T, D] = shape;
  const half = D / 2;
  const out = new Float64Array(x.length);
  for (let row = 0; row < B * H; row++) {
    for (let t = 0; t < T; t++) {
      const base = (row * T + t) * D;
      for (let j = 0; j < half; j++) {
        const angle = (t + offset) * theta ** ((-2 * j) / D);
        const [c, s] = [Math.cos(angle), Math.sin(angle)];
        const [x1, x2] = [x[base + j], x[base + j + half]];
        out[base + j] = x1 * c - x2 * s;
        out[base + j + half] = x2 * c + x1 * s;
      }
    }
  }
  return out;
}

function crossEntropyRef(logits: ArrayLike<number>, targets: ArrayLike<number>, rows: number, vocab: number): number {
  let total = 0;
  for (let r = 0; r < rows; r++) {
    let max = -Infinity;
    for (let c = 0; c < vocab; c++) max = Math.max(max, logits[r * vocab + c]);
    let sum = 0;
    for (let c = 0; c < vocab; c++) sum += Math.exp(logits[r * vocab + c] - max);
    total += max + Math.log(sum) - logits[r * vocab + targets[r]];
  }
  return total / rows;
}

const ROW_SHAPES: Shape[] = [[1, 1], [7], [7, 13], [3, 5, 33], [4, 64], [13, 129], [2, 1031], [1, 4099]];

testBothBackends("softmax and logSoftmax: awkward rows", async (device) => {
  let seed = 1000;
  for (const shape of ROW_SHAPES) {
    for (const spread of [1, 30]) {
      const values = randomValues(sizeOf(shape), seed++, spread);
      const cols = shape.at(-1)!;
      const rows = sizeOf(shape) / cols;
      const x = device.tensor(values, shape);
      const y = ops.softmax(x);
      const ly = ops.logSoftmax(x);
      assert.deepEqual(y.shape, shape);
      assert.deepEqual(ly.shape, shape);
      assertClose(await readF32(y), softmaxRef(values, rows, cols, false), 1e-4, 1e-7, `softmax [${shape}] ×${spread}`);
      assertClose(await readF32(ly), softmaxRef(values, rows, cols, true), 1e-5, 1e-5, `logSoftmax [${shape}] ×${spread}`);
      disposeAll(x, y, ly);
    }
  }
});

testBothBackends("softmax: huge logits stay finite (max subtracted)", async (device) => {
  const values = new Float32Array([1000, 999, 998, -1000, 80, 90, 100, 100]);
  const x = device.tensor(values, [2, 4]);
  const y = ops.softmax(x);
  const ly = ops.logSoftmax(x);
  assertClose(await readF32(y), softmaxRef(values, 2, 4, false), 1e-5, 1e-7, "softmax huge");
  assertClose(await readF32(ly), softmaxRef(values, 2, 4, true), 1e-5, 1e-5, "logSoftmax huge");
  disposeAll(x, y, ly);
});

testBothBackends("softmax and rmsNorm: more than 65,535 rows", async (device) => {
  const shape = [70001, 7];
  const values = randomValues(sizeOf(shape), 1100, 2);
  const weight = randomValues(7, 1101);
  const x = device.tensor(values, shape);
  const w = device.tensor(weight, [7]);
  const y = ops.softmax(x);
  const r = ops.rmsNorm(x, w);
  assertClose(await readF32(y), softmaxRef(values, 70001, 7, false), 1e-4, 1e-7, "softmax [70001, 7]");
  assertClose(await readF32(r), rmsNormRef(values, weight, 70001, 7, 1e-5), 1e-4, 1e-5, "rmsNorm [70001, 7]");
  disposeAll(x, w, y, r);
});

testBothBackends("rmsNorm: awkward rows, default and custom eps", async (device) => {
  let seed = 1200;
  for (const shape of ROW_SHAPES) {
    for (const eps of [undefined, 0.5]) {
      const cols = shape.at(-1)!;
      const rows = sizeOf(shape) / cols;
      const values = randomValues(sizeOf(shape), seed++, 2);
      const weight = randomValues(cols, seed++);
      const x = device.tensor(values, shape);
      const w = device.tensor(weight, [cols]);
      const y = eps === undefined ? ops.rmsNorm(x, w) : ops.rmsNorm(x, w, eps);
      assert.deepEqual(y.shape, shape);
      assertClose(
        await readF32(y),
        rmsNormRef(values, weight, rows, cols, eps ?? 1e-5),
        1e-4,
        1e-5,
        `rmsNorm [${shape}] eps ${eps}`,
      );
      disposeAll(x, w, y);
    }
  }
});

testBothBackends("layerNorm: awkward rows, offset inputs, default and custom eps", async (device) => {
  let seed = 1300;
  for (const shape of ROW_SHAPES) {
    for (const [eps, offset] of [[undefined, 0], [0.25, 10]] as const) {
      const cols = shape.at(-1)!;
      const rows = sizeOf(shape) / cols;
      const values = randomValues(sizeOf(shape), seed++, 2).map((v) => v + offset);
      const weight = randomValues(cols, seed++);
      const bias = randomValues(cols, seed++);
      const x = device.tensor(values, shape);
      const w = device.tensor(weight, [cols]);
      const b = device.tensor(bias, [cols]);
      const y = eps === undefined ? ops.layerNorm(x, w, b) : ops.layerNorm(x, w, b, eps);
      assert.deepEqual(y.shape, shape);
      const expected = layerNormRef(values, weight, bias, rows, cols, eps ?? 1e-5);
      assertClose(await readF32(y), expected, 1e-4, 1e-5, `layerNorm [${shape}] eps ${eps} offset ${offset}`);
      disposeAll(x, w, b, y);
    }
  }
});

testBothBackends("embedding: Int32Array ids and i32 tensor ids", async (device) => {
  let seed = 1400;
  for (const [vocab, dim, n] of [[1, 1, 1], [13, 7, 31], [65, 33, 5], [7, 129, 13]]) {
    const table = randomValues(vocab * dim, seed++);
    const ids = Int32Array.from({ length: n }, (_, i) => (i * 5 + 3) % vocab);
    if (n > 2) [ids[0], ids[1]] = [0, vocab - 1];
    const w = device.tensor(table, [vocab, dim]);
    const expected = Array.from({ length: n * dim }, (_, i) => table[ids[Math.floor(i / dim)] * dim + (i % dim)]);
    const y = ops.embedding(w, ids);
    assert.deepEqual(y.shape, [n, dim]);
    assertExact(await readF32(y), expected, `embedding vocab ${vocab} dim ${dim} (Int32Array)`);
    const idTensor = device.tensor(ids, [1, n]);
    const y2 = ops.embedding(w, idTensor);
    assert.deepEqual(y2.shape, [1, n, dim]);
    assertExact(await readF32(y2), expected, `embedding vocab ${vocab} dim ${dim} (i32 tensor)`);
    disposeAll(w, y, idTensor, y2);
  }
});

testBothBackends("embedding: 2-D id tensor, out-of-range tensor ids give zero rows", async (device) => {
  const vocab = 5;
  const dim = 3;
  const table = randomValues(vocab * dim, 1450);
  const ids = new Int32Array([4, -1, 0, 5, 2, 1000]);
  const w = device.tensor(table, [vocab, dim]);
  const idTensor = device.tensor(ids, [2, 3]);
  const y = ops.embedding(w, idTensor);
  assert.deepEqual(y.shape, [2, 3, dim]);
  const expected = Array.from(ids).flatMap((
    id,
  ) => (id >= 0 && id < vocab ? Array.from(table.slice(id * dim, id * dim + dim)) : [0, 0, 0]));
  assertExact(await readF32(y), expected, "embedding with out-of-range tensor ids");
  disposeAll(w, idTensor, y);
});

testBothBackends("rope: positionOffset, theta, awkward T", async (device) => {
  let seed = 1500;
  const cases: [Shape, number, number][] = [
    [[1, 1, 1, 2], 10000, 0],
    [[2, 3, 7, 8], 10000, 0],
    [[2, 3, 7, 8], 10000, 5],
    [[1, 2, 13, 6], 100, 17],
    [[1, 1, 33, 32], 10000, 3],
    [[3, 1, 5, 2], 500, 1],
  ];
  for (const [shape, theta, offset] of cases) {
    const values = randomValues(sizeOf(shape), seed++);
    const x = device.tensor(values, shape);
    const y = offset === 0 && theta === 10000 ? ops.rope(x) : ops.rope(x, { theta, positionOffset: offset });
    assert.deepEqual(y.shape, shape);
    assertClose(
      await readF32(y),
      ropeRef(values, shape, theta, offset),
      1e-4,
      2e-5,
      `rope [${shape}] theta ${theta} offset ${offset}`,
    );
    disposeAll(x, y);
  }
});

testBothBackends("rope: positionOffset equals slicing a longer sequence", async (device) => {
  const shape = [1, 2, 9, 4];
  const values = randomValues(sizeOf(shape), 1550);
  const x = device.tensor(values, shape);
  const tail = ops.slice(x, [0, 0, 4, 0], [1, 2, 5, 4]);
  const yTail = ops.rope(tail, { positionOffset: 4 });
  const expected = ropeRef(values, shape, 10000, 0);
  const expectedTail: number[] = [];
  for (let h = 0; h < 2; h++) {
    for (let t = 4; t < 9; t++) for (let d = 0; d < 4; d++) expectedTail.push(expected[(h * 9 + t) * 4 + d]);
  }
  assertClose(await readF32(yTail), expectedTail, 1e-4, 2e-5, "rope tail with offset 4");
  disposeAll(x, tail, yTail);
});

testBothBackends("crossEntropy: Int32Array and i32 tensor targets", async (device) => {
  let seed = 1800;
  for (const [rows, vocab, spread] of [[1, 1, 1], [7, 13, 1], [33, 65, 5], [5, 1031, 3], [70001, 3, 2]]) {
    const logits = randomValues(rows * vocab, seed++, spread);
    const targets = Int32Array.from({ length: rows }, (_, i) => (i * 7 + 2) % vocab);
    const x = device.tensor(logits, [rows, vocab]);
    const expected = crossEntropyRef(logits, targets, rows, vocab);
    const loss = ops.crossEntropy(x, targets);
    assert.deepEqual(loss.shape, []);
    const tol = 1e-5 + 1e-5 * Math.abs(expected);
    assertWithin(await readF32(loss), [expected], () => tol, `crossEntropy [${rows}, ${vocab}] (Int32Array)`);
    const t = device.tensor(targets, [rows]);
    const loss2 = ops.crossEntropy(x, t);
    assertWithin(await readF32(loss2), [expected], () => tol, `crossEntropy [${rows}, ${vocab}] (i32 tensor)`);
    disposeAll(x, loss, t, loss2);
  }
});
