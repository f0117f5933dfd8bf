// The stdout of `bench collectives`: per world, the copy bound and latencies, then one nccl-tests
// style table per collective, then every target with met/MISSED and what missed it.

import type { CaseReport, TargetReport, WorldReport } from "./collectives.ts";
import { BUFFERS, type CollectiveName, COLLECTIVES } from "./collectives_rank.ts";
import { alignedTable } from "./report.ts";

const FACTORS: Record<CollectiveName, string> = {
  allReduce: "2(n−1)/n",
  allGather: "(n−1)/n",
  reduceScatter: "(n−1)/n",
  allToAll: "(n−1)/n",
  broadcast: "1",
};

const HEADER = [
  "size",
  "elements",
  "algorithm",
  "time µs",
  "algbw GB/s",
  "busbw GB/s",
  "% of copy",
  "#wrong",
  "ledger B/rank",
  "ledger",
  "simulated µs",
];

export function printCollectives(worlds: WorldReport[], targets: { bandwidth: TargetReport[]; latency: TargetReport }): void {
  for (const world of worlds) printWorld(world);
  console.log(
    "time: median over samples of the slowest rank's time per call (each rank times a sample from the end of a barrier: " +
      "16 calls back to back up to 16 KiB, fewer up to 64 KiB, then 4, as nccl-tests times several iterations); " +
      "algbw = size / time; busbw = algbw × factor; GB = 10^9 bytes.",
  );
  console.log(
    "arrays: private = the ranks' own typed arrays (through the channel slots); heap = comm.alloc arrays, read by peers in place; " +
      "heap in place = the result overwrites the input (an all-gather's input is this rank's block of its output). " +
      "Every call writes into one array reused by every call (the out option). ledger B/rank: bytes the busiest rank sent in one call; ledger: exact when every rank's ledger and the merged traffic " +
      "equal the analytic volume of the algorithm named. simulated: the cost model's time (default links).",
  );
  for (const c of worlds.flatMap((world) => world.cases)) {
    if (c.wrong > 0) console.log(`WRONG ${c.name}: ${c.wrong} wrong elements`);
    if (!c.ledger.exact) {
      console.log(
        `LEDGER ${c.name} (${c.algorithm}): ranks sent [${
          c.ledger.bytesPerRank.join(", ")
        }] B, traffic ${c.ledger.trafficBytes} B; ` +
          `analytic [${c.ledger.analyticPerRank.join(", ")}] B`,
      );
    }
  }
  console.log("");
  for (const bandwidth of targets.bandwidth) {
    console.log(`target bandwidth (${bandwidth.rule}): ${bandwidth.met ? "met" : "MISSED"}`);
    for (const row of bandwidth.rows.filter((row) => !row.met)) {
      console.log(`  ${row.name}: busbw ${percent(row.measured)} of copy (needs ≥ ${percent(row.limit)})`);
    }
  }
  const latency = targets.latency;
  console.log(`target latency (${latency.rule}): ${latency.met ? "met" : "MISSED"}`);
  for (const row of latency.rows) {
    console.log(`  ${row.name}: ${row.measured.toFixed(1)} µs, limit ${row.limit.toFixed(1)} µs: ${row.met ? "met" : "MISSED"}`);
  }
}

function printWorld(world: WorldReport): void {
  const { ranks, copy, pingPong, sendRecv, barrier } = world;
  console.log(
    `collectives — ${ranks} ranks (module workers on ${navigator.hardwareConcurrency} cores, CPU backend, f32, op sum, broadcast root 0)`,
  );
  console.log(
    `copy bound: ${copy.perRankGBps.toFixed(2)} GB/s per rank = ${formatBytes(copy.bytes)} / time of one TypedArray.set, ` +
      `all ${ranks} ranks copying at once (bytes counted once); all ranks together ${copy.aggregateGBps.toFixed(2)} GB/s; ` +
      `one rank alone ${copy.soloGBps.toFixed(2)} GB/s; into a newly allocated array (as a result without out is) ` +
      `${copy.freshPerRankGBps.toFixed(2)} GB/s per rank`,
  );
  console.log(
    `latency: Atomics ping-pong round trip ${pingPong.us.toFixed(1)} µs (ranks 0 and 1, wait/notify on one shared word; ` +
      `median of ${pingPong.batchUs.length} batches of ${pingPong.operations}, batches ${range(pingPong.batchUs)} µs); ` +
      `comm.send + comm.recv of 8 B round trip ${sendRecv.us.toFixed(1)} µs; comm.barrier ${barrier.us.toFixed(1)} µs`,
  );
  for (const kind of COLLECTIVES) {
    for (const buffers of BUFFERS) {
      const cases = world.cases.filter((c) => c.kind === kind && c.buffers === buffers);
      if (cases.length === 0) continue;
      console.log("");
      console.log(`${kind}, ${ranks} ranks, ${buffers} arrays (busbw factor ${FACTORS[kind]})`);
      for (const line of alignedTable(HEADER, cases.map(caseRow))) console.log(line);
    }
  }
  console.log("");
}

function caseRow(c: CaseReport): string[] {
  return [
    formatBytes(c.bytes),
    String(c.elements),
    c.algorithm,
    c.us.toFixed(1),
    c.algbwGBps.toFixed(3),
    c.busbwGBps.toFixed(3),
    percent(c.fractionOfCopy),
    c.wrong > 0 ? `${c.wrong} WRONG` : "0",
    String(Math.max(...c.ledger.bytesPerRank)),
    c.ledger.exact ? "exact" : "DIFF",
    c.simulatedUs.toFixed(2),
  ];
}

function range(values: number[]): string {
  return `${Math.min(...values).toFixed(1)} … ${Math.max(...values).toFixed(1)}`;
}

function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(1)}%`;
}

export function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 20) return `${bytes / 2 ** 20} MiB`;
  if (bytes >= 1024) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}
