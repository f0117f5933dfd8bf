// The page's kernel self-check in headless Chromium: every kernel family, run on the browser's
// WebGPU (SwiftShader here), agrees with the CPU reference. Where the browser has no WebGPU the
// panel must say that the CPU backend is the reference and compare nothing. A screenshot lands in
// test-artifacts/.

import assert from "node:assert/strict";
import { pageTest, screenshot } from "./browser_chromium.ts";
import { requireWebGpu } from "./helpers.ts";

pageTest("page: every kernel family agrees with the CPU reference in Chromium", "?autostart=0", async (page, pageErrors) => {
  await page.click("#selfcheck");
  await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.selfcheck ?? ""), null, { timeout: 240_000 });
  await screenshot(page, "page-selfcheck.png");
  const state = await page.evaluate(() => document.body.dataset.selfcheck);
  const status = await page.textContent("#selfcheck-status") ?? "";
  assert.equal(state, "done", `self-check ended in state ${state}: ${status}`);
  assert.deepEqual(pageErrors, []);
  const backend = await page.evaluate(() => document.body.dataset.selfcheckBackend);
  if (requireWebGpu) assert.equal(backend, "webgpu", "the page fell back to the CPU backend although WebGPU is required");
  const rows = await page.$$eval("#rows tr", (trs) => trs.map((tr) => ({ family: tr.dataset.family, ok: tr.dataset.ok })));
  if (backend === "cpu") {
    assert.deepEqual(rows, [], "the CPU backend compared with itself");
    assert.match(status, /the reference itself\. There is nothing to compare it with/);
    return;
  }
  assert.ok(rows.length >= 10, `expected a row per kernel family, got ${rows.length}`);
  for (const row of rows) assert.equal(row.ok, "true", `${row.family} differs from the CPU reference in the browser`);
  assert.match(status, /^Every kernel family agrees with the CPU reference on webgpu/);
});
