// Saving and loading from every rank of a world at once (or from the one rank of a run on one
// device, `world` null). Save: each rank writes its own file; once all are written, each rank reads
// back and hashes its share of the parameters (round robin); the file and parameter records reach
// rank 0 (a gather), rank 0 commits, and every rank waits for the commit. Load: each rank reads the byte ranges of its
// own fragments, then all check together what they loaded against the saved checksums.

import type { Comm } from "../comm/collectives.ts";
import type { Phi3Config } from "../nn/config.ts";
import type { FragmentMap, RankState } from "../parallel/fragment_map.ts";
import type { Checkpoint } from "./load.ts";
import { loadRankState } from "./load.ts";
import type { FileRecord, ParameterRecord, TrainingRecord } from "./metadata.ts";
import { commitCheckpoint, parameterRecords, saveRankFile, stepFolder } from "./save.ts";
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
  const path = joinPath(root, folder);
  const file = await saveRankFile(storage, path, rank, state, training);
  if (!world) {
    await commitCheckpoint(storage, root, folder, { model, training, layout: map.layout, map, files: [file] });
    return folder;
  }
  await world.barrier({ tag: "checkpoint.written" });
  const mine = map.parameters.map((_, i) => i).filter((i) => i % world.size === rank);
  const gathered = await gatherRecords(world, { file, parameters: await parameterRecords(storage, path, map, mine) });
  if (gathered) {
    const parameters = map.parameters.map((_, i) => gathered[i % world.size].parameters[Math.floor(i / world.size)]);
    await commitCheckpoint(storage, root, folder, {
      model,
      training,
      layout: map.layout,
      map,
      files: gathered.map((g) => g.file),
      parameters,
    });
  }
  await world.barrier({ tag: "checkpoint.commit" });
  return folder;
}

interface RankRecords {
  file: FileRecord;
  parameters: ParameterRecord[];
}

/** Every rank's records on rank 0, in rank order (null elsewhere). */
async function gatherRecords(world: Comm, record: RankRecords): Promise<RankRecords[] | null> {
  const bytes = new TextEncoder().encode(JSON.stringify(record));
  const lengths = await world.allGather(new Int32Array([bytes.length]), { tag: "checkpoint.records" });
  const gathered = await world.gather(bytes, { root: 0, tag: "checkpoint.records" });
  if (!gathered) return null;
  const records: RankRecords[] = [];
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
