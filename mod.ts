// shardlab's public API.

export { type BackendChoice, createDevice, Device, type DeviceStats, type TensorOptions } from "./src/tensor/device.ts";
export { Tensor } from "./src/tensor/tensor.ts";
export type { DType, HostArray } from "./src/tensor/dtype.ts";
export * as ops from "./src/tensor/ops/index.ts";
export { noGrad } from "./src/tensor/autograd.ts";
export { keep, tidy } from "./src/tensor/scope.ts";
export { DeviceLimitError, DisposedError, DTypeError, NonFiniteError, ShapeError, ShardlabError } from "./src/tensor/errors.ts";
export type { AdamWParams } from "./src/backend/backend.ts";

// The model, data, optimizer and trainer.
export { headDim, paramCount, type Phi3Config, presetConfig, type PresetName, PRESETS, validateConfig } from "./src/nn/config.ts";
export {
  type BlockRunner,
  type ModelBlock,
  Phi3ForCausalLM,
  type Phi3Init,
  Phi3Model,
  runAsIs,
  type Tokens,
} from "./src/nn/phi3.ts";
export { type Forward, type Layer, localLayers, type Phi3Layers } from "./src/nn/layers.ts";
export { Phi3DecoderLayer } from "./src/nn/decoder_layer.ts";
export { Phi3Attention } from "./src/nn/attention.ts";
export { Phi3MLP } from "./src/nn/mlp.ts";
export { Embedding, Linear, type Module, RMSNorm } from "./src/nn/modules.ts";
export {
  INIT_STD,
  Parameter,
  type ParameterFactory,
  type ParameterInit,
  seededParameters,
  shapeOnly,
} from "./src/nn/parameter.ts";
export { deriveSeed } from "./src/nn/seed.ts";
export { generate, GENERATE_DEFAULTS, type GenerateOptions } from "./src/nn/generate.ts";
export { charTokenizer } from "./src/data/tokenizer.ts";
export {
  type Batch,
  type BatchOptions,
  batchRows,
  corpusDistributions,
  corpusFloor,
  globalBatch,
  type RowsOptions,
  sampleText,
} from "./src/data/corpus.ts";
export { AdamW, type AdamWOptions, type AdamWState, type AdamWStepOptions } from "./src/optim/adamw.ts";
export { warmupCosine, type WarmupCosineOptions } from "./src/optim/schedule.ts";
export { clipScale, globalGradNorm } from "./src/optim/clip.ts";
export { DEFAULT_TRAIN_CONFIG, type TrainConfig } from "./src/train/config.ts";
export { type StepMetrics, train, Trainer } from "./src/train/trainer.ts";
export { type DivergedQuantity, type Divergence, TrainingDivergedError } from "./src/train/divergence.ts";
export { type ParallelRun, type ParallelRunOptions, trainParallel } from "./src/train/parallel_run.ts";
export { type ElasticEvent, type ElasticOptions, type ElasticRun, trainElastic } from "./src/train/elastic.ts";
export { ElasticError, type SurvivingLayout, survivingLayout } from "./src/train/elastic_layout.ts";
export { FAILURE_KINDS, type FailureKind, parseFailures, type PlannedFailure } from "./src/train/rank_failures.ts";

// Ranks as workers, their collectives and the traffic they cause.
export { launch, type LaunchOptions, type LaunchResult, type RankEvent, type RankResult } from "./src/comm/launch.ts";
export type { RankContext, RankEntry } from "./src/comm/rank_context.ts";
export {
  CollectiveAbortedError,
  CollectiveMismatchError,
  CollectiveTimeoutError,
  RankFailedError,
  type RankFailureKind,
  type ThrownError,
} from "./src/comm/errors.ts";
export { Comm, type CommArray, type CommData, type CommOptions, type ReduceOp } from "./src/comm/collectives.ts";
export { type Mesh, mesh, type MeshSizes } from "./src/comm/mesh.ts";
export { createWorld, openWorld, World, type WorldLayout } from "./src/comm/world.ts";
export type { HeapArray, HeapDType } from "./src/comm/heap.ts";
export { DEFAULT_LINKS, type Links, type LinkSpec, mergeLedgers, type Traffic, type TrafficJSON } from "./src/comm/cost_model.ts";
export type { CollectiveRecord, LedgerJSON } from "./src/comm/ledger.ts";

// Parallel training: layouts, the engine and its strategies, the fragment map.
export {
  checkLayoutFits,
  dataParallelSize,
  type ParallelGroups,
  parallelGroups,
  type ParallelLayout,
  resolveLayout,
  type SpImpl,
  tensorParallelSize,
  worldSize,
  type ZeroStage,
} from "./src/parallel/layout.ts";
export { createStrategy, type EngineOptions, ParallelEngine, type TokenBatch, type TokenShare } from "./src/parallel/engine.ts";
export { type RankMemory, type Strategy, type StrategyContext } from "./src/parallel/strategy.ts";
export { type MemoryPlan, memoryPlan, memoryTotal } from "./src/parallel/memory_plan.ts";
export { DataParallel, DEFAULT_BUCKET_BYTES } from "./src/parallel/ddp.ts";
export { ZeroOptimizer } from "./src/parallel/zero.ts";
export { Zero3 } from "./src/parallel/zero3.ts";
export {
  type BlockGather,
  COMM_DTYPES,
  type CommDType as PartitionDType,
  type PartitionCodec,
  plainCodec,
} from "./src/parallel/partition_codec.ts";
export { createCodec, NO_ZEROPP, usesZeropp, ZeroppCodec, type ZeroppOptions } from "./src/parallel/zeropp_codec.ts";
export { quantizedAllGather, quantizedMessageBytes, quantizedReduceScatter } from "./src/parallel/quantized_collectives.ts";
export {
  type AssembledState,
  assembleParameter,
  assembleState,
  type Fragment,
  FRAGMENT_MAP_VERSION,
  type FragmentMap,
  fragmentMap,
  type RankFragments,
  rankFragments,
  type RankState,
} from "./src/parallel/fragment_map.ts";
export { type FlatGroup, partitionParameters } from "./src/parallel/zero_partition.ts";
export { cut, type CutBackward } from "./src/parallel/cut.ts";
export { parallelLayers } from "./src/parallel/parallel_layers.ts";
export { shardValues, type TensorParallelShard, tensorParallelShards, unshardValues } from "./src/parallel/tp_shards.ts";
export { type HeadAssignment, ulyssesAttention, ulyssesHeads } from "./src/parallel/ulysses.ts";

// Checkpoints: distributed save, universal conversion, load on any layout.
export { CheckpointError } from "./src/checkpoint/errors.ts";
export { type CheckpointStorage, type FileWriter, MemoryStorage } from "./src/checkpoint/storage.ts";
export { FsStorage } from "./src/checkpoint/fs_storage.ts";
export { OpfsStorage } from "./src/checkpoint/opfs_storage.ts";
export { loadCheckpoint, saveCheckpoint, type SaveOptions } from "./src/checkpoint/distributed.ts";
export { type Checkpoint, loadRankState, openCheckpoint } from "./src/checkpoint/load.ts";
export { convertCheckpoint, type ConvertReport } from "./src/checkpoint/convert.ts";
export { verifyCheckpoint, verifyLoadedState } from "./src/checkpoint/verify.ts";
export {
  CHECKPOINT_VERSION,
  type CheckpointMetadata,
  type Meaning,
  type ParameterRecord,
  type TrainingRecord,
} from "./src/checkpoint/metadata.ts";
export { type CheckpointPatterns, PHI3_CHECKPOINT_PATTERNS } from "./src/nn/checkpoint_patterns.ts";

// Hugging Face interchange: export a checkpoint for transformers, start a run from its weights, load a model to generate from.
export {
  exportHuggingFace,
  HF_CONFIG_FILE,
  HF_GENERATION_CONFIG_FILE,
  HF_MODEL_FILE,
  type HfExportReport,
} from "./src/checkpoint/hf_export.ts";
export { checkHfModel, type HfModel, openHfModel, readHfTensor, readInitState } from "./src/checkpoint/hf_import.ts";
export { checkHfConfig, hfConfig, hfGenerationConfig, phi3ConfigFromHf, TORCH_DTYPES } from "./src/checkpoint/hf_config.ts";
export { decodeFloats, encodeFloats, FLOAT_DTYPES, type FloatDType } from "./src/checkpoint/float_encoding.ts";
export { checkedParameterValue, type ParameterValue } from "./src/checkpoint/parameter_value.ts";
export { type LoadedModel, loadModel } from "./src/checkpoint/load_model.ts";
