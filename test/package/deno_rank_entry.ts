// A rank entry module of a user's own, launched by deno_consumer.ts: it imports "shardlab" and
// reports whether the rank's device and tensors are of the classes it imported, which holds when the
// rank worker and the entry share one copy of the library in the worker thread.

import { Device, type RankContext, Tensor } from "shardlab";

export default function (ctx: RankContext): { rank: number; oneLibrary: boolean } {
  const tensor = ctx.device.zeros([2]);
  const oneLibrary = ctx.device instanceof Device && tensor instanceof Tensor;
  tensor.dispose();
  return { rank: ctx.rank, oneLibrary };
}
