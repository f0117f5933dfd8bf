// The options that describe a parallel layout and ZeRO++, shared by `shardlab train` and
// `shardlab memory`: their parseArgs specs, their usage lines, and the part of a TrainConfig they set.

import type { SpImpl, ZeroStage } from "../src/parallel/layout.ts";
import type { CommDType } from "../src/parallel/partition_codec.ts";
import type { TrainConfig } from "../src/train/config.ts";
import { UsageError } from "./usage.ts";

export const LAYOUT_OPTIONS = {
  dp: { type: "string" },
  tp: { type: "string" },
  sp: { type: "string" },
  "sp-impl": { type: "string" },
  zero: { type: "string" },
  nodes: { type: "string" },
  "zero-quantized-weights": { type: "boolean" },
  "zero-hpz-partition-size": { type: "string" },
  "zero-quantized-gradients": { type: "boolean" },
  zeropp: { type: "boolean" },
  "quant-bits": { type: "string" },
  "quant-block": { type: "string" },
  "comm-dtype": { type: "string" },
} as const;

export const LAYOUT_USAGE = `parallel layout (world = dp × tp × sp ranks, each a worker with its own device):
  --dp D                     data-parallel replicas (default 1)
  --tp T                     tensor-parallel ranks, Megatron (default 1)
  --sp S                     sequence-parallel ranks (default 1)
  --sp-impl ulysses|megatron DeepSpeed-Ulysses head exchange, or Megatron-SP on the sp ranks (default ulysses)
  --zero 0|1|2|3             ZeRO stage over the data-parallel ranks (default 0: DDP)
  --nodes N                  simulated nodes; consecutive ranks share one (default 1)`;

export const ZEROPP_USAGE = `ZeRO++ (on --zero 3; names after DeepSpeed's config keys):
  --zero-quantized-weights   qwZ: weights all-gathered as block-quantized INT8
  --zero-hpz-partition-size N
                             hpZ: a secondary partition over each node's N ranks (N = ranks per
                             node; 1, the default, is off) serves the backward all-gather
  --zero-quantized-gradients qgZ: gradients averaged by a hierarchical INT4 all-to-all
  --zeropp                   all three
  --quant-bits 8|4           width of the quantized values (default: INT8 weights, INT4 gradients)
  --quant-block N            elements per quantization block, one f32 scale each (default 2048)
  --comm-dtype f32|f16       what ZeRO-3 moves unquantized travels in (default f32; f16 is the
                             ZeRO++ paper's baseline)`;

/** The values parseArgs gives for LAYOUT_OPTIONS. */
export type LayoutValues = {
  [K in keyof typeof LAYOUT_OPTIONS]?: typeof LAYOUT_OPTIONS[K]["type"] extends "boolean" ? boolean : string;
};

/** Reads a numeric option, naming it when the text is not a number. */
export function numberOption(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === "" || Number.isNaN(value)) throw new UsageError(`--${name} must be a number, got "${text}"`);
  return value;
}

export function optionalNumber(name: string, text: string | undefined): number | undefined {
  return text === undefined ? undefined : numberOption(name, text, 0);
}

/** The layout and ZeRO++ part of a TrainConfig, as given (checked later, with the rest of the config). */
export function layoutConfig(v: LayoutValues): Partial<TrainConfig> {
  return {
    dp: numberOption("dp", v.dp, 1),
    tp: numberOption("tp", v.tp, 1),
    sp: numberOption("sp", v.sp, 1),
    zero: numberOption("zero", v.zero, 0) as ZeroStage,
    nodes: numberOption("nodes", v.nodes, 1),
    spImpl: (v["sp-impl"] ?? "ulysses") as SpImpl,
    zeroQuantizedWeights: v["zero-quantized-weights"],
    zeroHpzPartitionSize: optionalNumber("zero-hpz-partition-size", v["zero-hpz-partition-size"]),
    zeroQuantizedGradients: v["zero-quantized-gradients"],
    zeropp: v.zeropp,
    quantBits: optionalNumber("quant-bits", v["quant-bits"]) as 4 | 8 | undefined,
    quantBlock: optionalNumber("quant-block", v["quant-block"]),
    commDtype: v["comm-dtype"] as CommDType | undefined,
  };
}
