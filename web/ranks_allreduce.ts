// The ranks page's entry module, run on every rank: x[i] = (rank + 1)·(i + 1) as a tensor on the
// rank's own device, summed over the world with one all-reduce. Every rank returns the values it
// got back, which are (i + 1)·n(n + 1)/2 for n ranks.

import type { RankContext } from "../src/comm/rank_context.ts";

export interface AllReduceArgs {
  length: number;
}

export interface AllReduceResult {
  rank: number;
  node: number;
  backend: string;
  values: Float32Array;
  /** Wall time of the all-reduce on this rank. */
  ms: number;
}

export default async function allReduceEntry(ctx: RankContext, args: AllReduceArgs): Promise<AllReduceResult> {
  const data = Float32Array.from({ length: args.length }, (_, i) => (ctx.rank + 1) * (i + 1));
  const x = ctx.device.tensor(data, [args.length]);
  const start = performance.now();
  const sum = await ctx.comm.allReduce(x, { op: "sum", tag: "ranks_page.allreduce" });
  const values = (await sum.read()) as Float32Array;
  const ms = performance.now() - start;
  ctx.emit({ phase: "done", ms });
  x.dispose();
  sum.dispose();
  return { rank: ctx.rank, node: ctx.node, backend: ctx.device.name, values, ms };
}
