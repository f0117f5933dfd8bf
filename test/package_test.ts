// The package as its users get it: `npm pack` (which builds dist/ through prepack), the tarball
// installed offline into a fresh project, and every way of using it from there: a Deno script, a
// Node script, a page bundled with esbuild and opened in Chromium, `npx shardlab info` and `npx
// shardlab serve`. The training steps are checked against the same step computed from the sources
// in this process.

import assert from "node:assert/strict";
import * as esbuild from "esbuild";
import { chromium } from "playwright-core";
import { createDevice, type TrainConfig, Trainer } from "../mod.ts";
import { serveFiles } from "../web/serve.ts";
import { CHROMIUM, CHROMIUM_ARGS, haveChromium, requireBrowser } from "./browser_chromium.ts";
import { requireWebGpu } from "./helpers.ts";

const ROOT = new URL("../", import.meta.url);
const CONSUMERS = new URL("./package/", import.meta.url);
/** One small step on the CPU, small enough that every consumer trains it in a second or two. */
const CONFIG: TrainConfig = { preset: "tiny", steps: 1, batch: 4, seq: 16, lr: 1e-2, seed: 0, backend: "cpu" };
/** A data-parallel step's loss (the mean of the ranks') against one device's, both in f32. */
const LOSS_RTOL = 1e-5;

interface Output {
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; a non-zero exit fails the test with its output. */
async function run(command: string, args: string[], cwd: string | URL): Promise<Output> {
  const env = { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" };
  const { code, stdout, stderr } = await new Deno.Command(command, { args, cwd, env }).output();
  const output = { stdout: new TextDecoder().decode(stdout), stderr: new TextDecoder().decode(stderr) };
  assert.equal(code, 0, `${command} ${args.join(" ")} exited with ${code}:\n${output.stdout}\n${output.stderr}`);
  return output;
}

/** The last line a consumer printed, parsed: its JSON report. */
function report(output: Output): Record<string, unknown> {
  return JSON.parse(output.stdout.trim().split("\n").at(-1)!);
}

interface Packed {
  filename: string;
  integrity: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: { path: string }[];
}

/**
 * A lockfile for a project whose one dependency is the tarball: shardlab's runtime dependencies at
 * the versions of the repository's own lockfile, so that `npm ci --offline` installs them from the
 * npm cache (which holds their tarballs, but not the registry metadata a range would need).
 */
async function lockfile(packed: Packed, dependency: string): Promise<unknown> {
  const pkg = JSON.parse(await Deno.readTextFile(new URL("package.json", ROOT)));
  const locked = JSON.parse(await Deno.readTextFile(new URL("package-lock.json", ROOT))).packages;
  const packages: Record<string, Record<string, unknown>> = {
    "": { name: "consumer", dependencies: { shardlab: dependency } },
    "node_modules/shardlab": {
      version: pkg.version,
      resolved: dependency,
      integrity: packed.integrity,
      license: pkg.license,
      dependencies: pkg.dependencies,
      bin: pkg.bin,
      engines: pkg.engines,
      peerDependencies: pkg.peerDependencies,
      peerDependenciesMeta: pkg.peerDependenciesMeta,
    },
  };
  const pending = Object.keys(pkg.dependencies);
  while (pending.length) {
    const name = pending.pop()!;
    const { dev: _dev, ...entry } = locked[`node_modules/${name}`];
    packages[`node_modules/${name}`] = entry;
    const needs = { ...entry.dependencies, ...entry.optionalDependencies };
    pending.push(...Object.keys(needs).filter((need) => !packages[`node_modules/${need}`]));
  }
  return { name: "consumer", lockfileVersion: 3, requires: true, packages };
}

/** Packs the repository into `dir` and installs the tarball into a new project, dir/app. */
async function packAndInstall(dir: string): Promise<{ packed: Packed; app: string }> {
  const [packed]: Packed[] = JSON.parse((await run("npm", ["pack", "--json", "--pack-destination", dir], ROOT)).stdout);
  const app = `${dir}/app`;
  await Deno.mkdir(app);
  const dependency = `file:../${packed.filename}`;
  const manifest = { name: "consumer", private: true, type: "module", dependencies: { shardlab: dependency } };
  await Deno.writeTextFile(`${app}/package.json`, JSON.stringify(manifest, null, 2));
  await Deno.writeTextFile(`${app}/package-lock.json`, JSON.stringify(await lockfile(packed, dependency), null, 2));
  await Deno.writeTextFile(`${app}/deno.json`, JSON.stringify({ nodeModulesDir: "manual" }));
  await run("npm", ["ci", "--offline", "--no-audit", "--no-fund"], app);
  for (const file of ["deno_consumer.ts", "deno_rank_entry.ts", "node_consumer.mjs", "browser_page.js"]) {
    await Deno.copyFile(new URL(file, CONSUMERS), `${app}/${file}`);
  }
  return { packed, app };
}

/** The first step's loss on one CPU device, from the sources. */
async function referenceLoss(): Promise<number> {
  const device = await createDevice({ backend: "cpu" });
  const trainer = await Trainer.create(CONFIG, device);
  const { loss } = await trainer.step();
  trainer.dispose();
  device.destroy();
  return loss;
}

function assertLoss(actual: unknown, expected: number, what: string): void {
  assert.equal(typeof actual, "number", `${what}: no loss`);
  const difference = Math.abs((actual as number) - expected);
  assert.ok(difference <= LOSS_RTOL * Math.abs(expected), `${what}: loss ${actual}, one CPU device ${expected}`);
}

/** The page and its worker bundled as the README tells users to, from the installed package. */
async function bundlePage(app: string): Promise<Map<string, string>> {
  const result = await esbuild.build({
    absWorkingDir: app,
    entryPoints: [{ in: "./browser_page.js", out: "page" }, { in: "shardlab/rank-worker", out: "rank-worker" }],
    outdir: `${app}/public`,
    bundle: true,
    format: "esm",
    write: false,
    logLevel: "silent",
  });
  await esbuild.stop();
  const files = new Map(result.outputFiles.map((file) => [`/${file.path.split("/").at(-1)}`, file.text]));
  files.set("/index.html", `<!doctype html><script type="module" src="page.js"></script>`);
  return files;
}

Deno.test({
  name: "package: packed, installed offline, used from Deno, Node, a browser bundle and npx",
  // Chromium's pipes and the server's connections outlive the step by a tick.
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "shardlab-package-" });
    try {
      const { packed, app } = await packAndInstall(dir);
      const expected = await referenceLoss();

      await t.step("the tarball holds the build, the types and the licence, and no tests or sources", () => {
        const paths = packed.files.map((file) => file.path);
        for (const path of ["LICENSE", "README.md", "package.json", "bin/shardlab.mjs"]) assert.ok(paths.includes(path), path);
        for (const path of ["index.js", "rank_worker.js", "cli.js", "types/mod.d.ts", "web/index.html"]) {
          assert.ok(paths.includes(`dist/${path}`), `dist/${path}`);
        }
        const shipped = /^(dist|bin|examples)\/|^(LICENSE|README\.md|package\.json)$/;
        assert.deepEqual(paths.filter((path) => !shipped.test(path)), [], "files outside dist/, bin/, examples/");
        const sources = paths.filter((path) => path.startsWith("dist/") && path.endsWith(".ts") && !path.endsWith(".d.ts"));
        assert.deepEqual(sources, [], "TypeScript sources in dist/");
        console.log(
          `tarball ${(packed.size / 1024).toFixed(0)} KiB, unpacked ${(packed.unpackedSize / 1024).toFixed(0)} KiB, ` +
            `${packed.entryCount} files`,
        );
      });

      await t.step("Deno: the types check; a CPU op, a dp=2 step, ranks running an entry of its own", async () => {
        await run(Deno.execPath(), ["check", "deno_consumer.ts", "deno_rank_entry.ts"], app);
        const result = report(await run(Deno.execPath(), ["run", "-A", "deno_consumer.ts", JSON.stringify(CONFIG)], app));
        assert.deepEqual(result.product, [7, 10, 15, 22]);
        assert.equal(result.ranks, 2);
        assertLoss(result.loss, expected, "Deno dp=2");
        assert.deepEqual(result.oneLibrary, [true, true], "a rank's entry and its worker share one copy of shardlab");
      });

      await t.step("Node: CPU ops and a Trainer step; launch and WebGPU name what Node lacks", async () => {
        const result = report(await run("node", ["node_consumer.mjs", JSON.stringify(CONFIG)], app));
        assert.deepEqual(result.product, [7, 10, 15, 22]);
        assertLoss(result.loss, expected, "Node Trainer");
        assert.match(String(result.launchError), /^launch: ranks run as Web Workers, .*no Web Workers \(Worker\)/);
        assert.match(String(result.webgpuError), /no WebGPU \(navigator\.gpu is missing\)/);
      });

      await t.step({
        name: "browser: an esbuild bundle of shardlab and shardlab/rank-worker runs a dp=2 ZeRO-3 step",
        ignore: !haveChromium && !requireBrowser,
        fn: async () => {
          assert.ok(haveChromium, `SHARDLAB_REQUIRE_BROWSER=1 but ${CHROMIUM} is missing (apt-get install chromium)`);
          const server = serveFiles(await bundlePage(app), 0);
          const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
          try {
            const page = await browser.newPage();
            const pageErrors: string[] = [];
            page.on("pageerror", (error) => pageErrors.push(error.message));
            await page.goto(`${server.url}?config=${encodeURIComponent(JSON.stringify(CONFIG))}`);
            await page.waitForFunction(() => "result" in globalThis, null, { timeout: 60_000 });
            const result = await page.evaluate(() => (globalThis as unknown as { result: Record<string, unknown> }).result);
            assert.deepEqual(pageErrors, []);
            assert.equal(result.error, undefined, String(result.error));
            assert.equal(result.isolated, true);
            assert.equal(result.ranks, 2);
            assertLoss(result.loss, expected, "browser dp=2 ZeRO-3");
          } finally {
            await browser.close();
            await server.close();
          }
        },
      });

      await t.step("npx shardlab info prints the runtime and the backend", async () => {
        const info = JSON.parse((await run("npx", ["--offline", "shardlab", "info"], app)).stdout);
        assert.match(info.runtime, /^deno \d+\.\d+\.\d+$/);
        assert.ok(["webgpu", "cpu"].includes(info.backend), `backend ${info.backend}`);
        if (requireWebGpu) assert.equal(info.backend, "webgpu", "SHARDLAB_REQUIRE_WEBGPU=1 but npx shardlab info chose the CPU");
      });

      await t.step("npx shardlab serve serves the prebuilt lab page, cross-origin isolated", async () => {
        // setsid: npx starts Node, which starts Deno; stopping the process group stops them all.
        const server = new Deno.Command("setsid", {
          args: ["npx", "--offline", "shardlab", "serve", "--port", "0"],
          cwd: app,
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        try {
          const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
          let printed = "";
          while (!/shardlab page at (\S+)/.test(printed)) {
            const { value, done } = await reader.read();
            assert.ok(!done, `serve ended before printing its address: ${printed}`);
            printed += value;
          }
          reader.releaseLock();
          const url = printed.match(/shardlab page at (\S+)/)![1];
          for (const path of ["", "rank_worker.js"]) {
            const response = await fetch(url + path);
            assert.equal(response.status, 200, `GET /${path}`);
            assert.equal(response.headers.get("cross-origin-opener-policy"), "same-origin");
            assert.equal(response.headers.get("cross-origin-embedder-policy"), "require-corp");
            const body = await response.text();
            if (path === "") assert.match(body, /<title>[^<]*shardlab/);
          }
        } finally {
          await new Deno.Command("kill", { args: ["-TERM", "--", `-${server.pid}`] }).output();
          await server.status;
          await server.stdout.cancel().catch(() => {});
          await server.stderr.cancel();
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
