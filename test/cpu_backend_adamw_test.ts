// Smoke test of the CPU reference backend's fused AdamW step, against one step worked out by hand.

import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { assertClose } from "./assertions.ts";
import { cpuValues } from "./cpu_backend_fixtures.ts";

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
  assertClose(cpuValues(m), [0.115, 0.2], 1e-5, 1e-6, "m");
  assertClose(cpuValues(v), [0.0100525, 0.004], 1e-5, 1e-6, "v");
  assertClose(cpuValues(param), [update(1, 0.115, 0.0100525), update(-2, 0.2, 0.004)], 1e-5, 1e-6, "param");
});
