// Gradients of every differentiable op against central finite differences.
//
// For each case the loss is L = sum(op(inputs) ∘ R) for a fixed random R, built with ops.mul and
// ops.sum and backpropagated. The finite differences (L(x + h·e_i) − L(x − h·e_i)) / 2h run the op
// in f32 on the CPU device for every element of every input; only the final contraction with R is
// done in doubles on the host, to keep f32 rounding of the scalar loss out of the quotient. The
// [cpu] variant compares the CPU gradients with the finite differences; the [webgpu] variant
// compares WebGPU's gradients with the finite differences and, tightly, with the CPU's.

import assert from "node:assert/strict";
import { type Device, ops, type Tensor } from "../mod.ts";
import { assertClose, cpuDevice, randomValues, readF32, testBothBackends } from "./helpers.ts";

type Shape = readonly number[];

interface GradCase {
  name: string;
  inputs: { shape: Shape; values: Float32Array }[];
  /** Builds the op's output from the differentiable inputs (constants such as ids are captured). */
  fn: (xs: Tensor[], device: Device) => Tensor;
  /** Finite-difference step (default 1e-2). */
  h?: number;
  /** Check every k-th element of each input by finite differences (default every element). */
  stride?: number;
  /** [rtol, atol] against the finite differences (default FD_TOLERANCE). */
  tolerance?: [number, number];
}

// With the contraction in doubles, the finite differences of these cases agree with the analytic
// gradients to about 3e-4 relative + 3e-5 absolute (f32 rounding of the op's outputs and the h²
// truncation); this leaves a margin of about 7 and still catches a 1% error in any gradient.
const FD_TOLERANCE: [number, number] = [2e-3, 2e-4];

function sizeOf(shape: Shape): number {
  return shape.reduce((a, b) => a * b, 1);
}

function input(shape: Shape, values: Float32Array | ((n: number) => Float32Array)) {
  return { shape, values: typeof values === "function" ? values(sizeOf(shape)) : values };
}

let seedCounter = 5000;
/** Standard normal values (scaled) with a fresh seed. */
function normal(scale = 1) {
  return (n: number) => randomValues(n, seedCounter++, scale);
}

/** Values with magnitude in [lo, hi], signs mixed (kept away from a kink or pole at 0). */
function awayFromZero(lo: number, hi: number, signed = true) {
  return (n: number) => {
    const u = randomValues(n, seedCounter++);
    return Float32Array.from(u, (x, i) => {
      const magnitude = lo + (hi - lo) * (0.5 + 0.5 * Math.tanh(x));
      return signed && i % 3 !== 0 ? -magnitude : magnitude;
    });
  };
}

/** A shuffled ladder of distinct values, `gap` apart: no near-ties for max(). */
function distinct(gap: number) {
  return (n: number) => {
    const order = randomValues(n, seedCounter++);
    const ranks = Array.from(order.keys()).sort((a, b) => order[a] - order[b]);
    const out = new Float32Array(n);
    ranks.forEach((position, rank) => (out[position] = (rank - n / 2) * gap));
    return out;
  };
}

function f16Round(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const ax = Math.abs(x);
  let e = Math.floor(Math.log2(ax));
  if (2 ** e > ax) e--;
  if (2 ** (e + 1) <= ax) e++;
  const quantum = 2 ** (Math.max(e, -14) - 10);
  const n = ax / quantum;
  const f = Math.floor(n);
  const rounded = (n - f > 0.5 || (n - f === 0.5 && f % 2 === 1) ? f + 1 : f) * quantum;
  return Math.sign(x) * (rounded > 65504 ? Infinity : rounded);
}

// ---------------------------------------------------------------------------------------------
// machinery
// ---------------------------------------------------------------------------------------------

/** op(inputs) on the device without recording gradients: its values and shape. */
async function forwardValues(device: Device, c: GradCase, values: Float32Array[]): Promise<{ out: Float32Array; shape: Shape }> {
  const y = ops.noGrad(() => ops.tidy(() => c.fn(values.map((v, i) => device.tensor(v, c.inputs[i].shape)), device)));
  const out = await readF32(y);
  const shape = y.shape;
  y.dispose();
  return { out, shape };
}

/** The analytic gradient of sum(op(inputs) ∘ R) for every input, through backward(). */
async function analyticGrads(device: Device, c: GradCase, r: Float32Array): Promise<Float32Array[]> {
  const xs = c.inputs.map((inp) => device.tensor(inp.values, inp.shape, { requiresGrad: true }));
  const loss = ops.tidy(() => {
    const y = c.fn(xs, device);
    return ops.sum(ops.mul(y, device.tensor(r, y.shape)));
  });
  assert.deepEqual(loss.shape, []);
  await loss.backward();
  const grads: Float32Array[] = [];
  for (const [i, x] of xs.entries()) {
    assert.ok(x.grad, `${c.name}: input ${i} got no gradient`);
    assert.deepEqual(x.grad.shape, x.shape, `${c.name}: input ${i} gradient shape`);
    grads.push(await readF32(x.grad));
    x.grad.dispose();
    x.dispose();
  }
  loss.dispose();
  return grads;
}

interface Reference {
  r: Float32Array;
  fd: { index: number[]; values: number[] }[];
  cpu: Float32Array[];
}

const references = new Map<string, Promise<Reference>>();

function reference(c: GradCase): Promise<Reference> {
  let ref = references.get(c.name);
  if (!ref) {
    ref = computeReference(c);
    references.set(c.name, ref);
  }
  return ref;
}

async function computeReference(c: GradCase): Promise<Reference> {
  const cpu = await cpuDevice();
  const base = c.inputs.map((inp) => inp.values);
  const { out, shape } = await forwardValues(cpu, c, base);
  const r = randomValues(sizeOf(shape), 4242 + out.length);
  const loss = async (values: Float32Array[]) => {
    const y = (await forwardValues(cpu, c, values)).out;
    let total = 0;
    for (let i = 0; i < y.length; i++) total += y[i] * r[i];
    return total;
  };
  const h = c.h ?? 1e-2;
  const fd: Reference["fd"] = [];
  for (const [j, inp] of c.inputs.entries()) {
    const index: number[] = [];
    const values: number[] = [];
    for (let i = 0; i < inp.values.length; i += c.stride ?? 1) {
      const plus = base.map((v) => v.slice());
      const minus = base.map((v) => v.slice());
      plus[j][i] += h;
      minus[j][i] -= h;
      // The step actually taken in f32.
      const step = plus[j][i] - minus[j][i];
      index.push(i);
      values.push(((await loss(plus)) - (await loss(minus))) / step);
    }
    fd.push({ index, values });
  }
  return { r, fd, cpu: await analyticGrads(cpu, c, r) };
}

function gradTest(c: GradCase): void {
  testBothBackends(`grad: ${c.name}`, async (device) => {
    const ref = await reference(c);
    const grads = device.name === "cpu" ? ref.cpu : await analyticGrads(device, c, ref.r);
    for (const [j, g] of grads.entries()) {
      const { index, values } = ref.fd[j];
      const [rtol, atol] = c.tolerance ?? FD_TOLERANCE;
      assertClose(
        index.map((i) => g[i]),
        values,
        rtol,
        atol,
        `${c.name}: input ${j} [${c.inputs[j].shape}] vs finite differences (element index)`,
      );
      if (device.name !== "cpu") {
        const scale = Math.max(1, ...ref.cpu[j].map(Math.abs));
        assertClose(g, ref.cpu[j], 1e-4, 1e-5 * scale, `${c.name}: input ${j} [${c.inputs[j].shape}] ${device.name} vs cpu`);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// cases
// ---------------------------------------------------------------------------------------------

const CASES: GradCase[] = [];

// matmul: every transpose combination, and batched with broadcast batch dims.
for (const transA of [false, true]) {
  for (const transB of [false, true]) {
    const [M, K, N] = [3, 4, 5];
    CASES.push({
      name: `matmul transA=${transA} transB=${transB}`,
      inputs: [input(transA ? [K, M] : [M, K], normal()), input(transB ? [N, K] : [K, N], normal())],
      fn: ([a, b]) => ops.matmul(a, b, { transA, transB }),
    });
  }
}
CASES.push(
  {
    name: "matmul batched, batch axes broadcast [2,1,3,4]×[3,4,2]",
    inputs: [input([2, 1, 3, 4], normal()), input([3, 4, 2], normal())],
    fn: ([a, b]) => ops.matmul(a, b),
  },
  {
    name: "matmul batched, shared b [2,3,4]×[4,5]",
    inputs: [input([2, 3, 4], normal()), input([4, 5], normal())],
    fn: ([a, b]) => ops.matmul(a, b),
  },
  {
    name: "matmul batched, shared a [3,4]×[2,4,5]",
    inputs: [input([3, 4], normal()), input([2, 4, 5], normal())],
    fn: ([a, b]) => ops.matmul(a, b),
  },
  {
    name: "matmul batched transA transB [2,1,4,3]ᵀ×[3,5,4]ᵀ",
    inputs: [input([2, 1, 4, 3], normal()), input([3, 5, 4], normal())],
    fn: ([a, b]) => ops.matmul(a, b, { transA: true, transB: true }),
  },
);

// Broadcasting arithmetic.
CASES.push(
  { name: "add same shape [3,4]", inputs: [input([3, 4], normal()), input([3, 4], normal())], fn: ([a, b]) => ops.add(a, b) },
  { name: "add [3,4]+[4]", inputs: [input([3, 4], normal()), input([4], normal())], fn: ([a, b]) => ops.add(a, b) },
  { name: "add [2,1,3]+[4,1]", inputs: [input([2, 1, 3], normal()), input([4, 1], normal())], fn: ([a, b]) => ops.add(a, b) },
  { name: "add []+[5]", inputs: [input([], normal()), input([5], normal())], fn: ([a, b]) => ops.add(a, b) },
  { name: "sub [3,1]-[1,4]", inputs: [input([3, 1], normal()), input([1, 4], normal())], fn: ([a, b]) => ops.sub(a, b) },
  { name: "sub [4]-[2,3,4]", inputs: [input([4], normal()), input([2, 3, 4], normal())], fn: ([a, b]) => ops.sub(a, b) },
  { name: "mul [2,3,4]*[3,1]", inputs: [input([2, 3, 4], normal()), input([3, 1], normal())], fn: ([a, b]) => ops.mul(a, b) },
  { name: "mul [5]*[5]", inputs: [input([5], normal()), input([5], normal())], fn: ([a, b]) => ops.mul(a, b) },
  {
    name: "div [3,4]/[4]",
    inputs: [input([3, 4], normal()), input([4], awayFromZero(0.7, 2))],
    fn: ([a, b]) => ops.div(a, b),
    h: 5e-3,
  },
  {
    name: "div [4]/[3,4]",
    inputs: [input([4], normal()), input([3, 4], awayFromZero(0.7, 2))],
    fn: ([a, b]) => ops.div(a, b),
    h: 5e-3,
  },
);

// Unary.
CASES.push(
  { name: "scale", inputs: [input([3, 5], normal())], fn: ([x]) => ops.scale(x, -1.7) },
  { name: "neg", inputs: [input([3, 5], normal())], fn: ([x]) => ops.neg(x) },
  { name: "exp", inputs: [input([3, 5], normal())], fn: ([x]) => ops.exp(x) },
  { name: "log", inputs: [input([3, 5], awayFromZero(0.5, 2.5, false))], fn: ([x]) => ops.log(x), h: 5e-3 },
  { name: "sqrt", inputs: [input([3, 5], awayFromZero(0.5, 3, false))], fn: ([x]) => ops.sqrt(x), h: 5e-3 },
  { name: "relu", inputs: [input([3, 5], awayFromZero(0.05, 2))], fn: ([x]) => ops.relu(x) },
  { name: "silu", inputs: [input([3, 5], normal(2))], fn: ([x]) => ops.silu(x) },
  { name: "gelu", inputs: [input([3, 5], normal(2))], fn: ([x]) => ops.gelu(x) },
);

// Reductions.
const REDUCE_AXES: [number | undefined, boolean][] = [[undefined, false], [undefined, true], [0, true], [1, false], [-1, true], [
  2,
  false,
]];
for (const op of ["sum", "mean", "max"] as const) {
  for (const [axis, keepDims] of REDUCE_AXES) {
    CASES.push({
      name: `${op} [3,4,5] axis ${axis} keepDims ${keepDims}`,
      inputs: [input([3, 4, 5], op === "max" ? distinct(0.05) : normal())],
      fn: ([x]) => ops[op](x, axis, keepDims),
      h: op === "max" ? 5e-3 : 1e-2,
    });
  }
}

// Row-wise.
CASES.push(
  { name: "softmax [3,7]", inputs: [input([3, 7], normal(2))], fn: ([x]) => ops.softmax(x) },
  { name: "softmax [2,1,5]", inputs: [input([2, 1, 5], normal())], fn: ([x]) => ops.softmax(x) },
  { name: "logSoftmax [2,3,5]", inputs: [input([2, 3, 5], normal(2))], fn: ([x]) => ops.logSoftmax(x) },
  {
    name: "rmsNorm x and weight [3,7]",
    inputs: [input([3, 7], normal()), input([7], normal())],
    fn: ([x, w]) => ops.rmsNorm(x, w),
  },
  {
    name: "rmsNorm [2,2,5] eps 0.1",
    inputs: [input([2, 2, 5], normal()), input([5], normal())],
    fn: ([x, w]) => ops.rmsNorm(x, w, 0.1),
  },
  {
    name: "layerNorm x, weight, bias [3,7]",
    inputs: [input([3, 7], normal()), input([7], normal()), input([7], normal())],
    fn: ([x, w, b]) => ops.layerNorm(x, w, b),
  },
  {
    name: "layerNorm [2,2,5] eps 0.1",
    inputs: [input([2, 2, 5], normal(2)), input([5], normal()), input([5], normal())],
    fn: ([x, w, b]) => ops.layerNorm(x, w, b, 0.1),
  },
);

// Transformer pieces.
CASES.push(
  {
    name: "embedding with repeated Int32Array ids",
    inputs: [input([5, 3], normal())],
    fn: ([w]) => ops.embedding(w, new Int32Array([1, 3, 1, 4, 1, 0, 3])),
  },
  {
    name: "embedding with a [2, 3] i32 tensor of ids",
    inputs: [input([4, 5], normal())],
    fn: ([w], device) => ops.embedding(w, device.tensor(new Int32Array([2, 2, 0, 3, 2, 0]), [2, 3])),
  },
  { name: "rope [1,2,5,4] offset 3", inputs: [input([1, 2, 5, 4], normal())], fn: ([x]) => ops.rope(x, { positionOffset: 3 }) },
  { name: "rope [2,1,3,6] theta 100", inputs: [input([2, 1, 3, 6], normal())], fn: ([x]) => ops.rope(x, { theta: 100 }) },
);
for (const causal of [false, true]) {
  CASES.push(
    {
      name: `attention [1,2,4,3] causal=${causal}`,
      inputs: [input([1, 2, 4, 3], normal()), input([1, 2, 4, 3], normal()), input([1, 2, 4, 3], normal())],
      fn: ([q, k, v]) => ops.attention(q, k, v, { causal }),
    },
    {
      name: `attention grouped-query Hq=4 Hkv=2 causal=${causal}`,
      inputs: [input([1, 4, 3, 2], normal(1.5)), input([1, 2, 3, 2], normal(1.5)), input([1, 2, 3, 2], normal())],
      fn: ([q, k, v]) => ops.attention(q, k, v, { causal }),
    },
    {
      name: `attention B=2 T=5 D=5 causal=${causal}`,
      inputs: [input([2, 1, 5, 5], normal()), input([2, 1, 5, 5], normal()), input([2, 1, 5, 5], normal())],
      fn: ([q, k, v]) => ops.attention(q, k, v, { causal }),
    },
  );
}
CASES.push(
  {
    name: "crossEntropy Int32Array targets [4,7]",
    inputs: [input([4, 7], normal(2))],
    fn: ([x]) => ops.crossEntropy(x, new Int32Array([0, 6, 3, 3])),
  },
  {
    name: "crossEntropy i32 tensor targets [5,3]",
    inputs: [input([5, 3], normal())],
    fn: ([x], device) => ops.crossEntropy(x, device.tensor(new Int32Array([2, 0, 1, 1, 2]), [5])),
  },
);

// Layout.
CASES.push(
  { name: "reshape [3,4] → [2,-1]", inputs: [input([3, 4], normal())], fn: ([x]) => ops.reshape(x, [2, -1]) },
  { name: "transpose [3,4,2] last two", inputs: [input([3, 4, 2], normal())], fn: ([x]) => ops.transpose(x) },
  { name: "transpose [3,4,2] axes 0, 2", inputs: [input([3, 4, 2], normal())], fn: ([x]) => ops.transpose(x, 0, 2) },
  { name: "permute [2,3,4] by [2,0,1]", inputs: [input([2, 3, 4], normal())], fn: ([x]) => ops.permute(x, [2, 0, 1]) },
  { name: "slice [4,5] begin [1,1] size [2,-1]", inputs: [input([4, 5], normal())], fn: ([x]) => ops.slice(x, [1, 1], [2, -1]) },
  {
    name: "concat three inputs axis 0",
    inputs: [input([2, 3], normal()), input([1, 3], normal()), input([3, 3], normal())],
    fn: (xs) => ops.concat(xs, 0),
  },
  { name: "concat axis -1", inputs: [input([2, 3], normal()), input([2, 2], normal())], fn: (xs) => ops.concat(xs, -1) },
  {
    name: "split [3,7] into [2,4,1] along axis 1, reordered",
    inputs: [input([3, 7], normal())],
    fn: ([x]) => {
      const [a, b, c] = ops.split(x, [2, 4, 1], 1);
      return ops.concat([c, a, b], 1);
    },
  },
  { name: "split [6,2] into 3, one piece used", inputs: [input([6, 2], normal())], fn: ([x]) => ops.split(x, 3)[1] },
  { name: "broadcastTo [3,1] → [2,3,4]", inputs: [input([3, 1], normal())], fn: ([x]) => ops.broadcastTo(x, [2, 3, 4]) },
  { name: "broadcastTo [4] → [3,4]", inputs: [input([4], normal())], fn: ([x]) => ops.broadcastTo(x, [3, 4]) },
  // The round trip is the identity up to f16 rounding, so a wide step sees its slope through the
  // quantization; the steps are off by up to one f16 ulp / 2h, hence the wider tolerance.
  {
    name: "cast f32 → f16 → f32",
    inputs: [input([3, 5], normal())],
    fn: ([x]) => ops.cast(ops.cast(x, "f16"), "f32"),
    h: 0.25,
    tolerance: [2e-2, 2e-3],
  },
);

// Composed graphs: whole-graph finite differences.
CASES.push({
  name: "two-layer MLP (matmul, add, gelu, crossEntropy)",
  inputs: [
    input([5, 7], normal()),
    input([7, 6], normal(0.5)),
    input([6], normal(0.1)),
    input([6, 4], normal(0.5)),
    input([4], normal(0.1)),
  ],
  fn: ([x, w1, b1, w2, b2]) => {
    const hidden = ops.gelu(ops.add(ops.matmul(x, w1), b1));
    return ops.crossEntropy(ops.add(ops.matmul(hidden, w2), b2), new Int32Array([0, 3, 1, 1, 2]));
  },
});
CASES.push({
  name: "attention block (rmsNorm → qkv → rope → grouped-query attention → o-proj → crossEntropy)",
  inputs: [input([5, 8], normal()), input([8], normal(0.5)), input([8, 16], normal(0.5)), input([8, 11], normal(0.5))],
  stride: 3,
  fn: ([x, gain, wqkv, wo]) => {
    const [T, heads, kvHeads, D] = [5, 2, 1, 4];
    const h = ops.rmsNorm(x, gain);
    const [q, k, v] = ops.split(ops.matmul(h, wqkv), [heads * D, kvHeads * D, kvHeads * D], 1);
    const toHeads = (t: Tensor, n: number) => ops.permute(ops.reshape(t, [1, T, n, D]), [0, 2, 1, 3]);
    const qh = ops.rope(toHeads(q, heads));
    const kh = ops.rope(toHeads(k, kvHeads));
    const o = ops.attention(qh, kh, toHeads(v, kvHeads), { causal: true });
    const merged = ops.reshape(ops.permute(o, [0, 2, 1, 3]), [T, heads * D]);
    return ops.crossEntropy(ops.matmul(merged, wo), new Int32Array([3, 10, 0, 7, 7]));
  },
});

for (const c of CASES) gradTest(c);

// ---------------------------------------------------------------------------------------------
// analytic checks
// ---------------------------------------------------------------------------------------------

testBothBackends("grad: cast f32 → f16 → f32 passes the f16-rounded gradient through", async (device) => {
  const x = device.tensor(randomValues(12, 6100), [3, 4], { requiresGrad: true });
  const rValues = randomValues(12, 6101, 3);
  const loss = ops.tidy(() => ops.sum(ops.mul(ops.cast(ops.cast(x, "f16"), "f32"), device.tensor(rValues, [3, 4]))));
  await loss.backward();
  assert.ok(x.grad);
  const got = await readF32(x.grad);
  for (let i = 0; i < 12; i++) assert.equal(got[i], f16Round(rValues[i]), `element ${i}`);
  x.grad.dispose();
  x.dispose();
  loss.dispose();
});

testBothBackends("grad: max shares the gradient equally among tied maxima", async (device) => {
  const x = device.tensor([1, 3, 3, 2, 5, 5, 5, 0], [2, 4], { requiresGrad: true });
  const r = [0.7, -1.3];
  const loss = ops.tidy(() => ops.sum(ops.mul(ops.max(x, 1), device.tensor(r, [2]))));
  await loss.backward();
  assert.ok(x.grad);
  assertClose(await readF32(x.grad), [0, 0.35, 0.35, 0, -1.3 / 3, -1.3 / 3, -1.3 / 3, 0], 1e-6, 1e-7, "max ties");
  x.grad.dispose();
  x.dispose();
  loss.dispose();
});

testBothBackends("grad: accumulates over two backward() calls", async (device) => {
  const xv = randomValues(15, 6200);
  const r1 = randomValues(15, 6201);
  const r2 = randomValues(15, 6202);
  const x = device.tensor(xv, [3, 5], { requiresGrad: true });
  const first = ops.tidy(() => ops.sum(ops.mul(x, device.tensor(r1, [3, 5]))));
  await first.backward();
  assert.ok(x.grad);
  assertClose(await readF32(x.grad), r1, 1e-6, 1e-7, "after the first backward");
  const second = ops.tidy(() => ops.sum(ops.mul(ops.exp(x), device.tensor(r2, [3, 5]))));
  await second.backward();
  const expected = Array.from(xv, (v, i) => r1[i] + Math.exp(v) * r2[i]);
  assertClose(await readF32(x.grad!), expected, 1e-5, 1e-6, "after the second backward");
  x.grad!.dispose();
  x.dispose();
  first.dispose();
  second.dispose();
});

testBothBackends("grad: a tensor used twice (x·x) gets both contributions", async (device) => {
  const xv = randomValues(13, 6300);
  const rv = randomValues(13, 6301);
  const x = device.tensor(xv, [13], { requiresGrad: true });
  const loss = ops.tidy(() => ops.sum(ops.mul(ops.mul(x, x), device.tensor(rv, [13]))));
  await loss.backward();
  assert.ok(x.grad);
  assertClose(await readF32(x.grad), Array.from(xv, (v, i) => 2 * v * rv[i]), 1e-6, 1e-7, "d(x·x)");
  // Disposing .grad resets it (Tensor.grad's documented contract).
  x.grad.dispose();
  // Also through two different paths: x + exp(x) → 1 + exp(x).
  const loss2 = ops.tidy(() => ops.sum(ops.mul(ops.add(x, ops.exp(x)), device.tensor(rv, [13]))));
  await loss2.backward();
  assertClose(await readF32(x.grad!), Array.from(xv, (v, i) => (1 + Math.exp(v)) * rv[i]), 1e-5, 1e-6, "d(x + exp x)");
  x.grad!.dispose();
  x.dispose();
  loss.dispose();
  loss2.dispose();
});

testBothBackends("grad: inputs without requiresGrad get none", async (device) => {
  const a = device.tensor(randomValues(6, 6400), [2, 3], { requiresGrad: true });
  const b = device.tensor(randomValues(6, 6401), [3, 2]);
  const loss = ops.tidy(() => ops.sum(ops.matmul(a, b)));
  await loss.backward();
  assert.equal(b.grad, null);
  assert.ok(a.grad);
  // d sum(a·b)/da[i, k] = Σ_j b[k, j].
  const bv = await readF32(b);
  const expected = Array.from({ length: 6 }, (_, i) => bv[(i % 3) * 2] + bv[(i % 3) * 2 + 1]);
  assertClose(await readF32(a.grad), expected, 1e-6, 1e-7, "d sum(a·b)/da");
  a.grad.dispose();
  for (const t of [a, b, loss]) t.dispose();
});
