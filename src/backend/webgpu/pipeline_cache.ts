// Compiles each (kernel source, entry point, defines, constants) combination once.
//
// Kernel sources come from kernels/*.wgsl. Variants that change a binding's type (vec4 loads, for
// instance) are chosen with line-level `#if NAME` / `#else` / `#endif` blocks resolved here;
// numeric specializations are WGSL override constants.

/** A kernel family's WGSL, named by its file in kernels/. */
export interface KernelSource {
  name: string;
  code: string;
}

export type Defines = Readonly<Record<string, boolean>>;
export type Constants = Readonly<Record<string, number>>;

/** Keeps the lines of source whose enclosing `#if` conditions hold. Blocks nest. */
export function preprocess(source: string, defines: Defines): string {
  const out: string[] = [];
  const stack: { active: boolean; parentActive: boolean }[] = [];
  let active = true;
  for (const line of source.split("\n")) {
    const directive = line.trim().match(/^#(if|else|endif)\b\s*(\w*)/);
    if (!directive) {
      if (active) out.push(line);
      continue;
    }
    const [, keyword, name] = directive;
    if (keyword === "if") {
      stack.push({ active, parentActive: active });
      active = active && (defines[name] ?? false);
    } else if (keyword === "else") {
      const frame = stack.at(-1);
      if (!frame) throw new Error(`#else without #if in kernel source`);
      active = frame.parentActive && !active;
    } else {
      const frame = stack.pop();
      if (!frame) throw new Error(`#endif without #if in kernel source`);
      active = frame.active;
    }
  }
  if (stack.length) throw new Error(`unclosed #if in kernel source`);
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
      module = this.device.createShaderModule({ label: source.name, code: preprocess(source.code, defines) });
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
