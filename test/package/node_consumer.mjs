// A Node project that depends on the installed shardlab package (package_test.ts sets it up): what
// works in Node (CPU ops, a single-device training step) and the errors for what needs WebGPU or Web
// Workers. Takes the training config as JSON and prints one JSON line.

import { createDevice, launch, ops, Trainer } from "shardlab";

/** The message of the error `run` rejects with, or null when it resolves. */
async function errorOf(run) {
  try {
    await run();
    return null;
  } catch (error) {
    return error.message;
  }
}

const config = JSON.parse(process.argv[2]);
const device = await createDevice({ backend: "cpu" });
const x = device.tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);
const product = Array.from(await ops.matmul(x, x).read());

const trainer = await Trainer.create(config, device);
const { loss } = await trainer.step();

console.log(JSON.stringify({
  product,
  loss,
  launchError: await errorOf(() => launch({ ranks: 2, entry: "shardlab:train-rank" })),
  webgpuError: await errorOf(() => createDevice({ backend: "webgpu" })),
}));
