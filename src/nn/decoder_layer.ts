// One Phi-3 decoder layer, pre-norm with residuals:
//   h = x + attn(input_layernorm(x));  out = h + mlp(post_attention_layernorm(h))

import * as ops from "../tensor/ops/index.ts";
import { tidy } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { Phi3Attention } from "./attention.ts";
import type { Phi3Config } from "./config.ts";
import { localLayers, type Phi3Layers } from "./layers.ts";
import { type Module, RMSNorm } from "./modules.ts";
import { Phi3MLP } from "./mlp.ts";
import type { Parameter, ParameterFactory } from "./parameter.ts";

export class Phi3DecoderLayer implements Module {
  // Declared in Hugging Face's order.
  readonly selfAttn: Phi3Attention;
  readonly mlp: Phi3MLP;
  readonly inputLayernorm: RMSNorm;
  readonly postAttentionLayernorm: RMSNorm;

  /** name is the layer's prefix, e.g. "model.layers.3". */
  constructor(factory: ParameterFactory, name: string, config: Phi3Config, layers: Phi3Layers = localLayers) {
    this.selfAttn = new Phi3Attention(factory, `${name}.self_attn`, config, layers);
    this.mlp = new Phi3MLP(factory, `${name}.mlp`, config, layers);
    this.inputLayernorm = new RMSNorm(factory, `${name}.input_layernorm`, config.hiddenSize, config.rmsNormEps);
    this.postAttentionLayernorm = new RMSNorm(factory, `${name}.post_attention_layernorm`, config.hiddenSize, config.rmsNormEps);
  }

  /** x [B, T, hidden] → [B, T, hidden]; the layer's temporaries are freed before it resolves. */
  forward(x: Tensor): Promise<Tensor> {
    return tidy(async () => {
      const h = ops.add(x, await this.selfAttn.forward(this.inputLayernorm.forward(x)));
      return ops.add(h, await this.mlp.forward(this.postAttentionLayernorm.forward(h)));
    });
  }

  parameters(): Parameter[] {
    return [
      ...this.selfAttn.parameters(),
      ...this.mlp.parameters(),
      ...this.inputLayernorm.parameters(),
      ...this.postAttentionLayernorm.parameters(),
    ];
  }
}
