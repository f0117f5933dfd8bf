// Megatron's f and g: an MLP split over tp ranks talks twice per step, once each way.
//
// The MLP y = gelu(x·W1)·W2 (x: [N, h], W1: [h, I], W2: [I, h]) splits over T ranks without any
// communication in the middle: W1 by columns (column-parallel: rank r computes its I/T columns of
// gelu(x·W1), gelu being elementwise), W2 by rows (row-parallel: rank r multiplies its columns by
// its rows, a partial sum of y). Megatron-LM names the two places where ranks must talk:
//
//   g  after the row-parallel linear: forward, all-reduce the partial sums into y; backward, nothing
//   f  before the column-parallel linear: forward, nothing (every rank has x); backward, all-reduce
//      the ranks' partial gradients of x
//
// Both are written below with cut(), which joins an async collective and its adjoint to autograd.
//
// What to look for: the ledger shows exactly one all-reduce of N·h floats forward (g) and one
// backward (f), and nothing else; y and the gradient of x equal one device's within rounding. At
// T = 2 ring and direct all-reduces both send N·h·4 bytes per rank; try --tp 4.
//
//   deno run -A examples/tensor_parallel_fg.ts [--tp 2] [--tokens 128] [--hidden 64] [--inner 256] [--backend cpu] [--json]

import { type Comm, cut, launch, ops, type RankContext, type Tensor } from "shardlab";
import { count, integer, printJson, printTable, readFlags, usageError } from "./cli.ts";

interface Args {
  tokens: number;
  hidden: number;
  inner: number;
}

/** f: identity forward; backward, the gradient summed over the tp ranks. */
async function f(tp: Comm, x: Tensor): Promise<Tensor> {
  const forward = (inputs: Tensor[]) => Promise.resolve(inputs);
  const backward = async ([gradient]: Tensor[]) => [await tp.allReduce(gradient, { op: "sum", tag: "f.backward" })];
  const [y] = await cut("f", [x], forward, backward);
  return y;
}

/** g: the partial sums all-reduced forward; backward, the gradient passes unchanged. */
async function g(tp: Comm, partial: Tensor): Promise<Tensor> {
  const forward = async ([p]: Tensor[]) => [await tp.allReduce(p, { op: "sum", tag: "g.forward" })];
  const backward = (gradients: Tensor[]) => Promise.resolve(gradients);
  const [y] = await cut("g", [partial], forward, backward);
  return y;
}

/** Largest |a − b| over the largest |b|: how far a strays from the reference b, relative to its scale. */
async function relativeDifference(a: Tensor, b: Tensor): Promise<number> {
  const [x, y] = [Array.from(await a.read(), Number), Array.from(await b.read(), Number)];
  const scale = y.reduce((largest, value) => Math.max(largest, Math.abs(value)), 0);
  return x.reduce((largest, value, i) => Math.max(largest, Math.abs(value - y[i])), 0) / scale;
}

/** Runs on every rank: the tensor-parallel MLP forward and backward, then one device's for reference. */
export default async function tensorParallelMlp(ctx: RankContext, { tokens: N, hidden: h, inner: I }: Args) {
  const { device, comm, rank, worldSize: T } = ctx;
  // The same x, W1 and W2 on every rank: device.randn depends only on the seed.
  const x = device.randn([N, h], 1, { requiresGrad: true });
  const w1 = ops.scale(device.randn([h, I], 2), 1 / Math.sqrt(h));
  const w2 = ops.scale(device.randn([I, h], 3), 1 / Math.sqrt(I));
  const w1Columns = ops.slice(w1, [0, (rank * I) / T], [h, I / T]); // this rank's columns of W1
  const w2Rows = ops.slice(w2, [(rank * I) / T, 0], [I / T, h]); // and the matching rows of W2

  const input = await f(comm, x);
  const activation = ops.gelu(ops.matmul(input, w1Columns)); // [N, I/T]: this rank's columns, no communication
  const partial = ops.matmul(activation, w2Rows); // [N, h]: this rank's share of y
  const y = await g(comm, partial); // the sum of every rank's share
  const afterForward = comm.ledger.collectives.length;
  await ops.mean(ops.mul(y, y)).backward();
  const ledger = comm.ledger.collectives.map((record, i) => ({
    phase: i < afterForward ? "forward" : "backward",
    kind: record.kind,
    tag: record.tag,
    algorithm: record.algorithm,
    floats: record.elements,
    bytesSent: record.bytes,
  }));

  // One device's MLP on the whole weights: the reference.
  const xAlone = device.randn([N, h], 1, { requiresGrad: true });
  const yAlone = ops.matmul(ops.gelu(ops.matmul(xAlone, w1)), w2);
  await ops.mean(ops.mul(yAlone, yAlone)).backward();
  return {
    ledger,
    outputDifference: await relativeDifference(y, yAlone),
    gradientDifference: await relativeDifference(x.grad!, xAlone.grad!),
  };
}

if (import.meta.main) {
  const { flags, json } = readFlags({ tp: "2", tokens: "128", hidden: "64", inner: "256", backend: "cpu" });
  const tp = integer("tp", flags.tp, 2);
  const args: Args = {
    tokens: integer("tokens", flags.tokens, 1),
    hidden: integer("hidden", flags.hidden, 1),
    inner: integer("inner", flags.inner, 1),
  };
  if (args.inner % tp !== 0) usageError(`--inner ${args.inner} must divide evenly over --tp ${tp}`);
  const results = await launch<Awaited<ReturnType<typeof tensorParallelMlp>>>({
    ranks: tp,
    entry: import.meta.url,
    args,
    backend: flags.backend as "cpu" | "webgpu" | "auto",
  });

  const bytes = 4 * args.tokens * args.hidden;
  const formula = (algorithm: string) => algorithm === "direct" ? (tp - 1) * bytes : (2 * (tp - 1) / tp) * bytes;
  console.log(
    `MLP [${args.tokens}×${args.hidden}] · [${args.hidden}×${args.inner}] · [${args.inner}×${args.hidden}] over tp ${tp}: rank 0's ledger`,
  );
  printTable(
    ["phase", "collective", "tag", "floats", "algorithm", "bytes sent", "formula"],
    results[0].value.ledger.map((call) => [
      call.phase,
      call.kind,
      call.tag,
      count(call.floats),
      call.algorithm,
      count(call.bytesSent),
      count(formula(call.algorithm)),
    ]),
  );
  console.log(`formula: N·h = ${count(args.tokens * args.hidden)} floats all-reduced, ring 2(T−1)/T·4Nh bytes, direct (T−1)·4Nh`);
  for (const { rank, value } of results) {
    console.log(
      `rank ${rank}: y and the gradient of x differ from one device's by ${value.outputDifference.toExponential(1)} and ` +
        `${value.gradientDifference.toExponential(1)} of their largest magnitude`,
    );
  }
  printJson(json, { tp, ...args, ranks: results.map(({ value }) => value) });
}
