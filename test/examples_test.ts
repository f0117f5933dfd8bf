// The examples in examples/, run as a user runs them (`deno run -A examples/<name>.ts … --json`),
// with the smallest arguments that still show their point. Each prints its table and then one JSON
// object with the same figures; these tests hold those figures to a reference worked out here: the
// collectives' byte formulas (ring and direct, as the comm docs give them), the ZeRO paper's bytes
// per rank, Ulysses' and Megatron-SP's exchanges counted head by head and collective by
// collective, ZeRO++'s inter-node volume message by message, and, for a resumed run, the run that
// never stopped.

import assert from "node:assert/strict";
import { headDim, paramCount, presetConfig } from "../mod.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const TINY = presetConfig("tiny");
const F32 = 4;
/** The largest payload that travels direct, each sender to every receiver; larger ones go round the ring. */
const INLINE_BYTES = 16 * 1024;

interface ExampleRun {
  code: number;
  stdout: string;
  stderr: string;
}

async function runExample(name: string, ...args: string[]): Promise<ExampleRun> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `examples/${name}.ts`, ...args],
    cwd: ROOT,
    env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

/** Runs an example with --json; checks that it succeeded and printed its table; returns its figures. */
async function figuresOf<T>(name: string, ...args: string[]): Promise<T> {
  const { code, stdout, stderr } = await runExample(name, ...args, "--json");
  assert.equal(code, 0, `${name} ${args.join(" ")} exited with ${code}:\n${stderr}`);
  const lines = stdout.trimEnd().split("\n");
  assert.ok(lines.some((line) => /^-+( +-+)+$/.test(line)), `${name} prints a table:\n${stdout}`);
  return JSON.parse(lines.at(-1)!) as T;
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

Deno.test("examples: allreduce_bytes sends 2(N−1)/N·B per rank on the ring and (N−1)·B direct", async () => {
  interface Row {
    ranks: number;
    floats: number;
    algorithm: string;
    sentPerRank: number[];
    sentByAllRanks: number;
    sumCorrect: boolean;
  }
  const { rows } = await figuresOf<{ rows: Row[] }>("allreduce_bytes", "--ranks", "2,3", "--floats", "1536,6144");
  assert.equal(rows.length, 4);
  for (const row of rows) {
    const what = `N ${row.ranks}, ${row.floats} floats`;
    const bytes = F32 * row.floats;
    const ring = bytes > INLINE_BYTES;
    assert.equal(row.algorithm, ring ? "ring" : "direct", what);
    // Each chunk of the ring is m/N floats (m divides by N here): N−1 reduce-scatter and N−1 all-gather steps.
    const perRank = ring ? 2 * (row.ranks - 1) * (bytes / row.ranks) : (row.ranks - 1) * bytes;
    assert.deepEqual(row.sentPerRank, new Array(row.ranks).fill(perRank), what);
    assert.equal(row.sentByAllRanks, row.ranks * perRank, `${what}: the merged ledger`);
    assert.ok(row.sumCorrect, `${what}: every element is 1 + … + N`);
  }
});

Deno.test("examples: zero_memory's ranks hold the ZeRO paper's bytes for DDP and ZeRO-1, 2, 3", async () => {
  interface Memory {
    parameters: number;
    gradients: number;
    optimizer: number;
    gathered: number;
  }
  const dp = 2;
  const { psi, stages } = await figuresOf<{ psi: number; stages: { zero: number; everyRank: Memory[] }[] }>(
    "zero_memory",
    "--dp",
    String(dp),
  );
  const P = paramCount(TINY);
  assert.equal(psi, P);
  assert.equal(P % dp, 0, "no padding at this dp");
  // f32 values, gradients and Adam's two moments; stages 1 and 2 also keep an fp32 master of their partition.
  const expected = [
    { parameters: 4 * P, gradients: 4 * P, optimizer: 8 * P },
    { parameters: 4 * P, gradients: 4 * P + (4 * P) / dp, optimizer: (12 * P) / dp },
    { parameters: 4 * P, gradients: (4 * P) / dp, optimizer: (12 * P) / dp },
    { parameters: (4 * P) / dp, gradients: (4 * P) / dp, optimizer: (8 * P) / dp },
  ];
  assert.deepEqual(stages.map((stage) => stage.zero), [0, 1, 2, 3]);
  for (const { zero, everyRank } of stages) {
    assert.equal(everyRank.length, dp);
    for (const { parameters, gradients, optimizer, gathered } of everyRank) {
      assert.deepEqual({ parameters, gradients, optimizer }, expected[zero], `ZeRO stage ${zero}`);
      assert.equal(gathered > 0, zero === 3, `ZeRO stage ${zero}: only ZeRO-3 gathers blocks`);
    }
  }
});

Deno.test("examples: tensor_parallel_fg all-reduces N·h floats once forward (g) and once backward (f)", async () => {
  interface Call {
    phase: string;
    kind: string;
    tag: string;
    algorithm: string;
    floats: number;
    bytesSent: number;
  }
  const [tp, tokens, hidden] = [3, 192, 32];
  const { ranks } = await figuresOf<{ ranks: { ledger: Call[]; outputDifference: number; gradientDifference: number }[] }>(
    "tensor_parallel_fg",
    ...["--tp", String(tp), "--tokens", String(tokens), "--hidden", String(hidden), "--inner", "96"],
  );
  const Nh = tokens * hidden;
  assert.ok(F32 * Nh > INLINE_BYTES, "large enough for the ring");
  const ringBytes = 2 * (tp - 1) * ((F32 * Nh) / tp);
  assert.equal(ranks.length, tp);
  for (const [rank, { ledger, outputDifference, gradientDifference }] of ranks.entries()) {
    assert.deepEqual(ledger, [
      { phase: "forward", kind: "allReduce", tag: "g.forward", algorithm: "ring", floats: Nh, bytesSent: ringBytes },
      { phase: "backward", kind: "allReduce", tag: "f.backward", algorithm: "ring", floats: Nh, bytesSent: ringBytes },
    ], `rank ${rank}`);
    assert.ok(outputDifference < 1e-5, `rank ${rank}: y differs by ${outputDifference}`);
    assert.ok(gradientDifference < 1e-5, `rank ${rank}: dx differs by ${gradientDifference}`);
  }
});

Deno.test("examples: sequence_parallel_bytes counts Ulysses' all-to-alls and Megatron-SP's gathers exactly", async () => {
  interface Row {
    sp: number;
    seq: number;
    tokens: number;
    ulysses: { exchanges: number; step: number };
    megatron: { exchanges: number; step: number };
  }
  const batch = 2;
  const { rows } = await figuresOf<{ rows: Row[] }>("sequence_parallel_bytes", "--sp", "2", "--seq", "16,32", "--batch", "2");
  assert.deepEqual(rows.map((row) => [row.sp, row.seq]), [[2, 16], [2, 32]]);
  const { numLayers: L, hiddenSize: h, numHeads: Hq, numKvHeads: Hkv } = TINY;
  for (const { sp: S, seq, tokens: N, ulysses, megatron } of rows) {
    assert.equal(N, batch * seq);
    // Ulysses: each rank holds Hq/S q heads and Hkv/S kv heads (S divides both here). Per layer and
    // direction it sends each of the S − 1 others their q, k and v heads of its N/S tokens, and back
    // their output heads: blocks of (N/S)·d floats.
    assert.equal(Hkv % S, 0);
    const block = F32 * (N / S) * headDim(TINY);
    const perPeer = block * (Hq / S + 2 * (Hkv / S)) + block * (Hq / S);
    assert.equal(ulysses.exchanges, 2 * L * (S - 1) * perPeer, `Ulysses sp ${S}, seq ${seq}`);
    // Megatron-SP: per layer an all-gather and a reduce-scatter around attention and around the MLP,
    // forward and backward, and the embedding's and the head's pair: (S−1)/S of N·h floats each.
    const collectives = 8 * L + 4;
    assert.equal(megatron.exchanges, (collectives * F32 * (S - 1) * N * h) / S, `Megatron-SP sp ${S}, seq ${seq}`);
    assert.ok(ulysses.step > ulysses.exchanges && megatron.step > megatron.exchanges, "the step also averages gradients");
  }
  assert.equal(rows[1].ulysses.exchanges, 2 * rows[0].ulysses.exchanges, "twice the sequence, twice the bytes");
});

/** ZeRO-3's flat groups of the tiny model (embed_tokens, each decoder layer, the head), from its shape. */
function zero3Groups(): number[] {
  const { vocabSize: V, hiddenSize: h, numHeads: Hq, numKvHeads: Hkv, intermediateSize: I } = TINY;
  const D = headDim(TINY);
  const layer = (Hq + 2 * Hkv) * D * h + h * Hq * D + 2 * I * h + h * I + 2 * h;
  return [V * h, ...new Array<number>(TINY.numLayers).fill(layer), h + V * h];
}

/**
 * Inter-node bytes of one step's collective on W ranks over `nodes` nodes (consecutive ranks
 * together), moving pieces of `piece` bytes. A payload of at most 16 KiB goes direct: every sender
 * sends its piece to each of the W − W/nodes ranks on other nodes. A larger one goes round the ring:
 * each rank sends its W − 1 pieces to its successor, and `nodes` of the successors are on another node.
 */
function crossing(W: number, nodes: number, piece: number, payload = piece): number {
  return payload <= INLINE_BYTES ? W * (W - W / nodes) * piece : nodes * (W - 1) * piece;
}

/** Bytes of n elements quantized to `bits` in whole words, with one f32 scale per block of 2048. */
function quantized(n: number, bits: number): number {
  return 4 * Math.ceil((n * bits) / 32) + 4 * Math.ceil(n / 2048);
}

function expectedInter(W: number, nodes: number, zeropp: boolean): { fwd: number; bwd: number; grads: number; other: number } {
  const expected = { fwd: 0, bwd: 0, grads: 0, other: 0 };
  for (const numel of zero3Groups()) {
    const c = Math.ceil(numel / W); // each rank's part of the group, padded
    const gathered = zeropp ? quantized(c, 8) : F32 * c;
    expected.fwd += crossing(W, nodes, gathered);
    expected.bwd += zeropp ? 0 : crossing(W, nodes, gathered); // hpZ gathers the backward inside the node
    // qgZ sends each peer on another node one INT4 chunk; a reduce-scatter's payload is the whole
    // group, of which each rank sends chunks.
    expected.grads += zeropp ? W * (nodes - 1) * quantized(c, 4) : crossing(W, nodes, F32 * c, F32 * c * W);
  }
  expected.other = 2 * crossing(W, nodes, F32); // the gradient norm's and the loss's all-reduces
  return expected;
}

Deno.test("examples: zeropp_volume's inter-node bytes per step are ZeRO-3's and ZeRO++'s, message by message", async () => {
  interface Row {
    variant: string;
    inter: { fwd: number; bwd: number; grads: number; other: number };
    interTotal: number;
  }
  const [dp, nodes] = [4, 2];
  const { rows, M } = await figuresOf<{ rows: Row[]; M: number }>("zeropp_volume", "--variants", "zero3,zeropp");
  assert.equal(M, 2 * paramCount(TINY), "M is the model in f16");
  assert.deepEqual(rows.map((row) => row.variant), ["zero3", "zeropp"]);
  const [zero3, zeropp] = rows;
  assert.deepEqual(zero3.inter, expectedInter(dp, nodes, false), "ZeRO-3");
  assert.deepEqual(zeropp.inter, expectedInter(dp, nodes, true), "ZeRO++");
  for (const row of rows) {
    assert.equal(row.interTotal, sum(Object.values(row.inter)), `${row.variant}: the step's inter-node bytes`);
  }
  assert.ok(zero3.interTotal > 3 * zeropp.interTotal, "ZeRO++ crosses nodes with under a third of ZeRO-3's bytes");
});

Deno.test("examples: reshard_resume's resumed run goes on as the uninterrupted run did", async () => {
  const { rows, saveAt } = await figuresOf<
    { rows: { step: number; uninterrupted: number; resumed: number | null }[]; saveAt: number }
  >(
    "reshard_resume",
    ...["--from", "dp2,zero3", "--to", "tp2", "--steps", "3", "--save-at", "2"],
  );
  assert.equal(saveAt, 2);
  assert.deepEqual(rows.map((row) => row.step), [1, 2, 3]);
  for (const { step, uninterrupted, resumed } of rows) {
    if (step <= saveAt) {
      assert.equal(resumed, null, `step ${step} comes before the checkpoint`);
      continue;
    }
    assert.ok(
      resumed !== null && Math.abs(resumed - uninterrupted) <= 1e-4 * uninterrupted,
      `step ${step}: ${resumed} vs ${uninterrupted}`,
    );
  }
  assert.ok(rows[2].uninterrupted < rows[0].uninterrupted, "the loss falls");
});

Deno.test("examples: a bad flag stops an example with exit code 2, naming the value", async () => {
  const cases = [
    { name: "zeropp_volume", args: ["--variants", "zero3,zero4"], names: '"zero4"' },
    { name: "allreduce_bytes", args: ["--ranks", "2,x"], names: '"2,x"' },
    { name: "reshard_resume", args: ["--from", "dp2,pp2"], names: '"pp2"' },
    { name: "zero_memory", args: ["--stages", "3"], names: "--stages" },
  ];
  for (const { name, args, names } of cases) {
    const { code, stderr } = await runExample(name, ...args);
    assert.equal(code, 2, `${name} ${args.join(" ")}: ${stderr}`);
    assert.ok(stderr.startsWith(`${name}.ts: `) && stderr.includes(names), `${name} ${args.join(" ")}: ${stderr}`);
  }
});
