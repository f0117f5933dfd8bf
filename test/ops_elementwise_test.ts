// Forward values of the elementwise ops (add, sub, mul, div, equal, and every unary op) on both
// backends against naive references written here in plain JS doubles (never the CPU backend):
// numpy broadcasting, awkward sizes, far tails of the activations, more than 65,535 rows and more
// than 65,535 workgroups.

import assert from "node:assert/strict";
import { type Device, ops, type Tensor } from "../mod.ts";
import { assertClose, assertExact } from "./assertions.ts";
import { disposeAll, randomValues, readF32, type Shape, sizeOf, testBothBackends } from "./helpers.ts";
import { broadcastIndices, broadcastShape } from "./references.ts";

function erfcPositive(x: number): number {
  if (x < 3) return 1 - erfSeries(x);
  // Continued fraction erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))).
  let f = x;
  for (let k = 80; k >= 1; k--) f = x + (k / 2) / f;
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}

/** Taylor series of erf, accurate in doubles for |x| < 3. */
function erfSeries(x: number): number {
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (-x * x) / n;
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

function erf(x: number): number {
  return x >= 0 ? 1 - erfcPositive(x) : erfcPositive(-x) - 1;
}

function geluRef(x: number): number {
  // 0.5·x·(1 + erf(x/√2)); for x < 0 as 0.5·x·erfc(|x|/√2) to avoid cancellation.
  return x >= 0 ? 0.5 * x * (1 + erf(x / Math.SQRT2)) : 0.5 * x * erfcPositive(-x / Math.SQRT2);
}

/** Seeded values in ±(lo..hi) — bounded away from zero. */
function awayFromZero(n: number, seed: number, lo: number, hi: number): Float32Array {
  const u = randomValues(n, seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const magnitude = lo + (hi - lo) * (0.5 + 0.5 * Math.tanh(u[i]));
    out[i] = i % 3 === 1 ? -magnitude : magnitude;
  }
  return out;
}

function positive(n: number, seed: number, lo: number, hi: number): Float32Array {
  return awayFromZero(n, seed, lo, hi).map(Math.abs);
}

const BINARY_REFS = {
  add: (x: number, y: number) => x + y,
  sub: (x: number, y: number) => x - y,
  mul: (x: number, y: number) => x * y,
  div: (x: number, y: number) => x / y,
} as const;

async function checkBinary(device: Device, op: keyof typeof BINARY_REFS, aShape: Shape, bShape: Shape, seed: number) {
  const aValues = randomValues(sizeOf(aShape), seed);
  const bValues = op === "div" ? awayFromZero(sizeOf(bShape), seed + 1, 0.5, 2) : randomValues(sizeOf(bShape), seed + 1);
  const a = device.tensor(aValues, aShape);
  const b = device.tensor(bValues, bShape);
  const c = ops[op](a, b);
  const outShape = broadcastShape(aShape, bShape);
  const what = `${op} [${aShape}] and [${bShape}]`;
  assert.deepEqual(c.shape, outShape, `${what}: shape`);
  const ai = broadcastIndices(outShape, aShape);
  const bi = broadcastIndices(outShape, bShape);
  const expected = Array.from(ai, (ia, i) => BINARY_REFS[op](aValues[ia], bValues[bi[i]]));
  assertClose(await readF32(c), expected, 1e-5, 1e-7, what);
  disposeAll(a, b, c);
}

const BROADCAST_CASES: [Shape, Shape][] = [
  [[1], [1]],
  [[7, 13], [7, 13]],
  [[7, 13], [13]],
  [[7, 1], [1, 13]],
  [[13], [7, 13]],
  [[3, 1, 5], [4, 1]],
  [[2, 3, 1, 5], [3, 7, 1]],
  [[33], [1]],
  [[], [65]],
  [[129, 5], []],
  [[8, 16], [16]],
  [[4, 1, 8], [1, 4, 8]],
];

for (const op of ["add", "sub", "mul", "div"] as const) {
  testBothBackends(`${op}: broadcasting`, async (device) => {
    let seed = 500;
    for (const [aShape, bShape] of BROADCAST_CASES) await checkBinary(device, op, aShape, bShape, seed++);
  });
}

testBothBackends("add and mul: more than 65,535 rows ([70001, 3] with [3] and [70001, 1])", async (device) => {
  await checkBinary(device, "add", [70001, 3], [3], 600);
  await checkBinary(device, "mul", [70001, 1], [70001, 3], 601);
});

testBothBackends("equal: broadcasting, 1 where equal", async (device) => {
  const aValues = new Float32Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 0.5, -0, 7]);
  const bValues = new Float32Array([1, 5, 3, 0.5, 0]);
  const a = device.tensor(aValues, [3, 5]);
  const b = device.tensor(bValues, [5]);
  const c = ops.equal(a, b);
  const expected = Array.from(aValues, (x, i) => (x === bValues[i % 5] ? 1 : 0));
  assertExact(await readF32(c), expected, "equal");
  disposeAll(a, b, c);
});

const UNARY_CASES: {
  name: string;
  run: (x: Tensor) => Tensor;
  ref: (x: number) => number;
  input: (n: number, s: number) => Float32Array;
  rtol: number;
  atol: number;
}[] = [
  {
    name: "scale",
    run: (x) => ops.scale(x, -2.5),
    ref: (x) => -2.5 * x,
    input: (n, s) => randomValues(n, s, 3),
    rtol: 1e-6,
    atol: 0,
  },
  { name: "neg", run: (x) => ops.neg(x), ref: (x) => -x, input: (n, s) => randomValues(n, s, 3), rtol: 0, atol: 0 },
  { name: "exp", run: (x) => ops.exp(x), ref: Math.exp, input: (n, s) => randomValues(n, s, 3), rtol: 1e-5, atol: 0 },
  { name: "log", run: (x) => ops.log(x), ref: Math.log, input: (n, s) => positive(n, s, 1e-3, 50), rtol: 1e-5, atol: 1e-6 },
  { name: "sqrt", run: (x) => ops.sqrt(x), ref: Math.sqrt, input: (n, s) => positive(n, s, 1e-4, 100), rtol: 1e-5, atol: 0 },
  { name: "relu", run: (x) => ops.relu(x), ref: (x) => Math.max(0, x), input: (n, s) => randomValues(n, s, 3), rtol: 0, atol: 0 },
  {
    name: "silu",
    run: (x) => ops.silu(x),
    ref: (x) => x / (1 + Math.exp(-x)),
    input: (n, s) => randomValues(n, s, 4),
    rtol: 1e-5,
    atol: 1e-7,
  },
  { name: "gelu", run: (x) => ops.gelu(x), ref: geluRef, input: (n, s) => randomValues(n, s, 3), rtol: 1e-5, atol: 1e-6 },
];

for (const c of UNARY_CASES) {
  testBothBackends(`${c.name}: values`, async (device) => {
    let seed = 700;
    for (const shape of [[1], [7], [13, 31], [3, 65], [8, 16], [129, 33]] as Shape[]) {
      const values = c.input(sizeOf(shape), seed++);
      const x = device.tensor(values, shape);
      const y = c.run(x);
      assert.deepEqual(y.shape, shape);
      assertClose(await readF32(y), Array.from(values, c.ref), c.rtol, c.atol, `${c.name} [${shape}]`);
      disposeAll(x, y);
    }
  });
}

testBothBackends("gelu and silu: far tails and zero", async (device) => {
  const values = new Float32Array([0, -0, 1e-6, -1e-6, 5, -5, 8, -8, 12, -12, 30, -30]);
  const x = device.tensor(values, [values.length]);
  const g = ops.gelu(x);
  const s = ops.silu(x);
  assertClose(await readF32(g), Array.from(values, geluRef), 1e-5, 1e-6, "gelu tails");
  assertClose(await readF32(s), Array.from(values, (v) => v / (1 + Math.exp(-v))), 1e-5, 1e-7, "silu tails");
  disposeAll(x, g, s);
});

testBothBackends("unary: more than 65,535 workgroups (16,843,009 elements)", async (device) => {
  const shape = [65537, 257];
  const n = sizeOf(shape);
  const values = randomValues(n, 800);
  const x = device.tensor(values, shape);
  const y = ops.neg(x);
  const got = await readF32(y);
  disposeAll(x, y);
  for (let i = 0; i < n; i++) {
    if (got[i] !== -values[i]) assert.fail(`neg [${shape}]: index ${i}: got ${got[i]}, expected ${-values[i]}`);
  }
});
