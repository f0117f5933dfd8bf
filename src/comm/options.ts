// The options of Comm and of its collectives (collectives.ts).

import type { LinkClass } from "./ledger.ts";
import type { LinkSpec } from "./cost_model.ts";
import type { CommArray, ReduceOp } from "./reduce_kernels.ts";

export interface CommOptions {
  /** Longest a rank waits for a peer inside a collective before CollectiveTimeoutError (default 60 s). */
  timeoutMs?: number;
  /** Link parameters of the cost model (defaults in cost_model.ts). */
  links?: Partial<Record<LinkClass, Partial<LinkSpec>>>;
}

export interface TagOptions {
  /** Names the call in the ledger, e.g. "zero3.allgather.fwd.layer3". */
  tag?: string;
}
export interface ReduceOptions extends TagOptions {
  op?: ReduceOp;
}
export interface RootOptions extends TagOptions {
  /** Group rank of the root. */
  root: number;
}
export interface OutOptions {
  /**
   * Typed arrays only: write the result into this array (x's type, the result's length) and return
   * it instead of a new array. Each collective that takes it also works in place (see its comment).
   * allGather needs `counts` and allToAll `recvCounts` with it, which give the result's length
   * before the call.
   */
  out?: CommArray;
}
