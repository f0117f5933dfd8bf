// Distributed data parallelism (DDP): every rank of a dp group holds the whole model and trains its
// own equal share of the global batch's rows; after backward, the gradients are averaged over the
// group so that every replica applies the same update, the one a single rank would apply to the
// whole batch.
//
// The average goes in buckets, as in PyTorch's DistributedDataParallel: the parameters are taken
// in reverse order (the order backward finishes their gradients), and a bucket closes once it
// holds at least `bucketBytes`; a parameter is never split. Each bucket's gradients are flattened
// into one reused host array (each gradient read once), averaged with one in-place all-reduce
// tagged `ddp.allreduce.bucket{i}`, and written back as each parameter's .grad on its device.
//
// Why the result is not bit-identical to one rank: one rank sums the per-token gradients of the
// whole batch in one order; here each replica sums its rows' gradients (scaled by 1/its tokens),
// and the all-reduce then adds the replicas' sums in ring order and divides by dp. The same real
// number, rounded along a different summation order: equal to one rank to float precision.

import type { Comm } from "../comm/collectives.ts";
import type { Tensor } from "../tensor/tensor.ts";

/** PyTorch DDP's default bucket cap. */
export const DEFAULT_BUCKET_BYTES = 25 * 2 ** 20;

export interface DdpOptions {
  /** A bucket closes once its gradients hold at least this many bytes (default 25 MiB). */
  bucketBytes?: number;
}

/** The parameters whose gradients travel in one all-reduce, and where each lies in its flat array. */
export interface Bucket {
  names: string[];
  offsets: number[];
  sizes: number[];
  /** The bucket's gradients, flattened; reused every step. */
  flat: Float32Array;
}

/** This dp rank's rows of a global batch of `batch` rows: an equal, contiguous share. */
export function replicaRows(batch: number, dp: number, dpRank: number): { rowStart: number; rowCount: number } {
  if (batch % dp !== 0) {
    throw new RangeError(
      `ddp: the global batch of ${batch} rows does not divide among dp ${dp} replicas; --batch must be a multiple of dp (${batch} % ${dp} = ${
        batch % dp
      })`,
    );
  }
  const rowCount = batch / dp;
  return { rowStart: dpRank * rowCount, rowCount };
}

/** Buckets over the parameters in reverse order, each closing once it reaches `bucketBytes`. */
export function planBuckets(params: readonly (readonly [string, { size: number }])[], bucketBytes: number): Bucket[] {
  const buckets: Bucket[] = [];
  let names: string[] = [];
  let sizes: number[] = [];
  let elements = 0;
  const close = () => {
    const offsets = sizes.map((_, i) => sizes.slice(0, i).reduce((a, b) => a + b, 0));
    buckets.push({ names, offsets, sizes, flat: new Float32Array(elements) });
    names = [];
    sizes = [];
    elements = 0;
  };
  for (let i = params.length - 1; i >= 0; i--) {
    const [name, param] = params[i];
    names.push(name);
    sizes.push(param.size);
    elements += param.size;
    if (elements * Float32Array.BYTES_PER_ELEMENT >= bucketBytes) close();
  }
  if (names.length > 0) close();
  return buckets;
}

/** DDP's gradient average over the data-parallel group `comm`, in buckets. */
export class DataParallel {
  readonly bucketBytes: number;
  private buckets: Bucket[] | null = null;

  constructor(private readonly comm: Comm, options: DdpOptions = {}) {
    const bucketBytes = options.bucketBytes ?? DEFAULT_BUCKET_BYTES;
    if (!Number.isInteger(bucketBytes) || bucketBytes < 1) {
      throw new RangeError(`ddp: bucketBytes must be a positive integer number of bytes, got ${bucketBytes}`);
    }
    this.bucketBytes = bucketBytes;
  }

  /** The buckets of the last reduction (planned on the first). */
  get plan(): readonly Bucket[] {
    return this.buckets ?? [];
  }

  /** Replaces every parameter's .grad by its average over the group (a missing .grad counts as zeros). */
  async reduceGradients(params: readonly [string, Tensor][]): Promise<void> {
    this.buckets ??= planBuckets(params, this.bucketBytes);
    const byName = new Map(params);
    for (const [i, bucket] of this.buckets.entries()) {
      const members = bucket.names.map((name) => byName.get(name)!);
      // Every read-back of the bucket in flight at once: each waits for the device to finish.
      const grads = await Promise.all(members.map((param) => param.grad?.read() ?? null));
      grads.forEach((grad, j) => {
        const target = bucket.flat.subarray(bucket.offsets[j], bucket.offsets[j] + bucket.sizes[j]);
        if (grad) target.set(grad as Float32Array);
        else target.fill(0);
      });
      await this.comm.allReduce(bucket.flat, { op: "avg", tag: `ddp.allreduce.bucket${i}`, out: bucket.flat });
      for (const [j, param] of members.entries()) {
        const values = bucket.flat.slice(bucket.offsets[j], bucket.offsets[j] + bucket.sizes[j]);
        param.grad?.dispose();
        param.grad = param.device.tensor(values, param.shape);
      }
    }
  }
}
