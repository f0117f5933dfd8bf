// A WebGPU run of the command line started without XDG_RUNTIME_DIR (containers, CI, ssh without a
// login session) prints nothing of it: before cli/display_env.ts, Mesa's drivers made libwayland
// print "error: XDG_RUNTIME_DIR is invalid or not set in the environment." twice on every run.

import assert from "node:assert/strict";
import { skipWebGpu } from "./helpers.ts";

const MAIN = new URL("../cli/main.ts", import.meta.url).pathname;

Deno.test({
  name: "cli: info on WebGPU without XDG_RUNTIME_DIR prints no line about it",
  ignore: skipWebGpu,
  async fn() {
    const env = Deno.env.toObject();
    delete env.XDG_RUNTIME_DIR;
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "info", "--backend", "webgpu"],
      env,
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, stderr);
    assert.equal(JSON.parse(new TextDecoder().decode(output.stdout)).backend, "webgpu");
    assert.doesNotMatch(stderr, /XDG_RUNTIME_DIR/);
  },
});
