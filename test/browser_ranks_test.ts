// The ranks page in headless Chromium: the page (cross-origin isolated by serve.ts) launches 4 ranks
// as module workers from the bundled rank worker, each opens its own device, and one all-reduce
// through their shared memory gives every rank (i + 1)·n(n + 1)/2. A screenshot lands in
// test-artifacts/.

import assert from "node:assert/strict";
import { pageTest, screenshot } from "./browser_chromium.ts";
import { requireWebGpu } from "./helpers.ts";

const RANKS = 4, RANKS_PER_NODE = 2, LENGTH = 1009;

interface PageResults {
  ranks: number;
  length: number;
  totalBytes: number;
  results: { rank: number; node: number; backend: string; values: number[] }[];
}

pageTest(
  "ranks page: 4 ranks in Chromium workers all-reduce through shared memory",
  `ranks.html?ranks=${RANKS}&ranksPerNode=${RANKS_PER_NODE}&length=${LENGTH}`,
  async (page, pageErrors) => {
    await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.ranks ?? ""), null, { timeout: 120_000 });
    await screenshot(page, "ranks-page.png");
    const state = await page.evaluate(() => document.body.dataset.ranks);
    assert.equal(state, "done", `the page ended in state ${state}: ${await page.textContent("#status")}`);
    assert.deepEqual(pageErrors, []);
    assert.equal(await page.evaluate(() => crossOriginIsolated), true);

    const data: PageResults = JSON.parse(await page.evaluate(() => document.body.dataset.results ?? "{}"));
    assert.equal(data.results.length, RANKS);
    const expected = Array.from({ length: LENGTH }, (_, i) => ((i + 1) * RANKS * (RANKS + 1)) / 2);
    data.results.forEach((result, rank) => {
      assert.equal(result.rank, rank);
      assert.equal(result.node, Math.floor(rank / RANKS_PER_NODE));
      if (requireWebGpu) {
        assert.equal(result.backend, "webgpu", `rank ${rank} fell back to the CPU backend although WebGPU is required`);
      }
      assert.deepEqual(result.values, expected, `rank ${rank}'s all-reduce differs from the sum`);
    });
    assert.ok(data.totalBytes > 0, "the ledger counted no traffic");
  },
);
