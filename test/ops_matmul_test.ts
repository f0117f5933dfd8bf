// Forward values of ops.matmul on both backends against a naive reference written here in plain JS
// doubles (never the CPU backend): awkward sizes (1, primes, non-multiples of 4 and of typical
// tiles), every transpose combination, broadcast batch axes, more than 65,535 rows (the
// per-dimension workgroup limit) and empty dimensions.

import assert from "node:assert/strict";
import { type Device, ops } from "../mod.ts";
import { assertExact, assertWithin } from "./assertions.ts";
import { disposeAll, randomValues, readF32, type Shape, sizeOf, testBothBackends } from "./helpers.ts";
import { broadcastIndices, broadcastShape } from "./references.ts";

/** C = op(A)·op(B) with broadcast batch axes; also returns Σ|a||b| per element (the error scale). */
function matmulRef(
  a: ArrayLike<number>,
  aShape: Shape,
  b: ArrayLike<number>,
  bShape: Shape,
  transA = false,
  transB = false,
): { out: Float64Array; shape: number[]; magnitude: Float64Array } {
  const [ar, ac] = aShape.slice(-2);
  const [br, bc] = bShape.slice(-2);
  const [M, K] = transA ? [ac, ar] : [ar, ac];
  const N = transB ? br : bc;
  const aBatchShape = aShape.slice(0, -2);
  const bBatchShape = bShape.slice(0, -2);
  const batchShape = broadcastShape(aBatchShape, bBatchShape);
  const aBatch = broadcastIndices(batchShape, aBatchShape);
  const bBatch = broadcastIndices(batchShape, bBatchShape);
  const batch = sizeOf(batchShape);
  const out = new Float64Array(batch * M * N);
  const magnitude = new Float64Array(batch * M * N);
  for (let p = 0; p < batch; p++) {
    const aOff = aBatch[p] * M * K;
    const bOff = bBatch[p] * K * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        let m = 0;
        for (let k = 0; k < K; k++) {
          const x = transA ? a[aOff + k * M + i] : a[aOff + i * K + k];
          const y = transB ? b[bOff + j * K + k] : b[bOff + k * N + j];
          s += x * y;
          m += Math.abs(x * y);
        }
        out[(p * M + i) * N + j] = s;
        magnitude[(p * M + i) * N + j] = m;
      }
    }
  }
  return { out, shape: [...batchShape, M, N], magnitude };
}

async function checkMatmul(
  device: Device,
  aShape: Shape,
  bShape: Shape,
  options: { transA?: boolean; transB?: boolean },
  seed: number,
): Promise<void> {
  const aValues = randomValues(sizeOf(aShape), seed);
  const bValues = randomValues(sizeOf(bShape), seed + 1);
  const a = device.tensor(aValues, aShape);
  const b = device.tensor(bValues, bShape);
  const c = ops.matmul(a, b, options);
  const ref = matmulRef(aValues, aShape, bValues, bShape, options.transA, options.transB);
  const what = `matmul a [${aShape}] b [${bShape}] ${JSON.stringify(options)}`;
  assert.deepEqual(c.shape, ref.shape, `${what}: shape`);
  const got = await readF32(c);
  assertWithin(got, ref.out, (i) => 1e-5 * ref.magnitude[i] + 1e-6 * Math.abs(ref.out[i]) + 1e-30, what);
  disposeAll(a, b, c);
}

testBothBackends("matmul: awkward sizes", async (device) => {
  const sizes: [number, number, number][] = [
    [1, 1, 1],
    [1, 7, 1],
    [7, 13, 31],
    [33, 65, 17],
    [129, 7, 65],
    [5, 129, 3],
    [4, 8, 12],
    [64, 64, 64],
    [130, 257, 67],
  ];
  let seed = 100;
  for (const [M, K, N] of sizes) await checkMatmul(device, [M, K], [K, N], {}, seed++);
});

testBothBackends("matmul: transA and transB combinations", async (device) => {
  let seed = 200;
  for (const [M, K, N] of [[13, 33, 7], [1, 5, 65], [66, 3, 1]] as const) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const aShape = transA ? [K, M] : [M, K];
        const bShape = transB ? [N, K] : [K, N];
        await checkMatmul(device, aShape, bShape, { transA, transB }, seed++);
      }
    }
  }
});

testBothBackends("matmul: batched with broadcast batch dims", async (device) => {
  let seed = 300;
  const cases: [Shape, Shape, boolean, boolean][] = [
    [[3, 5, 7], [3, 7, 4], false, false], // plain batch
    [[3, 5, 7], [7, 4], false, false], // b shared (stride 0)
    [[5, 7], [2, 7, 4], false, false], // a shared
    [[2, 1, 5, 7], [3, 7, 4], false, false], // batch axes broadcast against each other → [2, 3]
    [[2, 1, 7, 5], [1, 3, 4, 7], true, true],
    [[1, 13, 3], [4, 1, 13, 2], true, false],
    [[2, 3, 9, 1], [2, 3, 2, 1], false, true],
  ];
  for (const [aShape, bShape, transA, transB] of cases) await checkMatmul(device, aShape, bShape, { transA, transB }, seed++);
});

testBothBackends("matmul: more than 65,535 rows ([70001, 3] × [3, 5])", async (device) => {
  await checkMatmul(device, [70001, 3], [3, 5], {}, 400);
  await checkMatmul(device, [3, 70001], [3, 5], { transA: true }, 401);
});

testBothBackends("matmul: empty dimensions (M = 0, and K = 0 gives zeros)", async (device) => {
  const a = device.zeros([0, 3]);
  const b = device.tensor(randomValues(15, 410), [3, 5]);
  const c = ops.matmul(a, b);
  assert.deepEqual(c.shape, [0, 5]);
  assert.equal((await readF32(c)).length, 0);
  const a2 = device.zeros([2, 0]);
  const b2 = device.zeros([0, 3]);
  const c2 = ops.matmul(a2, b2);
  assert.deepEqual(c2.shape, [2, 3]);
  assertExact(await readF32(c2), [0, 0, 0, 0, 0, 0], "matmul [2, 0] × [0, 3]");
  disposeAll(a, b, c, a2, b2, c2);
});
