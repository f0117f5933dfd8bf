// `npm run serve`: bundles the pages (bundle.ts) and serves them on 127.0.0.1 with the
// cross-origin isolation headers (COOP/COEP) that SharedArrayBuffer needs.

import { parseArgs } from "node:util";

const HEADERS = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cache-Control": "no-store",
};

const CONTENT_TYPES: Record<string, string> = { html: "text/html", js: "text/javascript", png: "image/png" };

/**
 * Serves `files` (path → content, as bundlePage() gives them; /index.html is also served at /) on
 * `port`; port 0 picks a free one. Resolves with the page's URL and a shutdown.
 */
export function serveFiles(
  files: Map<string, string | Uint8Array<ArrayBuffer>>,
  port: number,
): { url: string; close: () => Promise<void> } {
  const server = Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, (request) => {
    const path = new URL(request.url).pathname;
    const file = files.get(path === "/" ? "/index.html" : path);
    if (file === undefined) return new Response("not found", { status: 404, headers: HEADERS });
    const type = CONTENT_TYPES[path === "/" ? "html" : path.split(".").at(-1)!] ?? "application/octet-stream";
    return new Response(file, { headers: { ...HEADERS, "Content-Type": type } });
  });
  return { url: `http://127.0.0.1:${server.addr.port}/`, close: () => server.shutdown() };
}

/** Bundles the pages from the sources and serves them. */
export async function servePage(port: number): Promise<{ url: string; close: () => Promise<void> }> {
  const { bundlePage } = await import("./bundle.ts");
  return serveFiles(await bundlePage(), port);
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
