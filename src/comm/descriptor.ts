// Collective descriptors: what each rank says it is calling, exchanged before any data moves so that
// ranks that disagree (kind, size, dtype, op, root, group, tag or their place in the group's sequence)
// fail with the same CollectiveMismatchError on every participant instead of hanging or computing
// garbage. Descriptors travel as Int32 words at the head of an envelope slot.

import { CollectiveMismatchError } from "./errors.ts";

export const KINDS = [
  "allReduce",
  "reduceScatter",
  "allGather",
  "allToAll",
  "broadcast",
  "reduce",
  "gather",
  "scatter",
  "send",
  "barrier",
] as const;
export type Kind = typeof KINDS[number];

export const WIRE_DTYPES = ["none", "f32", "i32", "u8", "f16"] as const;
export type WireDType = typeof WIRE_DTYPES[number];

export const OPS = ["none", "sum", "avg", "max", "min"] as const;
export type WireOp = typeof OPS[number];

export interface Descriptor {
  kind: Kind;
  /** The call's position in its group's (or point-to-point pair's) sequence of calls. */
  seq: number;
  tag: string;
  dtype: WireDType;
  op: WireOp;
  /** Group rank of the root, or -1. */
  root: number;
  /** Elements this rank passes, or -1 when it passes nothing (a scatter receiver). */
  count: number;
  /** Global ranks of the group. */
  group: readonly number[];
  /** Per-rank element counts: the split of a reduce-scatter or scatter, an all-to-all's send counts, or an explicit all-gather layout; empty when not given. */
  counts: number[];
  /** An all-to-all's explicit receive counts; empty when not given. */
  recvCounts: number[];
}

/** The position of `count` in the encoded words. */
export const COUNT_WORD = 5;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodedWords(descriptor: Descriptor): number {
  return 10 + descriptor.group.length + descriptor.counts.length + descriptor.recvCounts.length +
    Math.ceil(encoder.encode(descriptor.tag).length / 4);
}

/** Writes the descriptor into `words` and returns the number of words used. */
export function encodeDescriptor(descriptor: Descriptor, words: Int32Array): number {
  const tag = encoder.encode(descriptor.tag);
  let i = 0;
  const put = (value: number) => (words[i++] = value);
  const putList = (list: readonly number[]) => {
    put(list.length);
    for (const value of list) put(value);
  };
  put(KINDS.indexOf(descriptor.kind));
  put(descriptor.seq);
  put(WIRE_DTYPES.indexOf(descriptor.dtype));
  put(OPS.indexOf(descriptor.op));
  put(descriptor.root);
  put(descriptor.count);
  putList(descriptor.group);
  putList(descriptor.counts);
  putList(descriptor.recvCounts);
  put(tag.length);
  const padded = new Uint8Array(Math.ceil(tag.length / 4) * 4);
  padded.set(tag);
  words.set(new Int32Array(padded.buffer), i);
  return i + padded.length / 4;
}

export function decodeDescriptor(words: Int32Array): Descriptor {
  let i = 0;
  const take = () => words[i++];
  const takeList = () => Array.from(words.subarray(i + 1, i += 1 + words[i]));
  const kind = KINDS[take()];
  const seq = take();
  const dtype = WIRE_DTYPES[take()];
  const op = OPS[take()];
  const root = take();
  const count = take();
  const group = takeList();
  const counts = takeList();
  const recvCounts = takeList();
  const tagBytes = take();
  const tag = decoder.decode(new Uint8Array(words.slice(i, i + Math.ceil(tagBytes / 4)).buffer, 0, tagBytes));
  return { kind, seq, tag, dtype, op, root, count, group, counts, recvCounts };
}

/** Kinds whose ranks must all pass the same number of elements. */
const EQUAL_COUNT: readonly Kind[] = ["allReduce", "reduceScatter", "broadcast", "reduce", "send"];

/**
 * Throws CollectiveMismatchError when the descriptors of a group's ranks (in group order) disagree.
 * Every participant sees the same descriptors, so every participant throws the same error.
 */
export function checkDescriptors(descriptors: readonly Descriptor[]): void {
  const first = descriptors[0];
  const ranks = first.group;
  const fail = (involved: number[], difference: string): never => {
    throw new CollectiveMismatchError({ ranks: involved.map((r) => ranks[r]), kind: first.kind, tag: first.tag, difference });
  };
  const sameField = (field: string, value: (d: Descriptor) => string | number, skip = (_: Descriptor) => false) => {
    const reference = descriptors.findIndex((d) => !skip(d));
    if (reference < 0) return;
    const expected = value(descriptors[reference]);
    const differing = descriptors.flatMap((d, r) => !skip(d) && value(d) !== expected ? [r] : []);
    if (differing.length === 0) return;
    const describe = (r: number) =>
      `rank ${ranks[r]} ${field === "size" ? `passes ${value(descriptors[r])} elements` : value(descriptors[r])}`;
    fail([reference, ...differing], `${field} differs: ${[reference, ...differing].map(describe).join(", ")}`);
  };

  sameField("group", (d) => `[${d.group.join(", ")}]`);
  sameField("kind", (d) => d.kind);
  sameField("sequence", (d) => `is at call #${d.seq} on this group`);
  sameField("tag", (d) => JSON.stringify(d.tag));
  sameField("dtype", (d) => d.dtype, (d) => d.dtype === "none");
  sameField("op", (d) => d.op);
  sameField("root", (d) => d.root < 0 ? "none" : `root ${ranks[d.root]}`);
  if (EQUAL_COUNT.includes(first.kind)) sameField("size", (d) => d.count);

  const noCounts = (d: Descriptor) => d.counts.length === 0;
  const list = (values: number[]) => `[${values.join(", ")}]`;
  switch (first.kind) {
    case "reduceScatter":
    case "scatter":
      sameField("counts", (d) => list(d.counts), noCounts);
      break;
    case "allGather":
    case "gather": {
      sameField("counts", (d) => list(d.counts), noCounts);
      const declared = descriptors.findIndex((d) => !noCounts(d));
      if (declared < 0) break;
      descriptors.forEach((d, r) => {
        if (d.count !== descriptors[declared].counts[r]) {
          fail(
            [declared, r],
            `counts differ: rank ${ranks[declared]} expects ${descriptors[declared].counts[r]} elements from rank ${
              ranks[r]
            }, which passes ${d.count}`,
          );
        }
      });
      break;
    }
    case "allToAll":
      descriptors.forEach((receiver, j) => {
        if (receiver.recvCounts.length === 0) return;
        descriptors.forEach((sender, i) => {
          if (receiver.recvCounts[i] !== sender.counts[j]) {
            fail(
              [j, i],
              `counts differ: rank ${ranks[j]} expects ${receiver.recvCounts[i]} elements from rank ${ranks[i]}, which sends it ${
                sender.counts[j]
              }`,
            );
          }
        });
      });
      break;
  }
}
