// The shardlab command line: `shardlab <command> [options]`.

import { parseArgs } from "node:util";
import { createDevice } from "../mod.ts";
import type { BackendChoice } from "../src/tensor/device.ts";
import { selfcheck } from "./selfcheck.ts";
import { CKPT_USAGE, ckptCommand } from "./ckpt.ts";
import { GENERATE_USAGE, generateCommand } from "./generate.ts";
import { MEMORY_USAGE, memoryCommand } from "./memory.ts";
import { quietDisplayProbe } from "./display_env.ts";
import { TRAIN_USAGE, trainCommand } from "./train.ts";
import { UsageError } from "./usage.ts";
import { SERVE_USAGE, serveCommand } from "./serve.ts";
import { benchCommand, benchUsage } from "../bench/main.ts";

const USAGE = `usage: shardlab <command> [options]

commands:
  train       train a Phi-3-style model on the procedural corpus (shardlab train --help)
  ckpt        inspect, verify, convert or export a checkpoint (shardlab ckpt --help)
  generate    print text a checkpoint or an exported model writes after a prompt (shardlab generate --help)
  memory      print a preset's parameter count and each rank's memory on a layout, allocating nothing
              (shardlab memory --help)
  info        print the runtime, adapter, limits and features, and the backend chosen
  selfcheck   run one op of every kernel family on the chosen backend against the CPU reference
  serve       serve the pages on 127.0.0.1 with the headers SharedArrayBuffer needs (shardlab serve --help)
  bench       run a benchmark suite (shardlab bench --help)

options of info and selfcheck:
  --backend auto|webgpu|cpu   (default auto: WebGPU when an adapter exists, otherwise CPU)
`;

const COMMANDS = ["train", "ckpt", "generate", "memory", "info", "selfcheck", "serve", "bench"];
const BACKENDS = ["auto", "webgpu", "cpu"];

/** The --backend option of info and selfcheck. */
function parseBackend(argv: string[]): BackendChoice {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { backend: { type: "string", default: "auto" } } });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const backend = parsed.values.backend as string;
  if (!BACKENDS.includes(backend)) throw new UsageError(`unknown backend "${backend}" (valid: ${BACKENDS.join(", ")})`);
  return backend as BackendChoice;
}

async function info(backend: BackendChoice): Promise<number> {
  const device = await createDevice({ backend });
  console.log(JSON.stringify({ runtime: `deno ${Deno.version.deno}`, backend: device.name, ...device.info }, null, 2));
  device.destroy();
  return 0;
}

function usageOf(command: string): string {
  const usages: Record<string, string> = {
    train: TRAIN_USAGE,
    ckpt: CKPT_USAGE,
    generate: GENERATE_USAGE,
    memory: MEMORY_USAGE,
    serve: SERVE_USAGE,
    bench: benchUsage("shardlab bench"),
  };
  return usages[command] ?? USAGE;
}

async function main(argv: string[]): Promise<number> {
  quietDisplayProbe();
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h") {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(usageOf(command));
    return 0;
  }
  try {
    switch (command) {
      case "train":
        return await trainCommand(rest);
      case "ckpt":
        return await ckptCommand(rest);
      case "generate":
        return await generateCommand(rest);
      case "memory":
        return memoryCommand(rest);
      case "info":
        return await info(parseBackend(rest));
      case "selfcheck":
        return (await selfcheck(parseBackend(rest))) ? 0 : 1;
      case "serve":
        return await serveCommand(rest);
      case "bench":
        return await benchCommand(rest, "shardlab bench");
      default:
        throw new UsageError(`unknown command "${command}" (valid: ${COMMANDS.join(", ")})`);
    }
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`shardlab: ${error.message}\n\n${usageOf(command)}`);
    return 2;
  }
}

Deno.exit(await main(Deno.args));
