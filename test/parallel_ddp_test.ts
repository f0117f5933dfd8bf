// DDP equals one rank: two CPU ranks, each training half of every global batch and averaging
// gradients in buckets, give the single-rank run's losses and final parameters (to float precision:
// the averaged gradient is the same sum taken in another order), stay bit-identical to each other,
// and send exactly the ring all-reduce volume of their buckets. A batch that does not divide among
// the replicas is refused with both numbers named.

import assert from "node:assert/strict";
import { launch } from "../src/comm/launch.ts";
import { RankFailedError } from "../src/comm/errors.ts";
import { planBuckets } from "../src/parallel/ddp.ts";
import { rowsPerReplica } from "../src/parallel/layout.ts";
import type { TrainRankArgs, TrainRankResult } from "../src/train/train_rank.ts";
import type { TrainConfig } from "../src/train/config.ts";
import { train } from "../src/train/trainer.ts";
import { assembleRun } from "./parallel_state.ts";
import { trainOneRank } from "./single_rank.ts";

const ENTRY = new URL("../src/train/train_rank.ts", import.meta.url).href;
const CONFIG: TrainConfig = { preset: "tiny", steps: 20, batch: 4, seq: 16, lr: 1e-2, seed: 11, backend: "cpu", dp: 2 };
/** Small enough to cut the tiny model (≈ 110k parameters) into several uneven buckets, each above the inline limit. */
const BUCKET_BYTES = 128 * 1024;

/** Bytes one rank sends in a ring all-reduce of m f32 elements over n ranks, chunks split as evenly as possible. */
function ringAllReduceBytes(m: number, n: number, p: number): number {
  const chunk = (k: number) => Math.floor(m / n) + ((k % n) < m % n ? 1 : 0);
  return 4 * (2 * m - chunk(p) - chunk(p + 1));
}

Deno.test("ddp: dp2 trains like one rank, in lockstep, with the ring volume of its buckets", async () => {
  const reference = await trainOneRank({ ...CONFIG, dp: 1 });
  const args: TrainRankArgs = { config: { ...CONFIG, bucketCapMb: BUCKET_BYTES / 2 ** 20 } };
  const results = await launch<TrainRankResult>({ ranks: 2, entry: ENTRY, args, backend: "cpu" });

  const { assembled } = assembleRun(results);
  for (const { rank, value } of results) {
    value.losses.forEach((loss, step) => {
      const expected = reference.losses[step];
      assert.ok(
        Math.abs(loss - expected) <= 1e-4 * Math.abs(expected),
        `rank ${rank} step ${step + 1}: loss ${loss} vs one rank's ${expected}`,
      );
    });
  }
  for (const [name, expected] of reference.params) {
    const actual = assembled.parameters.get(name)!.fp32;
    assert.equal(actual.length, expected.length, name);
    let worst = 0;
    for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
    assert.ok(worst <= 1e-5, `${name}: largest difference from one rank ${worst}`);
  }

  // The buckets cover every parameter once, in reverse order, each closing as soon as it reaches the cap.
  const sizes = new Map([...reference.params].map(([name, values]) => [name, values.length]));
  const buckets = planBuckets([...sizes].map(([name, size]) => [name, { size }] as const), BUCKET_BYTES).map((bucket) =>
    bucket.names
  );
  assert.deepEqual(buckets.flat(), [...sizes.keys()].reverse());
  const bucketElements = buckets.map((names) => names.reduce((sum, name) => sum + sizes.get(name)!, 0));
  assert.ok(buckets.length >= 3, `expected several buckets at ${BUCKET_BYTES} bytes, got ${buckets.length}`);
  buckets.forEach((names, i) => {
    const withoutLast = bucketElements[i] - sizes.get(names.at(-1)!)!;
    assert.ok(withoutLast * 4 < BUCKET_BYTES, `bucket ${i} should have closed one parameter earlier`);
    if (i < buckets.length - 1) assert.ok(bucketElements[i] * 4 >= BUCKET_BYTES, `bucket ${i} closed below the cap`);
  });

  // Every step, each bucket is one ring all-reduce whose bytes per rank are 2M − |chunk p| − |chunk p+1|.
  for (const { rank, value } of results) {
    bucketElements.forEach((m, i) => {
      const calls = value.collectives.filter((record) => record.tag === `ddp.allreduce.bucket${i}`);
      assert.equal(calls.length, CONFIG.steps, `rank ${rank} bucket ${i}: one all-reduce per step`);
      for (const call of calls) {
        assert.equal(call.kind, "allReduce");
        assert.equal(call.algorithm, "ring");
        assert.equal(call.elements, m);
        assert.equal(call.bytes, ringAllReduceBytes(m, 2, rank), `rank ${rank} bucket ${i} (${m} elements)`);
      }
    });
  }
  bucketElements.forEach((m, i) => {
    const perStep = ringAllReduceBytes(m, 2, 0) + ringAllReduceBytes(m, 2, 1);
    assert.equal(results.traffic.byTag[`ddp.allreduce.bucket${i}`], CONFIG.steps * perStep, `world bytes of bucket ${i}`);
  });
});

Deno.test("ddp: uneven bucket sizes over three ranks still follow the ring formula per rank", async () => {
  const config: TrainConfig = { ...CONFIG, steps: 2, batch: 3, dp: 3 };
  const results = await launch<TrainRankResult>({
    ranks: 3,
    entry: ENTRY,
    args: { config: { ...config, bucketCapMb: BUCKET_BYTES / 2 ** 20 } },
    backend: "cpu",
  });
  for (const { rank, value } of results) {
    const calls = value.collectives.filter((record) => record.tag.startsWith("ddp.allreduce.bucket"));
    assert.ok(
      calls.length >= 6 && calls.length % 2 === 0,
      `rank ${rank}: the same buckets in each of the 2 steps, got ${calls.length} calls`,
    );
    for (const call of calls) {
      assert.equal(
        call.bytes,
        ringAllReduceBytes(call.elements, 3, rank),
        `rank ${rank} ${call.tag} (${call.elements} elements)`,
      );
    }
    assert.ok(calls.some((call) => call.elements % 3 !== 0), "at least one bucket splits unevenly");
  }
});

Deno.test("ddp: a batch that does not divide among the replicas is refused, naming both numbers", async () => {
  assert.throws(
    () => rowsPerReplica(5, 2),
    (error) => error instanceof RangeError && /batch of 5 rows/.test(error.message) && /dp 2\b/.test(error.message),
  );
  assert.equal(rowsPerReplica(6, 3), 2);
  const config: TrainConfig = { ...CONFIG, batch: 5 };
  await assert.rejects(launch({ ranks: 2, entry: ENTRY, args: { config }, backend: "cpu" }), (error) => {
    assert.ok(error instanceof RankFailedError);
    assert.match(error.message, /batch of 5 rows does not divide among dp 2 replicas/);
    return true;
  });
  await assert.rejects(train(config), /batch of 5 rows does not divide among dp 2 replicas/);
});
