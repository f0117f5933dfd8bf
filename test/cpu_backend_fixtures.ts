// Fixtures of the CPU backend's kernel tests, which drive CpuBackend directly and need no device:
// uniform inputs, the contents of a storage, and backward kernels checked against central finite
// differences of their forward (CpuBackend runs its kernels synchronously, so the loss is a plain
// function of the perturbed host array).

import type { Storage } from "../src/backend/backend.ts";
import type { CpuStorage } from "../src/backend/cpu/cpu_backend.ts";
import { assertClose } from "./assertions.ts";

/** Deterministic uniform values in [-1, 1) (mulberry32). */
export function uniformValues(n: number, seed: number): Float32Array {
  let state = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

/** The f32 contents of a CPU backend storage, without a copy. */
export function cpuValues(storage: Storage): Float32Array {
  return (storage as CpuStorage).data as Float32Array;
}

/** Σ output·cotangent in f64: the scalar whose gradient a backward kernel computes. */
export function dotProduct(output: Float32Array, cotangent: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < output.length; i++) sum += output[i] * cotangent[i];
  return sum;
}

/** Central differences of loss with respect to every element of x (perturbed in place). */
function centralDifferences(x: Float32Array, loss: () => number, eps = 1e-2): Float64Array {
  const grad = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const saved = x[i];
    x[i] = saved + eps;
    const plus = loss();
    x[i] = saved - eps;
    const minus = loss();
    x[i] = saved;
    grad[i] = (plus - minus) / (2 * eps);
  }
  return grad;
}

export function assertGradient(analytic: Float32Array, x: Float32Array, loss: () => number, label: string): void {
  assertClose(analytic, centralDifferences(x, loss), 1e-2, 2e-3, label);
}
