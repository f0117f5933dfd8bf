// Parameter initialization is a pure function of (seed, name): the same bits on every backend and
// in any construction order, N(0, 0.02²) for matrices (device.randn under the derived seed, scaled)
// and ones for norm gains, and unrelated values for different names or seeds.

import assert from "node:assert/strict";
import { presetConfig } from "../src/nn/config.ts";
import { seededParameters, shapeOnly } from "../src/nn/parameter.ts";
import { Phi3ForCausalLM } from "../src/nn/phi3.ts";
import { deriveSeed } from "../src/nn/seed.ts";
import { cpuDevice, readF32, testBothBackends } from "./helpers.ts";

const TINY = presetConfig("tiny");

/** Every parameter's values from a model built with { seed } on the CPU. */
async function cpuValues(config = TINY, seed = 7): Promise<Map<string, Float32Array>> {
  const model = new Phi3ForCausalLM(await cpuDevice(), config, { seed });
  const values = new Map<string, Float32Array>();
  for (const [name, t] of model.namedParameters()) values.set(name, await readF32(t));
  model.dispose();
  return values;
}

function correlation(a: Float32Array, b: Float32Array): number {
  const n = Math.min(a.length, b.length);
  let [ab, aa, bb] = [0, 0, 0];
  for (let i = 0; i < n; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

testBothBackends("nn init: the same (seed, name) gives the same values on every backend and in any order", async (device) => {
  const cpu = await cpuDevice();
  const model = new Phi3ForCausalLM(device, TINY, { seed: 7 });
  // The same parameters made one by one on the CPU, last to first.
  const layout = new Phi3ForCausalLM(cpu, TINY, { parameters: shapeOnly }).parameters().reverse();
  const makeOnCpu = seededParameters(cpu, 7);
  const reversed = new Map(layout.map((p) => [p.name, makeOnCpu(p.name, p.shape, p.init)!]));
  for (const [name, t] of model.namedParameters()) {
    const values = await readF32(t);
    const reference = reversed.get(name)!;
    assert.deepEqual(values, await readF32(reference), `${name} on ${device.name} vs made alone on the cpu`);
    if (name.includes("norm")) {
      assert.ok(values.every((v) => v === 1), `${name}: norm gains start at one`);
    } else {
      // The documented formula: device.randn(shape, deriveSeed(seed, name)) × 0.02.
      const randn = cpu.randn(t.shape, deriveSeed(7, name));
      assert.deepEqual(
        values,
        Float32Array.from(await readF32(randn), (v) => v * 0.02),
        `${name}: randn under the derived seed × 0.02`,
      );
      randn.dispose();
    }
    reference.dispose();
  }
  model.dispose();
});

Deno.test("nn init: a deeper model shares the shallower one's values, name by name", async () => {
  const shallow = await cpuValues(TINY);
  const deep = await cpuValues({ ...TINY, numLayers: 3 });
  for (const [name, values] of shallow) assert.deepEqual(deep.get(name), values, name);
  assert.equal(deep.size, shallow.size + 6);
});

Deno.test("nn init: different names and different seeds give unrelated values with std 0.02", async () => {
  const seven = await cpuValues(TINY, 7);
  const eight = await cpuValues(TINY, 8);
  const matrices = [...seven].filter(([name]) => !name.includes("norm"));
  // Over at least 4096 values an unrelated pair has |correlation| ≈ 1/64 on average; 0.1 is 6σ.
  for (const [i, [nameA, a]] of matrices.entries()) {
    for (const [nameB, b] of matrices.slice(i + 1)) {
      assert.ok(Math.abs(correlation(a, b)) < 0.1, `${nameA} and ${nameB} are correlated`);
    }
    assert.ok(Math.abs(correlation(a, eight.get(nameA)!)) < 0.1, `${nameA}: seeds 7 and 8 are correlated`);
    let [sum, squares] = [0, 0];
    for (const v of a) [sum, squares] = [sum + v, squares + v * v];
    const mean = sum / a.length;
    const std = Math.sqrt(squares / a.length - mean * mean);
    // Over n ≥ 4096 values the sampling error of the std is 0.02/√(2n) ≤ 2.2e-4 and of the mean
    // 0.02/√n ≤ 3.1e-4: 0.0015 is about 7σ and 5σ, and still rejects std 0.018 or 0.022.
    assert.ok(Math.abs(std - 0.02) < 0.0015, `${nameA}: std ${std}`);
    assert.ok(Math.abs(mean) < 0.0015, `${nameA}: mean ${mean}`);
  }
});

Deno.test("nn init: deriveSeed is a pure 32-bit function of (seed, label)", () => {
  const seeds = new Set<number>();
  for (const seed of [0, 1, -1, 2 ** 40]) {
    for (const label of ["lm_head.weight", "model.layers.1.mlp.down_proj.weight", "model.layers.10.mlp.down_proj.weight"]) {
      const s = deriveSeed(seed, label);
      assert.equal(deriveSeed(seed, label), s);
      assert.ok(Number.isInteger(s) && s >= 0 && s < 2 ** 32);
      seeds.add(s);
    }
  }
  assert.equal(seeds.size, 12, "every (seed, label) pair gets its own seed");
  assert.throws(() => deriveSeed(1.5, "x"), /seed must be a safe integer, got 1.5/);
  assert.throws(() => seededParameters(null as never, NaN), /seed must be a safe integer, got NaN/);
});
