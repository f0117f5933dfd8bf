// The `ops` namespace: the functional form of every op.

export { add, cast, div, equal, exp, gelu, log, mul, neg, relu, scale, silu, sqrt, sub } from "./elementwise.ts";
export { max, mean, sum } from "./reduce.ts";
export { broadcastTo, concat, permute, reshape, slice, split, transpose, writeRange } from "./layout.ts";
export { matmul, type MatmulOptions } from "./matmul.ts";
export { crossEntropy, embedding, layerNorm, logSoftmax, rmsNorm, rope, type RopeOptions, softmax } from "./nn.ts";
export { attention, type AttentionOptions } from "./attention.ts";
export { adamwUpdate } from "./adamw.ts";
export { gatherBlocks, scatterAddBlocks } from "./head_exchange.ts";
export {
  checkScales,
  dequantize,
  quantize,
  type Quantized,
  quantizedBytes,
  type QuantizedSets,
  type QuantSpec,
  requantizeSum,
} from "./quantize.ts";
export { noGrad } from "../autograd.ts";
export { keep, tidy } from "../scope.ts";
