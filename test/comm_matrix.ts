// The case matrix of the collective and ledger tests: every collective × sizes {0, 1, 13, 65537
// (primes on both sides of the direct/ring switch)} × dtypes, uneven splits, groups in another order
// than the world's, disjoint groups side by side, Tensors, heap arrays that travel by place, and
// 16 MiB messages at 2 and 4 ranks.

import type { Case } from "./fixtures/comm_cases.ts";
import { equalSplit } from "./comm_expected.ts";

const SIZES = [0, 1, 13, 65537];
const DTYPES = ["f32", "i32", "u8", "f16"] as const;
const MIB16_F32 = 4 << 20;
/** Each rank's heap in the launches that run these cases: the largest, an in-place all-gather of 65537 f32 per rank, takes 2 MiB at 8 ranks. */
export const HEAP_BYTES = 4 << 20;

/** The cases of a world of `ranks` ranks. */
export function casesFor(ranks: number): Case[] {
  const cases: Case[] = [];
  let seed = ranks * 1000;
  const add = (c: Omit<Case, "seed" | "name">) =>
    cases.push({ ...c, seed: ++seed, name: `${c.kind}.${c.dtype}.${c.sizes.join("/")}.${seed}` });
  const all = (size: number) => new Array<number>(ranks).fill(size);
  const root = ranks - 1;
  for (const dtype of DTYPES) {
    for (const size of SIZES) {
      add({ kind: "allReduce", dtype, sizes: all(size) });
      add({ kind: "reduceScatter", dtype, sizes: all(size) });
      add({ kind: "allGather", dtype, sizes: all(size) });
      add({ kind: "allToAll", dtype, sizes: all(size), sendCounts: all(size).map(() => equalSplit(size, ranks)) });
      add({ kind: "broadcast", dtype, sizes: all(size), root });
      add({ kind: "reduce", dtype, sizes: all(size), root: ranks > 2 ? 1 : 0 });
      add({ kind: "gather", dtype, sizes: all(size), root });
      add({ kind: "scatter", dtype, sizes: all(size), root: 0 });
      if (ranks > 1) add({ kind: "sendRecv", dtype, sizes: all(size) });
    }
    for (const op of ["max", "min"] as const) {
      add({ kind: "allReduce", dtype, sizes: all(13), op });
      add({ kind: "allReduce", dtype, sizes: all(65537), op });
    }
    // Uneven: all-gather sizes straddling the direct limit, all-to-all splits, explicit counts.
    const uneven = Array.from({ length: ranks }, (_, r) => [3, 5000, 0, 40000][r % 4]);
    add({ kind: "allGather", dtype, sizes: uneven });
    add({ kind: "gather", dtype, sizes: uneven, root: 0 });
    const sendCounts = Array.from(
      { length: ranks },
      (_, i) => Array.from({ length: ranks }, (_, j) => [0, 7, 3000, 20000][(i + 2 * j) % 4]),
    );
    add({ kind: "allToAll", dtype, sizes: sendCounts.map((row) => row.reduce((a, b) => a + b, 0)), sendCounts });
    const counts = Array.from({ length: ranks }, (_, r) => [9000, 0, 17, 30000][r % 4]);
    const total = counts.reduce((a, b) => a + b, 0);
    add({ kind: "reduceScatter", dtype, sizes: all(total), counts });
    add({ kind: "scatter", dtype, sizes: all(total), counts, root });
  }
  add({ kind: "allReduce", dtype: "f32", sizes: all(13), op: "avg" });
  add({ kind: "allReduce", dtype: "f32", sizes: all(65537), op: "avg" });
  add({ kind: "reduceScatter", dtype: "f16", sizes: all(13 * ranks), op: "avg" });
  add({ kind: "reduceScatter", dtype: "f16", sizes: all(65537), op: "avg" });
  add({ kind: "barrier", dtype: "f32", sizes: all(0) });
  // Results written into the caller's array: x itself (in place) or a separate one.
  add({ kind: "allReduce", dtype: "f32", sizes: all(65537), out: "self" });
  add({ kind: "allReduce", dtype: "i32", sizes: all(13), out: "self" });
  add({ kind: "allReduce", dtype: "f32", sizes: all(13), out: "view" });
  add({ kind: "allReduce", dtype: "f32", sizes: all(65537), out: "view" });
  add({ kind: "allReduce", dtype: "u8", sizes: all(65537), op: "max", out: "separate" });
  add({ kind: "broadcast", dtype: "f32", sizes: all(65537), root, out: "self" });
  add({ kind: "broadcast", dtype: "i32", sizes: all(13), root: 0, out: "separate" });
  add({ kind: "reduceScatter", dtype: "f32", sizes: all(65537), out: "separate" });
  // All-gather and all-to-all into the caller's array: equal and uneven blocks, inline and ringed or streamed.
  const unevenGather = Array.from({ length: ranks }, (_, r) => [3, 5000, 0, 40000][r % 4]);
  const unevenSend = Array.from(
    { length: ranks },
    (_, i) => Array.from({ length: ranks }, (_, j) => [0, 7, 3000, 20000][(i + 2 * j) % 4]),
  );
  const equalSend = all(65537).map(() => equalSplit(65537, ranks));
  add({ kind: "allGather", dtype: "f32", sizes: all(13), out: "separate" });
  add({ kind: "allGather", dtype: "i32", sizes: all(65537), out: "separate" });
  add({ kind: "allGather", dtype: "u8", sizes: unevenGather, out: "separate" });
  add({ kind: "allToAll", dtype: "f32", sizes: all(65537), sendCounts: equalSend, out: "separate" });
  add({
    kind: "allToAll",
    dtype: "i32",
    sizes: unevenSend.map((row) => row.reduce((a, b) => a + b, 0)),
    sendCounts: unevenSend,
    out: "separate",
  });
  // Tensors on the rank's device keep dtype, device and (for reshaping collectives) whole rows.
  for (const dtype of DTYPES) {
    add({ kind: "allReduce", dtype, sizes: all(6 * 37), tensor: true, cols: 6 });
    add({ kind: "allGather", dtype, sizes: all(4 * 5), tensor: true, cols: 4 });
    add({ kind: "reduceScatter", dtype, sizes: all(3 * 2 * ranks), tensor: true, cols: 3 });
  }
  if (ranks >= 3) {
    // A group in an order other than the world's, and groups that run side by side.
    const rotated = [ranks - 1, 0, 1];
    add({ kind: "allReduce", dtype: "f32", sizes: [65537, 65537, 65537], group: rotated });
    add({ kind: "allReduce", dtype: "i32", sizes: [13, 13, 13], group: rotated });
    add({ kind: "reduceScatter", dtype: "f32", sizes: [65537, 65537, 65537], group: rotated });
    add({ kind: "allGather", dtype: "u8", sizes: [20000, 1, 65537], group: rotated });
    add({ kind: "broadcast", dtype: "f32", sizes: [65537, 65537, 65537], group: rotated, root: 2 });
  }
  if (ranks >= 4) {
    const halves = [
      Array.from({ length: ranks / 2 | 0 }, (_, i) => 2 * i),
      Array.from({ length: ranks / 2 | 0 }, (_, i) => 2 * i + 1),
    ];
    add({ kind: "allReduce", dtype: "f32", sizes: new Array(ranks / 2 | 0).fill(65537), group: halves });
    add({ kind: "allGather", dtype: "i32", sizes: new Array(ranks / 2 | 0).fill(5), group: halves });
  }
  // Heap arrays (comm.alloc) travel by place: on every rank, or on group rank 0 only (the others
  // then fall back to the ring, chain or inline paths).
  const big = 65537;
  const unevenSplit = Array.from({ length: ranks }, (_, r) => [9000, 0, 17, 30000][r % 4]);
  for (const dtype of DTYPES) {
    add({ kind: "allReduce", dtype, sizes: all(big), heap: "all", out: "self" });
    add({ kind: "allReduce", dtype, sizes: all(big), heap: "all" });
    add({ kind: "allReduce", dtype, sizes: all(big), heap: "all", out: "separate", op: "max" });
    add({ kind: "reduceScatter", dtype, sizes: all(big), heap: "all", out: "separate" });
    add({
      kind: "reduceScatter",
      dtype,
      sizes: all(unevenSplit.reduce((a, b) => a + b, 0)),
      counts: unevenSplit,
      heap: "all",
      op: "min",
    });
    add({ kind: "allGather", dtype, sizes: all(big), heap: "all", out: "block" });
    add({ kind: "allGather", dtype, sizes: unevenGather, heap: "all" });
    add({
      kind: "allToAll",
      dtype,
      sizes: unevenSend.map((row) => row.reduce((a, b) => a + b, 0)),
      sendCounts: unevenSend,
      heap: "all",
    });
    add({ kind: "broadcast", dtype, sizes: all(big), root, heap: "all" });
    add({ kind: "scatter", dtype, sizes: all(big), root: 0, heap: "all" });
    add({ kind: "gather", dtype, sizes: unevenGather, root, heap: "all" });
  }
  add({ kind: "allReduce", dtype: "f32", sizes: all(big), heap: "all", op: "avg" });
  add({ kind: "allReduce", dtype: "f32", sizes: all(13), heap: "all", out: "self" });
  add({ kind: "allReduce", dtype: "i32", sizes: all(big), heap: "all", out: "view" });
  add({ kind: "broadcast", dtype: "f32", sizes: all(big), root: 0, heap: "all", out: "view" });
  add({ kind: "allGather", dtype: "i32", sizes: all(5), heap: "all", out: "block" });
  // In place: a reduce-scatter into this rank's chunk of x, an all-to-all over x itself (the send
  // and receive counts agree, so the matrix is symmetric).
  const symmetricSend = Array.from(
    { length: ranks },
    (_, i) => Array.from({ length: ranks }, (_, j) => [3000, 7, 20000, 0][(i + j) % 4]),
  );
  const symmetricSizes = symmetricSend.map((row) => row.reduce((a, b) => a + b, 0));
  for (const dtype of DTYPES) {
    add({ kind: "reduceScatter", dtype, sizes: all(big), out: "chunk" });
    add({ kind: "reduceScatter", dtype, sizes: all(big), heap: "all", out: "chunk", op: "max" });
    add({ kind: "allToAll", dtype, sizes: symmetricSizes, sendCounts: symmetricSend, out: "self" });
    add({ kind: "allToAll", dtype, sizes: symmetricSizes, sendCounts: symmetricSend, heap: "all", out: "self" });
  }
  add({ kind: "reduceScatter", dtype: "f32", sizes: all(13), out: "chunk" });
  add({
    kind: "reduceScatter",
    dtype: "i32",
    sizes: all(unevenSplit.reduce((a, b) => a + b, 0)),
    counts: unevenSplit,
    heap: "all",
    out: "chunk",
  });
  add({ kind: "allToAll", dtype: "u8", sizes: symmetricSizes, sendCounts: symmetricSend, heap: "first", out: "self" });
  add({ kind: "allReduce", dtype: "f32", sizes: all(big), heap: "first" });
  add({ kind: "reduceScatter", dtype: "i32", sizes: all(big), heap: "first" });
  add({ kind: "allGather", dtype: "f32", sizes: all(big), heap: "first" });
  add({ kind: "broadcast", dtype: "u8", sizes: all(big), root: 0, heap: "first" });
  add({ kind: "broadcast", dtype: "f32", sizes: all(big), root, heap: "first" });
  if (ranks >= 3) {
    add({ kind: "allReduce", dtype: "f32", sizes: [big, big, big], group: [ranks - 1, 0, 1], heap: "all", out: "self" });
  }
  if (ranks === 2 || ranks === 4) {
    add({ kind: "allReduce", dtype: "f32", sizes: all(MIB16_F32) });
    add({ kind: "allGather", dtype: "f32", sizes: all(MIB16_F32 / ranks) });
  }
  return cases;
}
