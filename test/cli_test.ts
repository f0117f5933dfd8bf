// The shardlab command line as a user meets it: `train` with --json, `info`, saving, resuming on
// another layout and the `ckpt` commands, and exit code 2 with a message naming the value for
// every kind of bad input.

import assert from "node:assert/strict";
import { shardlab } from "./cli_run.ts";

Deno.test("cli: train --json writes one record per step with the documented fields", async () => {
  const file = await Deno.makeTempFile({ suffix: ".jsonl" });
  try {
    const result = await shardlab(
      "train",
      "--steps",
      "4",
      "--batch",
      "2",
      "--seq",
      "16",
      "--lr",
      "0.005",
      "--backend",
      "cpu",
      "--json",
      file,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /corpus floor \d\.\d{3} nats\/token/);
    assert.match(result.stdout, /final loss \d+\.\d{3}/);
    const records = (await Deno.readTextFile(file)).trim().split("\n").map((line) => JSON.parse(line));
    assert.deepEqual(records.map((r) => r.step), [1, 2, 3, 4]);
    for (const r of records) {
      for (const field of ["loss", "lr", "gradNorm", "tokensPerSec", "deviceBytes"]) {
        assert.ok(Number.isFinite(r[field]) && r[field] > 0, `step ${r.step}: ${field} = ${r[field]}`);
      }
      assert.ok(r.lr <= 0.005 + 1e-12, `step ${r.step}: lr ${r.lr} above the peak`);
    }
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("cli: train on a parallel layout adds the world's traffic, simulated time and per-rank memory to each record", async () => {
  const file = await Deno.makeTempFile({ suffix: ".jsonl" });
  try {
    const args = ["--steps", "3", "--batch", "4", "--seq", "16", "--backend", "cpu", "--json", file];
    const result = await shardlab("train", "--dp", "2", "--sp", "2", "--zero", "3", "--nodes", "2", ...args);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /on 4 ranks \(dp 2 × tp 1 × sp 2 ulysses, zero 3, 2 nodes, backend cpu\)/);
    const records = (await Deno.readTextFile(file)).trim().split("\n").map((line) => JSON.parse(line));
    assert.deepEqual(records.map((r) => r.step), [1, 2, 3]);
    for (const r of records) {
      const { total, intra, inter } = r.commBytes;
      assert.equal(total, intra + inter, `step ${r.step}: total bytes`);
      // Ranks 0-1 and 2-3 share a node; the data group (dp × sp) spans both nodes.
      assert.ok(intra > 0 && inter > 0, `step ${r.step}: intra ${intra}, inter ${inter}`);
      assert.ok(r.simTime > 0, `step ${r.step}: simTime ${r.simTime}`);
      assert.equal(r.memory.length, 4);
      for (const memory of r.memory) {
        assert.ok(memory.parameters > 0 && memory.optimizer === 2 * memory.parameters, JSON.stringify(memory));
      }
    }
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("cli: train --zeropp names the techniques, sends fewer bytes than ZeRO-3 and reports hpZ's memory", async () => {
  const file = await Deno.makeTempFile({ suffix: ".jsonl" });
  try {
    const layout = [
      "--dp",
      "4",
      "--nodes",
      "2",
      "--zero",
      "3",
      "--steps",
      "2",
      "--batch",
      "4",
      "--seq",
      "16",
      "--backend",
      "cpu",
    ];
    const result = await shardlab("train", ...layout, "--zeropp", "--quant-block", "512", "--json", file);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /zero 3 \+ qwZ int8, hpZ 2, qgZ int4 blocks of 512, 2 nodes/);
    const zeropp = (await Deno.readTextFile(file)).trim().split("\n").map((line) => JSON.parse(line));
    assert.equal((await shardlab("train", ...layout, "--json", file)).code, 0);
    const zero3 = (await Deno.readTextFile(file)).trim().split("\n").map((line) => JSON.parse(line));
    zeropp.forEach((r, i) => {
      assert.ok(
        r.commBytes.inter < zero3[i].commBytes.inter / 3,
        `step ${r.step}: ${r.commBytes.inter} vs ${zero3[i].commBytes.inter}`,
      );
      for (const memory of r.memory) assert.ok(memory.secondary > 0, JSON.stringify(memory));
    });
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("cli: info --backend cpu describes the device as JSON", async () => {
  const result = await shardlab("info", "--backend", "cpu");
  assert.equal(result.code, 0, result.stderr);
  const info = JSON.parse(result.stdout);
  assert.equal(info.backend, "cpu");
  assert.match(info.runtime, /^deno \d/);
});

const BAD_INPUT: [string[], RegExp][] = [
  [["train", "--preset", "huge"], /unknown preset "huge" \(valid: tiny, small\)/],
  [["train", "--steps", "abc"], /--steps must be a number, got "abc"/],
  [["train", "--steps", "2.5"], /--steps must be an integer ≥ 1, got 2\.5/],
  [["train", "--seq", "4096"], /--seq 4096 exceeds the tiny preset's maximum sequence length 256/],
  [["train", "--backend", "tpu"], /unknown backend "tpu" \(valid: auto, webgpu, cpu\)/],
  [["train", "--lr", "0"], /--lr must be a positive number, got 0/],
  [["train", "--bogus"], /--bogus/],
  [["train", "--tp", "3"], /4 attention heads do not split evenly over tp 3/],
  [["train", "--tp", "8"], /4 attention heads do not split evenly over tp 8/],
  [["train", "--dp", "3"], /global batch of 16 rows does not divide among dp 3 replicas/],
  [["train", "--sp", "3"], /a sequence of 64 tokens does not divide among sp 3 ranks/],
  [["train", "--zero", "2"], /--zero 2 partitions over data-parallel ranks, but there is only one \(dp 1\)/],
  [["train", "--zero", "5", "--dp", "2"], /--zero must be 0, 1, 2 or 3, got 5/],
  [["train", "--dp", "2", "--nodes", "3"], /2 ranks \(dp 2 × tp 1 × sp 1\) do not split into 3 nodes/],
  [["train", "--sp", "2", "--sp-impl", "ring"], /--sp-impl must be one of ulysses, megatron, got "ring"/],
  [["train", "--sp", "2", "--tp", "2", "--sp-impl", "megatron"], /give --sp 2 with --tp 1, not --tp 2/],
  [["train", "--dp", "2", "--sample"], /--sample generates on one rank/],
  [["train", "--dp", "2", "--bucket-cap-mb", "0"], /--bucket-cap-mb must be a positive number of MiB, got 0/],
  [["info", "--backend", "tpu"], /unknown backend "tpu"/],
  [["fly"], /unknown command "fly" \(valid: train, ckpt, generate, memory, info, selfcheck/],
  [["train", "--save-every", "5"], /--save-every 5 needs --save DIR/],
  [["train", "--save", "x", "--save-every", "0"], /--save-every must be an integer ≥ 1, got 0/],
  [["train", "--dp", "2", "--zeropp"], /--zeropp works on ZeRO-3's partitions: it needs --zero 3, got --zero 0/],
  [
    ["train", "--dp", "4", "--nodes", "2", "--zero", "3", "--zero-hpz-partition-size", "4"],
    /--zero-hpz-partition-size must be the ranks per node, 2/,
  ],
  [["train", "--dp", "2", "--zero", "3", "--zero-quantized-weights", "--quant-bits", "2"], /--quant-bits must be 8 or 4, got 2/],
  [["train", "--dp", "2", "--zero", "3", "--comm-dtype", "bf16"], /--comm-dtype must be f32 or f16, got "bf16"/],
  [["ckpt", "fold", "x"], /unknown ckpt action "fold" \(valid: inspect, verify, convert, export\)/],
  [["ckpt", "convert", "x"], /ckpt convert takes SRC and DST, got 1 path\(s\)/],
  [["train", "--json", "/tmp"], /--json \/tmp is a folder; give a file to write the records to/],
  [["train", "--json", "/no-such-folder/run.jsonl"], /--json \/no-such-folder\/run.jsonl: there is no folder \/no-such-folder/],
];

for (const [args, message] of BAD_INPUT) {
  Deno.test(`cli: \`shardlab ${args.join(" ")}\` exits 2 naming the value`, async () => {
    const result = await shardlab(...args);
    assert.equal(result.code, 2, `exit code ${result.code}; stderr: ${result.stderr}`);
    assert.match(result.stderr, message);
  });
}

Deno.test("cli: train --save, ckpt inspect, verify and convert, and --resume on another layout", async () => {
  const root = await Deno.makeTempDir({ prefix: "shardlab-cli-" });
  const common = ["train", "--steps", "4", "--batch", "4", "--seq", "16", "--backend", "cpu"];
  const saved = await shardlab(...common, "--dp", "2", "--zero", "2", "--save", `${root}/run`, "--save-every", "2");
  assert.equal(saved.code, 0, saved.stderr);
  assert.match(saved.stdout, new RegExp(`checkpoint saved: ${root}/run/step-00000004`));
  assert.equal(await Deno.readTextFile(`${root}/run/latest`), "step-00000004");

  const inspect = await shardlab("ckpt", "inspect", `${root}/run/step-00000002`);
  assert.equal(inspect.code, 0, inspect.stderr);
  assert.match(inspect.stdout, /distributed checkpoint at step 2/);
  assert.match(inspect.stdout, /layout: dp 2 × tp 1 × sp 1 \(ulysses\), zero 2/);
  assert.match(inspect.stdout, /rank-00001\.safetensors/);
  const json = JSON.parse((await shardlab("ckpt", "inspect", `${root}/run`, "--json")).stdout);
  assert.equal(json.step, 4);
  assert.equal(json.ranks.length, 2);

  assert.equal((await shardlab("ckpt", "verify", `${root}/run`)).code, 0);
  const converted = await shardlab("ckpt", "convert", `${root}/run/step-00000002`, `${root}/universal`);
  assert.equal(converted.code, 0, converted.stderr);
  assert.match(converted.stdout, /15 parameters × 3 states/);
  assert.equal((await shardlab("ckpt", "verify", `${root}/universal`)).code, 0);

  const resumed = await shardlab(...common, "--tp", "2", "--resume", `${root}/universal`);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stdout, /resuming from .*universal.* at step 2 \(saved on any layout: a universal checkpoint\)/);
  assert.match(resumed.stdout, /step 4\/4/);

  // A flipped byte: verify names the file and exits 1; so does a resume from a path with no checkpoint.
  const file = `${root}/run/step-00000004/rank-00000.safetensors`;
  const bytes = await Deno.readFile(file);
  bytes[bytes.length - 1] ^= 1;
  await Deno.writeFile(file, bytes);
  const verify = await shardlab("ckpt", "verify", `${root}/run`);
  assert.equal(verify.code, 1);
  assert.match(verify.stdout, /rank-00000\.safetensors: SHA-256 /);
  const missing = await shardlab(...common, "--resume", `${root}/nothing`);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no checkpoint here/);
});
