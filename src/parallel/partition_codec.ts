// The partition codec: how ZeRO's flat groups cross the data group. ZeRO-1/2 and ZeRO-3 move a
// partition only through these two calls (flat_partition.ts), so a codec that changes what goes on
// the wire plugs in here without touching either schedule:
//
//   plainCodec("f32")   the values as they are (tags as the strategy names them)
//   plainCodec("f16")   cast to f16 on the device for the wire, back to f32 after: the ZeRO++
//                       paper's ZeRO-3 baseline (3M on the wire, M in f16); the master stays f32
//   ZeroppCodec         ZeRO++'s quantized weights, hierarchical partitions and quantized
//                       gradients (zeropp_codec.ts)
//
// Both calls take and return f32 tensors on the rank's device.

import type { Comm } from "../comm/collectives.ts";
import * as ops from "../tensor/ops/index.ts";
import { tidy } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";

/** The dtype ZeRO's partitions travel in when they are not quantized. */
export type CommDType = "f32" | "f16";
export const COMM_DTYPES: readonly CommDType[] = ["f32", "f16"];

/** A ZeRO-3 gather: flat group `group`, the parameters of model block `label`, before its forward or its recomputed backward. */
export interface BlockGather {
  group: number;
  label: string;
  pass: "fwd" | "bwd";
}

export interface PartitionCodec {
  /**
   * Every data rank's part [partNumel] of a flat group, joined in data rank order: [partNumel ·
   * size]. `block` says which ZeRO-3 gather this is (absent for ZeRO-1/2's gather after the step).
   */
  allGather(data: Comm, part: Tensor, tag: string, block?: BlockGather): Promise<Tensor>;
  /**
   * The average over the data group of each rank's flat group of gradients [paddedNumel]: this
   * rank's part [partNumel]. `label` names the model block (ZeRO-3).
   */
  reduceScatter(data: Comm, flat: Tensor, tag: string, label?: string): Promise<Tensor>;
  /** Bytes the codec keeps between calls (hpZ's secondary partitions). */
  memory(): number;
  dispose(): void;
}

/** Gathers and reduce-scatters with plain collectives, the values travelling in `dtype`. */
export function plainCodec(dtype: CommDType): PartitionCodec {
  return {
    allGather: (data, part, tag) => plainAllGather(data, part, dtype, tag),
    reduceScatter: (data, flat, tag) => plainReduceScatter(data, flat, dtype, tag),
    memory: () => 0,
    dispose: () => {},
  };
}

/** All-gather of f32 `part` over `group`, the values travelling in `dtype`. */
export function plainAllGather(group: Comm, part: Tensor, dtype: CommDType, tag: string): Promise<Tensor> {
  if (dtype === "f32") return group.allGather(part, { tag });
  return tidy(async () => ops.cast(await group.allGather(ops.cast(part, "f16"), { tag }), "f32"));
}

/** Average reduce-scatter of f32 `flat` over `group`, the values travelling (and summed, as NCCL's half) in `dtype`. */
function plainReduceScatter(group: Comm, flat: Tensor, dtype: CommDType, tag: string): Promise<Tensor> {
  if (dtype === "f32") return group.reduceScatter(flat, { op: "avg", tag });
  return tidy(async () => ops.cast(await group.reduceScatter(ops.cast(flat, "f16"), { op: "avg", tag }), "f32"));
}
