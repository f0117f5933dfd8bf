// The reference the parallel tests compare with: the plain Trainer on one CPU device, which knows
// nothing of ranks, trained to the end; its per-step losses and final parameters by name.

import type { TrainConfig } from "../src/train/config.ts";
import { Trainer } from "../src/train/trainer.ts";
import { cpuDevice } from "./helpers.ts";

export interface SingleRankRun {
  losses: number[];
  /** Each step's global gradient norm before clipping. */
  gradNorms: number[];
  params: Map<string, Float32Array>;
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
    for (const [name, param] of trainer.model.namedParameters()) params.set(name, (await param.read()) as Float32Array);
    return { losses, gradNorms, params };
  } finally {
    trainer.dispose();
  }
}
