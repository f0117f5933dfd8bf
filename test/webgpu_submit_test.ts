// When the WebGPU context submits its recorded work: a pipeline's first dispatch at once (so that
// a driver that compiles pipelines at their first use, as Mesa's llvmpipe does, starts compiling
// while the next dispatches are recorded), every later dispatch batched until something needs the
// results.

import assert from "node:assert/strict";
import { unary } from "../src/backend/webgpu/programs/elementwise.ts";
import { gpuTest, readGpu } from "./helpers.ts";

gpuTest("a pipeline's first dispatch is submitted at once, its later ones wait for a read", async (ctx) => {
  const queue = ctx.device.queue;
  const submit = queue.submit.bind(queue);
  let submits = 0;
  queue.submit = (buffers) => {
    submits++;
    submit(buffers);
  };
  try {
    const x = ctx.upload(new Float32Array([1, 2, 3, 4]));
    submits = 0;
    const negated = unary(ctx, "neg", x, 4);
    assert.equal(submits, 1, "the first dispatch of neg is submitted");
    const twice = unary(ctx, "neg", negated, 4);
    const thrice = unary(ctx, "neg", twice, 4);
    assert.equal(submits, 1, "later dispatches of neg are recorded only");
    const scaled = unary(ctx, "scale", thrice, 4, 2);
    assert.equal(submits, 2, "the first dispatch of scale is submitted");
    const again = unary(ctx, "scale", scaled, 4, 0.5);
    assert.equal(submits, 2, "a later dispatch of scale is recorded only");
    assert.deepEqual([...await readGpu(ctx, again, 4)], [-1, -2, -3, -4]);
    assert.equal(submits, 3, "the read submits what was recorded");
    for (const storage of [x, negated, twice, thrice, scaled, again]) ctx.release(storage);
  } finally {
    queue.submit = submit;
  }
});
