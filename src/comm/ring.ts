// Ring and chain pipelines for large messages.
//
// Ring (all-reduce, reduce-scatter, all-gather): the data is split into n chunks (chunk k is the
// result of group rank k in a reduce-scatter). Each rank only sends to the next rank of the group and
// receives from the previous one. Reduce-scatter: in step s = 0 .. n-2, rank p sends chunk p-1-s;
// chunk k therefore starts at rank k+1 and travels around the ring, each rank adding its own piece,
// until rank k adds its own last. A float sum of chunk k is thus accumulated in the fixed ring order
// ((x[k+1] + x[k+2]) + …) + x[k] (indices mod n), rounded to f32 after every addition.
// All-gather: in step s, rank p sends chunk p-s (its own first, then what it just received).
// Each rank sends every chunk but one per phase: all-reduce sends 2·M − |chunk p| − |chunk p+1| bytes,
// reduce-scatter M − |chunk p|, all-gather M − |chunk p+1| (= 2(n−1)/n·M and (n−1)/n·M when n divides M).
//
// Pipelining: chunks are cut into slot-sized pieces; loop l moves piece l of every chunk through all
// steps. A rank's outgoing piece i depends only on incoming piece i−1 and on the next rank having
// consumed piece i−SLOTS, so with SLOTS ≥ 2 no rank can wait on a rank that waits on it.
// Reductions read the incoming slot and write straight into the outgoing slot.
//
// Chain (broadcast, reduce): ranks in group order starting after (reduce) or at (broadcast) the root,
// each forwarding piece by piece to the next; a reduce accumulates ((x[root+1] + x[root+2]) + …) + x[root].

import type { Ports } from "./channel.ts";
import { combine, type CommArray, finishAvg, type ReduceOp } from "./reduce_kernels.ts";
import type { WaitContext } from "./world.ts";

export interface RingGroup {
  ports: Ports;
  members: readonly number[];
  me: number;
  context: WaitContext;
}

/** Where each of the n chunks lies in the full buffer, in elements. */
export interface ChunkLayout {
  offsets: number[];
  sizes: number[];
}

export function chunkLayout(sizes: readonly number[]): ChunkLayout {
  const offsets: number[] = [];
  let offset = 0;
  for (const size of sizes) {
    offsets.push(offset);
    offset += size;
  }
  return { offsets, sizes: [...sizes] };
}

/** n sizes that add up to count: the first count mod n chunks one element larger. */
export function equalSplit(count: number, n: number): number[] {
  const base = Math.floor(count / n);
  return Array.from({ length: n }, (_, k) => base + (k < count % n ? 1 : 0));
}

function viewOf(like: CommArray, buffer: ArrayBufferLike, byteOffset: number, length: number): CommArray {
  const View = like.constructor as new (buffer: ArrayBufferLike, byteOffset: number, length: number) => CommArray;
  return new View(buffer, byteOffset, length);
}

interface RingJob {
  /** Run the reduce-scatter phase (input → own chunk of output). */
  reduce: boolean;
  /** Run the all-gather phase (own chunk of output → every chunk of output). */
  gather: boolean;
  op: ReduceOp;
  input: CommArray | null;
  /** Receives the results; `outputBase` is the element index of chunk 0 in it (negative for a lone chunk). */
  output: CommArray;
  outputBase: number;
  layout: ChunkLayout;
}

/**
 * Runs the ring phases of a job. The caller has placed this rank's own chunk in `output` when only
 * the gather phase runs.
 */
function runRing(group: RingGroup, job: RingJob): void {
  const { ports, members, me, context } = group;
  const n = members.length;
  const { sizes, offsets } = job.layout;
  const e = job.output.BYTES_PER_ELEMENT;
  const pieceElements = ports.slotBytes / e;
  const next = members[(me + 1) % n];
  const out = ports.out[next];
  const inc = ports.in[members[(me + n - 1) % n]];
  const buffer = ports.world.buffer;
  const chunk = (k: number) => ((k % n) + n) % n;
  const loops = Math.max(0, ...sizes.map((size) => Math.ceil(size / pieceElements)));

  // Piece l of chunk k: element range [start, start + length) of the full buffer, or length 0.
  let start = 0;
  let length = 0;
  const piece = (k: number, l: number) => {
    start = offsets[k] + l * pieceElements;
    length = Math.max(0, Math.min(pieceElements, sizes[k] - l * pieceElements));
    return length > 0;
  };
  const outputView = () => job.output.subarray(start - job.outputBase, start - job.outputBase + length);
  const inputView = () => job.input!.subarray(start, start + length);
  const send = (l: number, fill: (slot: CommArray) => void) => {
    if (l === 0) ports.ledger.countMessage(next);
    const slot = viewOf(job.output, buffer, out.acquire(context), length);
    fill(slot);
    out.commit(length * e);
  };
  const receive = (use: (incoming: CommArray) => void) => {
    use(viewOf(job.output, buffer, inc.peek(context), length));
    inc.release();
  };

  for (let l = 0; l < loops; l++) {
    if (job.reduce) {
      if (piece(chunk(me - 1), l)) send(l, (slot) => slot.set(inputView()));
      for (let s = 1; s <= n - 2; s++) {
        if (!piece(chunk(me - 1 - s), l)) continue;
        receive((incoming) => send(l, (slot) => combine(job.op, slot, incoming, inputView())));
      }
      if (piece(me, l)) {
        receive((incoming) => {
          const result = outputView();
          combine(job.op, result, incoming, inputView());
          if (job.op === "avg") finishAvg(result as Float32Array | Uint16Array, n);
          if (job.gather) send(l, (slot) => slot.set(result));
        });
      }
    } else if (piece(me, l)) {
      send(l, (slot) => slot.set(outputView()));
    }
    if (!job.gather) continue;
    for (let s = 1; s <= n - 2; s++) {
      if (!piece(chunk(me - s), l)) continue;
      receive((incoming) => {
        outputView().set(incoming);
        send(l, (slot) => slot.set(incoming));
      });
    }
    if (piece(chunk(me + 1), l)) receive((incoming) => outputView().set(incoming));
  }
}

/**
 * Ring all-reduce of `input` (n ≥ 2) into `output` (same length; may be `input` itself: each loop
 * reads its input pieces before it writes the same pieces), chunks split equally.
 */
export function ringAllReduce(group: RingGroup, op: ReduceOp, input: CommArray, output: CommArray): void {
  const layout = chunkLayout(equalSplit(input.length, group.members.length));
  runRing(group, { reduce: true, gather: true, op, input, output, outputBase: 0, layout });
}

/** Ring reduce-scatter: `output` receives chunk `me` of the reduction; chunk sizes are `counts`. */
export function ringReduceScatter(
  group: RingGroup,
  op: ReduceOp,
  input: CommArray,
  output: CommArray,
  counts: readonly number[],
): void {
  const layout = chunkLayout(counts);
  runRing(group, { reduce: true, gather: false, op, input, output, outputBase: layout.offsets[group.me], layout });
}

/**
 * Ring all-gather into `output` laid out by `layout`; this rank's block is already in place.
 * Blocks of size 0 in `layout` (e.g. delivered otherwise) are skipped.
 */
export function ringAllGather(group: RingGroup, output: CommArray, layout: ChunkLayout): void {
  runRing(group, { reduce: false, gather: true, op: "sum", input: null, output, outputBase: 0, layout });
}

/** Pipelined chain broadcast from group rank `root`: `data` holds the root's values there and receives them elsewhere. */
export function chainBroadcast(group: RingGroup, root: number, data: CommArray): void {
  const { ports, members, me, context } = group;
  const n = members.length;
  const position = (me - root + n) % n;
  const next = members[(me + 1) % n];
  const pieceElements = ports.slotBytes / data.BYTES_PER_ELEMENT;
  const e = data.BYTES_PER_ELEMENT;
  if (position < n - 1 && data.length > 0) ports.ledger.countMessage(next);
  for (let start = 0; start < data.length; start += pieceElements) {
    const piece = data.subarray(start, start + pieceElements);
    if (position > 0) {
      const inc = ports.in[members[(me + n - 1) % n]];
      piece.set(viewOf(data, ports.world.buffer, inc.peek(context), piece.length));
      inc.release();
    }
    if (position < n - 1) {
      const out = ports.out[next];
      viewOf(data, ports.world.buffer, out.acquire(context), piece.length).set(piece);
      out.commit(piece.length * e);
    }
  }
}

/** Pipelined chain reduce to group rank `root`, into `output` there (output is ignored elsewhere). */
export function chainReduce(group: RingGroup, root: number, op: ReduceOp, input: CommArray, output: CommArray): void {
  const { ports, members, me, context } = group;
  const n = members.length;
  const position = (me - root - 1 + 2 * n) % n; // 0 starts the chain, n-1 is the root
  const next = members[(me + 1) % n];
  const e = input.BYTES_PER_ELEMENT;
  const pieceElements = ports.slotBytes / e;
  const buffer = ports.world.buffer;
  if (position < n - 1 && input.length > 0) ports.ledger.countMessage(next);
  for (let start = 0; start < input.length; start += pieceElements) {
    const own = input.subarray(start, start + pieceElements);
    const length = own.length;
    if (position === 0) {
      const out = ports.out[next];
      viewOf(input, buffer, out.acquire(context), length).set(own);
      out.commit(length * e);
      continue;
    }
    const inc = ports.in[members[(me + n - 1) % n]];
    const incoming = viewOf(input, buffer, inc.peek(context), length);
    if (position === n - 1) {
      const result = output.subarray(start, start + length);
      combine(op, result, incoming, own);
      if (op === "avg") finishAvg(result as Float32Array | Uint16Array, n);
    } else {
      const out = ports.out[next];
      combine(op, viewOf(input, buffer, out.acquire(context), length), incoming, own);
      out.commit(length * e);
    }
    inc.release();
  }
}
