// `npm run bench -- <suite> [--json FILE] [--reps N] [--ranks P] [--backend B] [--steps N]` (or
// `shardlab bench <suite> …` from the package): shardlab's benchmarks. The first positional picks a
// suite from SUITES; exit status 2 means a bad command line.

import { parseArgs } from "node:util";
import type { CollectivesOptions } from "./collectives.ts";
import type { ParallelOptions } from "./parallel.ts";

/** Each suite's module is imported only when that suite runs, so one suite's dependencies never block another. */
const SUITES: Record<string, { summary: string; run: (options: CollectivesOptions & ParallelOptions) => Promise<number> }> = {
  kernels: {
    summary: "shardlab's WebGPU kernels vs TF.js's WebGPU backend, and the copy-bandwidth bound",
    run: async (options) => (await import("./kernels.ts")).runKernels(options),
  },
  train: {
    summary: "a training step of the tiny and small presets vs the same model in TF.js's WebGPU backend",
    run: async (options) => (await import("./train.ts")).runTrain(options),
  },
  collectives: {
    summary: "nccl-tests style time, algbw and busbw of every collective over 8 B … 64 MiB vs the copy bound",
    run: async (options) => (await import("./collectives.ts")).runCollectives(options),
  },
  checkpoint: {
    summary: "checkpoint save against the raw write bandwidth, load-time resharding, universal conversion and its peak memory",
    run: async (options) => (await import("./checkpoint.ts")).runCheckpoint(options),
  },
  fuzz: {
    summary: "mutated checkpoint files and metadata against the readers: CheckpointError or a value, never a crash or a hang",
    run: async (options) => (await import("./checkpoint_fuzz.ts")).runFuzz(options),
  },
  pipelines: {
    summary: "the pipelines of one training step: creation and first-dispatch compile ms, cold and warm Mesa shader cache",
    run: async (o) => (await import("./pipelines.ts")).runPipelines(o),
  },
  parallel: {
    summary: "every parallel layout's tokens/s, bytes per link class, simulated time and memory; Ulysses vs Megatron-SP scaling",
    run: async (options) => (await import("./parallel.ts")).runParallel(options),
  },
};

const FLAGS = {
  json: { type: "string" },
  reps: { type: "string" },
  ranks: { type: "string" },
  backend: { type: "string" },
  steps: { type: "string" },
  help: { type: "boolean" },
} as const;

/** The usage text, with the command that starts the benchmarks ("npm run bench --" or "shardlab bench"). */
export function benchUsage(program: string): string {
  return `usage: ${program} <suite> [--json FILE] [--reps N] [--ranks P] [--backend B] [--steps N]

suites:
${Object.entries(SUITES).map(([name, suite]) => `  ${name.padEnd(12)}${suite.summary}`).join("\n")}

options:
  --json FILE   also write every figure as one JSON object to FILE
  --reps N      reps per timed batch (default: sized so one batch takes about 0.4 s);
                collectives: timed iterations per message size
  --ranks P     collectives only: world size, an integer ≥ 2 (default: 2 ranks, then 4)
  --backend B   parallel only: every rank's device, cpu or webgpu (default cpu)
  --steps N     parallel only: training steps per layout, the first one warm-up, an integer ≥ 2 (default 4)
  --help
`;
}

const VALID_FLAGS = Object.keys(FLAGS).map((flag) => `--${flag}`).join(", ");

/** A bad command line: benchCommand prints it with the usage and returns 2. */
class BenchUsageError extends Error {}

function fail(message: string): never {
  throw new BenchUsageError(message);
}

function parseCommandLine(argv: string[]): { suite: string; options: CollectivesOptions & ParallelOptions } | null {
  // Non-strict parsing keeps unknown flags as tokens, so the error can name them and the valid ones.
  const { values, positionals, tokens } = parseArgs({
    args: argv,
    options: FLAGS,
    allowPositionals: true,
    strict: false,
    tokens: true,
  });
  for (const token of tokens) {
    if (token.kind === "option" && !Object.hasOwn(FLAGS, token.name)) {
      fail(`unknown flag "${token.rawName}" (valid: ${VALID_FLAGS})`);
    }
  }
  if (values.help) return null;
  for (const flag of ["json", "reps", "ranks", "backend", "steps"] as const) {
    const value = values[flag];
    if (value !== undefined && (typeof value !== "string" || value.startsWith("--"))) fail(`--${flag} needs a value`);
  }
  const [suite, ...extra] = positionals;
  if (suite === undefined) fail(`missing suite (valid: ${Object.keys(SUITES).join(", ")})`);
  if (!Object.hasOwn(SUITES, suite)) fail(`unknown suite "${suite}" (valid: ${Object.keys(SUITES).join(", ")})`);
  if (extra.length) fail(`unexpected argument "${extra[0]}"`);
  let reps: number | undefined;
  if (values.reps !== undefined) {
    reps = Number(values.reps);
    if (!Number.isInteger(reps) || reps < 1) fail(`--reps must be a positive integer, got "${values.reps}"`);
  }
  let ranks: number | undefined;
  if (values.ranks !== undefined) {
    if (suite !== "collectives") fail(`--ranks applies to the collectives suite only, not "${suite}"`);
    ranks = Number(values.ranks);
    if (!Number.isInteger(ranks) || ranks < 2) fail(`--ranks must be an integer ≥ 2, got "${values.ranks}"`);
  }
  for (const flag of ["backend", "steps"] as const) {
    if (values[flag] !== undefined && suite !== "parallel") fail(`--${flag} applies to the parallel suite only, not "${suite}"`);
  }
  if (values.reps !== undefined && suite === "parallel") fail(`--reps does not apply to the parallel suite (use --steps)`);
  const backend = values.backend as string | undefined;
  if (backend !== undefined && backend !== "cpu" && backend !== "webgpu") {
    fail(`--backend must be cpu or webgpu, got "${backend}"`);
  }
  let steps: number | undefined;
  if (values.steps !== undefined) {
    steps = Number(values.steps);
    if (!Number.isInteger(steps) || steps < 2) {
      fail(`--steps must be an integer ≥ 2 (one warm-up step, then timed ones), got "${values.steps}"`);
    }
  }
  return { suite, options: { json: values.json as string | undefined, reps, ranks, backend, steps } };
}

/** Runs the suite `argv` names and resolves with the exit status; `program` names the command in messages. */
export async function benchCommand(argv: string[], program = "npm run bench --"): Promise<number> {
  let command;
  try {
    command = parseCommandLine(argv);
  } catch (error) {
    if (!(error instanceof BenchUsageError)) throw error;
    console.error(`bench: ${error.message}\n\n${benchUsage(program)}`);
    return 2;
  }
  if (!command) {
    console.log(benchUsage(program));
    return 0;
  }
  try {
    return await SUITES[command.suite].run(command.options);
  } catch (error) {
    console.error(`bench ${command.suite}: ${(error as Error).stack ?? error}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await benchCommand(Deno.args));
