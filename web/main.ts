// The demo page: trains the tiny preset in a Web Worker and draws the live loss curve against the
// corpus floor, with a progress bar and tokens/s; a second panel runs the kernel self-check.
// URL parameters override the run (?steps=40&batch=8&seq=32&preset=tiny&lr=0.01&seed=0&autostart=0;
// save=FOLDER&saveEvery=N saves checkpoints into that OPFS folder, resume=PATH goes on from one).
// "Save to OPFS" saves after the current step into the folder "checkpoints"; "Resume from OPFS"
// goes on from what its latest names. `document.body.dataset.train` goes "running" → "done" |
// "stopped" | "error", and `dataset.saved` names the last checkpoint, so tests can wait for them.

import { DEFAULT_TRAIN_CONFIG, type TrainConfig } from "../src/train/config.ts";
import { LossChart } from "./loss_chart.ts";
import { runSelfcheck } from "./selfcheck_panel.ts";
import type { WorkerReply } from "./train_worker.ts";

const byId = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const chart = new LossChart(byId<HTMLCanvasElement>("chart"));
let worker: Worker | null = null;

function configFromUrl(): TrainConfig {
  const params = new URLSearchParams(location.search);
  const number = (
    name: keyof TrainConfig,
  ) => (params.has(name) ? Number(params.get(name)) : DEFAULT_TRAIN_CONFIG[name] as number);
  return {
    ...DEFAULT_TRAIN_CONFIG,
    preset: params.get("preset") ?? DEFAULT_TRAIN_CONFIG.preset,
    steps: number("steps"),
    batch: number("batch"),
    seq: number("seq"),
    lr: number("lr"),
    seed: number("seed"),
    save: params.get("save") ?? undefined,
    saveEvery: params.has("saveEvery") ? Number(params.get("saveEvery")) : undefined,
    resume: params.get("resume") ?? undefined,
  };
}

/** Where the buttons save and resume. */
const OPFS_FOLDER = "checkpoints";

function showError(element: HTMLElement, message: string): void {
  element.textContent = `error: ${message}`;
  element.className = "fail";
}

function startTraining(config: TrainConfig): void {
  worker?.terminate();
  worker = new Worker("./train_worker.js", { type: "module" });
  const status = byId("train-status");
  const progress = byId<HTMLProgressElement>("progress");
  const losses: number[] = [];
  status.className = "muted";
  status.textContent = "opening the device and building the model…";
  progress.max = config.steps;
  progress.value = 0;
  byId("samples").replaceChildren();
  document.body.dataset.train = "running";
  byId<HTMLButtonElement>("stop").disabled = false;

  worker.onmessage = (event: MessageEvent<WorkerReply>) => {
    const reply = event.data;
    switch (reply.type) {
      case "ready": {
        byId("backend").textContent = reply.backend;
        byId("adapter").textContent = reply.adapter;
        byId("model").textContent = `${config.preset}, ${reply.parameters.toLocaleString("en-US")} parameters, ` +
          `batch ${config.batch} × ${config.seq} tokens`;
        const notice = byId("notice");
        notice.style.display = reply.backend === "cpu" ? "block" : "none";
        notice.textContent = "This browser offers no WebGPU adapter, so shardlab trains on its CPU backend.";
        chart.reset(config.steps, reply.floor);
        if (reply.startStep > 0) byId("checkpoint").textContent = `resumed at step ${reply.startStep} from OPFS ${config.resume}`;
        byId("floor").textContent = reply.floor.toFixed(3);
        break;
      }
      case "step": {
        const m = reply.metrics;
        losses.push(m.loss);
        chart.push(m.loss);
        progress.value = m.step;
        byId("step").textContent = `${m.step} / ${config.steps}`;
        byId("loss").textContent = m.loss.toFixed(3);
        byId("rate").textContent = m.tokensPerSec.toFixed(0);
        byId("memory").textContent = `${(m.deviceBytes / 2 ** 20).toFixed(1)} MiB`;
        status.textContent = "training…";
        byId<HTMLButtonElement>("save").disabled = false;
        document.body.dataset.losses = JSON.stringify(losses);
        break;
      }
      case "saved":
        byId("checkpoint").textContent = `saved step ${reply.step} to OPFS ${reply.folder}`;
        document.body.dataset.saved = reply.folder;
        break;
      case "done":
        status.textContent = reply.stopped ? "stopped." : "done.";
        for (const line of reply.samples) {
          const pre = document.createElement("pre");
          pre.textContent = line;
          byId("samples").append(pre);
        }
        byId<HTMLButtonElement>("stop").disabled = true;
        byId<HTMLButtonElement>("save").disabled = true;
        document.body.dataset.train = reply.stopped ? "stopped" : "done";
        break;
      case "error":
        showError(status, reply.message);
        byId<HTMLButtonElement>("stop").disabled = true;
        document.body.dataset.train = "error";
        break;
    }
  };
  worker.onerror = (event) => {
    showError(status, event.message);
    document.body.dataset.train = "error";
  };
  worker.postMessage({ type: "start", config });
}

byId("start").addEventListener("click", () => startTraining(configFromUrl()));
byId("stop").addEventListener("click", () => worker?.postMessage({ type: "stop" }));
byId("save").addEventListener("click", () => worker?.postMessage({ type: "save", folder: OPFS_FOLDER }));
byId("resume").addEventListener("click", () => startTraining({ ...configFromUrl(), resume: OPFS_FOLDER }));
byId("selfcheck").addEventListener("click", () => {
  document.body.dataset.selfcheck = "running";
  runSelfcheck(byId("rows"), byId("selfcheck-status")).then(
    () => (document.body.dataset.selfcheck = "done"),
    (error) => {
      showError(byId("selfcheck-status"), error instanceof Error ? error.message : String(error));
      document.body.dataset.selfcheck = "error";
    },
  );
});
if (new URLSearchParams(location.search).get("autostart") !== "0") startTraining(configFromUrl());
