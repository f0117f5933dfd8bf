// Saving and loading from every rank of a world at once (or from the one rank of a run on one
// device, `world` null). Save: each rank writes its own file, the records reach rank 0 (a gather),
// rank 0 commits, and every rank waits for the commit. Load: each rank reads the byte ranges of its
// own fragments, then all check together what they loaded against the saved checksums.

import type { Comm } from "../comm/collectives.ts";
import type { Phi3Config } from "../nn/config.ts";
import type { FragmentMap, RankState } from "../parallel/fragment_map.ts";
import type { Checkpoint } from "./load.ts";
import { loadRankState } from "./load.ts";
import type { FileRecord, TrainingRecord } from "./metadata.ts";
import { commitCheckpoint, saveRankFile, stepFolder } from "./save.ts";
import { type CheckpointStorage, joinPath } from "./storage.ts";
import { verifyLoadedState } from "./verify.ts";

export interface SaveOptions {
  /** This rank's state, laid out as its entry of `map`. */
  state: RankState;
  map: FragmentMap;
  model: Phi3Config;
  training: TrainingRecord;
}

/** Saves and commits ROOT/step-NNNNNNNN (collective over `world`); returns that folder's name. */
export async function saveCheckpoint(
  world: Comm | null,
  storage: CheckpointStorage,
  root: string,
  options: SaveOptions,
): Promise<string> {
  const { state, map, model, training } = options;
  const folder = stepFolder(training.step);
  const rank = world?.rank ?? 0;
  const record = await saveRankFile(storage, joinPath(root, folder), rank, state, training);
  const files = world ? await gatherRecords(world, record) : [record];
  if (files) await commitCheckpoint(storage, root, folder, { model, training, layout: map.layout, map, files });
  await world?.barrier({ tag: "checkpoint.commit" });
  return folder;
}

/** Every rank's file record on rank 0, in rank order (null elsewhere). */
async function gatherRecords(world: Comm, record: FileRecord): Promise<FileRecord[] | null> {
  const bytes = new TextEncoder().encode(JSON.stringify(record));
  const lengths = await world.allGather(new Int32Array([bytes.length]), { tag: "checkpoint.records" });
  const gathered = await world.gather(bytes, { root: 0, tag: "checkpoint.records" });
  if (!gathered) return null;
  const records: FileRecord[] = [];
  let at = 0;
  for (const length of lengths) {
    records.push(JSON.parse(new TextDecoder().decode(gathered.subarray(at, at + length))));
    at += length;
  }
  return records;
}

/**
 * World rank `rank`'s state under the target layout's fragment map `map`, from `checkpoint` of
 * `model`; then every rank checks together what it loaded (collective over `world`).
 */
export async function loadCheckpoint(
  world: Comm | null,
  checkpoint: Checkpoint,
  model: Phi3Config,
  map: FragmentMap,
  rank: number,
): Promise<RankState> {
  const entry = map.ranks[rank];
  const shards = new Map(map.parameters.map((p) => [p.name, p.shards[entry.tensorParallelRank]]));
  const state = await loadRankState(checkpoint, model, entry, shards);
  await verifyLoadedState(world, map, state, checkpoint);
  return state;
}
