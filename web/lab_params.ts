// The lab's settings: what the form and the URL ask for (a layout, a model preset, a run length, a
// backend, whether to compare with one rank, how often to save, a rank to fail), parsed and checked
// with the messages a student reads on the page. The run's own checks (src/train/config.ts) speak
// of command-line flags; here they are reworded with the form's labels ("--dp" is "Data parallel
// (dp)"). The form's controls have the URL parameters' names, so a link reproduces a lab run.

import { checkTrainConfig, type TrainConfig } from "../src/train/config.ts";
import type { PlannedFailure } from "../src/train/rank_failures.ts";

/** Every setting of a lab run. */
export interface LabSettings {
  config: TrainConfig;
  /** Also train the same run on one rank, for the loss chart. */
  reference: boolean;
  /** A rank that fails on purpose, so that the run goes on elastically; null for none. */
  failure: PlannedFailure | null;
  /** Start as the page opens. */
  autostart: boolean;
}

/** The OPFS folder the lab saves its checkpoints into and resumes from. */
export const LAB_FOLDER = "lab";

/** The form's labels, by URL parameter (and control id), as the messages name them. */
export const LABELS: Record<string, string> = {
  preset: "Model preset",
  steps: "Steps",
  batch: "Batch (rows)",
  seq: "Sequence length (tokens)",
  dp: "Data parallel (dp)",
  tp: "Tensor parallel (tp)",
  sp: "Sequence parallel (sp)",
  spImpl: "Sequence parallel kind",
  zero: "ZeRO stage",
  qwz: "ZeRO++ quantized weights (qwZ)",
  hpz: "ZeRO++ hierarchical partition (hpZ)",
  qgz: "ZeRO++ quantized gradients (qgZ)",
  nodes: "Nodes",
  backend: "Backend",
  saveEvery: "Save to OPFS every",
  failRank: "Rank to fail",
  failStep: "Step it fails at",
  failHow: "How it fails",
  reference: "Compare with one rank",
  lr: "Learning rate",
  seed: "Seed",
};

/** The lab's first run: a layout that shows data and tensor parallelism, ZeRO and two nodes at once. */
export const DEFAULTS: Record<string, string> = {
  preset: "tiny",
  steps: "60",
  batch: "8",
  seq: "32",
  dp: "2",
  tp: "2",
  sp: "1",
  spImpl: "ulysses",
  zero: "1",
  qwz: "0",
  hpz: "0",
  qgz: "0",
  nodes: "2",
  backend: "cpu",
  saveEvery: "10",
  failRank: "",
  failStep: "",
  failHow: "throw",
  reference: "1",
  lr: "0.01",
  seed: "0",
  autostart: "1",
};

const CHOICES: Record<string, string[]> = {
  preset: ["tiny", "small"],
  spImpl: ["ulysses", "megatron"],
  zero: ["0", "1", "2", "3"],
  backend: ["cpu", "webgpu", "auto"],
  qwz: ["0", "1"],
  hpz: ["0", "1"],
  qgz: ["0", "1"],
  failHow: ["throw", "exit", "save"],
  reference: ["0", "1"],
  autostart: ["0", "1"],
};

/** A setting the page cannot use, worded for the page. */
export class LabInputError extends Error {}

/** The settings a query string asks for (missing ones take DEFAULTS), as text by name. */
export function valuesFromQuery(search: string): Record<string, string> {
  const params = new URLSearchParams(search);
  const unknown = [...params.keys()].filter((name) => !(name in DEFAULTS) && name !== "fail");
  if (unknown.length) {
    throw new LabInputError(
      `The address names a setting the lab does not have: “${unknown[0]}”. ` +
        `Its settings are ${Object.keys(DEFAULTS).join(", ")} and fail (RANK@STEP[:HOW]).`,
    );
  }
  const values = { ...DEFAULTS };
  for (const [name, value] of params) values[name] = value;
  // fail=RANK@STEP[:HOW] is the short form of failRank, failStep and failHow.
  if (params.has("fail")) {
    const match = /^(\d+)@(\d+)(?::(\w+))?$/.exec(params.get("fail")!.trim());
    if (!match) {
      throw new LabInputError(`A failure is written RANK@STEP or RANK@STEP:HOW, e.g. 1@7:exit, got “${params.get("fail")}”.`);
    }
    [values.failRank, values.failStep, values.failHow] = [match[1], match[2], match[3] ?? "throw"];
  }
  return values;
}

function wholeNumber(values: Record<string, string>, name: string, min: number): number {
  const text = values[name].trim();
  const value = Number(text);
  if (text === "" || !Number.isInteger(value) || value < min) {
    const got = text === "" ? "nothing (the field is empty or not a number)" : `“${values[name]}”`;
    throw new LabInputError(`${LABELS[name]} must be a whole number ≥ ${min}, got ${got}.`);
  }
  return value;
}

function choice(values: Record<string, string>, name: string): string {
  const value = values[name];
  if (!CHOICES[name].includes(value)) {
    throw new LabInputError(`${LABELS[name] ?? name} must be one of ${CHOICES[name].join(", ")}, got “${value}”.`);
  }
  return value;
}

/** The run that `values` (by setting name, as text) ask for, checked; throws LabInputError in the page's words. */
export function labSettings(values: Record<string, string>): LabSettings {
  const lr = Number(values.lr);
  if (!(lr > 0) || !Number.isFinite(lr)) throw new LabInputError(`${LABELS.lr} must be a positive number, got “${values.lr}”.`);
  const zeropp = choice(values, "qwz") === "1" || choice(values, "hpz") === "1" || choice(values, "qgz") === "1";
  const dp = wholeNumber(values, "dp", 1), tp = wholeNumber(values, "tp", 1), sp = wholeNumber(values, "sp", 1);
  const nodes = wholeNumber(values, "nodes", 1);
  const saveEvery = wholeNumber(values, "saveEvery", 0);
  const config: TrainConfig = {
    preset: choice(values, "preset"),
    steps: wholeNumber(values, "steps", 1),
    batch: wholeNumber(values, "batch", 1),
    seq: wholeNumber(values, "seq", 1),
    lr,
    seed: wholeNumber(values, "seed", 0),
    backend: choice(values, "backend") as TrainConfig["backend"],
    dp,
    tp,
    sp,
    nodes,
    spImpl: choice(values, "spImpl") as TrainConfig["spImpl"],
    zero: Number(choice(values, "zero")) as TrainConfig["zero"],
    ...(zeropp
      ? {
        zeroQuantizedWeights: values.qwz === "1",
        zeroQuantizedGradients: values.qgz === "1",
        zeroHpzPartitionSize: values.hpz === "1" ? (dp * tp * sp) / nodes : 1,
      }
      : {}),
    ...(saveEvery > 0 ? { save: LAB_FOLDER, saveEvery } : {}),
  };
  let failure: PlannedFailure | null = null;
  if (values.failRank.trim() !== "" || values.failStep.trim() !== "") {
    const rank = wholeNumber(values, "failRank", 0), step = wholeNumber(values, "failStep", 1);
    const ranks = dp * tp * sp;
    if (rank >= ranks) {
      throw new LabInputError(`${LABELS.failRank} must be a rank of the layout, 0 to ${ranks - 1}, got ${rank}.`);
    }
    if (step > config.steps) {
      throw new LabInputError(`${LABELS.failStep} must be at most ${LABELS.steps}, ${config.steps}, got ${step}.`);
    }
    if (saveEvery === 0) {
      throw new LabInputError(
        `A failed rank is survived by going on from the last checkpoint: set “${LABELS.saveEvery}” to a number of steps.`,
      );
    }
    const how = choice(values, "failHow") as PlannedFailure["how"];
    if (how === "save" && step % saveEvery !== 0 && step !== config.steps) {
      throw new LabInputError(
        `A rank that dies while saving needs a save after its step: make “${LABELS.failStep}” a multiple of ` +
          `“${LABELS.saveEvery}” (${saveEvery}), or the last step.`,
      );
    }
    failure = { rank, step, how };
  }
  inPageWords(() => checkTrainConfig({ ...config, elastic: failure !== null || undefined }));
  return { config, reference: choice(values, "reference") === "1", failure, autostart: choice(values, "autostart") === "1" };
}

/** The command-line flags the run's checks name, as the form labels them. */
const FLAG_LABELS: Record<string, string> = {
  steps: LABELS.steps,
  batch: LABELS.batch,
  seq: LABELS.seq,
  dp: LABELS.dp,
  tp: LABELS.tp,
  sp: LABELS.sp,
  "sp-impl": LABELS.spImpl,
  zero: LABELS.zero,
  nodes: LABELS.nodes,
  "zero-quantized-weights": LABELS.qwz,
  "zero-quantized-gradients": LABELS.qgz,
  "zero-hpz-partition-size": LABELS.hpz,
  "save-every": LABELS.saveEvery,
  save: LABELS.saveEvery,
  elastic: "Fail a rank",
  lr: LABELS.lr,
  seed: LABELS.seed,
};

/** A message of the run's checks ("train: --dp 3 …"), with the flags named as the form labels them. */
export function pageWords(message: string): string {
  const text = message.replace(/^(train|parallel|elastic): /, "").replace(
    /--([a-z-]+)/g,
    (flag, name: string) => FLAG_LABELS[name] ? `“${FLAG_LABELS[name]}”` : flag,
  );
  return text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".");
}

function inPageWords<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    throw new LabInputError(pageWords((error as Error).message));
  }
}
