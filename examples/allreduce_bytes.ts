// All-reduce: how many bytes does each rank send?
//
// N ranks each hold a vector of m floats (B = 4m bytes) and all-reduce it with a sum. A ring
// all-reduce is a reduce-scatter followed by an all-gather, each of which sends (N−1)/N of the
// vector, so every rank sends 2(N−1)/N · B bytes: never more than 2B, however many ranks there
// are. That is why NCCL reports "bus bandwidth" as algbw · 2(N−1)/N.
//
// shardlab sends a message of up to 16 KiB directly instead: each rank sends its whole vector to
// every other rank, (N−1) · B bytes, in one round rather than 2(N−1) ring steps (for small
// messages the latency of the steps costs more than the bytes). So the table prints both formulas
// beside the bytes the ledger counted and the algorithm it recorded.
//
// What to look for: on the ring rows the ledger equals 2(N−1)/N · B on every rank, and the ratio
// to B climbs towards 2 as N grows; on the direct rows it is (N−1) · B. Choose m divisible by every
// N: with uneven chunks each rank's share differs by a chunk.
//
//   deno run -A examples/allreduce_bytes.ts [--ranks 2,3,4] [--floats 1536,6144,196608] [--backend cpu] [--json]
//
// This file is both the launcher and the code every rank runs: launch() starts max(ranks) workers,
// each imports this file and calls its default export, and the first N ranks form the group of N.

import { launch, type RankContext } from "shardlab";
import { count, integers, printJson, printTable, readFlags } from "./cli.ts";

interface Args {
  worlds: number[];
  sizes: number[];
}

/** One all-reduce as one rank saw it: what its ledger recorded, and whether the sum came out right. */
interface RankCall {
  tag: string;
  algorithm: string;
  bytesSent: number;
  correct: boolean;
}

const tagOf = (n: number, floats: number) => `example.allreduce.n${n}.floats${floats}`;

/** Runs on every rank: for each N and m, the first N ranks all-reduce a vector of m floats. */
export default async function allReduceOnEveryRank(ctx: RankContext, { worlds, sizes }: Args): Promise<RankCall[]> {
  const calls: RankCall[] = [];
  for (const n of worlds) {
    if (ctx.rank >= n) continue;
    const group = ctx.comm.group(Array.from({ length: n }, (_, rank) => rank));
    for (const floats of sizes) {
      // Rank r contributes r + 1 everywhere, so every element of the sum is 1 + 2 + … + N.
      const x = ctx.device.tensor(new Float32Array(floats).fill(ctx.rank + 1), [floats]);
      const sum = await group.allReduce(x, { op: "sum", tag: tagOf(n, floats) });
      const values = await sum.read();
      x.dispose();
      sum.dispose();
      const record = ctx.comm.ledger.collectives.at(-1)!;
      calls.push({
        tag: record.tag,
        algorithm: record.algorithm,
        bytesSent: record.bytes,
        correct: values.every((value) => value === (n * (n + 1)) / 2),
      });
    }
  }
  return calls;
}

if (import.meta.main) {
  const { flags, json } = readFlags({ ranks: "2,3,4", floats: "1536,6144,196608", backend: "cpu" });
  const worlds = integers("ranks", flags.ranks, 2);
  const sizes = integers("floats", flags.floats, 1);
  const results = await launch<RankCall[]>({
    ranks: Math.max(...worlds),
    entry: import.meta.url,
    args: { worlds, sizes } satisfies Args,
    backend: flags.backend as "cpu" | "webgpu" | "auto",
  });

  const rows = worlds.flatMap((n) =>
    sizes.map((floats) => {
      const calls = results.slice(0, n).map(({ value }) => value.find((call) => call.tag === tagOf(n, floats))!);
      const bytes = 4 * floats;
      return {
        ranks: n,
        floats,
        bytes,
        algorithm: calls[0].algorithm,
        sentPerRank: calls.map((call) => call.bytesSent),
        // The merged ledger of the whole world, which launch() returns: all ranks' bytes under this tag.
        sentByAllRanks: results.traffic.byTag[tagOf(n, floats)],
        ringFormula: (2 * (n - 1) / n) * bytes,
        directFormula: (n - 1) * bytes,
        sumCorrect: calls.every((call) => call.correct),
      };
    })
  );

  console.log(`all-reduce (sum) of B = 4m bytes on N ranks: bytes each rank sent, from its ledger`);
  printTable(
    ["N", "floats m", "B bytes", "algorithm", "sent by each rank", "ring 2(N-1)/N·B", "direct (N-1)·B", "sent / B", "sum"],
    rows.map((row) => {
      const same = row.sentPerRank.every((bytes) => bytes === row.sentPerRank[0]);
      return [
        String(row.ranks),
        count(row.floats),
        count(row.bytes),
        row.algorithm,
        same ? `${count(row.sentPerRank[0])} (all ${row.ranks})` : row.sentPerRank.map(count).join(" / "),
        count(row.ringFormula),
        count(row.directFormula),
        (row.sentPerRank[0] / row.bytes).toFixed(3),
        row.sumCorrect ? "ok" : "WRONG",
      ];
    }),
  );
  console.log("messages up to 16 KiB go direct (one round); larger ones go round the ring (2(N−1) steps)");
  printJson(json, { rows });
}
