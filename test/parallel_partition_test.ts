// ZeRO partitions and the fragment map, as plain data.
//
// Partitions are checked element by element: every parameter element on exactly one rank, equal
// partitions, padding below the data group's size and only at a flat group's end, a hand-worked
// layout. The fragment map is checked against the rules written out here: fragments cut at
// sub-parameter boundaries, replicas across the data group under DDP only, across the tensor-parallel
// group for norms and for kv heads shared by several ranks; and for every layout family it must
// rebuild full values from states made by slicing known values with the shards (vocabulary padding
// included), and say which element is missing when a fragment is dropped.

import assert from "node:assert/strict";
import { assembleState } from "../src/parallel/fragment_map.ts";
import type { ParallelLayout } from "../src/parallel/layout.ts";
import { type Partition, partitionParameters } from "../src/parallel/zero_partition.ts";
import { knownValues, mapOf, MODEL, statesFrom } from "./known_states.ts";

// ---- partitions ----

function partitionsOf(sizes: number[], groups: number[][], dp: number): Partition[] {
  const params = sizes.map((n, i) => [`p${i}`, n] as const);
  return Array.from({ length: dp }, (_, r) => partitionParameters(params, groups.map((g) => g.map((i) => `p${i}`)), dp, r));
}

Deno.test("partition: a hand-worked layout of three parameters over 3 data ranks", () => {
  const [r0, r1, r2] = partitionsOf([5, 4, 2], [[0, 1, 2]], 3);
  assert.deepEqual(r0.groups, [{
    names: ["p0", "p1", "p2"],
    sizes: [5, 4, 2],
    numel: 11,
    paddedNumel: 12,
    start: 0,
    partNumel: 4,
  }]);
  assert.deepEqual(r0.fragments, [{ name: "p0", start: 0, numel: 4, shardOffset: 0 }]);
  assert.deepEqual(r1.fragments, [{ name: "p0", start: 0, numel: 1, shardOffset: 4 }, {
    name: "p1",
    start: 1,
    numel: 3,
    shardOffset: 0,
  }]);
  assert.deepEqual(r2.fragments, [{ name: "p1", start: 0, numel: 1, shardOffset: 3 }, {
    name: "p2",
    start: 1,
    numel: 2,
    shardOffset: 0,
  }]);
  assert.deepEqual([r0.padding, r1.padding, r2.padding], [[], [], [[3, 1]]]);
  for (const p of [r0, r1, r2]) assert.equal(p.numel, 4);
});

Deno.test("partition: 1..4 data ranks, uneven sizes and several flat groups cover every element once, in equal partitions", () => {
  const sizes = [35, 13, 33, 1, 0, 64, 7];
  const layouts = [[[0, 1, 2, 3, 4, 5, 6]], [[0], [1, 2, 3], [4, 5], [6]], [[6, 0], [3, 2, 1, 5, 4]]];
  for (const groups of layouts) {
    for (let dp = 1; dp <= 4; dp++) {
      const partitions = partitionsOf(sizes, groups, dp);
      const owners = sizes.map((n) => new Array<number>(n).fill(0));
      // Each rank's partition, filled with a code for (parameter, element); padding marked -2, gaps stay -1.
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
          for (let e = 0; e < f.numel; e++) {
            owners[i][f.shardOffset + e]++;
            assert.equal(flats[r][f.start + e], -1, `dp ${dp} rank ${r}: element ${f.start + e} written twice`);
            flats[r][f.start + e] = values(i, f.shardOffset + e);
          }
        }
        for (const [start, numel] of p.padding) {
          assert.ok(
            flats[r].subarray(start, start + numel).every((v) => v === -1),
            `dp ${dp} rank ${r}: padding over a fragment`,
          );
          flats[r].fill(-2, start, start + numel);
        }
        assert.ok(flats[r].every((v) => v !== -1), `dp ${dp} rank ${r}: fragments and padding tile the partition`);
        assert.deepEqual(JSON.parse(JSON.stringify(p)), p, "the partition is plain JSON");
      });
      owners.forEach((counts, i) => assert.ok(counts.every((c) => c === 1), `dp ${dp}: p${i} is not covered exactly once`));
      // Rebuild every flat group by joining the ranks' parts, as an all-gather would, and compare with the parameters.
      partitions[0].groups.forEach((g) => {
        const joined = partitions.flatMap((_, r) => [...flats[r].subarray(g.start, g.start + g.partNumel)]);
        const expected = g.names.flatMap((name) =>
          Array.from({ length: sizes[Number(name.slice(1))] }, (_, e) => values(Number(name.slice(1)), e))
        );
        assert.deepEqual(joined.slice(0, g.numel), expected);
        assert.ok(joined.slice(g.numel).every((v) => v === -2), "padding only at the flat group's end");
      });
    }
  }
});

Deno.test("partition: bad sizes, ranks and flat groups are refused, naming the values", () => {
  const params = [["a", 3], ["b", 4]] as const;
  assert.throws(() => partitionParameters(params, [["a", "b"]], 0, 0), /data group size must be an integer ≥ 1, got 0/);
  assert.throws(() => partitionParameters(params, [["a", "b"]], 1.5, 0), /data group size must be an integer ≥ 1, got 1.5/);
  assert.throws(() => partitionParameters(params, [["a", "b"]], 3, 3), /data rank must be an integer in 0..2, got 3/);
  assert.throws(() => partitionParameters(params, [["a"]], 2, 0), /the flat groups miss parameter "b"/);
  assert.throws(
    () => partitionParameters(params, [["a", "b"], ["a"]], 2, 0),
    /"a" appears more than once in the flat groups \(flat group 0 and flat group 1\)/,
  );
  assert.throws(
    () => partitionParameters(params, [["a", "b", "c"]], 2, 0),
    /flat group 0 names "c", which is not a parameter \(parameters: a, b\)/,
  );
  assert.throws(() => partitionParameters(params, [["a", "b"], []], 2, 0), /flat group 1 is empty/);
  assert.throws(() => partitionParameters([["a", 3], ["a", 2]], [["a"]], 2, 0), /"a" appears more than once/);
});

// ---- the fragment map ----

const LAYOUTS: Partial<ParallelLayout>[] = [
  {},
  { dp: 2 },
  { dp: 3, zero: 1 },
  { dp: 2, zero: 2 },
  { dp: 4, zero: 3 },
  { tp: 2 },
  { tp: 4 },
  { dp: 2, tp: 4, zero: 3 },
  { sp: 2 },
  { dp: 2, sp: 2, zero: 3 },
  { sp: 2, spImpl: "megatron" },
  { dp: 2, sp: 2, zero: 1, spImpl: "megatron" },
];

for (const layout of LAYOUTS) {
  Deno.test(`fragment map: ${JSON.stringify(layout)} rebuilds known values and moments from the ranks' states`, async () => {
    const map = await mapOf(layout);
    assert.deepEqual(JSON.parse(JSON.stringify(map)), map, "the map is plain JSON");
    const full = knownValues(map);
    const { step, parameters } = assembleState(map, statesFrom(map, full, 7));
    assert.equal(step, 7);
    for (const [name, values] of full) {
      const got = parameters.get(name)!;
      assert.deepEqual(got.fp32, values, `${name}: fp32`);
      assert.deepEqual(got.expAvg, values.map((v) => 2 * v), `${name}: exp_avg`);
      assert.deepEqual(got.expAvgSq, values.map((v) => v * v), `${name}: exp_avg_sq`);
    }
    // Under ZeRO each element of a shard is held by one data rank; padding fills the rest of the partition.
    for (const entry of map.ranks) {
      const held = entry.fragments.reduce((sum, f) => sum + f.numel, 0) + entry.padding.reduce((sum, [, n]) => sum + n, 0);
      assert.equal(held, entry.numel, `rank ${entry.rank}: fragments and padding tile the flat state`);
    }
  });
}

Deno.test("fragment map: fragments split at sub-parameters, with the replicas the layout implies", async () => {
  // tp 4 over 2 kv heads: each kv head sits on 2 ranks; dp 2 under DDP replicates everything twice.
  const map = await mapOf({ dp: 2, tp: 4 });
  const D = MODEL.hiddenSize / MODEL.numHeads;
  const qkv = "model.layers.1.self_attn.qkv_proj.weight";
  const rank5 = map.ranks[5];
  assert.deepEqual([rank5.dataRank, rank5.tensorParallelRank], [1, 1]);
  const pieces = rank5.fragments.filter((f) => f.name === qkv);
  // One q head of D rows, one k head, one v head, each row of width hidden.
  assert.deepEqual(pieces.map((f) => [f.shardOffset, f.numel]), [[0, D * 64], [D * 64, D * 64], [2 * D * 64, D * 64]]);
  assert.deepEqual(pieces.map((f) => f.replicas), [[1, 5], [0, 1, 4, 5], [0, 1, 4, 5]]);
  const norm = rank5.fragments.find((f) => f.name === "model.norm.weight")!;
  assert.deepEqual(norm.replicas, [0, 1, 2, 3, 4, 5, 6, 7]);

  // ZeRO-3 over the same mesh: data ranks hold their own parts, replicas only across tensor-parallel ranks.
  const zero3 = await mapOf({ dp: 2, tp: 4, zero: 3 });
  for (const f of zero3.ranks[5].fragments) {
    assert.ok(f.replicas.every((r) => zero3.ranks[r].dataRank === 1), `${f.name}: a replica outside data rank 1`);
  }
  const zeroNorm = zero3.ranks[5].fragments.find((f) => f.name === "model.norm.weight");
  if (zeroNorm) assert.deepEqual(zeroNorm.replicas, [4, 5, 6, 7]);

  // Megatron-SP shards over the sp ranks: the norms are replicated there, the vocabulary padded to 98 rows.
  const megatron = await mapOf({ sp: 2, spImpl: "megatron" });
  assert.deepEqual(megatron.ranks[1].fragments.find((f) => f.name === "model.norm.weight")!.replicas, [0, 1]);
  assert.deepEqual(megatron.parameters.find((p) => p.name === "lm_head.weight")!.shards.map((s) => [s.kind, s.paddedSize]), [
    ["vocab", 98],
    ["vocab", 98],
  ]);
});

Deno.test("fragment map: a missing fragment, a short state and a step out of line are named", async () => {
  const map = await mapOf({ dp: 2, zero: 2 });
  const full = new Map(map.parameters.map(({ name, shape }) => [name, new Float32Array(shape.reduce((a, b) => a * b, 1))]));
  const states = statesFrom(map, full, 3);
  const dropped = structuredClone(map);
  const lost = dropped.ranks[1].fragments.shift()!;
  assert.throws(
    () => assembleState(dropped, states),
    new RegExp(`no fragment holds element ${lost.shardOffset} of "${lost.name}" shard 0`),
  );
  assert.throws(() => assembleState(map, [states[0], { ...states[1], step: 4 }]), /rank 1 is at step 4, rank 0 at step 3/);
  assert.throws(
    () => assembleState(map, [states[0], { ...states[1], expAvg: states[1].expAvg.subarray(1) }]),
    /rank 1's expAvg holds \d+ elements, its map \d+/,
  );
  assert.throws(() => assembleState(map, [states[0]]), /the map has 2 ranks, but 1 states were given/);
});
