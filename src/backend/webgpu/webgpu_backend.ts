// The WebGPU backend: a GpuContext plus one program per kernel family (programs/*.ts, each
// driving one kernels/*.wgsl file).

import type {
  ActivationOp,
  AdamWParams,
  AttentionParams,
  Backend,
  BackendInfo,
  BackendStats,
  BinaryOp,
  MatmulParams,
  QuantLayout,
  ReduceOp,
  Storage,
  StridedCopy,
  UnaryOp,
} from "../backend.ts";
import { type DType, DTYPE_BYTES, type RawArray, rawArray } from "../../tensor/dtype.ts";
import { GpuContext, GpuStorage } from "./gpu_context.ts";
import * as elementwise from "./programs/elementwise.ts";
import * as castProgram from "./programs/cast.ts";
import * as copyProgram from "./programs/copy.ts";
import * as headExchangeProgram from "./programs/head_exchange.ts";
import * as reduceProgram from "./programs/reduce.ts";
import * as matmulProgram from "./programs/matmul.ts";
import * as softmaxProgram from "./programs/softmax.ts";
import * as normProgram from "./programs/norm.ts";
import * as embeddingProgram from "./programs/embedding.ts";
import * as ropeProgram from "./programs/rope.ts";
import * as attentionProgram from "./programs/attention.ts";
import * as crossEntropyProgram from "./programs/cross_entropy.ts";
import * as adamwProgram from "./programs/adamw.ts";
import * as quantizeProgram from "./programs/quantize.ts";

/** The adapter limits shardlab asks for, at the adapter's own values rather than the defaults. */
const REQUESTED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxStorageBuffersPerShaderStage",
] as const;

/** Requests an adapter and a device with its real limits; null when WebGPU or an adapter is missing. */
export async function requestWebGpuBackend(): Promise<WebGpuBackend | null> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) return null;
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) return null;
  const requiredLimits: Record<string, number> = {};
  for (const name of REQUESTED_LIMITS) requiredLimits[name] = adapter.limits[name];
  const requiredFeatures: GPUFeatureName[] = adapter.features.has("shader-f16") ? ["shader-f16"] : [];
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  const info: BackendInfo = {
    adapter: adapter.info.description || `${adapter.info.vendor} ${adapter.info.architecture}`.trim() || "unknown adapter",
    features: [...device.features].sort(),
    limits: {
      maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
      maxBufferSize: device.limits.maxBufferSize,
      maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
    },
  };
  return new WebGpuBackend(new GpuContext(device), info, adapter);
}

export class WebGpuBackend implements Backend {
  readonly name = "webgpu";

  /**
   * `adapter` is held so that it outlives the device: Deno 2.9 aborts the process when
   * GPUDevice.adapterInfo is read after the adapter was garbage-collected.
   */
  constructor(readonly ctx: GpuContext, readonly info: BackendInfo, readonly adapter: GPUAdapter) {}

  alloc(numel: number, dtype: DType): Storage {
    return this.ctx.allocate(numel * DTYPE_BYTES[dtype], true);
  }

  upload(data: RawArray): Storage {
    return this.ctx.upload(data);
  }

  async read(storage: Storage, numel: number, dtype: DType): Promise<RawArray> {
    const bytes = await this.ctx.read(storage as GpuStorage, numel * DTYPE_BYTES[dtype]);
    const out = rawArray(dtype, numel);
    new Uint8Array(out.buffer).set(new Uint8Array(bytes));
    return out;
  }

  release(storage: Storage): void {
    this.ctx.release(storage as GpuStorage);
  }

  stats(): BackendStats {
    return this.ctx.stats();
  }

  destroy(): void {
    this.ctx.destroy();
  }

  unary(op: UnaryOp, x: Storage, n: number, alpha = 1): Storage {
    return elementwise.unary(this.ctx, op, x as GpuStorage, n, alpha);
  }

  activationGrad(op: ActivationOp, x: Storage, dy: Storage, n: number): Storage {
    return elementwise.activationGrad(this.ctx, op, x as GpuStorage, dy as GpuStorage, n);
  }

  binary(
    op: BinaryOp,
    a: Storage,
    aShape: readonly number[],
    b: Storage,
    bShape: readonly number[],
    outShape: readonly number[],
  ): Storage {
    return elementwise.binary(this.ctx, op, a as GpuStorage, aShape, b as GpuStorage, bShape, outShape);
  }

  cast(x: Storage, n: number, from: DType, to: DType): Storage {
    return castProgram.cast(this.ctx, x as GpuStorage, n, from, to);
  }

  copyStrided(src: Storage, dst: Storage, copy: StridedCopy): void {
    copyProgram.copyStrided(this.ctx, src as GpuStorage, dst as GpuStorage, copy);
  }

  quantize(
    x: Storage,
    layout: QuantLayout,
    source: { nodes: number } | { sum: { scales: Storage; inputs: number } },
  ): { q: Storage; scales: Storage } {
    return quantizeProgram.quantize(this.ctx, x as GpuStorage, layout, source as quantizeProgram.QuantizeSource);
  }

  dequantize(q: Storage, scales: Storage, layout: QuantLayout, inputs: number, factor: number): Storage {
    return quantizeProgram.dequantize(this.ctx, q as GpuStorage, scales as GpuStorage, layout, inputs, factor);
  }

  gatherBlocks(x: Storage, offsets: Storage, indices: Storage, n: number, block: number, maxTerms: number): Storage {
    return headExchangeProgram.gatherBlocks(
      this.ctx,
      x as GpuStorage,
      offsets as GpuStorage,
      indices as GpuStorage,
      n,
      block,
      maxTerms,
    );
  }

  reduce(op: ReduceOp, x: Storage, outer: number, length: number, inner: number): Storage {
    return reduceProgram.reduce(this.ctx, op, x as GpuStorage, outer, length, inner);
  }

  matmul(a: Storage, b: Storage, p: MatmulParams): Storage {
    return matmulProgram.matmul(this.ctx, a as GpuStorage, b as GpuStorage, p);
  }

  softmax(x: Storage, rows: number, cols: number, log: boolean): Storage {
    return softmaxProgram.softmax(this.ctx, x as GpuStorage, rows, cols, log);
  }

  softmaxGrad(y: Storage, dy: Storage, rows: number, cols: number, log: boolean): Storage {
    return softmaxProgram.softmaxGrad(this.ctx, y as GpuStorage, dy as GpuStorage, rows, cols, log);
  }

  rmsNorm(x: Storage, w: Storage, rows: number, cols: number, eps: number) {
    return normProgram.rmsNorm(this.ctx, x as GpuStorage, w as GpuStorage, rows, cols, eps);
  }

  rmsNormGrad(x: Storage, w: Storage, rstd: Storage, dy: Storage, rows: number, cols: number) {
    return normProgram.rmsNormGrad(this.ctx, x as GpuStorage, w as GpuStorage, rstd as GpuStorage, dy as GpuStorage, rows, cols);
  }

  layerNorm(x: Storage, w: Storage, b: Storage, rows: number, cols: number, eps: number) {
    return normProgram.layerNorm(this.ctx, x as GpuStorage, w as GpuStorage, b as GpuStorage, rows, cols, eps);
  }

  layerNormGrad(x: Storage, w: Storage, mean: Storage, rstd: Storage, dy: Storage, rows: number, cols: number) {
    return normProgram.layerNormGrad(
      this.ctx,
      x as GpuStorage,
      w as GpuStorage,
      mean as GpuStorage,
      rstd as GpuStorage,
      dy as GpuStorage,
      rows,
      cols,
    );
  }

  embedding(w: Storage, ids: Storage, n: number, vocab: number, dim: number): Storage {
    return embeddingProgram.embedding(this.ctx, w as GpuStorage, ids as GpuStorage, n, vocab, dim);
  }

  embeddingGrad(ids: Storage, dy: Storage, n: number, vocab: number, dim: number): Storage {
    return embeddingProgram.embeddingGrad(this.ctx, ids as GpuStorage, dy as GpuStorage, n, vocab, dim);
  }

  rope(x: Storage, rows: number, T: number, D: number, theta: number, positionOffset: number, inverse: boolean): Storage {
    return ropeProgram.rope(this.ctx, x as GpuStorage, rows, T, D, theta, positionOffset, inverse);
  }

  attention(q: Storage, k: Storage, v: Storage, p: AttentionParams) {
    return attentionProgram.attention(this.ctx, q as GpuStorage, k as GpuStorage, v as GpuStorage, p);
  }

  attentionGrad(q: Storage, k: Storage, v: Storage, o: Storage, lse: Storage, dO: Storage, p: AttentionParams) {
    return attentionProgram.attentionGrad(
      this.ctx,
      q as GpuStorage,
      k as GpuStorage,
      v as GpuStorage,
      o as GpuStorage,
      lse as GpuStorage,
      dO as GpuStorage,
      p,
    );
  }

  crossEntropy(logits: Storage, targets: Storage, rows: number, vocab: number): Storage {
    return crossEntropyProgram.crossEntropy(this.ctx, logits as GpuStorage, targets as GpuStorage, rows, vocab);
  }

  crossEntropyGrad(logits: Storage, targets: Storage, dloss: Storage, rows: number, vocab: number, scale: number): Storage {
    return crossEntropyProgram.crossEntropyGrad(
      this.ctx,
      logits as GpuStorage,
      targets as GpuStorage,
      dloss as GpuStorage,
      rows,
      vocab,
      scale,
    );
  }

  adamw(param: Storage, grad: Storage, expAvg: Storage, expAvgSq: Storage, n: number, p: AdamWParams): void {
    adamwProgram.adamw(this.ctx, param as GpuStorage, grad as GpuStorage, expAvg as GpuStorage, expAvgSq as GpuStorage, n, p);
  }
}
