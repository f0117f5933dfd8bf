// `npm run serve`: bundles the page with esbuild and serves web/ on 127.0.0.1 with the
// cross-origin isolation headers (COOP/COEP) that SharedArrayBuffer needs.

import * as esbuild from "esbuild";
import { parseArgs } from "node:util";

const WEB = new URL("./", import.meta.url);
const HEADERS = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cache-Control": "no-store",
};

/** The pages served, each at /<file>; index.html also at /. */
const PAGES = ["index.html", "ranks.html"];

/**
 * The scripts of the pages, in groups bundled together. A group with `splitting` keeps the modules
 * its entry points share in chunk files, so that a rank worker and the entry module it imports run
 * one copy of the library.
 */
const BUNDLES = [
  { entryPoints: ["main.ts", "train_worker.ts"], splitting: false },
  { entryPoints: ["ranks_demo.ts", "ranks_allreduce.ts", "../src/comm/rank_worker.ts"], splitting: true },
];

/** Bundles the pages' scripts and workers (WGSL kernels inlined as text), keyed by served path. */
export async function bundlePage(): Promise<Map<string, string>> {
  const scripts = new Map<string, string>();
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
    for (const file of result.outputFiles) scripts.set(`/${file.path.split("/").at(-1)}`, file.text);
  }
  await esbuild.stop();
  return scripts;
}

/** Starts the server; port 0 picks a free one. Resolves with the page's URL and a shutdown. */
export async function servePage(port: number): Promise<{ url: string; close: () => Promise<void> }> {
  const scripts = await bundlePage();
  const pages = new Map<string, string>();
  for (const file of PAGES) pages.set(`/${file}`, await Deno.readTextFile(new URL(file, WEB)));
  pages.set("/", pages.get("/index.html")!);
  const server = Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, (request) => {
    const path = new URL(request.url).pathname;
    const html = pages.get(path);
    if (html) return new Response(html, { headers: { ...HEADERS, "Content-Type": "text/html" } });
    const script = scripts.get(path);
    if (script) return new Response(script, { headers: { ...HEADERS, "Content-Type": "text/javascript" } });
    return new Response("not found", { status: 404, headers: HEADERS });
  });
  return { url: `http://127.0.0.1:${server.addr.port}/`, close: () => server.shutdown() };
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { port: { type: "string", default: "8000" } } });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`serve: --port must be an integer in [0, 65535], got "${values.port}"`);
    Deno.exit(2);
  }
  const { url } = await servePage(port);
  console.log(`shardlab page at ${url}`);
}
