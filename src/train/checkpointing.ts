// Saving and resuming a training run, for the trainer on one device and for every rank of a
// parallel run alike: where a run starts (step 0 of its config, with the seeded weights or those of
// a Hugging Face model `initFrom` names, or a checkpoint's training record, which then gives the
// seed, the learning-rate schedule, AdamW's hyperparameters and clipping), the training record a
// save writes, and when a save is due.

import { type Checkpoint, openCheckpoint } from "../checkpoint/load.ts";
import type { TrainingRecord } from "../checkpoint/metadata.ts";
import { checkSameModel } from "../checkpoint/metadata.ts";
import { FsStorage } from "../checkpoint/fs_storage.ts";
import { OpfsStorage } from "../checkpoint/opfs_storage.ts";
import type { CheckpointStorage } from "../checkpoint/storage.ts";
import { checkHfModel, type HfModel, openHfModel } from "../checkpoint/hf_import.ts";
import type { Phi3Config } from "../nn/config.ts";
import { adamwHyperparameters } from "../optim/adamw.ts";
import { type TrainConfig, warmupStepsOf } from "./config.ts";

/**
 * Where a run starts: its first step and what it trains with from there; the checkpoint it resumes,
 * if any, or the Hugging Face model whose weights a new run starts from (checked against the run's model).
 */
export interface RunStart extends Omit<TrainingRecord, "step" | "preset" | "batch" | "seq"> {
  step: number;
  checkpoint: Checkpoint | null;
  initFrom: HfModel | null;
}

/** The storage a --save or --resume path names: a folder of the local file system in Deno, of OPFS in a browser. */
export function storageAt(path: string): CheckpointStorage {
  return "Deno" in globalThis ? new FsStorage(path) : new OpfsStorage(path);
}

/** Step 0 of the config (from `config.initFrom`'s weights if given), or the training record of the checkpoint `config.resume` names. */
export async function runStart(config: TrainConfig, model: Phi3Config): Promise<RunStart> {
  if (!config.resume) {
    return {
      step: 0,
      seed: config.seed,
      schedule: { maxLr: config.lr, minLr: config.lr / 10, warmupSteps: warmupStepsOf(config), totalSteps: config.steps },
      adamw: adamwHyperparameters({ weightDecay: config.weightDecay }),
      clipNorm: config.clipNorm ?? 1,
      checkpoint: null,
      initFrom: config.initFrom === undefined ? null : await initModelAt(config.initFrom, model),
    };
  }
  const checkpoint = await openCheckpoint(storageAt(config.resume), "");
  checkSameModel(checkpoint.metadata.model, model, config.resume);
  const { step, seed, schedule, adamw, clipNorm } = checkpoint.metadata.training;
  if (step >= config.steps) {
    throw new RangeError(
      `train: the checkpoint ${config.resume} is at step ${step}; --steps ${config.steps} leaves nothing to train`,
    );
  }
  return { step, seed, schedule, adamw, clipNorm, checkpoint, initFrom: null };
}

/** The Hugging Face model at `path` (a folder holding model.safetensors, or a .safetensors file), checked against `model`. */
async function initModelAt(path: string, model: Phi3Config): Promise<HfModel> {
  const cut = path.lastIndexOf("/");
  const hf = path.endsWith(".safetensors")
    ? await openHfModel(storageAt(cut < 0 ? "." : path.slice(0, cut) || "/"), path.slice(cut + 1), path)
    : await openHfModel(storageAt(path), "", path);
  checkHfModel(hf, model);
  return hf;
}

/** The record a save after `step` steps writes. */
export function trainingRecord(config: TrainConfig, start: RunStart, step: number): TrainingRecord {
  const { seed, schedule, adamw, clipNorm } = start;
  return { step, seed, preset: config.preset, batch: config.batch, seq: config.seq, schedule, adamw, clipNorm };
}

/** Whether a checkpoint is due once `step` steps are done: every --save-every steps, and at the end. */
export function saveDue(config: TrainConfig, step: number): boolean {
  return config.save !== undefined && (step === config.steps || step % (config.saveEvery ?? config.steps) === 0);
}
