// launch(): starts a world of ranks, each a module Worker running the same entry module (SPMD, like
// torchrun), and resolves with every rank's result in rank order plus the world's merged traffic.
//
// The control plane is comlink: per rank, `hold` (a Web Lock whose release reveals that the worker
// has gone), `run` (the entry's outcome) and an event port for ctx.emit. When a rank fails, the
// world is aborted so that collectives pending on the other ranks end, every worker is terminated,
// and launch rejects with RankFailedError naming the rank (see rank_watch.ts for how it is chosen).

import * as Comlink from "comlink";
import type { BackendChoice } from "../tensor/device.ts";
import type { CommOptions } from "./collectives.ts";
import { mergeLedgers, resolveLinks, type Traffic } from "./cost_model.ts";
import { RankFailedError } from "./errors.ts";
import type { LedgerJSON } from "./ledger.ts";
import { RankWatch } from "./rank_watch.ts";
import type { EventSink, RankInit, RankWorkerApi } from "./rank_worker.ts";
import { createWorld, type World } from "./world.ts";

export interface RankEvent {
  rank: number;
  event: unknown;
}

export interface LaunchOptions {
  /** Number of ranks (workers), an integer ≥ 1. */
  ranks: number;
  /**
   * Absolute URL of the entry module; its default export `async (ctx, args) => result` runs on every
   * rank. Or the name of an entry built into the rank worker ("shardlab:train-rank").
   */
  entry: string | URL;
  /** Passed to every rank's entry; structured-cloned. */
  args?: unknown;
  /** Each rank opens its own device with createDevice({ backend }). Default "auto". */
  backend?: BackendChoice;
  /** Ranks per node: node = ⌊rank / ranksPerNode⌋. Must divide ranks. Default: all ranks on one node. */
  ranksPerNode?: number;
  /** How long a rank waits for a peer inside a collective before it gives up. Default: Comm's (collectives.ts). */
  timeoutMs?: number;
  /** Receives ctx.emit(event) from every rank, in order per rank. */
  onEvent?: (event: RankEvent) => void;
  /** Shared memory per ordered pair of ranks (see world.ts for the default and the constraints). */
  channelBytes?: number;
  /** Bytes of each rank's heap, where ctx.comm.alloc() places arrays that peers read directly. Default 0. */
  heapBytes?: number;
  /** Link classes of the cost model, e.g. { inter: { bandwidthGBps: 25 } }; defaults in cost_model.ts. */
  links?: CommOptions["links"];
  /**
   * URL of the rank worker script. Default: the rank worker beside this module (rank_worker.ts in
   * the sources, rank_worker.js in the package's dist/). A page that bundles shardlab into its own
   * script serves a bundle of the worker too and passes its URL.
   */
  workerUrl?: string | URL;
}

export interface RankResult<T = unknown> {
  rank: number;
  value: T;
}

/** Every rank's result in rank order, with the traffic of all their collectives. */
export type LaunchResult<T = unknown> = RankResult<T>[] & { traffic: Traffic };

const BACKENDS: BackendChoice[] = ["auto", "webgpu", "cpu"];
/** How long the launcher collects timeout reports before naming the rank they point at. */
const WAIT_REPORT_GRACE_MS = 1_000;
/** How long a failed launch waits for the other ranks to leave their collectives before stopping them. */
const SETTLE_GRACE_MS = 1_000;

type CheckedOptions = Required<Pick<LaunchOptions, "ranks" | "ranksPerNode" | "args" | "backend">> & {
  entry: string;
  workerUrl: string | URL;
  timeoutMs: number | undefined;
  onEvent: LaunchOptions["onEvent"];
  links: CommOptions["links"];
};

function checkOptions(options: LaunchOptions): CheckedOptions {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`launch: expected an options object { ranks, entry, … }, got ${options}`);
  }
  const { ranks } = options;
  if (!Number.isInteger(ranks) || ranks < 1) throw new RangeError(`launch: ranks must be an integer ≥ 1, got ${ranks}`);
  const ranksPerNode = options.ranksPerNode ?? ranks;
  if (!Number.isInteger(ranksPerNode) || ranksPerNode < 1 || ranks % ranksPerNode !== 0) {
    throw new RangeError(`launch: ranksPerNode must be an integer ≥ 1 that divides ranks (${ranks}), got ${ranksPerNode}`);
  }
  if (options.entry === undefined || options.entry === null || options.entry === "") {
    throw new TypeError(
      "launch: entry is required: the absolute URL of a module whose default export is async (ctx, args) => result",
    );
  }
  if (!URL.canParse(String(options.entry))) {
    throw new TypeError(
      `launch: entry must be an absolute module URL (e.g. new URL("./train.ts", import.meta.url)), got "${options.entry}"`,
    );
  }
  const { timeoutMs } = options;
  if (timeoutMs !== undefined && (typeof timeoutMs !== "number" || !(timeoutMs > 0) || timeoutMs === Infinity)) {
    throw new RangeError(`launch: timeoutMs must be a positive number of milliseconds, got ${timeoutMs}`);
  }
  const backend = options.backend ?? "auto";
  if (!BACKENDS.includes(backend)) throw new RangeError(`launch: unknown backend "${backend}" (valid: ${BACKENDS.join(", ")})`);
  if (options.onEvent !== undefined && typeof options.onEvent !== "function") {
    throw new TypeError(`launch: onEvent must be a function, got ${typeof options.onEvent}`);
  }
  resolveLinks(options.links);
  try {
    structuredClone(options.args);
  } catch (error) {
    throw new TypeError(`launch: args cannot be sent to the ranks (${(error as Error).message}); pass plain data`);
  }
  return {
    ranks,
    ranksPerNode,
    entry: String(options.entry),
    args: options.args,
    backend,
    timeoutMs,
    onEvent: options.onEvent,
    links: options.links,
    workerUrl: options.workerUrl ?? defaultWorkerUrl(),
  };
}

/** Ranks are module Web Workers that hold Web Locks: Deno and browsers have both, Node has neither. */
function checkRuntime(): void {
  const missing = [
    typeof Worker === "undefined" ? "Web Workers (Worker)" : null,
    (globalThis.navigator as Navigator | undefined)?.locks ? null : "Web Locks (navigator.locks)",
  ].filter((name) => name !== null);
  if (missing.length) {
    throw new Error(
      `launch: ranks run as Web Workers, and this runtime has no ${missing.join(" and no ")}; ` +
        "run it under Deno or in a browser (in Node, use one device: createDevice, Trainer)",
    );
  }
}

/** The rank worker beside this module: the source file, or its build when this module is built JavaScript. */
function defaultWorkerUrl(): URL {
  const built = !new URL(import.meta.url).pathname.endsWith(".ts");
  return new URL(built ? "./rank_worker.js" : "./rank_worker.ts", import.meta.url);
}

/** One rank's worker and the launcher's ends of its channels. */
class RankHandle {
  private readonly worker: Worker;
  private readonly events = new MessageChannel();
  private readonly stopWatchingExit = new AbortController();
  /** Settles once the rank's entry has returned or thrown (never for a rank that exited or hangs). */
  readonly finished: Promise<void>;

  constructor(readonly rank: number, options: CheckedOptions, world: World, launchId: string, watch: RankWatch) {
    this.worker = new Worker(options.workerUrl, { type: "module", name: `rank ${rank}` });
    this.worker.addEventListener("error", (event) => {
      event.preventDefault();
      watch.exited(rank, `uncaught error in the rank's worker: ${event.message}`);
    });
    this.worker.addEventListener(
      "messageerror",
      () => watch.exited(rank, "the rank's worker sent a message that could not be read"),
    );
    const sink: EventSink = { emit: (event) => options.onEvent?.({ rank, event }) };
    Comlink.expose(sink, this.events.port1);
    this.finished = this.start(options, world.memory, `shardlab.launch.${launchId}.rank.${rank}`, watch).catch(
      (error: Error) => {
        watch.failed(rank, { name: error.name, summary: `the launcher lost contact with the rank: ${error.message}` });
      },
    );
  }

  private async start(options: CheckedOptions, world: WebAssembly.Memory, lockName: string, watch: RankWatch): Promise<void> {
    const remote = Comlink.wrap<RankWorkerApi>(this.worker);
    await remote.hold(lockName);
    navigator.locks
      .request(lockName, { signal: this.stopWatchingExit.signal }, () => {
        watch.exited(this.rank, "its worker closed before the entry returned (self.close() or the worker ended)");
      })
      .catch(() => {});
    const init: RankInit = {
      rank: this.rank,
      worldSize: options.ranks,
      ranksPerNode: options.ranksPerNode,
      backend: options.backend,
      entry: options.entry,
      args: options.args,
      world,
      timeoutMs: options.timeoutMs,
      links: options.links,
      events: this.events.port2,
    };
    const outcome = await remote.run(Comlink.transfer(init, [this.events.port2]));
    if (outcome.ok) watch.succeeded(this.rank, { value: outcome.value, ledger: outcome.ledger });
    else watch.failed(this.rank, outcome.error);
  }

  stop(): void {
    this.stopWatchingExit.abort();
    this.events.port1.close();
    this.worker.terminate();
  }
}

/**
 * Runs `entry` on `ranks` workers; resolves with every rank's result in rank order and the merged
 * traffic, or rejects with RankFailedError once a rank threw, exited or stopped answering.
 */
export async function launch<T = unknown>(options: LaunchOptions): Promise<LaunchResult<T>> {
  checkRuntime();
  const checked = checkOptions(options);
  const world = createWorld({
    ranks: checked.ranks,
    ranksPerNode: checked.ranksPerNode,
    channelBytes: options.channelBytes,
    heapBytes: options.heapBytes,
  });
  const watch = new RankWatch(checked.ranks, WAIT_REPORT_GRACE_MS);
  const launchId = crypto.randomUUID();
  const ranks: RankHandle[] = [];
  try {
    for (let rank = 0; rank < checked.ranks; rank++) ranks.push(new RankHandle(rank, checked, world, launchId, watch));
    const outcomes = (await watch.verdict) as { value: T; ledger: LedgerJSON }[];
    const results = outcomes.map(({ value }, rank) => ({ rank, value }));
    return Object.assign(results, { traffic: mergeLedgers(outcomes.map(({ ledger }) => ledger)) });
  } catch (error) {
    if (error instanceof RankFailedError) {
      world.abort(error.rank, error.failure);
      // The others now leave their pending collectives; what each sent before (its events) arrives
      // before its outcome, so wait for their outcomes, a while at most (a rank may never answer).
      let grace: ReturnType<typeof setTimeout> | undefined;
      const graceOver = new Promise<void>((resolve) => grace = setTimeout(resolve, SETTLE_GRACE_MS));
      await Promise.race([Promise.allSettled(ranks.map((rank) => rank.finished)), graceOver]);
      clearTimeout(grace);
    }
    throw error;
  } finally {
    for (const rank of ranks) rank.stop();
  }
}
