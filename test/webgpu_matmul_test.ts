// The WebGPU matrix product against the CPU reference: all four transpose combinations on sizes of
// 1, primes and non-multiples of 4 and of the 128×128 tile (scalar loads), on sizes that take the
// vec4 loads (including vec4 with an odd K or odd M, N), batches with a broadcast operand, products
// split along K, more than 65,535 rows, more than 65,535 workgroups, and the empty cases.

import assert from "node:assert/strict";
import type { MatmulParams } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import type { GpuContext } from "../src/backend/webgpu/gpu_context.ts";
import { kSlices, matmul } from "../src/backend/webgpu/programs/matmul.ts";
import { assertClose } from "./assertions.ts";
import { gpuTest, randomValues, readGpu } from "./helpers.ts";

const cpu = new CpuBackend();

interface Case {
  M: number;
  N: number;
  K: number;
  batch?: number;
  /** Which operands hold one matrix for the whole batch. */
  broadcastA?: boolean;
  broadcastB?: boolean;
  /** Forces the split along K (by default the program chooses it from the sizes). */
  slices?: number;
}

/** Runs one product on both backends and compares; f32 sums of K products round by about √K ulps. */
async function check(ctx: GpuContext, c: Case, transA: boolean, transB: boolean, seed: number): Promise<void> {
  const { M, N, K } = c;
  const batch = c.batch ?? 1;
  const p: MatmulParams = {
    batch,
    M,
    N,
    K,
    transA,
    transB,
    aBatchStride: c.broadcastA ? 0 : M * K,
    bBatchStride: c.broadcastB ? 0 : K * N,
  };
  const a = randomValues((c.broadcastA ? 1 : batch) * M * K, seed);
  const b = randomValues((c.broadcastB ? 1 : batch) * K * N, seed + 1);
  const expected = await cpu.read(cpu.matmul(cpu.upload(a, "f32"), cpu.upload(b, "f32"), p), batch * M * N, "f32");
  const aGpu = ctx.upload(a);
  const bGpu = ctx.upload(b);
  const out = matmul(ctx, aGpu, bGpu, p, c.slices);
  const actual = await readGpu(ctx, out, batch * M * N);
  const what = `batch ${batch} ${M}×${K}${transA ? "ᵀ" : ""} · ${K}×${N}${transB ? "ᵀ" : ""}${
    c.slices ? ` in ${c.slices} slices` : ""
  }`;
  assertClose(actual, expected, 1e-5, 2e-6 * Math.sqrt(K) + 1e-7, what);
  for (const storage of [aGpu, bGpu, out]) ctx.release(storage);
}

const TRANSPOSES: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];

gpuTest("awkward sizes match the CPU for every transpose combination", async (ctx) => {
  const cases: Case[] = [
    { M: 1, N: 1, K: 1 },
    { M: 1, N: 7, K: 13 },
    { M: 17, N: 1, K: 5 },
    { M: 31, N: 33, K: 37 },
    { M: 65, N: 129, K: 63 },
    { M: 3, N: 130, K: 2 },
  ];
  let seed = 1;
  for (const c of cases) for (const [transA, transB] of TRANSPOSES) await check(ctx, c, transA, transB, seed += 2);
});

gpuTest("sizes that take the vec4 loads match the CPU for every transpose combination", async (ctx) => {
  const cases: Case[] = [
    { M: 64, N: 64, K: 64 },
    { M: 132, N: 260, K: 20 },
    { M: 4, N: 4, K: 4 },
  ];
  let seed = 100;
  for (const c of cases) for (const [transA, transB] of TRANSPOSES) await check(ctx, c, transA, transB, seed += 2);
  // vec4 needs only the contiguous dimensions to be multiples of 4: K is odd for aᵀ·b, M and N for a·bᵀ.
  await check(ctx, { M: 8, N: 12, K: 5 }, true, false, 200);
  await check(ctx, { M: 5, N: 7, K: 8 }, false, true, 202);
});

gpuTest("batches, with either operand broadcast", async (ctx) => {
  let seed = 300;
  for (const [transA, transB] of TRANSPOSES) {
    await check(ctx, { M: 5, N: 6, K: 7, batch: 3, broadcastB: true }, transA, transB, seed += 2);
    await check(ctx, { M: 8, N: 12, K: 16, batch: 3, broadcastA: true }, transA, transB, seed += 2);
    await check(ctx, { M: 9, N: 4, K: 3, batch: 2 }, transA, transB, seed += 2);
  }
});

gpuTest("split along K: the slices' partial products, summed in order, match the CPU", async (ctx) => {
  // The rule: about 4 workgroups when the tiles are fewer, slices of at least 256 of K.
  assert.equal(kSlices(1, 4096), 4);
  assert.equal(kSlices(1, 700), 2);
  assert.equal(kSlices(3, 1024), 2);
  assert.equal(kSlices(3, 300), 1);
  assert.equal(kSlices(4, 4096), 1);
  const cases: Case[] = [
    { M: 64, N: 64, K: 1024 },
    { M: 37, N: 5, K: 1000, slices: 3 },
    { M: 96, N: 64, K: 777, slices: 7 },
    { M: 5, N: 130, K: 600, batch: 2, broadcastA: true, slices: 4 },
    // More slices than K has steps of 16: every slice is one step.
    { M: 8, N: 12, K: 40, slices: 100 },
  ];
  let seed = 350;
  for (const c of cases) for (const [transA, transB] of TRANSPOSES) await check(ctx, c, transA, transB, seed += 2);
});

gpuTest("more than 65,535 rows", async (ctx) => {
  await check(ctx, { M: 70_000, N: 4, K: 4 }, false, false, 400);
  await check(ctx, { M: 70_000, N: 3, K: 5 }, true, false, 401);
});

gpuTest("more than 65,535 workgroups (one per batch entry) are folded over two dimensions", async (ctx) => {
  await check(ctx, { M: 1, N: 2, K: 3, batch: 66_000 }, false, false, 500);
});

gpuTest("K = 0 gives zeros and empty outputs give empty storages", async (ctx) => {
  const a = ctx.upload(new Float32Array(0));
  const p: MatmulParams = { batch: 2, M: 3, N: 5, K: 0, transA: false, transB: false, aBatchStride: 0, bBatchStride: 0 };
  const zeros = matmul(ctx, a, a, p);
  assert.deepEqual(await readGpu(ctx, zeros, 30), new Float32Array(30));
  const empty = matmul(ctx, a, a, { ...p, M: 0, K: 4 });
  assert.equal((await readGpu(ctx, empty, 0)).length, 0);
  for (const storage of [a, zeros, empty]) ctx.release(storage);
});
