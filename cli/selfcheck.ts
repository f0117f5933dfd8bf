// `shardlab selfcheck`: prints the chosen backend and adapter, then runs one op of each kernel
// family (forward and backward) on it and on the CPU reference, and reports the largest difference.

import { createDevice, type Device, ops, type Tensor } from "../mod.ts";
import type { BackendChoice } from "../src/tensor/device.ts";

interface Check {
  family: string;
  /** Builds the op's output from inputs made on `device`; returns the tensors to compare. */
  run: (device: Device) => Tensor[];
}

const B = 2, H = 4, HKV = 2, T = 33, D = 16, ROWS = 67, COLS = 129;

function input(device: Device, shape: number[], seed: number, requiresGrad = true): Tensor {
  return device.randn(shape, seed, { requiresGrad });
}

/** Forward output and the gradient of sum(output · r) w.r.t. the first input. */
function withGrad(device: Device, x: Tensor, f: (x: Tensor) => Tensor): Tensor[] {
  const y = f(x);
  const weights = device.randn(y.shape, 99);
  const loss = ops.sum(ops.mul(y, weights));
  void loss.backward();
  return [y, x.grad!];
}

const CHECKS: Check[] = [
  { family: "matmul", run: (d) => withGrad(d, input(d, [ROWS, 37], 1), (x) => ops.matmul(x, input(d, [COLS, 37], 2, false), { transB: true })) },
  { family: "elementwise", run: (d) => withGrad(d, input(d, [ROWS, COLS], 3), (x) => ops.mul(ops.silu(x), ops.exp(ops.scale(x, 0.1)))) },
  { family: "reduce", run: (d) => withGrad(d, input(d, [ROWS, COLS], 4), (x) => ops.max(ops.sum(x, 0, true), 1)) },
  { family: "softmax", run: (d) => withGrad(d, input(d, [ROWS, COLS], 5), (x) => ops.logSoftmax(x)) },
  { family: "norm", run: (d) => withGrad(d, input(d, [ROWS, COLS], 6), (x) => ops.rmsNorm(x, input(d, [COLS], 7, false), 1e-5)) },
  { family: "copy", run: (d) => withGrad(d, input(d, [B, T, H, D], 8), (x) => ops.slice(ops.permute(x, [0, 2, 1, 3]), [0, 1, 3, 0], [B, 2, 20, D])) },
  { family: "rope", run: (d) => withGrad(d, input(d, [B, H, T, D], 9), (x) => ops.rope(x, { theta: 10000, positionOffset: 5 })) },
  {
    family: "attention",
    run: (d) => withGrad(d, input(d, [B, H, T, D], 10), (q) => ops.attention(q, input(d, [B, HKV, T, D], 11, false), input(d, [B, HKV, T, D], 12, false), { causal: true })),
  },
  { family: "embedding", run: (d) => withGrad(d, input(d, [50, D], 13), (w) => ops.embedding(w, Int32Array.from({ length: 70 }, (_, i) => (i * 7) % 50))) },
  { family: "cross_entropy", run: (d) => withGrad(d, input(d, [ROWS, COLS], 14), (x) => ops.crossEntropy(x, Int32Array.from({ length: ROWS }, (_, i) => (i * 13) % COLS))) },
  { family: "cast", run: (d) => [ops.cast(ops.cast(input(d, [ROWS, COLS], 15, false), "f16"), "f32"), ops.cast(ops.scale(input(d, [ROWS], 16, false), 50), "i32")] },
];

function largestDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const scale = Math.max(1, Math.abs(b[i]));
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / scale);
  }
  return worst;
}

export async function selfcheck(backend: BackendChoice): Promise<boolean> {
  const device = await createDevice({ backend });
  const reference = await createDevice({ backend: "cpu" });
  console.log(`backend   ${device.name}`);
  console.log(`adapter   ${device.info.adapter}`);
  console.log(`features  ${device.info.features.join(" ") || "(none)"}`);
  console.log(`limits    ${Object.entries(device.info.limits).map(([k, v]) => `${k}=${v}`).join(" ")}`);
  console.log("");
  let allOk = true;
  for (const check of CHECKS) {
    const started = performance.now();
    const outputs = ops.tidy(() => check.run(device));
    const values = await Promise.all(outputs.map((t) => t.read()));
    const elapsed = performance.now() - started;
    const expected = await Promise.all(ops.tidy(() => check.run(reference)).map((t) => t.read()));
    const difference = Math.max(...values.map((v, i) => largestDifference(v, expected[i])));
    const ok = difference < 1e-3;
    allOk &&= ok;
    console.log(`${check.family.padEnd(14)} ${ok ? "ok  " : "FAIL"}  max relative difference ${difference.toExponential(1)}  ${elapsed.toFixed(0)} ms`);
  }
  console.log(allOk ? "\nall kernel families agree with the CPU reference" : "\nsome kernel families disagree with the CPU reference");
  device.destroy();
  reference.destroy();
  return allOk;
}
