// One rank of a launched world, as a module Worker. It opens its own device and its view of the
// world's shared memory, imports the entry module and runs its default export. An entry is a
// module URL, or the name of an entry built into this worker (BUILT_IN_ENTRIES): a bundle of the
// worker carries those inside it, so a bundled page or package needs no other file. launch.ts drives it
// through comlink (hold, run); events travel back on their own MessagePort. Tensor data never goes
// through these messages: collectives move it through the world's shared memory.

import * as Comlink from "comlink";
import { type BackendChoice, createDevice } from "../tensor/device.ts";
import { Comm, type CommOptions } from "./collectives.ts";
import { CollectiveAbortedError, CollectiveTimeoutError, type ThrownError } from "./errors.ts";
import type { LedgerJSON } from "./ledger.ts";
import type { RankContext, RankEntry } from "./rank_context.ts";
import { openWorld } from "./world.ts";

/** Everything a rank needs to start, posted once by the launcher. */
export interface RankInit {
  rank: number;
  worldSize: number;
  ranksPerNode: number;
  backend: BackendChoice;
  entry: string;
  args: unknown;
  /** The world's shared memory, made by createWorld() on the launching side. */
  world: WebAssembly.Memory;
  timeoutMs: number | undefined;
  links: CommOptions["links"];
  /** The launcher's end is an EventSink exposed through comlink. */
  events: MessagePort;
}

export interface EventSink {
  emit(event: unknown): void;
}

/** A rank's error, reduced to what survives a postMessage and what the launcher needs to name the culprit. */
export interface RankErrorReport {
  name: string;
  /** `name: message` and the head of the stack. */
  summary: string;
  /** The rank this error points at: the peer a timed-out collective waited for, or the rank an abort names. */
  blames?: number;
  /** The error's name and own fields, when they can be posted. */
  thrown?: ThrownError;
}

/** What a rank sends back: its entry's value and its ledger, or its error. */
export type RankOutcome = { ok: true; value: unknown; ledger: LedgerJSON } | { ok: false; error: RankErrorReport };

const STACK_FRAMES = 4;

function reportOf(error: unknown): RankErrorReport {
  if (!(error instanceof Error)) return { name: "Error", summary: `thrown value: ${String(error)}` };
  const frames = (error.stack ?? "").split("\n").filter((line) => line.trimStart().startsWith("at ")).slice(0, STACK_FRAMES);
  const summary = [`${error.name}: ${error.message}`, ...frames].join("\n");
  const thrown = thrownOf(error);
  if (error instanceof CollectiveTimeoutError) return { name: error.name, summary, blames: error.waitingFor, thrown };
  if (error instanceof CollectiveAbortedError) return { name: error.name, summary, blames: error.failedRank, thrown };
  return { name: error.name, summary, thrown };
}

/** The error's name and own enumerable fields, unless they cannot be posted. */
function thrownOf(error: Error): ThrownError | undefined {
  try {
    return { name: error.name, fields: structuredClone({ ...error }) };
  } catch {
    return undefined;
  }
}

/** ctx.emit: fire and forget for the entry; flush() waits until onEvent has seen every event. */
function eventChannel(port: MessagePort): { emit(event: unknown): void; flush(): Promise<void> } {
  const sink = Comlink.wrap<EventSink>(port);
  let delivered: Promise<void> = Promise.resolve();
  let failure: Error | undefined;
  return {
    emit(event) {
      delivered = sink.emit(event).catch((error: Error) => {
        failure ??= new Error(`ctx.emit: an event did not reach onEvent: ${error.message}`);
      });
    },
    async flush() {
      await delivered;
      if (failure) throw failure;
    },
  };
}

/** Entries known by name, imported from inside this worker (a bundler follows these imports). */
const BUILT_IN_ENTRIES: Record<string, () => Promise<{ default: unknown }>> = {
  "shardlab:train-rank": () => import("../train/train_rank.ts"),
};

async function importEntry(url: string): Promise<RankEntry> {
  const builtIn = BUILT_IN_ENTRIES[url];
  const module = builtIn ? await builtIn() : await import(url);
  if (typeof module.default !== "function") {
    throw new TypeError(
      `launch: the entry module ${url} must export default an async function (ctx, args), got ${typeof module.default}`,
    );
  }
  return module.default;
}

function checkCloneable(rank: number, value: unknown): void {
  try {
    structuredClone(value);
  } catch (error) {
    throw new TypeError(
      `launch: rank ${rank}'s result cannot be sent to the launcher (${(error as Error).message}); ` +
        "return plain data (numbers, strings, arrays, typed arrays; a tensor's values come from await tensor.read())",
    );
  }
}

async function runEntry(init: RankInit): Promise<{ value: unknown; ledger: LedgerJSON }> {
  const events = eventChannel(init.events);
  const comm = new Comm(openWorld(init.world, init.rank), { timeoutMs: init.timeoutMs, links: init.links });
  const device = await createDevice({ backend: init.backend });
  try {
    const ctx: RankContext = {
      rank: init.rank,
      worldSize: init.worldSize,
      node: Math.floor(init.rank / init.ranksPerNode),
      ranksPerNode: init.ranksPerNode,
      device,
      comm,
      emit: events.emit,
    };
    const entry = await importEntry(init.entry);
    let value: unknown;
    try {
      value = await entry(ctx, init.args);
    } catch (error) {
      // The events emitted before a failure (a training rank's last step reports) reach onEvent
      // before the failure does: the two travel on different ports, and the launcher stops every
      // rank once it has all their outcomes.
      await events.flush().catch(() => {});
      throw error;
    }
    await events.flush();
    checkCloneable(init.rank, value);
    return { value, ledger: comm.ledger.toJSON() };
  } finally {
    device.destroy();
  }
}

const api = {
  /** Takes the Web Lock `name` and keeps it while this worker lives: its release tells the launcher the worker is gone. */
  hold(name: string): Promise<void> {
    return new Promise((held) => {
      navigator.locks.request(name, () => {
        held();
        return new Promise<never>(() => {});
      });
    });
  },

  async run(init: RankInit): Promise<RankOutcome> {
    try {
      return { ok: true, ...(await runEntry(init)) };
    } catch (error) {
      return { ok: false, error: reportOf(error) };
    }
  },
};

export type RankWorkerApi = typeof api;

Comlink.expose(api, self as unknown as Comlink.Endpoint);
