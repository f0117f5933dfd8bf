// Typed errors of the world layer: a rank that failed, collectives that disagree, time out or were aborted.
// Every message names the ranks, the collective kind, its tag and what went wrong.

import { ShardlabError } from "../tensor/errors.ts";

/** How a rank failed: its entry threw, its worker exited, or it stopped answering. */
export type RankFailureKind = "threw" | "exited" | "unresponsive";

function tagSuffix(tag: string | undefined): string {
  return tag ? ` (tag "${tag}")` : "";
}

/** A rank's error as data that crossed from its worker: its class name and its own fields. */
export interface ThrownError {
  name: string;
  fields: Record<string, unknown>;
}

/**
 * A rank of a launched world failed; `cause` holds the rank's error message and the head of its
 * stack, and `thrown` (when the rank's entry threw) the error's name and fields, so that a caller can
 * rebuild an error type it knows.
 */
export class RankFailedError extends ShardlabError {
  readonly rank: number;
  readonly failure: RankFailureKind;
  override readonly cause: string;
  readonly thrown: ThrownError | null;

  constructor(rank: number, failure: RankFailureKind, cause: string, thrown: ThrownError | null = null) {
    super(`rank ${rank} failed (${failure}): ${cause}`);
    this.rank = rank;
    this.failure = failure;
    this.cause = cause;
    this.thrown = thrown;
  }
}

/** Ranks called different collectives (kind, size, dtype, root or group) at the same point of their programs. */
export class CollectiveMismatchError extends ShardlabError {
  readonly ranks: number[];
  readonly kind: string;
  readonly tag: string | undefined;
  readonly difference: string;

  constructor(options: { ranks: number[]; kind: string; tag?: string; difference: string }) {
    super(
      `${options.kind}${tagSuffix(options.tag)}: ranks ${options.ranks.join(", ")} called mismatched collectives: ` +
        options.difference,
    );
    this.ranks = [...options.ranks];
    this.kind = options.kind;
    this.tag = options.tag;
    this.difference = options.difference;
  }
}

/** A rank waited longer than `timeoutMs` for a peer inside a collective. */
export class CollectiveTimeoutError extends ShardlabError {
  readonly rank: number;
  readonly waitingFor: number;
  readonly kind: string;
  readonly tag: string | undefined;
  readonly timeoutMs: number;

  constructor(options: { rank: number; waitingFor: number; kind: string; tag?: string; timeoutMs: number }) {
    super(
      `${options.kind}${tagSuffix(options.tag)}: rank ${options.rank} timed out after ${options.timeoutMs} ms ` +
        `waiting for rank ${options.waitingFor}`,
    );
    this.rank = options.rank;
    this.waitingFor = options.waitingFor;
    this.kind = options.kind;
    this.tag = options.tag;
    this.timeoutMs = options.timeoutMs;
  }
}

/** A collective ended early because the world was aborted after another rank failed. */
export class CollectiveAbortedError extends ShardlabError {
  readonly rank: number;
  readonly failedRank: number;
  readonly reason: string;
  readonly kind: string;
  readonly tag: string | undefined;

  constructor(options: { rank: number; failedRank: number; reason: string; kind: string; tag?: string }) {
    super(
      `${options.kind}${tagSuffix(options.tag)}: rank ${options.rank} aborted because rank ${options.failedRank} ` +
        `failed (${options.reason})`,
    );
    this.rank = options.rank;
    this.failedRank = options.failedRank;
    this.reason = options.reason;
    this.kind = options.kind;
    this.tag = options.tag;
  }
}
