// Headless Chromium for the page tests: where it lives, whether it is there, the flags that give
// it WebGPU through SwiftShader, and a test that serves the pages and opens one. Without Chromium
// the page tests are skipped, unless SHARDLAB_REQUIRE_BROWSER=1 makes that a failure.

import assert from "node:assert/strict";
import { chromium, type Page } from "playwright-core";
import { servePage } from "../web/serve.ts";

export const CHROMIUM = "/usr/bin/chromium";
export const requireBrowser = Deno.env.get("SHARDLAB_REQUIRE_BROWSER") === "1";
export const haveChromium = await Deno.stat(CHROMIUM).then(() => true, () => false);

export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--enable-features=Vulkan",
  "--use-vulkan=swiftshader",
  "--use-webgpu-adapter=swiftshader",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

/** Serves the page, opens `query` in Chromium and runs `fn`; page errors are collected for it. */
export function pageTest(name: string, query: string, fn: (page: Page, pageErrors: string[]) => Promise<void>): void {
  Deno.test({
    name,
    ignore: !haveChromium && !requireBrowser,
    // Playwright's pipes and the server's connections outlive the test body by a tick.
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
        await page.goto(server.url + query);
        await fn(page, pageErrors);
      } finally {
        await browser.close();
        await server.close();
      }
    },
  });
}

export async function screenshot(page: Page, file: string): Promise<void> {
  await Deno.mkdir("test-artifacts", { recursive: true });
  await page.screenshot({ path: `test-artifacts/${file}`, fullPage: true });
}
