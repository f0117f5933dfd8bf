// Megatron tensor parallelism. The shards: shapes and sub-parameters of every parameter of the tiny
// model at tp 1, 2 and 4 (kv heads replicated at 4), refusals that name the numbers, vocabulary
// padding, slicing and consolidating back exactly, and a factory whose pieces are the seeded full
// values' slices bit for bit. The layers, on 1, 2 and 4 CPU ranks and on the tp pairs of a dp 2 × tp 2
// mesh: the Megatron MLP block, the same block under Megatron sequence parallelism, and the
// vocabulary-parallel embedding and cross-entropy (also with the embedding sharded along T) give the single-device forward values and
// gradients (computed here on the full weights), and each cut sends exactly the collective the
// documented algorithm implies, under its tag.

import assert from "node:assert/strict";
import { launch } from "../src/comm/launch.ts";
import type { CollectiveRecord } from "../src/comm/ledger.ts";
import { headDim } from "../src/nn/config.ts";
import { type ParameterFactory, type ParameterInit, seededParameters } from "../src/nn/parameter.ts";
import { Phi3ForCausalLM } from "../src/nn/phi3.ts";
import { checkTensorParallelFits } from "../src/parallel/layout.ts";
import {
  shardValues,
  tensorParallelParameters,
  type TensorParallelShard,
  tensorParallelShards,
  unshardValues,
} from "../src/parallel/tp_shards.ts";
import { ShapeError } from "../src/tensor/errors.ts";
import * as ops from "../src/tensor/ops/index.ts";
import { assertExact } from "./assertions.ts";
import {
  DOWN,
  EMBED,
  GATE_UP,
  LM_HEAD,
  MLP_SHAPE,
  sequenceBlock,
  swiglu,
  tpConfig,
  type TpProblem,
  tpProblem,
  type TpRankArgs,
  type TpRankResult,
  VOCAB_SHAPE,
} from "./fixtures/tp_rank.ts";
import { assertClose, cpuDevice, randomValues, readF32 } from "./helpers.ts";

const ENTRY = new URL("./fixtures/tp_rank.ts", import.meta.url).href;
const TINY = tpConfig(96);

/** Every parameter of the model: name, full shape and init, in Hugging Face order. */
function modelParameters(config = TINY): { name: string; shape: number[]; init: ParameterInit }[] {
  const found: { name: string; shape: number[]; init: ParameterInit }[] = [];
  const record: ParameterFactory = (name, shape, init) => (found.push({ name, shape: [...shape], init }), null);
  new Phi3ForCausalLM(null as never, config, { parameters: record });
  return found;
}

Deno.test("tp shards: shapes and sub-parameters of the tiny model at tp 1, 2 and 4", () => {
  const D = headDim(TINY);
  for (const tp of [1, 2, 4]) {
    for (let r = 0; r < tp; r++) {
      const shards = tensorParallelShards(TINY, tp, r);
      assert.deepEqual([...shards.keys()], modelParameters().map((p) => p.name), "every parameter, in order");
      for (const { name, shape } of modelParameters()) {
        const shard = shards.get(name)!;
        assert.deepEqual(shard.fullShape, shape, name);
        assert.equal(shard.index, r);
        assert.equal(shard.parts, tp);
        const layer = name.split(".").at(-2)!;
        const rules: Record<string, Partial<TensorParallelShard>> = {
          embed_tokens: { kind: "vocab", dim: 0, shape: [96 / tp, 64], paddedSize: 96 },
          lm_head: { kind: "vocab", dim: 0, shape: [96 / tp, 64], paddedSize: 96 },
          qkv_proj: { kind: "column", dim: 0, shape: [(4 / tp + 2 * Math.max(1, 2 / tp)) * D, 64] },
          gate_up_proj: { kind: "column", dim: 0, shape: [384 / tp, 64] },
          o_proj: { kind: "row", dim: 1, shape: [64, 64 / tp] },
          down_proj: { kind: "row", dim: 1, shape: [64, 192 / tp] },
        };
        const expected = rules[layer] ?? { kind: "replicated", dim: 0, shape: [64] };
        for (const [key, value] of Object.entries(expected)) {
          assert.deepEqual(shard[key as keyof TensorParallelShard], value, `${name} tp ${tp} rank ${r}: ${key}`);
        }
      }
      const qkv = shards.get("model.layers.1.self_attn.qkv_proj.weight")!;
      const qRows = (4 / tp) * D;
      const kvRows = Math.max(1, 2 / tp) * D;
      const replicas = tp > 2 ? tp / 2 : 1;
      assert.deepEqual(qkv.subParams, [
        { name: "q", fullStart: 0, fullRows: 4 * D, localStart: 0, localRows: qRows, replicas: 1 },
        { name: "k", fullStart: 4 * D, fullRows: 2 * D, localStart: qRows, localRows: kvRows, replicas },
        { name: "v", fullStart: 6 * D, fullRows: 2 * D, localStart: qRows + kvRows, localRows: kvRows, replicas },
      ], `qkv tp ${tp} rank ${r}`);
      assert.deepEqual(shards.get("model.layers.0.mlp.gate_up_proj.weight")!.subParams, [
        { name: "gate", fullStart: 0, fullRows: 192, localStart: 0, localRows: 192 / tp, replicas: 1 },
        { name: "up", fullStart: 192, fullRows: 192, localStart: 192 / tp, localRows: 192 / tp, replicas: 1 },
      ]);
    }
  }
});

Deno.test("tp shards: a layout the model cannot take is refused, naming the numbers", () => {
  const refuses = (config: typeof TINY, tp: number, pattern: RegExp) =>
    assert.throws(() => tensorParallelShards(config, tp, 0), (e) => e instanceof RangeError && pattern.test(e.message));
  refuses(TINY, 3, /4 attention heads do not split evenly over tp 3 \(4 % 3 = 1\)/);
  refuses(
    { ...TINY, numHeads: 12, numKvHeads: 4, hiddenSize: 96 },
    6,
    /tp 6 is more than the 4 key\/value heads but not a multiple of them \(6 % 4 = 2\)/,
  );
  refuses(
    { ...TINY, numHeads: 12, numKvHeads: 6, hiddenSize: 96 },
    4,
    /6 key\/value heads do not split evenly over tp 4 \(6 % 4 = 2\)/,
  );
  refuses(
    { ...TINY, intermediateSize: 190 },
    4,
    /an MLP width of 190 does not split evenly over tp 4 \(190 % 4 = 2\)/,
  );
  refuses(TINY, 0, /tp must be an integer ≥ 1, got 0/);
  assert.throws(() => tensorParallelShards(TINY, 2, 2), /tp rank must be an integer in \[0, 2\), got 2/);
  checkTensorParallelFits({ ...TINY, numHeads: 8, numKvHeads: 2, hiddenSize: 128, intermediateSize: 64 }, 8);
});

/** Which full rows (column, vocab) or columns (row) rank r holds: the rule, written out independently. */
function heldIndices(kind: string, tp: number, r: number, config: typeof TINY): number[] {
  const D = headDim(config);
  const range = (start: number, count: number) => Array.from({ length: count }, (_, i) => start + i);
  const { numHeads: Hq, numKvHeads: Hkv, intermediateSize: I, vocabSize: V, hiddenSize: h } = config;
  switch (kind) {
    case "qkv": {
      const kvHeads = tp <= Hkv ? range(r * Hkv / tp, Hkv / tp) : [Math.floor(r * Hkv / tp)];
      const kv = kvHeads.flatMap((head) => range(head * D, D));
      return [
        ...range(r * (Hq / tp) * D, (Hq / tp) * D),
        ...kv.map((row) => Hq * D + row),
        ...kv.map((row) => (Hq + Hkv) * D + row),
      ];
    }
    case "gate_up":
      return [...range(r * I / tp, I / tp), ...range(I + r * I / tp, I / tp)];
    case "vocab":
      return range(r * Math.ceil(V / tp), Math.ceil(V / tp));
    case "o_proj":
      return range(r * h / tp, h / tp);
    default:
      return range(r * I / tp, I / tp);
  }
}

Deno.test("tp shards: slicing follows the split rules and consolidating gives the full value back exactly", () => {
  for (const [config, tp] of [[TINY, 1], [TINY, 2], [TINY, 4], [tpConfig(97), 2], [tpConfig(9), 4]] as const) {
    const byRank = Array.from({ length: tp }, (_, r) => tensorParallelShards(config, tp, r));
    for (const { name, shape } of modelParameters(config)) {
      const full = randomValues(shape.reduce((a, b) => a * b, 1), name.length + 13 * tp);
      const shards = byRank.map((shards) => shards.get(name)!);
      const pieces = shards.map((shard) => shardValues(full, shard));
      const [rows, cols] = shape;
      const kind = name.includes("qkv")
        ? "qkv"
        : name.includes("gate_up")
        ? "gate_up"
        : name.includes("o_proj")
        ? "o_proj"
        : name.includes("down_proj")
        ? "down_proj"
        : shards[0].kind;
      pieces.forEach((piece, r) => {
        const label = `${name} tp ${tp} rank ${r}`;
        if (kind === "replicated") return assertExact(piece, full, label);
        const held = heldIndices(kind, tp, r, config);
        const expected = new Float32Array(piece.length);
        if (kind === "o_proj" || kind === "down_proj") {
          for (let i = 0; i < rows; i++) held.forEach((c, j) => (expected[i * held.length + j] = full[i * cols + c]));
        } else {
          held.forEach((row, j) => row < rows && expected.set(full.subarray(row * cols, (row + 1) * cols), j * cols));
        }
        assertExact(piece, expected, label);
      });
      assertExact(unshardValues(pieces, shards), full, `${name} tp ${tp} round trip`);
    }
  }
  // Vocabulary 97 at tp 2 pads to 98: rank 1 holds rows 49..97, the last of them padding.
  const lmHead = tensorParallelShards(tpConfig(97), 2, 1).get("lm_head.weight")!;
  assert.deepEqual([lmHead.paddedSize, lmHead.shape], [98, [49, 64]]);
  // Replicated kv heads are taken from their first holder: changing a later holder's copy changes nothing.
  const name = "model.layers.0.self_attn.qkv_proj.weight";
  const shards = Array.from({ length: 4 }, (_, r) => tensorParallelShards(TINY, 4, r).get(name)!);
  const full = randomValues(shards[0].fullShape[0] * 64, 5);
  const pieces = shards.map((shard) => shardValues(full, shard));
  pieces[1].fill(7, 16 * 64);
  assertExact(unshardValues(pieces, shards), full, "kv rows from ranks 0 and 2");
  assert.throws(() => unshardValues(pieces.slice(1), shards.slice(1)), /shard 0 \(column 1 of 4.*as tp rank 0 of 3/);
  assert.throws(
    () => shardValues(full.subarray(1), shards[0]),
    (e) => e instanceof ShapeError && /has 8191 values, but its shape \[128, 64\] needs 8192/.test(e.message),
  );
});

Deno.test("tp shards: the factory's pieces are slices of seededParameters' full values, bit for bit", async () => {
  const device = await cpuDevice();
  const seed = 23;
  const seeded = seededParameters(device, seed);
  for (const [config, tp] of [[tpConfig(97), 2], [TINY, 4]] as const) {
    for (let r = 0; r < tp; r++) {
      const shards = tensorParallelShards(config, tp, r);
      const factory = tensorParallelParameters(device, seed, config, tp, r);
      for (const { name, shape, init } of modelParameters(config)) {
        const fullTensor = seeded(name, shape, init)!;
        const piece = factory(name, shards.get(name)!.shape, init)!;
        assert.equal(piece.requiresGrad, true);
        assertExact(
          await readF32(piece),
          shardValues(await readF32(fullTensor), shards.get(name)!),
          `${name} tp ${tp} rank ${r}`,
        );
        fullTensor.dispose();
        piece.dispose();
      }
    }
  }
  const factory = tensorParallelParameters(device, seed, TINY, 2, 1);
  assert.throws(
    () => factory("model.layers.0.mlp.down_proj.weight", [64, 192], "normal"),
    (e) =>
      e instanceof ShapeError &&
      /declared \[64, 192\], but tp rank 1 of 2 holds \[64, 96\] of its full \[64, 192\]/.test(e.message),
  );
  assert.throws(
    () => factory("model.layers.9.mlp.down_proj.weight", [64, 96], "normal"),
    /model.layers.9.mlp.down_proj.weight is not a parameter/,
  );
});

/** The single-device forward and gradients of the three problems, on the full weights. */
async function reference(problem: TpProblem, vocabSize: number) {
  const device = await cpuDevice();
  const h = TINY.hiddenSize;
  const I = TINY.intermediateSize;
  const shape = [MLP_SHAPE.batch, MLP_SHAPE.seq, h];
  const leaf = (values: Float32Array, shape: number[]) => device.tensor(values, shape, { requiresGrad: true });
  const [x, gateUp, down] = [leaf(problem.x, shape), leaf(problem.gateUp, [2 * I, h]), leaf(problem.down, [h, I])];
  const y = swiglu(x, gateUp, down);
  await ops.sum(ops.mul(y, device.tensor(problem.upstream, shape))).backward();
  const mlp = {
    y: await readF32(y),
    xGrad: await readF32(x.grad!),
    gateUpGrad: await readF32(gateUp.grad!),
    downGrad: await readF32(down.grad!),
  };

  const [embed, lmHead] = [leaf(problem.embed, [vocabSize, h]), leaf(problem.lmHead, [vocabSize, h])];
  const embedded = ops.embedding(embed, problem.ids);
  const loss = ops.crossEntropy(ops.matmul(embedded, lmHead, { transB: true }), problem.targets);
  const lossValue = (await readF32(loss))[0];
  await loss.backward();
  const vocab = {
    loss: lossValue,
    embedded: await readF32(embedded),
    embedGrad: await readF32(embed.grad!),
    lmHeadGrad: await readF32(lmHead.grad!),
  };
  return { mlp, vocab };
}

/** Elements n split as evenly as possible, the first (n mod parts) one larger: the documented default split. */
function chunk(n: number, parts: number, k: number): number {
  return Math.floor(n / parts) + (k % parts < n % parts ? 1 : 0);
}

const INLINE_BYTES = 16384;

/** Algorithm and bytes rank p of n sends in a collective of `elements` f32 values, per comm_api.md. */
function expectedTraffic(kind: string, elements: number, n: number, p: number): { algorithm: string; bytes: number } {
  if (n === 1) return { algorithm: "local", bytes: 0 };
  const inline = elements * 4 <= INLINE_BYTES;
  switch (kind) {
    case "allReduce":
      return inline
        ? { algorithm: "direct", bytes: 4 * (n - 1) * elements }
        : { algorithm: "ring", bytes: 4 * (2 * elements - chunk(elements, n, p) - chunk(elements, n, p + 1)) };
    case "reduceScatter":
      return { algorithm: inline ? "direct" : "ring", bytes: 4 * (elements - chunk(elements, n, p)) };
    default: // allGather of equal blocks: each block reaches the n − 1 others, straight or round the ring
      return { algorithm: inline ? "direct" : "ring", bytes: 4 * (n - 1) * elements };
  }
}

async function checkLayers(dp: number, tp: number, vocabSize: number): Promise<void> {
  const problem = tpProblem(vocabSize);
  const expected = await reference(problem, vocabSize);
  const config = tpConfig(vocabSize);
  const args: TpRankArgs = { dp, tp, vocabSize };
  const results = await launch<TpRankResult>({ ranks: dp * tp, entry: ENTRY, args, backend: "cpu" });
  const shape = [MLP_SHAPE.batch, MLP_SHAPE.seq, config.hiddenSize];
  const N = VOCAB_SHAPE.batch * VOCAB_SHAPE.seq;
  const activations = shape.reduce((a, b) => a * b, 1);
  const close = (actual: Float32Array, wanted: Float32Array, what: string) => assertClose(actual, wanted, 1e-5, 1e-5, what);

  const heldTargets = new Set<number>();
  for (const { rank, value } of results) {
    const r = value.tpRank;
    assert.equal(r, rank % tp, `rank ${rank}: tp varies fastest`);
    assert.deepEqual(value.tpGroup, Array.from({ length: tp }, (_, i) => rank - r + i));
    const shards = tensorParallelShards(config, tp, r);
    const slice = (values: Float32Array, name: string) => shardValues(values, shards.get(name)!);
    const at = `rank ${rank} (tp rank ${r} of ${tp})`;

    close(value.mlp.y, expected.mlp.y, `${at} mlp y`);
    close(value.mlp.xGrad, expected.mlp.xGrad, `${at} mlp x.grad`);
    close(value.mlp.gateUpGrad, slice(expected.mlp.gateUpGrad, GATE_UP), `${at} mlp gate_up grad`);
    close(value.mlp.downGrad, slice(expected.mlp.downGrad, DOWN), `${at} mlp down grad`);

    assertExact(value.sequence.gathered, problem.x, `${at} sequence gathered`);
    close(value.sequence.y, sequenceBlock(expected.mlp.y, shape, r, tp), `${at} sequence y`);
    close(value.sequence.xGrad, sequenceBlock(expected.mlp.xGrad, shape, r, tp), `${at} sequence x.grad`);
    close(value.sequence.gateUpGrad, slice(expected.mlp.gateUpGrad, GATE_UP), `${at} sequence gate_up grad`);
    close(value.sequence.downGrad, slice(expected.mlp.downGrad, DOWN), `${at} sequence down grad`);

    const tokens = [VOCAB_SHAPE.batch, VOCAB_SHAPE.seq, config.hiddenSize];
    for (const [variant, result] of [["vocab", value.vocab], ["vocab sequence-parallel", value.vocabSequence]] as const) {
      const loss = expected.vocab.loss;
      assert.ok(Math.abs(result.loss - loss) <= 1e-5 * loss, `${at} ${variant} loss ${result.loss} vs ${loss}`);
      const embedded = variant === "vocab" ? expected.vocab.embedded : sequenceBlock(expected.vocab.embedded, tokens, r, tp);
      close(result.embedded, embedded, `${at} ${variant} embedding`);
      close(result.embedGrad, slice(expected.vocab.embedGrad, EMBED), `${at} ${variant} embed_tokens grad (padding rows 0)`);
      close(result.lmHeadGrad, slice(expected.vocab.lmHeadGrad, LM_HEAD), `${at} ${variant} lm_head grad (padding rows 0)`);
    }
    assert.equal(value.bytesLeft, 0, `${at}: device bytes left after the tapes and tensors were freed`);
    const rows = shards.get(LM_HEAD)!.shape[0];
    problem.targets.forEach((t) => Math.floor(t / rows) === r && heldTargets.add(r));

    // Each cut is one collective of the activation under its tag; nothing else was sent.
    const calls: [string, string, number][] = [
      ["tp.allreduce.bwd.mlp", "allReduce", activations],
      ["tp.allreduce.fwd.mlp", "allReduce", activations],
      ["tp.allgather.fwd.sp_mlp", "allGather", activations / tp],
      ["tp.reducescatter.fwd.sp_mlp", "reduceScatter", activations],
      ["tp.allgather.bwd.sp_mlp", "allGather", activations / tp],
      ["tp.reducescatter.bwd.sp_mlp", "reduceScatter", activations],
      ["tp.allreduce.fwd.embed", "allReduce", N * config.hiddenSize],
      ["tp.allreduce.bwd.lm_head", "allReduce", N * config.hiddenSize],
      ["tp.allreduce.fwd.loss.max", "allReduce", N],
      ["tp.allreduce.fwd.loss.sumexp_target", "allReduce", 2 * N],
      ["tp.reducescatter.fwd.embed_sp", "reduceScatter", N * config.hiddenSize],
      ["tp.allgather.bwd.embed_sp", "allGather", N * config.hiddenSize / tp],
      ["tp.allgather.fwd.lm_head_sp", "allGather", N * config.hiddenSize / tp],
      ["tp.reducescatter.bwd.lm_head_sp", "reduceScatter", N * config.hiddenSize],
      ["tp.allreduce.fwd.loss_sp.max", "allReduce", N],
      ["tp.allreduce.fwd.loss_sp.sumexp_target", "allReduce", 2 * N],
    ];
    assert.deepEqual(
      value.collectives.map((c) => c.tag).sort(),
      calls.map(([tag]) => tag).sort(),
      `${at}: the tags of every call`,
    );
    for (const [tag, kind, elements] of calls) {
      const record = value.collectives.find((c: CollectiveRecord) => c.tag === tag)!;
      const traffic = expectedTraffic(kind, elements, tp, r);
      assert.deepEqual(
        { kind: record.kind, elements: record.elements, group: record.group, algorithm: record.algorithm, bytes: record.bytes },
        { kind, elements, group: value.tpGroup, ...traffic },
        `${at} ${tag}`,
      );
    }
  }
  assert.equal(
    heldTargets.size,
    Math.min(tp, Math.ceil(vocabSize / Math.ceil(vocabSize / tp))),
    "targets fall in every rank's real vocabulary rows",
  );
}

Deno.test("tp layers: one rank (tp 1) gives the single-device values", () => checkLayers(1, 1, 96));
Deno.test("tp layers: tp 2 with vocabulary 97 padded to 98", () => checkLayers(1, 2, 97));
Deno.test("tp layers: tp 4 with vocabulary 9 padded to 12 (rank 3 holds padding only)", () => checkLayers(1, 4, 9));
Deno.test("tp layers: the tp pairs of a dp 2 × tp 2 mesh", () => checkLayers(2, 2, 97));
