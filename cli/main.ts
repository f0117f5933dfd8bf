// The shardlab command line: `shardlab <command> [options]`.

import { parseArgs } from "node:util";
import { createDevice } from "../mod.ts";
import type { BackendChoice } from "../src/tensor/device.ts";
import { selfcheck } from "./selfcheck.ts";

const USAGE = `usage: shardlab <command> [options]

commands:
  selfcheck   run one op of every kernel family on the chosen backend against the CPU reference
  info        print the runtime, adapter, limits and features, and the backend chosen

options:
  --backend auto|webgpu|cpu   (default auto: WebGPU when an adapter exists, otherwise CPU)
  --help
`;

const BACKENDS = ["auto", "webgpu", "cpu"];

function fail(message: string): never {
  console.error(`shardlab: ${message}\n\n${USAGE}`);
  Deno.exit(2);
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { backend: { type: "string", default: "auto" }, help: { type: "boolean", default: false } },
    });
  } catch (error) {
    fail((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const backend = values.backend as string;
  if (!BACKENDS.includes(backend)) fail(`unknown backend "${backend}" (valid: ${BACKENDS.join(", ")})`);
  const [command, ...rest] = positionals;
  if (rest.length) fail(`unexpected argument "${rest[0]}"`);
  switch (command) {
    case "selfcheck":
      return (await selfcheck(backend as BackendChoice)) ? 0 : 1;
    case "info": {
      const device = await createDevice({ backend: backend as BackendChoice });
      console.log(JSON.stringify({ runtime: `deno ${Deno.version.deno}`, backend: device.name, ...device.info }, null, 2));
      device.destroy();
      return 0;
    }
    case undefined:
      fail("missing command");
      break;
    default:
      fail(`unknown command "${command}" (valid: selfcheck, info)`);
  }
  return 0;
}

Deno.exit(await main(Deno.args));
