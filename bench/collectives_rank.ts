// The rank side of `bench collectives`: bench/collectives.ts launches this module on every rank of a
// world (CPU backend, typed arrays). Each rank measures its own times between barriers and checks
// its own results against values it computes itself; the launcher reduces the figures over ranks.
//
// Every input element is a small integer, valueAt(rank, index, sample), so every sum is exact
// in f32 whatever the order of the additions. It is a hash of all three, so a result that mixes up
// ranks, blocks or samples (a stale slot, a block shifted by any offset) shows up as wrong elements.

import type { Comm } from "../src/comm/collectives.ts";
import type { RankContext } from "../src/comm/rank_context.ts";

export const COLLECTIVES = ["allReduce", "allGather", "reduceScatter", "allToAll", "broadcast"] as const;
export type CollectiveName = typeof COLLECTIVES[number];

/**
 * Where a case's arrays live: "private" (each rank's own typed arrays, which travel through the
 * channel slots), "heap" (comm.alloc: peers read them in place, as NCCL reads registered device
 * buffers), or "heap in place" (nccl-tests' in-place variant: the result overwrites the input; a
 * reduce-scatter's output is this rank's chunk of its input, an all-gather's input this rank's
 * block of its output).
 */
export const BUFFERS = ["private", "heap", "heap in place"] as const;
export type Buffers = typeof BUFFERS[number];

/** The broadcast root (group rank), as in nccl-tests' default. */
export const ROOT = 0;

export interface RankArgs {
  /** Message sizes to sweep, in bytes (nccl-tests' convention per collective, see caseShape). */
  sizes: number[];
  /** Timed samples per message size; default by size (samplePlan). */
  reps?: number;
  /** Bytes of the buffer every rank copies for the copy bound. */
  copyBytes: number;
  /** One Int32 word that ranks 0 and 1 ping-pong on with Atomics.wait/notify. */
  pingPong: SharedArrayBuffer;
}

/** Times of repeated batches of one latency measurement, in µs per operation. */
export interface Batches {
  operations: number;
  batchUs: number[];
}

export interface RankCase {
  kind: CollectiveName;
  /** The message size: nccl-tests' "size" (bytes every rank's input or output holds, see caseShape). */
  bytes: number;
  elements: number;
  buffers: Buffers;
  warmUp: number;
  /** Back-to-back calls per sample. */
  callsPerSample: number;
  /** This rank's time per call of every timed sample: from the end of a barrier to the end of its last call, / calls. */
  ms: number[];
  /** Output elements that differ from the expected values, over all samples (warm-up included). */
  wrong: number;
  /** Payload bytes this rank's ledger recorded for each timed call. */
  sentBytes: number[];
  /** The ledger record ids of the timed calls (to find them in the merged traffic). */
  ids: string[];
  algorithms: string[];
}

export interface RankReport {
  rank: number;
  /** Every rank copying copyBytes at once: this rank's time per copy. */
  copyMs: number[];
  /** The same into a newly allocated array each time. */
  freshCopyMs: number[];
  /** Rank 0 copying copyBytes while the other ranks wait in a barrier (null elsewhere). */
  soloCopyMs: number[] | null;
  /** Ranks 0 and 1: Atomics.wait/notify round trips on a shared word (null elsewhere). */
  pingPong: Batches | null;
  /** Ranks 0 and 1: 8-byte comm.send + comm.recv round trips through the world (null elsewhere). */
  sendRecv: Batches | null;
  barrier: Batches;
  cases: RankCase[];
}

const COPY_WARM_UP = 2;
const COPY_REPS = 7;
const LATENCY_BATCHES = 7;
const PING_PONGS_PER_BATCH = 2000;
const SEND_RECVS_PER_BATCH = 200;
const BARRIERS_PER_BATCH = 200;
const MIB = 2 ** 20;

/** f32 elements of one case: every rank's input and output length, or null when a rank would get no element. */
export function caseShape(
  kind: CollectiveName,
  bytes: number,
  ranks: number,
): { bytes: number; input: number; output: number } | null {
  if (kind === "allReduce" || kind === "broadcast") {
    const elements = Math.floor(bytes / 4);
    return elements < 1 ? null : { bytes: elements * 4, input: elements, output: elements };
  }
  // nccl-tests' size for these is the whole buffer (input of a reduce-scatter, output of an
  // all-gather, either side of an all-to-all): ranks equal blocks of whole elements.
  const block = Math.floor(bytes / 4 / ranks);
  if (block < 1) return null;
  const whole = block * ranks;
  const shapes = { reduceScatter: [whole, block], allGather: [block, whole], allToAll: [whole, whole] };
  const [input, output] = shapes[kind];
  return { bytes: whole * 4, input, output };
}

/**
 * Untimed and timed samples of one message size, and calls per sample. As in nccl-tests, a sample
 * times several calls back to back (16 for small messages, at least 4 for any), so that the barrier
 * before it, whose ranks leave it at different moments, does not weigh on every call.
 */
function samplePlan(bytes: number, reps?: number): { warmUp: number; samples: number; calls: number } {
  const calls = Math.max(4, Math.min(16, Math.round((256 * 1024) / bytes)));
  if (bytes <= MIB) return { warmUp: 5, samples: reps ?? 20, calls };
  return { warmUp: 1, samples: reps ?? Math.max(5, Math.round((20 * MIB) / bytes)), calls };
}

/** An integer in −64 … 63 that depends on every bit of its arguments. */
function valueAt(rank: number, index: number, sample: number): number {
  let h = Math.imul(index, 0x9e3779b1) ^ Math.imul(rank + 1, 0x85ebca6b) ^ Math.imul(sample + 1, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return ((h ^ (h >>> 16)) & 127) - 64;
}

type Call = (comm: Comm, x: Float32Array, out: Float32Array | undefined, tag: string) => Promise<Float32Array>;

/**
 * How each collective is called. As in nccl-tests, buffers are allocated once per message size and
 * every call writes into the same `out` array (all-gather and all-to-all with the equal counts that
 * give its length), so no call first touches the pages of a new result.
 */
const CALLS: Record<CollectiveName, Call> = {
  allReduce: (comm, x, out, tag) => comm.allReduce(x, { op: "sum", tag, out }),
  allGather: (comm, x, out, tag) => comm.allGather(x, { tag, counts: new Array(comm.size).fill(x.length), out }),
  reduceScatter: (comm, x, out, tag) => comm.reduceScatter(x, { op: "sum", tag, out }),
  allToAll: (comm, x, out, tag) => comm.allToAll(x, { tag, recvCounts: new Array(comm.size).fill(x.length / comm.size), out }),
  broadcast: (comm, x, out, tag) => comm.broadcast(x, { root: ROOT, tag, out }),
};

/** The input and output arrays of a case: private, in the heap, or in the heap with the output over the input. */
function caseArrays(
  comm: Comm,
  buffers: Buffers,
  kind: CollectiveName,
  input: number,
  output: number,
): { x: Float32Array; out: Float32Array } {
  if (buffers === "private") return { x: new Float32Array(input), out: new Float32Array(output) };
  if (buffers === "heap") return { x: comm.alloc(input, "f32"), out: comm.alloc(output, "f32") };
  if (kind === "reduceScatter") {
    const x = comm.alloc(input, "f32");
    return { x, out: x.subarray(comm.rank * output, (comm.rank + 1) * output) };
  }
  const out = comm.alloc(output, "f32");
  return { x: kind === "allGather" ? out.subarray(comm.rank * input, (comm.rank + 1) * input) : out, out };
}

/**
 * Output elements of `kind` on rank `me` that differ from what the inputs valueAt(r, ·, sample) give.
 * In place, `rounds` calls back to back each start from the last one's result:
 * - all-reduce: from the second round on every rank holds the same value v, which becomes
 *   v + v + … (n terms, f32), whatever the order;
 * - reduce-scatter: this rank's chunk, s after the first round, gains s − (its own input) each round;
 * - all-to-all: each round swaps the blocks back, so an even number of rounds gives the input again.
 * Every value is a small integer, so each sum is exact in any order.
 */
function countWrong(
  kind: CollectiveName,
  output: Float32Array,
  expectedLength: number,
  me: number,
  n: number,
  sample: number,
  rounds: number,
): number {
  if (output.length !== expectedLength) return Math.max(output.length, expectedLength);
  const block = kind === "allReduce" || kind === "broadcast" ? output.length : output.length / (kind === "reduceScatter" ? 1 : n);
  let wrong = 0;
  for (let j = 0; j < output.length; j++) {
    let expected = 0;
    if (kind === "allReduce") {
      for (let r = 0; r < n; r++) expected += valueAt(r, j, sample);
      for (let round = 1; round < rounds; round++) {
        let v = expected;
        for (let r = 1; r < n; r++) v = Math.fround(v + expected);
        expected = v;
      }
    } else if (kind === "reduceScatter") {
      for (let r = 0; r < n; r++) expected += valueAt(r, me * block + j, sample);
      expected += (rounds - 1) * (expected - valueAt(me, me * block + j, sample));
    } else if (kind === "allGather") expected = valueAt(Math.floor(j / block), j % block, sample);
    else if (kind === "allToAll" && rounds % 2 === 0) expected = valueAt(me, j, sample);
    else if (kind === "allToAll") expected = valueAt(Math.floor(j / block), me * block + (j % block), sample);
    else expected = valueAt(ROOT, j, sample);
    if (output[j] !== expected) wrong++;
  }
  return wrong;
}

async function runCase(
  ctx: RankContext,
  kind: CollectiveName,
  buffers: Buffers,
  size: number,
  reps: number | undefined,
): Promise<RankCase | null> {
  const { comm, rank, worldSize } = ctx;
  const shape = caseShape(kind, size, worldSize);
  if (!shape) return null;
  const { warmUp, samples, calls } = samplePlan(shape.bytes, reps);
  const tag = `bench.${kind}.${buffers}.${shape.bytes}`;
  const call = CALLS[kind];
  const figures: RankCase = {
    kind,
    bytes: shape.bytes,
    elements: shape.bytes / 4,
    buffers,
    warmUp,
    callsPerSample: calls,
    ms: [],
    wrong: 0,
    sentBytes: [],
    ids: [],
    algorithms: [],
  };
  const { x: input, out: outArray } = caseArrays(comm, buffers, kind, shape.input, shape.output);
  for (let sample = 0; sample < warmUp + samples; sample++) {
    for (let i = 0; i < input.length; i++) input[i] = valueAt(rank, i, sample);
    const outputs = new Set<Float32Array>();
    await comm.barrier({ tag: "bench.barrier" });
    const start = performance.now();
    for (let c = 0; c < calls; c++) outputs.add(await call(comm, input, outArray, tag));
    const ms = (performance.now() - start) / calls;
    const rounds = buffers === "heap in place" ? calls : 1;
    for (const output of outputs) figures.wrong += countWrong(kind, output, shape.output, rank, worldSize, sample, rounds);
    if (sample < warmUp) continue;
    figures.ms.push(ms);
    for (const record of comm.ledger.collectives.slice(-calls)) {
      figures.sentBytes.push(record.bytes);
      figures.ids.push(record.id);
      figures.algorithms.push(record.algorithm);
    }
  }
  if (buffers === "heap") comm.free(input);
  if (buffers !== "private") comm.free(kind === "reduceScatter" && buffers === "heap in place" ? input : outArray);
  return figures;
}

/**
 * Copies of `bytes` with TypedArray.set, this rank's time of each. "all": every rank copies into
 * the same target again and again, all starting after a barrier; "fresh": the same, but each copy
 * goes into a newly allocated array, as a collective's result does (its pages are touched for the
 * first time); "solo": only rank 0 copies, while the others wait in a barrier.
 */
async function measureCopy(comm: Comm, bytes: number, mode: "all" | "fresh" | "solo"): Promise<number[]> {
  const source = new Float32Array(bytes / 4).map((_, i) => i & 1023);
  let target = new Float32Array(bytes / 4);
  const copying = mode !== "solo" || comm.rank === 0;
  const ms: number[] = [];
  for (let rep = 0; rep < COPY_WARM_UP + COPY_REPS; rep++) {
    if (mode !== "solo") await comm.barrier({ tag: "bench.barrier" });
    if (!copying) continue;
    const start = performance.now();
    if (mode === "fresh") target = new Float32Array(bytes / 4);
    target.set(source);
    if (rep >= COPY_WARM_UP) ms.push(performance.now() - start);
  }
  if (copying && target[1023] !== 1023) {
    throw new Error(`copy bound: the copied buffer holds ${target[1023]} at index 1023, expected 1023`);
  }
  if (mode === "solo") await comm.barrier({ tag: "bench.barrier" });
  return ms;
}

/** Ranks 0 and 1 bounce one shared Int32 word: rank 0 sets it to 1 and waits for rank 1 to set it back to 0. */
function pingPong(rank: number, word: Int32Array, roundTrips: number): number {
  const start = performance.now();
  for (let i = 0; i < roundTrips; i++) {
    if (rank === 0) {
      Atomics.store(word, 0, 1);
      Atomics.notify(word, 0);
      Atomics.wait(word, 0, 1);
    } else {
      Atomics.wait(word, 0, 0);
      Atomics.store(word, 0, 0);
      Atomics.notify(word, 0);
    }
  }
  return performance.now() - start;
}

/** An untimed batch, then LATENCY_BATCHES timed ones; µs per operation of each. */
async function batches(operations: number, runBatch: (operations: number) => Promise<number> | number): Promise<Batches> {
  await runBatch(operations);
  const batchUs: number[] = [];
  for (let batch = 0; batch < LATENCY_BATCHES; batch++) batchUs.push(((await runBatch(operations)) * 1000) / operations);
  return { operations, batchUs };
}

async function measureLatencies(
  ctx: RankContext,
  word: Int32Array,
): Promise<Pick<RankReport, "pingPong" | "sendRecv" | "barrier">> {
  const { comm, rank } = ctx;
  const pair = rank <= 1;
  await comm.barrier({ tag: "bench.barrier" });
  const atomics = pair ? await batches(PING_PONGS_PER_BATCH, (n) => pingPong(rank, word, n)) : null;
  await comm.barrier({ tag: "bench.barrier" });
  const message = new Float32Array(2);
  const sendRecv = pair
    ? await batches(SEND_RECVS_PER_BATCH, async (n) => {
      const start = performance.now();
      for (let i = 0; i < n; i++) {
        if (rank === 0) {
          await comm.send(message, { dst: 1, tag: "bench.pingpong" });
          await comm.recv(message, { src: 1, tag: "bench.pingpong" });
        } else {
          const received = await comm.recv(message, { src: 0, tag: "bench.pingpong" });
          await comm.send(received, { dst: 0, tag: "bench.pingpong" });
        }
      }
      return performance.now() - start;
    })
    : null;
  await comm.barrier({ tag: "bench.barrier" });
  const barrier = await batches(BARRIERS_PER_BATCH, async (n) => {
    const start = performance.now();
    for (let i = 0; i < n; i++) await comm.barrier({ tag: "bench.latency" });
    return performance.now() - start;
  });
  return { pingPong: atomics, sendRecv, barrier };
}

export default async function collectivesRank(ctx: RankContext, args: RankArgs): Promise<RankReport> {
  const { comm, rank } = ctx;
  const progress = (message: string) => rank === 0 && ctx.emit(message);
  progress(`copy bound: every rank copies ${args.copyBytes / MIB} MiB with TypedArray.set`);
  const copyMs = await measureCopy(comm, args.copyBytes, "all");
  const freshCopyMs = await measureCopy(comm, args.copyBytes, "fresh");
  const soloCopyMs = await measureCopy(comm, args.copyBytes, "solo");
  progress("latency: Atomics ping-pong, send/recv round trip, barrier");
  const latencies = await measureLatencies(ctx, new Int32Array(args.pingPong, 0, 1));
  const cases: RankCase[] = [];
  for (const kind of COLLECTIVES) {
    for (const buffers of BUFFERS) {
      progress(`${kind}, ${buffers} arrays: ${args.sizes.length} sizes`);
      for (const size of args.sizes) {
        const result = await runCase(ctx, kind, buffers, size, args.reps);
        if (result) cases.push(result);
      }
    }
  }
  return { rank, copyMs, freshCopyMs, soloCopyMs: rank === 0 ? soloCopyMs : null, ...latencies, cases };
}
