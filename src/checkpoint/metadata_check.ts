// Checks of a metadata.json beyond its format: every field a loader will use is of the right kind
// and agrees with the rest. The model config must be a valid one; the training record's numbers
// must make a schedule and an optimizer; the fragment map must be, field for field, the map its own
// layout gives for that model (so that no offset, size or replica can be forged); the parameters
// and their meanings must be the model's; the files must be the ones the layout writes. Anything
// else is a CheckpointError naming the field.

import { paramCount, type Phi3Config, validateConfig } from "../nn/config.ts";
import { adamwHyperparameters } from "../optim/adamw.ts";
import { warmupCosine } from "../optim/schedule.ts";
import { type FragmentMap, fragmentMap } from "../parallel/fragment_map.ts";
import { resolveLayout, worldSize } from "../parallel/layout.ts";
import { tensorParallelShards } from "../parallel/tp_shards.ts";
import { CheckpointError } from "./errors.ts";
import { type CheckpointMetadata, meaningOf, STATES } from "./metadata.ts";
import { rankFile } from "./save.ts";

/** Runs `check`, turning any error it throws into a CheckpointError about `what` in `where`. */
function about<T>(where: string, what: string, check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (error instanceof CheckpointError) throw error;
    throw new CheckpointError(`${where}/metadata.json: ${what} is not valid (${(error as Error).message})`);
  }
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Checks every field of a parsed metadata.json of format and version already checked (see the
 * header). `bytes` is what the listed files hold on disk in all: the model and the layout must fit
 * in it before any work in proportion to them is done.
 */
export function checkMetadataFields(json: CheckpointMetadata, where: string, bytes: number): CheckpointMetadata {
  const model = json.model as Phi3Config;
  about(where, "the model config", () => validateConfig(model));
  if (12 * paramCount(model) > bytes) {
    throw new CheckpointError(
      `${where}/metadata.json describes a model of ${paramCount(model)} parameters, more than its ${bytes} bytes of files hold`,
    );
  }
  const training = json.training;
  about(where, "the training record", () => {
    for (const key of ["step", "seed", "batch", "seq"] as const) {
      if (!Number.isSafeInteger(training[key]) || training[key] < 0) {
        throw new Error(`${key} is ${JSON.stringify(training[key])}`);
      }
    }
    if (!(typeof training.clipNorm === "number" && training.clipNorm >= 0)) {
      throw new Error(`clipNorm is ${JSON.stringify(training.clipNorm)}`);
    }
    if (typeof training.preset !== "string") throw new Error(`preset is ${JSON.stringify(training.preset)}`);
    warmupCosine(training.schedule);
    adamwHyperparameters(training.adamw);
  });

  const names = [...tensorParallelShards(model, 1, 0)];
  if (!Array.isArray(json.parameters) || json.parameters.length !== names.length) {
    throw new CheckpointError(
      `${where}/metadata.json lists ${json.parameters?.length} parameters; the model has ${names.length}`,
    );
  }
  json.parameters.forEach((record, i) => {
    const [name, shard] = names[i];
    if (record?.name !== name || !same(record.shape, shard.fullShape)) {
      throw new CheckpointError(
        `${where}/metadata.json: parameter ${i} is ${JSON.stringify(record?.name)}, the model's is "${name}" ${
          JSON.stringify(shard.fullShape)
        }`,
      );
    }
    for (const state of STATES) {
      if (typeof record.sha256?.[state] !== "string" || !/^[0-9a-f]{64}$/.test(record.sha256[state])) {
        throw new CheckpointError(`${where}/metadata.json: parameter "${name}" has no SHA-256 of ${state}`);
      }
    }
  });

  if (json.kind === "universal") {
    if (!same(json.files?.map((f) => f?.name), STATES.map((s) => `${s}.safetensors`))) {
      throw new CheckpointError(
        `${where}/metadata.json: a universal checkpoint's files are ${STATES.map((s) => `${s}.safetensors`).join(", ")}`,
      );
    }
  } else {
    checkMap(json, model, where);
    const world = json.fragmentMap!.worldSize;
    if (!same(json.files?.map((f) => f?.name), Array.from({ length: world }, (_, r) => rankFile(r)))) {
      throw new CheckpointError(`${where}/metadata.json: the files are not the ${world} rank files of its layout`);
    }
  }
  for (const file of json.files) {
    if (
      !Number.isSafeInteger(file.bytes) || file.bytes < 0 || typeof file.sha256 !== "string" ||
      !/^[0-9a-f]{64}$/.test(file.sha256)
    ) {
      throw new CheckpointError(`${where}/metadata.json: the record of ${file.name} has no valid size and SHA-256`);
    }
  }
  return json;
}

/** The fragment map must be the one its layout gives the model (blocks: its ZeRO-3 flat groups, or the model order). */
function checkMap(json: CheckpointMetadata, model: Phi3Config, where: string): void {
  const map = json.fragmentMap as FragmentMap;
  const layout = about(where, "the layout", () => resolveLayout(json.layout!));
  if (worldSize(layout) !== json.files.length) {
    throw new CheckpointError(
      `${where}/metadata.json: its layout has ${worldSize(layout)} ranks, but it lists ${json.files.length} files`,
    );
  }
  if (!same(layout, json.layout) || !same(map.layout, json.layout)) {
    throw new CheckpointError(`${where}/metadata.json: the layout and the fragment map's layout differ`);
  }
  const names = [...tensorParallelShards(model, 1, 0).keys()];
  const blocks = about(where, "the fragment map's flat groups", () => {
    if (layout.zero !== 3) return [names];
    const groups = map.ranks[0].flatGroups.map((group) => group.names);
    if (!groups.every((group) => Array.isArray(group) && group.every((name) => typeof name === "string"))) {
      throw new Error("names are not strings");
    }
    return groups;
  });
  const expected = about(where, "the fragment map", () => fragmentMap(model, layout, blocks));
  if (!same(map, expected)) {
    throw new CheckpointError(
      `${where}/metadata.json: the fragment map is not the one its layout (${JSON.stringify(layout)}) gives this model`,
    );
  }
  json.parameters.forEach((record, i) => {
    if (!same(record.meaning, meaningOf(expected.parameters[i].shards))) {
      throw new CheckpointError(
        `${where}/metadata.json: parameter "${record.name}" has meaning ${
          JSON.stringify(record.meaning)
        }, its shards say otherwise`,
      );
    }
  });
}
