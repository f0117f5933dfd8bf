// The cases of the kernel benchmark: each op as shardlab runs it and as TF.js composes it on
// WebGPU, with the work one rep does (FLOPs or bytes) and the target it is held to. ZeRO++'s block
// quantization has no TF.js peer (TF.js has no 8- or 4-bit tensors): those cases are held to the
// copy bound alone.

import { ops, type Tensor } from "../mod.ts";
import { tf, type Tfjs } from "./tfjs.ts";

/**
 * matmul: shardlab ≥ 1.5× TF.js; causalAttention: ≥ 2× TF.js; elementwise: shardlab's bandwidth ≥ 70 %
 * of the adapter's buffer-copy bandwidth; quantization: ≥ 50 % of it (quantize reads its input
 * twice, once for the blocks' scales and once to pack, and the bytes count it once).
 */
export type TargetKind = "matmul" | "causalAttention" | "elementwise" | "quantization";

export const TARGETS: Record<TargetKind, { threshold: number; rule: string }> = {
  matmul: { threshold: 1.5, rule: "shardlab ≥ 1.5× TF.js" },
  causalAttention: { threshold: 2, rule: "shardlab ≥ 2× TF.js" },
  elementwise: { threshold: 0.7, rule: "shardlab ≥ 70% of copy bandwidth" },
  quantization: { threshold: 0.5, rule: "shardlab ≥ 50% of copy bandwidth" },
};

export interface KernelCase {
  name: string;
  target: TargetKind;
  /** FLOPs per rep for matmul and attention, bytes read + written per rep for elementwise cases. */
  work: number;
  /** Shapes of the random f32 inputs, uploaded identically to both libraries. */
  inputShapes: number[][];
  /** Turns the random inputs into the op's own, once, outside the timed loop (default: as they are). */
  prepare?(inputs: Tensor[]): Tensor[];
  shardlab(inputs: Tensor[]): Tensor;
  /** `constants` are made once per case by tfjsConstants, outside the timed loop; absent where TF.js has no peer. */
  tfjs?(inputs: Tfjs.Tensor[], constants: Tfjs.Tensor[]): Tfjs.Tensor;
  tfjsConstants?: () => Tfjs.Tensor[];
}

export function isBandwidthCase(kernelCase: KernelCase): boolean {
  return kernelCase.target === "elementwise" || kernelCase.target === "quantization";
}

const F32_BYTES = 4;
const RMS_NORM_EPS = 1e-5;
const SCALE_ALPHA = 0.5;

/** [M, K] × [K, N] with either operand optionally stored transposed, as in a backward pass. */
function matmulCase(name: string, M: number, K: number, N: number, transA = false, transB = false): KernelCase {
  return {
    name,
    target: "matmul",
    work: 2 * M * N * K,
    inputShapes: [transA ? [K, M] : [M, K], transB ? [N, K] : [K, N]],
    shardlab: ([a, b]) => ops.matmul(a, b, { transA, transB }),
    tfjs: ([a, b]) => tf.matMul(a, b, transA, transB),
  };
}

/**
 * Causal attention over q, k, v [B, H, T, D]. The work counted is the causal half of the two
 * products, 2·(2·B·H·T²·D)/2, for both libraries, so the rate ratio equals the time ratio.
 * TF.js has no fused attention: it runs q·kᵀ, scale, a precomputed −∞/0 causal bias, softmax, ·v.
 */
function causalAttentionCase(B: number, H: number, T: number, D: number): KernelCase {
  const shape = [B, H, T, D];
  return {
    name: `attention causal [${shape.join(", ")}]`,
    target: "causalAttention",
    work: 2 * B * H * T * T * D,
    inputShapes: [shape, shape, shape],
    shardlab: ([q, k, v]) => ops.attention(q, k, v, { causal: true }),
    tfjsConstants: () => [tf.tensor2d(causalBias(T), [T, T]), tf.scalar(1 / Math.sqrt(D))],
    tfjs: ([q, k, v], [bias, scale]) => {
      const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), scale), bias);
      return tf.matMul(tf.softmax(scores), v);
    },
  };
}

/** 0 where key ≤ query, −∞ after it. */
function causalBias(T: number): Float32Array {
  const bias = new Float32Array(T * T);
  for (let query = 0; query < T; query++) bias.fill(-Infinity, query * T + query + 1, (query + 1) * T);
  return bias;
}

function softmaxCase(rows: number, cols: number): KernelCase {
  return {
    name: `softmax [${rows}, ${cols}]`,
    target: "elementwise",
    work: 2 * rows * cols * F32_BYTES,
    inputShapes: [[rows, cols]],
    shardlab: ([x]) => ops.softmax(x),
    tfjs: ([x]) => tf.softmax(x),
  };
}

/** Bytes counted: x and w read, y written (shardlab's saved per-row rstd is left out). */
function rmsNormCase(rows: number, cols: number): KernelCase {
  return {
    name: `rmsNorm [${rows}, ${cols}]`,
    target: "elementwise",
    work: (2 * rows * cols + cols) * F32_BYTES,
    inputShapes: [[rows, cols], [cols]],
    shardlab: ([x, w]) => ops.rmsNorm(x, w, RMS_NORM_EPS),
    tfjsConstants: () => [tf.scalar(RMS_NORM_EPS)],
    tfjs: ([x, w], [eps]) => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), w),
  };
}

function addCase(numel: number): KernelCase {
  return {
    name: `add ${numel / 2 ** 20}M elements`,
    target: "elementwise",
    work: 3 * numel * F32_BYTES,
    inputShapes: [[numel], [numel]],
    shardlab: ([a, b]) => ops.add(a, b),
    tfjs: ([a, b]) => tf.add(a, b),
  };
}

/**
 * One read and one write per element: the least an elementwise kernel can do, so its share of the
 * copy bound is the ceiling of every other bandwidth case on the adapter.
 */
function scaleCase(numel: number): KernelCase {
  return {
    name: `scale ${numel / 2 ** 20}M elements`,
    target: "elementwise",
    work: 2 * numel * F32_BYTES,
    inputShapes: [[numel]],
    shardlab: ([x]) => ops.scale(x, SCALE_ALPHA),
    tfjsConstants: () => [tf.scalar(SCALE_ALPHA)],
    tfjs: ([x], [alpha]) => tf.mul(x, alpha),
  };
}

/** Bytes of n elements quantized to `bits` in blocks of `block`: the levels and one f32 scale per block. */
function quantizedBytes(numel: number, bits: 4 | 8, block: number): number {
  return (numel * bits) / 8 + F32_BYTES * Math.ceil(numel / block);
}

/** Bytes counted: the f32 input read once, the levels and scales written. */
function quantizeCase(numel: number, bits: 4 | 8, block: number): KernelCase {
  return {
    name: `quantize INT${bits} ${numel / 2 ** 20}M elements, blocks of ${block}`,
    target: "quantization",
    work: numel * F32_BYTES + quantizedBytes(numel, bits, block),
    inputShapes: [[numel]],
    shardlab: ([x]) => ops.quantize(x, { bits, block }).q,
  };
}

/** Bytes counted: the levels and scales read, the f32 result written. */
function dequantizeCase(numel: number, bits: 4 | 8, block: number): KernelCase {
  return {
    name: `dequantize INT${bits} ${numel / 2 ** 20}M elements, blocks of ${block}`,
    target: "quantization",
    work: quantizedBytes(numel, bits, block) + numel * F32_BYTES,
    inputShapes: [[numel]],
    prepare: ([x]) => {
      const { q, scales } = ops.quantize(x, { bits, block });
      return [q, scales];
    },
    shardlab: ([q, scales]) => ops.dequantize(q, scales, { bits, block }, { n: numel }),
  };
}

export const KERNEL_CASES: KernelCase[] = [
  matmulCase("matmul 1024×1024×1024", 1024, 1024, 1024),
  matmulCase("matmul qkv [4096,256]×[256,768]", 4096, 256, 768),
  matmulCase("matmul proj [4096,768]×[768,256]", 4096, 768, 256),
  matmulCase("matmul dW xᵀ·dy [4096,256]ᵀ×[4096,768]", 256, 4096, 768, true),
  matmulCase("matmul dX dy·Wᵀ [4096,768]×[256,768]ᵀ", 4096, 768, 256, false, true),
  causalAttentionCase(1, 8, 512, 64),
  softmaxCase(4096, 1024),
  rmsNormCase(4096, 1024),
  addCase(16 * 2 ** 20),
  scaleCase(16 * 2 ** 20),
  quantizeCase(16 * 2 ** 20, 8, 2048),
  quantizeCase(16 * 2 ** 20, 4, 2048),
  dequantizeCase(16 * 2 ** 20, 8, 2048),
  dequantizeCase(16 * 2 ** 20, 4, 2048),
];
