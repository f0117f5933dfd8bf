// Hugging Face interchange on the command line, as a user types it: a ZeRO-3 run saves, `ckpt
// export --hf` writes the folder (f32, and f16 with --dtype), `train --init-from` starts new runs
// from it on one device and on tp 2, `generate` prints the same greedy text from the checkpoint and
// from the export; bad input exits 2 (usage) or 1 (a model that does not fit), naming the value.

import assert from "node:assert/strict";
import { shardlab } from "./cli_run.ts";

const root = await Deno.makeTempDir({ prefix: "shardlab-hf-cli-" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
const SHORT = ["--steps", "2", "--batch", "4", "--seq", "16", "--backend", "cpu"];

Deno.test("cli: train --save, ckpt export --hf, train --init-from and generate", async () => {
  const saved = await shardlab(
    "train",
    "--steps",
    "4",
    "--batch",
    "4",
    "--seq",
    "16",
    "--backend",
    "cpu",
    "--dp",
    "2",
    "--zero",
    "3",
    "--save",
    `${root}/run`,
  );
  assert.equal(saved.code, 0, saved.stderr);

  const exported = await shardlab("ckpt", "export", `${root}/run`, "--hf", `${root}/hf`);
  assert.equal(exported.code, 0, exported.stderr);
  assert.match(
    exported.stdout,
    /exported .*run to .*hf for Hugging Face \(Phi3ForCausalLM, F32\): 15 parameters, 0\.42 MiB of model\.safetensors in \d+\.\d\d s; held at most \d+\.\d\d MiB of parameter data/,
  );
  for (const file of ["config.json", "generation_config.json", "model.safetensors"]) {
    assert.ok((await Deno.stat(`${root}/hf/${file}`)).isFile, file);
  }

  const half = await shardlab("ckpt", "export", `${root}/run/step-00000004`, "--hf", `${root}/hf16`, "--dtype", "f16");
  assert.equal(half.code, 0, half.stderr);
  assert.match(half.stdout, /\(Phi3ForCausalLM, F16\): 15 parameters, 0\.21 MiB/);
  assert.equal(JSON.parse(await Deno.readTextFile(`${root}/hf16/config.json`)).torch_dtype, "float16");

  const initialized = await shardlab("train", ...SHORT, "--init-from", `${root}/hf`);
  assert.equal(initialized.code, 0, initialized.stderr);
  assert.match(initialized.stdout, /initializing from .*hf\/model\.safetensors \(F32\): step 0, AdamW's moments zero/);
  assert.match(initialized.stdout, /step 2\/2/);
  const parallel = await shardlab("train", ...SHORT, "--tp", "2", "--init-from", `${root}/hf16/model.safetensors`);
  assert.equal(parallel.code, 0, parallel.stderr);
  assert.match(parallel.stdout, /initializing from .*hf16\/model\.safetensors \(F16\)/);
  assert.match(parallel.stdout, /on 2 ranks \(dp 1 × tp 2/);

  const greedy = ["--prompt", "the ", "--max-tokens", "40", "--temperature", "0", "--backend", "cpu"];
  const fromExport = await shardlab("generate", "--from", `${root}/hf`, ...greedy);
  assert.equal(fromExport.code, 0, fromExport.stderr);
  assert.match(fromExport.stderr, /110,912 parameters from .*hf, an exported Hugging Face model \(F32\), on cpu/);
  assert.equal(fromExport.stdout.length, "the ".length + 40 + 1, JSON.stringify(fromExport.stdout));
  assert.ok(fromExport.stdout.startsWith("the "));
  const fromCheckpoint = await shardlab("generate", "--from", `${root}/run`, ...greedy);
  assert.equal(fromCheckpoint.code, 0, fromCheckpoint.stderr);
  assert.match(fromCheckpoint.stderr, /a distributed checkpoint at step 4 \(dp 2 × tp 1 × sp 1, zero 3\)/);
  assert.equal(fromCheckpoint.stdout, fromExport.stdout, "the same weights write the same greedy text");
  const sampled = ["--from", `${root}/hf`, "--prompt", "a", "--max-tokens", "30", "--seed", "4", "--backend", "cpu"];
  const [first, second] = [await shardlab("generate", ...sampled), await shardlab("generate", ...sampled)];
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.stdout, second.stdout, "the same seed samples the same text");
});

const BAD_INPUT: [string[], number, RegExp][] = [
  [["ckpt", "export", "x"], 2, /ckpt export needs --hf OUT/],
  [["ckpt", "export", "x", "--hf", "y", "--dtype", "f8"], 2, /--dtype must be f32, f16 or bf16, got "f8"/],
  [["ckpt", "verify", "x", "--hf", "y"], 2, /--hf is an option of ckpt export, not of ckpt verify/],
  [["train", "--init-from", "x", "--resume", "y"], 2, /--init-from starts a new run from a model's weights and --resume goes on/],
  [["train", "--init-from", ""], 2, /--init-from needs a folder, got ""/],
  [["train", ...SHORT, "--init-from", "/nonexistent/hf"], 1, /\/nonexistent\/hf: no model\.safetensors here/],
  [["generate", "--prompt", "x"], 2, /generate needs --from PATH/],
  [["generate", "--from", "x"], 2, /generate needs --prompt TEXT/],
  [
    ["generate", "--from", "x", "--prompt", "naïve ☃ test"],
    2,
    /--prompt has 2 character\(s\) the tokenizer does not know: "ï" \(U\+00EF\) at position 2, "☃" \(U\+2603\) at position 6/,
  ],
  [["generate", "--from", "x", "--prompt", "a", "--temperature=-1"], 2, /--temperature must be a number ≥ 0, got "-1"/],
  [["generate", "--from", "x", "--prompt", "a", "--max-tokens", "2.5"], 2, /--max-tokens must be an integer ≥ 0, got "2\.5"/],
  [["generate", "--from", "x", "--prompt", "a", "--backend", "tpu"], 2, /unknown backend "tpu"/],
  [
    ["generate", "--from", "/nonexistent/run", "--prompt", "a", "--backend", "cpu"],
    1,
    /\/nonexistent\/run: neither a checkpoint \(metadata\.json, or a save folder's latest\) nor an exported model/,
  ],
];

for (const [args, code, message] of BAD_INPUT) {
  Deno.test(`cli: \`shardlab ${args.join(" ")}\` exits ${code} naming the value`, async () => {
    const result = await shardlab(...args);
    assert.equal(result.code, code, `exit code ${result.code}; stderr: ${result.stderr}`);
    assert.match(result.stderr, message);
  });
}

Deno.test("cli: train --init-from a model of another shape names every field of config.json that differs", async () => {
  const exported = await shardlab(
    "train",
    "--steps",
    "1",
    "--batch",
    "2",
    "--seq",
    "16",
    "--backend",
    "cpu",
    "--save",
    `${root}/tiny`,
  );
  assert.equal(exported.code, 0, exported.stderr);
  assert.equal((await shardlab("ckpt", "export", `${root}/tiny`, "--hf", `${root}/tiny-hf`)).code, 0);
  const result = await shardlab("train", ...SHORT, "--preset", "small", "--init-from", `${root}/tiny-hf`);
  assert.equal(result.code, 1, result.stderr);
  assert.match(
    result.stderr,
    /tiny-hf\/config\.json describes another model: hidden_size 64 \(this run's model has 128\), intermediate_size 192 \(this run's model has 384\), num_hidden_layers 2 \(this run's model has 4\), max_position_embeddings 256 \(this run's model has 512\)/,
  );
});
