// Dtype conversion (kernels/cast.wgsl). On the GPU every dtype is packed into 32-bit words: f16 two
// per word and u8/i8 four per word, in the byte order of the host's typed arrays, so uploads and
// reads move the same bytes a Uint16Array or Uint8Array holds.

import { type DType, DTYPE_BYTES } from "../../../tensor/dtype.ts";
import { type GpuContext, type GpuStorage, Params } from "../gpu_context.ts";
import code from "../../../../kernels/cast.wgsl" with { type: "text" };

const source = { name: "cast", code };
const WORKGROUP = 256;
const DTYPE_CODES: Record<DType, number> = { f32: 0, f16: 1, i32: 2, u8: 3, i8: 4 };

/** Converts n elements of x from one dtype to another into a new storage. */
export function cast(ctx: GpuContext, x: GpuStorage, n: number, from: DType, to: DType): GpuStorage {
  const bytes = n * DTYPE_BYTES[to];
  const out = ctx.allocate(bytes, false);
  if (n === 0) return out;
  if (from === to) {
    ctx.copy(x, 0, out, 0, Math.ceil(bytes / 4) * 4);
    return out;
  }
  const words = Math.ceil(bytes / 4);
  const pipeline = ctx.pipeline(source, "main", {}, { FROM: DTYPE_CODES[from], TO: DTYPE_CODES[to] });
  ctx.dispatch(pipeline, new Params(2).u32(n).u32(words), [x, out], Math.ceil(words / WORKGROUP));
  return out;
}
