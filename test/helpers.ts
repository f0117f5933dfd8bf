// Shared test fixtures: one device per backend for a whole test file, one GpuContext for the tests
// that drive WebGPU programs directly, and seeded random inputs. The comparisons live in
// assertions.ts; assertClose is also exported from here.

import assert from "node:assert/strict";
import { createDevice, type Device, type Tensor } from "../mod.ts";
import { randnValues } from "../src/tensor/random.ts";
import { GpuContext, type GpuStorage } from "../src/backend/webgpu/gpu_context.ts";

export { assertClose } from "./assertions.ts";

export type Shape = readonly number[];

export function sizeOf(shape: Shape): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Under SHARDLAB_REQUIRE_WEBGPU=1 a missing adapter fails the WebGPU tests instead of skipping them. */
export const requireWebGpu = Deno.env.get("SHARDLAB_REQUIRE_WEBGPU") === "1";

let cpu: Promise<Device> | null = null;
let webgpu: Promise<Device | null> | null = null;

export function cpuDevice(): Promise<Device> {
  cpu ??= createDevice({ backend: "cpu" });
  return cpu;
}

/** The shared WebGPU device, or null when there is none (and none is required). */
export function webgpuDevice(): Promise<Device | null> {
  webgpu ??= createDevice({ backend: "webgpu" }).catch((error) => {
    if (requireWebGpu) throw new Error(`SHARDLAB_REQUIRE_WEBGPU=1 but WebGPU is unavailable: ${error.message}`);
    return null;
  });
  return webgpu;
}

/** Whether WebGPU tests should be skipped: only when no adapter exists and none is required. */
export const skipWebGpu = !requireWebGpu && !(await globalThis.navigator?.gpu?.requestAdapter());

/** Registers a test once per backend: `name [cpu]` and `name [webgpu]`. */
export function testBothBackends(name: string, fn: (device: Device) => Promise<void>): void {
  Deno.test(`${name} [cpu]`, async () => fn(await cpuDevice()));
  Deno.test({
    name: `${name} [webgpu]`,
    ignore: skipWebGpu,
    // The device lives for the whole file, so its resources outlast the first test that opens it.
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const device = await webgpuDevice();
      assert.ok(device, "no WebGPU device");
      await fn(device);
    },
  });
}

export function randomValues(n: number, seed: number, scale = 1): Float32Array {
  const values = randnValues(n, seed);
  if (scale !== 1) { for (let i = 0; i < n; i++) values[i] *= scale; }
  return values;
}

export async function readF32(t: Tensor): Promise<Float32Array> {
  return (await t.read()) as Float32Array;
}

export function disposeAll(...tensors: (Tensor | Tensor[])[]): void {
  for (const t of tensors.flat()) t.dispose();
}

let gpuContext: Promise<GpuContext> | null = null;

/** A test that drives WebGPU programs directly on one GpuContext shared by the file. */
export function gpuTest(name: string, fn: (ctx: GpuContext) => Promise<void>): void {
  Deno.test({
    name,
    ignore: skipWebGpu,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      gpuContext ??= (async () => {
        const adapter = await navigator.gpu?.requestAdapter();
        if (!adapter) throw new Error("no WebGPU adapter");
        return new GpuContext(await adapter.requestDevice());
      })();
      await fn(await gpuContext);
    },
  });
}

export async function readGpu(ctx: GpuContext, storage: GpuStorage, n: number): Promise<Float32Array> {
  return new Float32Array(await ctx.read(storage, n * 4));
}
