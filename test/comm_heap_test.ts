// Each rank's heap in the world's memory (comm.alloc / comm.free, src/comm/heap.ts): arrays land in
// the rank's own region, aligned and zeroed; first fit reuses freed ranges and merges neighbours;
// bad requests fail naming the values. Collectives on heap arrays are in the case matrix
// (comm_matrix.ts), checked bit for bit and byte for byte by the collective and ledger tests; here,
// the calls whose members pass different kinds of arrays (in place on some ranks only) and heaps that
// lie beyond 2 GiB of the world's memory.

import assert from "node:assert/strict";
import { Comm } from "../src/comm/collectives.ts";
import { launch } from "../src/comm/launch.ts";
import type { LedgerJSON } from "../src/comm/ledger.ts";
import { createWorld, openWorld, type World } from "../src/comm/world.ts";
import { expectedResult, expectedSends, groupOf } from "./comm_expected.ts";
import type { Case, CaseResult, CasesArgs } from "./fixtures/comm_cases.ts";
import { digest } from "./fixtures/comm_data.ts";

const HEAP = 1 << 16;

function ranksOf(ranks: number, heapBytes = HEAP): { worlds: World[]; comms: Comm[] } {
  const { memory } = createWorld({ ranks, channelBytes: 1 << 16, heapBytes });
  const worlds = Array.from({ length: ranks }, (_, rank) => openWorld(memory, rank));
  return { worlds, comms: worlds.map((world) => new Comm(world)) };
}

Deno.test("heap: arrays lie in their rank's region of the world's memory, 64-byte aligned, zeroed, apart", () => {
  const { worlds, comms } = ranksOf(3);
  for (const [rank, comm] of comms.entries()) {
    const start = worlds[rank].heapOffset(rank);
    const arrays = [comm.alloc(5), comm.alloc(3, "i32"), comm.alloc(100, "u8"), comm.alloc(0, "f32")];
    assert.ok(arrays[0] instanceof Float32Array && arrays[1] instanceof Int32Array && arrays[2] instanceof Uint8Array);
    assert.deepEqual(arrays.map((a) => a.length), [5, 3, 100, 0]);
    for (const array of arrays) {
      assert.equal(array.buffer, worlds[rank].buffer);
      assert.equal(array.byteOffset % 64, 0);
      assert.ok(
        array.byteOffset >= start && array.byteOffset + array.byteLength <= start + HEAP,
        `rank ${rank}: ${array.byteOffset}`,
      );
      assert.ok(array.every((v) => v === 0));
    }
    const ends = arrays.map((a) => [a.byteOffset, a.byteOffset + Math.max(a.byteLength, 1)]).sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < ends.length; i++) assert.ok(ends[i][0] >= ends[i - 1][1], "allocations overlap");
  }
  assert.equal(worlds[1].heapOffset(1) - worlds[0].heapOffset(0), HEAP);
});

Deno.test("heap: freed ranges are reused and merge with their neighbours; a freed array comes back zeroed", () => {
  const { comms: [comm] } = ranksOf(1);
  const quarter = HEAP / 4 / 4;
  const [a, b, c, d] = [0, 1, 2, 3].map(() => comm.alloc(quarter));
  assert.throws(
    () => comm.alloc(1),
    /alloc: 1 f32 elements \(64 bytes\) do not fit rank 0's heap of 65536 bytes \(0 free, largest free range 0\); launch with a larger heapBytes/,
  );
  b.fill(7);
  comm.free(b);
  comm.free(c);
  // b and c merged: one range of half the heap, where b was.
  const half = comm.alloc(2 * quarter);
  assert.equal(half.byteOffset, b.byteOffset);
  assert.ok(half.every((v) => v === 0));
  comm.free(a);
  comm.free(half);
  comm.free(d);
  const whole = comm.alloc(4 * quarter);
  assert.equal(whole.byteOffset, a.byteOffset);
});

Deno.test("heap: bad requests name the value", () => {
  const { comms: [comm] } = ranksOf(1);
  assert.throws(() => comm.alloc(-1), /alloc: length must be a non-negative integer, got -1/);
  assert.throws(() => comm.alloc(2.5), /alloc: length must be a non-negative integer, got 2.5/);
  assert.throws(() => comm.alloc(4, "f64" as "f32"), /alloc: dtype must be one of f32, i32, u8, f16, got "f64"/);
  const array = comm.alloc(4);
  comm.free(array);
  assert.throws(
    () => comm.free(array),
    /free: the array \(Float32Array of 4 at byte \d+\) is not a live allocation of rank 0's heap/,
  );
  assert.throws(
    () => comm.free(new Float32Array(4)),
    /free: the array \(Float32Array of 4 at byte 0\) is not a live allocation of rank 0's heap/,
  );
  const { comms: [none] } = ranksOf(1, 0);
  assert.throws(() => none.alloc(1), /do not fit rank 0's heap of 0 bytes .*launch with a larger heapBytes/);
});

const ENTRY = new URL("./fixtures/comm_cases.ts", import.meta.url).href;

type RankValue = { results: (CaseResult | null | "absent")[]; ledger: LedgerJSON };

/** Runs the cases in one world and returns how the ranks' results differ from the references (comm_expected.ts). */
async function runCases(ranks: number, heapBytes: number, cases: Case[]): Promise<{ failures: string[]; ledgers: LedgerJSON[] }> {
  const args: CasesArgs = { cases, ledger: true };
  const values = (await launch<RankValue>({ ranks, entry: ENTRY, args, backend: "cpu", heapBytes, timeoutMs: 10_000 })).map((r) =>
    r.value
  );
  const failures: string[] = [];
  cases.forEach((c, i) => {
    values.forEach(({ results }, rank) => {
      const group = groupOf(c, rank, ranks)!;
      const expected = expectedResult(c, group, group.indexOf(rank));
      const got = results[i];
      if (expected === null) return void (got !== null && failures.push(`${c.name} rank ${rank}: expected nothing`));
      if (got === null || got === "absent") return void failures.push(`${c.name} rank ${rank}: no result`);
      if (got.digest !== digest(expected)) {
        failures.push(
          `${c.name} rank ${rank}: ${JSON.stringify(got.values ?? got.digest)}, expected ${JSON.stringify(Array.from(expected))}`,
        );
      }
      if (got.keptInput === false) failures.push(`${c.name} rank ${rank}: x changed, though the result went elsewhere`);
      if (got.returnedOut === false) failures.push(`${c.name} rank ${rank}: the result is not the array passed as out`);
    });
  });
  return { failures, ledgers: values.map((value) => value.ledger) };
}

Deno.test("an all-to-all in place on some ranks only: every rank gets its blocks, x stays as it was where it is not out, each block counted once", async () => {
  // Blocks of 7, 3000 and 20000 elements: inline, by place, and (private, 80 KB) streamed.
  const ranks = 3;
  const send = Array.from({ length: ranks }, (_, i) => Array.from({ length: ranks }, (_, j) => [3000, 7, 20000][(i + j) % 3]));
  const sizes = send.map((row) => row.reduce((a, b) => a + b, 0));
  const base = { kind: "allToAll", dtype: "f32", sizes, sendCounts: send, out: "self" } as const;
  const cases: Case[] = [
    { ...base, name: "heap.inPlaceOnRank0", seed: 1, heap: "all", outRanks: [0] },
    { ...base, name: "heap.inPlaceOnRanks1and2", seed: 2, heap: "all", outRanks: [1, 2] },
    { ...base, name: "private.inPlaceOnRank0", seed: 3, outRanks: [0] },
    { ...base, name: "heapOnRank0.inPlaceOnRank0", seed: 4, heap: "first", outRanks: [0] },
    { ...base, name: "heap.inPlaceEverywhere", seed: 5, heap: "all" },
  ];
  const { failures, ledgers } = await runCases(ranks, 1 << 20, cases);
  assert.deepEqual(failures, []);
  for (const c of cases) {
    ledgers.forEach((ledger, rank) => {
      const [record] = ledger.collectives.filter((r) => r.tag === c.name);
      const { bytes } = expectedSends(c, [0, 1, 2], rank);
      assert.equal(record.algorithm, c.outRanks ? "direct" : "peer", `${c.name} rank ${rank}`);
      assert.deepEqual(
        record.sends.map((s) => [s.dst, s.bytes]),
        bytes.flatMap((b, dst) => b > 0 ? [[dst, b]] : []),
        `${c.name} rank ${rank}`,
      );
    });
  }
});

Deno.test("collectives by place reach heaps that lie beyond 2 GiB of the world's memory", async () => {
  // Three heaps of 1 GiB: rank 2's starts past 2^31 bytes, where a byte offset no longer fits an Int32.
  const ranks = 3;
  const all = (size: number) => new Array<number>(ranks).fill(size);
  const cases: Case[] = [
    { name: "broadcast.fromFar", kind: "broadcast", dtype: "f32", sizes: all(65537), seed: 1, root: 2, heap: "all" },
    { name: "allReduce.inPlace", kind: "allReduce", dtype: "f32", sizes: all(65537), seed: 2, heap: "all", out: "self" },
    { name: "allGather.inPlace", kind: "allGather", dtype: "i32", sizes: all(5000), seed: 3, heap: "all", out: "block" },
    { name: "reduceScatter", kind: "reduceScatter", dtype: "u8", sizes: all(65537), seed: 4, heap: "all", op: "max" },
    { name: "gather.fromFar", kind: "gather", dtype: "f32", sizes: all(13), seed: 5, root: 0, heap: "all" },
    {
      name: "allToAll.swap",
      kind: "allToAll",
      dtype: "f32",
      sizes: all(30),
      seed: 6,
      sendCounts: all(30).map(() => all(10)),
      heap: "all",
      out: "self",
    },
  ];
  const { failures } = await runCases(ranks, 1 << 30, cases);
  assert.deepEqual(failures, []);
});
