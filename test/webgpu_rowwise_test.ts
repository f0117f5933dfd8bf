// The WebGPU row-wise kernels — softmax, log-softmax, RMSNorm, LayerNorm, cross-entropy, and their
// backward — against the CPU reference, in every row layout (1, 8 or 64 invocations per row, and
// the one the program picks), on awkward sizes: 1, primes, rows that are not a multiple of 4, a
// 32,064-wide vocabulary row, and more than 65,535 rows (workgroups folded over x and y).

import assert from "node:assert/strict";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import type { Storage } from "../src/backend/backend.ts";
import { type RowLanes, softmax, softmaxGrad } from "../src/backend/webgpu/programs/softmax.ts";
import { layerNorm, layerNormGrad, rmsNorm, rmsNormGrad } from "../src/backend/webgpu/programs/norm.ts";
import { crossEntropy, crossEntropyGrad } from "../src/backend/webgpu/programs/cross_entropy.ts";
import { assertClose } from "./assertions.ts";
import { gpuTest, randomValues, readGpu } from "./helpers.ts";

/** undefined: the layout the program chooses for this adapter. */
const LAYOUTS: (RowLanes | undefined)[] = [undefined, 1, 8, 64];
const SHAPES: [rows: number, cols: number][] = [[1, 1], [3, 7], [5, 8], [2, 13], [17, 64], [13, 1000], [4, 1001]];

const cpu = new CpuBackend();
async function readCpu(storage: Storage, n: number): Promise<Float32Array> {
  return (await cpu.read(storage, n, "f32")) as Float32Array;
}

/** Absolute tolerance scaled to the largest magnitude, for results that cancel (gradients). */
function scaledAtol(values: Float32Array, relative: number): number {
  let largest = 0;
  for (const v of values) if (Number.isFinite(v)) largest = Math.max(largest, Math.abs(v));
  return relative * Math.max(largest, 1e-30);
}

function layoutName(lanes: RowLanes | undefined): string {
  return lanes === undefined ? "auto" : `${lanes} lanes`;
}

gpuTest("softmax and log-softmax, forward and backward, match the CPU in every row layout", async (ctx) => {
  for (const [rows, cols] of SHAPES) {
    const n = rows * cols;
    const xValues = randomValues(n, rows * 31 + cols, 3);
    const dyValues = randomValues(n, rows * 37 + cols + 1);
    const x = ctx.upload(xValues);
    const dy = ctx.upload(dyValues);
    for (const log of [false, true]) {
      const yCpu = cpu.softmax(cpu.upload(xValues, "f32"), rows, cols, log);
      const expectedY = await readCpu(yCpu, n);
      const expectedDx = await readCpu(cpu.softmaxGrad(yCpu, cpu.upload(dyValues, "f32"), rows, cols, log), n);
      for (const lanes of LAYOUTS) {
        const what = `${log ? "log-softmax" : "softmax"} [${rows}, ${cols}] ${layoutName(lanes)}`;
        const y = softmax(ctx, x, rows, cols, log, lanes);
        // log-softmax subtracts two nearly equal f32 values where the CPU works in f64.
        assertClose(await readGpu(ctx, y, n), expectedY, 2e-6, log ? scaledAtol(expectedY, 1e-6) : 1e-7, what);
        // The backward reads the CPU's y, so that only the backward's own rounding is compared.
        const yExact = ctx.upload(expectedY);
        const dx = softmaxGrad(ctx, yExact, dy, rows, cols, log, lanes);
        assertClose(await readGpu(ctx, dx, n), expectedDx, 1e-5, scaledAtol(expectedDx, 1e-6), `${what} backward`);
        for (const storage of [y, yExact, dx]) ctx.release(storage);
      }
    }
    ctx.release(x);
    ctx.release(dy);
  }
});

gpuTest("softmax is stable for large logits, handles −Infinity entries, and covers a 32,064-wide row", async (ctx) => {
  const rows = 3;
  const cols = 32064;
  const values = randomValues(rows * cols, 5, 40);
  for (let i = 0; i < values.length; i += 7) values[i] = -Infinity;
  values[5] = 3000;
  const x = ctx.upload(values);
  for (const log of [false, true]) {
    const expected = await readCpu(cpu.softmax(cpu.upload(values, "f32"), rows, cols, log), rows * cols);
    for (const lanes of LAYOUTS) {
      const y = softmax(ctx, x, rows, cols, log, lanes);
      const actual = await readGpu(ctx, y, rows * cols);
      // exp(x − max) inherits the f32 rounding of x − max (up to ~250 here): a relative 2e-5;
      // x − logsumexp, the rounding of values near 3000.
      const atol = log ? 3000 * 2 ** -23 : 1e-30;
      assertClose(actual, expected, 2e-5, atol, `${log ? "log-" : ""}softmax ${layoutName(lanes)}`);
      ctx.release(y);
    }
  }
  ctx.release(x);
});

gpuTest("softmax over more than 65,535 rows (folded workgroups)", async (ctx) => {
  const rows = 70001;
  const cols = 3;
  const values = randomValues(rows * cols, 11);
  const x = ctx.upload(values);
  const expected = await readCpu(cpu.softmax(cpu.upload(values, "f32"), rows, cols, false), rows * cols);
  for (const lanes of [1, 64] as const) {
    const y = softmax(ctx, x, rows, cols, false, lanes);
    assertClose(await readGpu(ctx, y, rows * cols), expected, 2e-6, 1e-7, `softmax [${rows}, ${cols}] ${lanes} lanes`);
    ctx.release(y);
  }
  ctx.release(x);
});

gpuTest("RMSNorm forward and backward match the CPU; dw is deterministic", async (ctx) => {
  const eps = 1e-5;
  for (const [rows, cols] of [...SHAPES, [300, 12] as [number, number]]) {
    const n = rows * cols;
    const xValues = randomValues(n, rows + 3 * cols, 2);
    const wValues = randomValues(cols, cols + 1);
    const dyValues = randomValues(n, rows + cols + 9);
    const [xCpu, wCpu] = [cpu.upload(xValues, "f32"), cpu.upload(wValues, "f32")];
    const forward = cpu.rmsNorm(xCpu, wCpu, rows, cols, eps);
    const expectedRstd = await readCpu(forward.rstd, rows);
    const backward = cpu.rmsNormGrad(xCpu, wCpu, forward.rstd, cpu.upload(dyValues, "f32"), rows, cols);
    const expectedDx = await readCpu(backward.dx, n);
    const expectedDw = await readCpu(backward.dw, cols);
    const [x, w, dy] = [ctx.upload(xValues), ctx.upload(wValues), ctx.upload(dyValues)];
    const rstdExact = ctx.upload(expectedRstd);
    for (const lanes of LAYOUTS) {
      const what = `rmsNorm [${rows}, ${cols}] ${layoutName(lanes)}`;
      const { y, rstd } = rmsNorm(ctx, x, w, rows, cols, eps, lanes);
      assertClose(await readGpu(ctx, y, n), await readCpu(forward.y, n), 2e-6, 1e-6, `${what} y`);
      assertClose(await readGpu(ctx, rstd, rows), expectedRstd, 2e-6, 0, `${what} rstd`);
      const grads = rmsNormGrad(ctx, x, w, rstdExact, dy, rows, cols, lanes);
      // dx cancels to ~0 when a row has one column, hence the tolerance scaled to the row's terms.
      assertClose(await readGpu(ctx, grads.dx, n), expectedDx, 1e-5, scaledAtol(expectedDx, 2e-6) + 1e-6, `${what} dx`);
      const dw = await readGpu(ctx, grads.dw, cols);
      assertClose(dw, expectedDw, 1e-5, scaledAtol(expectedDw, 1e-6), `${what} dw`);
      const again = rmsNormGrad(ctx, x, w, rstdExact, dy, rows, cols, lanes);
      assert.deepEqual(await readGpu(ctx, again.dw, cols), dw, `${what}: dw differs between two runs`);
      for (const storage of [y, rstd, grads.dx, grads.dw, again.dx, again.dw]) ctx.release(storage);
    }
    for (const storage of [x, w, dy, rstdExact]) ctx.release(storage);
  }
});

gpuTest("LayerNorm forward and backward match the CPU, also for rows far from zero mean", async (ctx) => {
  const eps = 1e-5;
  for (const [rows, cols] of [...SHAPES, [300, 12] as [number, number]]) {
    const n = rows * cols;
    const xValues = randomValues(n, rows + 5 * cols, 2);
    // Half the rows sit far from zero: the one-pass statistics must not cancel.
    for (let i = 0; i < n; i++) if (Math.floor(i / cols) % 2 === 1) xValues[i] += 1000;
    const wValues = randomValues(cols, cols + 2);
    const bValues = randomValues(cols, cols + 3);
    const dyValues = randomValues(n, rows + cols + 10);
    const [xCpu, wCpu] = [cpu.upload(xValues, "f32"), cpu.upload(wValues, "f32")];
    const forward = cpu.layerNorm(xCpu, wCpu, cpu.upload(bValues, "f32"), rows, cols, eps);
    const expectedMean = await readCpu(forward.mean, rows);
    const expectedRstd = await readCpu(forward.rstd, rows);
    const backward = cpu.layerNormGrad(xCpu, wCpu, forward.mean, forward.rstd, cpu.upload(dyValues, "f32"), rows, cols);
    const expectedDx = await readCpu(backward.dx, n);
    const expectedDw = await readCpu(backward.dw, cols);
    const expectedDb = await readCpu(backward.db, cols);
    const [x, w, b, dy] = [ctx.upload(xValues), ctx.upload(wValues), ctx.upload(bValues), ctx.upload(dyValues)];
    const [meanExact, rstdExact] = [ctx.upload(expectedMean), ctx.upload(expectedRstd)];
    for (const lanes of LAYOUTS) {
      const what = `layerNorm [${rows}, ${cols}] ${layoutName(lanes)}`;
      const out = layerNorm(ctx, x, w, b, rows, cols, eps, lanes);
      assertClose(await readGpu(ctx, out.y, n), await readCpu(forward.y, n), 1e-5, 1e-4, `${what} y`);
      assertClose(await readGpu(ctx, out.mean, rows), expectedMean, 1e-6, 1e-5, `${what} mean`);
      assertClose(await readGpu(ctx, out.rstd, rows), expectedRstd, 1e-4, 0, `${what} rstd`);
      const grads = layerNormGrad(ctx, x, w, meanExact, rstdExact, dy, rows, cols, lanes);
      assertClose(await readGpu(ctx, grads.dx, n), expectedDx, 1e-4, scaledAtol(expectedDx, 1e-5), `${what} dx`);
      assertClose(await readGpu(ctx, grads.dw, cols), expectedDw, 1e-4, scaledAtol(expectedDw, 1e-5), `${what} dw`);
      assertClose(await readGpu(ctx, grads.db, cols), expectedDb, 1e-5, scaledAtol(expectedDb, 1e-6), `${what} db`);
      for (const storage of [out.y, out.mean, out.rstd, grads.dx, grads.dw, grads.db]) ctx.release(storage);
    }
    for (const storage of [x, w, b, dy, meanExact, rstdExact]) ctx.release(storage);
  }
});

gpuTest("norm weight gradients sum many row blocks in order", async (ctx) => {
  const rows = 5000;
  const cols = 24;
  const n = rows * cols;
  const xValues = randomValues(n, 77);
  const dyValues = randomValues(n, 78);
  const wValues = randomValues(cols, 79);
  const [xCpu, wCpu, dyCpu] = [cpu.upload(xValues, "f32"), cpu.upload(wValues, "f32"), cpu.upload(dyValues, "f32")];
  const forward = cpu.layerNorm(xCpu, wCpu, cpu.upload(new Float32Array(cols), "f32"), rows, cols, 1e-5);
  const expected = cpu.layerNormGrad(xCpu, wCpu, forward.mean, forward.rstd, dyCpu, rows, cols);
  const [x, w, dy] = [ctx.upload(xValues), ctx.upload(wValues), ctx.upload(dyValues)];
  const mean = ctx.upload(await readCpu(forward.mean, rows));
  const rstd = ctx.upload(await readCpu(forward.rstd, rows));
  const grads = layerNormGrad(ctx, x, w, mean, rstd, dy, rows, cols);
  const expectedDw = await readCpu(expected.dw, cols);
  const expectedDb = await readCpu(expected.db, cols);
  assertClose(await readGpu(ctx, grads.dw, cols), expectedDw, 1e-4, scaledAtol(expectedDw, 1e-5), "dw");
  assertClose(await readGpu(ctx, grads.db, cols), expectedDb, 1e-4, scaledAtol(expectedDb, 1e-5), "db");
  for (const storage of [x, w, dy, mean, rstd, grads.dx, grads.dw, grads.db]) ctx.release(storage);

  // Over half a million rows of two columns: blocks of at most 4,096 rows, then their sum.
  const tallRows = 600001;
  const tallX = randomValues(tallRows * 2, 80);
  const tallDy = randomValues(tallRows * 2, 81);
  const tallW = randomValues(2, 82);
  const [tallXCpu, tallWCpu] = [cpu.upload(tallX, "f32"), cpu.upload(tallW, "f32")];
  const tallRstd = cpu.rmsNorm(tallXCpu, tallWCpu, tallRows, 2, 1e-5).rstd;
  const tallExpected = await readCpu(cpu.rmsNormGrad(tallXCpu, tallWCpu, tallRstd, cpu.upload(tallDy, "f32"), tallRows, 2).dw, 2);
  const tallInputs = [ctx.upload(tallX), ctx.upload(tallW), ctx.upload(await readCpu(tallRstd, tallRows)), ctx.upload(tallDy)];
  const tall = rmsNormGrad(ctx, tallInputs[0], tallInputs[1], tallInputs[2], tallInputs[3], tallRows, 2);
  assertClose(await readGpu(ctx, tall.dw, 2), tallExpected, 1e-4, scaledAtol(tallExpected, 1e-5), "dw over 600,001 rows");
  for (const storage of [...tallInputs, tall.dx, tall.dw]) ctx.release(storage);
});

gpuTest("cross-entropy and its gradient match the CPU; out-of-range targets give NaN rows", async (ctx) => {
  for (const [rows, vocab] of [...SHAPES, [2, 32064] as [number, number]]) {
    const logitValues = randomValues(rows * vocab, rows * 7 + vocab, 4);
    const targetValues = new Int32Array(rows);
    for (let r = 0; r < rows; r++) targetValues[r] = (r * 7919 + 3) % vocab;
    if (rows >= 3) {
      targetValues[1] = -1;
      targetValues[2] = vocab;
    }
    const dlossValues = new Float32Array([0.75]);
    const scale = 1 / rows;
    const logitsCpu = cpu.upload(logitValues, "f32");
    const targetsCpu = cpu.upload(targetValues, "i32");
    const expectedLoss = await readCpu(cpu.crossEntropy(logitsCpu, targetsCpu, rows, vocab), rows);
    const expectedGrad = await readCpu(
      cpu.crossEntropyGrad(logitsCpu, targetsCpu, cpu.upload(dlossValues, "f32"), rows, vocab, scale),
      rows * vocab,
    );
    const [logits, targets, dloss] = [ctx.upload(logitValues), ctx.upload(targetValues), ctx.upload(dlossValues)];
    for (const lanes of LAYOUTS) {
      const what = `crossEntropy [${rows}, ${vocab}] ${layoutName(lanes)}`;
      const loss = crossEntropy(ctx, logits, targets, rows, vocab, lanes);
      assertClose(await readGpu(ctx, loss, rows), expectedLoss, 1e-5, 1e-5, `${what} loss`);
      const grad = crossEntropyGrad(ctx, logits, targets, dloss, rows, vocab, scale, lanes);
      assertClose(await readGpu(ctx, grad, rows * vocab), expectedGrad, 1e-5, scaledAtol(expectedGrad, 1e-6), `${what} grad`);
      ctx.release(loss);
      ctx.release(grad);
    }
    for (const storage of [logits, targets, dloss]) ctx.release(storage);
  }
});

gpuTest("row-wise programs accept empty sizes", async (ctx) => {
  const x = ctx.upload(new Float32Array(4));
  const ids = ctx.upload(new Int32Array(4));
  for (const [rows, cols] of [[0, 5], [3, 0], [0, 0]]) {
    const outputs = [
      softmax(ctx, x, rows, cols, false),
      softmaxGrad(ctx, x, x, rows, cols, true),
      ...Object.values(rmsNorm(ctx, x, x, rows, cols, 1e-5)),
      ...Object.values(rmsNormGrad(ctx, x, x, x, x, rows, cols)),
      ...Object.values(layerNorm(ctx, x, x, x, rows, cols, 1e-5)),
      ...Object.values(layerNormGrad(ctx, x, x, x, x, x, rows, cols)),
      crossEntropyGrad(ctx, x, ids, x, rows, cols, 1),
    ];
    for (const output of outputs) ctx.release(output);
  }
  const noRows = rmsNormGrad(ctx, x, x, x, x, 0, 3);
  assert.deepEqual(await readGpu(ctx, noRows.dw, 3), new Float32Array(3), "dw over no rows is zero");
  const lossNoVocab = crossEntropy(ctx, x, ids, 2, 0);
  assert.ok((await readGpu(ctx, lossNoVocab, 2)).every(Number.isNaN), "a target cannot be in an empty vocabulary");
  for (const storage of [x, ids, noRows.dx, noRows.dw, lossNoVocab]) ctx.release(storage);
});
