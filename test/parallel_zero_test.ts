// ZeRO stages 1, 2 and 3 against plain AdamW on one device.
//
// A least-squares problem (test/fixtures/zero_rank.ts) trained with each stage over 2, 3 and 4 data
// ranks, through the strategies the engine uses, must end at the parameters one device reaches with
// AdamW on the mean of the ranks' gradients, with clipping and weight decay active: the full state
// put back together from the ranks' states by the fragment map, and under stages 1 and 2 every
// rank's own parameters. The ledger must show, per step and rank, the ring (or, for small messages,
// the direct) volume of each collective on the padded sizes; memory() must report what the device
// actually holds.

import assert from "node:assert/strict";
import { Comm } from "../src/comm/collectives.ts";
import { launch } from "../src/comm/launch.ts";
import type { CollectiveRecord } from "../src/comm/ledger.ts";
import { createWorld, openWorld } from "../src/comm/world.ts";
import { Parameter } from "../src/nn/parameter.ts";
import type { ModelBlock } from "../src/nn/phi3.ts";
import { adamwHyperparameters } from "../src/optim/adamw.ts";
import { assembleState, FRAGMENT_MAP_VERSION, type FragmentMap, rankFragments } from "../src/parallel/fragment_map.ts";
import { plainCodec } from "../src/parallel/partition_codec.ts";
import { createStrategy } from "../src/parallel/engine.ts";
import { ShapeError } from "../src/tensor/errors.ts";
import { keep, tidy } from "../src/tensor/scope.ts";
import zeroRank, {
  caseLayout,
  caseShards,
  initialValues,
  referenceRun,
  type ZeroCase,
  type ZeroCaseResult,
  type ZeroRankArgs,
} from "./fixtures/zero_rank.ts";
import { cpuDevice, skipWebGpu, webgpuDevice } from "./helpers.ts";

const ENTRY = new URL("./fixtures/zero_rank.ts", import.meta.url).href;
const F32 = 4;

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

/** Every rank's entry of a case's fragment map, with its parameters whole on the one tensor-parallel rank. */
function caseMap(c: ZeroCase, dp: number): FragmentMap {
  const layout = caseLayout(c, dp);
  const shards = caseShards(c);
  return {
    version: FRAGMENT_MAP_VERSION,
    layout,
    worldSize: dp,
    dataParallelSize: dp,
    tensorParallelSize: 1,
    parameters: c.shapes.map(([name, shape]) => ({ name, shape, shards: [shards[0].get(name)!] })),
    ranks: Array.from({ length: dp }, (_, rank) => rankFragments(layout, shards, c.groups, rank)),
  };
}

/** The final parameters of a case, put back together from the ranks' states. */
function assembled(c: ZeroCase, results: ZeroCaseResult[]): Record<string, Float32Array> {
  const { parameters } = assembleState(caseMap(c, results.length), results.map((r) => r.state));
  return Object.fromEntries([...parameters].map(([name, { fp32 }]) => [name, fp32]));
}

/** The collectives of one step of a case, in order: [tag, kind, padded elements of the whole collective]. */
function expectedCalls(c: ZeroCase, result: ZeroCaseResult): [string, string, number][] {
  const padded = result.fragments.flatGroups.map((g) => g.paddedNumel);
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
  const expected = Array.from({ length: ARGS.steps }, () => expectedCalls(c, result)).flat();
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
  const { memory, fragments } = result;
  const m = c.shapes.reduce((sum, [, shape]) => sum + shape.reduce((a, b) => a * b, 1), 0);
  const part = fragments.numel;
  const what = `dp ${dp} stage ${c.stage}: ${JSON.stringify(memory)}`;
  if (c.stage === 3) {
    assert.deepEqual([memory.parameters, memory.gradients, memory.optimizer], [F32 * part, F32 * part, 2 * F32 * part], what);
    const padding = fragments.flatGroups.reduce((sum, g) => sum + g.paddedNumel - g.numel, 0);
    assert.ok(memory.parameters + memory.gradients + memory.optimizer <= (16 * (m + padding)) / dp, what);
    // The working copy is one flat group's values with their gradients, during its backward.
    const largestGroup = Math.max(...fragments.flatGroups.map((g) => g.numel));
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
      const what = `dp ${dp} stage ${c.stage} ${size}`;
      const whole = assembled(c, results.map(({ value }) => value[i]));
      assertCloseParams(whole, expected[i].params, `${what}, put back together from the ranks' states`);
      for (const { rank, value } of results) {
        const result = value[i];
        // Stages 1 and 2 hold every parameter on every rank: the all-gathered master values, bit for bit.
        if (c.stage !== 3) assert.deepEqual(result.params, whole, `${what} rank ${rank}: its parameters`);
        result.losses.forEach((loss, step) => {
          const reference = expected[i].losses[rank][step];
          assert.ok(
            Math.abs(loss - reference) <= 1e-5 * Math.abs(reference),
            `${what} rank ${rank} step ${step}: loss ${loss} vs ${reference}`,
          );
        });
        checkLedger(c, result, dp, rank, size === "large");
        checkMemory(c, result, dp);
        assert.equal(result.leakedBytes, 0, `${what} rank ${rank}: dispose() leaves nothing behind`);
      }
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
    assertCloseParams(assembled(c, [results[i]]), expected.params, `dp 1 stage ${c.stage}`);
    assert.ok(results[i].collectives.every((record) => record.bytes === 0), "a group of one sends nothing");
    assert.equal(results[i].leakedBytes, 0);
  }
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
      assertCloseParams(assembled(c, [results[i]]), expected.params, `webgpu stage ${c.stage}`, 1e-5);
    }
  },
});

/**
 * Stage `stage` over one rank on blocks whose loss is Σ θ ⊙ G, so that each parameter's gradient is
 * exactly its G; `groups` are the blocks' parameters.
 */
async function linearProblem(
  stage: 1 | 2 | 3,
  shapes: [string, number[]][],
  groups: string[][],
  grads: Map<string, Float32Array>,
) {
  const device = await cpuDevice();
  const c: ZeroCase = { stage, shapes, groups };
  const slots = shapes.map(([name, shape]) =>
    new Parameter(name, shape, "normal", () => keep(device.zeros(shape, { requiresGrad: true })))
  );
  const byName = new Map(slots.map((slot) => [slot.name, slot]));
  const blocks: ModelBlock[] = groups.map((names, g) => ({
    label: `layer${g}`,
    parameters: names.map((name) => byName.get(name)!),
    run: (x) =>
      Promise.resolve(tidy(() => {
        const terms = names.map((name) =>
          byName.get(name)!.tensor.mul(device.tensor(grads.get(name)!, byName.get(name)!.shape)).sum()
        )
          .reduce((a, b) => a.add(b));
        return x ? x.add(terms) : terms;
      })),
  }));
  const strategy = createStrategy(stage, {
    parameters: slots,
    blocks,
    data: soloComm(),
    fragments: rankFragments(caseLayout(c, 1), caseShards(c), groups, 0),
    adamw: adamwHyperparameters(),
    sumReplicated: () => Promise.resolve(),
    codec: plainCodec("f32"),
  });
  const tokens = { ids: device.tensor(new Int32Array([0]), [1, 1]), targets: device.tensor(new Int32Array([0]), [1, 1]) };
  const backward = () =>
    tidy(async () => {
      let x = null;
      for (const block of blocks) x = await strategy.runBlock(block, x, tokens);
      await x!.backward();
    });
  const dispose = () => {
    strategy.dispose();
    for (const slot of slots) slot.value?.dispose();
    tokens.ids.dispose();
    tokens.targets.dispose();
  };
  return { strategy, slots, backward, dispose };
}

Deno.test("zero: gradSquares weights each parameter's share as asked", async () => {
  const shapes: [string, number[]][] = [["w1", [7, 5]], ["b", [13]], ["w2", [3, 11]]];
  const grads = initialValues(shapes);
  const weights: Record<string, number> = { w1: 0.5, b: 1, w2: 0.25 };
  const expected = shapes.reduce((sum, [name]) => sum + weights[name] * grads.get(name)!.reduce((s, g) => s + g * g, 0), 0);
  const plain = shapes.reduce((sum, [name]) => sum + grads.get(name)!.reduce((s, g) => s + g * g, 0), 0);
  const close = (actual: number, wanted: number, what: string) =>
    assert.ok(Math.abs(actual - wanted) <= 1e-6 * wanted, `${what}: ${actual} vs ${wanted}`);
  for (const stage of [2, 3] as const) {
    const { strategy, backward, dispose } = await linearProblem(stage, shapes, [["w1"], ["b", "w2"]], grads);
    await backward();
    await strategy.reduceGradients();
    close(await strategy.gradSquares((name) => weights[name]), expected, `stage ${stage} weighted`);
    close(await strategy.gradSquares(() => 1), plain, `stage ${stage}`);
    await assert.rejects(strategy.gradSquares(() => -1), /gradient weight of "w1" must be a finite number ≥ 0, got -1/);
    strategy.zeroGrad();
    dispose();
  }
});

Deno.test("zero: exportState and importState give back the same state, and the next step agrees", async () => {
  const shapes: [string, number[]][] = [["w1", [7, 5]], ["b", [13]], ["w2", [3, 11]]];
  const grads = initialValues(shapes);
  for (const stage of [1, 2, 3] as const) {
    const runs = [
      await linearProblem(stage, shapes, [["w1"], ["b", "w2"]], grads),
      await linearProblem(stage, shapes, [["w1"], ["b", "w2"]], grads),
    ];
    const train = async (run: Awaited<ReturnType<typeof linearProblem>>) => {
      await run.backward();
      await run.strategy.reduceGradients();
      await run.strategy.step({ lr: 0.1 });
      run.strategy.zeroGrad();
    };
    await train(runs[0]);
    await train(runs[0]);
    const saved = await runs[0].strategy.exportState();
    assert.equal(saved.step, 2);
    await runs[1].strategy.importState(saved);
    assert.deepEqual(await runs[1].strategy.exportState(), saved, `stage ${stage}: the imported state`);
    for (const run of runs) await train(run);
    assert.deepEqual(await runs[1].strategy.exportState(), await runs[0].strategy.exportState(), `stage ${stage}: one more step`);
    if (stage !== 3) {
      for (const [i, slot] of runs[1].slots.entries()) {
        assert.deepEqual(await slot.tensor.read(), await runs[0].slots[i].tensor.read(), `stage ${stage}: ${slot.name}`);
      }
    }
    for (const run of runs) run.dispose();
  }
});

Deno.test("zero: a gradient of the wrong shape, an empty slot and blocks that are not the flat groups are refused", async () => {
  const device = await cpuDevice();
  const shapes: [string, number[]][] = [["w", [2, 3]]];
  const { strategy, slots, dispose } = await linearProblem(2, shapes, [["w"]], initialValues(shapes));
  slots[0].tensor.grad = keep(device.zeros([3, 2]));
  await assert.rejects(
    strategy.reduceGradients(),
    (error) =>
      error instanceof ShapeError && /the gradient of "w" has shape \[3, 2\], the parameter \[2, 3\]/.test(error.message),
  );
  strategy.zeroGrad();
  dispose();

  const c: ZeroCase = { stage: 3, shapes: [["u", [4]]], groups: [["u"]] };
  const context = {
    blocks: [] as ModelBlock[],
    data: soloComm(),
    fragments: rankFragments(caseLayout(c, 1), caseShards(c), c.groups, 0),
    adamw: adamwHyperparameters(),
    sumReplicated: () => Promise.resolve(),
    codec: plainCodec("f32"),
  };
  const unallocated = new Parameter("u", [4], "ones", () => null);
  assert.throws(() => createStrategy(3, { ...context, parameters: [unallocated] }), /parameter "u" holds no value/);
  const held = new Parameter("u", [4], "ones", () => keep(device.zeros([4], { requiresGrad: true })));
  const other = new Parameter("v", [4], "ones", () => null);
  const block: ModelBlock = { label: "layer0", parameters: [other], run: () => Promise.reject(new Error("not run")) };
  assert.throws(
    () => createStrategy(3, { ...context, parameters: [held], blocks: [block] }),
    /block layer0 does not match flat group 0 of the fragment map \(u\)/,
  );
  held.value?.dispose();
  const slot = new Parameter("u", [4], "ones", () => keep(device.zeros([4], { requiresGrad: true })));
  const zero3 = createStrategy(3, {
    ...context,
    parameters: [slot],
    blocks: [{ label: "layer0", parameters: [slot], run: (x) => Promise.resolve(x!) }],
  });
  assert.equal(slot.value, null, "the full value is freed once partitioned");
  zero3.dispose();
});
