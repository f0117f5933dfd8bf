// The optional cross-check with Hugging Face transformers itself: a short run's checkpoint is
// exported (f32 and bf16), test/fixtures/hf_logits.py loads each folder with
// Phi3ForCausalLM.from_pretrained(folder, torch_dtype=torch.float32) and prints its logits for a
// sequence of tokens, and shardlab's logits for the same tokens from the same folder must agree
// within 1e-4 (the largest difference is printed). It needs a Python that imports torch and
// transformers: SHARDLAB_PYTHON names it (default python3). Without one the test is reported as
// ignored, its name saying why; it never fails for it, and CI does not need Python.

import assert from "node:assert/strict";
import { FsStorage } from "../src/checkpoint/fs_storage.ts";
import type { FloatDType } from "../src/checkpoint/float_encoding.ts";
import { exportHuggingFace } from "../src/checkpoint/hf_export.ts";
import { openCheckpoint } from "../src/checkpoint/load.ts";
import { loadModel } from "../src/checkpoint/load_model.ts";
import { charTokenizer } from "../src/data/tokenizer.ts";
import { Trainer } from "../src/train/trainer.ts";
import { cpuDevice } from "./helpers.ts";

const PYTHON = Deno.env.get("SHARDLAB_PYTHON") ?? "python3";
const SCRIPT = new URL("./fixtures/hf_logits.py", import.meta.url).pathname;
const TOKENS = charTokenizer.encode("the small dog ran to the old house, and then it sat down by the door.\nwhen the sun set, ");

async function pythonHasTransformers(): Promise<boolean> {
  try {
    const command = new Deno.Command(PYTHON, { args: ["-c", "import torch, transformers"], stdout: "null", stderr: "null" });
    return (await command.output()).success;
  } catch {
    return false;
  }
}

const available = await pythonHasTransformers();
if (!available) {
  console.log(`hf_python_test: skipped: ${PYTHON} cannot import torch and transformers (SHARDLAB_PYTHON names another Python)`);
}

Deno.test({
  name: available
    ? `hf python: transformers' Phi3ForCausalLM gives shardlab's logits for an exported checkpoint (f32 and bf16), within 1e-4`
    : `hf python: skipped, ${PYTHON} cannot import torch and transformers (set SHARDLAB_PYTHON to one that can)`,
  ignore: !available,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "shardlab-hf-python-" });
    try {
      const device = await cpuDevice();
      const trainer = await Trainer.create(
        { preset: "tiny", steps: 30, batch: 8, seq: 32, lr: 1e-2, seed: 2, backend: "cpu", save: `${root}/run` },
        device,
      );
      while (!trainer.done) await trainer.step();
      trainer.dispose();
      const checkpoint = await openCheckpoint(new FsStorage(`${root}/run`), "");
      for (const dtype of ["F32", "BF16"] as FloatDType[]) {
        const folder = `${root}/hf-${dtype}`;
        await exportHuggingFace(checkpoint, new FsStorage(folder), "", dtype);
        const output = await new Deno.Command(PYTHON, {
          args: [SCRIPT, folder, JSON.stringify([...TOKENS])],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.ok(output.success, new TextDecoder().decode(output.stderr));
        const { transformers, logits } = JSON.parse(new TextDecoder().decode(output.stdout)) as {
          transformers: string;
          logits: number[][];
        };
        const { model } = await loadModel(device, new FsStorage(folder), "");
        const ours = await (await model.forward(device.tensor(TOKENS, [1, TOKENS.length]))).read();
        model.dispose();
        const theirs = logits.flat();
        assert.equal(theirs.length, ours.length, "logits [T, vocab]");
        let max = 0;
        for (let i = 0; i < ours.length; i++) max = Math.max(max, Math.abs(ours[i] - theirs[i]));
        console.log(
          `hf_python_test: ${dtype} export, ${TOKENS.length} tokens: max |shardlab − transformers ${transformers}| = ${
            max.toExponential(2)
          }`,
        );
        assert.ok(max <= 1e-4, `${dtype}: logits differ by up to ${max}`);
      }
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});
