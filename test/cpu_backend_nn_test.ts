// Smoke tests of the CPU reference backend's neural-network kernels (softmax, RMSNorm, LayerNorm,
// cross-entropy, RoPE, embedding): forward against naive computations written here in f64, and
// every backward kernel against central finite differences of its forward.

import assert from "node:assert/strict";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { assertClose } from "./assertions.ts";
import { assertGradient, cpuValues, dotProduct, uniformValues } from "./cpu_backend_fixtures.ts";

Deno.test("cpu softmax and log-softmax, forward and backward", () => {
  const backend = new CpuBackend();
  const rows = 4;
  const cols = 9;
  const x = uniformValues(rows * cols, 20).map((v) => v * 5);
  const sx = backend.upload(x, "f32");
  const y = cpuValues(backend.softmax(sx, rows, cols, false));
  const logY = cpuValues(backend.softmax(sx, rows, cols, true));
  for (let r = 0; r < rows; r++) {
    const row = y.subarray(r * cols, (r + 1) * cols);
    assert.ok(Math.abs(row.reduce((p, v) => p + v, 0) - 1) < 1e-6, `row ${r} sums to 1`);
    const exps = Array.from(x.subarray(r * cols, (r + 1) * cols), Math.exp);
    const total = exps.reduce((p, v) => p + v, 0);
    assertClose(row, exps.map((v) => v / total), 1e-5, 1e-6, `softmax row ${r}`);
  }
  assertClose(logY, Array.from(y, Math.log), 1e-5, 1e-6, "log-softmax = log(softmax)");

  const cotangent = uniformValues(rows * cols, 21);
  const dy = backend.upload(cotangent, "f32");
  for (const log of [false, true]) {
    const forward = log ? logY : y;
    const dx = cpuValues(backend.softmaxGrad(backend.upload(forward, "f32"), dy, rows, cols, log));
    const loss = () => dotProduct(cpuValues(backend.softmax(backend.upload(x, "f32"), rows, cols, log)), cotangent);
    assertGradient(dx, x, loss, `softmaxGrad log=${log}`);
  }
});

Deno.test("cpu rmsNorm and layerNorm, forward and backward", () => {
  const backend = new CpuBackend();
  const rows = 3;
  const cols = 11;
  const eps = 1e-5;
  const x = uniformValues(rows * cols, 30).map((v) => v * 2 + 0.3);
  const w = uniformValues(cols, 31).map((v) => v + 1.5);
  const b = uniformValues(cols, 32);
  const cotangent = uniformValues(rows * cols, 33);
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
  assertClose(cpuValues(rms.y), rmsExpected, 1e-5, 1e-6, "rmsNorm");
  assertClose(cpuValues(layer.y), layerExpected, 1e-5, 1e-6, "layerNorm");

  const rmsLoss = () => dotProduct(cpuValues(backend.rmsNorm(up(x), up(w), rows, cols, eps).y), cotangent);
  const rmsGrads = backend.rmsNormGrad(up(x), up(w), rms.rstd, up(cotangent), rows, cols);
  assertGradient(cpuValues(rmsGrads.dx), x, rmsLoss, "rmsNormGrad dx");
  assertGradient(cpuValues(rmsGrads.dw), w, rmsLoss, "rmsNormGrad dw");

  const layerLoss = () => dotProduct(cpuValues(backend.layerNorm(up(x), up(w), up(b), rows, cols, eps).y), cotangent);
  const layerGrads = backend.layerNormGrad(up(x), up(w), layer.mean, layer.rstd, up(cotangent), rows, cols);
  assertGradient(cpuValues(layerGrads.dx), x, layerLoss, "layerNormGrad dx");
  assertGradient(cpuValues(layerGrads.dw), w, layerLoss, "layerNormGrad dw");
  assertGradient(cpuValues(layerGrads.db), b, layerLoss, "layerNormGrad db");
});

Deno.test("cpu crossEntropy and crossEntropyGrad", () => {
  const backend = new CpuBackend();
  const rows = 4;
  const vocab = 7;
  const logits = uniformValues(rows * vocab, 50).map((v) => v * 6 + 40);
  const targets = new Int32Array([0, 6, 3, 3]);
  const st = backend.upload(targets, "i32");
  const loss = cpuValues(backend.crossEntropy(backend.upload(logits, "f32"), st, rows, vocab));
  const expected = Array.from({ length: rows }, (_, r) => {
    const row = Array.from(logits.subarray(r * vocab, (r + 1) * vocab), (v) => v - 40);
    return Math.log(row.reduce((s, v) => s + Math.exp(v), 0)) - row[targets[r]];
  });
  assertClose(loss, expected, 1e-5, 1e-5, "crossEntropy");

  const scale = 1 / rows;
  const dloss = backend.upload(new Float32Array([1.7]), "f32");
  const dlogits = cpuValues(backend.crossEntropyGrad(backend.upload(logits, "f32"), st, dloss, rows, vocab, scale));
  const meanLoss = () => {
    const perRow = cpuValues(backend.crossEntropy(backend.upload(logits, "f32"), st, rows, vocab));
    return 1.7 * scale * perRow.reduce((s, v) => s + v, 0);
  };
  assertGradient(dlogits, logits, meanLoss, "crossEntropyGrad");
});

Deno.test("cpu rope: formula, inverse undoes it, inverse is the backward", () => {
  const backend = new CpuBackend();
  const [rows, T, D, theta, offset] = [3, 5, 6, 10000, 7];
  const x = uniformValues(rows * T * D, 60);
  const y = cpuValues(backend.rope(backend.upload(x, "f32"), rows, T, D, theta, offset, false));
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
  assertClose(y, expected, 1e-5, 1e-6, "rope");
  assertClose(cpuValues(backend.rope(backend.upload(y, "f32"), rows, T, D, theta, offset, true)), x, 1e-5, 1e-6, "rope inverse");

  const cotangent = uniformValues(x.length, 61);
  const backward = cpuValues(backend.rope(backend.upload(cotangent, "f32"), rows, T, D, theta, offset, true));
  const loss = () => dotProduct(cpuValues(backend.rope(backend.upload(x, "f32"), rows, T, D, theta, offset, false)), cotangent);
  assertGradient(backward, x, loss, "rope backward");
});

Deno.test("cpu embedding and embeddingGrad, with out-of-range ids", () => {
  const backend = new CpuBackend();
  const [vocab, dim] = [4, 3];
  const w = uniformValues(vocab * dim, 70);
  const ids = backend.upload(new Int32Array([2, -1, 0, 4, 2]), "i32");
  const y = cpuValues(backend.embedding(backend.upload(w, "f32"), ids, 5, vocab, dim));
  assert.deepEqual(Array.from(y), [...w.subarray(6, 9), 0, 0, 0, ...w.subarray(0, 3), 0, 0, 0, ...w.subarray(6, 9)]);
  const dy = uniformValues(5 * dim, 71);
  const dw = cpuValues(backend.embeddingGrad(ids, backend.upload(dy, "f32"), 5, vocab, dim));
  const expected = [dy[6], dy[7], dy[8], 0, 0, 0, dy[0] + dy[12], dy[1] + dy[13], dy[2] + dy[14], 0, 0, 0].map(Math.fround);
  assert.deepEqual(Array.from(dw), expected);
});
