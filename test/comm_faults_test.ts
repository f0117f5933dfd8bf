// Faults in a launched world: a rank that throws, exits (self.close() or an uncaught error in its
// worker) or stops answering (an await that never ends, a busy loop). launch rejects with
// RankFailedError naming that rank — never a rank that merely timed out waiting for it — and every
// worker has ended soon after: each rank holds a Web Lock that frees only when its worker is gone.
// The other ranks wait in an all-reduce; with a long timeoutMs they end quickly only because the
// launcher aborts the world. The last tests check how the watch picks the rank among chained
// timeout reports.

import assert from "node:assert/strict";
import { RankFailedError } from "../src/comm/errors.ts";
import { launch } from "../src/comm/launch.ts";
import { RankWatch } from "../src/comm/rank_watch.ts";
import type { FaultArgs } from "./fixtures/launch_faults.ts";
import { releasedWithin } from "./fixtures/launch_liveness.ts";

const FAULTS = new URL("./fixtures/launch_faults.ts", import.meta.url).href;
/** Long enough that only an abort, not a timeout, can end the waiting ranks in these tests. */
const LONG_TIMEOUT_MS = 30_000;
/** How long after launch rejects every worker must have ended. */
const END_WITHIN_MS = 2_000;

interface FaultRun {
  error: RankFailedError;
  /** Milliseconds from the moment every rank was in place (the last { ready } event) to the rejection. */
  afterReadyMs: number;
}

async function runFault(ranks: number, fault: Omit<FaultArgs, "lockPrefix">, timeoutMs: number): Promise<FaultRun> {
  const args: FaultArgs = { ...fault, lockPrefix: crypto.randomUUID() };
  let lastReady = NaN;
  const onEvent = () => (lastReady = performance.now());
  const error = await launch({ ranks, entry: FAULTS, args, backend: "cpu", timeoutMs, onEvent }).then(
    () => assert.fail("launch resolved although a rank failed"),
    (error) => error,
  );
  const afterReadyMs = performance.now() - lastReady;
  assert.ok(error instanceof RankFailedError, `expected RankFailedError, got ${error}`);
  for (let rank = 0; rank < ranks; rank++) {
    const within = rank === fault.failRank && fault.mode === "busy" ? fault.busyMs! + END_WITHIN_MS : END_WITHIN_MS;
    assert.ok(await releasedWithin(`${args.lockPrefix}.${rank}`, within), `rank ${rank}'s worker is still running`);
  }
  return { error, afterReadyMs };
}

Deno.test("faults: a rank that throws is named with its message and stack; the waiting ranks are aborted", async () => {
  const { error } = await runFault(3, { failRank: 2, mode: "throw" }, LONG_TIMEOUT_MS);
  assert.equal(error.rank, 2);
  assert.equal(error.failure, "threw");
  assert.match(error.cause, /^Error: deliberate failure on rank 2\n/);
  assert.match(error.cause, /at failDeliberately .*launch_faults\.ts/);
  assert.match(error.message, /^rank 2 failed \(threw\): Error: deliberate failure on rank 2/);
});

Deno.test("faults: a rank whose worker closes itself is named as exited", async () => {
  const { error } = await runFault(2, { failRank: 1, mode: "close" }, LONG_TIMEOUT_MS);
  assert.equal(error.rank, 1);
  assert.equal(error.failure, "exited");
  assert.match(error.cause, /worker closed before the entry returned/);
});

Deno.test("faults: an uncaught error in a rank's worker scope is named as an exit with its message", async () => {
  const { error } = await runFault(2, { failRank: 0, mode: "uncaught" }, LONG_TIMEOUT_MS);
  assert.equal(error.rank, 0);
  assert.equal(error.failure, "exited");
  assert.match(error.cause, /uncaught error in rank 0's worker scope/);
});

Deno.test("faults: ranks that call mismatched collectives fail with the mismatch, not a hang", async () => {
  const { error } = await runFault(2, { failRank: 1, mode: "mismatch" }, LONG_TIMEOUT_MS);
  assert.equal(error.failure, "threw");
  assert.match(error.cause, /^CollectiveMismatchError: /);
  assert.match(error.cause, /allGather|allReduce/);
});

const TIMEOUT_MS = 1_000;
const MARGIN_MS = 3_000;

Deno.test("faults: a rank that awaits forever is named (not the ranks that timed out) within timeoutMs", async () => {
  const { error, afterReadyMs } = await runFault(3, { failRank: 1, mode: "hang" }, TIMEOUT_MS);
  assert.equal(error.rank, 1);
  assert.equal(error.failure, "unresponsive");
  assert.match(error.cause, /stopped answering; rank [02] reported CollectiveTimeoutError: .*waiting for rank 1/);
  assert.ok(afterReadyMs < TIMEOUT_MS + MARGIN_MS, `rejected ${afterReadyMs.toFixed(0)} ms after every rank was in place`);
});

Deno.test("faults: a rank in a busy loop is named within timeoutMs", async () => {
  const busyMs = TIMEOUT_MS + MARGIN_MS + 1_000;
  const { error, afterReadyMs } = await runFault(2, { failRank: 1, mode: "busy", busyMs }, TIMEOUT_MS);
  assert.equal(error.rank, 1);
  assert.equal(error.failure, "unresponsive");
  assert.ok(afterReadyMs < TIMEOUT_MS + MARGIN_MS, `rejected ${afterReadyMs.toFixed(0)} ms after every rank was in place`);
});

// The watch on its own, with reports in the order a ring can deliver them.

function timeoutReport(rank: number, waitingFor: number) {
  return {
    name: "CollectiveTimeoutError",
    summary: `CollectiveTimeoutError: allReduce: rank ${rank} timed out after 50 ms waiting for rank ${waitingFor}`,
    blames: waitingFor,
  };
}

async function verdictError(watch: RankWatch): Promise<RankFailedError> {
  return await watch.verdict.then(() => assert.fail("the watch resolved"), (error) => error);
}

Deno.test("rank watch: follows chained timeouts to the rank that waited for no one", async () => {
  const watch = new RankWatch(4, 50);
  watch.failed(0, timeoutReport(0, 3)); // rank 0 waited for rank 3 ...
  watch.failed(3, timeoutReport(3, 2)); // ... which itself waited for rank 2
  watch.failed(1, timeoutReport(1, 0));
  const error = await verdictError(watch);
  assert.equal(error.rank, 2);
  assert.equal(error.failure, "unresponsive");
  assert.match(error.cause, /^it stopped answering; rank 3 reported CollectiveTimeoutError: .*waiting for rank 2$/);
});

Deno.test("rank watch: a rank that returned while others waited for it is named at once", async () => {
  const watch = new RankWatch(3, 60_000);
  watch.succeeded(2, "done");
  watch.failed(0, timeoutReport(0, 2));
  const error = await verdictError(watch);
  assert.equal(error.rank, 2);
  assert.match(error.cause, /^it returned without joining the collective/);
});

Deno.test("rank watch: a thrown error decides over pending timeouts; later reports change nothing", async () => {
  const watch = new RankWatch(3, 60_000);
  watch.failed(0, timeoutReport(0, 1));
  watch.failed(1, { name: "Error", summary: "Error: out of memory" });
  watch.exited(2, "closed");
  const error = await verdictError(watch);
  assert.equal(error.rank, 1);
  assert.equal(error.failure, "threw");
  assert.equal(error.cause, "Error: out of memory");
});

Deno.test("rank watch: ranks waiting on each other in a cycle name a rank of the cycle", async () => {
  const watch = new RankWatch(3, 50);
  watch.failed(0, timeoutReport(0, 1));
  watch.failed(1, timeoutReport(1, 0));
  const error = await verdictError(watch);
  assert.ok([0, 1].includes(error.rank), `named rank ${error.rank}, outside the cycle`);
  assert.equal(error.failure, "unresponsive");
});

Deno.test("rank watch: resolves with every value in rank order once all ranks succeeded", async () => {
  const watch = new RankWatch(3, 50);
  for (const rank of [2, 0, 1]) watch.succeeded(rank, `value ${rank}`);
  assert.deepEqual(await watch.verdict, ["value 0", "value 1", "value 2"]);
});
