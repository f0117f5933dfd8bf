// The partition codec: how ZeRO's flat groups cross the data group. ZeRO-1/2 and ZeRO-3 move a
// partition only through these two calls (flat_partition.ts), so a codec that changes what goes on
// the wire (ZeRO++'s block-quantized weights and gradients, with the kernels that pack them and
// order them on the device) plugs in here without touching either schedule.
//
// Both take and return tensors on the rank's device; f32Codec moves the values as they are.

import type { Comm } from "../comm/collectives.ts";
import type { Tensor } from "../tensor/tensor.ts";

export interface PartitionCodec {
  /** Every data rank's part [partNumel] of a flat group, joined in data rank order: [partNumel · size]. */
  allGather(data: Comm, part: Tensor, tag: string): Promise<Tensor>;
  /** The average over the data group of each rank's flat group of gradients [paddedNumel]: this rank's part [partNumel]. */
  reduceScatter(data: Comm, flat: Tensor, tag: string): Promise<Tensor>;
}

export const f32Codec: PartitionCodec = {
  allGather: (data, part, tag) => data.allGather(part, { tag }),
  reduceScatter: (data, flat, tag) => data.reduceScatter(flat, { op: "avg", tag }),
};
