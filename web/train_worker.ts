// The page's training worker: runs a Trainer off the main thread (WebGPU works in dedicated
// workers) and posts every step's figures back. Messages in: {type: "start", config}, {type: "stop"}.
// Messages out: "ready" (model and device), "step" (StepMetrics), "done", "error".

import { paramCount } from "../src/nn/config.ts";
import type { TrainConfig } from "../src/train/config.ts";
import { type StepMetrics, Trainer } from "../src/train/trainer.ts";

export type WorkerRequest = { type: "start"; config: TrainConfig } | { type: "stop" };
export type WorkerReply =
  | { type: "ready"; backend: string; adapter: string; parameters: number; floor: number }
  | { type: "step"; metrics: StepMetrics }
  | { type: "done"; stopped: boolean; samples: string[] }
  | { type: "error"; message: string };

const post = (reply: WorkerReply) => (self as unknown as Worker).postMessage(reply);
let stopRequested = false;

async function run(config: TrainConfig): Promise<void> {
  const trainer = await Trainer.create(config);
  try {
    post({
      type: "ready",
      backend: trainer.device.name,
      adapter: trainer.device.info.adapter,
      parameters: paramCount(trainer.modelConfig),
      floor: trainer.floor,
    });
    while (!trainer.done && !stopRequested) post({ type: "step", metrics: await trainer.step() });
    post({ type: "done", stopped: stopRequested, samples: await trainer.sample("the ", 2, 100) });
  } finally {
    trainer.dispose();
  }
}

self.onmessage = (event: MessageEvent<WorkerRequest>) => {
  const request = event.data;
  if (request.type === "stop") {
    stopRequested = true;
    return;
  }
  stopRequested = false;
  run(request.config).catch((error) => post({ type: "error", message: error instanceof Error ? error.message : String(error) }));
};
