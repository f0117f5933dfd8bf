// The fragment map: where every part of the training state lies on every rank of a layout. It is
// the contract between the parallel strategies and the checkpoint module: with the model config,
// the map and every rank's state rebuild the whole training state (assembleState).
//
// A rank's optimizer state is one step count and three flat f32 arrays of the same length and
// order: the fp32 master values, AdamW's exp_avg and exp_avg_sq (RankState). Under DDP the flat
// state is the rank's tensor-parallel shard of every parameter, one after another in model order;
// under ZeRO it is the rank's partition of the flat groups (zero_partition.ts), padding included.
//
// A fragment is a stretch of the flat state that holds one parameter: [start, start + numel) of
// each array, which is elements [shardOffset, shardOffset + numel) of the rank's shard of that
// parameter (row-major); the shard says where it lies in the full parameter (tp_shards.ts: kind,
// dim, index, parts, sub-parameter rows, vocabulary padding). A fragment never straddles two
// sub-parameters (q, k, v of a fused qkv_proj; gate and up), so all of it has the same replicas:
// the ranks that hold the same elements at the same place with the same values.
//   across the data group    every rank under DDP; none under ZeRO (each holds its own part)
//   across the tp group      every rank for a replicated parameter (the norms); the tp / numKvHeads
//                            ranks that share a kv head for its rows; none for the rest

import { sizeOf } from "../tensor/shape.ts";
import type { Phi3Config } from "../nn/config.ts";
import { dataParallelSize, groupIndices, type ParallelLayout, tensorParallelSize, worldSize } from "./layout.ts";
import { type SubParam, type TensorParallelShard, tensorParallelShards, unshardValues } from "./tp_shards.ts";
import { type FlatGroup, type FragmentPlace, partitionParameters } from "./zero_partition.ts";

export const FRAGMENT_MAP_VERSION = 1;

/** A fragment: where it lies in each array of the rank's flat state and in its shard, by Hugging Face name, and its replicas. */
export interface Fragment extends FragmentPlace {
  /** World ranks that hold these elements at the same place of their flat state, this one included, ascending. */
  replicas: number[];
}

export interface RankFragments {
  rank: number;
  /** This rank's index in its data group (ZeRO's partition index) and in its tensor-parallel group (its shards' index). */
  dataRank: number;
  tensorParallelRank: number;
  /** Elements of each array of the flat state. */
  numel: number;
  /** ZeRO: the flat groups, each with where this rank's part lies; empty under DDP. */
  flatGroups: FlatGroup[];
  /** Stretches of the flat state that hold no parameter (zeros), as [start, numel]. */
  padding: [number, number][];
  fragments: Fragment[];
}

export interface FragmentMap {
  version: typeof FRAGMENT_MAP_VERSION;
  layout: ParallelLayout;
  worldSize: number;
  dataParallelSize: number;
  tensorParallelSize: number;
  /** Every parameter in model order: its full (Hugging Face) shape, and the shard each tensor-parallel rank holds. */
  parameters: { name: string; shape: number[]; shards: TensorParallelShard[] }[];
  /** Indexed by world rank. */
  ranks: RankFragments[];
}

/** One rank's optimizer state, in the order of its RankFragments. */
export interface RankState {
  /** AdamW updates applied so far (every fragment of the rank has had as many). */
  step: number;
  fp32: Float32Array;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
}

/** The whole training state, by parameter name: full values and moments in the Hugging Face shape. */
export interface AssembledState {
  step: number;
  parameters: Map<string, StateValues>;
}

/**
 * The fragment map of a layout. `blocks` lists the parameter names of the model's blocks in order
 * (ZeRO-3 partitions each as a flat group; ZeRO-1/2 flatten them all as one).
 */
export function fragmentMap(config: Phi3Config, layout: ParallelLayout, blocks: readonly string[][]): FragmentMap {
  const tpSize = tensorParallelSize(layout);
  const shards = Array.from({ length: tpSize }, (_, index) => tensorParallelShards(config, tpSize, index));
  const world = worldSize(layout);
  return {
    version: FRAGMENT_MAP_VERSION,
    layout: { ...layout },
    worldSize: world,
    dataParallelSize: dataParallelSize(layout),
    tensorParallelSize: tpSize,
    parameters: [...shards[0]].map(([name, shard]) => ({
      name,
      shape: [...shard.fullShape],
      shards: shards.map((s) => s.get(name)!),
    })),
    ranks: Array.from({ length: world }, (_, rank) => rankFragments(layout, shards, blocks, rank)),
  };
}

/**
 * World rank `rank`'s entry of the fragment map, from the shard every tensor-parallel rank holds
 * of each parameter (`shards[index]`, in model order) and the blocks (see fragmentMap).
 */
export function rankFragments(
  layout: ParallelLayout,
  shards: readonly Map<string, TensorParallelShard>[],
  blocks: readonly string[][],
  rank: number,
): RankFragments {
  const { data, tensorParallel } = groupIndices(layout, rank);
  const local = shards[tensorParallel];
  const params = [...local].map(([name, shard]) => [name, sizeOf(shard.shape)] as const);
  let places: FragmentPlace[];
  let flatGroups: FlatGroup[] = [];
  let padding: [number, number][] = [];
  let numel = 0;
  if (layout.zero === 0) {
    places = params.map(([name, size]) => {
      const place = { name, start: numel, numel: size, shardOffset: 0 };
      numel += size;
      return place;
    });
  } else {
    const groups = layout.zero === 3 ? blocks.map((names) => [...names]) : [blocks.flat()];
    const partition = partitionParameters(params, groups, dataParallelSize(layout), data);
    ({ fragments: places, numel, padding } = partition);
    flatGroups = partition.groups;
  }
  const holders = Array.from({ length: worldSize(layout) }, (_, r) => groupIndices(layout, r));
  const fragments = places.flatMap((place) => {
    const shard = local.get(place.name)!;
    return splitAtSubParams(place, shard).map(({ sub, ...cut }): Fragment => ({
      ...cut,
      replicas: holders.flatMap((other, r) =>
        (layout.zero === 0 || other.data === data) && sameRows(shard, sub, tensorParallel, other.tensorParallel) ? [r] : []
      ),
    }));
  });
  return { rank, dataRank: data, tensorParallelRank: tensorParallel, numel, flatGroups, padding, fragments };
}

/** Whether tensor-parallel ranks `a` and `b` hold the same rows of the shard's parameter (within sub-parameter `sub`). */
function sameRows(shard: TensorParallelShard, sub: SubParam | null, a: number, b: number): boolean {
  if (shard.kind === "replicated") return true;
  const replicas = sub?.replicas ?? 1;
  return Math.floor(a / replicas) === Math.floor(b / replicas);
}

/** The fragment cut where the shard's sub-parameters meet, each cut with the sub-parameter it lies in (null: none). */
function splitAtSubParams(place: FragmentPlace, shard: TensorParallelShard): (FragmentPlace & { sub: SubParam | null })[] {
  const subs = shard.subParams ?? [];
  if (subs.length === 0) return [{ ...place, sub: null }];
  const width = shard.shape[1];
  const cuts: (FragmentPlace & { sub: SubParam | null })[] = [];
  for (const sub of subs) {
    const lo = Math.max(place.shardOffset, sub.localStart * width);
    const hi = Math.min(place.shardOffset + place.numel, (sub.localStart + sub.localRows) * width);
    if (hi > lo) {
      cuts.push({ name: place.name, start: place.start + lo - place.shardOffset, numel: hi - lo, shardOffset: lo, sub });
    }
  }
  return cuts;
}

/** A parameter's three states (values of a fragment, a shard or the whole parameter). */
export interface StateValues {
  fp32: Float32Array;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
}

const STATE_KEYS = ["fp32", "expAvg", "expAvgSq"] as const;
export type StateKey = typeof STATE_KEYS[number];

/**
 * One replica of every fragment of parameter `name`: the first rank that holds it, in rank order,
 * among the ranks `usable` accepts (all by default). A fragment no usable rank holds is left out:
 * lostFragments names those.
 */
export function heldFragments(
  map: FragmentMap,
  name: string,
  usable: (rank: number) => boolean = () => true,
): { rank: number; fragment: Fragment }[] {
  const held: { rank: number; fragment: Fragment }[] = [];
  for (const entry of map.ranks) {
    for (const fragment of entry.fragments) {
      if (fragment.name === name && fragment.replicas.find(usable) === entry.rank) held.push({ rank: entry.rank, fragment });
    }
  }
  return held;
}

/** The fragments of parameter `name` that no rank `usable` accepts holds, each once (from its first replica's entry). */
export function lostFragments(
  map: FragmentMap,
  name: string,
  usable: (rank: number) => boolean,
): { rank: number; fragment: Fragment }[] {
  return map.ranks.flatMap((entry) =>
    entry.fragments
      .filter((fragment) => fragment.name === name && fragment.replicas[0] === entry.rank && !fragment.replicas.some(usable))
      .map((fragment) => ({ rank: entry.rank, fragment }))
  );
}

/**
 * One parameter put together from its fragments (the states `keys`): place() each fragment that
 * heldFragments lists, as its values arrive, into the shards of its replicas; join() checks that
 * every element arrived and joins the shards (vocabulary padding dropped). Holds the shards only,
 * so a parameter read from files takes about its own size beside the result.
 */
export class ParameterAssembly<K extends StateKey = StateKey> {
  private readonly parameter: FragmentMap["parameters"][number];
  private readonly shards: { values: Pick<StateValues, K>; covered: Uint8Array }[];

  constructor(private readonly map: FragmentMap, readonly name: string, private readonly keys: readonly K[]) {
    const parameter = map.parameters.find((p) => p.name === name);
    if (!parameter) throw new RangeError(`assembleParameter: the map has no parameter "${name}"`);
    this.parameter = parameter;
    this.shards = parameter.shards.map((shard) => ({
      values: Object.fromEntries(keys.map((key) => [key, new Float32Array(sizeOf(shard.shape))])) as Pick<StateValues, K>,
      covered: new Uint8Array(sizeOf(shard.shape)),
    }));
  }

  place(rank: number, fragment: Fragment, given: Pick<StateValues, K>): void {
    const end = fragment.shardOffset + fragment.numel;
    // The replicas on other tensor-parallel ranks hold the same elements of their own shards.
    for (const index of new Set(fragment.replicas.map((r) => this.map.ranks[r].tensorParallelRank))) {
      const target = this.shards[index];
      if (end > target.covered.length) {
        throw new RangeError(`assembleParameter: rank ${rank} has a fragment of "${this.name}" outside its shard`);
      }
      for (const key of this.keys) target.values[key].set(given[key], fragment.shardOffset);
      target.covered.fill(1, fragment.shardOffset, end);
    }
  }

  join(): Pick<StateValues, K> {
    this.shards.forEach((shard, index) => {
      const hole = shard.covered.indexOf(0);
      if (hole >= 0) {
        throw new RangeError(`assembleParameter: no fragment holds element ${hole} of "${this.name}" shard ${index}`);
      }
    });
    return Object.fromEntries(
      this.keys.map((key) => [key, unshardValues(this.shards.map((shard) => shard.values[key]), this.parameter.shards)]),
    ) as Pick<StateValues, K>;
  }
}

/**
 * Parameter `name`'s full value and moments, from the values of the fragments heldFragments lists
 * (`values(rank, fragment)`, each of the fragment's numel; of the states `keys`, all by default).
 * Throws naming the element no fragment holds.
 */
export function assembleParameter<K extends StateKey = StateKey>(
  map: FragmentMap,
  name: string,
  values: (rank: number, fragment: Fragment) => Pick<StateValues, K>,
  keys: readonly K[] = STATE_KEYS as readonly StateKey[] as readonly K[],
): Pick<StateValues, K> {
  const assembly = new ParameterAssembly(map, name, keys);
  for (const { rank, fragment } of heldFragments(map, name)) assembly.place(rank, fragment, values(rank, fragment));
  return assembly.join();
}

/**
 * The whole training state from every rank's (states[r] for world rank r), one parameter at a time
 * (assembleParameter). Throws naming the ranks when their step counts or sizes disagree with the map.
 */
export function assembleState(map: FragmentMap, states: readonly RankState[]): AssembledState {
  if (states.length !== map.worldSize) {
    throw new RangeError(`assembleState: the map has ${map.worldSize} ranks, but ${states.length} states were given`);
  }
  const step = states[0].step;
  for (const entry of map.ranks) {
    const state = states[entry.rank];
    if (state.step !== step) {
      throw new RangeError(`assembleState: rank ${entry.rank} is at step ${state.step}, rank 0 at step ${step}`);
    }
    for (const key of STATE_KEYS) {
      if (state[key].length !== entry.numel) {
        throw new RangeError(
          `assembleState: rank ${entry.rank}'s ${key} holds ${state[key].length} elements, its map ${entry.numel}`,
        );
      }
    }
  }
  const slice = (rank: number, { start, numel }: Fragment): StateValues => {
    const state = states[rank];
    return {
      fp32: state.fp32.subarray(start, start + numel),
      expAvg: state.expAvg.subarray(start, start + numel),
      expAvgSq: state.expAvgSq.subarray(start, start + numel),
    };
  };
  return { step, parameters: new Map(map.parameters.map(({ name }) => [name, assembleParameter(map, name, slice)])) };
}
