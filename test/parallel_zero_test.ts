// ZeRO stages 1, 2 and 3 against plain AdamW on one device.
//
// Partitions are checked element by element (every parameter element on exactly one rank, equal
// partitions, padding below dp, a hand-worked layout, fragments that rebuild the parameters). A
// least-squares problem (test/fixtures/zero_rank.ts) trained with each stage over dp 2, 3 and 4
// ranks must end at the parameters one device reaches with AdamW on the mean of the ranks'
// gradients, with clipping and weight decay active; the ledger must show, per step and rank, the
// ring (or, for small messages, the direct) volume of each collective on the padded sizes; memory()
// must report what the device actually holds.

import assert from "node:assert/strict";
import { Comm } from "../src/comm/collectives.ts";
import { launch } from "../src/comm/launch.ts";
import type { CollectiveRecord } from "../src/comm/ledger.ts";
import { createWorld, openWorld } from "../src/comm/world.ts";
import { Parameter } from "../src/nn/parameter.ts";
import { ZeroOptimizer } from "../src/parallel/zero.ts";
import { Zero3Parameters } from "../src/parallel/zero3.ts";
import { groupPieces, partitionParameters, type ZeroPartition } from "../src/parallel/zero_partition.ts";
import { ShapeError } from "../src/tensor/errors.ts";
import { keep } from "../src/tensor/scope.ts";
import type { Tensor } from "../src/tensor/tensor.ts";
import zeroRank, {
  initialValues,
  referenceRun,
  type ZeroCase,
  type ZeroCaseResult,
  type ZeroRankArgs,
} from "./fixtures/zero_rank.ts";
import { cpuDevice, skipWebGpu, webgpuDevice } from "./helpers.ts";

const ENTRY = new URL("./fixtures/zero_rank.ts", import.meta.url).href;
const F32 = 4;

// ---- partitions ----

function partitionsOf(sizes: number[], groups: number[][], dp: number): ZeroPartition[] {
  const params = sizes.map((n, i) => [`p${i}`, n] as const);
  return Array.from({ length: dp }, (_, r) => partitionParameters(params, groups.map((g) => g.map((i) => `p${i}`)), dp, r));
}

Deno.test("partition: a hand-worked layout of three parameters over dp 3", () => {
  const [r0, r1, r2] = partitionsOf([5, 4, 2], [[0, 1, 2]], 3);
  assert.deepEqual(r0.groups, [{
    names: ["p0", "p1", "p2"],
    sizes: [5, 4, 2],
    numel: 11,
    paddedNumel: 12,
    partStart: 0,
    partNumel: 4,
  }]);
  assert.deepEqual(r0.fragments, [{ name: "p0", group: 0, start: 0, numel: 4, paramOffset: 0 }]);
  assert.deepEqual(r1.fragments, [
    { name: "p0", group: 0, start: 0, numel: 1, paramOffset: 4 },
    { name: "p1", group: 0, start: 1, numel: 3, paramOffset: 0 },
  ]);
  assert.deepEqual(r2.fragments, [
    { name: "p1", group: 0, start: 0, numel: 1, paramOffset: 3 },
    { name: "p2", group: 0, start: 1, numel: 2, paramOffset: 0 },
  ]);
  assert.deepEqual(groupPieces(r2, 0).map(({ at, numel, fragment }) => [at, numel, fragment?.name ?? "pad"]), [[0, 1, "p1"], [
    1,
    2,
    "p2",
  ], [3, 1, "pad"]]);
  for (const p of [r0, r1, r2]) assert.equal(p.numel, 4);
});

Deno.test("partition: dp 1..4, uneven sizes and several groups cover every element once, in equal partitions", () => {
  const sizes = [35, 13, 33, 1, 0, 64, 7];
  const layouts = [[[0, 1, 2, 3, 4, 5, 6]], [[0], [1, 2, 3], [4, 5], [6]], [[6, 0], [3, 2, 1, 5, 4]]];
  for (const groups of layouts) {
    for (let dp = 1; dp <= 4; dp++) {
      const partitions = partitionsOf(sizes, groups, dp);
      const owners = sizes.map((n) => new Array<number>(n).fill(0));
      // The flat partition of each rank, filled with a code for (parameter, element); padding stays -1.
      const values = (i: number, e: number) => i * 1000 + e;
      const flats = partitions.map((p) => new Float32Array(p.numel).fill(-1));
      partitions.forEach((p, r) => {
        assert.equal(p.numel, partitions[0].numel, `dp ${dp}: rank ${r} has another partition size`);
        assert.equal(p.numel, p.groups.reduce((sum, g) => sum + g.paddedNumel / dp, 0));
        for (const g of p.groups) {
          assert.equal(g.paddedNumel % dp, 0);
          assert.ok(g.paddedNumel - g.numel < dp, `padding ${g.paddedNumel - g.numel} must be below dp ${dp}`);
          assert.equal(g.numel, g.sizes.reduce((a, b) => a + b, 0));
        }
        for (const f of p.fragments) {
          const i = Number(f.name.slice(1));
          const g = p.groups[f.group];
          assert.ok(f.numel > 0 && f.start >= g.partStart && f.start + f.numel <= g.partStart + g.partNumel, JSON.stringify(f));
          for (let e = 0; e < f.numel; e++) {
            owners[i][f.paramOffset + e]++;
            assert.equal(flats[r][f.start + e], -1, `dp ${dp} rank ${r}: element ${f.start + e} written twice`);
            flats[r][f.start + e] = values(i, f.paramOffset + e);
          }
        }
        // The pieces of each group tile its part in order; padding only at the end.
        p.groups.forEach((g, gi) => {
          let at = 0;
          for (const piece of groupPieces(p, gi)) {
            assert.equal(piece.at, at);
            at += piece.numel;
          }
          assert.equal(at, g.partNumel);
        });
        assert.deepEqual(JSON.parse(JSON.stringify(p)), p, "the partition is plain JSON");
      });
      owners.forEach((counts, i) => assert.ok(counts.every((c) => c === 1), `dp ${dp}: p${i} is not covered exactly once`));
      // Rebuild every group by concatenating the ranks' parts, as an all-gather would, and compare with the parameters.
      partitions[0].groups.forEach((g) => {
        const joined = partitions.flatMap((_, r) => [...flats[r].subarray(g.partStart, g.partStart + g.partNumel)]);
        const expected = g.names.flatMap((name) =>
          Array.from({ length: sizes[Number(name.slice(1))] }, (_, e) => values(Number(name.slice(1)), e))
        );
        assert.deepEqual(joined.slice(0, g.numel), expected);
        assert.ok(joined.slice(g.numel).every((v) => v === -1), "padding holds no parameter");
      });
    }
  }
});

Deno.test("partition: bad dp, ranks and groups are refused, naming the values", () => {
  const params = [["a", 3], ["b", 4]] as const;
  assert.throws(() => partitionParameters(params, [["a", "b"]], 0, 0), /dp must be an integer ≥ 1, got 0/);
  assert.throws(() => partitionParameters(params, [["a", "b"]], 1.5, 0), /dp must be an integer ≥ 1, got 1.5/);
  assert.throws(() => partitionParameters(params, [["a", "b"]], 3, 3), /dpRank must be an integer in 0..2, got 3/);
  assert.throws(() => partitionParameters(params, [["a"]], 2, 0), /the groups miss parameter "b"/);
  assert.throws(
    () => partitionParameters(params, [["a", "b"], ["a"]], 2, 0),
    /"a" appears more than once in the groups \(group 0 and group 1\)/,
  );
  assert.throws(
    () => partitionParameters(params, [["a", "b", "c"]], 2, 0),
    /group 0 names "c", which is not a parameter \(parameters: a, b\)/,
  );
  assert.throws(() => partitionParameters(params, [["a", "b"], []], 2, 0), /group 1 is empty/);
  assert.throws(() => partitionParameters([["a", 3], ["a", 2]], [["a"]], 2, 0), /"a" appears more than once/);
});

// ---- training against one device ----

const ARGS: Omit<ZeroRankArgs, "cases"> = { steps: 4, lr: 0.02, maxNorm: 0.5, adamw: { weightDecay: 0.3 } };
/** Odd sizes: every dp in 2..4 needs padding somewhere, and parts cut through parameters. */
const SMALL: [string, number[]][] = [["w1", [7, 5]], ["b", [13]], ["w2", [3, 11]]];
/** Large enough that every part exceeds the 16 KiB inline limit at dp 4, so every collective rides the ring. */
const LARGE: [string, number[]][] = [["w1", [150, 110]], ["b", [257]], ["w2", [61, 277]]];

function cases(shapes: [string, number[]][]): ZeroCase[] {
  const all = [shapes.map(([name]) => name)];
  return [
    { stage: 1, shapes, groups: all },
    { stage: 2, shapes, groups: all },
    { stage: 3, shapes, groups: [["w1"], ["b", "w2"]] },
  ];
}
const CASES = [...cases(SMALL), ...cases(LARGE)];

function assertCloseParams(
  actual: Record<string, Float32Array>,
  expected: Map<string, Float32Array>,
  what: string,
  tolerance = 1e-6,
): void {
  assert.deepEqual(Object.keys(actual).sort(), [...expected.keys()].sort(), what);
  for (const [name, values] of expected) {
    let worst = 0;
    for (let i = 0; i < values.length; i++) worst = Math.max(worst, Math.abs(actual[name][i] - values[i]));
    assert.ok(worst <= tolerance, `${what} ${name}: largest difference from one device ${worst}`);
  }
}

/** Every case run by plain AdamW on one device with the mean gradient of dp ranks. */
async function references(dp: number) {
  const device = await cpuDevice();
  return await Promise.all(CASES.map((c) => referenceRun(device, c, dp, ARGS)));
}

function ringChunk(m: number, n: number, k: number): number {
  return Math.floor(m / n) + ((k % n) < m % n ? 1 : 0);
}

/** Bytes rank p sends in one call of `kind` over n ranks on m elements in all (padded), by algorithm. */
function expectedBytes(kind: string, algorithm: string, m: number, n: number, p: number): number {
  if (kind === "allReduce") {
    return F32 * (algorithm === "ring" ? 2 * m - ringChunk(m, n, p) - ringChunk(m, n, p + 1) : (n - 1) * m);
  }
  if (kind === "reduceScatter") return F32 * (m - ringChunk(m, n, p));
  // All-gather of equal blocks: the ring forwards every block but the next rank's; direct sends its own block to each peer.
  return F32 * (algorithm === "ring" ? m - m / n : (n - 1) * (m / n));
}

/** The collectives of one step of a case, in order: [tag, kind, padded elements of the whole collective]. */
function expectedCalls(c: ZeroCase, partition: ZeroPartition): [string, string, number][] {
  const padded = partition.groups.map((g) => g.paddedNumel);
  if (c.stage === 1) {
    return [["zero1.reducescatter.grads", "reduceScatter", padded[0]], ["zero1.allgather.params", "allGather", padded[0]]];
  }
  if (c.stage === 2) {
    return [["zero2.reducescatter.grads", "reduceScatter", padded[0]], ["zero2.allgather.params", "allGather", padded[0]]];
  }
  const fwd = padded.map((m, g): [string, string, number] => [`zero3.allgather.fwd.layer${g}`, "allGather", m]);
  const bwd = padded.map((m, g): [string, string, number] => [`zero3.allgather.bwd.layer${g}`, "allGather", m]).reverse();
  const rs = padded.map((m, g): [string, string, number] => [`zero3.reducescatter.grads.layer${g}`, "reduceScatter", m])
    .reverse();
  return [...fwd, ...bwd.flatMap((call, i) => [call, rs[i]])];
}

function checkLedger(c: ZeroCase, result: ZeroCaseResult, dp: number, rank: number, ring: boolean): void {
  const calls = result.collectives.filter((record: CollectiveRecord) => record.tag.startsWith(`zero${c.stage}.`));
  const perStep = expectedCalls(c, result.partition);
  // Stage 3 ends with consolidated(): one all-gather per group.
  const consolidate = c.stage === 3
    ? result.partition.groups.map((g): [string, string, number] => ["zero3.allgather.consolidate", "allGather", g.paddedNumel])
    : [];
  const expected = [...Array.from({ length: ARGS.steps }, () => perStep).flat(), ...consolidate];
  assert.equal(calls.length, expected.length, `stage ${c.stage} rank ${rank}: ${calls.map((r) => r.tag).join(", ")}`);
  calls.forEach((record, i) => {
    const [tag, kind, m] = expected[i];
    const what = `dp ${dp} stage ${c.stage} rank ${rank} ${tag}`;
    assert.equal(record.tag, tag, what);
    assert.equal(record.kind, kind, what);
    assert.equal(record.elements, kind === "allGather" ? m / dp : m, what);
    assert.equal(record.algorithm, ring ? "ring" : "direct", what);
    assert.equal(record.bytes, expectedBytes(kind, record.algorithm, m, dp, rank), what);
  });
}

function checkMemory(c: ZeroCase, result: ZeroCaseResult, dp: number): void {
  const { memory, partition } = result;
  const m = c.shapes.reduce((sum, [, shape]) => sum + shape.reduce((a, b) => a * b, 1), 0);
  const part = partition.numel;
  const what = `dp ${dp} stage ${c.stage}: ${JSON.stringify(memory)}`;
  if (c.stage === 3) {
    assert.deepEqual([memory.parameters, memory.gradients, memory.optimizer], [F32 * part, F32 * part, 2 * F32 * part], what);
    const padding = partition.groups.reduce((sum, g) => sum + g.paddedNumel - g.numel, 0);
    assert.ok(memory.parameters + memory.gradients + memory.optimizer <= (16 * (m + padding)) / dp, what);
    // The working copy is one group's values with their gradients, during its backward.
    const largestGroup = Math.max(...partition.groups.map((g) => g.numel));
    assert.equal(memory.gathered, 2 * F32 * largestGroup, what);
  } else {
    assert.equal(memory.parameters, F32 * m, what);
    // Stage 1 still holds every full gradient beside its partition's averaged one; stage 2 only the latter.
    assert.equal(memory.gradients, c.stage === 1 ? F32 * (m + part) : F32 * part, what);
    assert.equal(memory.optimizer, 3 * F32 * part, what);
    assert.equal(memory.gathered, 0, what);
  }
  assert.equal(
    result.heldBytes,
    memory.parameters + memory.gradients + memory.optimizer,
    `${what}: the device holds ${result.heldBytes} bytes`,
  );
}

for (const dp of [2, 3, 4]) {
  Deno.test(`zero: stages 1, 2 and 3 over dp ${dp} match AdamW on one device, with the ring volume and the memory of each stage`, async () => {
    const results = await launch<ZeroCaseResult[]>({ ranks: dp, entry: ENTRY, args: { ...ARGS, cases: CASES }, backend: "cpu" });
    const expected = await references(dp);
    CASES.forEach((c, i) => {
      const size = c.shapes === SMALL ? "small" : "large";
      for (const { rank, value } of results) {
        const result = value[i];
        assertCloseParams(result.params, expected[i].params, `dp ${dp} stage ${c.stage} ${size} rank ${rank}`);
        result.losses.forEach((loss, step) => {
          const reference = expected[i].losses[rank][step];
          assert.ok(
            Math.abs(loss - reference) <= 1e-5 * Math.abs(reference),
            `dp ${dp} stage ${c.stage} rank ${rank} step ${step}: loss ${loss} vs ${reference}`,
          );
        });
        checkLedger(c, result, dp, rank, size === "large");
        checkMemory(c, result, dp);
        assert.equal(result.leakedBytes, 0, `dp ${dp} stage ${c.stage} rank ${rank}: dispose() leaves nothing behind`);
      }
      // Every rank applied the same update: their parameters agree bit for bit.
      for (const { value } of results) assert.deepEqual(value[i].params, results[0].value[i].params);
    });
  });
}

Deno.test("zero: the test problem moves every parameter, clips, and decays only matrices", async () => {
  const device = await cpuDevice();
  const small = cases(SMALL)[0];
  const plain = await referenceRun(device, small, 2, ARGS);
  const unclipped = await referenceRun(device, small, 2, { ...ARGS, maxNorm: 1e6 });
  const unclippedNoDecay = await referenceRun(device, small, 2, { ...ARGS, maxNorm: 1e6, adamw: { weightDecay: 0 } });
  const gap = (a: Map<string, Float32Array>, b: Map<string, Float32Array>, name: string) =>
    Math.max(...a.get(name)!.map((v, i) => Math.abs(v - b.get(name)![i])));
  const initial = initialValues(SMALL);
  for (const name of initial.keys()) assert.ok(gap(plain.params, initial, name) > 1e-2, `${name} moves`);
  assert.ok(gap(plain.params, unclipped.params, "w1") > 1e-4, "maxNorm 0.5 clips");
  // Without clipping the parameters evolve independently: decay changes the matrices by far more than the tolerance, the vector not at all.
  assert.ok(
    gap(unclipped.params, unclippedNoDecay.params, "w1") > 1e-3 && gap(unclipped.params, unclippedNoDecay.params, "w2") > 1e-3,
  );
  assert.equal(gap(unclipped.params, unclippedNoDecay.params, "b"), 0);
});

// ---- one rank, in process ----

function soloComm(): Comm {
  return new Comm(openWorld(createWorld({ ranks: 1 }).memory, 0));
}

Deno.test("zero: dp 1 in process equals AdamW on one device for every stage", async () => {
  const device = await cpuDevice();
  const results = await zeroRank({ rank: 0, device, comm: soloComm() }, { ...ARGS, cases: cases(SMALL) });
  for (const [i, c] of cases(SMALL).entries()) {
    const expected = await referenceRun(device, c, 1, ARGS);
    assertCloseParams(results[i].params, expected.params, `dp 1 stage ${c.stage}`);
    assert.ok(results[i].collectives.every((record) => record.bytes === 0), "a group of one sends nothing");
    assert.equal(results[i].leakedBytes, 0);
  }
});

Deno.test("zero: partitionGradSquares weights each parameter's share as asked", async () => {
  const device = await cpuDevice();
  const comm = soloComm();
  const shapes: [string, number[]][] = [["w1", [7, 5]], ["b", [13]], ["w2", [3, 11]]];
  const grads = initialValues(shapes);
  const weights: Record<string, number> = { w1: 0.5, b: 1, w2: 0.25 };
  const expected = shapes.reduce((sum, [name]) => sum + weights[name] * grads.get(name)!.reduce((s, g) => s + g * g, 0), 0);
  const plain = shapes.reduce((sum, [name]) => sum + grads.get(name)!.reduce((s, g) => s + g * g, 0), 0);
  const close = (actual: number, wanted: number) =>
    assert.ok(Math.abs(actual - wanted) <= 1e-6 * wanted, `${actual} vs ${wanted}`);

  const named: [string, Tensor][] = shapes.map(([name, shape]) => [name, keep(device.zeros(shape, { requiresGrad: true }))]);
  const zero = new ZeroOptimizer(comm, named, { stage: 2, groups: [shapes.map(([name]) => name)] });
  for (const [name, param] of named) param.grad = keep(device.tensor(grads.get(name)!, param.shape));
  await zero.reduceGradients();
  close(await zero.partitionGradSquares((name) => weights[name]), expected);
  close(await zero.partitionGradSquares(), plain);
  zero.dispose();
  for (const [, param] of named) param.dispose();

  const slots = shapes.map(([name, shape]) =>
    new Parameter(name, shape, "normal", () => keep(device.zeros(shape, { requiresGrad: true })))
  );
  const zero3 = new Zero3Parameters(comm, slots, [["w1"], ["b", "w2"]]);
  for (const g of [1, 0]) {
    await zero3.gather(g, "bwd", `layer${g}`);
    for (const slot of slots.filter((s) => s.value)) slot.tensor.grad = keep(device.tensor(grads.get(slot.name)!, slot.shape));
    await zero3.reduceScatterGradients(g, `layer${g}`);
    zero3.release(g);
  }
  close(await zero3.partitionGradSquares((name) => weights[name]), expected);
  await assert.rejects(zero3.partitionGradSquares(() => -1), /gradient weight of "w1" must be a finite number ≥ 0, got -1/);
  zero3.dispose();
});

Deno.test({
  name: "zero: dp 1 on WebGPU equals AdamW on the CPU device for every stage",
  ignore: skipWebGpu,
  fn: async () => {
    const gpu = (await webgpuDevice())!;
    const results = await zeroRank({ rank: 0, device: gpu, comm: soloComm() }, { ...ARGS, cases: cases(SMALL) });
    for (const [i, c] of cases(SMALL).entries()) {
      const expected = await referenceRun(await cpuDevice(), c, 1, ARGS);
      // The WebGPU kernels compute in f32 where the CPU reference uses f64 inside each element.
      assertCloseParams(results[i].params, expected.params, `webgpu stage ${c.stage}`, 1e-5);
    }
  },
});

Deno.test("zero: a gradient of the wrong shape, stage 3 for ZeroOptimizer and misuse of the stage-3 groups are refused", async () => {
  const device = await cpuDevice();
  const comm = soloComm();
  const w = keep(device.tensor(new Float32Array(6), [2, 3], { requiresGrad: true }));
  const zero = new ZeroOptimizer(comm, [["w", w]], { stage: 2, groups: [["w"]] });
  w.grad = keep(device.zeros([3, 2]));
  await assert.rejects(
    zero.reduceGradients(),
    (error) =>
      error instanceof ShapeError &&
      /zero2\.reduceGradients: the gradient of "w" has shape \[3, 2\], the parameter \[2, 3\]/.test(error.message),
  );
  zero.zeroGrad();
  zero.dispose();
  assert.throws(
    () => new ZeroOptimizer(comm, [["w", w]], { stage: 3, groups: [["w"]] }),
    /stage must be 1 or 2 .*Zero3Parameters.*got 3/,
  );
  assert.throws(
    () => new ZeroOptimizer(comm, [["w", w]], { stage: 1, groups: [["v"]] }),
    /group 0 names "v", which is not a parameter/,
  );
  w.dispose();

  const slot = new Parameter(
    "w",
    [2, 3],
    "normal",
    () => keep(device.tensor(new Float32Array(6), [2, 3], { requiresGrad: true })),
  );
  const zero3 = new Zero3Parameters(comm, [slot], [["w"]]);
  assert.equal(slot.value, null, "the full value is freed once partitioned");
  await assert.rejects(zero3.reduceScatterGradients(0, "layer0"), /group 0 is not gathered \("w" holds no value\)/);
  await zero3.gather(0, "fwd", "layer0");
  await assert.rejects(zero3.gather(0, "bwd", "layer0"), /group 0 is already gathered/);
  await assert.rejects(zero3.gather(1, "fwd", "layer1"), /group must be an integer in 0..0, got 1/);
  slot.tensor.grad = keep(device.zeros([6]));
  await assert.rejects(
    zero3.reduceScatterGradients(0, "layer0"),
    (error) => error instanceof ShapeError && /the gradient of "w" has shape \[6\], the parameter \[2, 3\]/.test(error.message),
  );
  zero3.dispose();
  assert.equal(slot.value, null);
  const unallocated = new Parameter("u", [4], "ones", () => null);
  assert.throws(() => new Zero3Parameters(comm, [unallocated], [["u"]]), /parameter "u" holds no value/);
});
