// The building blocks of the decoder: Linear (no bias), Embedding and RMSNorm. Each holds its
// parameters under full Hugging Face names and lists them with parameters().

import { ShapeError } from "../tensor/errors.ts";
import * as ops from "../tensor/ops/index.ts";
import { formatShape } from "../tensor/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { Parameter, type ParameterFactory } from "./parameter.ts";

export interface Module {
  /** Every parameter of the module and its children, in Hugging Face order. */
  parameters(): Parameter[];
}

/** y = x·Wᵀ with W [outFeatures, inFeatures], as PyTorch's nn.Linear(bias=False). */
export class Linear implements Module {
  readonly weight: Parameter;

  constructor(factory: ParameterFactory, name: string, readonly inFeatures: number, readonly outFeatures: number) {
    this.weight = new Parameter(`${name}.weight`, [outFeatures, inFeatures], "normal", factory);
  }

  /** x [..., inFeatures] → [..., outFeatures], as one matmul over all leading positions. */
  forward(x: Tensor): Tensor {
    if (x.shape.at(-1) !== this.inFeatures) {
      throw new ShapeError(`${this.weight.name}: input ${formatShape(x.shape)} must be [..., ${this.inFeatures}]`);
    }
    const rows = ops.reshape(x, [-1, this.inFeatures]);
    const y = ops.matmul(rows, this.weight.tensor, { transB: true });
    return ops.reshape(y, [...x.shape.slice(0, -1), this.outFeatures]);
  }

  parameters(): Parameter[] {
    return [this.weight];
  }
}

/** Rows of W [numEmbeddings, dim] picked by token ids. */
export class Embedding implements Module {
  readonly weight: Parameter;

  constructor(factory: ParameterFactory, name: string, numEmbeddings: number, dim: number) {
    this.weight = new Parameter(`${name}.weight`, [numEmbeddings, dim], "normal", factory);
  }

  /** ids i32 [...] → [..., dim]. */
  forward(ids: Tensor): Tensor {
    return ops.embedding(this.weight.tensor, ids);
  }

  parameters(): Parameter[] {
    return [this.weight];
  }
}

/** x / sqrt(mean(x²) + eps) · weight over the last axis; the weight starts at ones. */
export class RMSNorm implements Module {
  readonly weight: Parameter;

  constructor(factory: ParameterFactory, name: string, dim: number, readonly eps: number) {
    this.weight = new Parameter(`${name}.weight`, [dim], "ones", factory);
  }

  forward(x: Tensor): Tensor {
    return ops.rmsNorm(x, this.weight.tensor, this.eps);
  }

  parameters(): Parameter[] {
    return [this.weight];
  }
}
