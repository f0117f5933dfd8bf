// The two collectives of ZeRO++ that move block-quantized values (ops.quantize: symmetric INT8 or
// INT4, one f32 scale per block, quantized and dequantized on the rank's device). One message is
// one u8 payload: the packed levels of its tensors, then their scales' f32 bytes; the ledger counts
// exactly those bytes.
//
//   quantizedAllGather       qwZ: each rank quantizes its part; the all-gather moves levels and
//                            scales; every rank dequantizes all parts into the gathered block
//   quantizedReduceScatter   qgZ: the gradient reduce-scatter as a hierarchical all-to-all over the
//                            world of `nodes` nodes of g ranks. Each rank quantizes its W = g · nodes
//                            chunks, swizzled so that the chunks bound for local rank l are slots
//                            l · nodes … (l + 1) · nodes − 1; the intra-node all-to-all gives local
//                            rank l its node's g copies of them; it dequantizes, sums and quantizes
//                            again (one program); the inter-node all-to-all sends chunk b · g + l to
//                            node b's rank l, which dequantizes and sums the nodes' partial sums. Each
//                            rank ends with the chunk a reduce-scatter would give it, the sum over
//                            all W ranks, divided by W once, in the last dequantize. A world of one
//                            node skips the inter-node hop, one rank per node the intra-node hop.
//
// A block holding NaN or ±Inf quantizes to a NaN scale; the rank that would send it refuses,
// naming the tag and itself, rather than spread garbage (the launcher then stops the world, as for
// any failed rank).

import type { Comm } from "../comm/collectives.ts";
import * as ops from "../tensor/ops/index.ts";
import { quantizedBytes, type QuantSpec } from "../tensor/ops/index.ts";
import { tidy } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { Device } from "../tensor/device.ts";

/** Quantized tensors of n elements each, on the host: their packed levels and scales, tensor after tensor. */
interface HostQuantized {
  q: Uint8Array;
  scales: Float32Array;
}

/** Bytes and scales of one quantized tensor of n elements. */
function tensorSize(n: number, spec: QuantSpec): { bytes: number; blocks: number } {
  return { bytes: quantizedBytes(n, spec.bits), blocks: Math.ceil(n / spec.block) };
}

/** Bytes on the wire of one message of `tensors` quantized tensors of n elements: levels and scales. */
export function quantizedMessageBytes(n: number, tensors: number, spec: QuantSpec): number {
  const { bytes, blocks } = tensorSize(n, spec);
  return tensors * (bytes + 4 * blocks);
}

/** The quantized tensors on the host, to send; a NaN scale is refused, naming `tag` and this rank. */
async function toSend(quantized: ops.Quantized, group: Comm, spec: QuantSpec, tag: string): Promise<HostQuantized> {
  const [q, scales] = await Promise.all([quantized.q.read(), quantized.scales.read()]);
  ops.checkScales(scales as Float32Array, spec.block, `${tag}: rank ${group.globalRank}'s values`);
  return { q: q as Uint8Array, scales: scales as Float32Array };
}

/** Messages for consecutive receivers, `perReceiver` tensors each, back to back. */
function messages(host: HostQuantized, receivers: number, perReceiver: number, n: number, spec: QuantSpec): Uint8Array {
  const { bytes, blocks } = tensorSize(n, spec);
  const size = quantizedMessageBytes(n, perReceiver, spec);
  const out = new Uint8Array(receivers * size);
  for (let r = 0; r < receivers; r++) {
    const first = r * perReceiver;
    out.set(host.q.subarray(first * bytes, (first + perReceiver) * bytes), r * size);
    const scales = host.scales.subarray(first * blocks, (first + perReceiver) * blocks);
    out.set(new Uint8Array(scales.buffer, scales.byteOffset, scales.byteLength), r * size + perReceiver * bytes);
  }
  return out;
}

/** The messages received from every rank of `group` (`perSender` tensors each), joined sender after sender on `device`. */
function received(
  device: Device,
  payload: Uint8Array,
  group: Comm,
  perSender: number,
  n: number,
  spec: QuantSpec,
): ops.Quantized {
  const { bytes, blocks } = tensorSize(n, spec);
  const size = quantizedMessageBytes(n, perSender, spec);
  const q = new Uint8Array(group.size * perSender * bytes);
  const scales = new Float32Array(group.size * perSender * blocks);
  for (let s = 0; s < group.size; s++) {
    const message = payload.subarray(s * size, (s + 1) * size);
    q.set(message.subarray(0, perSender * bytes), s * perSender * bytes);
    scales.set(new Float32Array(message.slice(perSender * bytes).buffer), s * perSender * blocks);
  }
  return { q: device.tensor(q, [q.length], { dtype: "u8" }), scales: device.tensor(scales, [scales.length]) };
}

/** qwZ: every rank's f32 part [n] of the group, all-gathered as block-quantized levels and scales: [size · n]. */
export function quantizedAllGather(group: Comm, part: Tensor, spec: QuantSpec, tag: string): Promise<Tensor> {
  const n = part.size;
  return tidy(async () => {
    const mine = await toSend(ops.quantize(part, spec), group, spec, tag);
    const payload = await group.allGather(messages(mine, 1, 1, n, spec), { tag });
    const all = received(part.device, payload, group, 1, n, spec);
    return ops.dequantize(all.q, all.scales, spec, { n, tensors: group.size });
  });
}

/**
 * qgZ: the average over `world` (every rank of the world, consecutive ranks sharing a node) of each
 * rank's f32 `flat` [world.size · c]: this rank's chunk [c], as a reduce-scatter gives it. Tags
 * zeropp.qgz.intra.<label> and zeropp.qgz.inter.<label>.
 */
export function quantizedReduceScatter(world: Comm, flat: Tensor, spec: QuantSpec, label: string): Promise<Tensor> {
  if (world.size !== world.worldSize) {
    throw new RangeError(
      `qgZ: the gradient all-to-all runs over the whole world (${world.worldSize} ranks), got a group of ${world.size}`,
    );
  }
  if (flat.size % world.size !== 0) {
    throw new RangeError(`qgZ: ${flat.size} gradient elements do not split into ${world.size} equal chunks`);
  }
  const [node, crossNode] = [world.nodeGroup(), world.crossNodeGroup()];
  const [g, nodes, c] = [node.size, crossNode.size, flat.size / world.size];
  const device = flat.device;
  return tidy(async () => {
    let sets = ops.quantize(flat, { ...spec, tensors: world.size, nodes });
    let inputs = 1;
    if (g > 1) {
      const tag = `zeropp.qgz.intra.${label}`;
      const payload = await node.allToAll(messages(await toSend(sets, world, spec, tag), g, nodes, c, spec), { tag });
      sets = received(device, payload, node, nodes, c, spec);
      inputs = g;
      if (nodes > 1) {
        sets = ops.requantizeSum(sets.q, sets.scales, spec, { n: c, tensors: nodes, inputs });
        inputs = 1;
      }
    }
    if (nodes > 1) {
      const tag = `zeropp.qgz.inter.${label}`;
      const payload = await crossNode.allToAll(messages(await toSend(sets, world, spec, tag), nodes, 1, c, spec), { tag });
      sets = received(device, payload, crossNode, 1, c, spec);
      inputs = nodes;
    }
    return ops.dequantize(sets.q, sets.scales, spec, { n: c, inputs, factor: 1 / world.size });
  });
}
