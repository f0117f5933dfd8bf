// `npm run bench -- <suite> [--json FILE] [--reps N] [--ranks P]`: shardlab's benchmarks. The first
// positional picks a suite from SUITES; exit status 2 means a bad command line.

import { parseArgs } from "node:util";
import type { CollectivesOptions } from "./collectives.ts";

/** Each suite's module is imported only when that suite runs, so one suite's dependencies never block another. */
const SUITES: Record<string, { summary: string; run: (options: CollectivesOptions) => Promise<number> }> = {
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
};

const FLAGS = {
  json: { type: "string" },
  reps: { type: "string" },
  ranks: { type: "string" },
  help: { type: "boolean" },
} as const;

const USAGE = `usage: npm run bench -- <suite> [--json FILE] [--reps N] [--ranks P]

suites:
${Object.entries(SUITES).map(([name, suite]) => `  ${name.padEnd(12)}${suite.summary}`).join("\n")}

options:
  --json FILE   also write every figure as one JSON object to FILE
  --reps N      reps per timed batch (default: sized so one batch takes about 0.4 s);
                collectives: timed iterations per message size
  --ranks P     collectives only: world size, an integer ≥ 2 (default: 2 ranks, then 4)
  --help
`;

const VALID_FLAGS = Object.keys(FLAGS).map((flag) => `--${flag}`).join(", ");

function fail(message: string): never {
  console.error(`bench: ${message}\n\n${USAGE}`);
  Deno.exit(2);
}

function parseCommandLine(argv: string[]): { suite: string; options: CollectivesOptions } | null {
  // Non-strict parsing keeps unknown flags as tokens, so the error can name them and the valid ones.
  const { values, positionals, tokens } = parseArgs({
    args: argv,
    options: FLAGS,
    allowPositionals: true,
    strict: false,
    tokens: true,
  });
  for (const token of tokens) {
    if (token.kind === "option" && !Object.hasOwn(FLAGS, token.name)) fail(`unknown flag "${token.rawName}" (valid: ${VALID_FLAGS})`);
  }
  if (values.help) return null;
  for (const flag of ["json", "reps", "ranks"] as const) {
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
  return { suite, options: { json: values.json as string | undefined, reps, ranks } };
}

const command = parseCommandLine(Deno.args);
if (!command) {
  console.log(USAGE);
  Deno.exit(0);
}
try {
  Deno.exit(await SUITES[command.suite].run(command.options));
} catch (error) {
  console.error(`bench ${command.suite}: ${(error as Error).stack ?? error}`);
  Deno.exit(1);
}
