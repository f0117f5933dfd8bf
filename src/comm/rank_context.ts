// What an entry module sees on its rank. An entry module's default export is a RankEntry: launch()
// runs it on every rank of the world (SPMD), each rank in its own worker with its own device.

import type { Device } from "../tensor/device.ts";
import type { Comm } from "./collectives.ts";

export interface RankContext {
  /** This rank's index in the world, 0 … worldSize − 1. */
  readonly rank: number;
  readonly worldSize: number;
  /** This rank's node: ⌊rank / ranksPerNode⌋. */
  readonly node: number;
  readonly ranksPerNode: number;
  /** The device this rank opened for itself (WebGPU or CPU, as launch's `backend` asked). */
  readonly device: Device;
  /** The world communicator: collectives over all ranks, and groups made from it. */
  readonly comm: Comm;
  /**
   * Sends a progress or metrics event to launch's `onEvent` as `{ rank, event }`. Events of one rank
   * arrive in the order they were emitted, and all of them before launch resolves. The event is
   * structured-cloned: plain data only.
   */
  emit(event: unknown): void;
}

/** The default export of an entry module; its resolved value is structured-cloned back to the launcher. */
export type RankEntry<Args = unknown, Result = unknown> = (ctx: RankContext, args: Args) => Promise<Result> | Result;
