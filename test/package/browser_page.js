// A page that bundles shardlab from npm (package_test.ts bundles this file and
// "shardlab/rank-worker" with esbuild): one ZeRO-3 step on two CPU ranks, its worker the bundled
// rank-worker.js. The training config comes in the query (?config=JSON); the outcome is left in
// globalThis.result.

import { trainParallel } from "shardlab";

const config = JSON.parse(new URLSearchParams(location.search).get("config"));
try {
  const workerUrl = new URL("./rank-worker.js", import.meta.url);
  const run = await trainParallel({ ...config, dp: 2, zero: 3 }, undefined, { workerUrl });
  globalThis.result = { loss: run.history[0].loss, ranks: run.ranks.length, isolated: crossOriginIsolated };
} catch (error) {
  globalThis.result = { error: String(error?.stack ?? error) };
}
