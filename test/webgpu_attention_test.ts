// The WebGPU fused attention (forward and backward) against the CPU reference: causal and not,
// T in {1, 7, 33, 100}, D in {7, 16, 64}, grouped-query (Hq = 4, Hkv = 2) and plain heads, a head
// whose chunks split unevenly into the kernels' four segments (D = 40), more than 65,535 workgroups,
// and the empty cases (T = 0, D = 0). (Wider heads such as 96, 128 or 256 take the same code with longer segments;
// they are left out only because compiling them costs llvmpipe tens of seconds.)

import assert from "node:assert/strict";
import type { AttentionParams } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import type { GpuContext } from "../src/backend/webgpu/gpu_context.ts";
import { attention, attentionGrad } from "../src/backend/webgpu/programs/attention.ts";
import { assertClose } from "./assertions.ts";
import { gpuTest, randomValues, readGpu } from "./helpers.ts";

const cpu = new CpuBackend();

type Shape = Omit<AttentionParams, "scale">;

/** Runs forward and backward on both backends from the same inputs and compares every output. */
async function check(ctx: GpuContext, shape: Shape, seed: number): Promise<void> {
  const p: AttentionParams = { ...shape, scale: 1 / Math.sqrt(shape.D) };
  const { B, Hq, Hkv, T, D } = p;
  const queryElements = B * Hq * T * D;
  const keyElements = B * Hkv * T * D;
  const inputs = {
    q: randomValues(queryElements, seed),
    k: randomValues(keyElements, seed + 1),
    v: randomValues(keyElements, seed + 2),
    dO: randomValues(queryElements, seed + 3),
  };
  const what = `B ${B} Hq ${Hq} Hkv ${Hkv} T ${T} D ${D}${p.causal ? " causal" : ""}`;

  const [q, k, v, dO] = [inputs.q, inputs.k, inputs.v, inputs.dO].map((values) => cpu.upload(values, "f32"));
  const expected = cpu.attention(q, k, v, p);
  const expectedGrads = cpu.attentionGrad(q, k, v, expected.o, expected.lse, dO, p);

  const [gq, gk, gv, gdO] = [inputs.q, inputs.k, inputs.v, inputs.dO].map((values) => ctx.upload(values));
  const actual = attention(ctx, gq, gk, gv, p);
  const actualGrads = attentionGrad(ctx, gq, gk, gv, actual.o, actual.lse, gdO, p);

  const outputs: [string, number, typeof expected.o, typeof actual.o, number][] = [
    ["o", queryElements, expected.o, actual.o, 1e-5],
    ["lse", B * Hq * T, expected.lse, actual.lse, 1e-5],
    ["dq", queryElements, expectedGrads.dq, actualGrads.dq, 2e-5],
    ["dk", keyElements, expectedGrads.dk, actualGrads.dk, 2e-5],
    ["dv", keyElements, expectedGrads.dv, actualGrads.dv, 2e-5],
  ];
  for (const [name, n, cpuStorage, gpuStorage, atol] of outputs) {
    assertClose(await readGpu(ctx, gpuStorage, n), await cpu.read(cpuStorage, n, "f32"), 1e-4, atol, `${name}, ${what}`);
  }
  const storages = [gq, gk, gv, gdO, actual.o, actual.lse, actualGrads.dq, actualGrads.dk, actualGrads.dv];
  for (const storage of storages) ctx.release(storage);
}

for (const D of [7, 16, 64]) {
  gpuTest(`D = ${D}: forward and backward match the CPU, causal or not, grouped-query or not, T = 1, 7, 33, 100`, async (ctx) => {
    let seed = D * 1000;
    for (const causal of [false, true]) {
      for (const [Hq, Hkv] of [[4, 2], [2, 2]]) {
        for (const T of [1, 7, 33, 100]) await check(ctx, { B: 1, Hq, Hkv, T, D, causal }, seed += 10);
      }
    }
    await check(ctx, { B: 2, Hq: 4, Hkv: 1, T: 20, D, causal: true }, seed + 10);
  });
}

gpuTest("D = 40: ten chunks of 4 cut into segments of 3, 3, 3 and 1", async (ctx) => {
  await check(ctx, { B: 1, Hq: 2, Hkv: 1, T: 70, D: 40, causal: true }, 50);
  await check(ctx, { B: 1, Hq: 2, Hkv: 2, T: 9, D: 40, causal: false }, 60);
});

gpuTest("more than 65,535 workgroups (one per head here) are folded over two dimensions", async (ctx) => {
  await check(ctx, { B: 700, Hq: 100, Hkv: 50, T: 1, D: 4, causal: true }, 70);
});

gpuTest("T = 0 gives empty outputs; D = 0 gives the log of the visible key count", async (ctx) => {
  const empty = ctx.upload(new Float32Array(0));
  const p: AttentionParams = { B: 1, Hq: 2, Hkv: 1, T: 0, D: 8, causal: true, scale: 1 };
  const { o, lse } = attention(ctx, empty, empty, empty, p);
  const { dq, dk, dv } = attentionGrad(ctx, empty, empty, empty, o, lse, empty, p);
  for (const storage of [o, lse, dq, dk, dv]) {
    assert.equal((await readGpu(ctx, storage, 0)).length, 0);
    ctx.release(storage);
  }
  for (const causal of [false, true]) {
    const noHead: AttentionParams = { ...p, T: 3, D: 0, causal };
    const cpuEmpty = cpu.upload(new Float32Array(0), "f32");
    const expected = await cpu.read(cpu.attention(cpuEmpty, cpuEmpty, cpuEmpty, noHead).lse, 6, "f32");
    const actual = attention(ctx, empty, empty, empty, noHead);
    assertClose(await readGpu(ctx, actual.lse, 6), expected, 1e-6, 1e-7, `lse with D = 0${causal ? ", causal" : ""}`);
    ctx.release(actual.o);
    ctx.release(actual.lse);
  }
  ctx.release(empty);
});
