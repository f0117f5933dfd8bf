// Opening a checkpoint and loading one rank's state from it, on any layout.
//
// A path is a checkpoint folder (it holds metadata.json) or a save root (its `latest` names the
// folder). A folder without metadata.json is torn: refused, never loaded. A rank's state comes from
// a distributed checkpoint by load-time resharding (reshard.ts: only the byte ranges it needs),
// from a universal one by slicing the whole parameters the same way.
//
// A rank file that is missing or not of its recorded size (a rank that died with its disk, a torn
// copy) is set aside, not fatal: each fragment it held is read from another file that holds a
// replica (the fragment map's replicas: every data-parallel copy under DDP, tensor-parallel copies
// of replicated rows). A piece that no other file holds (a ZeRO partition of the optimizer state)
// is named, and nothing is loaded.

import type { Phi3Config } from "../nn/config.ts";
import { heldFragments, lostFragments, type RankFragments, type RankState } from "../parallel/fragment_map.ts";
import type { TensorParallelShard } from "../parallel/tp_shards.ts";
import { CheckpointError } from "./errors.ts";
import { type CheckpointMetadata, checkSameModel, parseMetadata } from "./metadata.ts";
import { checkMetadataFields } from "./metadata_check.ts";
import { planCopies, readCopies, type SourceFragment, type SourceLayout } from "./reshard.ts";
import { LATEST, METADATA, rankFile } from "./save.ts";
import { type CheckpointStorage, joinPath } from "./storage.ts";

export interface Checkpoint {
  storage: CheckpointStorage;
  /** The checkpoint's folder in the storage. */
  folder: string;
  metadata: CheckpointMetadata;
  /** Data files that cannot be read whole, by name: why (missing, or not of the size recorded). */
  damaged: Map<string, string>;
}

/** The committed checkpoint at `path` (a checkpoint folder, or a save root whose `latest` is followed). */
export async function openCheckpoint(storage: CheckpointStorage, path: string): Promise<Checkpoint> {
  let folder = path;
  if (await storage.size(joinPath(path, METADATA)) === null) {
    if (await storage.size(joinPath(path, LATEST)) === null) {
      const names = await storage.list(path);
      if (names.some((name) => name.startsWith("rank-"))) {
        throw new CheckpointError(`${path} is a torn checkpoint: its rank files were written but no metadata.json was committed`);
      }
      throw new CheckpointError(`${path}: no checkpoint here (no metadata.json and no ${LATEST} file)`);
    }
    const latest = new TextDecoder().decode(await storage.read(joinPath(path, LATEST))).trim();
    if (!/^step-\d+$/.test(latest)) {
      throw new CheckpointError(`${path}/${LATEST} names ${JSON.stringify(latest)}, not a step folder`);
    }
    folder = joinPath(path, latest);
    if (await storage.size(joinPath(folder, METADATA)) === null) {
      throw new CheckpointError(`${folder} (named by ${path}/${LATEST}) is a torn checkpoint: no metadata.json was committed`);
    }
  }
  const parsed = parseMetadata(new TextDecoder().decode(await storage.read(joinPath(folder, METADATA))), folder);
  let bytes = 0;
  const damaged = new Map<string, string>();
  for (const file of parsed.files) {
    const size = await storage.size(joinPath(folder, file.name));
    if (size === null) damaged.set(file.name, "missing");
    else if (size !== file.bytes) damaged.set(file.name, `${size} bytes, not the ${file.bytes} recorded (torn)`);
    // A file set aside is never read: what it was recorded to hold stands in for it.
    bytes += size === null ? file.bytes : Math.min(size, file.bytes);
  }
  if (parsed.kind === "universal" && damaged.size > 0) {
    const [name, why] = [...damaged][0];
    throw new CheckpointError(
      `${joinPath(folder, name)}: ${why} (metadata.json lists it; a universal checkpoint has no replicas)`,
    );
  }
  return { storage, folder, metadata: checkMetadataFields(parsed, folder, bytes), damaged };
}

/** Refuses a checkpoint with damaged files, for the readers that need every file (convert, export). */
export function requireWhole({ folder, damaged }: Checkpoint): void {
  if (damaged.size === 0) return;
  const files = [...damaged].map(([name, why]) => `${joinPath(folder, name)} (${why})`);
  throw new CheckpointError(
    `${files.join(", ")}: this needs every file whole; training can still resume from the replicas the other files hold`,
  );
}

/** What the checkpoint holds of every parameter, for resharding. */
export function sourceLayout(checkpoint: Checkpoint): SourceLayout {
  const { metadata } = checkpoint;
  const shards = new Map<string, readonly TensorParallelShard[]>();
  const fragments = new Map<string, SourceFragment[]>();
  if (metadata.kind === "universal") {
    for (const { name, shape } of metadata.parameters) {
      shards.set(name, [{ kind: "replicated", dim: 0, index: 0, parts: 1, fullShape: shape, shape }]);
      const numel = shape.reduce((a, b) => a * b, 1);
      fragments.set(name, [{
        name,
        shardIndex: 0,
        shardOffset: 0,
        numel,
        at: (state) => ({ file: `${state}.safetensors`, tensor: name, element: 0 }),
      }]);
    }
    return { shards, fragments };
  }
  const map = metadata.fragmentMap!;
  const usable = (rank: number) => !checkpoint.damaged.has(rankFile(rank));
  checkNothingLost(checkpoint, usable);
  for (const { name, shards: held } of map.parameters) {
    shards.set(name, held);
    const pieces = heldFragments(map, name, usable).map(({ rank, fragment }): SourceFragment => ({
      name,
      shardIndex: map.ranks[rank].tensorParallelRank,
      shardOffset: fragment.shardOffset,
      numel: fragment.numel,
      at: (state) => ({ file: rankFile(rank), tensor: state, element: fragment.start }),
    }));
    fragments.set(name, pieces.sort((a, b) => a.shardIndex - b.shardIndex || a.shardOffset - b.shardOffset));
  }
  return { shards, fragments };
}

/** Refuses a checkpoint whose damaged files hold pieces that no other file holds, naming them. */
function checkNothingLost({ folder, metadata, damaged }: Checkpoint, usable: (rank: number) => boolean): void {
  if (damaged.size === 0) return;
  const map = metadata.fragmentMap!;
  const lost = map.parameters.flatMap(({ name }) => lostFragments(map, name, usable));
  if (lost.length === 0) return;
  const zero = map.layout.zero > 0 ? `, a ZeRO-${map.layout.zero} partition` : "";
  const pieces = lost.slice(0, 3).map(({ rank, fragment: f }) =>
    `"${f.name}" elements [${f.shardOffset}, ${f.shardOffset + f.numel}) of tp shard ${
      map.ranks[rank].tensorParallelRank
    } (fp32, exp_avg, exp_avg_sq; only in ${rankFile(rank)}${zero})`
  );
  const more = lost.length > 3 ? ` and ${lost.length - 3} more` : "";
  const files = [...damaged].map(([name, why]) => `${name} is ${why}`).join(", ");
  throw new CheckpointError(
    `${folder}: ${files}, and ${lost.length} piece(s) of the training state it held exist in no other file: ` +
      `${pieces.join("; ")}${more}`,
  );
}

/**
 * This rank's state for its entry of the target layout's fragment map (`target`, with its shard of
 * every parameter), from `checkpoint` of the same model `model`.
 */
export async function loadRankState(
  checkpoint: Checkpoint,
  model: Phi3Config,
  target: RankFragments,
  targetShards: Map<string, TensorParallelShard>,
): Promise<RankState> {
  checkSameModel(checkpoint.metadata.model, model, checkpoint.folder);
  const copies = planCopies(sourceLayout(checkpoint), target, targetShards);
  return await readCopies(checkpoint.storage, checkpoint.folder, copies, target.numel, checkpoint.metadata.training.step);
}
