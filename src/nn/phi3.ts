// The Phi-3 decoder: Phi3Model (embed_tokens, layers, norm) and Phi3ForCausalLM (the model and an
// untied lm_head), with parameters under their Hugging Face names.
//
// The causal LM runs as a chain of blocks: the embedding, each decoder layer, and the head (final
// norm, lm_head, cross-entropy). loss() runs them in turn through a BlockRunner; one device runs
// each block as it is, and a parallel strategy may wrap them (ZeRO-3 gathers a block's parameters
// around it and recomputes it in backward).

import type { Device } from "../tensor/device.ts";
import { DTypeError, ShapeError } from "../tensor/errors.ts";
import * as ops from "../tensor/ops/index.ts";
import { tidy } from "../tensor/scope.ts";
import { formatShape, sameShape } from "../tensor/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { type Phi3Config, validateConfig } from "./config.ts";
import { Phi3DecoderLayer } from "./decoder_layer.ts";
import { type Layer, localLayers, type Phi3Layers } from "./layers.ts";
import { type Module, RMSNorm } from "./modules.ts";
import { type Parameter, type ParameterFactory, seededParameters } from "./parameter.ts";

export class Phi3Model implements Module {
  readonly embedTokens: Layer;
  /** Callable one at a time: h = await layers[i].forward(h). */
  readonly layers: Phi3DecoderLayer[];
  readonly norm: RMSNorm;

  constructor(factory: ParameterFactory, config: Phi3Config, layers: Phi3Layers = localLayers) {
    validateConfig(config);
    this.embedTokens = layers.embedding(factory, "model.embed_tokens", config.vocabSize, config.hiddenSize);
    this.layers = Array.from(
      { length: config.numLayers },
      (_, i) => new Phi3DecoderLayer(factory, `model.layers.${i}`, config, layers),
    );
    this.norm = new RMSNorm(factory, "model.norm", config.hiddenSize, config.rmsNormEps);
  }

  /** ids i32 [B, T] → final hidden states [B, T, hidden]. */
  forward(ids: Tensor): Promise<Tensor> {
    return tidy(async () => {
      let h = await this.embedTokens.forward(ids);
      for (const layer of this.layers) h = await layer.forward(h);
      return this.norm.forward(h);
    });
  }

  parameters(): Parameter[] {
    return [
      ...this.embedTokens.parameters(),
      ...this.layers.flatMap((layer) => layer.parameters()),
      ...this.norm.parameters(),
    ];
  }
}

/** The tokens of a step: ids and targets, i32 [B, T] each. */
export interface Tokens {
  ids: Tensor;
  targets: Tensor;
}

/** A unit of the forward: the embedding, a decoder layer, or the head. */
export interface ModelBlock {
  /** "embed", "layer0" … or "head": names the block in collective tags. */
  label: string;
  parameters: Parameter[];
  /** x: the previous block's output (null for the embedding); the head returns the mean loss. */
  run(x: Tensor | null, tokens: Tokens): Promise<Tensor>;
}

/** Runs one block of the chain; the caller owns the result. */
export type BlockRunner = (block: ModelBlock, x: Tensor | null, tokens: Tokens) => Promise<Tensor>;

/** Runs a block as it is (one device, and every strategy but ZeRO-3). */
export const runAsIs: BlockRunner = (block, x, tokens) => block.run(x, tokens);

/**
 * Where a model's parameters come from (seeded initial values, or a factory of the caller's), and
 * which layers it is built from (one device's by default).
 */
export type Phi3Init = ({ seed: number } | { parameters: ParameterFactory }) & { layers?: Phi3Layers };

export class Phi3ForCausalLM implements Module {
  readonly config: Readonly<Phi3Config>;
  readonly model: Phi3Model;
  readonly lmHead: Layer;
  /** The forward as a chain: embed, layer0 … layer{L−1}, head. */
  readonly blocks: readonly ModelBlock[];
  private readonly layers: Phi3Layers;

  /**
   * { seed } allocates every parameter on device from (seed, name); { parameters: factory } lets
   * the factory back each one (shapeOnly allocates nothing, for counting and layout).
   */
  constructor(readonly device: Device, config: Phi3Config, init: Phi3Init) {
    validateConfig(config);
    this.config = { ...config };
    this.layers = init.layers ?? localLayers;
    const factory = "parameters" in init ? init.parameters : seededParameters(device, init.seed);
    this.model = new Phi3Model(factory, this.config, this.layers);
    this.lmHead = this.layers.columnLinear(factory, "lm_head", config.hiddenSize, config.vocabSize);
    const { embedTokens, layers, norm } = this.model;
    this.blocks = [
      { label: "embed", parameters: embedTokens.parameters(), run: async (_x, tokens) => await embedTokens.forward(tokens.ids) },
      ...layers.map((layer, i): ModelBlock => ({
        label: `layer${i}`,
        parameters: layer.parameters(),
        run: (x) => layer.forward(x!),
      })),
      {
        label: "head",
        parameters: [...norm.parameters(), ...this.lmHead.parameters()],
        run: (x, tokens) => this.head(x!, tokens.targets),
      },
    ];
  }

  /** ids i32 [B, T] with T ≤ maxSeqLen → logits f32 [B, T, vocab]. */
  forward(ids: Tensor): Promise<Tensor> {
    this.checkTokens("forward", "ids", ids);
    return tidy(async () => await this.lmHead.forward(await this.model.forward(ids)));
  }

  /**
   * Mean cross-entropy (nats) of targets i32 [B, T] under forward(ids): a scalar. Each block runs
   * through `runBlock` (by default as it is).
   */
  loss(ids: Tensor, targets: Tensor, runBlock: BlockRunner = runAsIs): Promise<Tensor> {
    this.checkTokens("loss", "ids", ids);
    this.checkTokens("loss", "targets", targets);
    if (!sameShape(ids.shape, targets.shape)) {
      throw new ShapeError(
        `loss: ids ${formatShape(ids.shape)} and targets ${formatShape(targets.shape)} must have the same shape`,
      );
    }
    return tidy(async () => {
      let x: Tensor | null = null;
      for (const block of this.blocks) x = await runBlock(block, x, { ids, targets });
      return x!;
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

  /** The last block: final norm, lm_head and the mean cross-entropy over every position. */
  private head(x: Tensor, targets: Tensor): Promise<Tensor> {
    return tidy(async () => {
      const logits = await this.lmHead.forward(this.model.norm.forward(x));
      const columns = logits.shape.at(-1)!;
      return await this.layers.crossEntropy(ops.reshape(logits, [-1, columns]), ops.reshape(targets, [-1]));
    });
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
