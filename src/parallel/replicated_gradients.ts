// Gradients of the pieces several tensor-parallel ranks hold alike.
//
// Two kinds of piece are replicated over the ranks that shard the weights. A key/value head that
// more tensor-parallel ranks need than there are kv heads (tp > numKvHeads) sits on tp / numKvHeads
// ranks, each of which sees only the uses by its own query heads: its gradient is the sum over those
// ranks. Under Megatron-SP the norm weights sit on every rank of the group and each rank sees only
// its share of the sequence: their gradient is the sum over the group. Under plain tensor
// parallelism the norms see every token on every rank, and need nothing.
//
// For the global gradient norm, every element must count once: a replicated piece is weighted by
// one over the number of ranks that hold it, and the ranks' sums are added over the group.

import type { Comm } from "../comm/collectives.ts";
import type { Parameter } from "../nn/parameter.ts";
import type { WeightedRun } from "../optim/clip.ts";
import { keep } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { GradientWeight } from "./flat_partition.ts";
import type { TensorParallelShard } from "./tp_shards.ts";

/** Rows [start, start + count) of a parameter, the ranks that hold them alike, and their tensor-parallel indices. */
interface ReplicatedRows {
  name: string;
  start: number;
  count: number;
  replicas: number;
}

/** The key/value rows of every qkv_proj that more than one rank holds. */
function kvReplicas(shards: Map<string, TensorParallelShard>): ReplicatedRows[] {
  const rows: ReplicatedRows[] = [];
  for (const [name, shard] of shards) {
    for (const sub of shard.subParams ?? []) {
      if (sub.replicas > 1) rows.push({ name, start: sub.localStart, count: sub.localRows, replicas: sub.replicas });
    }
  }
  return rows;
}

/**
 * Sums the replicated pieces' gradients over the tensor-parallel group `tp` (see the header), for
 * `parameters` (all of them, or one ZeRO-3 block's); a missing gradient counts as zeros.
 */
export async function sumReplicatedGradients(
  shards: Map<string, TensorParallelShard>,
  parameters: readonly Parameter[],
  tp: Comm,
  sequenceParallel: boolean,
): Promise<void> {
  const params = new Map(parameters.map((p): [string, Tensor] => [p.name, p.tensor]));
  const kv = kvReplicas(shards).filter(({ name }) => params.has(name));
  if (kv.length > 0) {
    // Ranks r and r' hold the same kv heads when ⌊r / replicas⌋ is the same (replicas is the same for every layer).
    const replicas = kv[0].replicas;
    const first = Math.floor(tp.rank / replicas) * replicas;
    const group = tp.group(Array.from({ length: replicas }, (_, i) => tp.ranks[first + i]));
    await sumRows(group, kv, params, "tp.allreduce.kv_replicas");
  }
  if (sequenceParallel) {
    const replicated = [...shards].filter(([name, shard]) => shard.kind === "replicated" && params.has(name))
      .map(([name, shard]) => ({ name, start: 0, count: shard.shape[0], replicas: tp.size }));
    if (replicated.length > 0) await sumRows(tp, replicated, params, "sp.allreduce.replicated");
  }
}

/** All-reduces (sum) the listed rows of the parameters' gradients over `group` in one call. */
async function sumRows(group: Comm, pieces: ReplicatedRows[], params: Map<string, Tensor>, tag: string): Promise<void> {
  // A parameter may have several pieces (its k and v rows): read and upload each gradient once.
  const names = [...new Set(pieces.map(({ name }) => name))];
  const grads = new Map(
    await Promise.all(names.map(async (name) => {
      const param = params.get(name)!;
      return [name, param.grad ? (await param.grad.read()) as Float32Array : new Float32Array(param.size)] as const;
    })),
  );
  const spans = pieces.map(({ name, start, count }) => {
    const width = rowWidth(params.get(name)!);
    return { values: grads.get(name)!, begin: start * width, end: (start + count) * width };
  });
  const flat = new Float32Array(spans.reduce((sum, { begin, end }) => sum + end - begin, 0));
  let offset = 0;
  for (const { values, begin, end } of spans) {
    flat.set(values.subarray(begin, end), offset);
    offset += end - begin;
  }
  await group.allReduce(flat, { op: "sum", tag, out: flat });
  offset = 0;
  for (const { values, begin, end } of spans) {
    values.set(flat.subarray(offset, offset + end - begin), begin);
    offset += end - begin;
  }
  for (const [name, values] of grads) {
    const param = params.get(name)!;
    param.grad?.dispose();
    param.grad = keep(param.device.tensor(values, param.shape));
  }
}

function rowWidth(param: Tensor): number {
  return param.shape.length === 1 ? 1 : param.size / param.shape[0];
}

/**
 * How much each element of this rank's shards counts in the global norm: one over the number of
 * tensor-parallel ranks that hold it alike (norms 1/parts, replicated kv rows 1/replicas), 1 elsewhere.
 */
export function gradientWeights(shards: Map<string, TensorParallelShard>, parts: number): GradientWeight {
  const kv = kvReplicas(shards);
  return (name) => {
    const shard = shards.get(name);
    if (shard?.kind === "replicated") return 1 / parts;
    const rows = kv.filter((piece) => piece.name === name).sort((a, b) => a.start - b.start);
    if (!shard || rows.length === 0) return 1;
    // Rows of the local piece; a kv row counts 1/replicas, the query rows around them fully.
    const width = shard.shape.length === 1 ? 1 : shard.shape[1];
    const ranges: WeightedRun[] = [];
    let covered = 0;
    for (const { start, count, replicas } of rows) {
      if (start > covered) ranges.push({ start: covered * width, numel: (start - covered) * width, weight: 1 });
      ranges.push({ start: start * width, numel: count * width, weight: 1 / replicas });
      covered = start + count;
    }
    if (covered < shard.shape[0]) ranges.push({ start: covered * width, numel: (shard.shape[0] - covered) * width, weight: 1 });
    return ranges;
  };
}
