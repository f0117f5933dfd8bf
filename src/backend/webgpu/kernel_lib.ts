// The WGSL files of kernels/lib/, which kernels pull in with `#include "lib/NAME.wgsl"` (resolved by
// preprocess in pipeline_cache.ts). They are imported as text, as the kernels are, so that Deno, the
// esbuild bundle of web/ and npm bundles resolve includes without file-system access: a new lib
// file is added here.

import attentionBackward from "../../../kernels/lib/attention_backward.wgsl" with { type: "text" };
import quant from "../../../kernels/lib/quant.wgsl" with { type: "text" };
import rowReduce from "../../../kernels/lib/row_reduce.wgsl" with { type: "text" };

/** WGSL that kernels include, by include path (relative to kernels/). */
export type KernelLibrary = Readonly<Record<string, string>>;

export const KERNEL_LIB: KernelLibrary = {
  "lib/attention_backward.wgsl": attentionBackward,
  "lib/quant.wgsl": quant,
  "lib/row_reduce.wgsl": rowReduce,
};
