#!/usr/bin/env node
// `npx shardlab …`: runs shardlab's command line with the Deno that npm installed beside shardlab.
// In an installed package that is the built dist/cli.js; in shardlab's own repository, where the
// sources sit beside this file, it is cli/main.ts with the repository's deno.json.

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const deno = require.resolve("deno/bin.cjs");
const root = new URL("../", import.meta.url);
const sources = fileURLToPath(new URL("cli/main.ts", root));
const command = existsSync(sources)
  ? ["--config", fileURLToPath(new URL("deno.json", root)), sources]
  // No deno.json of the user's project applies; TF.js, which `shardlab bench` compares with when it is
  // installed, resolves from node_modules as Node would find it.
  : ["--no-config", "--node-modules-dir=manual", fileURLToPath(new URL("dist/cli.js", root))];
const result = spawnSync(process.execPath, [deno, "run", "-A", ...command, ...process.argv.slice(2)], { stdio: "inherit" });
if (result.error) {
  console.error(`shardlab: could not start Deno (${result.error.message})`);
  process.exit(1);
}
process.exit(result.status ?? 1);
