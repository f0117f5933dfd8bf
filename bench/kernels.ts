// `bench kernels`: shardlab's WebGPU kernels against TF.js's WebGPU backend, in one process on the
// same adapter, with the adapter's buffer-copy bandwidth as the bound for bandwidth-bound ops.

import { createDevice, type Device, type Tensor, tidy } from "../mod.ts";
import type { GpuContext } from "../src/backend/webgpu/gpu_context.ts";
import type { WebGpuBackend } from "../src/backend/webgpu/webgpu_backend.ts";
import { randnValues } from "../src/tensor/random.ts";
import { isBandwidthCase, KERNEL_CASES, type KernelCase, TARGETS } from "./kernel_cases.ts";
import {
  type AdapterReport,
  type CaseResult,
  type CopyBound,
  type Difference,
  printTable,
  summarizeTargets,
  writeJsonReport,
} from "./report.ts";
import { checkSameAdapter, loadTfjs, startTfjsWebGpu, syncTfjs, tf, type Tfjs } from "./tfjs.ts";
import { timeGpu, type Timing } from "./timing.ts";
import type { WebGPUBackend } from "@tensorflow/tfjs-backend-webgpu";

export interface SuiteOptions {
  json?: string;
  reps?: number;
}

/** Size of each of the two buffers of the copy-bandwidth measurement. */
const COPY_BYTES = 64 * 2 ** 20;
/** A shardlab result further than this from TF.js's (relative to TF.js's largest magnitude) is WRONG. */
const MAX_RELATIVE_DIFFERENCE = 1e-3;

export async function runKernels(options: SuiteOptions): Promise<number> {
  const device = await createDevice({ backend: "webgpu" });
  const ctx = (device.backend as WebGpuBackend).ctx;
  const tfjsMissing = await loadTfjs();
  if (tfjsMissing) progress(tfjsMissing);
  const tfBackend = tfjsMissing ? null : await startTfjsWebGpu();
  const adapter = adapterReport(device, ctx, tfBackend);
  progress(`adapter: ${adapter.description}`);

  progress(`copy bound: copyBufferToBuffer of ${COPY_BYTES / 2 ** 20} MiB`);
  const copy = await measureCopyBandwidth(ctx, options.reps);
  const cases: CaseResult[] = [];
  for (const [index, kernelCase] of KERNEL_CASES.entries()) {
    progress(kernelCase.name);
    cases.push(await runCase(kernelCase, index, device, ctx, tfBackend, copy, options.reps));
  }
  const targets = summarizeTargets(cases);
  printTable(adapter, copy, cases, targets);
  if (tfjsMissing) console.log(`\nnote: ${tfjsMissing}`);

  if (options.json) {
    await writeJsonReport(options.json, "kernels", {
      adapter,
      repsOption: options.reps ?? "auto",
      copyBound: copy,
      cases,
      targets,
      tfjsSkipped: tfjsMissing,
    });
    progress(`wrote ${options.json}`);
  }
  tfBackend?.dispose();
  device.destroy();
  return 0;
}

function progress(message: string): void {
  console.error(`bench kernels: ${message}`);
}

/** The adapter both libraries drive (checked to be the same one), with shardlab's view of its limits. */
function adapterReport(device: Device, ctx: GpuContext, tfBackend: WebGPUBackend | null): AdapterReport {
  const { vendor, architecture, device: adapterDevice, description } = tfBackend
    ? checkSameAdapter(ctx.device, tfBackend)
    : ctx.device.adapterInfo;
  return {
    vendor,
    architecture,
    device: adapterDevice,
    description,
    shardlabInfo: device.info.adapter,
    limits: device.info.limits,
    features: device.info.features,
  };
}

/** copyBufferToBuffer of a 64 MiB buffer through shardlab's GpuContext; bytes count the read and the write. */
async function measureCopyBandwidth(ctx: GpuContext, reps?: number): Promise<CopyBound> {
  const source = ctx.allocate(COPY_BYTES, true);
  const destination = ctx.allocate(COPY_BYTES, false);
  const timing = await timeGpu(() => ctx.copy(source, 0, destination, 0, COPY_BYTES), () => ctx.sync(), reps);
  ctx.release(source);
  ctx.release(destination);
  const bytes = 2 * COPY_BYTES;
  return { bytes, ms: timing.msPerRep, gbPerS: bytes / (timing.msPerRep * 1e6), reps: timing.reps, batchMs: timing.batchMs };
}

async function runCase(
  kernelCase: KernelCase,
  index: number,
  device: Device,
  ctx: GpuContext,
  tfBackend: WebGPUBackend | null,
  copy: CopyBound,
  reps?: number,
): Promise<CaseResult> {
  const hostInputs = kernelCase.inputShapes.map((shape, i) => ({
    shape,
    values: randnValues(shape.reduce((a, b) => a * b, 1), 1000 * (index + 1) + i),
  }));
  const random = hostInputs.map(({ shape, values }) => device.tensor(values, shape));
  const shardlabInputs = kernelCase.prepare?.(random) ?? random;
  // Without TF.js (tfBackend null) its side of the case is skipped.
  const tfjsInputs = tfBackend ? hostInputs.map(({ shape, values }) => tf.tensor(values, shape)) : [];
  const tfjsConstants = tfBackend ? kernelCase.tfjsConstants?.() ?? [] : [];
  const tfjsCase = tfBackend ? kernelCase.tfjs : undefined;
  const errors: string[] = [];
  const shardlab = await attempt("shardlab", errors, () =>
    timeLeakFree(
      "shardlab",
      () => device.stats().tensors,
      () => tidy(() => void kernelCase.shardlab(shardlabInputs)),
      () => ctx.sync(),
      reps,
    ));
  const tfjs = !tfjsCase ? null : await attempt("TF.js", errors, () =>
    timeLeakFree(
      "TF.js",
      () => tf.memory().numTensors,
      () => tf.tidy(() => void tfjsCase(tfjsInputs, tfjsConstants)),
      () => syncTfjs(tfBackend!),
      reps,
    ));
  const difference = shardlab && tfjs
    ? await attempt("comparison", errors, () => compareResults(kernelCase, shardlabInputs, tfjsInputs, tfjsConstants))
    : null;
  new Set([...random, ...shardlabInputs]).forEach((t) => t.dispose());
  if (tfBackend) tf.dispose([...tfjsInputs, ...tfjsConstants]);
  const result = caseResult(kernelCase, shardlab, tfjs, difference, copy);
  return errors.length ? { ...result, error: errors.join("; ") } : result;
}

/** Runs one part of a case; a failure is recorded under `label` and the case goes on without it. */
async function attempt<T>(label: string, errors: string[], part: () => Promise<T>): Promise<T | null> {
  try {
    return await part();
  } catch (error) {
    errors.push(`${label}: ${(error as Error).message}`);
    return null;
  }
}

/** Times one library's rep and checks that tidy() left no tensor behind (memory stays flat). */
async function timeLeakFree(
  library: string,
  liveTensors: () => number,
  run: () => void,
  sync: () => Promise<void>,
  reps?: number,
): Promise<Timing> {
  const before = liveTensors();
  const timing = await timeGpu(run, sync, reps);
  const after = liveTensors();
  if (after !== before) throw new Error(`${library} kept ${after - before} tensors alive across reps`);
  return timing;
}

/** One untimed rep of each library, compared element by element (TF.js's result as the scale). */
async function compareResults(
  kernelCase: KernelCase,
  shardlabInputs: Tensor[],
  tfjsInputs: Tfjs.Tensor[],
  tfjsConstants: Tfjs.Tensor[],
): Promise<Difference> {
  const shardlabOut = kernelCase.shardlab(shardlabInputs);
  const tfjsOut = tf.tidy(() => kernelCase.tfjs!(tfjsInputs, tfjsConstants));
  const actual = (await shardlabOut.read()) as Float32Array;
  const expected = (await tfjsOut.data()) as Float32Array;
  shardlabOut.dispose();
  tfjsOut.dispose();
  if (actual.length !== expected.length) {
    throw new Error(`result sizes differ: shardlab ${actual.length}, TF.js ${expected.length}`);
  }
  let maxAbs = 0;
  let scale = 0;
  let nanMismatch = false;
  for (let i = 0; i < actual.length; i++) {
    if (Number.isNaN(actual[i]) || Number.isNaN(expected[i])) {
      nanMismatch ||= Number.isNaN(actual[i]) !== Number.isNaN(expected[i]);
      continue;
    }
    maxAbs = Math.max(maxAbs, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  const maxRel = nanMismatch ? Infinity : scale > 0 ? maxAbs / scale : maxAbs;
  return { maxAbs: nanMismatch ? Infinity : maxAbs, maxRel, wrong: !(maxRel <= MAX_RELATIVE_DIFFERENCE) };
}

function caseResult(
  kernelCase: KernelCase,
  shardlab: Timing | null,
  tfjs: Timing | null,
  difference: Difference | null,
  copy: CopyBound,
): CaseResult {
  const bandwidth = isBandwidthCase(kernelCase);
  const rate = (timing: Timing | null) => (timing ? kernelCase.work / (timing.msPerRep * 1e6) : null);
  const shardlabRate = rate(shardlab);
  const tfjsRate = rate(tfjs);
  const speedup = shardlab && tfjs ? tfjs.msPerRep / shardlab.msPerRep : null;
  const fractionOfCopy = bandwidth && shardlabRate !== null ? shardlabRate / copy.gbPerS : null;
  const target = TARGETS[kernelCase.target];
  const measured = bandwidth ? fractionOfCopy : speedup;
  return {
    name: kernelCase.name,
    unit: bandwidth ? "GB/s" : "GFLOP/s",
    work: kernelCase.work,
    shardlab: shardlab && { ms: shardlab.msPerRep, rate: shardlabRate!, reps: shardlab.reps, batchMs: shardlab.batchMs },
    tfjs: tfjs && { ms: tfjs.msPerRep, rate: tfjsRate!, reps: tfjs.reps, batchMs: tfjs.batchMs },
    speedup,
    fractionOfCopy,
    tfjsFractionOfCopy: bandwidth && tfjsRate !== null ? tfjsRate / copy.gbPerS : null,
    difference,
    target: {
      kind: kernelCase.target,
      rule: target.rule,
      threshold: target.threshold,
      measured,
      // Held to TF.js's result where TF.js has a peer.
      met: measured !== null && measured >= target.threshold &&
        (kernelCase.tfjs ? difference !== null && !difference.wrong : true),
    },
  };
}
