// Gradients of ops checked against central finite differences. `gradTest(case)` registers `grad: name` on both backends. The loss is L = sum(op(inputs) ∘ R)
// for a fixed random R, built with ops.mul and ops.sum and backpropagated. The finite differences
// (L(x + h·e_i) − L(x − h·e_i)) / 2h run the op in f32 on the CPU device for every element of every
// input; only the final contraction with R is done in doubles on the host, to keep f32 rounding of
// the scalar loss out of the quotient. The [cpu] variant compares the CPU gradients with the finite
// differences; the [webgpu] variant compares WebGPU's gradients with the finite differences and,
// tightly, with the CPU's.

import assert from "node:assert/strict";
import { type Device, ops, type Tensor } from "../mod.ts";
import { assertClose } from "./assertions.ts";
import { cpuDevice, randomValues, readF32, type Shape, sizeOf, testBothBackends } from "./helpers.ts";

export interface GradCase {
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

export function input(shape: Shape, values: Float32Array | ((n: number) => Float32Array)): GradCase["inputs"][number] {
  return { shape, values: typeof values === "function" ? values(sizeOf(shape)) : values };
}

/**
 * Input generators that draw seeds from `firstSeed` on, one per input in the order the cases are
 * written, so that a file's inputs depend on nothing outside it.
 */
export function seededInputs(firstSeed: number) {
  let seed = firstSeed;
  return {
    /** Standard normal values (scaled). */
    normal(scale = 1) {
      return (n: number) => randomValues(n, seed++, scale);
    },
    /** Values with magnitude in [lo, hi], signs mixed (kept away from a kink or pole at 0). */
    awayFromZero(lo: number, hi: number, signed = true) {
      return (n: number) => {
        const u = randomValues(n, seed++);
        return Float32Array.from(u, (x, i) => {
          const magnitude = lo + (hi - lo) * (0.5 + 0.5 * Math.tanh(x));
          return signed && i % 3 !== 0 ? -magnitude : magnitude;
        });
      };
    },
    /** A shuffled ladder of distinct values, `gap` apart: no near-ties for max(). */
    distinct(gap: number) {
      return (n: number) => {
        const order = randomValues(n, seed++);
        const ranks = Array.from(order.keys()).sort((a, b) => order[a] - order[b]);
        const out = new Float32Array(n);
        ranks.forEach((position, rank) => (out[position] = (rank - n / 2) * gap));
        return out;
      };
    },
  };
}

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

export function gradTest(c: GradCase): void {
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
