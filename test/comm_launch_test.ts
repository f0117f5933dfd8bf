// launch(): ranks as module workers on the CPU backend. Results come back in rank order with the
// right ranks, nodes and args; events reach onEvent in order per rank; bad options fail before any
// worker starts; and every worker has ended once launch settles (each rank holds a Web Lock that is
// free again only when its worker is gone).

import assert from "node:assert/strict";
import { RankFailedError } from "../src/comm/errors.ts";
import { launch, type LaunchOptions, type RankEvent } from "../src/comm/launch.ts";
import type { EchoArgs } from "./fixtures/launch_echo.ts";
import { releasedWithin } from "./fixtures/launch_liveness.ts";

const ECHO = new URL("./fixtures/launch_echo.ts", import.meta.url).href;

async function assertWorkersEnded(lockPrefix: string, ranks: number): Promise<void> {
  for (let rank = 0; rank < ranks; rank++) {
    assert.ok(await releasedWithin(`${lockPrefix}.${rank}`, 2_000), `rank ${rank}'s worker is still running`);
  }
}

type Echo = Exclude<Awaited<ReturnType<typeof import("./fixtures/launch_echo.ts").default>>, () => number>;

for (const [ranks, ranksPerNode] of [[1, 1], [2, 1], [4, 2], [8, 4]]) {
  Deno.test(`launch: ${ranks} rank(s), ${ranksPerNode} per node: results in rank order, every event in order per rank`, async () => {
    const args: EchoArgs = { events: 20, scale: 0.5, lockPrefix: crypto.randomUUID() };
    const received: RankEvent[] = [];
    const results = await launch<Echo>({
      ranks,
      ranksPerNode,
      entry: ECHO,
      args,
      backend: "cpu",
      onEvent: (event) => received.push(event),
    });
    assert.equal(results.length, ranks);
    results.forEach(({ rank, value }, index) => {
      assert.equal(rank, index);
      assert.equal(value.rank, index);
      assert.equal(value.worldSize, ranks);
      assert.equal(value.ranksPerNode, ranksPerNode);
      assert.equal(value.node, Math.floor(index / ranksPerNode));
      assert.equal(value.backend, "cpu");
      assert.deepEqual(value.args, args);
      // (1 + 2 + 3 + 4) · (rank + 1) · scale, summed on the rank's own device.
      assert.equal(value.total, 10 * (index + 1) * args.scale);
      assert.equal(value.rankSum, (ranks * (ranks + 1)) / 2);
    });
    // Every event arrived before launch resolved, in emission order per rank.
    assert.equal(received.length, ranks * args.events);
    for (let rank = 0; rank < ranks; rank++) {
      const steps = received.filter((event) => event.rank === rank).map((event) => (event.event as { step: number }).step);
      assert.deepEqual(steps, Array.from({ length: args.events }, (_, step) => step), `rank ${rank}'s events out of order`);
    }
    // The merged traffic holds each rank's ledger: its row of the matrix is what that rank sent.
    const { traffic } = results;
    results.forEach(({ value }, rank) => assert.equal(traffic.matrix[rank].reduce((a, b) => a + b, 0), value.bytesSent));
    assert.equal(traffic.totalBytes, results.reduce((sum, { value }) => sum + value.bytesSent, 0));
    assert.equal(traffic.byTag["echo.ranks"] ?? 0, traffic.totalBytes);
    assert.equal(ranks === 1 ? traffic.totalBytes === 0 : traffic.totalBytes > 0, true);
    await assertWorkersEnded(args.lockPrefix, ranks);
  });
}

Deno.test("launch: an onEvent that throws fails the rank whose event it was", async () => {
  const args: EchoArgs = { events: 3, scale: 1, lockPrefix: crypto.randomUUID() };
  const onEvent = ({ rank }: RankEvent) => {
    if (rank === 1) throw new Error("the dashboard is closed");
  };
  await assert.rejects(launch({ ranks: 2, entry: ECHO, args, backend: "cpu", onEvent }), (error) => {
    assert.ok(error instanceof RankFailedError);
    assert.equal(error.rank, 1, error.message);
    assert.match(error.cause, /ctx\.emit: an event did not reach onEvent: the dashboard is closed/);
    return true;
  });
  await assertWorkersEnded(args.lockPrefix, 2);
});

Deno.test("launch: an entry module that is missing, has no default export function or returns what cannot be cloned fails clearly", async () => {
  const noDefault = new URL("./fixtures/launch_liveness.ts", import.meta.url).href;
  await assert.rejects(launch({ ranks: 1, entry: noDefault, backend: "cpu" }), (error) => {
    assert.ok(error instanceof RankFailedError);
    assert.match(error.cause, /must export default an async function \(ctx, args\), got undefined/);
    assert.ok(error.message.includes(noDefault));
    return true;
  });
  const missing = new URL("./fixtures/launch_no_such_entry.ts", import.meta.url).href;
  await assert.rejects(launch({ ranks: 1, entry: missing, backend: "cpu" }), (error) => {
    assert.ok(error instanceof RankFailedError);
    assert.equal(error.failure, "threw");
    assert.ok(error.cause.includes("launch_no_such_entry.ts"), error.cause);
    return true;
  });
  const args: EchoArgs = { events: 0, scale: 1, lockPrefix: crypto.randomUUID(), returnFunction: true };
  await assert.rejects(launch({ ranks: 1, entry: ECHO, args, backend: "cpu" }), (error) => {
    assert.ok(error instanceof RankFailedError);
    assert.match(error.cause, /rank 0's result cannot be sent to the launcher \(.+\); return plain data/);
    return true;
  });
});

Deno.test("launch: bad options fail before any worker starts, naming the value", async () => {
  const BaseWorker = globalThis.Worker;
  let started = 0;
  globalThis.Worker = class extends BaseWorker {
    constructor(...params: ConstructorParameters<typeof Worker>) {
      super(...params);
      started++;
    }
  };
  try {
    const base: LaunchOptions = { ranks: 4, entry: ECHO, backend: "cpu" };
    const cases: [Partial<LaunchOptions> | Record<string, unknown>, RegExp][] = [
      [{ ranks: 0 }, /ranks must be an integer ≥ 1, got 0/],
      [{ ranks: 2.5 }, /ranks must be an integer ≥ 1, got 2\.5/],
      [{ ranks: "4" }, /ranks must be an integer ≥ 1, got 4/],
      [{ ranksPerNode: 3 }, /ranksPerNode must be an integer ≥ 1 that divides ranks \(4\), got 3/],
      [{ ranksPerNode: 0 }, /ranksPerNode .* got 0/],
      [{ entry: undefined }, /entry is required/],
      [{ entry: "./fixtures/launch_echo.ts" }, /entry must be an absolute module URL .* got "\.\/fixtures\/launch_echo\.ts"/],
      [{ timeoutMs: 0 }, /timeoutMs must be a positive number of milliseconds, got 0/],
      [{ timeoutMs: -5 }, /timeoutMs .* got -5/],
      [{ timeoutMs: NaN }, /timeoutMs .* got NaN/],
      [{ backend: "tpu" }, /unknown backend "tpu" \(valid: auto, webgpu, cpu\)/],
      [{ onEvent: "log" }, /onEvent must be a function, got string/],
      [{ args: { run: () => 1 } }, /args cannot be sent to the ranks/],
      [{ channelBytes: 1000 }, /channelBytes must be a multiple of .* got 1000/],
      [{ links: { inter: { bandwidthGBps: -1 } } }, /links\.inter\.bandwidthGBps must be a positive number, got -1/],
    ];
    for (const [change, message] of cases) {
      await assert.rejects(launch({ ...base, ...change } as LaunchOptions), message, JSON.stringify(change));
    }
    assert.equal(started, 0, "a worker started although the options were invalid");
  } finally {
    globalThis.Worker = BaseWorker;
  }
});
