// Rotary position embedding (kernels/rope.wgsl). The frequencies theta^(−2j/D) are computed in
// f64 on the host, exactly as the CPU reference does, split into three f32 planes, and kept on the
// device per (D, theta): a small constant table created mapped, so using it never flushes the
// recorded work and it is not counted among the tensors' storages.

import { type GpuContext, GpuStorage, Params } from "../gpu_context.ts";
import code from "../../../../kernels/rope.wgsl" with { type: "text" };

const source = { name: "rope", code };

const WORKGROUP = 64;
/** Workgroups aimed for; beyond it, an invocation walks more rows with the same cos/sin. */
const TARGET_WORKGROUPS = 256;
/** Rows one invocation walks at most, well inside llvmpipe's loop budget (see softmax.ts). */
const MAX_ROWS_PER_BLOCK = 4096;

const frequencyTables = new WeakMap<GpuContext, Map<string, GpuStorage>>();

/** The top `bits` significant bits of v ≥ 0 (fewer when log2 rounds up), truncated. */
function leadingBits(v: number, bits: number): number {
  if (v === 0) return 0;
  const quantum = 2 ** (Math.floor(Math.log2(v)) - bits + 1);
  return Math.floor(v / quantum) * quantum;
}

/** theta^(−2j/D) for j < D/2 as planes [hi (12 bits), mid (12 bits), lo]; their sum is the f64 value to ~2^−48. */
export function frequencyPlanes(D: number, theta: number): Float32Array {
  const half = D / 2;
  const planes = new Float32Array(3 * half);
  for (let j = 0; j < half; j++) {
    const frequency = theta ** (-2 * j / D);
    const hi = leadingBits(frequency, 12);
    const mid = leadingBits(frequency - hi, 12);
    planes[j] = hi;
    planes[half + j] = mid;
    planes[2 * half + j] = frequency - hi - mid;
  }
  return planes;
}

function frequencyTable(ctx: GpuContext, D: number, theta: number): GpuStorage {
  let tables = frequencyTables.get(ctx);
  if (!tables) {
    tables = new Map();
    frequencyTables.set(ctx, tables);
  }
  const key = `${D}|${theta}`;
  let table = tables.get(key);
  if (!table) {
    const planes = frequencyPlanes(D, theta);
    const buffer = ctx.device.createBuffer({
      label: `rope frequencies D=${D} theta=${theta}`,
      size: Math.max(16, planes.byteLength),
      usage: GPUBufferUsage.STORAGE,
      mappedAtCreation: true,
    });
    new Float32Array(buffer.getMappedRange()).set(planes);
    buffer.unmap();
    table = new GpuStorage(buffer, buffer.size);
    tables.set(key, table);
  }
  return table;
}

/** Rotates x [rows, T, D] by p · theta^(−2j/D), p = t + positionOffset; by −angle when inverse. */
export function rope(
  ctx: GpuContext,
  x: GpuStorage,
  rows: number,
  T: number,
  D: number,
  theta: number,
  positionOffset: number,
  inverse: boolean,
): GpuStorage {
  const y = ctx.allocate(rows * T * D * 4, false);
  if (rows * T * D === 0) return y;
  const half = D / 2;
  const vec4 = half % 4 === 0;
  const halfUnits = vec4 ? half / 4 : half;
  const groups = Math.ceil((T * halfUnits) / WORKGROUP);
  const rowsPerBlock = Math.min(Math.ceil(rows / Math.min(rows, Math.ceil(TARGET_WORKGROUPS / groups))), MAX_ROWS_PER_BLOCK);
  const blocks = Math.ceil(rows / rowsPerBlock);
  const params = new Params(7).u32(rows).u32(T).u32(halfUnits).u32(rowsPerBlock).u32(blocks).i32(positionOffset)
    .f32(inverse ? -1 : 1);
  const pipeline = ctx.pipeline(source, "main", { VEC4: vec4 });
  ctx.dispatch(pipeline, params, [x, frequencyTable(ctx, D, theta), y], groups * blocks);
  return y;
}
