// Phi-3 MLP: SwiGLU with a fused gate/up projection, down_proj(silu(gate) · up).

import * as ops from "../tensor/ops/index.ts";
import { tidy } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { Phi3Config } from "./config.ts";
import { type Layer, localLayers, type Phi3Layers } from "./layers.ts";
import type { Module } from "./modules.ts";
import type { Parameter, ParameterFactory } from "./parameter.ts";

export class Phi3MLP implements Module {
  /** Rows: intermediateSize for the gate, then intermediateSize for up. */
  readonly gateUpProj: Layer;
  readonly downProj: Layer;

  constructor(factory: ParameterFactory, name: string, config: Phi3Config, layers: Phi3Layers = localLayers) {
    this.gateUpProj = layers.columnLinear(factory, `${name}.gate_up_proj`, config.hiddenSize, 2 * config.intermediateSize);
    this.downProj = layers.rowLinear(factory, `${name}.down_proj`, config.intermediateSize, config.hiddenSize);
  }

  /** x [..., hidden] → [..., hidden]. */
  forward(x: Tensor): Promise<Tensor> {
    return tidy(async () => {
      const [gate, up] = ops.split(await this.gateUpProj.forward(x), 2, -1);
      return await this.downProj.forward(ops.mul(ops.silu(gate), up));
    });
  }

  parameters(): Parameter[] {
    return [...this.gateUpProj.parameters(), ...this.downProj.parameters()];
  }
}
