// The package's type declarations: tsc emits a .d.ts for every module mod.ts reaches, into
// dist/types/ (same layout as the sources), then their relative imports are pointed at .js so that
// TypeScript finds them from any module resolution a user's project picks.

import ts from "typescript";

const OPTIONS: ts.CompilerOptions = {
  declaration: true,
  emitDeclarationOnly: true,
  // Deno checks the sources (`deno check`); here tsc only writes what they declare.
  noCheck: true,
  skipLibCheck: true,
  allowImportingTsExtensions: true,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  target: ts.ScriptTarget.ES2022,
  lib: ["lib.esnext.d.ts", "lib.dom.d.ts"],
  types: ["@webgpu/types"],
};

/** Writes the declarations of `entry` and what it imports under `outDir`. */
export function buildTypes(entry: URL, outDir: URL): void {
  const rootDir = new URL("./", entry).pathname;
  const program = ts.createProgram([entry.pathname], { ...OPTIONS, rootDir, outDir: outDir.pathname });
  const entryDeclaration = new URL(entry.pathname.split("/").at(-1)!.replace(/\.ts$/, ".d.ts"), outDir).pathname;
  const result = program.emit(undefined, (file, text) => {
    let declarations = text.replace(/(from\s+|import\()"(\.{1,2}\/[^"]*)\.ts"/g, '$1"$2.js"');
    // The API names WebGPU's types (GPUDevice, …): a user's project gets them from @webgpu/types, a dependency.
    if (file === entryDeclaration) declarations = `/// <reference types="@webgpu/types" />\n${declarations}`;
    ts.sys.writeFile(file, declarations);
  });
  const errors = result.diagnostics.filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (errors.length) {
    throw new Error(
      `build: type declarations failed:\n${ts.formatDiagnosticsWithColorAndContext(errors, ts.createCompilerHost({}))}`,
    );
  }
}
