// Megatron tensor parallelism: the cuts (cut.ts) between the layers' local work.
//
//   f   copyToTensorParallel       identity forward, all-reduce (sum) backward: before a column-parallel linear
//   g   reduceFromTensorParallel   all-reduce (sum) forward, identity backward: after a row-parallel linear
//   vocabParallelEmbedding         each rank looks up the ids in its rows of the vocabulary, others give 0, then g
//   vocabParallelCrossEntropy      the full vocabulary's cross-entropy from each rank's columns of the logits
//   gatherFromSequenceParallel     Megatron-SP's f: all-gather along T forward, reduce-scatter backward
//   reduceScatterToSequenceParallel Megatron-SP's g: reduce-scatter along T forward, all-gather backward
//
// `tp` is the communicator over the tp group; `where` names the call site in the ledger tags
// (tp.allreduce.fwd.<where>, tp.allgather.bwd.<where>, …). Collectives cut and join along dimension 0,
// so the sequence collectives run on the activation permuted to [T, B, h]. Every function frees its
// temporaries and returns a tensor of the caller's scope, as an op does.

import type { Comm } from "../comm/collectives.ts";
import { ShapeError } from "../tensor/errors.ts";
import * as ops from "../tensor/ops/index.ts";
import { tidy } from "../tensor/scope.ts";
import { formatShape } from "../tensor/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { cut } from "./cut.ts";
import { tokensPerRank } from "./layout.ts";
import type { TensorParallelShard } from "./tp_shards.ts";

/** Added to the logits of vocabulary padding columns so that they never win the softmax. */
const PADDING_LOGIT = -1e30;

/** f: x unchanged; its gradient is summed over the tp group (tag tp.allreduce.bwd.<where>). */
export async function copyToTensorParallel(tp: Comm, x: Tensor, where: string): Promise<Tensor> {
  const [y] = await cut(
    `tp.f.${where}`,
    [x],
    (inputs) => Promise.resolve(inputs),
    async ([gradient]) => [await tp.allReduce(gradient, { op: "sum", tag: `tp.allreduce.bwd.${where}` })],
  );
  return y;
}

/** g: x summed over the tp group (tag tp.allreduce.fwd.<where>); the gradient passes unchanged. */
export async function reduceFromTensorParallel(tp: Comm, x: Tensor, where: string): Promise<Tensor> {
  const [y] = await cut(
    `tp.g.${where}`,
    [x],
    async ([partial]) => [await tp.allReduce(partial, { op: "sum", tag: `tp.allreduce.fwd.${where}` })],
    (gradients) => Promise.resolve(gradients),
  );
  return y;
}

function checkVocabShard(op: string, shard: TensorParallelShard, width: number): void {
  if (shard.kind !== "vocab") throw new RangeError(`${op}: expects a "vocab" shard, got "${shard.kind}"`);
  if (width !== shard.shape[0]) {
    throw new ShapeError(
      `${op}: the shard holds ${shard.shape[0]} rows of the vocabulary ${formatShape(shard.shape)}, but the tensor has ${width}`,
    );
  }
}

export interface VocabEmbeddingOptions {
  /** Megatron-SP: reduce-scatter the sum along T (this rank's [B, T/tp, h]) instead of all-reducing it. */
  sequenceParallel?: boolean;
  /** Names the call in the ledger tag; "embed" by default. */
  where?: string;
}

/**
 * ids [B·T] → [B, T, h]: rows of this rank's vocabulary range are looked up in weightShard, other
 * positions contribute zeros, and g sums the ranks' contributions (tag tp.allreduce.fwd.<where>);
 * with sequenceParallel the sum is reduce-scattered along T instead, giving [B, T/tp, h]
 * (tag tp.reducescatter.fwd.<where>).
 */
export async function vocabParallelEmbedding(
  tp: Comm,
  weightShard: Tensor,
  shard: TensorParallelShard,
  ids: Int32Array,
  shape: [number, number],
  options: VocabEmbeddingOptions = {},
): Promise<Tensor> {
  const op = "vocabParallelEmbedding";
  checkVocabShard(op, shard, weightShard.shape[0]);
  const [B, T] = shape;
  if (ids.length !== B * T) throw new ShapeError(`${op}: ${ids.length} ids for shape [${B}, ${T}] (need ${B * T})`);
  const [rows, hidden] = weightShard.shape;
  const vocab = shard.fullShape[0];
  const start = shard.index * rows;
  const localIds = new Int32Array(ids.length);
  const held = new Float32Array(ids.length);
  ids.forEach((id, i) => {
    if (id < 0 || id >= vocab) throw new RangeError(`${op}: id ${id} at index ${i} is outside the vocabulary [0, ${vocab})`);
    if (id < start || id >= start + rows) return;
    localIds[i] = id - start;
    held[i] = 1;
  });
  const where = options.where ?? "embed";
  return await tidy(async () => {
    const looked = ops.embedding(weightShard, localIds);
    const partial = ops.reshape(ops.mul(looked, weightShard.device.tensor(held, [ids.length, 1])), [B, T, hidden]);
    return options.sequenceParallel
      ? await reduceScatterToSequenceParallel(tp, partial, where)
      : await reduceFromTensorParallel(tp, partial, where);
  });
}

/**
 * The mean over N positions of the cross-entropy of targets under the full (unpadded) vocabulary,
 * from this rank's columns logitsShard [N, Vp/tp]; a scalar, the same on every tp rank. Each rank
 * shifts by the all-reduced row maximum (tag tp.allreduce.fwd.<where>.max, no gradient), then one
 * g sums the ranks' Σ exp and target logits together (tag tp.allreduce.fwd.<where>.sumexp_target).
 * The gradient of the shard, through the cuts, is (local softmax − local one-hot) / N.
 */
export async function vocabParallelCrossEntropy(
  tp: Comm,
  logitsShard: Tensor,
  shard: TensorParallelShard,
  targets: Int32Array,
  where: string,
): Promise<Tensor> {
  const op = "vocabParallelCrossEntropy";
  if (logitsShard.shape.length !== 2) {
    throw new ShapeError(`${op}: logits must be [N, ${shard.shape[0]}], got ${formatShape(logitsShard.shape)}`);
  }
  const [N, cols] = logitsShard.shape;
  checkVocabShard(op, shard, cols);
  if (targets.length !== N) {
    throw new ShapeError(`${op}: ${targets.length} targets for logits ${formatShape(logitsShard.shape)} (need ${N})`);
  }
  if (N === 0) throw new ShapeError(`${op}: the mean over zero rows is undefined`);
  const vocab = shard.fullShape[0];
  const start = shard.index * cols;
  // Each target's logit is picked from the flattened shift as row n·cols + column; rows whose target
  // another rank holds pick column 0 and are zeroed.
  const picks = new Int32Array(N);
  const held = new Float32Array(N);
  targets.forEach((target, n) => {
    if (target < 0 || target >= vocab) {
      throw new RangeError(`${op}: target ${target} at index ${n} is outside the vocabulary [0, ${vocab})`);
    }
    const column = target - start;
    const here = column >= 0 && column < cols;
    picks[n] = n * cols + (here ? column : 0);
    held[n] = here ? 1 : 0;
  });
  const device = logitsShard.device;
  const realColumns = Math.max(0, Math.min(cols, vocab - start));
  return await tidy(async () => {
    const logits = realColumns === cols
      ? logitsShard
      : ops.add(logitsShard, device.tensor(new Float32Array(cols).fill(PADDING_LOGIT, realColumns), [1, cols]));
    const rowMax = await tp.allReduce(ops.noGrad(() => ops.max(logits, 1, true)), {
      op: "max",
      tag: `tp.allreduce.fwd.${where}.max`,
    });
    const shifted = ops.sub(logits, rowMax);
    const sumExp = ops.sum(ops.exp(shifted), 1, true);
    const picked = ops.embedding(ops.reshape(shifted, [N * cols, 1]), picks);
    const targetLogit = ops.mul(picked, device.tensor(held, [N, 1]));
    const summed = await reduceFromTensorParallel(tp, ops.concat([sumExp, targetLogit], 1), `${where}.sumexp_target`);
    const [sumExpAll, targetLogitAll] = ops.split(summed, 2, 1);
    return ops.mean(ops.sub(ops.log(sumExpAll), targetLogitAll));
  });
}

function checkSequence(op: string, x: Tensor): void {
  if (x.shape.length !== 3) throw new ShapeError(`${op}: expects [B, T, hidden], got ${formatShape(x.shape)}`);
}

/** [B, T, h] ↔ [T, B, h]: the layout whose dimension 0 the collectives cut and join. */
function swapBatchAndTime(x: Tensor): Tensor {
  return ops.permute(x, [1, 0, 2]);
}

/**
 * x [B, T/tp, h] → [B, T, h]: the ranks' blocks of the sequence joined in tp rank order
 * (tag tp.allgather.fwd.<where>); backward reduce-scatters the gradient along T (tp.reducescatter.bwd.<where>).
 */
export async function gatherFromSequenceParallel(tp: Comm, x: Tensor, where: string): Promise<Tensor> {
  checkSequence("gatherFromSequenceParallel", x);
  return await tidy(async () => {
    const [gathered] = await cut(
      `tp.sp.gather.${where}`,
      [swapBatchAndTime(x)],
      async ([block]) => [await tp.allGather(block, { tag: `tp.allgather.fwd.${where}` })],
      async ([gradient]) => [await tp.reduceScatter(gradient, { op: "sum", tag: `tp.reducescatter.bwd.${where}` })],
    );
    return swapBatchAndTime(gathered);
  });
}

/**
 * x [B, T, h] (a partial sum on each rank) → [B, T/tp, h]: this rank's block of the sequence of the
 * sum (tag tp.reducescatter.fwd.<where>); backward all-gathers the gradient along T (tp.allgather.bwd.<where>).
 */
export async function reduceScatterToSequenceParallel(tp: Comm, x: Tensor, where: string): Promise<Tensor> {
  const op = "reduceScatterToSequenceParallel";
  checkSequence(op, x);
  tokensPerRank(x.shape[1], tp.size);
  return await tidy(async () => {
    const [block] = await cut(
      `tp.sp.scatter.${where}`,
      [swapBatchAndTime(x)],
      async ([partial]) => [await tp.reduceScatter(partial, { op: "sum", tag: `tp.reducescatter.fwd.${where}` })],
      async ([gradient]) => [await tp.allGather(gradient, { tag: `tp.allgather.bwd.${where}` })],
    );
    return swapBatchAndTime(block);
  });
}
