// Reference results and traffic of the collective cases in fixtures/comm_cases.ts, computed on the
// launching side from the same seeded inputs, independently of src/comm.
//
// The documented algorithms: a message of at most INLINE_BYTES (16 KiB with the default 1 MiB
// channels) goes direct and reduces in group order 0..n-1; a larger all-reduce / reduce-scatter runs
// on the ring, where chunk k accumulates x[k+1], x[k+2], …, x[k] (mod n); a larger reduce runs on the
// chain root+1, root+2, …, root. f32 sums round to f32 after every addition; avg divides the sum.
// Heap arrays (case.heap) travel by place: when every member's input lies in the heap, a larger
// all-reduce / reduce-scatter has rank k reduce chunk k as x[k], x[k+1], …, x[k−1] (mod n) and the
// reduced chunks go to every rank by place (by the ring where outputs are private and too large to
// go inline); all-gather blocks and broadcasts in the heap go by place whatever their size, and an
// in-place all-to-all over heap arrays swaps each pair's blocks where they lie.

import { type Case, groupOf } from "./fixtures/comm_cases.ts";
import { caseInput, type HostArray, hostArray } from "./fixtures/comm_data.ts";
import { f16BitsToF32, f32ToF16Bits } from "../src/tensor/dtype.ts";

export const INLINE_BYTES = 16384;

const BYTES = { f32: 4, i32: 4, u8: 1, f16: 2 };

/** n sizes adding up to total, the first (total mod n) one larger. */
export function equalSplit(total: number, n: number): number[] {
  return Array.from({ length: n }, (_, k) => Math.floor(total / n) + (k < total % n ? 1 : 0));
}

function offsets(sizes: number[]): number[] {
  return sizes.map((_, k) => sizes.slice(0, k).reduce((a, b) => a + b, 0));
}

function newArray(c: Case, length: number): HostArray {
  return hostArray(c.dtype, length);
}

/** f16 bits combine as their values, rounded once to f16. */
function combine(c: Case, a: number, b: number): number {
  if (c.dtype === "f16") return f32ToF16Bits(combineValues({ ...c, dtype: "f32" }, f16BitsToF32(a), f16BitsToF32(b), false));
  return combineValues(c, a, b, true);
}

/** a op b for f32 (rounded to f32 when `round`), i32 or u8. */
function combineValues(c: Case, a: number, b: number, round: boolean): number {
  switch (c.op ?? "sum") {
    case "max":
      return Math.max(a, b);
    case "min":
      return Math.min(a, b);
    default:
      return c.dtype === "f32" ? (round ? Math.fround(a + b) : a + b) : c.dtype === "i32" ? (a + b) | 0 : (a + b) & 255;
  }
}

/** Element i reduced over the inputs in the given order of group ranks. */
function reduceAt(c: Case, inputs: HostArray[], order: number[], i: number): number {
  let acc = inputs[order[0]][i];
  for (let j = 1; j < order.length; j++) acc = combine(c, acc, inputs[order[j]][i]);
  if (c.op !== "avg") return acc;
  return c.dtype === "f16" ? f32ToF16Bits(f16BitsToF32(acc) / order.length) : Math.fround(acc / order.length);
}

const inGroupOrder = (n: number) => Array.from({ length: n }, (_, r) => r);
const peerOrder = (n: number, k: number) => Array.from({ length: n }, (_, j) => (k + j) % n);

/** Whether group rank r's arrays lie in its heap in case c. */
const inHeap = (c: Case, r: number) => c.heap === "all" || (c.heap === "first" && r === 0);
/** Whether a larger all-reduce / reduce-scatter of case c goes by place: every member's input is in the heap. */
const reducesByPlace = (c: Case, n: number) => Array.from({ length: n }, (_, r) => r).every((r) => inHeap(c, r));
const ringOrder = (n: number, k: number) => Array.from({ length: n }, (_, j) => (k + 1 + j) % n);
const chainOrder = (n: number, root: number) => Array.from({ length: n }, (_, j) => (root + 1 + j) % n);

function concat(c: Case, blocks: HostArray[]): HostArray {
  const out = newArray(c, blocks.reduce((s, b) => s + b.length, 0));
  let at = 0;
  for (const block of blocks) {
    out.set(block, at);
    at += block.length;
  }
  return out;
}

/** The value group rank `me` should get in case c (null when the collective returns nothing there). */
export function expectedResult(c: Case, group: number[], me: number): HostArray | null {
  const n = group.length;
  const inputs = group.map((rank, r) => caseInput(c.seed, rank, c.dtype, c.sizes[r]));
  const x = inputs[me];
  const direct = x.length * BYTES[c.dtype] <= INLINE_BYTES;
  switch (c.kind) {
    case "allReduce": {
      const chunks = equalSplit(x.length, n);
      const starts = offsets(chunks);
      const out = newArray(c, x.length);
      for (let k = 0; k < n; k++) {
        const order = direct ? inGroupOrder(n) : reducesByPlace(c, n) ? peerOrder(n, k) : ringOrder(n, k);
        for (let i = starts[k]; i < starts[k] + chunks[k]; i++) out[i] = reduceAt(c, inputs, order, i);
      }
      return out;
    }
    case "reduceScatter": {
      const counts = c.counts ?? equalSplit(x.length, n);
      const start = offsets(counts)[me];
      const out = newArray(c, counts[me]);
      const order = direct ? inGroupOrder(n) : reducesByPlace(c, n) ? peerOrder(n, me) : ringOrder(n, me);
      for (let i = 0; i < out.length; i++) out[i] = reduceAt(c, inputs, order, start + i);
      return out;
    }
    case "allGather":
      return concat(c, inputs);
    case "allToAll": {
      const blocks = inputs.map((input, r) => {
        const start = c.sendCounts![r].slice(0, me).reduce((a, b) => a + b, 0);
        return input.subarray(start, start + c.sendCounts![r][me]);
      });
      return concat(c, blocks);
    }
    case "broadcast":
      return inputs[c.root!].slice();
    case "reduce": {
      if (me !== c.root) return null;
      const order = direct ? inGroupOrder(n) : chainOrder(n, c.root!);
      return newArray(c, x.length).map((_, i) => reduceAt(c, inputs, order, i));
    }
    case "gather":
      return me === c.root ? concat(c, inputs) : null;
    case "scatter": {
      const source = inputs[c.root!];
      const counts = c.counts ?? equalSplit(source.length, n);
      const start = offsets(counts)[me];
      return source.slice(start, start + counts[me]);
    }
    case "sendRecv":
      return inputs[(me + n - 1) % n].slice();
    case "barrier":
      return null;
  }
}

/** The algorithm the ledger should record for case c in a group of n ranks. */
export function expectedAlgorithm(c: Case, n: number): string {
  if (n === 1) return "local";
  const large = c.sizes[0] * BYTES[c.dtype] > INLINE_BYTES;
  switch (c.kind) {
    case "allReduce":
      if (!large) return "direct";
      if (!reducesByPlace(c, n)) return "ring";
      return equalSplit(c.sizes[0], n).every((_, k) => gatheredByPlaceOrInline(c, n, k)) ? "peer" : "peer+ring";
    case "reduceScatter":
      return !large ? "direct" : reducesByPlace(c, n) ? "peer" : "ring";
    case "broadcast":
      return inHeap(c, c.root!) ? "peer" : large ? "chain" : "direct";
    case "reduce":
      return large ? "chain" : "direct";
    case "allGather": {
      const members = Array.from({ length: n }, (_, r) => r);
      if (members.some((r) => !inHeap(c, r) && c.sizes[r] * BYTES[c.dtype] > INLINE_BYTES)) return "ring";
      return members.some((r) => inHeap(c, r)) ? "peer" : "direct";
    }
    case "allToAll":
      return c.out === "self" && reducesByPlace(c, n) ? "peer" : "direct";
    default:
      return "direct";
  }
}

/** Whether chunk k of a by-place all-reduce reaches the others in the envelopes (its output in the heap, or inline). */
function gatheredByPlaceOrInline(c: Case, n: number, k: number): boolean {
  return (inHeap(c, k) && c.out !== undefined) || equalSplit(c.sizes[0], n)[k] * BYTES[c.dtype] <= INLINE_BYTES;
}

/**
 * Bytes group rank `me` sends to each group rank in case c (the analytic counts of the documented
 * algorithms), and the number of messages (latencies) to each.
 */
export function expectedSends(c: Case, group: number[], me: number): { bytes: number[]; messages: number[] } {
  const n = group.length;
  const e = BYTES[c.dtype];
  const bytes = new Array<number>(n).fill(0);
  const messages = new Array<number>(n).fill(0);
  const send = (to: number, elements: number) => {
    if (elements === 0) return;
    bytes[to] += elements * e;
    messages[to] += 1;
  };
  const next = (me + 1) % n;
  const size = c.sizes[me];
  const algorithm = expectedAlgorithm(c, n);
  if (n === 1) return { bytes, messages };
  switch (c.kind) {
    case "allReduce":
    case "reduceScatter": {
      const chunks = c.kind === "reduceScatter" && c.counts ? c.counts : equalSplit(size, n);
      if (algorithm === "direct") {
        for (let r = 0; r < n; r++) if (r !== me) send(r, c.kind === "allReduce" ? size : chunks[r]);
        break;
      }
      if (algorithm.startsWith("peer")) {
        // Each member reads its chunk of this rank's input; then the reduced chunks go by place or
        // inline, and by the ring the ones that cannot (every chunk but the next rank's).
        for (let r = 0; r < n; r++) if (r !== me) send(r, chunks[r]);
        if (c.kind === "reduceScatter") break;
        if (gatheredByPlaceOrInline(c, n, me)) { for (let r = 0; r < n; r++) if (r !== me) send(r, chunks[me]); }
        for (let k = 0; k < n; k++) if (k !== next && !gatheredByPlaceOrInline(c, n, k)) send(next, chunks[k]);
        break;
      }
      // Ring: reduce-scatter sends every chunk but its own; all-gather every chunk but the next rank's.
      for (let k = 0; k < n; k++) if (k !== me) send(next, chunks[k]);
      if (c.kind === "allReduce") { for (let k = 0; k < n; k++) if (k !== next) send(next, chunks[k]); }
      break;
    }
    case "allGather": {
      const delivered = (r: number) => inHeap(c, r) || c.sizes[r] * e <= INLINE_BYTES;
      if (delivered(me)) { for (let r = 0; r < n; r++) if (r !== me) send(r, size); }
      for (let k = 0; k < n; k++) if (k !== next && !delivered(k)) send(next, c.sizes[k]);
      break;
    }
    case "allToAll":
      for (let r = 0; r < n; r++) if (r !== me) send(r, c.sendCounts![me][r]);
      break;
    case "broadcast":
      if ((algorithm === "direct" || algorithm === "peer") && me === c.root) {
        for (let r = 0; r < n; r++) if (r !== me) send(r, size);
      }
      if (algorithm === "chain" && next !== c.root) send(next, size);
      break;
    case "reduce":
      if (algorithm === "direct" && me !== c.root) send(c.root!, size);
      if (algorithm === "chain" && me !== c.root) send(next, size);
      break;
    case "gather":
      if (me !== c.root) send(c.root!, size);
      break;
    case "scatter": {
      const counts = c.counts ?? equalSplit(c.sizes[c.root!], n);
      if (me === c.root) { for (let r = 0; r < n; r++) if (r !== me) send(r, counts[r]); }
      break;
    }
    case "sendRecv":
      send(next, size);
      break;
  }
  return { bytes, messages };
}

export { groupOf };
