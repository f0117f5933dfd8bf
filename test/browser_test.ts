// The self-check page in headless Chromium: the same kernel sources, bundled by esbuild, run on the
// browser's WebGPU and agree with the CPU reference. A screenshot lands in test-artifacts/.
// Without Chromium the test is skipped, unless SHARDLAB_REQUIRE_BROWSER=1 makes that a failure.

import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { servePage } from "../web/serve.ts";
import { requireWebGpu } from "./helpers.ts";

const CHROMIUM = "/usr/bin/chromium";
const requireBrowser = Deno.env.get("SHARDLAB_REQUIRE_BROWSER") === "1";
const haveChromium = await Deno.stat(CHROMIUM).then(() => true, () => false);

export const CHROMIUM_ARGS = [
  "--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-vulkan=swiftshader",
  "--use-webgpu-adapter=swiftshader", "--disable-background-networking", "--disable-component-update",
  "--disable-sync", "--no-first-run", "--disable-quic",
];

Deno.test({
  name: "self-check page: every kernel family agrees with the CPU reference in Chromium",
  ignore: !haveChromium && !requireBrowser,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    assert.ok(haveChromium, `SHARDLAB_REQUIRE_BROWSER=1 but ${CHROMIUM} is missing (apt-get install chromium)`);
    const server = await servePage(0);
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (error) => pageErrors.push(error.message));
      await page.goto(server.url);
      await page.waitForFunction(() => document.body.dataset.state !== undefined, null, { timeout: 240_000 });
      await Deno.mkdir("test-artifacts", { recursive: true });
      await page.screenshot({ path: "test-artifacts/selfcheck-page.png", fullPage: true });
      const state = await page.evaluate(() => document.body.dataset.state);
      const status = await page.textContent("#status");
      assert.equal(state, "done", `page ended in state ${state}: ${status}`);
      assert.deepEqual(pageErrors, []);
      const backend = await page.evaluate(() => document.body.dataset.backend);
      if (requireWebGpu) assert.equal(backend, "webgpu", "the page fell back to the CPU backend although WebGPU is required");
      const rows = await page.$$eval("#rows tr", (trs) => trs.map((tr) => ({ family: tr.dataset.family, ok: tr.dataset.ok })));
      assert.ok(rows.length >= 10, `expected a row per kernel family, got ${rows.length}`);
      for (const row of rows) assert.equal(row.ok, "true", `${row.family} differs from the CPU reference in the browser`);
    } finally {
      await browser.close();
      await server.close();
    }
  },
});
