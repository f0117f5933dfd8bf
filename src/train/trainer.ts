// The training loop on one device: global batch → forward → backward → clip → AdamW, one step at a
// time, with the figures a person watches (loss beside the corpus floor, learning rate, gradient
// norm, tokens per second, memory). train() is the API form of `shardlab train`; for a layout of
// several ranks it launches them (parallel_run.ts), each running train_rank.ts.

import { createDevice, type Device } from "../tensor/device.ts";
import { tidy } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { Phi3Config } from "../nn/config.ts";
import { Phi3ForCausalLM } from "../nn/phi3.ts";
import { generate } from "../nn/generate.ts";
import { charTokenizer } from "../data/tokenizer.ts";
import { corpusFloor, globalBatch } from "../data/corpus.ts";
import { AdamW } from "../optim/adamw.ts";
import { clipScale, globalGradNorm } from "../optim/clip.ts";
import { warmupCosine } from "../optim/schedule.ts";
import { loadCheckpoint, saveCheckpoint } from "../checkpoint/distributed.ts";
import { readInitState } from "../checkpoint/hf_import.ts";
import { exportShardState, importShardState } from "../parallel/ddp.ts";
import { type FragmentMap, fragmentMap } from "../parallel/fragment_map.ts";
import { SINGLE_RANK, worldSize } from "../parallel/layout.ts";
import type { RankMemory } from "../parallel/strategy.ts";
import { type RunStart, runStart, saveDue, storageAt, trainingRecord } from "./checkpointing.ts";
import { checkTrainConfig, type TrainConfig, trainLayout } from "./config.ts";
import { divergenceAt } from "./divergence.ts";
import { trainElastic } from "./elastic.ts";
import { trainParallel } from "./parallel_run.ts";

export interface StepMetrics {
  /** 1-based. */
  step: number;
  /** Mean cross-entropy of this step's global batch, nats per token. */
  loss: number;
  /** The exact entropy floor of the rows this trainer trained on (the best any model could do on them). */
  floor: number;
  lr: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Tokens this trainer trained on per second. */
  tokensPerSec: number;
  /** Bytes held on the device after the step (the fullest device's, across ranks). */
  deviceBytes: number;
  /** Bytes all ranks sent to each other during the step, in total and by link class (0 on one rank). */
  commBytes: { total: number; intra: number; inter: number };
  /** Simulated communication time of the step on the configured cluster, the slowest rank's, in ms. */
  simTime: number;
  /** Per rank, in rank order: bytes held for parameters, gradients and optimizer state. */
  memory: RankMemory[];
}

export class Trainer {
  /** The expected loss floor for rows of this run's length, in nats per token. */
  readonly floor: number;
  /** AdamW with each parameter's state (exp_avg, exp_avg_sq, step), by Hugging Face name. */
  readonly optimizer: AdamW;
  /** Where this trainer's state lies (one rank's entry of the one-device layout), for checkpoints. */
  readonly fragmentMap: FragmentMap;
  private readonly named: [string, Tensor][];
  private readonly params: Tensor[];
  private readonly lrAt: (step: number) => number;
  private stepsDone: number;
  /** The last checkpoint of the run: the one it resumed from, then each one it saved. */
  private lastCheckpoint: string | null;

  private constructor(
    readonly config: TrainConfig,
    readonly modelConfig: Phi3Config,
    readonly device: Device,
    readonly model: Phi3ForCausalLM,
    private readonly start: RunStart,
    private readonly ownsDevice: boolean,
  ) {
    const named = model.namedParameters();
    this.named = named;
    this.params = named.map(([, p]) => p);
    this.optimizer = new AdamW(named, start.adamw);
    this.lrAt = warmupCosine(start.schedule);
    this.floor = corpusFloor(config.seq);
    this.stepsDone = start.step;
    this.lastCheckpoint = config.resume ?? null;
    const blocks = model.blocks.map((block) => block.parameters.map((p) => p.name));
    this.fragmentMap = fragmentMap(modelConfig, SINGLE_RANK, blocks);
  }

  /**
   * Checks the config, opens the device (unless one is given) and builds the model, from the
   * checkpoint `config.resume` names, or with the weights of the model `config.initFrom` names, if
   * either is given. A trainer runs on one device; a layout of several ranks
   * trains through train(), which launches them.
   */
  static async create(config: TrainConfig, device?: Device): Promise<Trainer> {
    const modelConfig = checkTrainConfig(config);
    const world = worldSize(trainLayout(config));
    if (world > 1) {
      throw new RangeError(
        `train: a Trainer runs on one device, and this layout has ${world} ranks; use train(config), which launches them`,
      );
    }
    const start = await runStart(config, modelConfig);
    const owned = !device;
    device ??= await createDevice({ backend: config.backend });
    const model = new Phi3ForCausalLM(device, modelConfig, { seed: start.seed });
    const trainer = new Trainer(config, modelConfig, device, model, start, owned);
    if (start.checkpoint) {
      const state = await loadCheckpoint(null, start.checkpoint, modelConfig, trainer.fragmentMap, 0);
      importShardState(trainer.named, trainer.optimizer, trainer.fragmentMap.ranks[0], state);
    }
    if (start.initFrom) {
      const state = await readInitState(start.initFrom, trainer.fragmentMap, 0);
      importShardState(trainer.named, trainer.optimizer, trainer.fragmentMap.ranks[0], state);
    }
    return trainer;
  }

  get done(): boolean {
    return this.stepsDone >= this.config.steps;
  }

  /** Steps done so far (a resumed run starts at its checkpoint's). */
  get stepCount(): number {
    return this.stepsDone;
  }

  /**
   * Runs the next step and returns its figures. A step whose loss or gradient norm is not finite is
   * not applied: it throws TrainingDivergedError, and the trainer keeps the state before it.
   */
  async step(): Promise<StepMetrics> {
    const { batch, seq } = this.config;
    const { seed, clipNorm } = this.start;
    const began = performance.now();
    const data = globalBatch({ seed, step: this.stepsDone, batch, seq });
    const lr = this.lrAt(this.stepsDone);

    const [gradNorm, lossValue] = await tidy(async () => {
      const loss = await this.model.loss(
        this.device.tensor(data.inputs, [batch, seq]),
        this.device.tensor(data.targets, [batch, seq]),
      );
      await loss.backward();
      // Both read-backs in flight at once: each costs a wait for the device to report finished work.
      const [norm, [value]] = await Promise.all([globalGradNorm(this.params), loss.read()]);
      return [norm, value];
    });
    const diverged = divergenceAt(this.stepsDone + 1, { loss: lossValue, gradNorm }, {
      lr: this.config.lr,
      checkpoint: this.lastCheckpoint,
    });
    if (diverged) {
      this.optimizer.zeroGrad();
      throw diverged;
    }
    this.optimizer.step({ lr, gradScale: clipNorm > 0 ? clipScale(gradNorm, clipNorm) : 1 });
    this.optimizer.zeroGrad();

    this.stepsDone++;
    const seconds = (performance.now() - began) / 1000;
    if (saveDue(this.config, this.stepsDone)) this.lastCheckpoint = `${this.config.save}/${await this.save(this.config.save!)}`;
    return {
      step: this.stepsDone,
      loss: lossValue,
      floor: data.floor,
      lr,
      gradNorm,
      tokensPerSec: (batch * seq) / seconds,
      deviceBytes: this.device.stats().bytes,
      commBytes: { total: 0, intra: 0, inter: 0 },
      simTime: 0,
      memory: [this.memory()],
    };
  }

  /** Saves a checkpoint of the state after the steps done into the folder `path`; returns the checkpoint's folder name. */
  async save(path: string): Promise<string> {
    return await saveCheckpoint(null, storageAt(path), "", {
      state: await exportShardState(this.named, this.optimizer, this.fragmentMap.ranks[0]),
      map: this.fragmentMap,
      model: this.modelConfig,
      training: trainingRecord(this.config, this.start, this.stepsDone),
    });
  }

  /** Bytes of the parameters, their gradients and AdamW's two moments. */
  memory(): RankMemory {
    const bytes = this.params.reduce((sum, p) => sum + 4 * p.size, 0);
    return { parameters: bytes, gradients: bytes, optimizer: 2 * bytes, gathered: 0, secondary: 0 };
  }

  /** A few lines of text generated by the model, each started from the given prompt. */
  async sample(prompt: string, lines: number, chars: number): Promise<string[]> {
    const samples: string[] = [];
    for (let i = 0; i < lines; i++) {
      const ids = await generate(this.model, charTokenizer.encode(prompt), {
        maxNewTokens: chars,
        temperature: 0.8,
        seed: this.config.seed + i,
      });
      samples.push(prompt + charTokenizer.decode(ids));
    }
    return samples;
  }

  /** Frees the model and optimizer state, and the device when the trainer opened it. */
  dispose(): void {
    this.optimizer.dispose();
    this.model.dispose();
    if (this.ownsDevice) this.device.destroy();
  }
}

/**
 * Trains to the end and returns every step's figures: the API form of `shardlab train`. A layout of
 * several ranks (dp × tp × sp > 1) launches them as workers; the figures are then the world's. An
 * elastic run goes on after failed ranks (trainElastic, which also returns what happened); its
 * figures are every step as trained, the steps lost to a failure and trained again included. A run
 * whose loss or gradient norm stops being finite throws TrainingDivergedError, on every layout.
 */
export async function train(config: TrainConfig, onStep?: (metrics: StepMetrics) => void): Promise<StepMetrics[]> {
  checkTrainConfig(config);
  if (worldSize(trainLayout(config)) > 1) {
    if (config.elastic) return (await trainElastic(config, { onStep })).history;
    return (await trainParallel(config, onStep)).history;
  }
  const trainer = await Trainer.create(config);
  const history: StepMetrics[] = [];
  try {
    while (!trainer.done) {
      const metrics = await trainer.step();
      history.push(metrics);
      onStep?.(metrics);
    }
  } finally {
    trainer.dispose();
  }
  return history;
}
