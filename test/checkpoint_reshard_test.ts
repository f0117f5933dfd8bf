// Save on one layout, load on another, without training: every rank's state is made from known full
// values (known_states.ts), saved distributed into memory and committed, and every rank of every
// target layout must load exactly the state the same values give it there, bit for bit, by
// load-time resharding (only the byte ranges it needs). The checkpoint must verify whole; a flipped
// byte, a truncated or missing file, a torn folder, a later version and another model are named. A
// missing or torn rank file is read from the replicas other files hold, where there are any.

import assert from "node:assert/strict";
import { convertCheckpoint } from "../src/checkpoint/convert.ts";
import { CheckpointError } from "../src/checkpoint/errors.ts";
import { loadRankState, openCheckpoint } from "../src/checkpoint/load.ts";
import { PHI3_CHECKPOINT_PATTERNS } from "../src/nn/checkpoint_patterns.ts";
import { rankFile, stepFolder } from "../src/checkpoint/save.ts";
import { MemoryStorage } from "../src/checkpoint/storage.ts";
import { verifyCheckpoint } from "../src/checkpoint/verify.ts";
import type { ParallelLayout } from "../src/parallel/layout.ts";
import { KNOWN_TRAINING, knownValues, mapOf, MODEL, savedKnownCheckpoint, statesFrom } from "./known_states.ts";

const TRAINING = KNOWN_TRAINING;
const saved = savedKnownCheckpoint;

const SOURCES: Partial<ParallelLayout>[] = [
  {},
  { dp: 2, zero: 3 },
  { dp: 3, zero: 1 },
  { tp: 2 },
  { tp: 4, dp: 2, zero: 2 },
  { sp: 2, spImpl: "megatron" },
  { dp: 2, sp: 2 },
];
const TARGETS: Partial<ParallelLayout>[] = [...SOURCES, { dp: 4, zero: 3 }, { tp: 2, sp: 2 }, { dp: 2, tp: 2, zero: 3 }];

for (const source of SOURCES) {
  Deno.test(`checkpoint: saved on ${JSON.stringify(source)}, every target layout loads its exact state, directly and made universal`, async () => {
    const storage = await saved(await mapOf(source));
    const distributed = await openCheckpoint(storage, "run");
    assert.deepEqual(await verifyCheckpoint(distributed), [], "the checkpoint verifies whole");
    const report = await convertCheckpoint(distributed, storage, "universal");
    const universal = await openCheckpoint(storage, "universal");
    assert.equal(universal.metadata.kind, "universal");
    assert.deepEqual(await verifyCheckpoint(universal), [], "the universal checkpoint verifies whole");
    assert.ok(
      report.peakBytes <= 2 * report.largestParameterBytes + 64,
      `convert held ${report.peakBytes} bytes, largest parameter ${report.largestParameterBytes}`,
    );
    for (const [target, checkpoint] of TARGETS.flatMap((t) => [[t, distributed], [t, universal]] as const)) {
      const map = await mapOf(target);
      const expected = statesFrom(map, knownValues(map), TRAINING.step);
      for (const entry of map.ranks) {
        const shards = new Map(map.parameters.map((p) => [p.name, p.shards[entry.tensorParallelRank]]));
        const state = await loadRankState(checkpoint, MODEL, entry, shards);
        const what = `${JSON.stringify(source)} → ${checkpoint.metadata.kind} → ${JSON.stringify(target)} rank ${entry.rank}`;
        assert.equal(state.step, TRAINING.step, what);
        assert.deepEqual(state.fp32, expected[entry.rank].fp32, `${what}: fp32`);
        assert.deepEqual(state.expAvg, expected[entry.rank].expAvg, `${what}: exp_avg`);
        assert.deepEqual(state.expAvgSq, expected[entry.rank].expAvgSq, `${what}: exp_avg_sq`);
      }
    }
  });
}

Deno.test("checkpoint: a rank reads only the byte ranges it needs", async () => {
  const storage = await saved(await mapOf({ tp: 4, dp: 2, zero: 2 }));
  const checkpoint = await openCheckpoint(storage, "run");
  const map = await mapOf({ dp: 4, zero: 3 });
  let read = 0;
  const counting = Object.assign(Object.create(storage), {
    read: (path: string, offset?: number, length?: number) => {
      if (path.endsWith(".safetensors") && offset !== undefined && offset >= 8 && length !== undefined && length > 0) {
        read += length;
      }
      return storage.read(path, offset, length);
    },
  });
  const entry = map.ranks[1];
  const shards = new Map(map.parameters.map((p) => [p.name, p.shards[entry.tensorParallelRank]]));
  await loadRankState({ ...checkpoint, storage: counting }, MODEL, entry, shards);
  const headers =
    (await Promise.all(checkpoint.metadata.files.map(async (f) => (await storage.read(`${checkpoint.folder}/${f.name}`, 0, 8)))))
      .reduce((sum, prefix) => sum + Number(new DataView(prefix.buffer).getBigUint64(0, true)), 0);
  // Its three states of its partition, plus the headers it read: nothing of other ranks' parts.
  const held = entry.fragments.reduce((sum, f) => sum + f.numel, 0);
  assert.ok(
    read <= 12 * held + headers,
    `read ${read} bytes for ${held} elements (${12 * held} bytes) and ${headers} header bytes`,
  );
  assert.ok(read >= 12 * held, `read ${read} bytes, fewer than the ${12 * held} it holds`);
});

Deno.test("checkpoint: a flipped byte, a truncated or missing file, a torn folder, a later version and another model are named", async () => {
  const map = await mapOf({ dp: 2, zero: 1 });
  const folder = `run/${stepFolder(TRAINING.step)}`;
  const file = `${folder}/${rankFile(1)}`;

  const flipped = await saved(map);
  const bytes = flipped.files.get(file)!;
  bytes[bytes.length - 5] ^= 0x40;
  const problems = await verifyCheckpoint(await openCheckpoint(flipped, "run"));
  assert.ok(problems.some((p) => p.includes(rankFile(1)) && /SHA-256/.test(p)), problems.join("\n"));

  const truncated = await saved(map);
  truncated.files.set(file, truncated.files.get(file)!.slice(0, -4));
  assert.ok((await verifyCheckpoint(await openCheckpoint(truncated, "run"))).some((p) => p.includes(`bytes, the metadata says`)));
  const entry = map.ranks[1];
  const shards = new Map(map.parameters.map((p) => [p.name, p.shards[entry.tensorParallelRank]]));
  await assert.rejects(
    loadRankState(await openCheckpoint(truncated, "run"), MODEL, entry, shards),
    (e) => e instanceof CheckpointError && e.message.includes(rankFile(1)),
  );

  const missing = await saved(map);
  missing.files.delete(file);
  await assert.rejects(
    loadRankState(await openCheckpoint(missing, "run"), MODEL, entry, shards),
    new RegExp(`${rankFile(1)} is missing, and \\d+ piece\\(s\\) of the training state it held exist in no other file`),
  );

  const torn = await saved(map);
  torn.files.delete(`${folder}/metadata.json`);
  await assert.rejects(openCheckpoint(torn, "run"), /is a torn checkpoint: no metadata.json was committed/);
  await assert.rejects(openCheckpoint(torn, folder), /is a torn checkpoint: its rank files were written but no metadata.json/);

  const later = await saved(map);
  const metadata = JSON.parse(new TextDecoder().decode(later.files.get(`${folder}/metadata.json`)));
  later.files.set(`${folder}/metadata.json`, new TextEncoder().encode(JSON.stringify({ ...metadata, version: 2 })));
  await assert.rejects(
    openCheckpoint(later, "run"),
    /version 2; this shardlab reads version 1 \(the checkpoint is from a later shardlab\)/,
  );
  later.files.set(
    `${folder}/metadata.json`,
    new TextEncoder().encode(JSON.stringify({ ...metadata, files: [{ name: "../x" }] })),
  );
  await assert.rejects(openCheckpoint(later, "run"), /names a data file "..\/x" that is not a plain file name/);

  const other = await openCheckpoint(await saved(map), "run");
  await assert.rejects(
    loadRankState(other, { ...MODEL, hiddenSize: 128 }, entry, shards),
    /holds a model with hiddenSize 64, but this run's model has hiddenSize 128/,
  );
  await assert.rejects(openCheckpoint(new MemoryStorage(), "run"), /no checkpoint here/);
  // deno-lint-ignore no-explicit-any -- a forger edits any field of the JSON
  const forge = async (edit: (metadata: Record<string, any>) => void) => {
    const storage = await saved(map);
    const metadata = JSON.parse(new TextDecoder().decode(storage.files.get(`${folder}/metadata.json`)));
    edit(metadata);
    storage.files.set(`${folder}/metadata.json`, new TextEncoder().encode(JSON.stringify(metadata)));
    return openCheckpoint(storage, "run");
  };
  await assert.rejects(
    forge((m) => m.fragmentMap.ranks[1].fragments[0].start += 4),
    /the fragment map is not the one its layout/,
  );
  await assert.rejects(
    forge((m) => m.layout.dp = 2 ** 30),
    /its layout has 1073741824 ranks, but it lists 2 files|fragment map's layout differ/,
  );
  await assert.rejects(
    forge((m) => m.model.numLayers = 10 ** 6),
    /describes a model of \d+ parameters, more than its \d+ bytes of files hold/,
  );
  await assert.rejects(forge((m) => m.training.schedule.warmupSteps = -1), /the training record is not valid/);
  await assert.rejects(forge((m) => m.files[0] = null), /names a data file undefined that is not a plain file name/);
  const renamed = await saved(map);
  const named = JSON.parse(new TextDecoder().decode(renamed.files.get(`${folder}/metadata.json`)));
  named.parameters[0].name = "../model.embed_tokens.weight";
  renamed.files.set(`${folder}/metadata.json`, new TextEncoder().encode(JSON.stringify(named)));
  await assert.rejects(
    openCheckpoint(renamed, "run"),
    /parameter 0 is "\.\.\/model\.embed_tokens\.weight", the model's is "model\.embed_tokens\.weight" \[97,64\]/,
  );
});

Deno.test("convert: the pattern table is strict and must agree with what the ranks recorded", async () => {
  const checkpoint = await openCheckpoint(await saved(await mapOf({ tp: 2 })), "run");
  const out = new MemoryStorage();
  const table = { ...PHI3_CHECKPOINT_PATTERNS };
  await assert.rejects(
    convertCheckpoint(checkpoint, out, "u", { ...table, average: [/^nothing$/] }),
    /the pattern \/\^nothing\$\/ matches no parameter/,
  );
  await assert.rejects(
    convertCheckpoint(checkpoint, out, "u", { ...table, replicated: [/^model\.norm\.weight$/] }),
    /no pattern matches parameter "model\.layers\.0\.input_layernorm\.weight"/,
  );
  await assert.rejects(
    convertCheckpoint(checkpoint, out, "u", { ...table, rowParallel: [/down_proj/], columnParallel: [/o_proj/] }),
    /"model\.layers\.0\.self_attn\.o_proj\.weight" is column by the pattern table, but its pieces were recorded as \{"kind":"row"/,
  );
  await assert.rejects(
    convertCheckpoint(checkpoint, out, "u", {
      ...table,
      vocabulary: [/embed_tokens/],
      rowParallel: [...table.rowParallel, /lm_head/],
    }),
    /"lm_head\.weight" is row by the pattern table/,
  );
  // Averaging replicas that are equal gives them back: the universal form is the same.
  const averaged = await convertCheckpoint(checkpoint, out, "avg", { ...table, replicated: [], average: table.replicated });
  assert.equal(averaged.parameters, checkpoint.metadata.parameters.length);
  assert.deepEqual(await verifyCheckpoint(await openCheckpoint(out, "avg")), []);
  await assert.rejects(convertCheckpoint(await openCheckpoint(out, "avg"), out, "again"), /is already universal/);
});

Deno.test("convert: replicas that disagree stop the conversion, naming the parameter and rank", async () => {
  const map = await mapOf({ tp: 2 });
  const storage = await saved(map);
  // Rewrite rank 1's copy of a norm and its recorded checksums, as a faulty writer would have.
  const norm = map.ranks[1].fragments.find((f) => f.name === "model.norm.weight")!;
  const path = `run/${stepFolder(TRAINING.step)}/${rankFile(1)}`;
  const file = storage.files.get(path)!;
  const view = new DataView(file.buffer);
  const dataStart = 8 + Number(view.getBigUint64(0, true));
  view.setFloat32(dataStart + 4 * norm.start, 42, true);
  await assert.rejects(
    convertCheckpoint(await openCheckpoint(storage, "run"), storage, "u"),
    /"model\.norm\.weight" fp32 is replicated, but tensor-parallel rank 1's copy differs from rank 0's/,
  );
});

Deno.test("checkpoint: a missing or torn rank file is read from the replicas other files hold; a piece held nowhere else is named", async () => {
  const file = `run/${stepFolder(TRAINING.step)}/${rankFile(1)}`;
  const damage = {
    missing: (storage: MemoryStorage) => storage.files.delete(file),
    torn: (storage: MemoryStorage) => storage.files.set(file, storage.files.get(file)!.slice(0, 1000)),
  };
  // DDP: every fragment has a copy on the other data-parallel ranks (with tp 2, rank 1's on rank 3).
  for (const source of [{ dp: 2 }, { dp: 2, tp: 2 }]) {
    for (const [how, spoil] of Object.entries(damage)) {
      const storage = await saved(await mapOf(source));
      spoil(storage);
      const checkpoint = await openCheckpoint(storage, "run");
      assert.deepEqual([...checkpoint.damaged.keys()], [rankFile(1)], `${how}: set aside`);
      for (const target of [{}, { dp: 3, zero: 3 }, { tp: 2 }] as Partial<ParallelLayout>[]) {
        const map = await mapOf(target);
        const expected = statesFrom(map, knownValues(map), TRAINING.step);
        for (const entry of map.ranks) {
          const shards = new Map(map.parameters.map((p) => [p.name, p.shards[entry.tensorParallelRank]]));
          const state = await loadRankState(checkpoint, MODEL, entry, shards);
          const what = `${JSON.stringify(source)}, rank 1's file ${how} → ${JSON.stringify(target)} rank ${entry.rank}`;
          assert.deepEqual(state.fp32, expected[entry.rank].fp32, `${what}: fp32`);
          assert.deepEqual(state.expAvgSq, expected[entry.rank].expAvgSq, `${what}: exp_avg_sq`);
        }
      }
      await assert.rejects(convertCheckpoint(checkpoint, new MemoryStorage(), "u"), /needs every file whole/);
      assert.ok((await verifyCheckpoint(checkpoint)).some((problem) => problem.includes(rankFile(1))), "verify names it");
    }
  }
  // ZeRO partitions the optimizer state: rank 1's part of it is in rank 1's file only.
  for (const source of [{ dp: 2, zero: 1 }, { dp: 2, zero: 3 }] as const) {
    const storage = await saved(await mapOf(source));
    damage.missing(storage);
    const map = await mapOf({});
    const shards = new Map(map.parameters.map((p) => [p.name, p.shards[0]]));
    await assert.rejects(
      loadRankState(await openCheckpoint(storage, "run"), MODEL, map.ranks[0], shards),
      new RegExp(
        `${rankFile(1)} is missing, and \\d+ piece\\(s\\) .* exist in no other file: "model\\.[a-z_.0-9]+" elements ` +
          `\\[\\d+, \\d+\\) of tp shard 0 \\(fp32, exp_avg, exp_avg_sq; only in ${
            rankFile(1)
          }, a ZeRO-${source.zero} partition\\)`,
      ),
    );
  }
});
