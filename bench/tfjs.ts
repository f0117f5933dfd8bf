// The TensorFlow.js side of the kernel benchmark: starts TF.js on its WebGPU backend (never its CPU
// backend) and waits for its queued GPU work, the counterpart of shardlab's GpuContext.sync().
//
// Quirks of TF.js under Deno, handled here and in kernels.ts:
// - No browser-global shim is needed: Deno has navigator.gpu, and TF.js's webgpu package registers
//   its backend when imported.
// - Deno loads the packages' Node bundles ("main"), which do not register the chained tensor
//   methods (a.add(b)); the benchmark uses the functional API (tf.add(a, b)) throughout.
// - TF.js records dispatches into its own command encoder and submits every few dispatches, so
//   waiting on the queue alone could miss the last ones: syncTfjs() submits them first.

import type * as Tfjs from "@tensorflow/tfjs-core";
import type { WebGPUBackend } from "@tensorflow/tfjs-backend-webgpu";

export type { Tfjs };

/** TF.js's API, once loadTfjs() has imported it. */
export let tf: typeof Tfjs;
let WebGpuBackendClass: typeof WebGPUBackend;

/**
 * Imports TF.js and resolves with null, or with a note saying why its rows are skipped. shardlab does
 * not depend on TF.js: a repository checkout has it (a devDependency), an installed package may not.
 */
export async function loadTfjs(): Promise<string | null> {
  try {
    tf = await import("@tensorflow/tfjs-core");
    WebGpuBackendClass = (await import("@tensorflow/tfjs-backend-webgpu")).WebGPUBackend;
    return null;
  } catch (error) {
    return `TF.js could not be loaded (${(error as Error).message.split("\n")[0]}), so its rows are skipped; ` +
      "to compare with it, npm install @tensorflow/tfjs-core @tensorflow/tfjs-backend-webgpu";
  }
}

/** Switches TF.js to WebGPU and returns its backend; throws when it ends up on anything else. */
export async function startTfjsWebGpu(): Promise<WebGPUBackend> {
  const ready = await tf.setBackend("webgpu");
  const active = tf.getBackend();
  if (!ready || active !== "webgpu") {
    throw new Error(`TF.js did not start its WebGPU backend (setBackend returned ${ready}, active backend "${active}")`);
  }
  await tf.ready();
  const backend = tf.backend();
  if (!(backend instanceof WebGpuBackendClass)) throw new Error("TF.js reports 'webgpu' but its backend is not a WebGPUBackend");
  return backend as WebGPUBackend;
}

/** Submits TF.js's recorded dispatches and resolves when the GPU has finished them. */
export async function syncTfjs(backend: WebGPUBackend): Promise<void> {
  backend.ensureCommandEncoderReady();
  backend.endComputePassEncoder();
  backend.submitQueue();
  await backend.queue.onSubmittedWorkDone();
}

/** Both libraries must drive the same physical adapter, or their ratio compares two machines. */
export function checkSameAdapter(shardlabDevice: GPUDevice, backend: WebGPUBackend): GPUAdapterInfo {
  const describe = ({ vendor, architecture, device, description }: GPUAdapterInfo) =>
    JSON.stringify({ vendor, architecture, device, description });
  const shardlabAdapter = shardlabDevice.adapterInfo;
  if (describe(shardlabAdapter) !== describe(backend.device.adapterInfo)) {
    throw new Error(
      `shardlab and TF.js got different adapters: ${describe(shardlabAdapter)} vs ${describe(backend.device.adapterInfo)}`,
    );
  }
  return shardlabAdapter;
}
