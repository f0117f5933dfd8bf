// Smoke test of the CPU reference backend's reductions: sum, mean and max over each axis, and over
// empty axes, against a naive computation written here.

import assert from "node:assert/strict";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { assertClose } from "./assertions.ts";
import { cpuValues, uniformValues } from "./cpu_backend_fixtures.ts";

Deno.test("cpu reduce over each axis of [3, 5, 7]", () => {
  const backend = new CpuBackend();
  const shape = [3, 5, 7];
  const x = uniformValues(105, 5);
  const sx = backend.upload(x, "f32");
  for (let axis = 0; axis < 3; axis++) {
    const outer = shape.slice(0, axis).reduce((p, d) => p * d, 1);
    const length = shape[axis];
    const inner = shape.slice(axis + 1).reduce((p, d) => p * d, 1);
    for (const op of ["sum", "mean", "max"] as const) {
      const expected: number[] = [];
      for (let o = 0; o < outer; o++) {
        for (let i = 0; i < inner; i++) {
          const column = Array.from({ length }, (_, l) => x[(o * length + l) * inner + i]);
          const sum = column.reduce((p, v) => p + v, 0);
          expected.push(op === "max" ? Math.max(...column) : op === "mean" ? sum / length : sum);
        }
      }
      assertClose(cpuValues(backend.reduce(op, sx, outer, length, inner)), expected, 1e-5, 1e-6, `${op} axis ${axis}`);
    }
  }
  const empty = backend.alloc(0, "f32");
  assert.deepEqual(Array.from(cpuValues(backend.reduce("sum", empty, 2, 0, 3))), [0, 0, 0, 0, 0, 0]);
  assert.deepEqual(Array.from(cpuValues(backend.reduce("max", empty, 1, 0, 2))), [-Infinity, -Infinity]);
});
