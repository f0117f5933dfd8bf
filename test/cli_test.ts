// The shardlab command line as a user meets it: `train` with --json, `info`, and exit code 2 with a
// message naming the value for every kind of bad input.

import assert from "node:assert/strict";

const MAIN = new URL("../cli/main.ts", import.meta.url).pathname;

async function shardlab(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { XDG_RUNTIME_DIR: "/tmp" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

Deno.test("cli: train --json writes one record per step with the documented fields", async () => {
  const file = await Deno.makeTempFile({ suffix: ".jsonl" });
  try {
    const result = await shardlab("train", "--steps", "4", "--batch", "2", "--seq", "16", "--lr", "0.005", "--backend", "cpu", "--json", file);
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
  [["info", "--backend", "tpu"], /unknown backend "tpu"/],
  [["fly"], /unknown command "fly" \(valid: train, info, selfcheck\)/],
];

for (const [args, message] of BAD_INPUT) {
  Deno.test(`cli: \`shardlab ${args.join(" ")}\` exits 2 naming the value`, async () => {
    const result = await shardlab(...args);
    assert.equal(result.code, 2, `exit code ${result.code}; stderr: ${result.stderr}`);
    assert.match(result.stderr, message);
  });
}
