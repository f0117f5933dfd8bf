// Builds the pages: the HTML files and their scripts, bundled by esbuild with the WGSL kernels
// inlined as text. `npm run serve` serves the result straight from memory; the package's build
// writes it into dist/web/, which `shardlab serve` serves from an installed package.

import * as esbuild from "esbuild";

const WEB = new URL("./", import.meta.url);

/** The pages served, each at /<file>; index.html also at /. */
export const PAGES = ["index.html"];

/**
 * The scripts of the pages, in groups bundled together. A group with `splitting` keeps the modules
 * its entry points share in chunk files, so that a rank worker and the entry module it imports run
 * one copy of the library.
 */
const BUNDLES = [
  { entryPoints: ["lab.ts", "lab_worker.ts", "../src/comm/rank_worker.ts"], splitting: true },
];

/** Every file of the pages (HTML and bundled scripts), keyed by the path it is served at. */
export async function bundlePage(): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for (const page of PAGES) files.set(`/${page}`, await Deno.readTextFile(new URL(page, WEB)));
  for (const { entryPoints, splitting } of BUNDLES) {
    const result = await esbuild.build({
      entryPoints: entryPoints.map((file) => new URL(file, WEB).pathname),
      outdir: new URL(".", WEB).pathname,
      entryNames: "[name]",
      chunkNames: "chunk-[hash]",
      splitting,
      bundle: true,
      format: "esm",
      target: "es2022",
      write: false,
      loader: { ".wgsl": "text" },
      // Deno's own modules, loaded only where Deno runs (the file system's checkpoint storage).
      external: ["node:*"],
      logLevel: "silent",
    });
    for (const file of result.outputFiles) files.set(`/${file.path.split("/").at(-1)}`, file.text);
  }
  await esbuild.stop();
  return files;
}
