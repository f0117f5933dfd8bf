// One Phi-3 decoder layer, pre-norm with residuals:
//   h = x + attn(input_layernorm(x));  out = h + mlp(post_attention_layernorm(h))

import * as ops from "../tensor/ops/index.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { Phi3Attention } from "./attention.ts";
import type { Phi3Config } from "./config.ts";
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
  constructor(factory: ParameterFactory, name: string, config: Phi3Config) {
    this.selfAttn = new Phi3Attention(factory, `${name}.self_attn`, config);
    this.mlp = new Phi3MLP(factory, `${name}.mlp`, config);
    this.inputLayernorm = new RMSNorm(factory, `${name}.input_layernorm`, config.hiddenSize, config.rmsNormEps);
    this.postAttentionLayernorm = new RMSNorm(factory, `${name}.post_attention_layernorm`, config.hiddenSize, config.rmsNormEps);
  }

  /** x [B, T, hidden] → [B, T, hidden]; the layer's temporaries are freed before it returns. */
  forward(x: Tensor): Tensor {
    return ops.tidy(() => {
      const h = ops.add(x, this.selfAttn.forward(this.inputLayernorm.forward(x)));
      return ops.add(h, this.mlp.forward(this.postAttentionLayernorm.forward(h)));
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
