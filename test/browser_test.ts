// The demo page in headless Chromium: the same sources, bundled by esbuild, train the tiny model in a
// Web Worker on the browser's WebGPU, and every kernel family agrees with the CPU reference there.
// Screenshots land in test-artifacts/.

import assert from "node:assert/strict";
import { pageTest, screenshot } from "./browser_chromium.ts";
import { requireWebGpu } from "./helpers.ts";

const STEPS = 40;

pageTest(
  "demo page: the tiny model trains in a worker and its loss goes down",
  `?steps=${STEPS}&batch=8&seq=32`,
  async (page, pageErrors) => {
    await page.waitForFunction(() => ["done", "error", "stopped"].includes(document.body.dataset.train ?? ""), null, {
      timeout: 300_000,
    });
    await screenshot(page, "demo-page-training.png");
    const state = await page.evaluate(() => document.body.dataset.train);
    const status = await page.textContent("#train-status");
    assert.equal(state, "done", `training ended in state ${state}: ${status}`);
    assert.deepEqual(pageErrors, []);
    if (requireWebGpu) {
      assert.equal(
        await page.textContent("#backend"),
        "webgpu",
        "the page trained on the CPU backend although WebGPU is required",
      );
    }
    const losses: number[] = JSON.parse(await page.evaluate(() => document.body.dataset.losses ?? "[]"));
    assert.equal(losses.length, STEPS);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = mean(losses.slice(0, 5)), last = mean(losses.slice(-5));
    assert.ok(last < first - 0.5, `loss did not go down: first five steps ${first.toFixed(3)}, last five ${last.toFixed(3)}`);
    const floor = Number(await page.textContent("#floor"));
    assert.ok(floor > 0 && floor < last, `the floor ${floor} should sit under the loss ${last.toFixed(3)}`);
  },
);

pageTest("demo page: every kernel family agrees with the CPU reference in Chromium", "?autostart=0", async (page, pageErrors) => {
  await page.click("#selfcheck");
  await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.selfcheck ?? ""), null, { timeout: 240_000 });
  await screenshot(page, "demo-page-selfcheck.png");
  const state = await page.evaluate(() => document.body.dataset.selfcheck);
  assert.equal(state, "done", `self-check ended in state ${state}: ${await page.textContent("#selfcheck-status")}`);
  assert.deepEqual(pageErrors, []);
  const backend = await page.evaluate(() => document.body.dataset.selfcheckBackend);
  if (requireWebGpu) assert.equal(backend, "webgpu", "the page fell back to the CPU backend although WebGPU is required");
  const rows = await page.$$eval("#rows tr", (trs) => trs.map((tr) => ({ family: tr.dataset.family, ok: tr.dataset.ok })));
  assert.ok(rows.length >= 10, `expected a row per kernel family, got ${rows.length}`);
  for (const row of rows) assert.equal(row.ok, "true", `${row.family} differs from the CPU reference in the browser`);
});

pageTest(
  "demo page: a run saved to OPFS resumes after a reload and goes on as it did",
  "?steps=12&batch=8&seq=32&save=run&saveEvery=6",
  async (page, pageErrors) => {
    const finished = () =>
      page.waitForFunction(() => ["done", "error", "stopped"].includes(document.body.dataset.train ?? ""), null, {
        timeout: 300_000,
      });
    await finished();
    assert.equal(await page.evaluate(() => document.body.dataset.train), "done", await page.textContent("#train-status") ?? "");
    const first: number[] = JSON.parse(await page.evaluate(() => document.body.dataset.losses ?? "[]"));
    assert.equal(first.length, 12);
    assert.equal(await page.evaluate(() => document.body.dataset.saved), "run/step-00000012");

    // A new page load reads step 6's checkpoint back from OPFS and trains steps 7 to 12 again.
    await page.goto(page.url().replace(/\?.*$/, "?steps=12&batch=8&seq=32&resume=run/step-00000006"));
    await finished();
    await screenshot(page, "demo-page-resumed.png");
    assert.equal(await page.evaluate(() => document.body.dataset.train), "done", await page.textContent("#train-status") ?? "");
    assert.match(await page.textContent("#checkpoint") ?? "", /resumed at step 6 from OPFS run\/step-00000006/);
    const resumed: number[] = JSON.parse(await page.evaluate(() => document.body.dataset.losses ?? "[]"));
    assert.deepEqual(resumed, first.slice(6), "the same losses, bit for bit: the same device, layout and state");
    assert.deepEqual(pageErrors, []);
  },
);
