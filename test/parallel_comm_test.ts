// The ledger of parallel training equals the analytic communication volumes, byte for byte.
//
// Every rank runs src/train/train_rank.ts on the tiny preset for two steps; its ledger is cut into
// steps (each ends with the loss all-reduce) and every collective of a strategy is compared with
// the volume worked out here from the model's shape and the layout alone:
//
//   ZeRO-3        per layer group, one all-gather before the forward, one before the recomputed
//                 backward and one reduce-scatter of the gradients, each (dp−1)/dp of the group
//                 padded to a multiple of dp: 3·(dp−1)/dp·M_padded·4 bytes a step, 1.5× DDP's
//                 ring all-reduce 2·(dp−1)/dp·M·4
//   ZeRO-1 / 2    a reduce-scatter of the flat gradient, then the all-gather of the updated
//                 parameters: (dp−1)/dp·M each, together DDP's all-reduce
//   Ulysses       per layer two all-to-alls (q, k, v to heads; the output back): each rank sends
//                 every other rank that rank's heads of its own tokens, bounded by 4·(N/S)·h floats
//                 however long the sequence, while Megatron-SP's all-gathers and reduce-scatters
//                 along the sequence move (S−1)/S·N·h floats each, growing with N
//   Megatron TP   per layer f (all-reduce in backward) and g (all-reduce in forward) of N·h floats
//
// The collectives' costs are those of the comm docs: a payload of at most 16 KiB travels direct
// (all-reduce (n−1)·M, reduce-scatter M − |chunk p|, all-gather and all-to-all each block to each
// receiver), a larger one around the ring (all-reduce 2M − |chunk p| − |chunk p+1|, reduce-scatter
// M − |chunk p|, all-gather M − |block p+1|).

import assert from "node:assert/strict";
import { launch, type LaunchResult } from "../src/comm/launch.ts";
import type { CollectiveRecord } from "../src/comm/ledger.ts";
import { headDim, paramCount, type Phi3Config, presetConfig } from "../src/nn/config.ts";
import { ulyssesVolume } from "../src/parallel/ulysses.ts";
import type { TrainConfig } from "../src/train/config.ts";
import type { TrainRankResult } from "../src/train/train_rank.ts";

const ENTRY = new URL("../src/train/train_rank.ts", import.meta.url).href;
const BASE: TrainConfig = { preset: "tiny", steps: 2, batch: 4, seq: 16, lr: 1e-3, seed: 3, backend: "cpu" };
const MODEL = presetConfig("tiny");
const F32 = 4;
/** The largest payload that travels inline, direct from sender to receiver. */
const INLINE_BYTES = 16 * 1024;

async function run(layout: Partial<TrainConfig>): Promise<LaunchResult<TrainRankResult>> {
  const config: TrainConfig = { ...BASE, ...layout };
  const ranks = (config.dp ?? 1) * (config.tp ?? 1) * (config.sp ?? 1);
  return await launch<TrainRankResult>({ ranks, entry: ENTRY, args: { config }, backend: "cpu" });
}

/** A rank's records of each training step (a step ends with the loss all-reduce); what follows the last is left out. */
function bySteps(records: CollectiveRecord[], what: string): CollectiveRecord[][] {
  const steps: CollectiveRecord[][] = [[]];
  for (const record of records) {
    steps.at(-1)!.push(record);
    if (record.tag === "engine.allreduce.loss") steps.push([]);
  }
  steps.pop();
  assert.equal(steps.length, BASE.steps, `${what}: one loss all-reduce per step`);
  return steps;
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** n chunk sizes adding up to m, the first m mod n one larger. */
function equalChunks(m: number, n: number): number[] {
  return Array.from({ length: n }, (_, k) => Math.floor(m / n) + (k < m % n ? 1 : 0));
}

/** Bytes rank p sends in an all-reduce of m f32 over n ranks, and the algorithm that moves them. */
function allReduceCost(m: number, n: number, p: number): { bytes: number; algorithm: string } {
  if (F32 * m <= INLINE_BYTES) return { bytes: F32 * (n - 1) * m, algorithm: "direct" };
  const c = equalChunks(m, n);
  return { bytes: F32 * (2 * m - c[p] - c[(p + 1) % n]), algorithm: "ring" };
}

/** Bytes each rank sends in a reduce-scatter of m f32 into n equal chunks (direct or ring alike). */
function reduceScatterCost(m: number, n: number): { bytes: number; algorithm: string } {
  return { bytes: F32 * (m - m / n), algorithm: F32 * m <= INLINE_BYTES ? "direct" : "ring" };
}

/** Bytes each rank sends in an all-gather of n blocks of `block` f32 (direct or ring alike). */
function allGatherCost(block: number, n: number): { bytes: number; algorithm: string } {
  return { bytes: F32 * (n - 1) * block, algorithm: F32 * block <= INLINE_BYTES ? "direct" : "ring" };
}

interface ExpectedCall {
  tag: string;
  kind: string;
  elements: number;
  bytes: number;
  algorithm: string;
}

function checkRecord(record: CollectiveRecord, want: ExpectedCall, what: string): void {
  const got = { tag: record.tag, kind: record.kind, elements: record.elements, bytes: record.bytes, algorithm: record.algorithm };
  assert.deepEqual(got, want, what);
}

// ---- ZeRO-3 ----

/** The ZeRO-3 groups (embed_tokens; each decoder layer; model.norm with lm_head) and their elements, from the shape. */
function zero3Groups(c: Phi3Config): { label: string; numel: number }[] {
  const { vocabSize: V, hiddenSize: h, numHeads: Hq, numKvHeads: Hkv, intermediateSize: I } = c;
  const D = headDim(c);
  const layer = (Hq + 2 * Hkv) * D * h + h * Hq * D + 2 * I * h + h * I + 2 * h;
  return [
    { label: "embed", numel: V * h },
    ...Array.from({ length: c.numLayers }, (_, i) => ({ label: `layer${i}`, numel: layer })),
    { label: "head", numel: h + V * h },
  ];
}

function paddedTo(numel: number, dp: number): number {
  return Math.ceil(numel / dp) * dp;
}

Deno.test("comm: the ZeRO-3 groups add up to the model's parameter count", () => {
  assert.equal(sum(zero3Groups(MODEL).map((g) => g.numel)), paramCount(MODEL));
});

/** Per rank and step: the ZeRO-3 collectives in schedule order, then the gradient norm and the loss all-reduces. */
function zero3Step(dp: number): ExpectedCall[] {
  const groups = zero3Groups(MODEL).map(({ label, numel }) => ({ label, padded: paddedTo(numel, dp) }));
  const gather = (pass: string, g: { label: string; padded: number }) => ({
    tag: `zero3.allgather.${pass}.${g.label}`,
    kind: "allGather",
    elements: g.padded / dp,
    ...allGatherCost(g.padded / dp, dp),
  });
  const scalar = (tag: string) => ({ tag, kind: "allReduce", elements: 1, ...allReduceCost(1, dp, 0) });
  return [
    ...groups.map((g) => gather("fwd", g)),
    ...groups.toReversed().flatMap((g) => [
      gather("bwd", g),
      {
        tag: `zero3.reducescatter.grads.${g.label}`,
        kind: "reduceScatter",
        elements: g.padded,
        ...reduceScatterCost(g.padded, dp),
      },
    ]),
    scalar("zero.allreduce.gradnorm"),
    scalar("engine.allreduce.loss"),
  ];
}

/** Bytes of the three ZeRO-3 tag families in one step's records. */
function zero3Families(step: CollectiveRecord[]): { fwd: number; bwd: number; grads: number } {
  const bytes = (prefix: string) => sum(step.filter((r) => r.tag.startsWith(prefix)).map((r) => r.bytes));
  return { fwd: bytes("zero3.allgather.fwd."), bwd: bytes("zero3.allgather.bwd."), grads: bytes("zero3.reducescatter.grads.") };
}

async function checkZero3(dp: number, batch: number): Promise<number> {
  const results = await run({ dp, zero: 3, batch });
  const paddedTotal = sum(zero3Groups(MODEL).map((g) => paddedTo(g.numel, dp)));
  const perPass = (F32 * (dp - 1) * paddedTotal) / dp;
  const expected = zero3Step(dp);
  for (const { rank, value } of results) {
    bySteps(value.collectives, `dp ${dp} rank ${rank}`).forEach((step, s) => {
      const what = `ZeRO-3 dp ${dp} rank ${rank} step ${s + 1}`;
      assert.deepEqual(
        step.map((r) => r.tag),
        expected.map((e) => e.tag),
        `${what}: one of each collective per group, in schedule order`,
      );
      step.forEach((record, i) => checkRecord(record, expected[i], `${what}: ${record.tag}`));
      assert.deepEqual(zero3Families(step), { fwd: perPass, bwd: perPass, grads: perPass }, what);
    });
  }
  // Cross-check: the ranks' fragments cover every parameter element once.
  assert.equal(sum(results.flatMap(({ value }) => value.fragments.fragments.map((f) => f.numel))), paramCount(MODEL));
  return 3 * perPass;
}

const ddpRuns = new Map<number, Promise<number>>();

/** Per rank and step: DDP's gradient all-reduce bytes at `dp` (one run per dp). */
function ddpStepBytes(dp: number): Promise<number> {
  if (!ddpRuns.has(dp)) ddpRuns.set(dp, ddpRun(dp));
  return ddpRuns.get(dp)!;
}

/** Runs DDP at `dp`, checks each bucket against the ring formula, and returns the per-rank bytes of a step. */
async function ddpRun(dp: number): Promise<number> {
  const results = await run({ dp });
  const perStep = new Set<number>();
  for (const { rank, value } of results) {
    for (const step of bySteps(value.collectives, `DDP dp ${dp} rank ${rank}`)) {
      const buckets = step.filter((r) => r.tag.startsWith("ddp.allreduce.bucket"));
      assert.equal(sum(buckets.map((r) => r.elements)), paramCount(MODEL), "the buckets hold every parameter once");
      for (const r of buckets) {
        assert.equal(r.bytes, allReduceCost(r.elements, dp, rank).bytes, `DDP dp ${dp} rank ${rank} ${r.tag}`);
      }
      perStep.add(sum(buckets.map((r) => r.bytes)));
    }
  }
  assert.equal(perStep.size, 1, `DDP dp ${dp}: every rank sends as much every step`);
  return [...perStep][0];
}

for (const dp of [2, 4]) {
  Deno.test(`comm: ZeRO-3 dp ${dp} gathers twice and reduce-scatters once per group, 1.5× DDP's all-reduce`, async () => {
    const M = paramCount(MODEL);
    assert.equal(M % dp, 0, "no padding at this dp, so DDP's ring chunks are equal");
    const zero3 = await checkZero3(dp, BASE.batch);
    assert.equal(zero3, (3 * (dp - 1) * M * F32) / dp);
    const ddp = await ddpStepBytes(dp);
    assert.equal(ddp, (2 * (dp - 1) * M * F32) / dp, "ring all-reduce: 2(n−1)/n·M");
    assert.equal(zero3, 1.5 * ddp);
  });
}

Deno.test("comm: ZeRO-3 dp 3 moves each group padded to a multiple of 3", async () => {
  const padding = zero3Groups(MODEL).map((g) => paddedTo(g.numel, 3) - g.numel);
  assert.ok(padding.some((p) => p > 0), `the tiny groups do not all divide by 3: padding ${padding}`);
  const bytes = await checkZero3(3, 6);
  assert.equal(bytes, 3 * (2 / 3) * (paramCount(MODEL) + sum(padding)) * F32);
});

// ---- ZeRO-1 and ZeRO-2 ----

Deno.test("comm: ZeRO-1 and ZeRO-2 reduce-scatter the flat gradient and all-gather the parameters, DDP's volume (dp 2)", async () => {
  const dp = 2;
  const padded = paddedTo(paramCount(MODEL), dp);
  const ddp = await ddpStepBytes(dp);
  for (const stage of [1, 2] as const) {
    const results = await run({ dp, zero: stage });
    const expected = [
      { tag: `zero${stage}.reducescatter.grads`, kind: "reduceScatter", elements: padded, ...reduceScatterCost(padded, dp) },
      { tag: "zero.allreduce.gradnorm", kind: "allReduce", elements: 1, ...allReduceCost(1, dp, 0) },
      { tag: `zero${stage}.allgather.params`, kind: "allGather", elements: padded / dp, ...allGatherCost(padded / dp, dp) },
      { tag: "engine.allreduce.loss", kind: "allReduce", elements: 1, ...allReduceCost(1, dp, 0) },
    ];
    for (const { rank, value } of results) {
      bySteps(value.collectives, `ZeRO-${stage} rank ${rank}`).forEach((step, s) => {
        const what = `ZeRO-${stage} dp ${dp} rank ${rank} step ${s + 1}`;
        assert.deepEqual(step.map((r) => r.tag), expected.map((e) => e.tag), what);
        step.forEach((record, i) => checkRecord(record, expected[i], `${what}: ${record.tag}`));
      });
    }
    // (n−1)/n·M for the gradient and as much for the parameters: what DDP's ring all-reduce sends.
    assert.equal(expected[0].bytes, ((dp - 1) * padded * F32) / dp);
    assert.equal(expected[2].bytes, ((dp - 1) * padded * F32) / dp);
    assert.equal(expected[0].bytes + expected[2].bytes, ddp);
  }
});

// ---- Ulysses and Megatron-SP ----

/** Each rank's q heads and the kv heads it receives (the ulysses.ts header's rule, written again here). */
function ulyssesShares(Hq: number, Hkv: number, S: number): { q: number; kv: number }[] {
  const qPerKv = Hq / Hkv;
  let first = 0;
  return Array.from({ length: S }, (_, r) => {
    const q = Math.floor(Hq / S) + (r < Hq % S ? 1 : 0);
    const runs = new Map<number, number>();
    for (let j = first; j < first + q; j++) runs.set(Math.floor(j / qPerKv), (runs.get(Math.floor(j / qPerKv)) ?? 0) + 1);
    first += q;
    const lengths = [...runs.values()];
    return { q, kv: lengths.every((l) => l === lengths[0]) ? runs.size : q };
  });
}

/** Ulysses bytes rank p sends per layer: both all-to-alls, forward and backward. */
function ulyssesLayerBytes(rows: number, seq: number, S: number, p: number): Record<string, number> {
  const shares = ulyssesShares(MODEL.numHeads, MODEL.numKvHeads, S);
  const head = F32 * rows * (seq / S) * headDim(MODEL);
  const others = shares.filter((_, r) => r !== p);
  const width = (s: { q: number; kv: number }) => s.q + 2 * s.kv;
  return {
    "fwd.qkv": head * sum(others.map(width)),
    "fwd.out": head * (S - 1) * shares[p].q,
    "bwd.qkv": head * (S - 1) * width(shares[p]),
    "bwd.out": head * sum(others.map((s) => s.q)),
  };
}

/** For each layer i, the bytes of the step's one record tagged tag(i). */
function perLayer(step: CollectiveRecord[], tag: (layer: number) => string): number[] {
  return Array.from({ length: MODEL.numLayers }, (_, i) => {
    const calls = step.filter((r) => r.tag === tag(i));
    assert.equal(calls.length, 1, `one ${tag(i)} per step`);
    return calls[0].bytes;
  });
}

/** Checks every Ulysses all-to-all of every step and returns rank 0's forward bytes per layer. */
async function ulyssesForward(S: number, seq: number): Promise<number> {
  const results = await run({ sp: S, seq });
  for (const { rank, value } of results) {
    const expected = ulyssesLayerBytes(BASE.batch, seq, S, rank);
    const volume = ulyssesVolume(BASE.batch, seq, { ...MODEL, headDim: headDim(MODEL) }, S, rank);
    assert.deepEqual({ qkvBytes: expected["fwd.qkv"], outBytes: expected["fwd.out"] }, volume, "cross-check with ulyssesVolume");
    for (const step of bySteps(value.collectives, `Ulysses sp ${S} rank ${rank}`)) {
      const exchanges = step.filter((r) => r.tag.startsWith("ulysses."));
      assert.equal(exchanges.length, S === 1 ? 0 : 4 * MODEL.numLayers, `sp ${S}: two all-to-alls per layer each way`);
      if (S === 1) continue;
      for (const r of exchanges) assert.equal(r.kind, "allToAll", r.tag);
      for (const [what, bytes] of Object.entries(expected)) {
        const [direction, tensor] = what.split(".");
        const sent = perLayer(step, (i) => `ulysses.alltoall.${direction}.layer${i}.${tensor}`);
        assert.deepEqual(sent, new Array(MODEL.numLayers).fill(bytes), `sp ${S} rank ${rank} ${what}`);
      }
    }
    assert.equal(
      expected["bwd.qkv"] + expected["bwd.out"],
      expected["fwd.qkv"] + expected["fwd.out"],
      "backward moves what forward moved",
    );
  }
  const rank0 = ulyssesLayerBytes(BASE.batch, seq, S, 0);
  return rank0["fwd.qkv"] + rank0["fwd.out"];
}

/** Checks Megatron-SP's sequence all-gathers and reduce-scatters of every layer and returns rank 0's forward bytes per layer. */
async function megatronForward(S: number, seq: number): Promise<number> {
  const results = await run({ sp: S, seq, spImpl: "megatron" });
  const Nh = BASE.batch * seq * MODEL.hiddenSize;
  const gather = allGatherCost(Nh / S, S);
  const scatter = reduceScatterCost(Nh, S);
  for (const { rank, value } of results) {
    for (const step of bySteps(value.collectives, `Megatron-SP sp ${S} rank ${rank}`)) {
      for (const part of ["attn", "mlp"]) {
        for (const direction of ["fwd", "bwd"]) {
          for (const [kind, cost, elements] of [["allgather", gather, Nh / S], ["reducescatter", scatter, Nh]] as const) {
            for (let i = 0; i < MODEL.numLayers; i++) {
              const tag = `tp.${kind}.${direction}.layer${i}.${part}`;
              const calls = step.filter((r) => r.tag === tag);
              assert.equal(calls.length, 1, `sp ${S} rank ${rank}: one ${tag} per step`);
              const want = { tag, kind: kind === "allgather" ? "allGather" : "reduceScatter", elements, ...cost };
              checkRecord(calls[0], want, `Megatron-SP sp ${S} rank ${rank} ${tag}`);
            }
          }
        }
      }
    }
  }
  // Each is (S−1)/S of N·h floats.
  assert.equal(gather.bytes, (F32 * (S - 1) * Nh) / S);
  assert.equal(scatter.bytes, (F32 * (S - 1) * Nh) / S);
  return 2 * gather.bytes + 2 * scatter.bytes;
}

Deno.test("comm: Ulysses' per-layer volume stays bounded as N and sp grow together, Megatron-SP's grows with N", async () => {
  const h = MODEL.hiddenSize;
  const rowTokens = 16;
  const N0 = BASE.batch * rowTokens;
  const ulysses: number[] = [];
  const megatron: number[] = [];
  for (const S of [1, 2, 4]) {
    const seq = rowTokens * S;
    ulysses.push(await ulyssesForward(S, seq));
    megatron.push(S === 1 ? 0 : await megatronForward(S, seq));
  }
  // Exact figures for the tiny shape (4 q heads, 2 kv heads of 16): sp 2 sends 2 q + 1 k + 1 v head
  // and gets 2 q heads back; sp 4 sends 3 × (1 q + 1 k + 1 v) and 3 × 1 q head back.
  assert.deepEqual(ulysses, [0, F32 * N0 * 16 * (4 + 2), F32 * N0 * 16 * (9 + 3)]);
  for (const [i, S] of [1, 2, 4].entries()) {
    const N = N0 * S;
    assert.ok(ulysses[i] <= 4 * N0 * h * F32, `sp ${S}: Ulysses ${ulysses[i]} bytes ≤ 4·N₀·h·4 = ${4 * N0 * h * F32}`);
    assert.equal(megatron[i], (4 * (S - 1) * N * h * F32) / S, `sp ${S}: Megatron-SP 4·(S−1)/S·N·h·4`);
  }
  // Megatron-SP outgrows Ulysses' bound, and its lead widens with the sequence.
  assert.ok(megatron[2] > 4 * N0 * h * F32);
  assert.ok(megatron[2] / ulysses[2] > megatron[1] / ulysses[1]);
});

// ---- Megatron tensor parallelism ----

/** Per rank and step: every tensor-parallel all-reduce of the forward and backward, in order. */
function tensorParallelStep(tp: number, seq: number, p: number): ExpectedCall[] {
  const N = BASE.batch * seq;
  const Nh = N * MODEL.hiddenSize;
  const allReduce = (tag: string, elements: number): ExpectedCall => ({
    tag,
    kind: "allReduce",
    elements,
    ...allReduceCost(elements, tp, p),
  });
  const layers = Array.from({ length: MODEL.numLayers }, (_, i) => i);
  return [
    allReduce("tp.allreduce.fwd.embed", Nh),
    ...layers.flatMap((i) => ["attn", "mlp"].map((part) => allReduce(`tp.allreduce.fwd.layer${i}.${part}`, Nh))),
    allReduce("tp.allreduce.fwd.head.max", N),
    allReduce("tp.allreduce.fwd.head.sumexp_target", 2 * N),
    allReduce("tp.allreduce.bwd.head", Nh),
    ...layers.toReversed().flatMap((i) => ["mlp", "attn"].map((part) => allReduce(`tp.allreduce.bwd.layer${i}.${part}`, Nh))),
  ];
}

for (const [tp, seq, algorithm] of [[2, 16, "direct"], [4, 32, "ring"]] as const) {
  Deno.test(`comm: tensor parallel tp ${tp} all-reduces N·h floats in g (forward) and f (backward) per layer, ${algorithm}`, async () => {
    const results = await run({ tp, seq });
    const Nh = BASE.batch * seq * MODEL.hiddenSize;
    for (const { rank, value } of results) {
      const expected = tensorParallelStep(tp, seq, rank);
      bySteps(value.collectives, `tp ${tp} rank ${rank}`).forEach((step, s) => {
        const what = `tp ${tp} rank ${rank} step ${s + 1}`;
        const calls = step.filter((r) => /^tp\.allreduce\.(fwd|bwd)\./.test(r.tag));
        assert.deepEqual(calls.map((r) => r.tag), expected.map((e) => e.tag), what);
        calls.forEach((record, i) => checkRecord(record, expected[i], `${what}: ${record.tag}`));
      });
      const layer = expected.find((e) => e.tag === "tp.allreduce.fwd.layer0.attn")!;
      assert.equal(layer.algorithm, algorithm);
      assert.equal(layer.bytes, algorithm === "direct" ? F32 * (tp - 1) * Nh : (F32 * 2 * (tp - 1) * Nh) / tp);
    }
  });
}
