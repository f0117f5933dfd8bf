// The WebGPU transformer pieces — rotary embedding and embedding lookup with its backward — against
// the CPU reference: RoPE agrees to ~1e-6 at positions in the thousands (and with scalar and vec4
// head sizes, odd and even D/2), the embedding lookup and its backward are bit-exact (the backward
// sums in token order), ids outside the vocabulary are handled as documented.

import assert from "node:assert/strict";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import type { Storage } from "../src/backend/backend.ts";
import { frequencyPlanes, rope } from "../src/backend/webgpu/programs/rope.ts";
import { embedding, embeddingGrad } from "../src/backend/webgpu/programs/embedding.ts";
import { assertClose } from "./assertions.ts";
import { gpuTest, randomValues, readGpu } from "./helpers.ts";

const cpu = new CpuBackend();
async function readCpu(storage: Storage, n: number): Promise<Float32Array> {
  return (await cpu.read(storage, n, "f32")) as Float32Array;
}

Deno.test("rope frequency planes: two 12-bit leading parts and a remainder that add up to theta^(−2j/D)", () => {
  for (const [D, theta] of [[2, 10000], [96, 10000], [128, 500000], [10, 3]]) {
    const half = D / 2;
    const planes = frequencyPlanes(D, theta);
    for (let j = 0; j < half; j++) {
      const frequency = theta ** (-2 * j / D);
      const [hi, mid, lo] = [planes[j], planes[half + j], planes[2 * half + j]];
      for (const part of [hi, mid]) {
        const significand = part === 0 ? 0 : part / 2 ** (Math.floor(Math.log2(part)) - 11);
        assert.ok(Number.isInteger(significand) && significand < 4096, `D=${D} j=${j}: ${part} has more than 12 bits`);
      }
      assert.ok(Math.abs(hi + mid + lo - frequency) <= frequency * 2 ** -46, `D=${D} j=${j}: planes do not add up`);
    }
  }
});

gpuTest("rope matches the CPU to ~1e-6, forward and inverse, at positions in the thousands", async (ctx) => {
  const cases: [rows: number, T: number, D: number, theta: number, offset: number][] = [
    [1, 1, 2, 10000, 0],
    [3, 5, 6, 10000, 0],
    [2, 7, 8, 10000, 3],
    [4, 33, 64, 10000, 0],
    [2, 50, 96, 10000, 4000],
    [3, 17, 10, 500000, 20000],
    [1, 3000, 128, 10000, 0],
    [5, 3, 14, 10000, 7],
    // Over a million rows: each invocation walks a capped block of them.
    [1100000, 1, 2, 10000, 5],
  ];
  for (const [rows, T, D, theta, offset] of cases) {
    const n = rows * T * D;
    const values = randomValues(n, n + offset, 2);
    const x = ctx.upload(values);
    for (const inverse of [false, true]) {
      const expected = await readCpu(cpu.rope(cpu.upload(values, "f32"), rows, T, D, theta, offset, inverse), n);
      const y = rope(ctx, x, rows, T, D, theta, offset, inverse);
      assertClose(
        await readGpu(ctx, y, n),
        expected,
        1e-5,
        2e-6,
        `rope [${rows}, ${T}, ${D}] offset ${offset} inverse ${inverse}`,
      );
      ctx.release(y);
    }
    ctx.release(x);
  }
});

gpuTest("rope then its inverse gives x back", async (ctx) => {
  const [rows, T, D] = [6, 40, 32];
  const values = randomValues(rows * T * D, 3);
  const x = ctx.upload(values);
  const y = rope(ctx, x, rows, T, D, 10000, 100, false);
  const back = rope(ctx, y, rows, T, D, 10000, 100, true);
  assertClose(await readGpu(ctx, back, values.length), values, 1e-5, 1e-6, "rope round trip");
  for (const storage of [x, y, back]) ctx.release(storage);
});

/** ids cycling through [−1, vocab]: every id repeats, and both ends fall outside the table. */
function awkwardIds(n: number, vocab: number): Int32Array {
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) ids[i] = ((i * 7919) % (vocab + 2)) - 1;
  return ids;
}

gpuTest("embedding lookup and its backward are bit-exact against the CPU", async (ctx) => {
  // The last two go in several dispatches of ids (more than 65,535 ids; rows of 700 columns).
  const cases: [n: number, vocab: number, dim: number][] = [
    [1, 1, 1],
    [5, 3, 7],
    [40, 11, 8],
    [1000, 17, 5],
    [2048, 1000, 64],
    [300, 70000, 3],
    [70000, 50, 1],
    [6000, 37, 700],
  ];
  for (const [n, vocab, dim] of cases) {
    const table = randomValues(vocab * dim, vocab + dim);
    const dyValues = randomValues(n * dim, n + dim);
    const idValues = awkwardIds(n, vocab);
    const idsCpu = cpu.upload(idValues, "i32");
    const expectedY = await readCpu(cpu.embedding(cpu.upload(table, "f32"), idsCpu, n, vocab, dim), n * dim);
    const expectedDw = await readCpu(cpu.embeddingGrad(idsCpu, cpu.upload(dyValues, "f32"), n, vocab, dim), vocab * dim);
    const [w, ids, dy] = [ctx.upload(table), ctx.upload(idValues), ctx.upload(dyValues)];
    const y = embedding(ctx, w, ids, n, vocab, dim);
    assert.deepEqual(await readGpu(ctx, y, n * dim), expectedY, `embedding [${n}, ${vocab}, ${dim}]`);
    const dw = embeddingGrad(ctx, ids, dy, n, vocab, dim);
    assert.deepEqual(await readGpu(ctx, dw, vocab * dim), expectedDw, `embeddingGrad [${n}, ${vocab}, ${dim}]`);
    for (const storage of [w, ids, dy, y, dw]) ctx.release(storage);
  }
});

gpuTest("embedding backward with every id the same: each dispatch of ids stays inside llvmpipe's loop budget", async (ctx) => {
  const [n, vocab, dim] = [40000, 10, 3];
  const idValues = new Int32Array(n).fill(7);
  const dyValues = randomValues(n * dim, 12);
  const expected = await readCpu(
    cpu.embeddingGrad(cpu.upload(idValues, "i32"), cpu.upload(dyValues, "f32"), n, vocab, dim),
    vocab * dim,
  );
  const [ids, dy] = [ctx.upload(idValues), ctx.upload(dyValues)];
  const dw = embeddingGrad(ctx, ids, dy, n, vocab, dim);
  assert.deepEqual(await readGpu(ctx, dw, vocab * dim), expected);
  for (const storage of [ids, dy, dw]) ctx.release(storage);
});

gpuTest("embedding accepts empty sizes", async (ctx) => {
  const w = ctx.upload(new Float32Array(4));
  const ids = ctx.upload(new Int32Array(4));
  for (const [n, vocab, dim] of [[0, 3, 2], [3, 0, 2], [3, 2, 0]]) {
    const y = embedding(ctx, w, ids, n, vocab, dim);
    const dw = embeddingGrad(ctx, ids, w, n, vocab, dim);
    assert.deepEqual(await readGpu(ctx, dw, vocab * dim), new Float32Array(vocab * dim), `dw [${n}, ${vocab}, ${dim}]`);
    if (vocab === 0) assert.deepEqual(await readGpu(ctx, y, n * dim), new Float32Array(n * dim), "no id is in an empty table");
    ctx.release(y);
    ctx.release(dw);
  }
  ctx.release(w);
  ctx.release(ids);
});
