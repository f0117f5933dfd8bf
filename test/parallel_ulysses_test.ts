// Ulysses sequence-parallel attention equals single-device attention: on sp 1, 2, 3 and 4 CPU ranks
// (kv heads split, replicated, shared unevenly and expanded; also sp groups inside a dp × sp mesh),
// each rank's output and qkv gradient match, on its tokens, the full sequence's split → rope →
// causal grouped-query attention → merge computed here. Every all-to-all sends the bytes worked out
// here from hand-written head assignments; the head rule gives valid grouped-query attention on
// every rank for many shapes; bad sequences, heads and inputs are refused with their numbers.

import assert from "node:assert/strict";
import { launch } from "../src/comm/launch.ts";
import type { AttentionHeads } from "../src/nn/attention.ts";
import { tokensPerRank } from "../src/parallel/layout.ts";
import { ulyssesHeads, ulyssesVolume } from "../src/parallel/ulysses.ts";
import * as ops from "../src/tensor/ops/index.ts";
import { randnValues } from "../src/tensor/random.ts";
import type { Tensor } from "../src/tensor/tensor.ts";
import { tokenSlice, type UlyssesRankArgs, type UlyssesRankResult } from "./fixtures/ulysses_rank.ts";
import { assertClose, cpuDevice, disposeAll, readF32 } from "./helpers.ts";

const ENTRY = new URL("./fixtures/ulysses_rank.ts", import.meta.url).href;

interface Case {
  name: string;
  sp: number;
  B: number;
  T: number;
  dims: AttentionHeads;
  /** Written by hand from the head rule: each rank's q heads and the kv head of each of its local kv heads. */
  q: number[][];
  kv: number[][];
  /** Data-parallel replicas around the sp groups (1 by default). */
  dp?: number;
}

const dims = (numHeads: number, numKvHeads: number, headDim: number): AttentionHeads => ({
  numHeads,
  numKvHeads,
  headDim,
  ropeTheta: 10000,
});

const CASES: Case[] = [
  { name: "sp 2, kv heads split", sp: 2, B: 2, T: 8, dims: dims(4, 2, 16), q: [[0, 1], [2, 3]], kv: [[0], [1]] },
  { name: "dp 2 × sp 2", sp: 2, dp: 2, B: 1, T: 4, dims: dims(4, 2, 8), q: [[0, 1], [2, 3]], kv: [[0], [1]] },
  {
    name: "sp 4, kv heads replicated",
    sp: 4,
    B: 2,
    T: 8,
    dims: dims(4, 2, 16),
    q: [[0], [1], [2], [3]],
    kv: [[0], [0], [1], [1]],
  },
  {
    name: "sp 4, uneven heads",
    sp: 4,
    B: 1,
    T: 8,
    dims: dims(6, 2, 8),
    q: [[0, 1], [2, 3], [4], [5]],
    kv: [[0], [0, 1], [1], [1]],
  },
  {
    name: "sp 3, expanded kv heads",
    sp: 3,
    B: 1,
    T: 12,
    dims: dims(8, 2, 8),
    q: [[0, 1, 2], [3, 4, 5], [6, 7]],
    kv: [[0], [0, 1, 1], [1]],
  },
  { name: "sp 2, one kv head", sp: 2, B: 2, T: 6, dims: dims(3, 1, 8), q: [[0, 1], [2]], kv: [[0], [0]] },
  { name: "sp 1", sp: 1, B: 2, T: 5, dims: dims(4, 2, 8), q: [[0, 1, 2, 3]], kv: [[0, 1]] },
];

/** The full sequence on one device: output [B, T, Hq·D] and the gradient of loss = Σ out · weights w.r.t. qkv. */
async function singleDevice(c: Case, seed: number): Promise<{ out: Float32Array; grad: Float32Array }> {
  const device = await cpuDevice();
  const { numHeads: H, numKvHeads: Hkv, headDim: D } = c.dims;
  const { B, T } = c;
  const qkv = device.tensor(randnValues(B * T * (H + 2 * Hkv) * D, seed), [B, T, (H + 2 * Hkv) * D], { requiresGrad: true });
  const weights = device.tensor(randnValues(B * T * H * D, seed + 1), [B, T, H * D]);
  const loss = ops.tidy(() => {
    const [q, k, v] = ops.split(qkv, [H * D, Hkv * D, Hkv * D], 2);
    const heads = (t: Tensor, n: number) => ops.permute(ops.reshape(t, [B, T, n, D]), [0, 2, 1, 3]);
    const rope = { theta: c.dims.ropeTheta };
    const o = ops.attention(ops.rope(heads(q, H), rope), ops.rope(heads(k, Hkv), rope), heads(v, Hkv), { causal: true });
    const out = ops.reshape(ops.permute(o, [0, 2, 1, 3]), [B, T, H * D]);
    return [ops.keep(out), ops.sum(ops.mul(out, weights))];
  });
  await loss[1].backward();
  const result = { out: await readF32(loss[0]), grad: await readF32(qkv.grad!) };
  disposeAll(loss, weights, qkv.grad!, qkv);
  return result;
}

for (const [index, c] of CASES.entries()) {
  Deno.test(`ulysses: ${c.name} (Hq ${c.dims.numHeads}, Hkv ${c.dims.numKvHeads}) equals one device, sending the planned bytes`, async () => {
    const seed = 500 + 10 * index;
    const { numHeads: H, numKvHeads: Hkv, headDim: D } = c.dims;
    const assignment = ulyssesHeads(H, Hkv, c.sp);
    assert.deepEqual(assignment.q.map(([start, count]) => Array.from({ length: count }, (_, i) => start + i)), c.q);
    assert.deepEqual(assignment.kv, c.kv);

    const dp = c.dp ?? 1;
    const args: UlyssesRankArgs = { B: c.B, T: c.T, dims: c.dims, seed, dp };
    const results = await launch<UlyssesRankResult>({ ranks: dp * c.sp, entry: ENTRY, args, backend: "cpu" });
    const reference = await singleDevice(c, seed);
    const tokens = c.T / c.sp;
    const headBytes = 4 * c.B * tokens * D;
    const others = (rank: number) => c.q.map((_, r) => r).filter((r) => r !== rank);
    for (const { rank: worldRank, value } of results) {
      // Ranks form a [dp, sp] grid, sp varying fastest.
      const rank = worldRank % c.sp;
      const group = Array.from({ length: c.sp }, (_, i) => worldRank - rank + i);
      const first = rank * tokens;
      const what = `${c.name}, rank ${worldRank}`;
      assertClose(value.out, tokenSlice(reference.out, c.B, c.T, H * D, first, tokens), 1e-5, 1e-5, `${what}: output`);
      assertClose(
        value.grad,
        tokenSlice(reference.grad, c.B, c.T, (H + 2 * Hkv) * D, first, tokens),
        1e-5,
        1e-5,
        `${what}: qkv gradient`,
      );
      assert.equal(value.leakedBytes, 0, `${what}: device bytes left behind`);
      assert.match(value.shapeError, /^ShapeError: ulyssesAttention bad: qkv must be \[B, T\/sp, \d+\]/);

      // Forward, this rank sends every other rank that rank's q heads and its k and v heads for its
      // own tokens, then each other rank its output heads for that rank's tokens; backward the reverse.
      const expected = {
        "fwd.layer0.qkv": headBytes * others(rank).reduce((sum, r) => sum + c.q[r].length + 2 * c.kv[r].length, 0),
        "fwd.layer0.out": headBytes * (c.sp - 1) * c.q[rank].length,
        "bwd.layer0.qkv": headBytes * (c.sp - 1) * (c.q[rank].length + 2 * c.kv[rank].length),
        "bwd.layer0.out": headBytes * others(rank).reduce((sum, r) => sum + c.q[r].length, 0),
      };
      const ulysses = value.collectives.filter((record) => record.tag.startsWith("ulysses."));
      assert.deepEqual(
        ulysses.map((record) => record.tag).sort(),
        Object.keys(expected).map((key) => `ulysses.alltoall.${key}`).sort(),
      );
      for (const record of ulysses) {
        assert.equal(record.kind, "allToAll");
        assert.deepEqual(record.group, group);
        assert.equal(record.algorithm, c.sp === 1 ? "local" : "direct");
        assert.equal(
          record.bytes,
          expected[record.tag.slice("ulysses.alltoall.".length) as keyof typeof expected],
          `${what}: ${record.tag}`,
        );
      }
      assert.deepEqual(ulyssesVolume(c.B, c.T, c.dims, c.sp, rank), {
        qkvBytes: expected["fwd.layer0.qkv"],
        outBytes: expected["fwd.layer0.out"],
      });
    }
  });
}

Deno.test("ulysses: aligned splits send (S − 1)/S of the local q, k and v", () => {
  const [B, T, D] = [2, 64, 16];
  for (const [H, Hkv, sp] of [[4, 2, 2], [32, 8, 4], [32, 8, 8], [12, 4, 4]]) {
    const local = 4 * B * (T / sp) * (H + 2 * Hkv) * D;
    for (let rank = 0; rank < sp; rank++) {
      const volume = ulyssesVolume(B, T, dims(H, Hkv, D), sp, rank);
      assert.equal(volume.qkvBytes, (local * (sp - 1)) / sp, `Hq ${H} Hkv ${Hkv} sp ${sp}`);
      assert.equal(volume.outBytes, (4 * B * (T / sp) * H * D * (sp - 1)) / sp);
    }
  }
  // Replicated kv heads (sp a multiple of Hkv): every other rank gets Hq/S q heads and one k and v head.
  for (const [H, Hkv, sp] of [[4, 2, 4], [32, 8, 16], [8, 1, 4]]) {
    const volume = ulyssesVolume(B, T, dims(H, Hkv, D), sp, 0);
    assert.equal(volume.qkvBytes, 4 * B * (T / sp) * D * (sp - 1) * (H / sp + 2), `Hq ${H} Hkv ${Hkv} sp ${sp}`);
  }
});

Deno.test("ulysses: every rank's heads form valid grouped-query attention, kv heads minimal where the groups align", () => {
  for (let Hkv = 1; Hkv <= 6; Hkv++) {
    for (let group = 1; group <= 5; group++) {
      const H = Hkv * group;
      for (let sp = 1; sp <= H; sp++) {
        const a = ulyssesHeads(H, Hkv, sp);
        const what = `Hq ${H} Hkv ${Hkv} sp ${sp}`;
        let next = 0;
        for (let r = 0; r < sp; r++) {
          const [start, count] = a.q[r];
          assert.equal(start, next, `${what}: rank ${r} starts where rank ${r - 1} ended`);
          assert.ok(count === Math.ceil(H / sp) || count === Math.floor(H / sp), `${what}: rank ${r} has ${count} heads`);
          next += count;
          const local = a.kv[r].length;
          assert.equal(count % local, 0, `${what}: rank ${r}: ${count} q heads over ${local} kv heads`);
          for (let i = 0; i < count; i++) {
            assert.equal(
              a.kv[r][Math.floor(i / (count / local))],
              Math.floor((start + i) / group),
              `${what}: rank ${r} q head ${start + i}`,
            );
          }
          const distinct = new Set(a.kv[r]).size;
          assert.equal(a.expanded[r], distinct < local, `${what}: rank ${r} expanded flag`);
          if ((H % sp === 0 && Hkv % sp === 0) || (sp % Hkv === 0 && H % sp === 0)) {
            assert.equal(local, distinct, `${what}: rank ${r} repeats a kv head`);
          }
        }
        assert.equal(next, H, `${what}: the q heads are covered`);
      }
    }
  }
});

Deno.test("ulysses: sequences and heads that cannot be split are refused, naming the numbers", () => {
  const named = (...parts: RegExp[]) => (error: unknown) =>
    error instanceof RangeError && parts.every((p) => p.test(error.message));
  assert.throws(() => tokensPerRank(10, 4), named(/10 tokens/, /sp 4\b/));
  assert.throws(() => ulyssesVolume(1, 10, dims(4, 2, 8), 4, 0), named(/10 tokens/, /sp 4\b/));
  assert.throws(() => ulyssesHeads(2, 1, 4), named(/2 query heads/, /sp 4\b/));
  assert.throws(() => ulyssesHeads(6, 4, 2), named(/6 query heads/, /4 kv heads/));
  assert.throws(() => ulyssesHeads(4, 2, 0), named(/sp must be a positive integer, got 0/));
  assert.throws(() => ulyssesVolume(1, 8, dims(4, 2, 8), 2, 2), named(/rank 2/, /sp 2\b/));
  assert.equal(tokensPerRank(12, 4), 3);
});
