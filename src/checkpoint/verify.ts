// Trusting a checkpoint: the whole of it offline (verifyCheckpoint: every data file's size and
// SHA-256, every parameter's consolidated SHA-256), and what the ranks loaded from it
// (verifyLoadedState: each parameter put together again from the ranks' new states, on one rank
// each, and its checksums compared with the ones saved).

import type { Comm } from "../comm/collectives.ts";
import {
  assembleParameter,
  assembleState,
  type Fragment,
  type FragmentMap,
  heldFragments,
  type RankState,
  type StateValues,
} from "../parallel/fragment_map.ts";
import { CheckpointError } from "./errors.ts";
import type { Checkpoint } from "./load.ts";
import { STATES } from "./metadata.ts";
import { readParameter, readUniversalParameter } from "./save.ts";
import { Sha256, sha256 } from "./sha256.ts";
import { joinPath } from "./storage.ts";

/** Bytes hashed per read when a whole file is checked. */
const CHUNK = 16 * 2 ** 20;

/** Every problem of the checkpoint, each naming the file or the parameter and state (none: it is whole). */
export async function verifyCheckpoint({ storage, folder, metadata }: Checkpoint): Promise<string[]> {
  const problems: string[] = [];
  for (const file of metadata.files) {
    const path = joinPath(folder, file.name);
    const size = await storage.size(path);
    if (size === null) {
      problems.push(`${path}: missing`);
      continue;
    }
    if (size !== file.bytes) {
      problems.push(`${path}: ${size} bytes, the metadata says ${file.bytes}`);
      continue;
    }
    const hash = new Sha256();
    for (let at = 0; at < size; at += CHUNK) hash.update(await storage.read(path, at, Math.min(CHUNK, size - at)));
    const digest = hash.hex();
    if (digest !== file.sha256) problems.push(`${path}: SHA-256 ${digest}, the metadata says ${file.sha256}`);
  }
  if (problems.length > 0) return problems;
  for (const parameter of metadata.parameters) {
    try {
      const values = metadata.kind === "distributed"
        ? await readParameter(storage, folder, metadata.fragmentMap!, parameter.name)
        : await readUniversalParameter(storage, folder, parameter.name);
      const hashes = {
        fp32: await sha256(values.fp32),
        exp_avg: await sha256(values.expAvg),
        exp_avg_sq: await sha256(values.expAvgSq),
      };
      for (const state of STATES) {
        if (hashes[state] !== parameter.sha256[state]) {
          problems.push(`${folder}: parameter "${parameter.name}" ${state} does not match its SHA-256`);
        }
      }
    } catch (error) {
      if (!(error instanceof CheckpointError)) throw error;
      problems.push(error.message);
    }
  }
  return problems;
}

/**
 * Checks what the ranks of the target layout (fragment map `map`) loaded from `checkpoint`: each
 * parameter is put together on one rank (round robin; gathered over `world`, tag
 * checkpoint.verify) from the ranks' states and hashed. A checksum that differs from the saved one
 * throws on every rank, naming the parameter and state. With `world` null, the one rank holds all.
 */
export async function verifyLoadedState(
  world: Comm | null,
  map: FragmentMap,
  state: RankState,
  checkpoint: Checkpoint,
): Promise<void> {
  const expected = new Map(checkpoint.metadata.parameters.map((p) => [p.name, p.sha256]));
  const problems: string[] = [];
  const check = async (name: string, values: StateValues) => {
    const hashes = {
      fp32: await sha256(values.fp32),
      exp_avg: await sha256(values.expAvg),
      exp_avg_sq: await sha256(values.expAvgSq),
    };
    for (const s of STATES) if (hashes[s] !== expected.get(name)?.[s]) problems.push(`"${name}" ${s}`);
  };
  if (!world) {
    for (const [name, values] of assembleState(map, [state]).parameters) await check(name, values);
  } else {
    for (const [i, { name }] of map.parameters.entries()) {
      const values = await gatherParameter(world, map, name, i % world.size, state);
      if (values) await check(name, values);
    }
  }
  const failed = world
    ? (await world.allReduce(new Int32Array([problems.length]), { op: "sum", tag: "checkpoint.verify" }))[0]
    : problems.length;
  if (failed > 0) {
    throw new CheckpointError(
      `${checkpoint.folder}: after loading, ${failed} parameter state(s) differ from the saved checksums${
        problems.length ? ` (${problems.join(", ")})` : ""
      }`,
    );
  }
}

/** Parameter `name` put together on rank `owner` from every rank's state (null on the others). */
async function gatherParameter(
  world: Comm,
  map: FragmentMap,
  name: string,
  owner: number,
  state: RankState,
): Promise<StateValues | null> {
  const held = heldFragments(map, name);
  const of = (rank: number) => held.filter((h) => h.rank === rank).map(({ fragment }) => fragment);
  // This rank's fragments' fp32, then their exp_avg, then their exp_avg_sq.
  const mine = of(world.rank);
  const payload = new Float32Array(3 * mine.reduce((sum, f) => sum + f.numel, 0));
  let at = 0;
  for (const key of ["fp32", "expAvg", "expAvgSq"] as const) {
    for (const { start, numel } of mine) {
      payload.set(state[key].subarray(start, start + numel), at);
      at += numel;
    }
  }
  const gathered = await world.gather(payload, { root: owner, tag: "checkpoint.verify" });
  if (!gathered) return null;
  const pieces = new Map<Fragment, StateValues>();
  let offset = 0;
  for (let rank = 0; rank < world.size; rank++) {
    const fragments = of(rank);
    const total = fragments.reduce((sum, f) => sum + f.numel, 0);
    let inner = 0;
    for (const fragment of fragments) {
      const part = (k: number) => gathered.subarray(offset + k * total + inner, offset + k * total + inner + fragment.numel);
      pieces.set(fragment, { fp32: part(0), expAvg: part(1), expAvgSq: part(2) });
      inner += fragment.numel;
    }
    offset += 3 * total;
  }
  return assembleParameter(map, name, (_rank, fragment) => pieces.get(fragment)!);
}
