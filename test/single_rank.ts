// The reference the parallel tests compare with: the plain Trainer on one CPU device, which knows
// nothing of ranks, trained to the end; its per-step losses, and its final parameters and AdamW
// moments by name.

import type { TrainConfig } from "../src/train/config.ts";
import { Trainer } from "../src/train/trainer.ts";
import { cpuDevice } from "./helpers.ts";

export interface SingleRankRun {
  losses: number[];
  /** Each step's global gradient norm before clipping. */
  gradNorms: number[];
  params: Map<string, Float32Array>;
  /** AdamW's exp_avg and exp_avg_sq of every parameter, and the steps taken. */
  moments: Map<string, { expAvg: Float32Array; expAvgSq: Float32Array }>;
  step: number;
}

export async function trainOneRank(config: TrainConfig): Promise<SingleRankRun> {
  const trainer = await Trainer.create(config, await cpuDevice());
  try {
    const losses: number[] = [];
    const gradNorms: number[] = [];
    while (!trainer.done) {
      const { loss, gradNorm } = await trainer.step();
      losses.push(loss);
      gradNorms.push(gradNorm);
    }
    const params = new Map<string, Float32Array>();
    const moments = new Map<string, { expAvg: Float32Array; expAvgSq: Float32Array }>();
    for (const [name, param] of trainer.model.namedParameters()) {
      params.set(name, (await param.read()) as Float32Array);
      const { expAvg, expAvgSq } = trainer.optimizer.state(name);
      moments.set(name, { expAvg: (await expAvg.read()) as Float32Array, expAvgSq: (await expAvgSq.read()) as Float32Array });
    }
    return { losses, gradNorms, params, moments, step: trainer.optimizer.state(trainer.model.parameters()[0].name).step };
  } finally {
    trainer.dispose();
  }
}
