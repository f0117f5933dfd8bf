// Smoke tests of the CPU reference backend's elementwise kernels: every unary op and activation
// derivative, and binary ops with numpy broadcasting, against naive computations written here in
// f64.

import assert from "node:assert/strict";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import type { BinaryOp, Storage } from "../src/backend/backend.ts";
import { assertClose } from "./assertions.ts";
import { cpuValues, uniformValues } from "./cpu_backend_fixtures.ts";

/** erf by its Taylor series, accurate in f64 for |x| ≤ 3. */
function erfSeries(x: number): number {
  let term = x;
  let sum = x;
  for (let n = 1; n < 80; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

const geluReference = (x: number) => 0.5 * x * (1 + erfSeries(x / Math.SQRT2));
const siluReference = (x: number) => x / (1 + Math.exp(-x));

Deno.test("cpu unary and activationGrad", () => {
  const backend = new CpuBackend();
  const x = uniformValues(41, 1).map((v) => v * 4);
  const positive = x.map(Math.abs);
  const sx = backend.upload(x, "f32");
  const sp = backend.upload(positive, "f32");
  const cases: [Parameters<CpuBackend["unary"]>[0], Storage, Float32Array, (v: number) => number][] = [
    ["neg", sx, x, (v) => -v],
    ["exp", sx, x, Math.exp],
    ["log", sp, positive, Math.log],
    ["sqrt", sp, positive, Math.sqrt],
    ["relu", sx, x, (v) => Math.max(v, 0)],
    ["silu", sx, x, siluReference],
    ["gelu", sx, x, geluReference],
  ];
  for (const [op, storage, input, reference] of cases) {
    assertClose(cpuValues(backend.unary(op, storage, input.length)), input.map(reference), 1e-6, 1e-7, op);
  }
  assertClose(cpuValues(backend.unary("scale", sx, x.length, -2.5)), x.map((v) => -2.5 * v), 1e-5, 1e-6, "scale");
  // Tail accuracy: gelu(-5) is about -1.4e-6 and must stay accurate relative to itself.
  const tail = cpuValues(backend.unary("gelu", backend.upload(new Float32Array([-5, -3]), "f32"), 2));
  assertClose(tail, [-1.4332578597e-6, -0.0040496940948], 1e-5, 0, "gelu tail");

  const dy = uniformValues(41, 2);
  const sdy = backend.upload(dy, "f32");
  const derivative = (f: (v: number) => number) => (v: number) => (f(v + 1e-5) - f(v - 1e-5)) / 2e-5;
  const grads: [Parameters<CpuBackend["activationGrad"]>[0], (v: number) => number][] = [
    ["relu", (v) => (v > 0 ? 1 : 0)],
    ["silu", derivative(siluReference)],
    ["gelu", derivative(geluReference)],
  ];
  for (const [op, reference] of grads) {
    const expected = Array.from(x, (v, i) => reference(v) * dy[i]);
    assertClose(cpuValues(backend.activationGrad(op, sx, sdy, x.length)), expected, 1e-5, 1e-6, `${op}'`);
  }
});

/** Naive broadcasting: decompose each output index and map it into a and b. */
function binaryReference(
  op: BinaryOp,
  a: Float32Array,
  aShape: number[],
  b: Float32Array,
  bShape: number[],
  outShape: number[],
): number[] {
  const total = outShape.reduce((p, d) => p * d, 1);
  const index = (flat: number, shape: number[]) => {
    let offset = 0;
    let stride = 1;
    let rest = flat;
    for (let d = outShape.length - 1; d >= 0; d--) {
      const i = rest % outShape[d];
      rest = Math.floor(rest / outShape[d]);
      const k = d - (outShape.length - shape.length);
      if (k >= 0) {
        if (shape[k] !== 1) offset += i * stride;
        stride *= shape[k];
      }
    }
    return offset;
  };
  const apply = {
    add: (x: number, y: number) => x + y,
    sub: (x: number, y: number) => x - y,
    mul: (x: number, y: number) => x * y,
    div: (x: number, y: number) => x / y,
    eq: (x: number, y: number) => (x === y ? 1 : 0),
  }[op];
  return Array.from({ length: total }, (_, i) => Math.fround(apply(a[index(i, aShape)], b[index(i, bShape)])));
}

Deno.test("cpu binary with broadcasting", () => {
  const backend = new CpuBackend();
  const cases: [number[], number[], number[]][] = [
    [[2, 3, 4], [2, 3, 4], [2, 3, 4]],
    [[2, 3, 4], [], [2, 3, 4]],
    [[1], [2, 3, 4], [2, 3, 4]],
    [[2, 3, 4], [3, 1], [2, 3, 4]],
    [[2, 1, 4], [3, 1], [2, 3, 4]],
    [[5, 1, 1, 3], [1, 6, 2, 1], [5, 6, 2, 3]],
    [[0, 3], [3], [0, 3]],
  ];
  for (const [aShape, bShape, outShape] of cases) {
    const a = uniformValues(aShape.reduce((p, d) => p * d, 1), 3);
    const b = uniformValues(bShape.reduce((p, d) => p * d, 1), 4);
    // Make some elements equal so that eq sees both outcomes.
    for (let i = 0; i < Math.min(a.length, b.length); i += 2) b[i] = a[i];
    const sa = backend.upload(a, "f32");
    const sb = backend.upload(b, "f32");
    for (const op of ["add", "sub", "mul", "div", "eq"] as const) {
      const out = cpuValues(backend.binary(op, sa, aShape, sb, bShape, outShape));
      assert.deepEqual(Array.from(out), binaryReference(op, a, aShape, b, bShape, outShape), `${op} ${aShape} ${bShape}`);
    }
  }
});
