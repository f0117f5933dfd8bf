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

/** Bundles the page script and its training worker (WGSL kernels inlined as text), keyed by served path. */
export async function bundlePage(): Promise<Map<string, string>> {
  const result = await esbuild.build({
    entryPoints: ["main.ts", "train_worker.ts"].map((file) => new URL(file, WEB).pathname),
    outdir: new URL(".", WEB).pathname,
    bundle: true,
    format: "esm",
    target: "es2022",
    write: false,
    loader: { ".wgsl": "text" },
    logLevel: "silent",
  });
  await esbuild.stop();
  return new Map(result.outputFiles.map((file) => [`/${file.path.split("/").at(-1)}`, file.text]));
}

/** Starts the server; port 0 picks a free one. Resolves with the page's URL and a shutdown. */
export async function servePage(port: number): Promise<{ url: string; close: () => Promise<void> }> {
  const scripts = await bundlePage();
  const html = await Deno.readTextFile(new URL("index.html", WEB));
  const server = Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/" || path === "/index.html") return new Response(html, { headers: { ...HEADERS, "Content-Type": "text/html" } });
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
