// Direct algorithms: every block goes straight from its sender to its receiver, inline in the
// envelope when it fits (one round of hand-offs), by place when it lies in the world's memory (the
// receiver reads it where it is, envelope.ts), or else streamed through the channel right after the
// envelopes. Inline reductions combine the ranks' values in group order 0 .. n-1, rounding f32 after
// every combination, so every rank computes the same bits; peerReduceScatter's chunk k combines
// x[k], x[k+1], …, x[k−1] (indices mod n), starting from its own rank's values so that it may
// overwrite them (an in-place all-reduce).
//
// Bytes each rank sends: all-reduce (n−1)·M; reduce-scatter M − |chunk p|; broadcast (n−1)·M at the
// root; reduce M at every non-root; all-gather, gather: its block to each receiver; scatter, all-to-all:
// each block to its receiver. By place, a byte counts when its receiver reports it read.

import type { Ports } from "./channel.ts";
import type { Descriptor } from "./descriptor.ts";
import {
  byPlace,
  encodeForSlots,
  type Envelope,
  exchangeEnvelopes,
  inlineLimit,
  receiveEnvelope,
  releaseAll,
  sendEnvelope,
  settle,
} from "./envelope.ts";
import { CollectiveMismatchError } from "./errors.ts";
import { isViewAt } from "./host.ts";
import { combine, type CommArray, finishAvg, type ReduceOp } from "./reduce_kernels.ts";
import { type ChunkLayout, chunkLayout, equalSplit, ringAllGather, ringAllReduce, type RingGroup } from "./ring.ts";

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
  if (op === "avg") finishAvg(output as Float32Array | Uint16Array, n);
}

/** Envelopes only: a barrier, or the descriptor check before a ring. */
export function exchangeOnly(call: Call): void {
  releaseAll(exchangeEnvelopes(call.ports, call.members, call.me, call.descriptor, () => null, call.context));
}

/** `output` may be `input` itself (in place). */
export function directAllReduce(call: Call, op: ReduceOp, input: CommArray, output: CommArray): void {
  const envelopes = exchangeEnvelopes(call.ports, call.members, call.me, call.descriptor, () => bytesOf(input), call.context);
  const own = isViewAt(output, input, 0) ? input.slice() : input;
  reduceInOrder(call.members.length, op, output, (r) => r === call.me ? own : payloadAs(input, envelopes[r]));
  releaseAll(envelopes);
}

/** `output` may be this rank's own chunk of `input` (in place). */
export function directReduceScatter(call: Call, op: ReduceOp, input: CommArray, output: CommArray, layout: ChunkLayout): void {
  const block = (array: CommArray, r: number) => array.subarray(layout.offsets[r], layout.offsets[r] + layout.sizes[r]);
  const envelopes = exchangeEnvelopes(
    call.ports,
    call.members,
    call.me,
    call.descriptor,
    (to) => bytesOf(block(input, to)),
    call.context,
  );
  const ownChunk = block(input, call.me);
  const own = isViewAt(output, input, layout.offsets[call.me]) ? ownChunk.slice() : ownChunk;
  reduceInOrder(call.members.length, op, output, (r) => r === call.me ? own : payloadAs(input, envelopes[r]));
  releaseAll(envelopes);
}

/**
 * The root sends `source` (its x), by place when it lies in the world's memory, inline when it fits;
 * the other members receive it into `data`, and so does the root (its own copy overlaps the others'
 * reads). Returns the algorithm ("peer" or "direct"), or null when only the descriptors were
 * exchanged and the values must still be sent otherwise (the root's `data` still to be filled).
 */
export function directBroadcast(call: Call, root: number, source: CommArray, data: CommArray): "peer" | "direct" | null {
  const { ports, members, me, context } = call;
  const payloadFor = () => me === root ? bytesOf(source) : null;
  const envelopes = exchangeEnvelopes(ports, members, me, call.descriptor, payloadFor, context, "placed");
  const placed = me === root ? byPlace(ports, bytesOf(source)) : envelopes[root]!.placed;
  const delivered = placed || (me === root ? fitsInline(ports, source.byteLength) : envelopes[root]!.payload !== null);
  if (delivered && me !== root) data.set(payloadAs(data, envelopes[root]));
  if (delivered && me === root && !isViewAt(data, source, 0)) data.set(source);
  releaseAll(envelopes);
  settle(ports, members, me, payloadFor, envelopes, true, context);
  return placed ? "peer" : delivered ? "direct" : null;
}

/**
 * Reduce-scatter by place: when every member's input lies in the world's memory, each rank reads
 * its chunk of every member's input where it lies and reduces them into
 * `output` (which may be its own chunk of its own input), in the order x[me], x[me+1], …; returns
 * false, having moved nothing but descriptors, when some member's input must go by the ring instead.
 */
export function peerReduceScatter(call: Call, op: ReduceOp, input: CommArray, output: CommArray, layout: ChunkLayout): boolean {
  const { ports, members, me, context } = call;
  const n = members.length;
  const block = (r: number) => bytesOf(input.subarray(layout.offsets[r], layout.offsets[r] + layout.sizes[r]));
  const inWorld = input.buffer === ports.world.buffer;
  const payloadFor = (to: number) => inWorld ? block(to) : null;
  const envelopes = exchangeEnvelopes(ports, members, me, call.descriptor, payloadFor, context, "placed");
  // Every member decides alike: its own input and, through their envelopes, every other member's.
  const delivered = inWorld && envelopes.every((envelope, r) => r === me || envelope!.payload !== null);
  if (delivered) {
    const valueOf = (r: number) =>
      r === me ? input.subarray(layout.offsets[me], layout.offsets[me] + layout.sizes[me]) : payloadAs(input, envelopes[r]);
    ports.reducer.combine(op, output, valueOf(me), valueOf((me + 1) % n));
    for (let step = 2; step < n; step++) ports.reducer.combine(op, output, output, valueOf((me + step) % n));
    if (op === "avg") finishAvg(output as Float32Array | Uint16Array, n);
  }
  releaseAll(envelopes);
  settle(ports, members, me, payloadFor, envelopes, delivered, context);
  return delivered;
}

/** Non-roots send their values to the root, which reduces in group order into `output`. */
export function directReduce(call: Call, root: number, op: ReduceOp, input: CommArray, output: CommArray): void {
  const envelopes = exchangeEnvelopes(
    call.ports,
    call.members,
    call.me,
    call.descriptor,
    (to) => to === root ? bytesOf(input) : null,
    call.context,
  );
  if (call.me === root) {
    reduceInOrder(call.members.length, op, output, (r) => r === root ? input : payloadAs(input, envelopes[r]));
  }
  releaseAll(envelopes);
}

/**
 * All-reduce of a message too large to go inline: a reduce-scatter by place, when every member's
 * input lies in the world's memory, then an all-gather of the reduced chunks (by place where the
 * outputs lie there, by the ring otherwise); or else the ring all-reduce. Returns the algorithm used.
 */
export function largeAllReduce(call: Call, op: ReduceOp, input: CommArray, output: CommArray): string {
  const layout = chunkLayout(equalSplit(input.length, call.members.length));
  const own = output.subarray(layout.offsets[call.me], layout.offsets[call.me] + layout.sizes[call.me]);
  if (!peerReduceScatter(call, op, input, own, layout)) {
    ringAllReduce(call, op, input, output);
    return "ring";
  }
  const { ringLayout } = allGatherDirect(call, own, output, layout.sizes);
  if (ringLayout.sizes.every((size) => size === 0)) return "peer";
  ringAllGather(call, output, ringLayout);
  return "peer+ring";
}

/**
 * The direct part of an all-gather: blocks in the world's memory travel by place to every member,
 * others inline when they fit; the rest are left to the ring, whose layout (delivered blocks as size
 * 0) is returned. `output` (the caller's `out`, of the checked length, or a new array) holds every
 * delivered block and this rank's own block. `counts` (the result's layout) may come from the
 * caller; by default every member's element count.
 */
export function allGatherDirect(
  call: Call,
  input: CommArray,
  out: CommArray | undefined,
  counts?: readonly number[],
): { output: CommArray; ringLayout: ChunkLayout; placed: boolean } {
  const { ports, members, me, context } = call;
  const own = bytesOf(input);
  const envelopes = exchangeEnvelopes(ports, members, me, call.descriptor, () => own, context, "placed");
  const sizes = counts ?? envelopes.map((envelope) => envelope ? envelope.count : input.length);
  const offsets = sizes.map((_, r) => sizes.slice(0, r).reduce((a, b) => a + b, 0));
  const output = out ?? new (input.constructor as new (length: number) => CommArray)(sizes.reduce((a, b) => a + b, 0));
  if (!isViewAt(input, output, offsets[me])) output.set(input, offsets[me]);
  envelopes.forEach((envelope, r) => {
    if (envelope?.payload) output.set(payloadAs(input, envelope), offsets[r]);
  });
  releaseAll(envelopes);
  settle(ports, members, me, () => own, envelopes, true, context);
  const delivered = (r: number) =>
    r === me ? byPlace(ports, own) || fitsInline(ports, own.length) : envelopes[r]!.payload !== null;
  const placed = envelopes.some((envelope, r) => r === me ? byPlace(ports, own) : envelope!.placed);
  return { output, ringLayout: { offsets, sizes: sizes.map((size, r) => delivered(r) ? 0 : size) }, placed };
}

const SWAP_BYTES = 1 << 16;
const swapScratch = new Uint8Array(SWAP_BYTES);

/** Exchanges the contents of two byte ranges of equal length, a scratch-sized piece at a time. */
function swapBytes(a: Uint8Array, b: Uint8Array): void {
  for (let i = 0; i < a.length; i += SWAP_BYTES) {
    const [x, y] = [a.subarray(i, i + SWAP_BYTES), b.subarray(i, i + SWAP_BYTES)];
    const held = swapScratch.subarray(0, x.length);
    held.set(x);
    x.set(y);
    y.set(held);
  }
}

/**
 * Exchanges blocks between members: `outgoing(r)` is the block for member r (null: nothing), and
 * `incoming(descriptors)` — called once the envelopes are in, with every member's descriptor in
 * group order — returns the array that receives each member's block (null: nothing expected).
 * Blocks that fit travel inline and blocks in the world's memory by place; the others are streamed
 * after the envelopes in a shifted pairwise schedule (step s: send to me+s while receiving from
 * me−s, slot by slot), which cannot deadlock.
 *
 * `inPlace` (an all-to-all whose result goes where this rank's outgoing blocks lie, block r of
 * member s trading places with block s of member r): when every member works in place with every
 * block in the world's memory, the two ranks of each pair swap the two blocks where they lie, the
 * lower rank the first half of the bytes and the higher rank the rest, so each byte moves once and
 * the pair shares the work; incoming is not called and the result is true. Every member decides it
 * alike, from its own blocks and the envelopes. Otherwise the blocks go as above and the result is
 * false; an in-place rank must then receive elsewhere, since its peers may be reading its blocks.
 */
export function exchangeBlocks(
  call: Call,
  outgoing: (r: number) => Uint8Array | null,
  incoming: (descriptors: readonly Descriptor[]) => (Uint8Array | null)[],
  inPlace = false,
): boolean {
  const { ports, members, me, context } = call;
  const n = members.length;
  const delivered = (block: Uint8Array | null): boolean =>
    block !== null && (byPlace(ports, block) || fitsInline(ports, block.length));
  const envelopes = exchangeEnvelopes(ports, members, me, call.descriptor, outgoing, context, inPlace ? "inPlace" : "placed");
  const swaps = inPlace &&
    envelopes.every((envelope) =>
      envelope ? envelope.inPlace && envelope.placed : members.every((_, r) => r === me || byPlace(ports, outgoing(r)))
    );
  if (swaps) {
    envelopes.forEach((envelope, r) => {
      if (!envelope) return;
      const [mine, theirs] = [outgoing(r)!, envelope.payload!];
      const half = Math.floor(mine.length / 2);
      if (me < r) swapBytes(mine.subarray(0, half), theirs.subarray(0, half));
      else swapBytes(mine.subarray(half), theirs.subarray(half));
    });
    releaseAll(envelopes);
    settle(ports, members, me, outgoing, envelopes, true, context);
    return true;
  }
  const into = incoming(envelopes.map((envelope) => envelope?.descriptor ?? call.descriptor));
  const streamedIn: (Uint8Array | null)[] = members.map(() => null);
  let mismatch: CollectiveMismatchError | null = null;
  envelopes.forEach((envelope, r) => {
    const block = into[r];
    if (!envelope || !block) return;
    if (!envelope.payload) streamedIn[r] = block;
    else if (envelope.payload.length !== block.length) {
      mismatch ??= blockSizeMismatch(call, r, block.length, envelope.payload.length);
    } else block.set(envelope.payload);
  });
  releaseAll(envelopes);
  settle(ports, members, me, outgoing, envelopes, mismatch === null, context);
  if (mismatch) throw mismatch;

  const slot = ports.slotBytes;
  for (let step = 1; step < n; step++) {
    const to = (me + step) % n;
    const from = (me - step + n) % n;
    const block = outgoing(to);
    const send = block && !delivered(block) ? block : null;
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
  return false;
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
    got.seq !== expected.seq
      ? `sequence: rank ${src} sends its message #${got.seq} to rank ${ports.world.rank}, which receives #${expected.seq}`
      : "",
    got.tag !== expected.tag
      ? `tag: rank ${src} sends ${JSON.stringify(got.tag)}, rank ${ports.world.rank} receives ${JSON.stringify(expected.tag)}`
      : "",
    got.dtype !== expected.dtype
      ? `dtype: rank ${src} sends ${got.dtype}, rank ${ports.world.rank} receives ${expected.dtype}`
      : "",
    got.count !== expected.count
      ? `size: rank ${src} sends ${got.count} elements, rank ${ports.world.rank} receives ${expected.count}`
      : "",
  ].filter(Boolean);
  if (differences.length > 0) {
    envelope.release();
    throw new CollectiveMismatchError({
      ranks: [src, ports.world.rank],
      kind: "send",
      tag: expected.tag,
      difference: differences.join("; "),
    });
  }
  if (envelope.payload) into.set(envelope.payload);
  envelope.release();
  if (!envelope.payload) ports.recv(src, into, context);
}
