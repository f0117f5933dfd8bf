// The entry every rank runs to train data-parallel (launch({ entry: this module, args })): a Trainer
// on the rank's own device training its rows of each global batch, with DDP averaging gradients
// over the world. It emits each step's figures and returns the losses and the final parameters.

import type { RankContext } from "../comm/rank_context.ts";
import type { CollectiveRecord } from "../comm/ledger.ts";
import type { TrainConfig } from "../train/config.ts";
import { type StepMetrics, Trainer } from "../train/trainer.ts";
import { DataParallel, type DdpOptions } from "./ddp.ts";

export interface TrainRankArgs {
  config: TrainConfig;
  ddp?: DdpOptions;
}

export interface TrainRankResult {
  /** The global batch's mean loss at each step (the same on every rank). */
  losses: number[];
  /** Every parameter after the last step, by Hugging Face name. */
  params: Record<string, Float32Array>;
  /** Parameter names of each gradient bucket, in all-reduce order. */
  buckets: string[][];
  /** This rank's ledger record of every collective it took part in. */
  collectives: CollectiveRecord[];
}

export default async function trainRank(ctx: RankContext, args: TrainRankArgs): Promise<TrainRankResult> {
  const ddp = new DataParallel(ctx.comm, args.config.batch, args.ddp);
  const trainer = await Trainer.create(args.config, ctx.device, ddp);
  try {
    const losses: number[] = [];
    while (!trainer.done) {
      const metrics: StepMetrics = await trainer.step();
      ctx.emit(metrics);
      losses.push(metrics.loss);
    }
    const params: Record<string, Float32Array> = {};
    for (const [name, param] of trainer.model.namedParameters()) params[name] = (await param.read()) as Float32Array;
    return { losses, params, buckets: ddp.plan.map((bucket) => bucket.names), collectives: ctx.comm.ledger.toJSON().collectives };
  } finally {
    trainer.dispose();
  }
}
