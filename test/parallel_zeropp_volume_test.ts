// ZeRO++'s communication volumes, exactly: per training step, by tag and by link class (intra- or
// inter-node), the merged ledgers of every rank equal the bytes worked out here from the model's
// shape, the layout and the collectives' documented algorithms alone, for ZeRO-3 (f32 and f16 on
// the wire), each ZeRO++ technique alone and all three, on dp 4 over 2 nodes and dp 8 over 2 and 4.
//
// Per flat group (embed_tokens, each decoder layer, the head; padded to a multiple of the world W)
// of P elements, c = P / W per rank, g ranks per node, N nodes:
//   forward all-gather   W ranks, a block per rank: 4c bytes (f32), 2c (f16), or qwZ's c INT8
//                        bytes (whole words) and 4 bytes of scale per block of 2048
//   backward all-gather  the same again; with hpZ, over the node's g ranks, a block of 4P/g
//   gradients            a reduce-scatter of 4P (2P in f16); with qgZ, an all-to-all inside the
//                        node (to each local peer, N INT4 chunks with their scales) and one
//                        between nodes (to each other node's peer, one INT4 chunk with its scales)
// and two 4-byte all-reduces a step (gradient norm, loss). A message of at most 16 KiB goes direct
// (each block to each receiver: to every member of an all-gather, its chunk to each member of a
// reduce-scatter); a larger one goes around the ring (each rank sends n − 1 blocks or chunks to its
// successor), so a ring crosses each node boundary once.
//
// The test prints the inter-node bytes per node and step, in units of M, the model's size in f16
// bytes, with the ratio ZeRO-3 / ZeRO++ (the paper: 3M → 0.75M on ring collectives, 4×).

import assert from "node:assert/strict";
import { launch } from "../src/comm/launch.ts";
import { headDim, paramCount, presetConfig } from "../src/nn/config.ts";
import type { TrainConfig } from "../src/train/config.ts";
import type { TrainRankResult } from "../src/train/train_rank.ts";

const ENTRY = new URL("../src/train/train_rank.ts", import.meta.url).href;
const MODEL = presetConfig("tiny");
const INLINE_BYTES = 16 * 1024;
const BLOCK = 2048;

type Link = "intra" | "inter";
type Volumes = Map<string, Record<Link, number>>;

interface Variant {
  name: string;
  options: Partial<TrainConfig>;
  f16?: boolean;
  qwz?: boolean;
  hpz?: boolean;
  qgz?: boolean;
}

const VARIANTS: Variant[] = [
  { name: "ZeRO-3 f32", options: {} },
  { name: "ZeRO-3 f16", options: { commDtype: "f16" }, f16: true },
  { name: "qwZ", options: { zeroQuantizedWeights: true }, qwz: true },
  { name: "hpZ", options: {}, hpz: true },
  { name: "qgZ", options: { zeroQuantizedGradients: true }, qgz: true },
  { name: "ZeRO++", options: { zeropp: true }, qwz: true, hpz: true, qgz: true },
];

/** The flat groups of ZeRO-3 on the tiny model, from its shape. */
function groups(): { label: string; numel: number }[] {
  const { vocabSize: V, hiddenSize: h, numHeads: Hq, numKvHeads: Hkv, intermediateSize: I } = MODEL;
  const D = headDim(MODEL);
  const layer = (Hq + 2 * Hkv) * D * h + h * Hq * D + 2 * I * h + h * I + 2 * h;
  return [
    { label: "embed", numel: V * h },
    ...Array.from({ length: MODEL.numLayers }, (_, i) => ({ label: `layer${i}`, numel: layer })),
    { label: "head", numel: h + V * h },
  ];
}

/** Bytes of one message of `tensors` quantized chunks of n elements: levels in whole words, then a scale per block. */
function quantized(n: number, tensors: number, bits: number): number {
  return tensors * (4 * Math.ceil((n * bits) / 32) + 4 * Math.ceil(n / BLOCK));
}

/** The expected bytes of one step by tag and link, over every rank. */
function expected(world: number, nodes: number, v: Variant): Volumes {
  const g = world / nodes;
  const volumes: Volumes = new Map();
  const add = (tag: string, src: number, dst: number, bytes: number) => {
    const link: Link = Math.floor(src / g) === Math.floor(dst / g) ? "intra" : "inter";
    const entry = volumes.get(tag) ?? { intra: 0, inter: 0 };
    entry[link] += bytes;
    volumes.set(tag, entry);
  };
  const allGather = (tag: string, members: number[], block: number) =>
    members.forEach((src, i) => {
      if (block <= INLINE_BYTES) members.forEach((dst) => dst !== src && add(tag, src, dst, block));
      else add(tag, src, members[(i + 1) % members.length], (members.length - 1) * block);
    });
  const reduceScatter = (tag: string, members: number[], bytes: number) =>
    members.forEach((src, i) => {
      const chunk = bytes / members.length;
      if (bytes <= INLINE_BYTES) members.forEach((dst) => dst !== src && add(tag, src, dst, chunk));
      else add(tag, src, members[(i + 1) % members.length], (members.length - 1) * chunk);
    });
  const allToAll = (tag: string, members: number[], block: number) =>
    members.forEach((src) => members.forEach((dst) => dst !== src && add(tag, src, dst, block)));
  const everyone = Array.from({ length: world }, (_, r) => r);
  const nodeOf = (n: number) => everyone.slice(n * g, (n + 1) * g);
  const peersOf = (local: number) => everyone.filter((r) => r % g === local);
  const element = v.f16 ? 2 : 4;
  for (const { label, numel } of groups()) {
    const padded = Math.ceil(numel / world) * world;
    const c = padded / world;
    const gathered = v.qwz ? quantized(c, 1, 8) : element * c;
    allGather(v.qwz ? `zeropp.qwz.fwd.${label}` : `zero3.allgather.fwd.${label}`, everyone, gathered);
    if (v.hpz) { for (let n = 0; n < nodes; n++) allGather(`zeropp.hpz.bwd.${label}`, nodeOf(n), (element * padded) / g); }
    else allGather(v.qwz ? `zeropp.qwz.bwd.${label}` : `zero3.allgather.bwd.${label}`, everyone, gathered);
    if (v.qgz) {
      if (g > 1) { for (let n = 0; n < nodes; n++) allToAll(`zeropp.qgz.intra.${label}`, nodeOf(n), quantized(c, nodes, 4)); }
      if (nodes > 1) { for (let l = 0; l < g; l++) allToAll(`zeropp.qgz.inter.${label}`, peersOf(l), quantized(c, 1, 4)); }
    } else {
      reduceScatter(`zero3.reducescatter.grads.${label}`, everyone, element * padded);
    }
  }
  for (const tag of ["zero.allreduce.gradnorm", "engine.allreduce.loss"]) allGather(tag, everyone, 4);
  return volumes;
}

/** The ledgers' bytes by tag and link, over every rank, for a one-step run. */
async function measured(world: number, nodes: number, v: Variant): Promise<Volumes> {
  const config: TrainConfig = {
    preset: "tiny",
    steps: 1,
    batch: world,
    seq: 16,
    lr: 1e-3,
    seed: 5,
    backend: "cpu",
    dp: world,
    zero: 3,
    nodes,
    ...v.options,
    ...(v.hpz && !v.options.zeropp ? { zeroHpzPartitionSize: world / nodes } : {}),
  };
  const results = await launch<TrainRankResult>({
    ranks: world,
    ranksPerNode: world / nodes,
    entry: ENTRY,
    args: { config },
    backend: "cpu",
  });
  const volumes: Volumes = new Map();
  for (const { value } of results) {
    for (const record of value.collectives) {
      const entry = volumes.get(record.tag) ?? { intra: 0, inter: 0 };
      for (const send of record.sends) entry[send.link] += send.bytes;
      volumes.set(record.tag, entry);
    }
  }
  return volumes;
}

function sorted(volumes: Volumes): [string, Record<Link, number>][] {
  return [...volumes.entries()].sort(([a], [b]) => a.localeCompare(b));
}

/** Inter-node bytes of the forward gathers, the backward gathers and the gradients (the rest is the 4-byte all-reduces). */
function interByFamily(volumes: Volumes): { fwd: number; bwd: number; grads: number; total: number } {
  const family = { fwd: 0, bwd: 0, grads: 0, total: 0 };
  for (const [tag, { inter }] of volumes) {
    family.total += inter;
    if (tag.includes(".fwd.")) family.fwd += inter;
    else if (tag.includes(".bwd.")) family.bwd += inter;
    else if (tag.includes("reducescatter") || tag.includes(".qgz.")) family.grads += inter;
  }
  return family;
}

/** The model's size in f16 bytes: the paper's M. */
const M = 2 * paramCount(MODEL);

for (const [world, nodes] of [[4, 2], [8, 2], [8, 4]]) {
  Deno.test(`zeropp: the ledger's bytes per step equal the formula, by tag and link, dp ${world} over ${nodes} nodes`, async () => {
    const perNode = new Map<string, ReturnType<typeof interByFamily>>();
    for (const v of VARIANTS) {
      const got = await measured(world, nodes, v);
      assert.deepEqual(sorted(got), sorted(expected(world, nodes, v)), `${v.name}, dp ${world} over ${nodes} nodes`);
      const family = interByFamily(got);
      perNode.set(v.name, {
        fwd: family.fwd / nodes,
        bwd: family.bwd / nodes,
        grads: family.grads / nodes,
        total: family.total / nodes,
      });
    }
    const m = (bytes: number) => `${(bytes / M).toFixed(3)}M`.padStart(8);
    const lines = [...perNode].map(([name, f]) => `  ${name.padEnd(11)} ${m(f.fwd)} ${m(f.bwd)} ${m(f.grads)} ${m(f.total)}`);
    const [f16, f32, plusPlus] = ["ZeRO-3 f16", "ZeRO-3 f32", "ZeRO++"].map((name) => perNode.get(name)!.total);
    console.log(
      `dp ${world} over ${nodes} nodes: inter-node bytes per node and step (M = ${M}, the model in f16)\n` +
        `  ${"".padEnd(11)} ${"fwd".padStart(8)} ${"bwd".padStart(8)} ${"grads".padStart(8)} ${"total".padStart(8)}\n` +
        `${lines.join("\n")}\n  ZeRO-3 / ZeRO++: ${(f16 / plusPlus).toFixed(2)}× in f16, ${(f32 / plusPlus).toFixed(2)}× in f32`,
    );
    assert.equal(perNode.get("hpZ")!.bwd, 0, "hpZ's backward gathers stay inside the nodes");
    assert.ok(plusPlus < f16 / 3, "ZeRO++ crosses nodes with under a third of ZeRO-3's f16 bytes");
  });
}
