// Failures on purpose, for tests and demos of elastic training: a chosen rank fails at a chosen
// step, in one of the ways a real rank fails. The CLI reads them from SHARDLAB_FAIL_RANKS, the page
// from its form; each is written RANK@STEP[:HOW], comma-separated:
//
//   throw  (default) the rank throws as step STEP begins
//   exit   the rank's worker closes itself as step STEP begins, as a process that dies
//   hang   the rank stops answering as step STEP begins; its peers time out waiting for it
//   save   the rank dies while writing its checkpoint file after step STEP: part of the file is
//          written, then it throws, as a machine that crashes in the middle of a save
//
// RANK is a rank of the world that runs when STEP comes; each failure happens once.

import type { RankContext } from "../comm/rank_context.ts";
import type { RankState } from "../parallel/fragment_map.ts";
import type { CheckpointStorage } from "../checkpoint/storage.ts";
import { rankFile, stepFolder } from "../checkpoint/save.ts";

export const FAILURE_KINDS = ["throw", "exit", "hang", "save"] as const;
export type FailureKind = typeof FAILURE_KINDS[number];

export interface PlannedFailure {
  rank: number;
  /** 1-based: the step during which (or, for "save", after which) the rank fails. */
  step: number;
  how: FailureKind;
}

/** The failures written as "RANK@STEP[:HOW],…" (see the header); throws naming the first bad entry. */
export function parseFailures(text: string): PlannedFailure[] {
  return text.split(",").map((entry) => entry.trim()).filter(Boolean).map((entry) => {
    const match = /^(\d+)@(\d+)(?::(\w+))?$/.exec(entry);
    const how = (match?.[3] ?? "throw") as FailureKind;
    if (!match || !FAILURE_KINDS.includes(how) || Number(match[2]) < 1) {
      throw new RangeError(
        `a planned failure is written RANK@STEP[:${FAILURE_KINDS.join("|")}] with STEP ≥ 1, got ${JSON.stringify(entry)}`,
      );
    }
    return { rank: Number(match[1]), step: Number(match[2]), how };
  });
}

/** The failure this rank plans as step `step` (1-based) begins, if any, carried out; otherwise nothing. */
export async function failAsStepBegins(ctx: RankContext, failures: readonly PlannedFailure[], step: number): Promise<void> {
  const failure = failures.find((f) => f.rank === ctx.rank && f.step === step && f.how !== "save");
  if (!failure) return;
  const what = `rank ${ctx.rank} failed on purpose as step ${step} began (${failure.how}, a planned failure)`;
  if (failure.how === "throw") throw new Error(what);
  if (failure.how === "exit") self.close();
  // "hang", and "exit" until the worker is gone: the rank never answers again.
  await new Promise<never>(() => {});
}

/**
 * If this rank plans to die while saving after step `step`: writes the first half of its file's
 * state, then throws. Otherwise returns without writing anything.
 */
export async function failDuringSave(
  ctx: RankContext,
  failures: readonly PlannedFailure[],
  step: number,
  storage: CheckpointStorage,
  state: RankState,
): Promise<void> {
  if (!failures.some((f) => f.rank === ctx.rank && f.step === step && f.how === "save")) return;
  await storage.write(`${stepFolder(step)}/${rankFile(ctx.rank)}`, [state.fp32.subarray(0, state.fp32.length >> 1)]);
  throw new Error(`rank ${ctx.rank} died while writing its checkpoint file after step ${step} (save, a planned failure)`);
}
