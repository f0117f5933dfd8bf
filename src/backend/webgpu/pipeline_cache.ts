// Compiles each (kernel source, entry point, defines, constants) combination once.
//
// Kernel sources come from kernels/*.wgsl. Variants that change a binding's type (vec4 loads, for
// instance) are chosen with line-level `#if NAME` / `#else` / `#endif` blocks, and code shared by
// kernels lives in kernels/lib/ and is pulled in with `#include "lib/NAME.wgsl"`; preprocess resolves
// both. Numeric specializations are WGSL override constants.

import { KERNEL_LIB, type KernelLibrary } from "./kernel_lib.ts";

/** A kernel family's WGSL, named by its file in kernels/. */
export interface KernelSource {
  name: string;
  code: string;
}

export type Defines = Readonly<Record<string, boolean>>;
export type Constants = Readonly<Record<string, number>>;

const DIRECTIVE = /^#(if|else|endif|include)\b(.*)$/;

/**
 * The WGSL of `source` with its directives resolved, line by line:
 * - `#if NAME` / `#else` / `#endif` keep the lines whose enclosing conditions hold (`defines[NAME]`).
 *   Blocks nest; each file closes the blocks it opens.
 * - `#include "lib/NAME.wgsl"`, on a kept line, is replaced by that file of `library` (paths are
 *   relative to kernels/), preprocessed with the same defines; includes nest. A file is included
 *   once per shader: a later include of it, from any file, adds nothing (include guard semantics,
 *   so lib files may include what they use). Including a file that is still being expanded (a
 *   cycle), or a path `library` lacks, is an error naming the chain of files that led there.
 */
export function preprocess(source: KernelSource, defines: Defines, library: KernelLibrary = KERNEL_LIB): string {
  const out: string[] = [];
  const included = new Set<string>();

  // Appends the kept lines of `code`; `chain` is the files being expanded, `code`'s last.
  const expand = (code: string, chain: string[]): void => {
    const where = chain.join(" → ");
    const stack: { active: boolean; parentActive: boolean }[] = [];
    let active = true;
    for (const line of code.split("\n")) {
      const directive = line.trim().match(DIRECTIVE);
      if (!directive) {
        if (active) out.push(line);
        continue;
      }
      const [, keyword, argument] = directive;
      if (keyword === "if") {
        const name = argument.trim();
        if (!/^\w+$/.test(name)) throw new Error(`${where}: malformed #if "${line.trim()}" (expected #if NAME)`);
        stack.push({ active, parentActive: active });
        active = active && (defines[name] ?? false);
      } else if (keyword === "else") {
        const frame = stack.at(-1);
        if (!frame) throw new Error(`${where}: #else without #if`);
        active = frame.parentActive && !active;
      } else if (keyword === "endif") {
        const frame = stack.pop();
        if (!frame) throw new Error(`${where}: #endif without #if`);
        active = frame.active;
      } else if (active) {
        const path = argument.trim().match(/^"([^"]+)"$/)?.[1];
        if (!path) throw new Error(`${where}: malformed #include "${line.trim()}" (expected #include "lib/NAME.wgsl")`);
        if (chain.includes(path)) throw new Error(`#include cycle: ${[...chain, path].join(" → ")}`);
        if (included.has(path)) continue;
        if (!Object.hasOwn(library, path)) {
          const known = Object.keys(library).join(", ") || "none";
          throw new Error(`${where}: unknown #include "${path}" (known: ${known}; lib files are registered in kernel_lib.ts)`);
        }
        included.add(path);
        expand(library[path], [...chain, path]);
      }
    }
    if (stack.length) throw new Error(`${where}: unclosed #if`);
  };

  expand(source.code, [`${source.name}.wgsl`]);
  return out.join("\n");
}

export class PipelineCache {
  private modules = new Map<string, GPUShaderModule>();
  private pipelines = new Map<string, GPUComputePipeline>();

  constructor(private device: GPUDevice) {}

  get size(): number {
    return this.pipelines.size;
  }

  get(source: KernelSource, entryPoint: string, defines: Defines = {}, constants: Constants = {}): GPUComputePipeline {
    const defineKey = Object.keys(defines).filter((k) => defines[k]).sort().join(",");
    const constantKey = Object.keys(constants).sort().map((k) => `${k}=${constants[k]}`).join(",");
    const moduleKey = `${source.name}|${defineKey}`;
    const key = `${entryPoint}|${constantKey}|${moduleKey}`;
    let pipeline = this.pipelines.get(key);
    if (pipeline) return pipeline;
    let module = this.modules.get(moduleKey);
    if (!module) {
      module = this.device.createShaderModule({ label: source.name, code: preprocess(source, defines) });
      this.modules.set(moduleKey, module);
    }
    pipeline = this.device.createComputePipeline({
      label: `${source.name}.${entryPoint}`,
      layout: "auto",
      compute: { module, entryPoint, constants: constants as Record<string, number> },
    });
    this.pipelines.set(key, pipeline);
    return pipeline;
  }
}
