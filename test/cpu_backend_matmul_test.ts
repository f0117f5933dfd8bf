// Smoke test of the CPU reference backend's matrix product: every transpose combination, awkward
// sizes and batches with a shared operand, against a naive triple loop in f64.

import assert from "node:assert/strict";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import type { MatmulParams } from "../src/backend/backend.ts";
import { assertClose } from "./assertions.ts";
import { cpuValues, uniformValues } from "./cpu_backend_fixtures.ts";

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
          const a = uniformValues((aShared ? 1 : batch) * M * K, seed++);
          const b = uniformValues((bShared ? 1 : batch) * N * K, seed++);
          const out = cpuValues(backend.matmul(backend.upload(a, "f32"), backend.upload(b, "f32"), p));
          const label = `matmul ${M}x${N}x${K} transA=${transA} transB=${transB} shared=${aShared},${bShared}`;
          assertClose(out, matmulReference(a, b, p), 1e-5, 1e-5, label);
        }
      }
    }
  }
  const empty = backend.matmul(backend.alloc(0, "f32"), backend.alloc(0, "f32"), {
    batch: 1,
    M: 2,
    N: 3,
    K: 0,
    transA: false,
    transB: false,
    aBatchStride: 0,
    bBatchStride: 0,
  });
  assert.deepEqual(Array.from(cpuValues(empty)), [0, 0, 0, 0, 0, 0]);
});
