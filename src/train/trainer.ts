// The training loop: global batch → forward → backward → clip → AdamW, one step at a time, with the
// figures a person watches (loss beside the corpus floor, learning rate, gradient norm, tokens per
// second, device bytes). On one device it trains the whole global batch; as one data-parallel
// replica it trains its rows of it and lets the replica's strategy (src/parallel/) reduce the
// gradients between backward and clipping, so clipping and AdamW see the global batch's gradient.

import { createDevice, type Device } from "../tensor/device.ts";
import { tidy } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { Phi3Config } from "../nn/config.ts";
import { Phi3ForCausalLM } from "../nn/phi3.ts";
import { generate } from "../nn/generate.ts";
import { charTokenizer } from "../data/tokenizer.ts";
import { batchRows, corpusFloor, globalBatch } from "../data/corpus.ts";
import { AdamW } from "../optim/adamw.ts";
import { clipScale, globalGradNorm } from "../optim/clip.ts";
import { warmupCosine } from "../optim/schedule.ts";
import { checkTrainConfig, type TrainConfig } from "./config.ts";

/** One data-parallel replica's share of the global batch and its strategy's reductions. */
export interface Replica {
  /** The first row of the global batch this replica trains on. */
  rowStart: number;
  /** Rows it trains on; every replica of the group trains the same number. */
  rowCount: number;
  /** Runs after backward, before clipping: leaves in every parameter's .grad the gradient of the global batch's mean loss. */
  reduceGradients(params: readonly [string, Tensor][]): Promise<void>;
  /** The global batch's mean loss from this replica's mean loss over its rows. */
  reduceLoss(loss: number): Promise<number>;
}

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
  /** Bytes held on the device after the step. */
  deviceBytes: number;
}

export class Trainer {
  /** The expected loss floor for rows of this run's length, in nats per token. */
  readonly floor: number;
  private readonly optimizer: AdamW;
  private readonly named: [string, Tensor][];
  private readonly params: Tensor[];
  private readonly lrAt: (step: number) => number;
  private stepsDone = 0;

  private constructor(
    readonly config: TrainConfig,
    readonly modelConfig: Phi3Config,
    readonly device: Device,
    readonly model: Phi3ForCausalLM,
    private readonly ownsDevice: boolean,
    private readonly replica: Replica | undefined,
  ) {
    const named = model.namedParameters();
    this.named = named;
    this.params = named.map(([, p]) => p);
    this.optimizer = new AdamW(named, { weightDecay: config.weightDecay ?? 0.1 });
    this.lrAt = warmupCosine({
      maxLr: config.lr,
      minLr: config.lr / 10,
      warmupSteps: config.warmupSteps ?? Math.min(100, Math.floor(config.steps / 10)),
      totalSteps: config.steps,
    });
    this.floor = corpusFloor(config.seq);
  }

  /**
   * Checks the config, opens the device (unless one is given) and builds the model. With `replica`
   * the trainer is one data-parallel replica: it trains rows rowStart .. rowStart + rowCount − 1 of
   * each global batch and reduces gradients and loss through the replica.
   */
  static async create(config: TrainConfig, device?: Device, replica?: Replica): Promise<Trainer> {
    const modelConfig = checkTrainConfig(config);
    if (replica) checkReplicaRows(config.batch, replica);
    const owned = !device;
    device ??= await createDevice({ backend: config.backend });
    const model = new Phi3ForCausalLM(device, modelConfig, { seed: config.seed });
    return new Trainer(config, modelConfig, device, model, owned, replica);
  }

  get done(): boolean {
    return this.stepsDone >= this.config.steps;
  }

  /** Runs the next step and returns its figures. */
  async step(): Promise<StepMetrics> {
    const { seed, batch, seq, clipNorm = 1 } = this.config;
    const start = performance.now();
    const replica = this.replica;
    const rows = replica ? replica.rowCount : batch;
    const data = replica
      ? batchRows({ seed, step: this.stepsDone, rowStart: replica.rowStart, rowCount: rows, seq })
      : globalBatch({ seed, step: this.stepsDone, batch, seq });
    const lr = this.lrAt(this.stepsDone);

    const inputs = this.device.tensor(data.inputs, [rows, seq]);
    const targets = this.device.tensor(data.targets, [rows, seq]);
    const loss = tidy(() => this.model.loss(inputs, targets));
    await loss.backward();
    inputs.dispose();
    targets.dispose();
    if (replica) await replica.reduceGradients(this.named);

    // Both read-backs in flight at once: each costs a wait for the device to report finished work.
    const [gradNorm, [rowsLoss]] = await Promise.all([globalGradNorm(this.params), loss.read()]);
    loss.dispose();
    this.optimizer.step({ lr, gradScale: clipNorm > 0 ? clipScale(gradNorm, clipNorm) : 1 });
    this.optimizer.zeroGrad();
    const lossValue = replica ? await replica.reduceLoss(rowsLoss) : rowsLoss;

    this.stepsDone++;
    const seconds = (performance.now() - start) / 1000;
    return {
      step: this.stepsDone,
      loss: lossValue,
      floor: data.floor,
      lr,
      gradNorm,
      tokensPerSec: (rows * seq) / seconds,
      deviceBytes: this.device.stats().bytes,
    };
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

function checkReplicaRows(batch: number, { rowStart, rowCount }: Replica): void {
  if (!Number.isInteger(rowStart) || !Number.isInteger(rowCount) || rowStart < 0 || rowCount < 1 || rowStart + rowCount > batch) {
    throw new RangeError(`train: a replica's rows ${rowStart} .. ${rowStart + rowCount - 1} must lie inside the global batch of ${batch} rows`);
  }
}

/** Trains to the end and returns every step's figures: the API form of `shardlab train`. */
export async function train(config: TrainConfig, onStep?: (metrics: StepMetrics) => void): Promise<StepMetrics[]> {
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
