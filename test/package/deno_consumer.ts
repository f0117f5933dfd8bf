// A Deno project that depends on the installed shardlab package (package_test.ts sets it up): a CPU
// op, one data-parallel training step on two CPU ranks (Web Workers running the package's
// rank_worker.js), and two ranks running an entry module of its own. Takes the training config as
// JSON and prints one JSON line.

import { createDevice, launch, ops, trainParallel } from "shardlab";

const config = JSON.parse(Deno.args[0]);
const device = await createDevice({ backend: "cpu" });
const x = device.tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);
const product = Array.from(await ops.matmul(x, x).read());
device.destroy();

const run = await trainParallel({ ...config, dp: 2 });
const entry = new URL("./deno_rank_entry.ts", import.meta.url);
const ownEntry = await launch<{ oneLibrary: boolean }>({ ranks: 2, entry, backend: "cpu" });
console.log(JSON.stringify({
  product,
  loss: run.history[0].loss,
  ranks: run.ranks.length,
  oneLibrary: ownEntry.map((rank) => rank.value.oneLibrary),
}));
