// The child program of `bench pipelines` (pipelines.ts), run in a process of its own so that each
// run starts with the driver shader cache the parent chose (MESA_SHADER_CACHE_DIR). Its one
// argument is the mode; it prints the mode's figures as JSON:
// - `record`: one Trainer step of the default configuration (tiny preset, 16×64), noting every
//   pipeline's WGSL, override constants and first dispatch (uniform bytes, buffer sizes, grid);
// - `replay`: each recorded pipeline (read as JSON from stdin) on its own in a fresh device:
//   createShaderModule, createComputePipeline, its first dispatch and a second one, each timed to
//   completion (first − second ≈ the compilation left for first use);
// - `steps`: as many Trainer steps as stdin says, the first one timed apart (what a cold start
//   adds to a run).

import { createDevice } from "../mod.ts";
import type { GpuStorage, Params } from "../src/backend/webgpu/gpu_context.ts";
import { type Constants, type Defines, type KernelSource, preprocess } from "../src/backend/webgpu/pipeline_cache.ts";
import type { WebGpuBackend } from "../src/backend/webgpu/webgpu_backend.ts";
import { DEFAULT_TRAIN_CONFIG } from "../src/train/config.ts";
import { Trainer } from "../src/train/trainer.ts";
import { median } from "./timing.ts";

/** A pipeline as the first training step creates it, with its first dispatch. */
export interface RecordedPipeline {
  kernel: string;
  entryPoint: string;
  defines: string[];
  constants: Constants;
  code: string;
  params: number[];
  bufferBytes: number[];
  grid: [number, number, number];
}

export interface ReplayRow {
  pipeline: string;
  moduleMs: number;
  createMs: number;
  firstDispatchMs: number;
  secondDispatchMs: number;
}

export interface StepsFigures {
  firstStepMs: number;
  /** Median of the steps after the first. */
  laterStepMs: number;
  totalMs: number;
}

function pipelineName(p: RecordedPipeline): string {
  const constants = Object.entries(p.constants).map(([k, v]) => `${k}=${v}`);
  return `${p.kernel}.${p.entryPoint}${
    [...p.defines, ...constants].length ? ` [${[...p.defines, ...constants].join(" ")}]` : ""
  }`;
}

async function record(): Promise<RecordedPipeline[]> {
  const device = await createDevice({ backend: "webgpu" });
  const ctx = (device.backend as WebGpuBackend).ctx;
  const described = new Map<GPUComputePipeline, Omit<RecordedPipeline, "params" | "bufferBytes" | "grid">>();
  const recorded: RecordedPipeline[] = [];
  const recordedPipelines = new Set<GPUComputePipeline>();
  const pipeline = ctx.pipeline.bind(ctx);
  ctx.pipeline = (source: KernelSource, entryPoint: string, defines: Defines = {}, constants: Constants = {}) => {
    const made = pipeline(source, entryPoint, defines, constants);
    const on = Object.keys(defines).filter((name) => defines[name]).sort();
    if (!described.has(made) && !recordedPipelines.has(made)) {
      described.set(made, { kernel: source.name, entryPoint, defines: on, constants, code: preprocess(source, defines) });
    }
    return made;
  };
  const dispatch = ctx.dispatch.bind(ctx);
  ctx.dispatch = (made: GPUComputePipeline, params: Params, storages: readonly GpuStorage[], workgroups) => {
    const description = described.get(made);
    if (description) {
      described.delete(made);
      recordedPipelines.add(made);
      const linear = typeof workgroups === "number";
      recorded.push({
        ...description,
        params: [...params.bytes],
        bufferBytes: storages.map((storage) => storage.buffer.size),
        grid: linear ? [workgroups, 1, 1] : [...workgroups],
      });
    }
    dispatch(made, params, storages, workgroups);
  };
  const trainer = await Trainer.create({ ...DEFAULT_TRAIN_CONFIG, steps: 1, backend: "webgpu" }, device);
  await trainer.step();
  device.destroy();
  return recorded;
}

async function replay(pipelines: RecordedPipeline[]): Promise<ReplayRow[]> {
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error("no WebGPU adapter");
  const limits = ["maxStorageBufferBindingSize", "maxBufferSize", "maxComputeWorkgroupStorageSize"] as const;
  const device = await adapter.requestDevice({ requiredLimits: Object.fromEntries(limits.map((l) => [l, adapter.limits[l]])) });
  const rows: ReplayRow[] = [];
  for (const p of pipelines) {
    let began = performance.now();
    const module = device.createShaderModule({ label: p.kernel, code: p.code });
    const moduleMs = performance.now() - began;
    began = performance.now();
    const pipeline = device.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: p.entryPoint, constants: p.constants as Record<string, number> },
    });
    const createMs = performance.now() - began;
    const uniform = device.createBuffer({ size: p.params.length, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(uniform, 0, new Uint8Array(p.params));
    const buffers = p.bufferBytes.map((size) => device.createBuffer({ size, usage: GPUBufferUsage.STORAGE }));
    const bindGroup = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [uniform, ...buffers].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const run = async () => {
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(...p.grid);
      pass.end();
      const start = performance.now();
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
      return performance.now() - start;
    };
    const firstDispatchMs = await run();
    const secondDispatchMs = await run();
    rows.push({ pipeline: pipelineName(p), moduleMs, createMs, firstDispatchMs, secondDispatchMs });
    for (const buffer of [uniform, ...buffers]) buffer.destroy();
  }
  device.destroy();
  return rows;
}

async function steps(count: number): Promise<StepsFigures> {
  const began = performance.now();
  const device = await createDevice({ backend: "webgpu" });
  const trainer = await Trainer.create({ ...DEFAULT_TRAIN_CONFIG, steps: count, backend: "webgpu" }, device);
  const stepMs: number[] = [];
  for (let step = 0; step < count; step++) {
    const start = performance.now();
    await trainer.step();
    stepMs.push(performance.now() - start);
  }
  device.destroy();
  return { firstStepMs: stepMs[0], laterStepMs: median(stepMs.slice(1)), totalMs: performance.now() - began };
}

const mode = Deno.args[0];
const input = await new Response(Deno.stdin.readable).text();
const result = mode === "record"
  ? await record()
  : mode === "replay"
  ? await replay(JSON.parse(input))
  : mode === "steps"
  ? await steps(Number(input))
  : null;
if (result === null) throw new Error(`bench pipelines: unknown mode "${mode}" (record, replay or steps)`);
console.log(JSON.stringify(result));
Deno.exit(0);
