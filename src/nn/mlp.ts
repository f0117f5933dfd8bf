// Phi-3 MLP: SwiGLU with a fused gate/up projection, down_proj(silu(gate) · up).

import * as ops from "../tensor/ops/index.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { Phi3Config } from "./config.ts";
import { Linear, type Module } from "./modules.ts";
import type { Parameter, ParameterFactory } from "./parameter.ts";

export class Phi3MLP implements Module {
  /** Rows: intermediateSize for the gate, then intermediateSize for up. */
  readonly gateUpProj: Linear;
  readonly downProj: Linear;

  constructor(factory: ParameterFactory, name: string, config: Phi3Config) {
    this.gateUpProj = new Linear(factory, `${name}.gate_up_proj`, config.hiddenSize, 2 * config.intermediateSize);
    this.downProj = new Linear(factory, `${name}.down_proj`, config.intermediateSize, config.hiddenSize);
  }

  /** x [..., hidden] → [..., hidden]. */
  forward(x: Tensor): Tensor {
    const [gate, up] = ops.split(this.gateUpProj.forward(x), 2, -1);
    return this.downProj.forward(ops.mul(ops.silu(gate), up));
  }

  parameters(): Parameter[] {
    return [...this.gateUpProj.parameters(), ...this.downProj.parameters()];
  }
}
