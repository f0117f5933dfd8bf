// The whole training state of a parallel run, put back together from what its ranks returned
// (src/train/train_rank.ts): the fragment map rank 0 sends and every rank's own state. Each rank
// must have laid its state out as that map says.

import assert from "node:assert/strict";
import type { LaunchResult } from "../src/comm/launch.ts";
import { type AssembledState, assembleState, type FragmentMap } from "../src/parallel/fragment_map.ts";
import type { TrainRankResult } from "../src/train/train_rank.ts";

export function assembleRun(results: LaunchResult<TrainRankResult>): { map: FragmentMap; assembled: AssembledState } {
  const map = results[0].value.fragmentMap!;
  assert.deepEqual(results.map(({ value }) => value.fragments), map.ranks, "every rank lays its state out as the map says");
  return { map, assembled: assembleState(map, results.map(({ value }) => value.state)) };
}
