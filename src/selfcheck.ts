// The self-check: one op of each kernel family (forward and its gradient) on a device and on the
// CPU reference, with the largest relative difference. The CLI prints it; the web page shows it.

import { createDevice, type Device } from "./tensor/device.ts";
import * as ops from "./tensor/ops/index.ts";
import type { Tensor } from "./tensor/tensor.ts";

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
  {
    family: "matmul",
    run: (d) => withGrad(d, input(d, [ROWS, 37], 1), (x) => ops.matmul(x, input(d, [COLS, 37], 2, false), { transB: true })),
  },
  {
    family: "elementwise",
    run: (d) => withGrad(d, input(d, [ROWS, COLS], 3), (x) => ops.mul(ops.silu(x), ops.exp(ops.scale(x, 0.1)))),
  },
  { family: "reduce", run: (d) => withGrad(d, input(d, [ROWS, COLS], 4), (x) => ops.max(ops.sum(x, 0, true), 1)) },
  { family: "softmax", run: (d) => withGrad(d, input(d, [ROWS, COLS], 5), (x) => ops.logSoftmax(x)) },
  { family: "norm", run: (d) => withGrad(d, input(d, [ROWS, COLS], 6), (x) => ops.rmsNorm(x, input(d, [COLS], 7, false), 1e-5)) },
  {
    family: "copy",
    run: (d) =>
      withGrad(d, input(d, [B, T, H, D], 8), (x) => ops.slice(ops.permute(x, [0, 2, 1, 3]), [0, 1, 3, 0], [B, 2, 20, D])),
  },
  { family: "rope", run: (d) => withGrad(d, input(d, [B, H, T, D], 9), (x) => ops.rope(x, { theta: 10000, positionOffset: 5 })) },
  {
    family: "attention",
    run: (d) =>
      withGrad(
        d,
        input(d, [B, H, T, D], 10),
        (q) => ops.attention(q, input(d, [B, HKV, T, D], 11, false), input(d, [B, HKV, T, D], 12, false), { causal: true }),
      ),
  },
  {
    family: "embedding",
    run: (d) =>
      withGrad(d, input(d, [50, D], 13), (w) => ops.embedding(w, Int32Array.from({ length: 70 }, (_, i) => (i * 7) % 50))),
  },
  {
    family: "cross_entropy",
    run: (d) =>
      withGrad(d, input(d, [ROWS, COLS], 14), (x) =>
        ops.crossEntropy(
          x,
          Int32Array.from({ length: ROWS }, (_, i) => (i * 13) % COLS),
        )),
  },
  {
    family: "cast",
    run: (
      d,
    ) => [
      ops.cast(ops.cast(input(d, [ROWS, COLS], 15, false), "f16"), "f32"),
      ops.cast(ops.scale(input(d, [ROWS], 16, false), 50), "i32"),
    ],
  },
];

function largestDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const scale = Math.max(1, Math.abs(b[i]));
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / scale);
  }
  return worst;
}

export interface SelfcheckRow {
  family: string;
  ok: boolean;
  /** Largest |device − cpu| / max(1, |cpu|) over the op's output and gradient. */
  difference: number;
  milliseconds: number;
}

/** Differences above this fail the check: far beyond f32 rounding, far below a wrong kernel. */
export const SELFCHECK_TOLERANCE = 1e-3;

export async function* selfcheckRows(device: Device): AsyncGenerator<SelfcheckRow> {
  const reference = await createDevice({ backend: "cpu" });
  try {
    for (const check of CHECKS) {
      const started = performance.now();
      const values = await readAll(ops.tidy(() => check.run(device)));
      const milliseconds = performance.now() - started;
      const expected = await readAll(ops.tidy(() => check.run(reference)));
      const difference = Math.max(...values.map((v, i) => largestDifference(v, expected[i])));
      yield { family: check.family, ok: difference < SELFCHECK_TOLERANCE, difference, milliseconds };
    }
  } finally {
    reference.destroy();
  }
}

/** Reads the tensors the check produced and frees everything it made. */
async function readAll(outputs: Tensor[]): Promise<ArrayLike<number>[]> {
  const values = await Promise.all(outputs.map((t) => t.read()));
  for (const t of outputs) t.dispose();
  return values;
}
