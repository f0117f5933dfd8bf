// One GPUDevice and the machinery every WebGPU program shares: the pipeline cache, the buffer pool,
// and batched encoding.
//
// Dispatches are recorded into one command encoder and one open compute pass; nothing is submitted
// until a read, an upload or a full uniform arena needs it. Each dispatch's parameters go into a
// CPU-side uniform arena that is written to the GPU once per submit.
//
// Mesa's llvmpipe compiles a pipeline to machine code at its first dispatch, on the queue's thread
// (`npm run bench -- pipelines` times it). Submitting each pipeline's first dispatch at once, so
// that this compilation overlaps with the creation of the next pipelines here, was tried: with
// Mesa 22.3 it crashed most cold runs (a segfault at exit, once an LLVM abort), so it is not done.
//
// Binding convention for every kernel in kernels/: @group(0) @binding(0) is the `params` uniform,
// followed by the storage buffers at bindings 1, 2, … in the order the program passes them.

import type { Storage } from "../backend.ts";
import { DeviceLimitError, DisposedError } from "../../tensor/errors.ts";
import { BufferPool } from "./buffer_pool.ts";
import { type Constants, type Defines, type KernelSource, PipelineCache } from "./pipeline_cache.ts";

export class GpuStorage implements Storage {
  released = false;
  constructor(readonly buffer: GPUBuffer, readonly bytes: number) {}
}

const UNIFORM_ALIGN = 256;
const ARENA_BYTES = 64 * 1024;

/** Packs a params struct of 4-byte scalars in declaration order (WGSL uniform layout for u32/i32/f32 fields). */
export class Params {
  private view: DataView;
  private offset = 0;
  constructor(fields: number) {
    this.view = new DataView(new ArrayBuffer(Math.max(16, Math.ceil(fields / 4) * 16)));
  }
  u32(value: number): this {
    this.view.setUint32(this.offset, value, true);
    this.offset += 4;
    return this;
  }
  i32(value: number): this {
    this.view.setInt32(this.offset, value, true);
    this.offset += 4;
    return this;
  }
  f32(value: number): this {
    this.view.setFloat32(this.offset, value, true);
    this.offset += 4;
    return this;
  }
  get bytes(): Uint8Array {
    return new Uint8Array(this.view.buffer);
  }
}

export class GpuContext {
  readonly pipelines: PipelineCache;
  readonly pool: BufferPool;
  readonly maxWorkgroupsPerDimension: number;
  readonly maxBindingBytes: number;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private arena = new Uint8Array(ARENA_BYTES);
  private arenaUsed = 0;
  private arenaBuffer: GPUBuffer;
  private liveBuffers = 0;
  private liveBytes = 0;
  private deviceError: string | null = null;
  private destroyed = false;

  constructor(readonly device: GPUDevice) {
    this.pipelines = new PipelineCache(device);
    this.maxBindingBytes = device.limits.maxStorageBufferBindingSize;
    this.pool = new BufferPool(device, this.maxBindingBytes);
    this.maxWorkgroupsPerDimension = device.limits.maxComputeWorkgroupsPerDimension;
    this.arenaBuffer = device.createBuffer({ size: ARENA_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    device.addEventListener("uncapturederror", (event) => {
      this.deviceError ??= (event as GPUUncapturedErrorEvent).error.message;
    });
  }

  // ---- memory ----

  /** A storage of at least `bytes` (rounded to the pool's bucket); zero-filled when asked. */
  allocate(bytes: number, zeroed: boolean): GpuStorage {
    this.checkAlive();
    const needed = Math.max(4, Math.ceil(bytes / 4) * 4);
    if (needed > this.maxBindingBytes) {
      throw new DeviceLimitError(
        `a tensor of ${bytes} bytes exceeds this device's maxStorageBufferBindingSize of ${this.maxBindingBytes} bytes`,
      );
    }
    const buffer = this.pool.acquire(needed);
    if (zeroed) this.commandEncoder().clearBuffer(buffer);
    this.liveBuffers++;
    this.liveBytes += buffer.size;
    return new GpuStorage(buffer, buffer.size);
  }

  upload(data: ArrayBufferView): GpuStorage {
    const storage = this.allocate(data.byteLength, false);
    // The buffer may have just left the pool while recorded work still reads it: submit that work first.
    this.flush();
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const padded = bytes.byteLength % 4 === 0 ? bytes : copyPadded(bytes);
    if (padded.byteLength > 0) this.device.queue.writeBuffer(storage.buffer, 0, padded);
    return storage;
  }

  release(storage: GpuStorage): void {
    if (storage.released) throw new DisposedError(`a WebGPU storage of ${storage.bytes} bytes was released twice`);
    storage.released = true;
    this.liveBuffers--;
    this.liveBytes -= storage.buffer.size;
    this.pool.release(storage.buffer);
  }

  /** Copies the first `bytes` of storage back to the host, after all recorded work. */
  async read(storage: GpuStorage, bytes: number): Promise<ArrayBuffer> {
    this.checkAlive();
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const staging = this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.commandEncoder().copyBufferToBuffer(storage.buffer, 0, staging, 0, size);
    this.flush();
    await staging.mapAsync(GPUMapMode.READ);
    const result = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    if (this.deviceError) throw new Error(`WebGPU error: ${this.deviceError}`);
    return result;
  }

  stats(): { buffers: number; bytes: number; pooledBytes: number; pipelines: number } {
    return {
      buffers: this.liveBuffers,
      bytes: this.liveBytes,
      pooledBytes: this.pool.pooledBytes,
      pipelines: this.pipelines.size,
    };
  }

  // ---- work ----

  pipeline(source: KernelSource, entryPoint: string, defines?: Defines, constants?: Constants): GPUComputePipeline {
    return this.pipelines.get(source, entryPoint, defines, constants);
  }

  /**
   * Records one dispatch. `workgroups` as a number is a linear count that is folded into x and y
   * when it exceeds the per-dimension limit; kernels recover the linear index as
   * `wid.x + wid.y * nwg.x` and bounds-check against their own size.
   */
  dispatch(
    pipeline: GPUComputePipeline,
    params: Params,
    storages: readonly GpuStorage[],
    workgroups: number | readonly [number, number, number],
  ): void {
    this.checkAlive();
    const grid = this.grid(workgroups);
    if (grid[0] * grid[1] * grid[2] === 0) return;
    const bytes = params.bytes;
    if (this.arenaUsed + bytes.byteLength > ARENA_BYTES) this.flush();
    const offset = this.arenaUsed;
    this.arena.set(bytes, offset);
    this.arenaUsed += Math.ceil(bytes.byteLength / UNIFORM_ALIGN) * UNIFORM_ALIGN;

    const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: this.arenaBuffer, offset, size: bytes.byteLength } }];
    storages.forEach((storage, i) => {
      if (storage.released) throw new DisposedError(`${pipeline.label}: an input storage was already released`);
      entries.push({ binding: i + 1, resource: { buffer: storage.buffer } });
    });
    const bindGroup = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    const pass = this.computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
  }

  /** Copies bytes between storages, in order with the recorded dispatches. */
  copy(src: GpuStorage, srcOffset: number, dst: GpuStorage, dstOffset: number, bytes: number): void {
    if (bytes > 0) this.commandEncoder().copyBufferToBuffer(src.buffer, srcOffset, dst.buffer, dstOffset, bytes);
  }

  /** Submits everything recorded so far. */
  flush(): void {
    if (!this.encoder) return;
    this.pass?.end();
    this.pass = null;
    if (this.arenaUsed > 0) this.device.queue.writeBuffer(this.arenaBuffer, 0, this.arena, 0, this.arenaUsed);
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.arenaUsed = 0;
  }

  /** Resolves when all submitted work has finished on the GPU. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.encoder = null;
    this.pass = null;
    this.pool.destroy();
    this.arenaBuffer.destroy();
    this.device.destroy();
    this.destroyed = true;
  }

  private grid(workgroups: number | readonly [number, number, number]): [number, number, number] {
    const max = this.maxWorkgroupsPerDimension;
    if (typeof workgroups === "number") {
      if (workgroups <= max) return [workgroups, 1, 1];
      const y = Math.ceil(workgroups / max);
      if (y > max) {
        throw new DeviceLimitError(`a dispatch of ${workgroups} workgroups exceeds ${max}² (maxComputeWorkgroupsPerDimension²)`);
      }
      return [max, y, 1];
    }
    for (const size of workgroups) {
      if (size > max) {
        throw new DeviceLimitError(`a dispatch of [${workgroups}] workgroups exceeds maxComputeWorkgroupsPerDimension ${max}`);
      }
    }
    return [workgroups[0], workgroups[1], workgroups[2]];
  }

  private commandEncoder(): GPUCommandEncoder {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) {
      this.encoder ??= this.device.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    return this.pass;
  }

  private checkAlive(): void {
    if (this.destroyed) throw new DisposedError("this WebGPU device was destroyed");
  }
}

function copyPadded(bytes: Uint8Array): Uint8Array {
  const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
  padded.set(bytes);
  return padded;
}
