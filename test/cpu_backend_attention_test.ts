// Smoke test of the CPU reference backend's fused attention: forward and log-sum-exp against a naive
// computation that materializes every score matrix, and the backward against central finite
// differences of the forward; causal and not, grouped-query heads.

import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import type { AttentionParams } from "../src/backend/backend.ts";
import { assertClose } from "./assertions.ts";
import { assertGradient, cpuValues, dotProduct, uniformValues } from "./cpu_backend_fixtures.ts";

/** Materializes every score matrix, masks with −Infinity and normalizes without a max shift. */
function attentionReference(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  p: AttentionParams,
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
    const q = uniformValues(2 * 4 * 5 * 3, 40).map((v) => v * 2);
    const k = uniformValues(2 * 2 * 5 * 3, 41).map((v) => v * 2);
    const v = uniformValues(2 * 2 * 5 * 3, 42);
    const { o, lse } = backend.attention(up(q), up(k), up(v), p);
    const expected = attentionReference(q, k, v, p);
    assertClose(cpuValues(o), expected.o, 1e-5, 1e-6, `attention o causal=${causal}`);
    assertClose(cpuValues(lse), expected.lse, 1e-5, 1e-6, `attention lse causal=${causal}`);

    const cotangent = uniformValues(q.length, 43);
    const grads = backend.attentionGrad(up(q), up(k), up(v), o, lse, up(cotangent), p);
    const loss = () => dotProduct(cpuValues(backend.attention(up(q), up(k), up(v), p).o), cotangent);
    assertGradient(cpuValues(grads.dq), q, loss, `attentionGrad dq causal=${causal}`);
    assertGradient(cpuValues(grads.dk), k, loss, `attentionGrad dk causal=${causal}`);
    assertGradient(cpuValues(grads.dv), v, loss, `attentionGrad dv causal=${causal}`);
  }
});
