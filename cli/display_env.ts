// Deno's WebGPU finds its adapter through the Vulkan drivers, and Mesa's drivers try to reach a
// Wayland display while they start. libwayland prints "error: XDG_RUNTIME_DIR is invalid or not set
// in the environment." for each try when that variable is missing or not an absolute path, as in
// containers, CI jobs and ssh sessions without a login session. shardlab never opens a display, so
// the command line gives the variable an absolute value before any adapter is requested: no
// Wayland socket lies there, the drivers go on quietly, and the rank workers, which share the
// process's environment, start quietly too.

import { tmpdir } from "node:os";

/** Sets XDG_RUNTIME_DIR to the temporary folder unless it already holds an absolute path. */
export function quietDisplayProbe(): void {
  if (Deno.env.get("XDG_RUNTIME_DIR")?.startsWith("/")) return;
  Deno.env.set("XDG_RUNTIME_DIR", tmpdir());
}
