// Groups and the mesh: comm.group() over any global ranks in any order, node-local and cross-node
// groups from ranksPerNode, mesh() deriving every group from one [pp, dp, sp, tp] grid (tp fastest),
// and the errors for worlds, groups and meshes that cannot be. The layout checks run on the launching
// thread (making groups never waits); one launch all-reduces over every group at once.

import assert from "node:assert/strict";
import { Comm } from "../src/comm/collectives.ts";
import { launch } from "../src/comm/launch.ts";
import { mesh, type MeshSizes } from "../src/comm/mesh.ts";
import { createWorld, openWorld } from "../src/comm/world.ts";
import type { GroupReport } from "./fixtures/comm_groups.ts";

/** The communicator of every rank of a world, made on this thread. */
function worldComms(ranks: number, ranksPerNode: number): Comm[] {
  const { memory } = createWorld({ ranks, ranksPerNode, channelBytes: 1 << 16 });
  return Array.from({ length: ranks }, (_, rank) => new Comm(openWorld(memory, rank)));
}

/** Rank → grid coordinates, by walking the grid in [pp, dp, sp, tp] order. */
function gridCoords(sizes: MeshSizes): MeshSizes[] {
  const coords: MeshSizes[] = [];
  for (let pp = 0; pp < sizes.pp; pp++) {
    for (let dp = 0; dp < sizes.dp; dp++) {
      for (let sp = 0; sp < sizes.sp; sp++) {
        for (let tp = 0; tp < sizes.tp; tp++) coords.push({ pp, dp, sp, tp });
      }
    }
  }
  return coords;
}

/** The ranks whose coordinates equal `of`'s on every axis but `axis`, ordered along it. */
function peersAlong(coords: MeshSizes[], of: MeshSizes, axis: keyof MeshSizes): number[] {
  return coords.flatMap((c, rank) => (["pp", "dp", "sp", "tp"] as const).every((a) => a === axis || c[a] === of[a]) ? [rank] : [])
    .toSorted((a, b) => coords[a][axis] - coords[b][axis]);
}

Deno.test("group(): group ranks follow the list order, the same list gives the same communicator, members only", async () => {
  const comms = worldComms(8, 4);
  const group = comms[5].group([6, 5, 1]);
  assert.deepEqual([group.ranks, group.rank, group.size, group.globalRank], [[6, 5, 1], 1, 3, 5]);
  assert.equal(comms[5].group([6, 5, 1]), group);
  const outsider = comms[2].group([6, 5, 1]);
  assert.equal(outsider.rank, -1);
  await assert.rejects(outsider.allReduce(new Float32Array(1)), /allReduce: rank 2 is not in the group \[6, 5, 1\]/);
  await assert.rejects(outsider.barrier(), /barrier: rank 2 is not in the group/);
  assert.throws(() => comms[0].group([1, 1]), /group: ranks must be distinct integers in 0\.\.7, got \[1,1\]/);
  assert.throws(() => comms[0].group([0, 8]), /got \[0,8\]/);
  assert.throws(() => comms[0].group([]), /got \[\]/);
});

Deno.test("nodeGroup() holds the ranks of this node, crossNodeGroup() this local index on every node", () => {
  const comms = worldComms(8, 4);
  assert.deepEqual([comms[6].node, comms[6].nodeGroup().ranks, comms[6].crossNodeGroup().ranks], [1, [4, 5, 6, 7], [2, 6]]);
  assert.deepEqual([comms[1].node, comms[1].nodeGroup().ranks, comms[1].crossNodeGroup().ranks], [0, [0, 1, 2, 3], [1, 5]]);
  const flat = worldComms(3, 3);
  assert.deepEqual([flat[2].nodeGroup().ranks, flat[2].crossNodeGroup().ranks], [[0, 1, 2], [2]]);
});

for (
  const sizes of [{ pp: 2, dp: 2, sp: 1, tp: 2 }, { pp: 1, dp: 2, sp: 2, tp: 2 }, { pp: 1, dp: 8, sp: 1, tp: 1 }, {
    pp: 2,
    dp: 1,
    sp: 4,
    tp: 1,
  }]
) {
  Deno.test(`mesh(${JSON.stringify(sizes)}) gives every rank its grid coordinates and the groups along each axis`, () => {
    const coords = gridCoords(sizes);
    worldComms(8, 4).forEach((comm, rank) => {
      const grid = mesh(comm, sizes);
      assert.deepEqual(grid.coords, coords[rank], `rank ${rank}`);
      assert.deepEqual(grid.sizes, sizes);
      for (const axis of ["pp", "dp", "sp", "tp"] as const) {
        assert.deepEqual(grid[axis].ranks, peersAlong(coords, coords[rank], axis), `rank ${rank}, ${axis}`);
        assert.equal(grid[axis].rank, coords[rank][axis]);
      }
      // dp × sp: the ranks that share this rank's pp and tp coordinates.
      const dataPeers = coords.flatMap((c, r) => (c.pp === coords[rank].pp && c.tp === coords[rank].tp ? [r] : []));
      assert.deepEqual(grid.spanning(["dp", "sp"]).ranks, dataPeers, `rank ${rank}, dp × sp`);
    });
  });
}

Deno.test("mesh, world and channel sizes that cannot be fail before anything starts, naming the numbers", () => {
  const [comm] = worldComms(8, 4);
  assert.throws(() => mesh(comm, { dp: 2, tp: 2 }), /mesh: pp 1 × dp 2 × sp 1 × tp 2 = 4 ranks, but the communicator has 8/);
  assert.throws(() => mesh(comm, { dp: 0, tp: 8 }), /mesh: dp must be an integer >= 1, got 0/);
  assert.deepEqual(mesh(comm, { dp: 8 }).tp.ranks, [0]);
  assert.throws(() => createWorld({ ranks: 0 }), /world: ranks must be an integer >= 1, got 0/);
  assert.throws(
    () => createWorld({ ranks: 8, ranksPerNode: 3 }),
    /ranksPerNode must be a positive integer that divides ranks \(8\), got 3/,
  );
  assert.throws(
    () => createWorld({ ranks: 2, channelBytes: 1000 }),
    /channelBytes must be a multiple of 256 and at least 16384 \(4 slots\), got 1000/,
  );
  const { memory } = createWorld({ ranks: 2 });
  assert.throws(() => openWorld(memory, 2), /openWorld: rank 2 is not in this world of 2 ranks \(valid: 0\.\.1\)/);
  assert.throws(
    () => openWorld(new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }), 0),
    /openWorld: the memory was not made by createWorld\(\)/,
  );
  assert.throws(
    () => openWorld(new SharedArrayBuffer(64) as unknown as WebAssembly.Memory, 0),
    /openWorld: expected the world's shared WebAssembly.Memory/,
  );
  assert.throws(
    () => createWorld({ ranks: 2, heapBytes: 100 }),
    /world: heapBytes must be a non-negative multiple of 64, got 100/,
  );
  assert.throws(
    () => createWorld({ ranks: 2, heapBytes: 2 ** 31 }),
    /world: 2 ranks need \d+ bytes of shared memory .* more than the 4294967296 a shared WebAssembly.Memory holds; lower heapBytes or channelBytes/,
  );
});

Deno.test("every mesh, node and cross-node group all-reduces at once on 8 ranks, 4 per node", async () => {
  const sizes = { pp: 2, dp: 2, sp: 1, tp: 2 };
  const results = await launch<GroupReport>({
    ranks: 8,
    ranksPerNode: 4,
    entry: new URL("./fixtures/comm_groups.ts", import.meta.url).href,
    args: { sizes },
    backend: "cpu",
  });
  const coords = gridCoords(sizes);
  for (const { rank, value } of results) {
    assert.deepEqual(value.coords, coords[rank]);
    const expected: Record<string, number[]> = {
      tp: peersAlong(coords, coords[rank], "tp"),
      dp: peersAlong(coords, coords[rank], "dp"),
      sp: [rank],
      pp: peersAlong(coords, coords[rank], "pp"),
      node: rank < 4 ? [0, 1, 2, 3] : [4, 5, 6, 7],
      crossNode: [rank % 4, rank % 4 + 4],
    };
    for (const [name, ranks] of Object.entries(expected)) {
      const got = value.groups[name];
      assert.deepEqual(got, { ranks, rank: ranks.indexOf(rank), sum: ranks.reduce((a, b) => a + b, 0) }, `rank ${rank}, ${name}`);
    }
  }
  const kinds = new Set(results.traffic.collectives.map((c) => c.tag));
  assert.deepEqual([...kinds].toSorted(), ["mesh.crossNode", "mesh.dp", "mesh.node", "mesh.pp", "mesh.sp", "mesh.tp"]);
});
