#!/usr/bin/env node
// `npx shardlab …`: runs the Deno entry of the CLI with the Deno that npm installed beside shardlab.

import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const deno = require.resolve("deno/bin.cjs");
const root = new URL("../", import.meta.url);
const result = spawnSync(
  process.execPath,
  [
    deno,
    "run",
    "-A",
    "--config",
    fileURLToPath(new URL("deno.json", root)),
    fileURLToPath(new URL("cli/main.ts", root)),
    ...process.argv.slice(2),
  ],
  { stdio: "inherit" },
);
if (result.error) {
  console.error(`shardlab: could not start Deno (${result.error.message})`);
  process.exit(1);
}
process.exit(result.status ?? 1);
