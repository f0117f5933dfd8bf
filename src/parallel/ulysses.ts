// DeepSpeed-Ulysses sequence parallelism: attention over a sequence whose tokens are spread over
// the S ranks of an sp group.
//
// Each rank holds T/S consecutive tokens of every row and projects them to q, k and v
// ([B, T/S, (Hq + 2·Hkv)·D], q heads then k heads then v heads). One all-to-all makes them
// head-sharded: rank r receives all T tokens of its heads (source rank s's tokens at positions
// s·T/S …), runs rotary positions from 0 and causal grouped-query attention locally, and a second
// all-to-all sends each rank its own tokens of every head's output, [B, T/S, Hq·D]. Both exchanges
// are cuts (cut.ts); their backward is the inverse all-to-all, and a kv head that went to several ranks
// has its gradients summed on the rank that sent it.
//
// Heads. The q heads are split in rank order as evenly as possible: the first (Hq mod S) ranks get
// ⌈Hq/S⌉, the others ⌊Hq/S⌋ (every rank needs one, so S ≤ Hq). q head j uses kv head ⌊j / (Hq/Hkv)⌋.
// A rank's q heads fall into runs that share a kv head; when those runs are equally long (whole kv
// groups, part of one group, or equal parts of neighbouring groups) the rank receives each kv head
// once and its local attention is grouped-query as it stands. Otherwise (unequal runs, only with
// uneven splits) it receives one kv head per q head, repeating kv heads ("expanded"), and attends
// with as many kv heads as q heads. So Hq and Hkv divisible by S send Hkv/S kv heads to every rank,
// and S a multiple of Hkv (S | Hq) replicates one kv head on S/Hkv ranks.
//
// Layout on the wire, in blocks of D floats: the rows for destination r are its heads' blocks
// ordered (row, token, head) with its q heads first, then its k heads, then its v heads; the output
// goes back ordered (row, token, head). Packing and unpacking are block gathers (ops.gatherBlocks),
// their adjoints scatter-adds over the same tables.

import type { Comm } from "../comm/collectives.ts";
import type { AttentionHeads } from "../nn/attention.ts";
import { ShapeError } from "../tensor/errors.ts";
import * as ops from "../tensor/ops/index.ts";
import { tidy } from "../tensor/scope.ts";
import { formatShape } from "../tensor/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { cut } from "./cut.ts";
import { checkUlyssesHeads, tokensPerRank } from "./layout.ts";

/** Which heads each rank of an sp group attends with (plain data). */
export interface HeadAssignment {
  numHeads: number;
  numKvHeads: number;
  sp: number;
  /** Per rank: [first q head, count]; the ranges cover 0 … numHeads − 1 in rank order. */
  q: [number, number][];
  /** Per rank: the kv head behind each of its local kv heads, in local order. */
  kv: number[][];
  /** Per rank: whether it receives one kv head per q head (some kv head then appears more than once). */
  expanded: boolean[];
}

/** The heads of every rank of an sp group of `sp` ranks (see the file header for the rule). */
export function ulyssesHeads(numHeads: number, numKvHeads: number, sp: number): HeadAssignment {
  for (const [name, value] of Object.entries({ numHeads, numKvHeads, sp })) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`ulysses: ${name} must be a positive integer, got ${value}`);
  }
  if (numHeads % numKvHeads !== 0) {
    throw new RangeError(`ulysses: ${numHeads} query heads are not a multiple of ${numKvHeads} kv heads`);
  }
  checkUlyssesHeads(numHeads, sp);
  const group = numHeads / numKvHeads;
  const assignment: HeadAssignment = { numHeads, numKvHeads, sp, q: [], kv: [], expanded: [] };
  let start = 0;
  for (let r = 0; r < sp; r++) {
    const count = Math.floor(numHeads / sp) + (r < numHeads % sp ? 1 : 0);
    const kvOfHead = Array.from({ length: count }, (_, i) => Math.floor((start + i) / group));
    const distinct = [...new Set(kvOfHead)];
    const run = count / distinct.length;
    const equalRuns = distinct.every((h) => kvOfHead.filter((k) => k === h).length === run);
    assignment.q.push([start, count]);
    assignment.kv.push(equalRuns ? distinct : kvOfHead);
    assignment.expanded.push(!equalRuns);
    start += count;
  }
  return assignment;
}

/** Bytes (f32) rank `rank` sends per layer forward: the q, k, v all-to-all and the output all-to-all. */
export function ulyssesVolume(
  B: number,
  T: number,
  dims: AttentionHeads,
  sp: number,
  rank: number,
): { qkvBytes: number; outBytes: number } {
  tokensPerRank(T, sp);
  if (!Number.isInteger(rank) || rank < 0 || rank >= sp) throw new RangeError(`ulysses: rank ${rank} is outside sp ${sp}`);
  const heads = ulyssesHeads(dims.numHeads, dims.numKvHeads, sp);
  const headBytes = 4 * B * (T / sp) * dims.headDim;
  let qkvHeads = 0;
  for (let r = 0; r < sp; r++) if (r !== rank) qkvHeads += width(heads, r);
  return { qkvBytes: qkvHeads * headBytes, outBytes: (sp - 1) * heads.q[rank][1] * headBytes };
}

/**
 * Attention of this rank's tokens, qkv [B, T/S, (Hq + 2·Hkv)·D], over the whole sequence of the sp
 * group → [B, T/S, Hq·D] (in the caller's scope). Collectives are tagged
 * `ulysses.alltoall.<fwd|bwd>.<where>.<qkv|out>`.
 */
export async function ulyssesAttention(sp: Comm, qkv: Tensor, dims: AttentionHeads, where: string): Promise<Tensor> {
  const { numHeads: Hq, numKvHeads: Hkv, headDim: D } = dims;
  const columns = (Hq + 2 * Hkv) * D;
  if (qkv.shape.length !== 3 || qkv.shape[2] !== columns) {
    throw new ShapeError(
      `ulyssesAttention ${where}: qkv must be [B, T/sp, ${columns}] (${Hq} + 2·${Hkv} heads of ${D}), got ${
        formatShape(qkv.shape)
      }`,
    );
  }
  if (sp.rank < 0) {
    throw new RangeError(`ulyssesAttention ${where}: rank ${sp.globalRank} is not in the sp group [${sp.ranks.join(", ")}]`);
  }
  const [B, Tl] = qkv.shape;
  const plan = exchangePlan(ulyssesHeads(Hq, Hkv, sp.size), B, Tl, D, sp.rank);
  const T = Tl * sp.size;
  const qShape = [B, plan.hq, T, D];
  const kvShape = [B, plan.hkv, T, D];

  const exchange = (packed: Tensor, what: string, direction: "fwd" | "bwd", sendCounts: number[], recvCounts: number[]) =>
    sp.allToAll(packed, { tag: `ulysses.alltoall.${direction}.${where}.${what}`, sendCounts, recvCounts });

  return await tidy(async () => {
    const [q, k, v] = await cut(`ulysses.${where}.qkv`, [qkv], async ([x]) => {
      const received = await exchange(ops.gatherBlocks(x, plan.qkvPack, D), "qkv", "fwd", plan.qkvSend, plan.qkvRecv);
      const qBlocks = B * plan.hq * T;
      const kvBlocks = B * plan.hkv * T;
      const unpack = (first: number, count: number, shape: number[]) =>
        ops.gatherBlocks(received, plan.qkvUnpack.subarray(first, first + count), D, shape);
      return [unpack(0, qBlocks, qShape), unpack(qBlocks, kvBlocks, kvShape), unpack(qBlocks + kvBlocks, kvBlocks, kvShape)];
    }, async (gradients) => {
      const joined = ops.concat(gradients.map((g) => ops.reshape(g, [-1, D])));
      const packed = ops.scatterAddBlocks(joined, plan.qkvUnpack, D, [plan.qkvUnpack.length, D]);
      const returned = await exchange(packed, "qkv", "bwd", plan.qkvRecv, plan.qkvSend);
      return [ops.scatterAddBlocks(returned, plan.qkvPack, D, [B, Tl, columns])];
    });

    const rope = { theta: dims.ropeTheta, positionOffset: 0 };
    const o = ops.attention(ops.rope(q, rope), ops.rope(k, rope), v, { causal: true });
    const [out] = await cut(`ulysses.${where}.out`, [o], async ([x]) => {
      const received = await exchange(ops.gatherBlocks(x, plan.outPack, D), "out", "fwd", plan.outSend, plan.outRecv);
      return [ops.gatherBlocks(received, plan.outUnpack, D, [B, Tl, Hq * D])];
    }, async ([g]) => {
      const packed = ops.scatterAddBlocks(g, plan.outUnpack, D, [plan.outUnpack.length, D]);
      const returned = await exchange(packed, "out", "bwd", plan.outRecv, plan.outSend);
      return [ops.scatterAddBlocks(returned, plan.outPack, D, qShape)];
    });
    return out;
  });
}

/** q heads plus twice the kv heads rank r receives. */
function width(heads: HeadAssignment, r: number): number {
  return heads.q[r][1] + 2 * heads.kv[r].length;
}

/** Block tables (blocks of D floats) and element counts of one rank's two exchanges. */
interface ExchangePlan {
  /** This rank's q and kv heads. */
  hq: number;
  hkv: number;
  /** Local qkv [B, Tl, Hq + 2·Hkv] → the rows for each destination in turn. */
  qkvPack: Int32Array;
  qkvSend: number[];
  qkvRecv: number[];
  /** Received rows → q [B, hq, T], then k and v [B, hkv, T], one table end to end. */
  qkvUnpack: Int32Array;
  /** Attention output [B, hq, T] → each destination's tokens, ordered (row, token, head). */
  outPack: Int32Array;
  outSend: number[];
  outRecv: number[];
  /** Received output rows → [B, Tl, Hq]. */
  outUnpack: Int32Array;
}

function exchangePlan(heads: HeadAssignment, B: number, Tl: number, D: number, me: number): ExchangePlan {
  const { numHeads: Hq, numKvHeads: Hkv, sp: S } = heads;
  const T = Tl * S;
  const [, hq] = heads.q[me];
  const hkv = heads.kv[me].length;

  // Columns (heads of the fused qkv row) rank r receives: its q heads, then its k heads, then its v heads.
  const columnsOf = (r: number) => {
    const [start, count] = heads.q[r];
    const qHeads = Array.from({ length: count }, (_, i) => start + i);
    return [...qHeads, ...heads.kv[r].map((h) => Hq + h), ...heads.kv[r].map((h) => Hq + Hkv + h)];
  };
  const qkvPack: number[] = [];
  const qkvSend: number[] = [];
  for (let r = 0; r < S; r++) {
    const columns = columnsOf(r);
    for (let bt = 0; bt < B * Tl; bt++) for (const c of columns) qkvPack.push(bt * (Hq + 2 * Hkv) + c);
    qkvSend.push(B * Tl * columns.length * D);
  }
  const W = width(heads, me);
  const qkvUnpack: number[] = [];
  const unpackHeads = (count: number, firstColumn: number) => {
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < count; h++) {
        for (let s = 0; s < S; s++) {
          for (let t = 0; t < Tl; t++) qkvUnpack.push(s * B * Tl * W + (b * Tl + t) * W + firstColumn + h);
        }
      }
    }
  };
  unpackHeads(hq, 0);
  unpackHeads(hkv, hq);
  unpackHeads(hkv, hq + hkv);

  const outPack: number[] = [];
  for (let s = 0; s < S; s++) {
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < Tl; t++) for (let h = 0; h < hq; h++) outPack.push((b * hq + h) * T + s * Tl + t);
    }
  }
  const outUnpack: number[] = [];
  for (let bt = 0; bt < B * Tl; bt++) {
    for (let r = 0; r < S; r++) {
      const [start, count] = heads.q[r];
      for (let h = 0; h < count; h++) outUnpack.push(B * Tl * start + bt * count + h);
    }
  }
  return {
    hq,
    hkv,
    qkvPack: Int32Array.from(qkvPack),
    qkvSend,
    qkvRecv: new Array<number>(S).fill(B * Tl * W * D),
    qkvUnpack: Int32Array.from(qkvUnpack),
    outPack: Int32Array.from(outPack),
    outSend: new Array<number>(S).fill(B * Tl * hq * D),
    outRecv: heads.q.map(([, count]) => B * Tl * count * D),
    outUnpack: Int32Array.from(outUnpack),
  };
}
