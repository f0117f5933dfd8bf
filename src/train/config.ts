// What a training run is asked to do: the options every face (CLI, page, API) shares, their
// defaults, and the checks that turn a bad value into a message naming it.

import type { BackendChoice } from "../tensor/device.ts";
import { type Phi3Config, presetConfig, PRESETS } from "../nn/config.ts";
import {
  checkLayoutFits,
  dataParallelSize,
  type ParallelLayout,
  resolveLayout,
  type SpImpl,
  worldSize,
  type ZeroStage,
} from "../parallel/layout.ts";
import { COMM_DTYPES, type CommDType } from "../parallel/partition_codec.ts";
import { NO_ZEROPP, type ZeroppOptions } from "../parallel/zeropp_codec.ts";

export interface TrainConfig {
  /** Model preset: "tiny" or "small" ("phi3-mini" is for arithmetic only and too large to train here). */
  preset: string;
  steps: number;
  /** Rows per global batch. */
  batch: number;
  /** Tokens per row. */
  seq: number;
  /** Peak learning rate, reached after warmup and decayed by a cosine to lr / 10. */
  lr: number;
  /** Seeds the initial weights and the data. */
  seed: number;
  backend: BackendChoice;
  /** Linear warmup steps, fewer than `steps` (default: 10 % of the run, at most 100). */
  warmupSteps?: number;
  /** AdamW weight decay on matrices (default 0.1). */
  weightDecay?: number;
  /** Gradient clipping by global norm (default 1; 0 turns it off). */
  clipNorm?: number;
  /** Data-parallel replicas (default 1). The world is dp × tp × sp ranks. */
  dp?: number;
  /** Tensor-parallel ranks (default 1). */
  tp?: number;
  /** Sequence-parallel ranks (default 1). */
  sp?: number;
  /** ZeRO stage 0–3 over the data-parallel ranks (default 0: DDP). */
  zero?: ZeroStage;
  /** Simulated nodes the ranks are spread over, consecutive ranks together (default 1). */
  nodes?: number;
  /** Sequence parallelism: "ulysses" (default) or "megatron". */
  spImpl?: SpImpl;
  /** DDP's gradient bucket size in MiB, as PyTorch's bucket_cap_mb (default 25). */
  bucketCapMb?: number;
  /** A folder to save checkpoints into: every `saveEvery` steps and at the end. */
  save?: string;
  /** Steps between checkpoints (default: only at the end). */
  saveEvery?: number;
  /** A checkpoint to go on from (a checkpoint folder, or a save folder whose `latest` is followed). */
  resume?: string;
  /**
   * A new run's starting weights: a Hugging Face model folder (config.json and model.safetensors, as
   * `ckpt export --hf` writes) or a .safetensors file with the model's names and shapes. The run
   * starts at step 0 with AdamW's moments zero and its own seed and schedule.
   */
  initFrom?: string;
  /** When a rank fails, go on from the last checkpoint on a layout the surviving ranks fit (elastic.ts); needs `save`. */
  elastic?: boolean;
  /** ZeRO++ qwZ (DeepSpeed's zero_quantized_weights): ZeRO-3's weight all-gathers move block-quantized weights. */
  zeroQuantizedWeights?: boolean;
  /** ZeRO++ hpZ (zero_hpz_partition_size): the ranks per node, whose secondary partition serves the backward gathers; 1 (default) is off. */
  zeroHpzPartitionSize?: number;
  /** ZeRO++ qgZ (zero_quantized_gradients): the gradients are averaged by a hierarchical quantized all-to-all. */
  zeroQuantizedGradients?: boolean;
  /** All three of ZeRO++, hpZ over each node's ranks. */
  zeropp?: boolean;
  /** Width of ZeRO++'s quantized values, 8 or 4 (default: INT8 weights, INT4 gradients). */
  quantBits?: 4 | 8;
  /** Elements per quantization block, one f32 scale each (default 2048). */
  quantBlock?: number;
  /** The dtype ZeRO-3's partitions travel in where ZeRO++ does not quantize them: "f32" (default) or "f16". */
  commDtype?: CommDType;
}

export const DEFAULT_TRAIN_CONFIG: TrainConfig = {
  preset: "tiny",
  steps: 400,
  batch: 16,
  seq: 64,
  lr: 1e-2,
  seed: 0,
  backend: "auto",
};

const TRAINABLE_PRESETS = Object.keys(PRESETS).filter((name) => name !== "phi3-mini");
const BACKENDS = ["auto", "webgpu", "cpu"];

function checkInteger(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new RangeError(`train: --${name} must be an integer ≥ ${min}, got ${value}`);
}

/** The model configuration a run trains, after checking every option. */
export function checkTrainConfig(config: TrainConfig): Phi3Config {
  if (config.preset === "phi3-mini") {
    throw new RangeError(
      "train: the phi3-mini preset is for parameter and memory arithmetic only (shardlab memory --preset phi3-mini, " +
        `memoryPlan); train ${TRAINABLE_PRESETS.join(" or ")}`,
    );
  }
  if (!TRAINABLE_PRESETS.includes(config.preset)) {
    throw new RangeError(`train: unknown preset "${config.preset}" (valid: ${TRAINABLE_PRESETS.join(", ")})`);
  }
  const model = presetConfig(config.preset);
  checkInteger("steps", config.steps, 1);
  checkInteger("batch", config.batch, 1);
  checkInteger("seq", config.seq, 1);
  if (config.seq > model.maxSeqLen) {
    throw new RangeError(
      `train: --seq ${config.seq} exceeds the ${config.preset} preset's maximum sequence length ${model.maxSeqLen}`,
    );
  }
  checkInteger("seed", config.seed, 0);
  if (!(config.lr > 0) || !Number.isFinite(config.lr)) {
    throw new RangeError(`train: --lr must be a positive number, got ${config.lr}`);
  }
  if (!BACKENDS.includes(config.backend)) {
    throw new RangeError(`train: unknown backend "${config.backend}" (valid: ${BACKENDS.join(", ")})`);
  }
  if (config.warmupSteps !== undefined) {
    checkInteger("warmup-steps", config.warmupSteps, 0);
    if (config.warmupSteps >= config.steps) {
      throw new RangeError(`train: --warmup-steps ${config.warmupSteps} must be less than --steps ${config.steps}`);
    }
  }
  if (config.weightDecay !== undefined && !(config.weightDecay >= 0)) {
    throw new RangeError(`train: weight decay must be ≥ 0, got ${config.weightDecay}`);
  }
  if (config.clipNorm !== undefined && !(config.clipNorm >= 0)) {
    throw new RangeError(`train: clip norm must be ≥ 0, got ${config.clipNorm}`);
  }
  if (config.bucketCapMb !== undefined && !(Number.isFinite(config.bucketCapMb) && config.bucketCapMb > 0)) {
    throw new RangeError(`train: --bucket-cap-mb must be a positive number of MiB, got ${config.bucketCapMb}`);
  }
  if (config.saveEvery !== undefined) {
    checkInteger("save-every", config.saveEvery, 1);
    if (config.save === undefined) throw new RangeError(`train: --save-every ${config.saveEvery} needs --save DIR`);
  }
  for (const [flag, path] of [["save", config.save], ["resume", config.resume], ["init-from", config.initFrom]] as const) {
    if (path !== undefined && (typeof path !== "string" || path.trim() === "")) {
      throw new RangeError(`train: --${flag} needs a folder, got ${JSON.stringify(path)}`);
    }
  }
  if (config.initFrom !== undefined && config.resume !== undefined) {
    throw new RangeError(
      "train: --init-from starts a new run from a model's weights and --resume goes on with a saved run; give one of them",
    );
  }
  const layout = trainLayout(config);
  asTrainError(() => checkLayoutFits(layout, model, config.batch, config.seq));
  if (config.elastic && worldSize(layout) < 2) {
    throw new RangeError("train: --elastic goes on without a failed rank: it needs a layout of 2 or more ranks");
  }
  if (config.elastic && config.save === undefined) {
    throw new RangeError("train: --elastic goes on from the run's last checkpoint: add --save DIR (and --save-every N)");
  }
  zeroppOptions(config);
  return model;
}

/**
 * The run's ZeRO++ options and comm dtype, checked: they need --zero 3 and a data group that is
 * the whole world, hpZ's size is the ranks per node, and the quantization settings need a
 * quantized collective to apply to.
 */
export function zeroppOptions(config: TrainConfig): ZeroppOptions {
  const layout = trainLayout(config);
  const ranksPerNode = worldSize(layout) / layout.nodes;
  const commDtype = config.commDtype ?? "f32";
  if (!COMM_DTYPES.includes(commDtype)) {
    throw new RangeError(`train: --comm-dtype must be ${COMM_DTYPES.join(" or ")}, got ${JSON.stringify(commDtype)}`);
  }
  if (config.quantBits !== undefined && config.quantBits !== 8 && config.quantBits !== 4) {
    throw new RangeError(`train: --quant-bits must be 8 or 4, got ${config.quantBits}`);
  }
  if (config.quantBlock !== undefined) checkInteger("quant-block", config.quantBlock, 1);
  const given = ([
    ["zeropp", config.zeropp],
    ["zero-quantized-weights", config.zeroQuantizedWeights],
    ["zero-quantized-gradients", config.zeroQuantizedGradients],
    ["zero-hpz-partition-size", config.zeroHpzPartitionSize],
    ["quant-bits", config.quantBits],
    ["quant-block", config.quantBlock],
    ["comm-dtype", commDtype === "f32" ? undefined : commDtype],
  ] as const).filter(([, value]) => value !== undefined && value !== false);
  if (given.length === 0) return { ...NO_ZEROPP };
  const [flag] = given[0];
  if (layout.zero !== 3) {
    throw new RangeError(`train: --${flag} works on ZeRO-3's partitions: it needs --zero 3, got --zero ${layout.zero}`);
  }
  if (dataParallelSize(layout) !== worldSize(layout)) {
    throw new RangeError(
      `train: --${flag} partitions over the whole world: run it with --tp 1 and Ulysses or no sequence parallelism ` +
        `(got --tp ${layout.tp} --sp ${layout.sp} --sp-impl ${layout.spImpl})`,
    );
  }
  const hpz = config.zeroHpzPartitionSize ?? (config.zeropp ? ranksPerNode : 1);
  if (!Number.isInteger(hpz) || (hpz !== 1 && hpz !== ranksPerNode)) {
    throw new RangeError(
      `train: --zero-hpz-partition-size must be the ranks per node, ${ranksPerNode} (${worldSize(layout)} ranks over ` +
        `${layout.nodes} node${layout.nodes > 1 ? "s" : ""}), or 1 to turn hpZ off; got ${hpz}`,
    );
  }
  const quantizedWeights = config.zeroQuantizedWeights ?? config.zeropp ?? false;
  const quantizedGradients = config.zeroQuantizedGradients ?? config.zeropp ?? false;
  for (const [name, value] of [["quant-bits", config.quantBits], ["quant-block", config.quantBlock]] as const) {
    if (value !== undefined && !quantizedWeights && !quantizedGradients) {
      throw new RangeError(
        `train: --${name} sets ZeRO++'s quantization: add --zero-quantized-weights, --zero-quantized-gradients or --zeropp`,
      );
    }
  }
  return {
    quantizedWeights,
    hpzPartitionSize: hpz,
    quantizedGradients,
    weightBits: config.quantBits ?? NO_ZEROPP.weightBits,
    gradientBits: config.quantBits ?? NO_ZEROPP.gradientBits,
    quantBlock: config.quantBlock ?? NO_ZEROPP.quantBlock,
    commDtype,
  };
}

/** The run's parallel layout (every axis 1 unless given), checked on its own. */
export function trainLayout(config: TrainConfig): ParallelLayout {
  const { dp, tp, sp, zero, nodes, spImpl } = config;
  return asTrainError(() => resolveLayout({ dp, tp, sp, zero, nodes, spImpl }));
}

/** The layout's checks speak as the train command: "train: …". */
function asTrainError<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    throw new RangeError((error as Error).message.replace(/^parallel: /, "train: "));
  }
}

/** Linear warmup steps: as given, or 10 % of the run and at most 100. */
export function warmupStepsOf(config: TrainConfig): number {
  return config.warmupSteps ?? Math.min(100, Math.floor(config.steps / 10));
}
