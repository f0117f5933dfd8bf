// The page's training worker: runs a Trainer off the main thread (WebGPU and OPFS's synchronous
// file handles work in dedicated workers) and posts every step's figures back. Messages in:
// {type: "start", config} (config.save and config.resume name OPFS folders), {type: "stop"},
// {type: "save", folder} (a checkpoint after the current step). Messages out: "ready" (model and
// device), "step" (StepMetrics), "saved" (the checkpoint's folder), "done", "error".

import { paramCount } from "../src/nn/config.ts";
import { stepFolder } from "../src/checkpoint/save.ts";
import { saveDue } from "../src/train/checkpointing.ts";
import type { TrainConfig } from "../src/train/config.ts";
import { type StepMetrics, Trainer } from "../src/train/trainer.ts";

export type WorkerRequest = { type: "start"; config: TrainConfig } | { type: "stop" } | { type: "save"; folder: string };
export type WorkerReply =
  | { type: "ready"; backend: string; adapter: string; parameters: number; floor: number; startStep: number }
  | { type: "step"; metrics: StepMetrics }
  | { type: "saved"; folder: string; step: number }
  | { type: "done"; stopped: boolean; samples: string[] }
  | { type: "error"; message: string };

const post = (reply: WorkerReply) => (self as unknown as Worker).postMessage(reply);
let stopRequested = false;
let saveRequested: string | null = null;

async function run(config: TrainConfig): Promise<void> {
  const trainer = await Trainer.create(config);
  try {
    post({
      type: "ready",
      backend: trainer.device.name,
      adapter: trainer.device.info.adapter,
      parameters: paramCount(trainer.modelConfig),
      floor: trainer.floor,
      startStep: trainer.stepCount,
    });
    while (!trainer.done && !stopRequested) {
      post({ type: "step", metrics: await trainer.step() });
      if (saveDue(config, trainer.stepCount)) {
        post({ type: "saved", folder: `${config.save}/${stepFolder(trainer.stepCount)}`, step: trainer.stepCount });
      }
      if (saveRequested) {
        const folder = saveRequested;
        saveRequested = null;
        post({ type: "saved", folder: `${folder}/${await trainer.save(folder)}`, step: trainer.stepCount });
      }
    }
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
  if (request.type === "save") {
    saveRequested = request.folder;
    return;
  }
  stopRequested = false;
  run(request.config).catch((error) => post({ type: "error", message: error instanceof Error ? error.message : String(error) }));
};
