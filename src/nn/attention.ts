// Phi-3 self-attention: one fused projection for q, k and v, rotary positions, grouped-query
// causal attention, and the output projection.

import { ShapeError } from "../tensor/errors.ts";
import * as ops from "../tensor/ops/index.ts";
import { tidy } from "../tensor/scope.ts";
import { formatShape } from "../tensor/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { headDim, type Phi3Config } from "./config.ts";
import { type Forward, type Layer, localLayers, type Phi3Layers } from "./layers.ts";
import type { Module } from "./modules.ts";
import type { Parameter, ParameterFactory } from "./parameter.ts";

export class Phi3Attention implements Module {
  // Declared in Hugging Face's order: o_proj before qkv_proj.
  readonly oProj: Layer;
  /** Rows: numHeads·headDim for q, then numKvHeads·headDim for k, then as many for v. */
  readonly qkvProj: Layer;
  private readonly attend: Forward;

  constructor(factory: ParameterFactory, private readonly name: string, config: Phi3Config, layers: Phi3Layers = localLayers) {
    const heads = {
      numHeads: config.numHeads,
      numKvHeads: config.numKvHeads,
      headDim: headDim(config),
      ropeTheta: config.ropeTheta,
    };
    const qWidth = heads.numHeads * heads.headDim;
    const kvWidth = heads.numKvHeads * heads.headDim;
    this.oProj = layers.rowLinear(factory, `${name}.o_proj`, qWidth, config.hiddenSize);
    this.qkvProj = layers.columnLinear(factory, `${name}.qkv_proj`, config.hiddenSize, qWidth + 2 * kvWidth);
    this.attend = layers.attention(name, heads);
  }

  /** x [B, T, hidden] → [B, T, hidden]; position t attends to positions 0..t. */
  forward(x: Tensor): Promise<Tensor> {
    if (x.shape.length !== 3) throw new ShapeError(`${this.name}: input ${formatShape(x.shape)} must be [B, T, hidden]`);
    return tidy(async () => await this.oProj.forward(await this.attend(await this.qkvProj.forward(x))));
  }

  parameters(): Parameter[] {
    return [...this.oProj.parameters(), ...this.qkvProj.parameters()];
  }
}

export interface AttentionHeads {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  ropeTheta: number;
}

/**
 * The attention between the two projections: qkv [B, T, (H + 2·Hkv)·D] (q heads, then k, then v)
 * → rotary positions → grouped-query causal attention → [B, T, H·D]. Tensor-parallel ranks call it
 * with their own heads.
 */
export function attendFused(qkv: Tensor, { numHeads: H, numKvHeads: Hkv, headDim: D, ropeTheta }: AttentionHeads): Tensor {
  const [B, T] = qkv.shape;
  const [q, k, v] = ops.split(qkv, [H * D, Hkv * D, Hkv * D], 2);
  // [B, T, heads·D] → [B, heads, T, D]
  const toHeads = (t: Tensor, heads: number) => ops.permute(ops.reshape(t, [B, T, heads, D]), [0, 2, 1, 3]);
  const rope = { theta: ropeTheta };
  const o = ops.attention(ops.rope(toHeads(q, H), rope), ops.rope(toHeads(k, Hkv), rope), toHeads(v, Hkv), { causal: true });
  return ops.reshape(ops.permute(o, [0, 2, 1, 3]), [B, T, H * D]);
}
