// The WGSL preprocessor (preprocess in src/backend/webgpu/pipeline_cache.ts) on plain strings, no
// GPU: `#if` / `#else` / `#endif`, `#include` from a library (nested, under kept and dropped
// branches, once per shader) and its errors; then the real kernels: every kernels/lib/ file is
// registered in kernel_lib.ts and every kernel's directives resolve.

import assert from "node:assert/strict";
import { preprocess } from "../src/backend/webgpu/pipeline_cache.ts";
import { KERNEL_LIB, type KernelLibrary } from "../src/backend/webgpu/kernel_lib.ts";

const LIBRARY: KernelLibrary = {
  "lib/a.wgsl": 'a1\n#include "lib/b.wgsl"\na2',
  "lib/b.wgsl": "b",
  "lib/c.wgsl": "#if X\nc_x\n#else\nc_not_x\n#endif",
  "lib/loop_1.wgsl": '#include "lib/loop_2.wgsl"',
  "lib/loop_2.wgsl": '#include "lib/loop_1.wgsl"',
  "lib/self.wgsl": '#include "lib/self.wgsl"',
  "lib/missing.wgsl": '#include "lib/nope.wgsl"',
};

function run(code: string, defines: Record<string, boolean> = {}): string[] {
  return preprocess({ name: "kernel", code }, defines, LIBRARY).split("\n");
}

Deno.test("preprocess: #if / #else / #endif keep the branches whose conditions hold, nested", () => {
  const code = "top\n#if A\na\n  #if B\nab\n  #else\na_not_b\n  #endif\n#else\nnot_a\n#endif\nend";
  assert.deepEqual(run(code, { A: true, B: true }), ["top", "a", "ab", "end"]);
  assert.deepEqual(run(code, { A: true }), ["top", "a", "a_not_b", "end"]);
  assert.deepEqual(run(code, { B: true }), ["top", "not_a", "end"]);
});

Deno.test("preprocess: #include splices in the library file, preprocessed with the same defines", () => {
  assert.deepEqual(run('x\n#include "lib/b.wgsl"\ny'), ["x", "b", "y"]);
  assert.deepEqual(run('#include "lib/c.wgsl"', { X: true }), ["c_x"]);
  assert.deepEqual(run('#include "lib/c.wgsl"'), ["c_not_x"]);
});

Deno.test("preprocess: includes nest", () => {
  assert.deepEqual(run('x\n#include "lib/a.wgsl"\ny'), ["x", "a1", "b", "a2", "y"]);
});

Deno.test("preprocess: an #include is resolved only in a kept branch", () => {
  const code = '#if X\n#include "lib/b.wgsl"\n#else\n#include "lib/nope.wgsl"\n#endif';
  assert.deepEqual(run(code, { X: true }), ["b"]);
  assert.throws(() => run(code), /unknown #include "lib\/nope.wgsl"/);
  assert.deepEqual(run('#if X\n#include "lib/b.wgsl"\n#endif\n#include "lib/b.wgsl"'), ["b"]);
});

Deno.test("preprocess: each file is included once per shader, whichever file asks again", () => {
  assert.deepEqual(run('#include "lib/b.wgsl"\n#include "lib/b.wgsl"'), ["b"]);
  assert.deepEqual(run('#include "lib/b.wgsl"\n#include "lib/a.wgsl"'), ["b", "a1", "a2"]);
  assert.deepEqual(run('#include "lib/a.wgsl"\n#include "lib/b.wgsl"'), ["a1", "b", "a2"]);
});

Deno.test("preprocess: an unknown include names the path and the files that asked for it", () => {
  assert.throws(
    () => run('#include "lib/nope.wgsl"'),
    (error: Error) => error.message.startsWith(`kernel.wgsl: unknown #include "lib/nope.wgsl" (known: lib/a.wgsl,`),
  );
  assert.throws(
    () => run('#include "lib/missing.wgsl"'),
    (error: Error) => error.message.startsWith(`kernel.wgsl → lib/missing.wgsl: unknown #include "lib/nope.wgsl"`),
  );
  assert.throws(() => run("#include lib/b.wgsl"), /kernel.wgsl: malformed #include "#include lib\/b.wgsl"/);
});

Deno.test("preprocess: an include cycle is an error naming the cycle", () => {
  assert.throws(
    () => run('#include "lib/loop_1.wgsl"'),
    { message: "#include cycle: kernel.wgsl → lib/loop_1.wgsl → lib/loop_2.wgsl → lib/loop_1.wgsl" },
  );
  assert.throws(() => run('#include "lib/self.wgsl"'), {
    message: "#include cycle: kernel.wgsl → lib/self.wgsl → lib/self.wgsl",
  });
});

Deno.test("preprocess: malformed and unbalanced blocks are errors naming the file", () => {
  assert.throws(() => run("#if\nx\n#endif"), { message: 'kernel.wgsl: malformed #if "#if" (expected #if NAME)' });
  assert.throws(() => run("#if A\nx"), { message: "kernel.wgsl: unclosed #if" });
  assert.throws(() => run("#else"), { message: "kernel.wgsl: #else without #if" });
  assert.throws(() => run("#endif"), { message: "kernel.wgsl: #endif without #if" });
  assert.throws(() => run('#include "lib/c.wgsl"\n#endif'), { message: "kernel.wgsl: #endif without #if" });
});

Deno.test("kernel_lib.ts registers every file of kernels/lib/ under its include path", async () => {
  const files: string[] = [];
  for await (const entry of Deno.readDir(new URL("../kernels/lib/", import.meta.url))) {
    if (entry.name.endsWith(".wgsl")) files.push(`lib/${entry.name}`);
  }
  assert.deepEqual(Object.keys(KERNEL_LIB).sort(), files.sort());
  for (const path of files) {
    assert.equal(KERNEL_LIB[path], await Deno.readTextFile(new URL(`../kernels/${path}`, import.meta.url)), path);
  }
});

Deno.test("every kernel's directives resolve against kernels/lib/, with and without VEC4", async () => {
  for await (const entry of Deno.readDir(new URL("../kernels/", import.meta.url))) {
    if (!entry.name.endsWith(".wgsl")) continue;
    const code = await Deno.readTextFile(new URL(`../kernels/${entry.name}`, import.meta.url));
    const name = entry.name.replace(/\.wgsl$/, "");
    for (const VEC4 of [false, true]) {
      const lines = preprocess({ name, code }, { VEC4 }).split("\n");
      assert.deepEqual(lines.filter((line) => line.trim().startsWith("#")), [], entry.name);
    }
  }
});
