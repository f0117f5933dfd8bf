// Device: where tensors live. createDevice() picks WebGPU when an adapter exists and the CPU
// reference backend otherwise.

import type { Backend, BackendInfo, Storage } from "../backend/backend.ts";
import { CpuBackend } from "../backend/cpu/cpu_backend.ts";
import { requestWebGpuBackend } from "../backend/webgpu/webgpu_backend.ts";
import { type DType, DTYPE_BYTES, f32ToF16Bits, isDType, type RawArray, rawArray } from "./dtype.ts";
import { DeviceLimitError, DisposedError, DTypeError, ShapeError } from "./errors.ts";
import { randnValues } from "./random.ts";
import { checkShape, formatShape, type Shape, sizeOf } from "./shape.ts";
import { DeviceMemory, Tensor } from "./tensor.ts";

export type BackendChoice = "auto" | "webgpu" | "cpu";

export interface DeviceStats {
  /** Live tensors (including views and tensors saved for backward). */
  tensors: number;
  /** Live device allocations. */
  buffers: number;
  /** Bytes held by live allocations. */
  bytes: number;
  /** Bytes of freed allocations the WebGPU buffer pool keeps for reuse. */
  pooledBytes: number;
  /** Compiled compute pipelines. */
  pipelines: number;
}

export interface TensorOptions {
  requiresGrad?: boolean;
  dtype?: DType;
}

/**
 * Opens a device. "auto" takes WebGPU when an adapter exists, otherwise the CPU backend with one
 * line on stderr; "webgpu" fails when there is no adapter.
 */
export async function createDevice(options: { backend?: BackendChoice } = {}): Promise<Device> {
  const choice = options.backend ?? "auto";
  if (choice !== "auto" && choice !== "webgpu" && choice !== "cpu") {
    throw new Error(`createDevice: unknown backend "${choice}" (valid: auto, webgpu, cpu)`);
  }
  if (choice === "cpu") return new Device(new CpuBackend());
  const webgpu = await requestWebGpuBackend();
  if (webgpu) return new Device(webgpu);
  const reason = (globalThis.navigator as Navigator | undefined)?.gpu
    ? "no WebGPU adapter was found (on a machine without a GPU, install a Vulkan driver such as mesa-vulkan-drivers)"
    : "this runtime has no WebGPU (navigator.gpu is missing)";
  if (choice === "webgpu") throw new Error(`createDevice: ${reason}`);
  console.error(`shardlab: ${reason}; using the CPU backend`);
  return new Device(new CpuBackend());
}

export class Device {
  private liveTensors = 0;
  private destroyed = false;

  constructor(readonly backend: Backend) {}

  get name(): "webgpu" | "cpu" {
    return this.backend.name;
  }

  get info(): BackendInfo {
    return this.backend.info;
  }

  /** A tensor holding data; numbers and Float32Array default to f32, Int32Array to i32. */
  tensor(data: Float32Array | Int32Array | Uint8Array | Int8Array | number[], shape: Shape, options: TensorOptions = {}): Tensor {
    this.checkAlive("tensor");
    checkShape("tensor", shape);
    const dtype = options.dtype ??
      (data instanceof Int32Array ? "i32" : data instanceof Uint8Array ? "u8" : data instanceof Int8Array ? "i8" : "f32");
    if (!isDType(dtype)) throw new DTypeError(`tensor: unknown dtype "${dtype}" (valid: f32, f16, i32, u8, i8)`);
    if (data.length !== sizeOf(shape)) {
      throw new ShapeError(`tensor: ${data.length} values do not fill shape ${formatShape(shape)} (${sizeOf(shape)} elements)`);
    }
    if (options.requiresGrad && dtype !== "f32") throw new DTypeError(`tensor: requiresGrad needs dtype f32, got ${dtype}`);
    this.checkFits("tensor", data.length, dtype);
    const storage = this.backend.upload(toRaw(data, dtype), dtype);
    return this.wrap(storage, shape, dtype, options.requiresGrad);
  }

  zeros(shape: Shape, options: TensorOptions = {}): Tensor {
    this.checkAlive("zeros");
    checkShape("zeros", shape);
    const dtype = options.dtype ?? "f32";
    return this.wrap(this.allocate("zeros", sizeOf(shape), dtype), shape, dtype, options.requiresGrad);
  }

  /** Standard normal f32 values; element i depends only on (seed, i). */
  randn(shape: Shape, seed: number, options: { requiresGrad?: boolean } = {}): Tensor {
    checkShape("randn", shape);
    return this.tensor(randnValues(sizeOf(shape), seed), shape, options);
  }

  stats(): DeviceStats {
    const { buffers, bytes, pooledBytes, pipelines } = this.backend.stats();
    return { tensors: this.liveTensors, buffers, bytes, pooledBytes, pipelines };
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.backend.destroy();
  }

  // ---- used by Tensor and the ops ----

  /** Wraps a storage the backend just produced as a new tensor. */
  wrap(storage: Storage, shape: Shape, dtype: DType = "f32", requiresGrad = false): Tensor {
    return new Tensor(this, new DeviceMemory(this, storage), shape, dtype, requiresGrad);
  }

  /** A zero-filled allocation, checked against the device's binding limit. */
  allocate(op: string, numel: number, dtype: DType): Storage {
    this.checkFits(op, numel, dtype);
    return this.backend.alloc(numel, dtype);
  }

  /** Rejects a tensor larger than one binding can address, naming the limit. */
  checkFits(op: string, numel: number, dtype: DType): void {
    this.checkAlive(op);
    const bytes = numel * DTYPE_BYTES[dtype];
    const limit = this.backend.info.limits.maxStorageBufferBindingSize;
    if (bytes > limit) {
      throw new DeviceLimitError(
        `${op}: ${numel} ${dtype} elements need ${bytes} bytes, over this device's maxStorageBufferBindingSize of ${limit} bytes`,
      );
    }
  }

  checkAlive(op: string): void {
    if (this.destroyed) throw new DisposedError(`${op}: the device was destroyed`);
  }

  tensorCreated(): void {
    this.liveTensors++;
  }

  tensorDisposed(): void {
    this.liveTensors--;
  }
}

function toRaw(data: Float32Array | Int32Array | Uint8Array | Int8Array | number[], dtype: DType): RawArray {
  const out = rawArray(dtype, data.length);
  if (dtype === "f16") {
    for (let i = 0; i < data.length; i++) out[i] = f32ToF16Bits(data[i]);
    return out;
  }
  if (dtype !== "f32") {
    const [low, high] = dtype === "i32" ? [-(2 ** 31), 2 ** 31 - 1] : dtype === "u8" ? [0, 255] : [-128, 127];
    for (let i = 0; i < data.length; i++) {
      const value = data[i];
      if (!Number.isInteger(value) || value < low || value > high) {
        throw new DTypeError(`tensor: value ${value} at index ${i} is not a ${dtype} (integers in [${low}, ${high}])`);
      }
    }
  }
  out.set(data);
  return out;
}
