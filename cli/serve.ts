// `shardlab serve [--port N]`: serves the pages on 127.0.0.1 with the cross-origin isolation
// headers that SharedArrayBuffer needs. From the package it serves the pages the build put in
// dist/web/; from shardlab's repository it bundles them from the sources first (web/bundle.ts).

import { parseArgs } from "node:util";
import { serveFiles } from "../web/serve.ts";
import { UsageError } from "./usage.ts";

export const SERVE_USAGE = `usage: shardlab serve [--port N]

Serves shardlab's pages on http://127.0.0.1:N/ (default 8000;
0 picks a free port) until stopped with Ctrl-C.
`;

/** The pages: read from dist/web/ in a build, bundled from the sources in the repository. */
async function pages(): Promise<Map<string, string | Uint8Array<ArrayBuffer>>> {
  if (import.meta.url.endsWith(".ts")) {
    // Only in the repository: the package's build leaves the bundler out (scripts/build.ts).
    const { bundlePage } = await import("../web/bundle.ts");
    return await bundlePage();
  }
  const folder = new URL("./web/", import.meta.url);
  const files = new Map<string, Uint8Array<ArrayBuffer>>();
  for await (const entry of Deno.readDir(folder)) {
    if (entry.isFile) files.set(`/${entry.name}`, await Deno.readFile(new URL(entry.name, folder)));
  }
  if (!files.has("/index.html")) throw new Error(`serve: no pages in ${folder.pathname} (run \`npm run build\`)`);
  return files;
}

/** Serves until the process is stopped; resolves only with exit status 2 for a bad command line. */
export async function serveCommand(argv: string[]): Promise<number> {
  let port: number;
  try {
    const { values } = parseArgs({ args: argv, options: { port: { type: "string", default: "8000" } } });
    port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new UsageError(`--port must be an integer in [0, 65535], got "${values.port}"`);
    }
  } catch (error) {
    throw error instanceof UsageError ? error : new UsageError((error as Error).message);
  }
  const { url } = serveFiles(await pages(), port);
  console.log(`shardlab page at ${url}`);
  return await new Promise<never>(() => {});
}
