// Resume on any layout: the paper's test of success. Every source layout trains 6 steps of the tiny
// preset, saving after step 3 (and 6); every target layout resumes from step 3's checkpoint and
// trains steps 4 to 6. On the same layout the resumed run equals the uninterrupted one bit for bit:
// losses, and every rank's final parameters and AdamW moments. On another layout its losses follow
// the uninterrupted run's within 1e-4 relative (the equivalence suite's bound). A ZeRO++ run saves
// what ZeRO-3 saves and resumes bit for bit on its own options; elsewhere its curve goes on within
// what quantization changes (1 %). One device runs through the Trainer, as `shardlab train` does;
// more ranks through their workers.

import assert from "node:assert/strict";
import { FsStorage } from "../src/checkpoint/fs_storage.ts";
import { openCheckpoint } from "../src/checkpoint/load.ts";
import { verifyCheckpoint } from "../src/checkpoint/verify.ts";
import { launch } from "../src/comm/launch.ts";
import type { RankState } from "../src/parallel/fragment_map.ts";
import { type ParallelLayout, worldSize } from "../src/parallel/layout.ts";
import { exportShardState } from "../src/parallel/ddp.ts";
import type { TrainConfig } from "../src/train/config.ts";
import type { TrainRankResult } from "../src/train/train_rank.ts";
import { Trainer } from "../src/train/trainer.ts";
import { cpuDevice, skipWebGpu, webgpuDevice } from "./helpers.ts";

const ENTRY = new URL("../src/train/train_rank.ts", import.meta.url).href;
const BASE: TrainConfig = { preset: "tiny", steps: 6, batch: 12, seq: 16, lr: 1e-3, seed: 5, backend: "cpu" };

interface Run {
  losses: number[];
  states: RankState[];
}

/** Trains `config`; one device through the Trainer, more ranks through launch. */
async function run(config: TrainConfig): Promise<Run> {
  const layout = { dp: 1, tp: 1, sp: 1, zero: 0 as const, nodes: 1, spImpl: "ulysses" as const, ...dropUndefined(config) };
  const ranks = worldSize(layout);
  if (ranks > 1) {
    const results = await launch<TrainRankResult>({
      ranks,
      ranksPerNode: ranks / (config.nodes ?? 1),
      entry: ENTRY,
      args: { config },
      backend: "cpu",
    });
    return { losses: results[0].value.losses, states: results.map(({ value }) => value.state) };
  }
  const trainer = await Trainer.create(config, await cpuDevice());
  try {
    const losses: number[] = [];
    while (!trainer.done) losses.push((await trainer.step()).loss);
    const named = trainer.model.namedParameters();
    return { losses, states: [await exportShardState(named, trainer.optimizer, trainer.fragmentMap.ranks[0])] };
  } finally {
    trainer.dispose();
  }
}

function dropUndefined<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}

type Layout = Partial<ParallelLayout>;
const name = (layout: Layout) => JSON.stringify(layout);

const SOURCES: Layout[] = [
  {},
  { dp: 2, zero: 1 },
  { dp: 2, zero: 3 },
  { tp: 2 },
  { sp: 2, spImpl: "megatron" },
  { dp: 2, tp: 2, zero: 2 },
  { tp: 2, sp: 2 },
  { dp: 4, zero: 3, nodes: 2 },
];
const TARGETS: Layout[] = [
  {},
  { dp: 2 },
  { dp: 2, zero: 2 },
  { dp: 2, zero: 3 },
  { sp: 2 },
  { tp: 2, sp: 2 },
  { dp: 3, zero: 1 },
  { dp: 4, zero: 3, nodes: 2 },
];

const root = await Deno.makeTempDir({ prefix: "shardlab-resume-" });
const uninterrupted = new Map<string, Promise<Run>>();

/** The source's uninterrupted 6 steps, saving after 3 and 6 into its own folder (once per source). */
function source(layout: Layout): Promise<Run> {
  if (!uninterrupted.has(name(layout))) {
    uninterrupted.set(name(layout), run({ ...BASE, ...layout, save: folderOf(layout), saveEvery: 3 }));
  }
  return uninterrupted.get(name(layout))!;
}

function folderOf(layout: Layout): string {
  return `${root}/${name(layout).replace(/[^a-z0-9]+/gi, "_")}`;
}

for (const from of SOURCES) {
  Deno.test(`resume: saved on ${name(from)} after step 3, every target layout goes on as the run did`, async () => {
    const reference = await source(from);
    for (const to of TARGETS) {
      const resumed = await run({ ...BASE, ...to, resume: `${folderOf(from)}/step-00000003` });
      const what = `${name(from)} → ${name(to)}`;
      assert.equal(resumed.losses.length, 3, `${what}: steps 4 to 6`);
      resumed.losses.forEach((loss, i) => {
        const want = reference.losses[3 + i];
        if (name(to) === name(from)) assert.equal(loss, want, `${what} step ${4 + i}: the same layout resumes bit for bit`);
        else assert.ok(Math.abs(loss - want) <= 1e-4 * Math.abs(want), `${what} step ${4 + i}: loss ${loss} vs ${want}`);
      });
    }
  });
}

Deno.test("resume: on its own layout a run ends with the same parameters and moments, bit for bit", async () => {
  for (const layout of [{}, { dp: 2, zero: 3 }, { dp: 2, tp: 2, zero: 2 }, { tp: 2, sp: 2 }] as Layout[]) {
    const reference = await source(layout);
    const resumed = await run({ ...BASE, ...layout, resume: folderOf(layout) + "/step-00000003" });
    reference.states.forEach((state, rank) => assert.deepEqual(resumed.states[rank], state, `${name(layout)} rank ${rank}`));
  }
});

Deno.test("resume: a save root resumes from what its latest names, and a finished run has nothing left", async () => {
  const layout: Layout = { dp: 2, zero: 1 };
  await source(layout);
  assert.equal(await Deno.readTextFile(`${folderOf(layout)}/latest`), "step-00000006");
  await assert.rejects(run({ ...BASE, ...layout, resume: folderOf(layout) }), /is at step 6; --steps 6 leaves nothing to train/);
  const longer = await run({ ...BASE, ...layout, steps: 8, resume: folderOf(layout) });
  assert.equal(longer.losses.length, 2, "steps 7 and 8");
});

Deno.test("resume: a rank that dies while writing its file leaves the previous checkpoint whole and latest on it", async () => {
  const folder = `${root}/crash`;
  const config: TrainConfig = { ...BASE, dp: 2, zero: 1, save: folder, saveEvery: 3 };
  await assert.rejects(
    launch({ ranks: 2, entry: ENTRY, args: { config, failures: [{ rank: 1, step: 6, how: "save" }] }, backend: "cpu" }),
    /rank 1 died while writing its checkpoint file after step 6/,
  );
  assert.equal(await Deno.readTextFile(`${folder}/latest`), "step-00000003", "latest still names step 3");
  const storage = new FsStorage(folder);
  await assert.rejects(openCheckpoint(storage, "step-00000006"), /torn checkpoint/);
  const previous = await openCheckpoint(storage, "");
  assert.equal(previous.metadata.training.step, 3);
  assert.deepEqual(await verifyCheckpoint(previous), []);
  const reference = await source({ dp: 2, zero: 1 });
  const resumed = await run({ ...BASE, dp: 2, zero: 1, resume: folder });
  assert.deepEqual(resumed.losses, reference.losses.slice(3), "resumed from step 3, as if never stopped");
});

Deno.test({
  name: "resume: a checkpoint saved by CPU ranks resumes on WebGPU, and one saved on WebGPU on CPU ranks",
  ignore: skipWebGpu,
  fn: async () => {
    const reference = await source({ dp: 2, zero: 3 });
    const gpu = (await webgpuDevice())!;
    const onGpu = await Trainer.create(
      { ...BASE, backend: "webgpu", resume: `${folderOf({ dp: 2, zero: 3 })}/step-00000003` },
      gpu,
    );
    const losses: number[] = [];
    try {
      while (!onGpu.done) losses.push((await onGpu.step()).loss);
      await onGpu.save(`${root}/from-gpu`);
    } finally {
      onGpu.dispose();
    }
    // The backends agree to 1e-3 (as one rank's runs on each do).
    losses.forEach((loss, i) =>
      assert.ok(Math.abs(loss - reference.losses[3 + i]) <= 1e-3 * reference.losses[3 + i], `step ${4 + i} on WebGPU: ${loss}`)
    );
    const back = await run({ ...BASE, steps: 8, tp: 2, resume: `${root}/from-gpu` });
    assert.equal(back.losses.length, 2, "CPU ranks go on from the WebGPU checkpoint's step 6");
  },
});

Deno.test("resume: a ZeRO++ run saves ZeRO-3's files (hpZ's secondary partition is not saved) and resumes anywhere", async () => {
  const layout: Layout = { dp: 4, zero: 3, nodes: 2 };
  const folder = `${root}/zeropp`;
  const base = { ...BASE, batch: 8 }; // rows for dp 8 too
  const reference = await run({ ...base, ...layout, zeropp: true, save: folder, saveEvery: 3 });
  // The same files, of the same sizes, as plain ZeRO-3 on the layout: the fragment map's state alone.
  await source(layout);
  const files = async (at: string) => {
    const sizes: Record<string, number> = {};
    for await (const entry of Deno.readDir(at)) {
      if (entry.name.endsWith(".safetensors")) sizes[entry.name] = (await Deno.stat(`${at}/${entry.name}`)).size;
    }
    return sizes;
  };
  assert.deepEqual(await files(`${folder}/step-00000003`), await files(`${folderOf(layout)}/step-00000003`));
  assert.deepEqual(await verifyCheckpoint(await openCheckpoint(new FsStorage(folder), "step-00000003")), []);

  // On its own layout and options: bit for bit, losses and every rank's state.
  const again = await run({ ...base, ...layout, zeropp: true, resume: `${folder}/step-00000003` });
  assert.deepEqual(again.losses, reference.losses.slice(3));
  reference.states.forEach((state, rank) => assert.deepEqual(again.states[rank], state, `rank ${rank}`));

  // Elsewhere, without quantization or with it on another world: the curve goes on, within what
  // quantizing the weights and gradients changes in a few steps (here well under 1 %).
  for (
    const target of [{}, { dp: 2, zero: 3 }, { ...layout }, { dp: 8, zero: 3, nodes: 4, zeropp: true }] as Partial<TrainConfig>[]
  ) {
    const resumed = await run({ ...base, ...target, resume: `${folder}/step-00000003` });
    const apart = resumed.losses.map((loss, i) => Math.abs(loss - reference.losses[3 + i]) / reference.losses[3 + i]);
    console.log(`ZeRO++ → ${name(target)}: losses ${(100 * Math.max(...apart)).toFixed(3)} % from the ZeRO++ run's at most`);
    apart.forEach((relative, i) => assert.ok(relative <= 1e-2, `ZeRO++ → ${name(target)} step ${4 + i}: ${resumed.losses[i]}`));
  }
});
