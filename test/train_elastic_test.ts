// Elastic training: ranks fail on purpose (throwing, exiting, hanging, dying in a save), the run goes
// on from the last committed checkpoint on the layout the survivors fit, and each failure's record
// says what happened. The steps after a resume must equal, bit for bit, an uninterrupted run on the
// new layout from the same checkpoint; the last checkpoint must verify whole. The layout choice is
// checked on its own against the rule: tp and sp kept where they fit, dp shrunk first.

import assert from "node:assert/strict";
import { openCheckpoint } from "../src/checkpoint/load.ts";
import { verifyCheckpoint } from "../src/checkpoint/verify.ts";
import { FsStorage } from "../src/checkpoint/fs_storage.ts";
import { DEFAULT_TRAIN_CONFIG, type TrainConfig, trainLayout, zeroppOptions } from "../src/train/config.ts";
import { type ElasticRun, trainElastic } from "../src/train/elastic.ts";
import { ElasticError, survivingLayout } from "../src/train/elastic_layout.ts";
import { trainParallel } from "../src/train/parallel_run.ts";
import { parseFailures } from "../src/train/rank_failures.ts";
import { shardlab, shardlabWith } from "./cli_run.ts";

const BASE: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, backend: "cpu", batch: 12, seq: 16, lr: 5e-3 };
const root = await Deno.makeTempDir({ prefix: "shardlab-elastic-" });

/** The losses of an elastic run's attempt `attempt`, by step. */
function lossesOf(run: ElasticRun, attempt: number): { steps: number[]; losses: number[] } {
  const steps = run.history.filter((m) => m.attempt === attempt);
  return { steps: steps.map((m) => m.step), losses: steps.map((m) => m.loss) };
}

/** After each failure, the attempt that followed equals a run started on its layout from its checkpoint. */
async function assertResumesExactly(run: ElasticRun, configs: TrainConfig[]): Promise<void> {
  for (const [i, event] of run.events.entries()) {
    const uninterrupted = await trainParallel({
      ...configs[i + 1],
      elastic: false,
      save: undefined,
      saveEvery: undefined,
      resume: event.resumedFrom!,
    });
    const resumed = lossesOf(run, i + 1).losses;
    const expected = uninterrupted.history.map((m) => m.loss).slice(0, resumed.length);
    assert.deepEqual(resumed, expected, `attempt ${i + 1}: bitwise the run from ${event.resumedFrom}`);
  }
}

/** Every attempt's config, in order, as the run's failure records give them. */
async function elastic(config: TrainConfig, failures: string, timeoutMs?: number) {
  const configs: TrainConfig[] = [config];
  const run = await trainElastic(config, {
    failures: parseFailures(failures),
    timeoutMs,
    onFailure: (event) => configs.push({ ...configs.at(-1)!, ...event.newLayout }),
  });
  return { run, configs };
}

Deno.test("elastic: dp4 ZeRO-3 over 2 nodes loses rank 2 at step 15 and finishes on 3 ranks from step 10", async () => {
  const save = `${root}/zero3`;
  const config: TrainConfig = { ...BASE, steps: 20, dp: 4, zero: 3, nodes: 2, save, saveEvery: 5, elastic: true };
  const { run, configs } = await elastic(config, "2@15");
  assert.equal(run.events.length, 1);
  const [event] = run.events;
  assert.equal(event.failedRank, 2);
  assert.equal(event.failure, "threw");
  assert.match(event.cause, /rank 2 failed on purpose as step 15 began/);
  assert.equal(event.lastStep, 14);
  assert.equal(event.resumedFrom, `${save}/step-00000010`);
  assert.equal(event.resumedStep, 10);
  assert.equal(event.stepsLost, 4);
  assert.deepEqual(event.oldLayout, trainLayout(config));
  assert.deepEqual(event.newLayout, { dp: 3, tp: 1, sp: 1, zero: 3, nodes: 1, spImpl: "ulysses" });
  assert.deepEqual(event.notes, ["nodes 2 → 1 (3 ranks do not split evenly over 2)"]);
  assert.deepEqual(lossesOf(run, 0).steps, [...Array(14).keys()].map((i) => i + 1), "the first world trained steps 1–14");
  assert.deepEqual(lossesOf(run, 1).steps, [...Array(10).keys()].map((i) => i + 11), "the second steps 11–20");
  assert.equal(run.ranks.length, 3);
  assert.ok(run.history.filter((m) => m.attempt === 1).every((m) => m.memory.length === 3));
  await assertResumesExactly(run, configs);
  const last = await openCheckpoint(new FsStorage(save), "");
  assert.equal(last.metadata.training.step, 20);
  assert.equal(last.metadata.layout!.dp, 3);
  assert.deepEqual(await verifyCheckpoint(last), []);
});

Deno.test("elastic: tp2 × dp2 loses a rank whose worker exits; tp 2 is kept and one survivor idles", async () => {
  const config: TrainConfig = { ...BASE, steps: 10, dp: 2, tp: 2, save: `${root}/tp`, saveEvery: 3, elastic: true };
  const { run, configs } = await elastic(config, "1@7:exit");
  const [event] = run.events;
  assert.equal(event.failedRank, 1);
  assert.equal(event.failure, "exited");
  assert.equal(event.resumedStep, 6);
  assert.equal(event.stepsLost, 0);
  assert.deepEqual(event.newLayout, { dp: 1, tp: 2, sp: 1, zero: 0, nodes: 1, spImpl: "ulysses" });
  assert.match(event.notes.join(), /1 surviving rank left idle \(dp 3 × tp 2 × sp 1|1 surviving rank left idle/);
  await assertResumesExactly(run, configs);
});

Deno.test("elastic: a rank that dies while saving leaves the checkpoint before, which the run goes on from", async () => {
  const save = `${root}/save`;
  const config: TrainConfig = { ...BASE, steps: 12, dp: 3, zero: 1, save, saveEvery: 4, elastic: true };
  const { run, configs } = await elastic(config, "1@8:save");
  const [event] = run.events;
  assert.equal(event.failedRank, 1);
  assert.match(event.cause, /died while writing its checkpoint file after step 8/);
  assert.equal(event.lastStep, 8);
  assert.equal(event.resumedFrom, `${save}/step-00000004`, "the torn step-8 folder is passed over");
  assert.equal(event.stepsLost, 4);
  assert.deepEqual(event.newLayout, { dp: 2, tp: 1, sp: 1, zero: 1, nodes: 1, spImpl: "ulysses" });
  await assertResumesExactly(run, configs);
  const resaved = await openCheckpoint(new FsStorage(save), "step-00000008");
  assert.equal(resaved.metadata.layout!.dp, 2, "step 8 saved again, whole, by the new world");
  assert.deepEqual(await verifyCheckpoint(resaved), []);
});

Deno.test("elastic: two failures in one run, the second a rank that stops answering", async () => {
  const config: TrainConfig = { ...BASE, steps: 12, dp: 4, zero: 2, save: `${root}/two`, saveEvery: 3, elastic: true };
  const { run, configs } = await elastic(config, "3@5,0@10:hang", 5_000);
  assert.deepEqual(
    run.events.map((e) => [e.failedRank, e.failure, e.lastStep, e.resumedStep, e.newLayout?.dp]),
    [[3, "threw", 4, 3, 3], [0, "unresponsive", 9, 9, 2]],
  );
  assert.deepEqual(run.history.map((m) => m.step), [1, 2, 3, 4, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  await assertResumesExactly(run, configs);
});

Deno.test("elastic: the survivors' layout keeps tp and sp, shrinks dp first, and says what else changed", () => {
  const pick = (config: Partial<TrainConfig>, survivors: number) => survivingLayout({ ...BASE, ...config }, survivors);
  assert.deepEqual(pick({ dp: 4, zero: 3 }, 3).layout, { dp: 3, tp: 1, sp: 1, zero: 3, nodes: 1, spImpl: "ulysses" });
  const batch16 = pick({ dp: 4, batch: 16 }, 3);
  assert.equal(batch16.layout.dp, 2);
  assert.match(batch16.notes.join(), /1 surviving rank left idle \(dp 3 × tp 1 × sp 1: .*16 rows does not divide among dp 3/);
  assert.deepEqual(pick({ dp: 2, sp: 2 }, 3).layout, { dp: 1, tp: 1, sp: 2, zero: 0, nodes: 1, spImpl: "ulysses" });
  // tp 4 needs 4 ranks; on 3, the layout that uses the most of them.
  assert.deepEqual(pick({ tp: 4 }, 3).layout, { dp: 3, tp: 1, sp: 1, zero: 0, nodes: 1, spImpl: "ulysses" });
  const alone = pick({ dp: 2, zero: 3 }, 1);
  assert.equal(alone.layout.zero, 0);
  assert.deepEqual(alone.notes, ["zero 3 → 0 (one data-parallel rank has nothing to partition)"]);
  const zeropp = pick({ dp: 8, zero: 3, nodes: 4, zeropp: true }, 6);
  assert.deepEqual(zeropp.layout, { dp: 6, tp: 1, sp: 1, zero: 3, nodes: 3, spImpl: "ulysses" });
  assert.equal(zeroppOptions(zeropp.config).hpzPartitionSize, 2, "hpZ follows the ranks per node");
  assert.throws(() => pick({ dp: 2 }, 0), (e) => e instanceof ElasticError && /no rank survives/.test(e.message));
});

Deno.test("elastic: planned failures are read as RANK@STEP[:HOW], and a bad one is named", () => {
  assert.deepEqual(parseFailures("2@15, 0@3:hang"), [{ rank: 2, step: 15, how: "throw" }, { rank: 0, step: 3, how: "hang" }]);
  assert.throws(() => parseFailures("2@15:explode"), /RANK@STEP\[:throw\|exit\|hang\|save\] with STEP ≥ 1, got "2@15:explode"/);
  assert.throws(() => parseFailures("2@0"), /got "2@0"/);
});

Deno.test("cli: train --elastic prints each failure and the resume, records them in --json, and exits 2 when no rank is left", async () => {
  const save = `${root}/cli`;
  const json = `${root}/cli.jsonl`;
  const args = ["train", "--steps", "8", "--batch", "4", "--seq", "16", "--backend", "cpu", "--dp", "2", "--zero", "1"];
  const elastic = [...args, "--save", save, "--save-every", "2", "--elastic", "--json", json];
  const result = await shardlabWith({ SHARDLAB_FAIL_RANKS: "1@4,0@7" }, ...elastic);
  assert.equal(result.code, 2, result.stdout + result.stderr);
  assert.match(result.stdout, /rank 1 failed after step 3 \(threw\): Error: rank 1 failed on purpose as step 4 began/);
  assert.match(result.stdout, new RegExp(`elastic: going on from ${save}/step-00000002 at step 2`));
  assert.match(result.stdout, /layout dp 2 × tp 1 × sp 1, zero 1, 1 node → dp 1 × tp 1 × sp 1, zero 0, 1 node; zero 1 → 0/);
  assert.match(result.stdout, /1 step lost \(3–3\)/);
  assert.match(result.stderr, /shardlab: elastic: no rank survives to go on \(the layout had 1 rank\)/);
  const records = (await Deno.readTextFile(json)).trim().split("\n").map((line) => JSON.parse(line));
  assert.deepEqual(records.map((r) => r.step ?? r.event), [1, 2, 3, "rank-failed", 3, 4, 5, 6, "rank-failed"]);
  assert.deepEqual(records.map((r) => r.attempt ?? r.failedRank), [0, 0, 0, 1, 1, 1, 1, 1, 0]);
  assert.equal(records[3].resumedFrom, `${save}/step-00000002`);
  assert.equal(records[8].newLayout, null, "the last failure: no layout fits");

  const plain = await shardlabWith({ SHARDLAB_FAIL_RANKS: "1@2" }, ...args);
  assert.equal(plain.code, 1);
  assert.match(plain.stderr, /shardlab: rank 1 failed \(threw\): .*\n\(with --elastic and --save the run goes on without it\)/);
  const bad = await shardlabWith({ SHARDLAB_FAIL_RANKS: "1@x" }, ...args);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /SHARDLAB_FAIL_RANKS: a planned failure is written RANK@STEP/);
  const noSave = await shardlab(...args, "--elastic");
  assert.equal(noSave.code, 2);
  assert.match(noSave.stderr, /--elastic goes on from the run's last checkpoint: add --save DIR/);
});
