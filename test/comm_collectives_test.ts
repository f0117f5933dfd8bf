// Every collective × ranks {1, 2, 3, 4, 7, 8} × the case matrix (comm_matrix.ts: sizes, dtypes,
// groups, uneven splits, Tensors, 16 MiB at 2 and 4 ranks), against references computed here on the
// launching side (comm_expected.ts), bit for bit; one launch per world size runs all its cases. Then
// WebGPU tensors, mismatched collectives, timeouts and world.abort().

import assert from "node:assert/strict";
import { Comm } from "../src/comm/collectives.ts";
import { launch } from "../src/comm/launch.ts";
import { createWorld, openWorld } from "../src/comm/world.ts";
import { createDevice } from "../src/tensor/device.ts";
import { DTypeError } from "../src/tensor/errors.ts";
import type { Case, CaseResult, CasesArgs } from "./fixtures/comm_cases.ts";
import type { ErrorReport, MismatchArgs, Scenario } from "./fixtures/comm_mismatch.ts";
import { digest } from "./fixtures/comm_data.ts";
import { expectedResult, groupOf } from "./comm_expected.ts";
import { casesFor, HEAP_BYTES } from "./comm_matrix.ts";
import { skipWebGpu } from "./helpers.ts";

const ENTRY = new URL("./fixtures/comm_cases.ts", import.meta.url).href;

type RankValue = { results: (CaseResult | null | "absent")[] };

/** Compares every rank's result of every case with the reference; returns the failures. */
function check(cases: Case[], values: RankValue[]): string[] {
  const failures: string[] = [];
  cases.forEach((c, i) => {
    values.forEach((value, rank) => {
      const got = value.results[i];
      const group = groupOf(c, rank, values.length);
      if (!group) return void (got !== "absent" && failures.push(`${c.name} rank ${rank}: ran outside its group`));
      const expected = expectedResult(c, group, group.indexOf(rank));
      if (expected === null) {
        return void (got !== null && failures.push(`${c.name} rank ${rank}: expected nothing, got ${JSON.stringify(got)}`));
      }
      if (got === null || got === "absent") return void failures.push(`${c.name} rank ${rank}: no result`);
      if (got.length !== expected.length || got.digest !== digest(expected)) {
        const at = got.values?.findIndex((v, j) => !Object.is(v, expected[j]));
        const where = at !== undefined && at >= 0 ? `, first difference at ${at}: ${got.values![at]} vs ${expected[at]}` : "";
        failures.push(
          `${c.name} rank ${rank}: ${got.length} elements, digest ${got.digest}; expected ${expected.length}, ${
            digest(expected)
          }${where}`,
        );
      }
      if (c.out && !got.returnedOut) failures.push(`${c.name} rank ${rank}: the result is not the array passed as out`);
      if (c.tensor) {
        const cols = c.cols ?? 1;
        const length = ["allReduce", "broadcast"].includes(c.kind) ? c.sizes[0] : expected.length;
        const shape = cols === 1 ? [length] : [length / cols, cols];
        if (JSON.stringify(got.shape) !== JSON.stringify(shape) || got.dtype !== c.dtype) {
          failures.push(`${c.name} rank ${rank}: tensor ${got.dtype} [${got.shape}], expected ${c.dtype} [${shape}]`);
        }
      }
    });
  });
  return failures;
}

for (const ranks of [1, 2, 3, 4, 7, 8]) {
  Deno.test(`collectives match the launching side's reference bit for bit at ${ranks} ranks`, async () => {
    const cases = casesFor(ranks);
    const args: CasesArgs = { cases };
    const results = await launch<RankValue>({ ranks, entry: ENTRY, args, backend: "cpu", heapBytes: HEAP_BYTES });
    const failures = check(cases, results.map((r) => r.value));
    assert.deepEqual(
      failures,
      [],
      `${failures.length} of ${cases.length} cases × ${ranks} ranks differ:\n${failures.slice(0, 20).join("\n")}`,
    );
  });
}

Deno.test({
  name: "collectives on WebGPU tensors keep device, dtype and shape at 2 ranks",
  ignore: skipWebGpu,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const cases: Case[] = [
      { name: "gpu.allReduce", kind: "allReduce", dtype: "f32", sizes: [8 * 5, 8 * 5], seed: 1, tensor: true, cols: 5 },
      { name: "gpu.allReduce.i32.ring", kind: "allReduce", dtype: "i32", sizes: [65537, 65537], seed: 2, tensor: true },
      {
        name: "gpu.reduceScatter",
        kind: "reduceScatter",
        dtype: "f32",
        sizes: [6 * 3, 6 * 3],
        seed: 3,
        tensor: true,
        cols: 3,
        op: "avg",
      },
      { name: "gpu.allGather.u8", kind: "allGather", dtype: "u8", sizes: [12, 12], seed: 4, tensor: true, cols: 4 },
    ];
    const results = await launch<RankValue>({ ranks: 2, entry: ENTRY, args: { cases }, backend: "webgpu" });
    assert.deepEqual(check(cases, results.map((r) => r.value)), []);
  },
});

// ---- mismatches, timeouts and aborts ----

const MISMATCH = new URL("./fixtures/comm_mismatch.ts", import.meta.url).href;

/** Each rank's report per scenario, the scenarios run one after another in one world of 3 ranks. */
async function mismatchReports(scenarios: Scenario[], timeoutMs: number): Promise<(ErrorReport | "ok")[][]> {
  const args: MismatchArgs = { scenarios, ready: new SharedArrayBuffer(4) };
  const results = await launch<(ErrorReport | "ok")[]>({ ranks: 3, entry: MISMATCH, args, backend: "cpu", timeoutMs });
  return scenarios.map((_, i) => results.map((r) => r.value[i]));
}

Deno.test("mismatched kind, size, dtype, root, op, tag or counts fail every participant alike; the group goes on afterwards", async () => {
  const expected: [Scenario, number[], string][] = [
    ["kind", [0, 2], "kind differs: rank 0 allReduce, rank 2 broadcast"],
    ["size", [0, 1], "size differs: rank 0 passes 4 elements, rank 1 passes 5 elements"],
    ["dtype", [0, 2], "dtype differs: rank 0 f32, rank 2 i32"],
    ["root", [0, 1], "root differs: rank 0 root 0, rank 1 root 1"],
    ["op", [0, 1, 2], "op differs: rank 0 max, rank 1 sum, rank 2 sum"],
    ["tag", [0, 1], `tag differs: rank 0 "grads.layer0", rank 1 "grads.layer1"`],
    ["counts", [0, 1], "counts differs: rank 0 [1, 2, 3], rank 1 [1, 2, 4]"],
  ];
  const reports = await mismatchReports([...expected.map(([scenario]) => scenario), "sound"], 30_000);
  assert.deepEqual(reports.at(-1), ["ok", "ok", "ok"]);
  expected.forEach(([scenario, ranks, difference], i) => {
    for (const report of reports[i]) {
      assert.ok(report !== "ok", `${scenario}: a mismatched collective completed`);
      assert.equal(report.name, "CollectiveMismatchError", `${scenario}: ${report.message}`);
      assert.deepEqual(report.ranks, ranks, scenario);
      assert.ok(report.message.includes(difference), `${scenario}: "${report.message}" does not say "${difference}"`);
    }
  });
});

Deno.test("a group mismatch fails the ranks that see it; the rank left waiting times out naming the rank it waited for", async () => {
  const [[zero, one, two]] = await mismatchReports(["group"], 1000);
  for (const report of [zero, one]) {
    assert.ok(report !== "ok" && report.name === "CollectiveMismatchError", JSON.stringify(report));
    assert.deepEqual(report.ranks!.toSorted(), [0, 1]);
    assert.match(
      report.message,
      /group differs: rank \d calls allReduce on \[0, 1(, 2)?\], rank \d calls allReduce on \[0, 1(, 2)?\]/,
    );
  }
  assert.ok(two !== "ok" && two.name === "CollectiveTimeoutError" && two.waitingFor === 1, JSON.stringify(two));
});

Deno.test("a rank that skips a collective leaves the others timing out after timeoutMs, naming it", async () => {
  const [[zero, one, two]] = await mismatchReports(["absent"], 1000);
  assert.equal(one, "ok");
  for (const report of [zero, two]) {
    assert.ok(report !== "ok" && report.name === "CollectiveTimeoutError", JSON.stringify(report));
    assert.equal(report.waitingFor, 1);
    assert.match(report.message, /allReduce: rank [02] timed out after 1000 ms waiting for rank 1/);
  }
});

Deno.test("world.abort() from the launching thread ends a pending wait with CollectiveAbortedError within 50 ms", async () => {
  const world = createWorld({ ranks: 2 });
  const abortedAt = new Float64Array(new SharedArrayBuffer(8));
  const worker = new Worker(new URL("./fixtures/comm_abort_worker.ts", import.meta.url), { type: "module" });
  try {
    const report = new Promise<{ name: string; message: string; failedRank: number; lateMs: number }>((resolve) => {
      worker.onmessage = (event) =>
        event.data.ready
          ? setTimeout(() => {
            abortedAt[0] = performance.timeOrigin + performance.now();
            world.abort(1, "threw");
          }, 100)
          : resolve(event.data);
    });
    worker.postMessage({ memory: world.memory, abortedAt });
    const { name, message, failedRank, lateMs } = await report;
    assert.equal(name, "CollectiveAbortedError", message);
    assert.equal(failedRank, 1);
    assert.match(message, /recv: rank 0 aborted because rank 1 failed \(threw\)/);
    assert.ok(lateMs < 50, `the wait ended ${lateMs.toFixed(1)} ms after abort()`);
  } finally {
    worker.terminate();
  }
});

Deno.test("bad arguments are rejected before anything moves, naming the value", async () => {
  const { memory } = createWorld({ ranks: 2, channelBytes: 1 << 16 });
  const comm = new Comm(openWorld(memory, 0), { timeoutMs: 50 });
  const device = await createDevice({ backend: "cpu" });
  const x = new Float32Array(8);
  await assert.rejects(comm.allReduce(x, { op: "prod" as "sum" }), /allReduce: unknown op "prod" \(valid: sum, avg, max, min\)/);
  await assert.rejects(
    comm.allReduce(new Int32Array(2), { op: "avg" }),
    (e: Error) => e instanceof DTypeError && /op "avg" needs f32 or f16 values, got i32/.test(e.message),
  );
  await assert.rejects(
    comm.allReduce(new Float64Array(2) as unknown as Float32Array),
    /expected a Tensor, Float32Array, Int32Array, Uint8Array or Uint16Array \(f16 bits\), got Float64Array/,
  );
  await assert.rejects(
    comm.allReduce(device.tensor([1, 2], [2], { dtype: "i8" })),
    /tensors of dtype i8 cannot be communicated \(valid: f32, f16, i32, u8\)/,
  );
  await assert.rejects(comm.allReduce(x, { tag: 7 as unknown as string }), /allReduce: tag must be a string, got number/);
  await assert.rejects(comm.broadcast(x, { root: 2 }), /broadcast: root must be a group rank in 0\.\.1, got 2/);
  await assert.rejects(comm.send(x, { dst: 0 }), /send: dst 0 is this rank itself/);
  await assert.rejects(comm.reduceScatter(x, { counts: [4, 5] }), /reduceScatter: counts add up to 9, but x has 8 elements/);
  await assert.rejects(
    comm.allGather(x, { counts: [8] }),
    /allGather: counts must list 2 non-negative integers \(one per group rank\), got \[8\]/,
  );
  await assert.rejects(comm.allReduce(x, { out: new Float32Array(7) }), /allReduce: out has 7 elements, the result has 8/);
  await assert.rejects(
    comm.allReduce(x, { out: new Int32Array(8) as unknown as Float32Array }),
    /out must be a Float32Array like x, got Int32Array/,
  );
  const wide = new Float32Array(9);
  await assert.rejects(
    comm.allReduce(wide.subarray(0, 8), { out: wide.subarray(1) }),
    /allReduce: out overlaps x without being x itself/,
  );
  await assert.rejects(comm.reduceScatter(x, { out: x.subarray(2, 6) }), /reduceScatter: out overlaps x; pass a separate array/);
  await assert.rejects(
    comm.allReduce(device.tensor(x, [8]), { out: x }),
    /out is for typed arrays; a Tensor's result is a new Tensor/,
  );
  await assert.rejects(comm.allGather(x, { out: new Float32Array(16) }), /allGather: out needs counts \(one per group rank\)/);
  await assert.rejects(
    comm.allGather(x, { counts: [8, 8], out: new Float32Array(15) }),
    /allGather: out has 15 elements, the result has 16/,
  );
  await assert.rejects(
    comm.allGather(x, { counts: [8, 8], out: new Uint8Array(16) as unknown as Float32Array }),
    /allGather: out must be a Float32Array like x, got Uint8Array/,
  );
  await assert.rejects(
    comm.allGather(x, { counts: [4, 4], out: x }),
    /allGather: out overlaps x; pass a separate array \(x cannot be out: the gathered result is longer than x\)/,
  );
  await assert.rejects(comm.allToAll(x, { out: new Float32Array(8) }), /allToAll: out needs recvCounts \(one per group rank\)/);
  await assert.rejects(
    comm.allToAll(x, { recvCounts: [4, 5], out: new Float32Array(8) }),
    /allToAll: out has 8 elements, the result has 9/,
  );
  await assert.rejects(
    comm.allToAll(wide.subarray(0, 8), { recvCounts: [4, 4], out: wide.subarray(1) }),
    /allToAll: out overlaps x; pass a separate array \(x may be out itself only \(in place\)\)/,
  );
  await assert.rejects(
    comm.allToAll(x, { recvCounts: [3, 5], out: x }),
    /allToAll: in place needs recvCounts equal to sendCounts, got recvCounts \[3,5\] and sendCounts \[4,4\]/,
  );
  await assert.rejects(
    comm.allToAll(device.tensor(x, [8]), { recvCounts: [4, 4], out: new Float32Array(8) }),
    /allToAll: out is for typed arrays/,
  );
  await assert.rejects(
    comm.recv({ length: 2, dtype: "f64" as "f32" }, { src: 1 }),
    /recv: like must be a Tensor, a typed array or \{ length, dtype/,
  );
  assert.deepEqual(comm.ledger.collectives, []);
  device.destroy();
});
