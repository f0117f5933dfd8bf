// `npm test`: checks the formatting, type-checks and lints the whole tree once, then runs every test
// file under test/ with deno test and ends with one line, `N passed, N failed`, totalling every
// suite (unformatted files, a failed type check and lint findings count as one failure each). Extra
// arguments are passed to deno test (for example a single file, or --filter NAME). The tests run
// with --no-check because the tree was checked up front: rank workers would otherwise type-check
// themselves one by one as each starts.

import { stripVTControlCharacters } from "node:util";

const env = { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" };
const CHECKED = ["mod.ts", "src/", "cli/", "web/", "bench/", "examples/", "scripts/", "test/"];

/** Runs deno with `args`, its output going straight to ours; says so when it fails. */
async function deno(args: string[], what: string): Promise<boolean> {
  const { success } = await new Deno.Command(Deno.execPath(), { args, env, stdout: "inherit", stderr: "inherit" }).output();
  if (!success) console.log(`${what} FAILED`);
  return success;
}

const formatted = await deno(["fmt", "--check"], "deno fmt --check (run `deno fmt` to format)");
const checked = await deno(["check", ...CHECKED], `type check of ${CHECKED.join(" ")}`);
const linted = await deno(["lint"], "deno lint");

const args = Deno.args.length ? Deno.args : ["test/"];
const child = new Deno.Command(Deno.execPath(), {
  args: ["test", "-A", "--no-check", ...args],
  env,
  stdout: "piped",
  stderr: "inherit",
}).spawn();
let output = "";
const decoder = new TextDecoder();
for await (const chunk of child.stdout) {
  output += decoder.decode(chunk, { stream: true });
  await Deno.stdout.write(chunk);
}
const status = await child.status;

const plain = stripVTControlCharacters(output);
const summary = plain.match(/(?:ok|FAILED) \| (\d+) passed[^|]*\| (\d+) failed(?: \| (\d+) ignored)?/);
const passed = summary ? Number(summary[1]) : 0;
let failed = summary ? Number(summary[2]) : 0;
if (!status.success && failed === 0) failed = 1;
if (!formatted) failed += 1;
if (!checked) failed += 1;
if (!linted) failed += 1;
const ignored = summary?.[3] ? `, ${summary[3]} skipped` : "";
console.log(`${passed} passed, ${failed} failed${ignored}`);
Deno.exit(status.success && formatted && checked && linted ? 0 : 1);
