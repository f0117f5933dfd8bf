// A one-device model with the weights of a saved model, to generate from: a checkpoint of any layout
// (distributed or universal, or a save folder whose `latest` is followed; each parameter put
// together from its pieces and checked against its saved SHA-256) or an exported Hugging Face
// folder (config.json and model.safetensors in F32, F16 or BF16). Each parameter goes to the device
// as soon as it is read, so the host holds one at a time.

import type { Phi3Config } from "../nn/config.ts";
import { shapeOnly } from "../nn/parameter.ts";
import { Phi3ForCausalLM } from "../nn/phi3.ts";
import type { Device } from "../tensor/device.ts";
import { keep } from "../tensor/scope.ts";
import { CheckpointError } from "./errors.ts";
import { phi3ConfigFromHf } from "./hf_config.ts";
import { HF_CONFIG_FILE, HF_MODEL_FILE } from "./hf_export.ts";
import { checkHfModel, openHfModel, readHfTensor } from "./hf_import.ts";
import { openCheckpoint, requireWhole } from "./load.ts";
import { checkedParameterValue } from "./parameter_value.ts";
import { type HeaderCache, LATEST, METADATA } from "./save.ts";
import { type CheckpointStorage, joinPath } from "./storage.ts";

export interface LoadedModel {
  model: Phi3ForCausalLM;
  /** Where the weights came from, in words ("a distributed checkpoint at step 4 (dp 2 × tp 2 × sp 1, zero 1)"). */
  source: string;
}

/** The model saved at `path` of `storage` (`shownAs`: the path as the user gave it), on `device`. */
export async function loadModel(device: Device, storage: CheckpointStorage, path: string, shownAs = path): Promise<LoadedModel> {
  const has = async (name: string) => await storage.size(joinPath(path, name)) !== null;
  if (await has(HF_CONFIG_FILE)) {
    const hf = await openHfModel(storage, path, shownAs);
    const config = phi3ConfigFromHf(hf.config, joinPath(shownAs, HF_CONFIG_FILE));
    checkHfModel(hf, config);
    const dtypes = [...new Set([...hf.header.tensors.values()].map(({ dtype }) => dtype))];
    return {
      model: await build(device, config, (name) => readHfTensor(hf, name)),
      source: `an exported Hugging Face model (${dtypes.join(", ")})`,
    };
  }
  if (!(await has(METADATA)) && !(await has(LATEST))) {
    throw new CheckpointError(
      `${shownAs}: neither a checkpoint (${METADATA}, or a save folder's ${LATEST}) nor an exported model ` +
        `(${HF_CONFIG_FILE} and ${HF_MODEL_FILE})`,
    );
  }
  const checkpoint = await openCheckpoint(storage, path);
  requireWhole(checkpoint);
  const { kind, training, layout, model: config } = checkpoint.metadata;
  const headers: HeaderCache = new Map();
  const model = await build(device, config, async (name) => (await checkedParameterValue(checkpoint, name, headers)).value);
  const on = layout ? ` (dp ${layout.dp} × tp ${layout.tp} × sp ${layout.sp}, zero ${layout.zero})` : "";
  return { model, source: `a ${kind} checkpoint at step ${training.step}${on}` };
}

/** The model of `config` with each parameter's value from `valueOf`, uploaded one at a time. */
async function build(
  device: Device,
  config: Phi3Config,
  valueOf: (name: string) => Promise<Float32Array>,
): Promise<Phi3ForCausalLM> {
  const model = new Phi3ForCausalLM(device, config, { parameters: shapeOnly });
  try {
    for (const parameter of model.parameters()) {
      parameter.value = keep(device.tensor(await valueOf(parameter.name), parameter.shape));
    }
  } catch (error) {
    model.dispose();
    throw error;
  }
  return model;
}
