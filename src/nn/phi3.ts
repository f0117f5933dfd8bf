// The Phi-3 decoder: Phi3Model (embed_tokens, layers, norm) and Phi3ForCausalLM (the model and an
// untied lm_head), with parameters under their Hugging Face names.

import type { Device } from "../tensor/device.ts";
import { DTypeError, ShapeError } from "../tensor/errors.ts";
import * as ops from "../tensor/ops/index.ts";
import { formatShape, sameShape } from "../tensor/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { type Phi3Config, validateConfig } from "./config.ts";
import { Phi3DecoderLayer } from "./decoder_layer.ts";
import { Embedding, Linear, type Module, RMSNorm } from "./modules.ts";
import { type Parameter, type ParameterFactory, seededParameters } from "./parameter.ts";

export class Phi3Model implements Module {
  readonly embedTokens: Embedding;
  /** Callable one at a time: h = layers[i].forward(h). */
  readonly layers: Phi3DecoderLayer[];
  readonly norm: RMSNorm;

  constructor(factory: ParameterFactory, config: Phi3Config) {
    validateConfig(config);
    this.embedTokens = new Embedding(factory, "model.embed_tokens", config.vocabSize, config.hiddenSize);
    this.layers = Array.from({ length: config.numLayers }, (_, i) => new Phi3DecoderLayer(factory, `model.layers.${i}`, config));
    this.norm = new RMSNorm(factory, "model.norm", config.hiddenSize, config.rmsNormEps);
  }

  /** ids i32 [B, T] → final hidden states [B, T, hidden]. */
  forward(ids: Tensor): Tensor {
    let h = this.embedTokens.forward(ids);
    for (const layer of this.layers) h = layer.forward(h);
    return this.norm.forward(h);
  }

  parameters(): Parameter[] {
    return [
      ...this.embedTokens.parameters(),
      ...this.layers.flatMap((layer) => layer.parameters()),
      ...this.norm.parameters(),
    ];
  }
}

/** Where a model's parameters come from: seeded initial values, or a factory of the caller's. */
export type Phi3Init = { seed: number } | { parameters: ParameterFactory };

export class Phi3ForCausalLM implements Module {
  readonly config: Readonly<Phi3Config>;
  readonly model: Phi3Model;
  readonly lmHead: Linear;

  /**
   * { seed } allocates every parameter on device from (seed, name); { parameters: factory } lets
   * the factory back each one (shapeOnly allocates nothing, for counting and layout).
   */
  constructor(readonly device: Device, config: Phi3Config, init: Phi3Init) {
    validateConfig(config);
    this.config = { ...config };
    const factory = "parameters" in init ? init.parameters : seededParameters(device, init.seed);
    this.model = new Phi3Model(factory, this.config);
    this.lmHead = new Linear(factory, "lm_head", config.hiddenSize, config.vocabSize);
  }

  /** ids i32 [B, T] with T ≤ maxSeqLen → logits f32 [B, T, vocab]. */
  forward(ids: Tensor): Tensor {
    this.checkTokens("forward", "ids", ids);
    return ops.tidy(() => this.lmHead.forward(this.model.forward(ids)));
  }

  /** Mean cross-entropy (nats) of targets i32 [B, T] under forward(ids): a scalar. */
  loss(ids: Tensor, targets: Tensor): Tensor {
    this.checkTokens("loss", "targets", targets);
    if (!sameShape(ids.shape, targets.shape)) {
      throw new ShapeError(
        `loss: ids ${formatShape(ids.shape)} and targets ${formatShape(targets.shape)} must have the same shape`,
      );
    }
    return ops.tidy(() => {
      const logits = this.forward(ids);
      return ops.crossEntropy(ops.reshape(logits, [-1, this.config.vocabSize]), ops.reshape(targets, [-1]));
    });
  }

  /** Every parameter slot in Hugging Face order, allocated or not. */
  parameters(): Parameter[] {
    return [...this.model.parameters(), ...this.lmHead.parameters()];
  }

  /** [name, tensor] for every parameter in Hugging Face order; throws if one is unallocated. */
  namedParameters(): [string, Tensor][] {
    return this.parameters().map((p) => [p.name, p.tensor]);
  }

  /** Frees every allocated parameter and any gradient it holds. */
  dispose(): void {
    for (const p of this.parameters()) {
      p.value?.grad?.dispose();
      p.value?.dispose();
      p.value = null;
    }
  }

  private checkTokens(op: string, what: string, t: Tensor): void {
    if (t.dtype !== "i32") throw new DTypeError(`${op}: ${what} must be i32 token ids, got ${t.dtype}`);
    const T = t.shape[1];
    if (t.shape.length !== 2 || T < 1 || T > this.config.maxSeqLen || t.shape[0] < 1) {
      throw new ShapeError(
        `${op}: ${what} ${formatShape(t.shape)} must be [B, T] with B ≥ 1 and 1 ≤ T ≤ maxSeqLen ${this.config.maxSeqLen}`,
      );
    }
  }
}
