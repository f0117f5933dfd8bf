// The lab page's controller: reads the settings from the address and the form, starts the run in a
// worker (lab_worker.ts) and, to compare, the same run on one rank in a second one, and redraws the
// views at every step. "Resume from the saved checkpoint" goes on from the OPFS folder the runs
// save into, on whatever layout the form now shows. Bad settings are shown in the page's words and
// nothing starts. `window.lab` holds the run's state (lab_run_state.ts) and
// `document.body.dataset.lab` its phase, for tests: idle, invalid, running, done, stopped, error.

import { DEFAULTS, LAB_FOLDER, LabInputError, type LabSettings, labSettings, pageWords, valuesFromQuery } from "./lab_params.ts";
import { fillForm, readForm, showBackendNote } from "./lab_form.ts";
import { type LabPhase, LabRunState } from "./lab_run_state.ts";
import { drawLoss, drawStepViews, layoutName } from "./lab_views.ts";
import type { LabReply, LabRequest } from "./lab_worker.ts";
import type { LossPoint } from "./loss_chart.ts";
import { runSelfcheck } from "./selfcheck_panel.ts";
import { formatBytes, formatMs } from "./views/units.ts";
import type { TrainConfig } from "../src/train/config.ts";

const byId = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const workers: Worker[] = [];
/** The one-rank runs finished in this page, by what they depend on, so that a resume need not train them again. */
const referenceCache = new Map<string, LossPoint[]>();
/** The run the page shows; also `globalThis.lab`, for tests. */
let current: LabRunState | null = null;

function setPhase(phase: LabPhase): void {
  if (current) current.phase = phase;
  document.body.dataset.lab = phase;
  byId<HTMLButtonElement>("stop").disabled = phase !== "running";
}

function showMessage(message: string): void {
  const element = byId("message");
  element.textContent = message;
  element.hidden = message === "";
}

function setStatus(text: string): void {
  byId("status").textContent = text;
}

/** The same run on one rank: no layout, no checkpoints, no failures. */
function oneRank(config: TrainConfig): TrainConfig {
  const { preset, steps, batch, seq, lr, seed, backend } = config;
  return { preset, steps, batch, seq, lr, seed, backend };
}

function startWorker(request: LabRequest, onReply: (reply: LabReply) => void): void {
  const worker = new Worker("./lab_worker.js", { type: "module" });
  worker.onmessage = (event: MessageEvent<LabReply>) => onReply(event.data);
  worker.onerror = (event) => onReply({ type: "error", message: event.message || "the run's worker failed to start" });
  worker.postMessage(request);
  workers.push(worker);
}

function stopWorkers(): void {
  for (const worker of workers.splice(0)) worker.terminate();
}

function start(settings: LabSettings): void {
  stopWorkers();
  showMessage("");
  const { config } = settings;
  const state = new LabRunState(settings);
  current = state;
  Object.assign(globalThis, { lab: state });
  setPhase("running");
  const progress = byId<HTMLProgressElement>("progress");
  progress.max = config.steps;
  progress.value = 0;
  byId("events").replaceChildren();
  byId("checkpoint").textContent = "";
  setStatus(`${config.resume ? "Resuming" : "Starting"} ${layoutName(config)} on the ${config.backend} backend…`);
  drawLoss(state);

  startWorker({ type: "start", config, failure: settings.failure }, (reply) => {
    if (current !== state) return;
    switch (reply.type) {
      case "step": {
        const { metrics, attempt, ranks } = reply;
        if (config.resume && state.attempts[0].length === 0 && attempt === 0) state.startStep = metrics.step - 1;
        state.addStep(attempt, metrics, ranks);
        progress.value = metrics.step;
        setStatus(
          `Step ${metrics.step} of ${config.steps}: loss ${metrics.loss.toFixed(3)}, ${formatBytes(metrics.commBytes.total)} ` +
            `sent between ranks (${formatBytes(metrics.commBytes.inter)} across nodes), ` +
            `simulated communication ${formatMs(metrics.simTime)}.`,
        );
        drawLoss(state);
        drawStepViews(state);
        break;
      }
      case "saved":
        state.saved = reply.step;
        byId("checkpoint").textContent = `Saved step ${reply.step} to OPFS (folder “${LAB_FOLDER}”).`;
        break;
      case "failure": {
        const event = reply.event;
        state.addFailure(event);
        const item = document.createElement("li");
        item.dataset.failedRank = String(event.failedRank);
        const failed = `Rank ${event.failedRank} failed after step ${event.lastStep} (${event.failure}: ` +
          `${event.cause.split("\n")[0]}).`;
        item.textContent = event.newLayout
          ? `${failed} The survivors went on from ` +
            `${event.resumedFrom ? `the checkpoint of step ${event.resumedStep}` : "step 0 (nothing was saved yet)"}, ` +
            `${event.stepsLost} step${event.stepsLost === 1 ? "" : "s"} lost, ${layoutName(event.oldLayout)} → ` +
            `${layoutName(event.newLayout)}.${event.notes.length ? ` (${event.notes.join("; ")}.)` : ""}`
          : `${failed} No layout fits the survivors: ` +
            `${event.notes.join("; ")}.`;
        byId("events").append(item);
        drawLoss(state);
        break;
      }
      case "done":
        state.result = reply.result;
        setPhase("done");
        setStatus(`Done: ${config.steps} steps on ${layoutName(reply.result.config)}.`);
        break;
      case "error":
        showMessage(
          config.resume && /no checkpoint here/.test(reply.message)
            ? `There is no saved checkpoint in this browser's OPFS yet: train with “Save to OPFS every” above 0 first, ` +
              "then resume."
            : pageWords(reply.message),
        );
        setStatus("The run stopped with an error.");
        setPhase("error");
        break;
    }
  });

  if (!settings.reference) return;
  const key = JSON.stringify(oneRank(config));
  const cached = referenceCache.get(key);
  if (cached) {
    state.reference.push(...cached);
    document.body.dataset.reference = "done";
    return;
  }
  document.body.dataset.reference = "running";
  startWorker({ type: "start", config: oneRank(config), failure: null }, (reply) => {
    if (current !== state) return;
    if (reply.type === "step") state.reference.push({ step: reply.metrics.step, loss: reply.metrics.loss });
    if (reply.type === "done") {
      referenceCache.set(key, [...state.reference]);
      document.body.dataset.reference = "done";
    }
    if (reply.type === "error") {
      document.body.dataset.reference = "error";
      showMessage(`The one-rank run for comparison failed: ${pageWords(reply.message)}`);
    }
    drawLoss(state);
  });
}

/** The settings the form holds, or null after showing why they cannot run. */
function formSettings(): LabSettings | null {
  try {
    return labSettings(readForm());
  } catch (error) {
    if (!(error instanceof LabInputError)) throw error;
    showMessage(error.message);
    setPhase("invalid");
    return null;
  }
}

byId("settings").addEventListener("submit", (event) => {
  event.preventDefault();
  const settings = formSettings();
  if (settings) start(settings);
});
byId("resume").addEventListener("click", () => {
  const settings = formSettings();
  if (settings) start({ ...settings, config: { ...settings.config, resume: LAB_FOLDER, save: LAB_FOLDER } });
});
byId("stop").addEventListener("click", () => {
  stopWorkers();
  setPhase("stopped");
  setStatus("Stopped.");
});
byId("selfcheck").addEventListener("click", () => {
  document.body.dataset.selfcheck = "running";
  runSelfcheck(byId("rows"), byId("selfcheck-status")).then(
    () => (document.body.dataset.selfcheck = "done"),
    (error) => {
      const status = byId("selfcheck-status");
      status.textContent = `The self-check failed: ${error instanceof Error ? error.message : String(error)}`;
      status.className = "fail";
      document.body.dataset.selfcheck = "error";
    },
  );
});

showBackendNote(byId("backend-note"));
fillForm(DEFAULTS);
try {
  const values = valuesFromQuery(location.search);
  fillForm(values);
  const settings = labSettings(values);
  if (settings.autostart) start(settings);
} catch (error) {
  if (!(error instanceof LabInputError)) throw error;
  showMessage(error.message);
  setStatus("Nothing runs until the settings are fixed: correct them in the form (or the address) and press Train.");
  setPhase("invalid");
}
