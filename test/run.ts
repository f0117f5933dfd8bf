// `npm test`: runs every test file under test/ with deno test and ends with one line,
// `N passed, N failed`, totalling every suite. Extra arguments are passed to deno test
// (for example a single file, or --filter NAME).

const args = Deno.args.length ? Deno.args : ["test/"];
const command = new Deno.Command(Deno.execPath(), {
  args: ["test", "-A", ...args],
  env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" },
  stdout: "piped",
  stderr: "inherit",
});
const child = command.spawn();
let output = "";
const decoder = new TextDecoder();
for await (const chunk of child.stdout) {
  const text = decoder.decode(chunk, { stream: true });
  output += text;
  await Deno.stdout.write(chunk);
}
const status = await child.status;

const plain = output.replace(/\x1b\[[0-9;]*m/g, "");
const summary = plain.match(/(?:ok|FAILED) \| (\d+) passed[^|]*\| (\d+) failed(?: \| (\d+) ignored)?/);
const passed = summary ? Number(summary[1]) : 0;
let failed = summary ? Number(summary[2]) : 0;
if (!status.success && failed === 0) failed = 1;
const ignored = summary?.[3] ? `, ${summary[3]} skipped` : "";
console.log(`${passed} passed, ${failed} failed${ignored}`);
Deno.exit(status.success ? 0 : 1);
