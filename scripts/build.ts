// `npm run build` (also run by `npm pack`, through prepack): writes the package's dist/.
//
// - dist/index.js (the public API, mod.ts), dist/rank_worker.js (the rank worker, with the built-in
//   train entry inside it), dist/cli.js (`shardlab …`) and the benchmark's rank entries: ES modules
//   for browsers, Deno and Node, with the WGSL kernels inlined as text. They sit flat in dist/ and
//   share their common modules as chunks there, so that launch() finds ./rank_worker.js beside any
//   of them and a rank whose entry module imports "shardlab" runs one copy of the library.
// - dist/types/: .d.ts declarations of the public API (build_types.ts).
// - dist/web/: the pages, bundled by web/bundle.ts, which `shardlab serve` serves.

import * as esbuild from "esbuild";
import { bundlePage } from "../web/bundle.ts";
import { buildTypes } from "./build_types.ts";

const ROOT = new URL("../", import.meta.url);
const DIST = new URL("dist/", ROOT);

/** Each output file's name (without .js) and the source it is built from. */
const ENTRIES = [
  { out: "index", in: "mod.ts" },
  { out: "rank_worker", in: "src/comm/rank_worker.ts" },
  { out: "cli", in: "cli/main.ts" },
  // Run by launch() as rank entries when `shardlab bench` runs the collectives and parallel suites.
  { out: "collectives_rank", in: "bench/collectives_rank.ts" },
  { out: "parallel_rank", in: "bench/parallel_rank.ts" },
  // Run as a child process by `shardlab bench pipelines`, once per driver shader cache state.
  { out: "pipelines_child", in: "bench/pipelines_child.ts" },
];

/**
 * web/bundle.ts bundles the pages with esbuild, in the repository only (`npm run serve`); the package
 * serves the pages the build wrote to dist/web/, so its modules leave the bundler (and esbuild) out.
 */
const leaveOutPageBundler: esbuild.Plugin = {
  name: "leave-out-page-bundler",
  setup(build) {
    const bundler = new URL("web/bundle.ts", ROOT).pathname;
    build.onResolve(
      { filter: /bundle\.ts$/ },
      ({ path, resolveDir }) =>
        new URL(path, `file://${resolveDir}/`).pathname === bundler ? { path, external: true } : undefined,
    );
  },
};

async function buildModules(): Promise<void> {
  await esbuild.build({
    entryPoints: ENTRIES.map((entry) => ({ out: entry.out, in: new URL(entry.in, ROOT).pathname })),
    outdir: DIST.pathname,
    chunkNames: "chunk-[hash]",
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    loader: { ".wgsl": "text" },
    // Only dist/cli.js is a program: modules that run themselves when they are the main module
    // (bench/main.ts, web/serve.ts) are parts of it here.
    define: { "import.meta.main": "false" },
    // Node's modules, loaded only where Deno or Node runs; TF.js, which `shardlab bench` uses when it is installed.
    external: ["node:*", "@tensorflow/*"],
    plugins: [leaveOutPageBundler],
    logLevel: "warning",
  });
}

async function writePages(): Promise<void> {
  const pages = await bundlePage();
  const folder = new URL("web/", DIST);
  await Deno.mkdir(folder, { recursive: true });
  for (const [path, text] of pages) await Deno.writeTextFile(new URL(`.${path}`, folder), text);
}

const started = performance.now();
await Deno.remove(DIST, { recursive: true }).catch((error) => {
  if (!(error instanceof Deno.errors.NotFound)) throw error;
});
await buildModules();
buildTypes(new URL("mod.ts", ROOT), new URL("types/", DIST));
await writePages();
await esbuild.stop();
// On stderr, so that `npm pack --json` (which runs this through prepack) prints only its JSON.
console.error(`build: dist/ in ${((performance.now() - started) / 1000).toFixed(1)} s`);
