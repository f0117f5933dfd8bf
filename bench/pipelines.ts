// `bench pipelines`: the compute pipelines a default `shardlab train` creates, and what compiling
// them costs on a cold start (empty driver shader cache) and a warm one.
//
// Mesa's llvmpipe compiles a pipeline in two places: createComputePipeline (WGSL → SPIR-V → NIR,
// in every run) and the pipeline's first dispatch (NIR → LLVM → machine code, on the queue's
// thread; the result is kept in Mesa's on-disk shader cache). The suite runs in child processes,
// each with MESA_SHADER_CACHE_DIR pointing at one temporary folder, first empty (cold) then as the
// cold run left it (warm):
// - `record`: one Trainer step of the default configuration (tiny preset, 16×64), noting every
//   pipeline's WGSL, override constants and first dispatch (uniform bytes, buffer sizes, grid);
// - `replay`: each recorded pipeline on its own in a fresh device: createShaderModule,
//   createComputePipeline, its first dispatch and a second one, each timed to completion
//   (first − second ≈ the compilation left for first use);
// - `steps`: STEPS Trainer steps, the first one timed apart (what a cold start adds to a run).

import { createDevice } from "../mod.ts";
import type { GpuStorage, Params } from "../src/backend/webgpu/gpu_context.ts";
import { type Constants, type Defines, type KernelSource, preprocess } from "../src/backend/webgpu/pipeline_cache.ts";
import type { WebGpuBackend } from "../src/backend/webgpu/webgpu_backend.ts";
import { DEFAULT_TRAIN_CONFIG } from "../src/train/config.ts";
import { Trainer } from "../src/train/trainer.ts";
import type { SuiteOptions } from "./kernels.ts";
import { alignedTable, formatMs, writeJsonReport } from "./report.ts";
import { median } from "./timing.ts";

/** Trainer steps timed in each `steps` child. */
const STEPS = 5;

/** A pipeline as the first training step creates it, with its first dispatch. */
interface RecordedPipeline {
  kernel: string;
  entryPoint: string;
  defines: string[];
  constants: Constants;
  code: string;
  params: number[];
  bufferBytes: number[];
  grid: [number, number, number];
}

interface ReplayRow {
  pipeline: string;
  moduleMs: number;
  createMs: number;
  firstDispatchMs: number;
  secondDispatchMs: number;
}

interface StepsFigures {
  firstStepMs: number;
  /** Median of steps 2…STEPS. */
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

async function steps(): Promise<StepsFigures> {
  const began = performance.now();
  const device = await createDevice({ backend: "webgpu" });
  const trainer = await Trainer.create({ ...DEFAULT_TRAIN_CONFIG, steps: STEPS, backend: "webgpu" }, device);
  const stepMs: number[] = [];
  for (let step = 0; step < STEPS; step++) {
    const start = performance.now();
    await trainer.step();
    stepMs.push(performance.now() - start);
  }
  device.destroy();
  return { firstStepMs: stepMs[0], laterStepMs: median(stepMs.slice(1)), totalMs: performance.now() - began };
}

/** Runs this file as a child in `mode` with the shader cache in `cacheDir`; returns what it printed as JSON. */
async function child<T>(mode: string, cacheDir: string, input?: string): Promise<T> {
  const args = ["run", "-A", "--no-check", new URL(import.meta.url).pathname, mode];
  const env = { MESA_SHADER_CACHE_DIR: cacheDir, MESA_SHADER_CACHE_DISABLE: "false" };
  const command = new Deno.Command(Deno.execPath(), { args, env, stdin: "piped", stdout: "piped", stderr: "inherit" });
  const process = command.spawn();
  const writer = process.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input ?? ""));
  await writer.close();
  const { code, stdout } = await process.output();
  if (code !== 0) throw new Error(`bench pipelines: the ${mode} child exited with ${code}`);
  return JSON.parse(new TextDecoder().decode(stdout)) as T;
}

function progress(message: string): void {
  console.error(`bench pipelines: ${message}`);
}

export async function runPipelines(options: SuiteOptions): Promise<number> {
  const scratch = await Deno.makeTempDir({ prefix: "shardlab_pipelines_" });
  try {
    progress("recording the pipelines of one training step");
    const recorded = await child<RecordedPipeline[]>("record", `${scratch}/record`);
    const input = JSON.stringify(recorded);
    progress(`${recorded.length} pipelines; replaying each cold, then warm`);
    const cold = await child<ReplayRow[]>("replay", `${scratch}/replay`, input);
    const warm = await child<ReplayRow[]>("replay", `${scratch}/replay`, input);
    progress(`${STEPS} training steps cold, then warm`);
    const stepsCold = await child<StepsFigures>("steps", `${scratch}/steps`);
    const stepsWarm = await child<StepsFigures>("steps", `${scratch}/steps`);

    const pair = (a: number, b: number) => `${formatMs(a)} / ${formatMs(b)}`;
    const rows = cold.map((c, i) => {
      const w = warm[i];
      return [
        c.pipeline,
        pair(c.moduleMs, w.moduleMs),
        pair(c.createMs, w.createMs),
        pair(c.firstDispatchMs, w.firstDispatchMs),
        formatMs(c.secondDispatchMs),
      ];
    });
    const sum = (list: ReplayRow[], field: keyof Omit<ReplayRow, "pipeline">) =>
      list.reduce((total, row) => total + row[field], 0);
    const fields = ["moduleMs", "createMs", "firstDispatchMs"] as const;
    rows.push([
      `total (${cold.length} pipelines)`,
      ...fields.map((f) => pair(sum(cold, f), sum(warm, f))),
      formatMs(sum(cold, "secondDispatchMs")),
    ]);
    console.log(`pipelines of one tiny training step, ms cold / warm (Mesa shader cache empty / filled):\n`);
    console.log(
      alignedTable(["pipeline", "shader module", "createComputePipeline", "first dispatch", "second dispatch"], rows).join("\n"),
    );
    console.log(`\n${STEPS} training steps, ms cold / warm:`);
    console.log(`  first step   ${pair(stepsCold.firstStepMs, stepsWarm.firstStepMs)}`);
    console.log(`  later steps  ${pair(stepsCold.laterStepMs, stepsWarm.laterStepMs)} (median)`);
    console.log(`  process      ${pair(stepsCold.totalMs, stepsWarm.totalMs)} (device, model, ${STEPS} steps)`);
    if (options.json) {
      await writeJsonReport(options.json, "pipelines", {
        pipelines: { cold, warm },
        steps: { count: STEPS, cold: stepsCold, warm: stepsWarm },
      });
      progress(`wrote ${options.json}`);
    }
  } finally {
    await Deno.remove(scratch, { recursive: true });
  }
  return 0;
}

if (import.meta.main) {
  const mode = Deno.args[0];
  const input = await new Response(Deno.stdin.readable).text();
  const result = mode === "record"
    ? await record()
    : mode === "replay"
    ? await replay(JSON.parse(input))
    : mode === "steps"
    ? await steps()
    : null;
  if (result === null) throw new Error(`bench/pipelines.ts: unknown mode "${mode}" (record, replay or steps)`);
  console.log(JSON.stringify(result));
  Deno.exit(0);
}
