// `shardlab generate`: prints the text a saved model writes after a prompt, from a checkpoint of any
// layout (or a save folder, whose latest is followed) or a folder written by `ckpt export --hf`,
// on one device with the character tokenizer.

import { parseArgs } from "node:util";
import { CheckpointError } from "../src/checkpoint/errors.ts";
import { loadModel } from "../src/checkpoint/load_model.ts";
import { charTokenizer } from "../src/data/tokenizer.ts";
import { paramCount } from "../src/nn/config.ts";
import { generate, GENERATE_DEFAULTS } from "../src/nn/generate.ts";
import { type BackendChoice, createDevice } from "../src/tensor/device.ts";
import { storageAt } from "../src/train/checkpointing.ts";
import { UsageError } from "./usage.ts";

export const GENERATE_USAGE = `usage: shardlab generate --from PATH --prompt TEXT [options]

  --from PATH                a checkpoint folder, a save folder (its latest is followed), or a folder
                             written by shardlab ckpt export --hf
  --prompt TEXT              the text to continue (newline and printable ASCII)
  --max-tokens N             characters to generate (default ${GENERATE_DEFAULTS.maxNewTokens})
  --temperature X            sampling temperature; 0 always picks the most likely character (default ${GENERATE_DEFAULTS.temperature})
  --seed S                   seeds the sampling (default ${GENERATE_DEFAULTS.seed})
  --backend auto|webgpu|cpu  (default auto: WebGPU when an adapter exists, otherwise CPU)

The prompt and what follows it go to stdout; where the model came from goes to stderr.
`;

const BACKENDS = ["auto", "webgpu", "cpu"];

/** The value of --`name`, a number meeting `ok` (described by `what`), or `fallback` when not given. */
function numberOption(
  name: string,
  text: string | undefined,
  fallback: number,
  ok: (n: number) => boolean,
  what: string,
): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === "" || !ok(value)) throw new UsageError(`--${name} must be ${what}, got "${text}"`);
  return value;
}

function parseGenerateArgs(argv: string[]) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        from: { type: "string" },
        prompt: { type: "string" },
        "max-tokens": { type: "string" },
        temperature: { type: "string" },
        seed: { type: "string" },
        backend: { type: "string", default: "auto" },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const v = parsed.values;
  if (v.from === undefined || v.from.trim() === "") {
    throw new UsageError("generate needs --from PATH (a checkpoint or an exported model)");
  }
  if (v.prompt === undefined || v.prompt === "") throw new UsageError("generate needs --prompt TEXT (at least one character)");
  const unknown = charTokenizer.unknownCharacters(v.prompt);
  if (unknown.length > 0) {
    throw new UsageError(
      `--prompt has ${unknown.length} character(s) the tokenizer does not know: ${unknown.join(", ")}; ` +
        `its vocabulary is "\\n" and printable ASCII 32..126`,
    );
  }
  if (!BACKENDS.includes(v.backend)) throw new UsageError(`unknown backend "${v.backend}" (valid: ${BACKENDS.join(", ")})`);
  const d = GENERATE_DEFAULTS;
  const count = (n: number) => Number.isSafeInteger(n) && n >= 0;
  return {
    from: v.from,
    prompt: v.prompt,
    backend: v.backend as BackendChoice,
    options: {
      maxNewTokens: numberOption("max-tokens", v["max-tokens"], d.maxNewTokens, count, "an integer ≥ 0"),
      temperature: numberOption("temperature", v.temperature, d.temperature, (n) => Number.isFinite(n) && n >= 0, "a number ≥ 0"),
      seed: numberOption("seed", v.seed, d.seed, count, "an integer ≥ 0"),
    },
  };
}

export async function generateCommand(argv: string[]): Promise<number> {
  const { from, prompt, backend, options } = parseGenerateArgs(argv);
  const device = await createDevice({ backend });
  try {
    const { model, source } = await loadModel(device, storageAt(from), "", from);
    try {
      const { vocabSize } = model.config;
      if (vocabSize !== charTokenizer.vocabSize) {
        throw new CheckpointError(
          `${from}: the model has a vocabulary of ${vocabSize}, but shardlab's character tokenizer has ${charTokenizer.vocabSize} ids`,
        );
      }
      console.error(
        `shardlab generate: ${paramCount(model.config).toLocaleString("en-US")} parameters from ${from}, ${source}, ` +
          `on ${device.name} (${device.info.adapter})`,
      );
      const ids = await generate(model, charTokenizer.encode(prompt), options);
      console.log(prompt + charTokenizer.decode(ids));
    } finally {
      model.dispose();
    }
    return 0;
  } catch (error) {
    if (!(error instanceof CheckpointError)) throw error;
    console.error(`shardlab: ${error.message}`);
    return 1;
  } finally {
    device.destroy();
  }
}
