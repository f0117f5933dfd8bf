// A Deno project that depends on the installed shardlab package (package_test.ts sets it up): a CPU
// op, then one data-parallel training step on two CPU ranks, Web Workers running the package's
// rank_worker.js. Takes the training config as JSON and prints one JSON line.

import { createDevice, ops, trainParallel } from "shardlab";

const config = JSON.parse(Deno.args[0]);
const device = await createDevice({ backend: "cpu" });
const x = device.tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);
const product = Array.from(await ops.matmul(x, x).read());
device.destroy();

const run = await trainParallel({ ...config, dp: 2 });
console.log(JSON.stringify({ product, loss: run.history[0].loss, ranks: run.ranks.length }));
