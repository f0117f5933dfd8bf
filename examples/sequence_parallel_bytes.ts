// Sequence parallelism: DeepSpeed-Ulysses against Megatron-SP, bytes per step as the sequence grows.
//
// Both split a batch of N tokens over S ranks along the sequence; they differ in what crosses.
//
//   Ulysses      before attention one all-to-all turns [N/S tokens, every head] into [N tokens,
//                H/S heads]; after it another turns the output back. A rank sends the other S − 1
//                ranks their heads of its own N/S tokens: (S−1)/S of its q, k, v and output. Per
//                layer, forward and backward alike:  4 · (N/S) · d · (S−1)/S · (2·Hq + 2·Hkv') bytes
//                (d the head size, Hkv' = max(Hkv, S): kv heads are repeated when S exceeds them).
//                With as many kv heads as q heads, 4Nh/S · (S−1)/S floats: the paper's 4Nh/S, falling with S.
//   Megatron-SP  the weights are split as tensor parallelism splits them, and the activations between
//                the tensor-parallel regions along the sequence: each region starts with an all-gather
//                and ends with a reduce-scatter of the full activations, (S−1)/S · N·h floats each, for
//                attention and MLP, forward and backward, plus the embedding and the head:
//                4 · (8L + 4) · (S−1)/S · N · h bytes per step, growing with N whatever S.
//
// The measured figures are the ledger's: bytes of the tags ulysses.* (Ulysses) and tp.allgather.* /
// tp.reducescatter.* (Megatron-SP) that all ranks sent in one training step, divided by S. The step
// total also counts the gradient all-reduces (Ulysses replicates the weights over its S ranks and
// averages their gradients; Megatron-SP only the norms').
//
// What to look for: both grow linearly with the sequence, and Megatron-SP sends several times what
// Ulysses sends, more so as S grows. Ulysses' share does not fall from S = 2 to 4 on this preset:
// each rank holds half the tokens, but its 2 kv heads must be repeated on 4 ranks, which costs what
// the smaller share saves (with S kv heads or more it would fall as (S−1)/S²). At these short
// sequences the step total is another story: Ulysses replicates the weights, so its gradient
// all-reduce dominates, and Megatron-SP's step is the cheaper one until the sequence is long.
//
//   deno run -A examples/sequence_parallel_bytes.ts [--sp 2,4] [--seq 32,64,128] [--batch 2] [--backend cpu] [--json]

import { headDim, presetConfig, type SpImpl, trainParallel } from "shardlab";
import { integer, integers, kib, printJson, printTable, readFlags, usageError } from "./cli.ts";

const { flags, json } = readFlags({ sp: "2,4", seq: "32,64,128", batch: "2", backend: "cpu" });
const sps = integers("sp", flags.sp, 2);
const seqs = integers("seq", flags.seq, 1);
const batch = integer("batch", flags.batch, 1);
const model = presetConfig("tiny"); // hidden 64, 2 layers, 4 query heads, 2 kv heads of 16
const { hiddenSize: h, numLayers: L, numHeads: Hq, numKvHeads: Hkv } = model;
const d = headDim(model);
for (const S of sps) {
  if (Hq % S !== 0) usageError(`--sp ${S}: the tiny preset's ${Hq} heads do not divide evenly over it`);
  for (const seq of seqs) if (seq % S !== 0) usageError(`--seq ${seq} does not divide among sp ${S} ranks`);
}

/** The formulas above, bytes per rank and step for N tokens on S ranks. */
function ulyssesFormula(N: number, S: number): number {
  return 2 * L * 4 * (N / S) * d * ((S - 1) / S) * (2 * Hq + 2 * Math.max(Hkv, S));
}
function megatronFormula(N: number, S: number): number {
  return 4 * (8 * L + 4) * ((S - 1) / S) * N * h;
}

/** One training step on sp S; the bytes per rank of the sequence-parallel exchanges, and of the whole step. */
async function measure(spImpl: SpImpl, S: number, seq: number): Promise<{ exchanges: number; step: number }> {
  const { history, ranks } = await trainParallel({
    preset: "tiny",
    steps: 1,
    batch,
    seq,
    lr: 1e-3,
    seed: 0,
    backend: flags.backend as "cpu" | "webgpu" | "auto",
    sp: S,
    spImpl,
  });
  const exchange = spImpl === "ulysses" ? /^ulysses\./ : /^tp\.(allgather|reducescatter)\./;
  const tags = Object.entries(ranks.traffic.byTag).filter(([tag]) => exchange.test(tag));
  return { exchanges: tags.reduce((sum, [, bytes]) => sum + bytes, 0) / S, step: history[0].commBytes.total / S };
}

const rows = [];
for (const S of sps) {
  for (const seq of seqs) {
    const N = batch * seq;
    const ulysses = await measure("ulysses", S, seq);
    const megatron = await measure("megatron", S, seq);
    rows.push({
      sp: S,
      seq,
      tokens: N,
      ulysses,
      ulyssesFormula: ulyssesFormula(N, S),
      megatron,
      megatronFormula: megatronFormula(N, S),
    });
  }
}

console.log(`tiny preset, ${batch} rows per step: KiB each rank sends per training step`);
printTable(
  ["sp", "seq", "N", "Ulysses", "formula", "Megatron-SP", "formula", "Megatron/Ulysses", "step: Ulysses", "step: Megatron-SP"],
  rows.map((row) => [
    String(row.sp),
    String(row.seq),
    String(row.tokens),
    kib(row.ulysses.exchanges),
    kib(row.ulyssesFormula),
    kib(row.megatron.exchanges),
    kib(row.megatronFormula),
    `${(row.megatron.exchanges / row.ulysses.exchanges).toFixed(2)}×`,
    kib(row.ulysses.step),
    kib(row.megatron.step),
  ]),
);
console.log("step: every byte of the step, the gradient all-reduces included");
printJson(json, { preset: "tiny", batch, rows });
