// `bench collectives`: nccl-tests style figures of shardlab's collectives. One process launches a
// world of ranks (module workers on the CPU backend, typed arrays) that sweeps every collective over
// message sizes from 8 B to 64 MiB, on private arrays, on heap arrays (comm.alloc, read by peers in
// place) and on heap arrays in place; the ranks time each call between barriers and check its result
// (bench/collectives_rank.ts). Per size: the median over samples of the slowest rank's time per call,
//   algbw = size / time,   busbw = algbw × factor   (nccl-tests' factors, busFactor),
// busbw against the copy bound of the same run, the bytes the ledger counted per rank against the
// algorithm's analytic volume (they must agree exactly), and the cost model's simulated time.

import { launch } from "../mod.ts";
import type { TrafficCollective } from "../src/comm/cost_model.ts";
import {
  type Batches,
  BUFFERS,
  type Buffers,
  type CollectiveName,
  type RankArgs,
  type RankCase,
  type RankReport,
  ROOT,
} from "./collectives_rank.ts";
import { formatBytes, printCollectives } from "./collectives_report.ts";
import { writeJsonReport } from "./report.ts";
import type { SuiteOptions } from "./kernels.ts";
import { median } from "./timing.ts";
import { rankEntry } from "./rank_entry.ts";

export interface CollectivesOptions extends SuiteOptions {
  /** World size; default: a world of 2 ranks, then one of 4. */
  ranks?: number;
}

const DEFAULT_RANKS = [2, 4];
const MIB = 2 ** 20;
/** Message sizes: 8 B, 16 B, … 64 MiB. */
const SIZES = Array.from({ length: 24 }, (_, k) => 8 * 2 ** k);
/** Each rank's buffer for the copy bound: large enough that the copy streams through memory, as large messages do. */
const COPY_BYTES = 64 * MIB;
/** Each rank's heap: the input and output of the largest message (an all-reduce or all-to-all). */
const HEAP_BYTES = 2 * SIZES.at(-1)! + 64 * 1024;

const TARGETS = {
  bandwidth: { rule: "busbw ≥ 60% of the copy bound for messages ≥ 8 MiB", threshold: 0.6, fromBytes: 8 * MIB },
  latency: { rule: "8-byte all-reduce ≤ 3 × log2(ranks) × the Atomics ping-pong round trip", factor: 3, bytes: 8 },
};

/** busbw / algbw: the fraction of the message each rank must send (and receive) with an optimal algorithm. */
function busFactor(kind: CollectiveName, n: number): number {
  return kind === "allReduce" ? (2 * (n - 1)) / n : kind === "broadcast" ? 1 : (n - 1) / n;
}

/**
 * The copy bound, per rank: every rank copies its own COPY_BYTES buffer with TypedArray.set at the
 * same time, and the rate is COPY_BYTES / (the slowest rank's time): bytes counted once (the size
 * of the buffer, not bytes read + written), because that is the unit of busbw: a byte that moves
 * from one rank to another costs at least one such copy. Ranks share the machine's cores, so when
 * ranks outnumber cores each rank's share is smaller, for the copy and for the collectives alike.
 */
export interface CopyBound {
  bytes: number;
  /** Per rank, all ranks copying at once (the bound busbw is compared against). */
  perRankGBps: number;
  /** All ranks together. */
  aggregateGBps: number;
  /** Rank 0 copying alone while the others wait. */
  soloGBps: number;
  /**
   * Per rank, all ranks copying at once into newly allocated arrays: the rate at which a collective
   * called without `out` can write its result (the pages of a new array are touched first).
   */
  freshPerRankGBps: number;
  /** The slowest rank's time of each rep. */
  repMs: number[];
}

export interface Latency {
  /** Median over batches; µs per round trip (or per barrier). */
  us: number;
  operations: number;
  batchUs: number[];
}

export interface CaseReport {
  kind: CollectiveName;
  name: string;
  bytes: number;
  elements: number;
  /** Where the arrays live (collectives_rank.ts BUFFERS). */
  buffers: Buffers;
  /** The algorithm the ledger recorded (every rank, every timed call). */
  algorithm: string;
  /** Untimed samples, timed samples, and back-to-back calls per sample. */
  warmUp: number;
  samples: number;
  callsPerSample: number;
  /** Median over timed samples of the slowest rank's time per call. */
  us: number;
  sampleUs: number[];
  algbwGBps: number;
  busbwGBps: number;
  /** busbw / the copy bound per rank. */
  fractionOfCopy: number;
  /** Wrong output elements over all ranks and samples. */
  wrong: number;
  ledger: {
    /** Bytes each rank sent in one call, from its ledger (the same in every timed call, or exact is false). */
    bytesPerRank: number[];
    analyticPerRank: number[];
    /** All bytes of one call in the merged traffic (every rank's sends together). */
    trafficBytes: number;
    exact: boolean;
  };
  /** The cost model's time of the call (median over timed calls), next to `us`. */
  simulatedUs: number;
}

export interface WorldReport {
  ranks: number;
  launchMs: number;
  copy: CopyBound;
  pingPong: Latency;
  sendRecv: Latency;
  barrier: Latency;
  cases: CaseReport[];
}

export interface TargetRow {
  name: string;
  measured: number;
  limit: number;
  met: boolean;
}

export interface TargetReport {
  rule: string;
  rows: TargetRow[];
  met: boolean;
}

export async function runCollectives(options: CollectivesOptions): Promise<number> {
  const worldSizes = options.ranks === undefined ? DEFAULT_RANKS : [options.ranks];
  const worlds: WorldReport[] = [];
  for (const ranks of worldSizes) {
    progress(`${ranks} ranks: launching (CPU backend, sizes ${formatBytes(SIZES[0])} … ${formatBytes(SIZES.at(-1)!)})`);
    worlds.push(await runWorld(ranks, options.reps));
  }
  const targets = { bandwidth: BUFFERS.map((buffers) => bandwidthTarget(worlds, buffers)), latency: latencyTarget(worlds) };
  printCollectives(worlds, targets);

  const wrong = worlds.flatMap((world) => world.cases.filter((c) => c.wrong > 0));
  const inexact = worlds.flatMap((world) => world.cases.filter((c) => !c.ledger.exact));
  if (options.json) {
    await writeJsonReport(options.json, "collectives", {
      hardwareConcurrency: navigator.hardwareConcurrency,
      backend: "cpu",
      dtype: "f32",
      reduceOp: "sum",
      broadcastRoot: ROOT,
      repsOption: options.reps ?? "auto",
      busFactors: "allReduce 2(n−1)/n; allGather, reduceScatter, allToAll (n−1)/n; broadcast 1",
      copyBoundDefinition:
        "per rank: bytes of one TypedArray.set copy (counted once, not read + written) / the slowest rank's time, " +
        "all ranks copying at once",
      worlds,
      targets,
    });
    progress(`wrote ${options.json}`);
  }
  // A wrong result, or a ledger that disagrees with the algorithm's volume, fails the suite; a missed target does not.
  return wrong.length || inexact.length ? 1 : 0;
}

function progress(message: string): void {
  console.error(`bench collectives: ${message}`);
}

async function runWorld(ranks: number, reps: number | undefined): Promise<WorldReport> {
  const args: RankArgs = { sizes: SIZES, reps, copyBytes: COPY_BYTES, pingPong: new SharedArrayBuffer(64) };
  const start = performance.now();
  const results = await launch<RankReport>({
    ranks,
    entry: rankEntry("collectives_rank", import.meta.url),
    args,
    backend: "cpu",
    heapBytes: HEAP_BYTES,
    onEvent: ({ event }) => progress(`${ranks} ranks: ${event}`),
  });
  const launchMs = performance.now() - start;
  const reports = results.map((result) => result.value);
  const byId = new Map(results.traffic.collectives.map((collective) => [collective.id, collective]));
  const copy = copyBound(reports);
  const cases = reports[0].cases.map((_, i) => caseReport(reports.map((report) => report.cases[i]), ranks, copy, byId));
  return {
    ranks,
    launchMs,
    copy,
    pingPong: latency(reports[0].pingPong!),
    sendRecv: latency(reports[0].sendRecv!),
    barrier: latency(slowestBatches(reports.map((report) => report.barrier))),
    cases,
  };
}

/** Per sample (or batch), the slowest rank's time: a collective is done when its last rank is. */
function slowest(perRank: number[][]): number[] {
  return perRank[0].map((_, i) => Math.max(...perRank.map((times) => times[i])));
}

function slowestBatches(perRank: Batches[]): Batches {
  return { operations: perRank[0].operations, batchUs: slowest(perRank.map((batches) => batches.batchUs)) };
}

function latency({ operations, batchUs }: Batches): Latency {
  return { us: median(batchUs), operations, batchUs };
}

function copyBound(reports: RankReport[]): CopyBound {
  const repMs = slowest(reports.map((report) => report.copyMs));
  const perRankGBps = COPY_BYTES / (median(repMs) * 1e6);
  const soloGBps = COPY_BYTES / (median(reports[0].soloCopyMs!) * 1e6);
  const freshPerRankGBps = COPY_BYTES / (median(slowest(reports.map((report) => report.freshCopyMs))) * 1e6);
  return { bytes: COPY_BYTES, perRankGBps, aggregateGBps: perRankGBps * reports.length, soloGBps, freshPerRankGBps, repMs };
}

function caseReport(perRank: RankCase[], n: number, copy: CopyBound, byId: Map<string, TrafficCollective>): CaseReport {
  const first = perRank[0];
  const { kind, bytes } = first;
  const sampleUs = slowest(perRank.map((c) => c.ms)).map((ms) => ms * 1000);
  const us = median(sampleUs);
  const algbwGBps = bytes / (us * 1e3);
  const busbwGBps = algbwGBps * busFactor(kind, n);
  const algorithms = new Set(perRank.flatMap((c) => c.algorithms));
  const algorithm = [...algorithms].join("+");
  const bytesPerRank = perRank.map((c) => c.sentBytes[0]);
  const analyticPerRank = perRank.map((_, rank) => analyticBytes(kind, algorithm, n, rank, first.elements));
  const merged = first.ids.map((id) => byId.get(id));
  const trafficBytes = merged[0]?.bytes ?? -1;
  const exact = algorithms.size === 1 &&
    perRank.every((c, rank) => c.sentBytes.every((sent) => sent === analyticPerRank[rank])) &&
    merged.every((collective) => collective?.bytes === analyticPerRank.reduce((a, b) => a + b, 0));
  return {
    kind,
    name: `${n} ranks ${kind} ${first.buffers} ${formatBytes(bytes)}`,
    bytes,
    elements: first.elements,
    buffers: first.buffers,
    algorithm,
    warmUp: first.warmUp,
    samples: sampleUs.length,
    callsPerSample: first.callsPerSample,
    us,
    sampleUs,
    algbwGBps,
    busbwGBps,
    fractionOfCopy: busbwGBps / copy.perRankGBps,
    wrong: perRank.reduce((sum, c) => sum + c.wrong, 0),
    ledger: { bytesPerRank, analyticPerRank, trafficBytes, exact },
    simulatedUs: median(merged.map((collective) => (collective?.simulatedMs ?? NaN) * 1000)),
  };
}

/** f32 elements split into n chunks, the first (elements mod n) one element larger (Comm's default split). */
function equalChunks(elements: number, n: number): number[] {
  return Array.from({ length: n }, (_, k) => Math.floor(elements / n) + (k < elements % n ? 1 : 0));
}

/**
 * Payload bytes rank p sends in one call of `kind` over n ranks with `elements` f32 elements of
 * message size, for the algorithm the ledger names:
 * - direct: every block goes straight to its receiver. All-reduce: the whole input to each of the
 *   n − 1 others; broadcast: the root sends the whole message to the n − 1 others.
 * - ring (chunks c_k): all-reduce sends every chunk but its own in the reduce-scatter phase and every
 *   chunk but its successor's in the all-gather phase: 2·M − c_p − c_{p+1};
 *   reduce-scatter M − c_p; all-gather M − c_{p+1}.
 * - chain (broadcast): every rank but the last of the chain (root, root+1, …) forwards the message once.
 * - peer (by place; what a rank's peers read from its heap arrays): all-reduce: chunk k of its input
 *   to rank k, then its own reduced chunk to each of the n − 1 others: M − c_p + (n − 1)·c_p;
 *   all-gather: its block to each of the n − 1 others; broadcast as direct.
 * Reduce-scatter and all-to-all send (n − 1) blocks of M / n with every algorithm, all-gather with
 * ring and direct.
 */
function analyticBytes(kind: CollectiveName, algorithm: string, n: number, p: number, elements: number): number {
  const chunks = equalChunks(elements, n);
  const total = elements;
  let sent: number;
  if (kind === "allReduce") {
    sent = algorithm === "ring"
      ? 2 * total - chunks[p] - chunks[(p + 1) % n]
      : algorithm === "peer"
      ? total - chunks[p] + (n - 1) * chunks[p]
      : (n - 1) * total;
  } else if (kind === "reduceScatter") sent = total - chunks[p];
  else if (kind === "allGather") sent = algorithm === "peer" ? (n - 1) * chunks[p] : total - chunks[(p + 1) % n];
  else if (kind === "allToAll") sent = total - chunks[p];
  else if (algorithm === "chain") sent = (p - ROOT + n) % n === n - 1 ? 0 : total;
  else sent = p === ROOT ? (n - 1) * total : 0;
  return sent * 4;
}

function bandwidthTarget(worlds: WorldReport[], buffers: Buffers): TargetReport {
  const { rule, threshold, fromBytes } = TARGETS.bandwidth;
  const rows = worlds.flatMap((world) =>
    world.cases.filter((c) => c.bytes >= fromBytes && c.buffers === buffers).map((c) => ({
      name: c.name,
      measured: c.fractionOfCopy,
      limit: threshold,
      met: c.fractionOfCopy >= threshold && c.wrong === 0,
    }))
  );
  return { rule: `${rule}, ${buffers} arrays`, rows, met: rows.length > 0 && rows.every((row) => row.met) };
}

function latencyTarget(worlds: WorldReport[]): TargetReport {
  const { rule, factor, bytes } = TARGETS.latency;
  const rows = worlds.map((world) => {
    const allReduce = world.cases.find((c) => c.kind === "allReduce" && c.bytes === bytes && c.buffers === "private")!;
    const limit = factor * Math.log2(world.ranks) * world.pingPong.us;
    return {
      name: `${world.ranks} ranks allReduce ${bytes} B (µs)`,
      measured: allReduce.us,
      limit,
      met: allReduce.us <= limit && allReduce.wrong === 0,
    };
  });
  return { rule, rows, met: rows.length > 0 && rows.every((row) => row.met) };
}
