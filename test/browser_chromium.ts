// Headless Chromium for the page tests: where it lives, whether it is there, and the flags that give
// it WebGPU through SwiftShader. Without Chromium the page tests are skipped, unless
// SHARDLAB_REQUIRE_BROWSER=1 makes that a failure.

export const CHROMIUM = "/usr/bin/chromium";
export const requireBrowser = Deno.env.get("SHARDLAB_REQUIRE_BROWSER") === "1";
export const haveChromium = await Deno.stat(CHROMIUM).then(() => true, () => false);

export const CHROMIUM_ARGS = [
  "--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-vulkan=swiftshader",
  "--use-webgpu-adapter=swiftshader", "--disable-background-networking", "--disable-component-update",
  "--disable-sync", "--no-first-run", "--disable-quic",
];
