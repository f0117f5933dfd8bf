// Direct algorithms: every block goes straight from its sender to its receiver, inline in the
// envelope when it fits (one round of hand-offs), or streamed through the channel right after the
// envelopes. Reductions combine the ranks' values in group order 0 .. n-1, rounding f32 after every
// combination, so every rank computes the same bits.
//
// Bytes each rank sends: all-reduce (n−1)·M; reduce-scatter M − |chunk p|; broadcast (n−1)·M at the
// root; reduce M at every non-root; all-gather, gather: its block to each receiver; scatter, all-to-all:
// each block to its receiver.

import type { Ports } from "./channel.ts";
import type { Descriptor } from "./descriptor.ts";
import { encodeForSlots, type Envelope, exchangeEnvelopes, inlineLimit, receiveEnvelope, releaseAll, sendEnvelope } from "./envelope.ts";
import { CollectiveMismatchError } from "./errors.ts";
import { type CommArray, combine, finishAvg, type ReduceOp } from "./reduce_kernels.ts";
import type { ChunkLayout, RingGroup } from "./ring.ts";

export interface Call extends RingGroup {
  descriptor: Descriptor;
}

export function bytesOf(array: CommArray): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

/** A typed view of an inline payload, of the same type as `like`. */
function payloadAs(like: CommArray, envelope: Envelope | null): CommArray {
  const payload = envelope!.payload!;
  const View = like.constructor as new (buffer: ArrayBufferLike, byteOffset: number, length: number) => CommArray;
  return new View(payload.buffer, payload.byteOffset, payload.length / like.BYTES_PER_ELEMENT);
}

/** Whether a block of `bytes` bytes travels inline in its envelope. */
export function fitsInline(ports: Ports, bytes: number): boolean {
  return bytes <= inlineLimit(ports.slotBytes);
}

/** output = input[0] op input[1] op … in group order; `valueOf(r)` is rank r's contribution. */
function reduceInOrder(n: number, op: ReduceOp, output: CommArray, valueOf: (r: number) => CommArray): void {
  output.set(valueOf(0));
  for (let r = 1; r < n; r++) combine(op, output, output, valueOf(r));
  if (op === "avg") finishAvg(output as Float32Array, n);
}

/** Envelopes only: a barrier, or the descriptor check before a ring. */
export function exchangeOnly(call: Call): void {
  releaseAll(exchangeEnvelopes(call.ports, call.members, call.me, call.descriptor, () => null, call.context));
}

/** `output` may be `input` itself (in place). */
export function directAllReduce(call: Call, op: ReduceOp, input: CommArray, output: CommArray): void {
  const envelopes = exchangeEnvelopes(call.ports, call.members, call.me, call.descriptor, () => bytesOf(input), call.context);
  const own = output === input ? input.slice() : input;
  reduceInOrder(call.members.length, op, output, (r) => r === call.me ? own : payloadAs(input, envelopes[r]));
  releaseAll(envelopes);
}

export function directReduceScatter(call: Call, op: ReduceOp, input: CommArray, output: CommArray, layout: ChunkLayout): void {
  const block = (array: CommArray, r: number) => array.subarray(layout.offsets[r], layout.offsets[r] + layout.sizes[r]);
  const envelopes = exchangeEnvelopes(call.ports, call.members, call.me, call.descriptor, (to) => bytesOf(block(input, to)), call.context);
  reduceInOrder(call.members.length, op, output, (r) => r === call.me ? block(input, r) : payloadAs(input, envelopes[r]));
  releaseAll(envelopes);
}

/** `data` holds the root's values at the root and receives them elsewhere. */
export function directBroadcast(call: Call, root: number, data: CommArray): void {
  const envelopes = exchangeEnvelopes(call.ports, call.members, call.me, call.descriptor, () => call.me === root ? bytesOf(data) : null, call.context);
  if (call.me !== root) data.set(payloadAs(data, envelopes[root]));
  releaseAll(envelopes);
}

/** Non-roots send their values to the root, which reduces in group order into `output`. */
export function directReduce(call: Call, root: number, op: ReduceOp, input: CommArray, output: CommArray): void {
  const envelopes = exchangeEnvelopes(call.ports, call.members, call.me, call.descriptor, (to) => to === root ? bytesOf(input) : null, call.context);
  if (call.me === root) reduceInOrder(call.members.length, op, output, (r) => r === root ? input : payloadAs(input, envelopes[r]));
  releaseAll(envelopes);
}

/**
 * The direct part of an all-gather: blocks that fit travel inline to every member; larger blocks are
 * left to the ring, whose layout (inline blocks as size 0) is returned. `output` (the caller's `out`,
 * of the checked length, or a new array) holds every inline block and this rank's own block.
 */
export function allGatherInline(call: Call, input: CommArray, out: CommArray | undefined): { output: CommArray; ringLayout: ChunkLayout } {
  const { ports, members, me, context } = call;
  const own = fitsInline(ports, input.byteLength) ? bytesOf(input) : null;
  const envelopes = exchangeEnvelopes(ports, members, me, call.descriptor, () => own, context);
  const counts = envelopes.map((envelope) => envelope ? envelope.count : input.length);
  const offsets = counts.map((_, r) => counts.slice(0, r).reduce((a, b) => a + b, 0));
  const output = out ?? new (input.constructor as new (length: number) => CommArray)(counts.reduce((a, b) => a + b, 0));
  output.set(input, offsets[me]);
  envelopes.forEach((envelope, r) => {
    if (envelope?.payload) output.set(payloadAs(input, envelope), offsets[r]);
  });
  releaseAll(envelopes);
  const sizes = counts.map((count) => fitsInline(ports, count * input.BYTES_PER_ELEMENT) ? 0 : count);
  return { output, ringLayout: { offsets, sizes } };
}

/**
 * Exchanges blocks between members: `outgoing(r)` is the block for member r (null: nothing), and
 * `incoming(descriptors)` — called once the envelopes are in, with every member's descriptor in
 * group order — returns the array that receives each member's block (null: nothing expected).
 * Blocks that fit travel inline; larger ones are streamed after the envelopes in a shifted pairwise
 * schedule (step s: send to me+s while receiving from me−s, slot by slot), which cannot deadlock.
 */
export function exchangeBlocks(
  call: Call,
  outgoing: (r: number) => Uint8Array | null,
  incoming: (descriptors: readonly Descriptor[]) => (Uint8Array | null)[],
): void {
  const { ports, members, me, context } = call;
  const n = members.length;
  const inline = (block: Uint8Array | null) => block !== null && fitsInline(ports, block.length) ? block : null;
  const envelopes = exchangeEnvelopes(ports, members, me, call.descriptor, (to) => inline(outgoing(to)), context);
  const into = incoming(envelopes.map((envelope) => envelope?.descriptor ?? call.descriptor));
  const streamedIn: (Uint8Array | null)[] = members.map(() => null);
  envelopes.forEach((envelope, r) => {
    const block = into[r];
    if (!envelope || !block) return;
    if (!envelope.payload) {
      streamedIn[r] = block;
      return;
    }
    if (envelope.payload.length !== block.length) throw blockSizeMismatch(call, r, block.length, envelope.payload.length);
    block.set(envelope.payload);
  });
  releaseAll(envelopes);

  const slot = ports.slotBytes;
  for (let step = 1; step < n; step++) {
    const to = (me + step) % n;
    const from = (me - step + n) % n;
    const block = outgoing(to);
    const send = block && !inline(block) ? block : null;
    const receive = streamedIn[from];
    const pieces = Math.max(send ? Math.ceil(send.length / slot) : 0, receive ? Math.ceil(receive.length / slot) : 0);
    if (send) ports.ledger.countMessage(members[to]);
    for (let i = 0; i < pieces; i++) {
      const begin = i * slot;
      if (send && begin < send.length) {
        const piece = send.subarray(begin, begin + slot);
        const channel = ports.out[members[to]];
        ports.bytes.set(piece, channel.acquire(context));
        channel.commit(piece.length);
      }
      if (receive && begin < receive.length) {
        const length = Math.min(slot, receive.length - begin);
        const channel = ports.in[members[from]];
        const at = channel.peek(context);
        receive.set(ports.bytes.subarray(at, at + length), begin);
        channel.release();
      }
    }
  }
}

function blockSizeMismatch(call: Call, from: number, expected: number, got: number): CollectiveMismatchError {
  const { members, me, descriptor } = call;
  return new CollectiveMismatchError({
    ranks: [members[me], members[from]],
    kind: descriptor.kind,
    tag: descriptor.tag,
    difference: `size differs: rank ${members[me]} expects ${expected} bytes from rank ${members[from]}, which sent ${got}`,
  });
}

/** Point-to-point send to global rank dst: an envelope, inline payload when small, else streamed. */
export function sendTo(ports: Ports, dst: number, descriptor: Descriptor, data: Uint8Array, context: Call["context"]): void {
  const inline = fitsInline(ports, data.length);
  sendEnvelope(ports, dst, encodeForSlots(descriptor, ports.slotBytes), inline ? data : null, context);
  if (!inline) ports.send(dst, data, context);
}

/** Receives a send from global rank src after checking its descriptor against `expected`. */
export function recvFrom(ports: Ports, src: number, expected: Descriptor, into: Uint8Array, context: Call["context"]): void {
  const envelope = receiveEnvelope(ports, src, context);
  const got = envelope.descriptor;
  const differences = [
    got.kind !== "send" ? `kind: rank ${src} calls ${got.kind}` : "",
    got.seq !== expected.seq ? `sequence: rank ${src} sends its message #${got.seq} to rank ${ports.world.rank}, which receives #${expected.seq}` : "",
    got.tag !== expected.tag ? `tag: rank ${src} sends ${JSON.stringify(got.tag)}, rank ${ports.world.rank} receives ${JSON.stringify(expected.tag)}` : "",
    got.dtype !== expected.dtype ? `dtype: rank ${src} sends ${got.dtype}, rank ${ports.world.rank} receives ${expected.dtype}` : "",
    got.count !== expected.count ? `size: rank ${src} sends ${got.count} elements, rank ${ports.world.rank} receives ${expected.count}` : "",
  ].filter(Boolean);
  if (differences.length > 0) {
    envelope.release();
    throw new CollectiveMismatchError({ ranks: [src, ports.world.rank], kind: "send", tag: expected.tag, difference: differences.join("; ") });
  }
  if (envelope.payload) into.set(envelope.payload);
  envelope.release();
  if (!envelope.payload) ports.recv(src, into, context);
}
