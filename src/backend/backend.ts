// The contract between the tensor runtime and a backend.
//
// A backend owns memory (opaque Storage handles) and runs kernels on it. It knows nothing of
// Tensor, shapes beyond the sizes each kernel is given, or autograd: the tensor layer validates
// shapes and dtypes before it calls in, so a backend may assume its arguments are consistent.
//
// Conventions for every kernel below:
// - Storages are dense and row-major. Unless a parameter says otherwise, element type is f32.
// - A kernel returns freshly allocated storages for its outputs and never changes its inputs
//   (copyStrided and adamw write in place, and say so).
// - Sizes are element counts; a size of 0 is valid and yields an empty storage.
// - The CPU backend computes eagerly; the WebGPU backend records work and submits it in batches,
//   so results appear only through read().

import type { DType, RawArray } from "../tensor/dtype.ts";

/** An allocation owned by a backend. `bytes` is what the allocation occupies on the device. */
export interface Storage {
  readonly bytes: number;
}

export type UnaryOp = "neg" | "exp" | "log" | "sqrt" | "relu" | "silu" | "gelu" | "scale";
/** Activations whose derivative needs its own kernel. */
export type ActivationOp = "relu" | "silu" | "gelu";
/** `eq` yields 1 where a == b and 0 elsewhere. */
export type BinaryOp = "add" | "sub" | "mul" | "div" | "eq";
export type ReduceOp = "sum" | "mean" | "max";

export interface MatmulParams {
  /** Number of independent products; output is [batch, M, N]. */
  batch: number;
  M: number;
  N: number;
  K: number;
  /** a holds [K, M] per batch instead of [M, K]. */
  transA: boolean;
  /** b holds [N, K] per batch instead of [K, N]. */
  transB: boolean;
  /** Elements between consecutive batch entries of a and of b: M·K (or N·K), or 0 to broadcast one matrix. */
  aBatchStride: number;
  bBatchStride: number;
}

export interface AttentionParams {
  B: number;
  /** Query heads; q is [B, Hq, T, D]. */
  Hq: number;
  /** Key/value heads; k and v are [B, Hkv, T, D]. Hq % Hkv == 0; query head h reads kv head floor(h / (Hq / Hkv)). */
  Hkv: number;
  T: number;
  D: number;
  causal: boolean;
  /** Multiplies q·k before the softmax (1/sqrt(D) for standard attention). */
  scale: number;
}

export interface StridedCopy {
  /** Index space of the copy; every index i in it copies src[srcOffset + Σ i_k·srcStrides_k] to dst[dstOffset + Σ i_k·dstStrides_k]. */
  shape: readonly number[];
  srcOffset: number;
  srcStrides: readonly number[];
  dstOffset: number;
  dstStrides: readonly number[];
}

export interface AdamWParams {
  /** Learning rate for this step. */
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /**
   * Weight decay by runs of elements, overriding weightDecay: run i covers [start_i, start_{i+1})
   * (the last one to n) and decays by its own rate. Starts ascend from 0. A flat ZeRO partition
   * holds matrices (decayed) and norm gains (not) side by side, and steps in one dispatch.
   */
  decayRuns?: readonly DecayRun[];
  /** 1-based step count, for bias correction. */
  step: number;
  /** Multiplies the gradient before use (gradient clipping); 1 for none. */
  gradScale: number;
}

/** Elements from `start` up to the next run's start share this weight decay. */
export interface DecayRun {
  start: number;
  weightDecay: number;
}

/** Block-quantized tensors: `tensors` of n elements each, in blocks of `block`, `bits` 8 or 4. */
export interface QuantLayout {
  n: number;
  tensors: number;
  block: number;
  bits: 4 | 8;
}

export interface BackendStats {
  /** Live storages handed out and not yet released. */
  buffers: number;
  /** Bytes occupied by those storages. */
  bytes: number;
  /** Bytes of released buffers kept for reuse (WebGPU buffer pool); 0 on CPU. */
  pooledBytes: number;
  /** Compiled compute pipelines (WebGPU pipeline cache); 0 on CPU. */
  pipelines: number;
}

export interface BackendInfo {
  /** Adapter description, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)", or "cpu". */
  adapter: string;
  features: string[];
  /** The device limits that shardlab reads; CPU reports its own (typed-array) ceilings. */
  limits: { maxStorageBufferBindingSize: number; maxBufferSize: number; maxComputeWorkgroupStorageSize: number };
}

export interface Backend {
  readonly name: "cpu" | "webgpu";
  readonly info: BackendInfo;

  // ---- memory ----
  /** A zero-filled storage of numel elements of dtype. */
  alloc(numel: number, dtype: DType): Storage;
  /** A storage holding data (f16 as raw bits in a Uint16Array). */
  upload(data: RawArray, dtype: DType): Storage;
  /** The first numel elements, as the raw host array of dtype (f16 as Uint16Array bits). Submits pending work. */
  read(storage: Storage, numel: number, dtype: DType): Promise<RawArray>;
  /** Gives the storage back; it must not be used again. */
  release(storage: Storage): void;
  stats(): BackendStats;
  /** Frees everything; the backend is unusable afterwards. */
  destroy(): void;

  // ---- elementwise ----
  /** y = op(x). `scale` is y = alpha·x. gelu is the exact erf form. */
  unary(op: UnaryOp, x: Storage, n: number, alpha?: number): Storage;
  /** dx = op'(x)·dy. */
  activationGrad(op: ActivationOp, x: Storage, dy: Storage, n: number): Storage;
  /** out = a op b with numpy broadcasting; shapes are right-aligned and already checked compatible. */
  binary(
    op: BinaryOp,
    a: Storage,
    aShape: readonly number[],
    b: Storage,
    bShape: readonly number[],
    outShape: readonly number[],
  ): Storage;
  /** Converts n elements between any two dtypes. Float → integer rounds to nearest and saturates to the target range. */
  cast(x: Storage, n: number, from: DType, to: DType): Storage;
  /** In place: dst gains src's elements as described by copy. dtype is f32 or i32. */
  copyStrided(src: Storage, dst: Storage, copy: StridedCopy, dtype: DType): void;
  /**
   * Sums of blocks of `block` elements: output block j of n is the sum of x's blocks indices[k] for
   * k in [offsets[j], offsets[j + 1]), added in k order (an empty range gives zeros). offsets (n + 1
   * entries) and indices are i32; maxTerms is the longest range. One index per block is a gather;
   * a gather's inverse table gives its adjoint, a scatter-add without atomics.
   */
  gatherBlocks(x: Storage, offsets: Storage, indices: Storage, n: number, block: number, maxTerms: number): Storage;

  // ---- block quantization (ZeRO++) ----
  /**
   * Symmetric block quantization of `layout.tensors` tensors of layout.n elements, each in blocks of
   * layout.block: per block of largest magnitude a and T = 2^(bits−1) − 1, scale = a / T and
   * q = clamp(round(v / scale), −T, T), ties to even (scale 0 and q 0 for an all-zero block; scale
   * NaN and q 0 where a block holds NaN or ±Inf). v is x's element (f32 [tensors · n]), tensor t
   * being x's chunk (t mod nodes) · (tensors / nodes) + ⌊t / nodes⌋ (source.nodes; 1: chunk t; more:
   * qgZ's swizzle); with source.sum, x holds `sum.inputs` sets of `tensors` quantized tensors (scales in sum.scales) and v is the sum
   * over the sets of their dequantized elements. q: tensors · quantizedBytes(n, bits) bytes (u8;
   * INT8 element i in byte i, INT4 element i in byte ⌊i/2⌋, even i in the high nibble), scales f32
   * [tensors · ⌈n / block⌉].
   */
  quantize(
    x: Storage,
    layout: QuantLayout,
    source: { nodes: number } | { sum: { scales: Storage; inputs: number } },
  ): { q: Storage; scales: Storage };
  /**
   * y f32 [tensors · n]: tensor t = factor · Σ over `inputs` sets k of quantized tensors (q and
   * scales as quantize writes them, set after set) of tensor k · tensors + t, dequantized.
   */
  dequantize(q: Storage, scales: Storage, layout: QuantLayout, inputs: number, factor: number): Storage;

  // ---- reductions ----
  /** x viewed as [outer, length, inner] reduced over the middle axis to [outer, inner]. */
  reduce(op: ReduceOp, x: Storage, outer: number, length: number, inner: number): Storage;

  // ---- linear algebra ----
  matmul(a: Storage, b: Storage, p: MatmulParams): Storage;

  // ---- row-wise normalizations over the last axis of [rows, cols] ----
  /** softmax (or log-softmax when log) of each row. */
  softmax(x: Storage, rows: number, cols: number, log: boolean): Storage;
  /** Given y = softmax(x) (or log-softmax) and dy: softmax dx = y·(dy − Σ dy·y); log-softmax dx = dy − exp(y)·Σ dy. */
  softmaxGrad(y: Storage, dy: Storage, rows: number, cols: number, log: boolean): Storage;
  /** y = x / sqrt(mean(x²) + eps) · w; rstd [rows] is saved for the backward. */
  rmsNorm(x: Storage, w: Storage, rows: number, cols: number, eps: number): { y: Storage; rstd: Storage };
  rmsNormGrad(x: Storage, w: Storage, rstd: Storage, dy: Storage, rows: number, cols: number): { dx: Storage; dw: Storage };
  /** y = (x − mean) · rstd · w + b; mean and rstd [rows] are saved for the backward. */
  layerNorm(
    x: Storage,
    w: Storage,
    b: Storage,
    rows: number,
    cols: number,
    eps: number,
  ): { y: Storage; mean: Storage; rstd: Storage };
  layerNormGrad(
    x: Storage,
    w: Storage,
    mean: Storage,
    rstd: Storage,
    dy: Storage,
    rows: number,
    cols: number,
  ): { dx: Storage; dw: Storage; db: Storage };

  // ---- transformer pieces ----
  /** y[i] = w[ids[i]] for n ids (i32 storage) into a [vocab, dim] table; an id outside [0, vocab) gives a zero row. */
  embedding(w: Storage, ids: Storage, n: number, vocab: number, dim: number): Storage;
  /** dW [vocab, dim]: the sum of dy rows per id, summed in token order (deterministic). */
  embeddingGrad(ids: Storage, dy: Storage, n: number, vocab: number, dim: number): Storage;
  /**
   * Rotary embedding on x [rows, T, D] (rows = B·H), rotate-half form: for j < D/2 and
   * position p = t + positionOffset, angle = p · theta^(−2j/D),
   * y[j] = x[j]·cos − x[j + D/2]·sin, y[j + D/2] = x[j + D/2]·cos + x[j]·sin.
   * inverse rotates by −angle (the backward). D is even.
   */
  rope(x: Storage, rows: number, T: number, D: number, theta: number, positionOffset: number, inverse: boolean): Storage;
  /** Fused attention: o [B, Hq, T, D] and the log-sum-exp of each scaled score row, lse [B, Hq, T]. Causal masks keys after the query. */
  attention(q: Storage, k: Storage, v: Storage, p: AttentionParams): { o: Storage; lse: Storage };
  /** Recomputes probabilities from lse; dk and dv sum over the query heads that share a kv head. */
  attentionGrad(
    q: Storage,
    k: Storage,
    v: Storage,
    o: Storage,
    lse: Storage,
    dO: Storage,
    p: AttentionParams,
  ): { dq: Storage; dk: Storage; dv: Storage };
  /** Per-row loss [rows]: logsumexp(logits[r]) − logits[r, targets[r]] (targets i32). */
  crossEntropy(logits: Storage, targets: Storage, rows: number, vocab: number): Storage;
  /** dlogits = (softmax(logits) − onehot(targets)) · dloss[0] · scale, where dloss is a one-element storage. */
  crossEntropyGrad(logits: Storage, targets: Storage, dloss: Storage, rows: number, vocab: number, scale: number): Storage;

  // ---- optimizer ----
  /**
   * In place, PyTorch AdamW: g = grad·gradScale; param ·= 1 − lr·weightDecay (the element's run's,
   * given decayRuns); m = β1·m + (1−β1)·g;
   * v = β2·v + (1−β2)·g²; param −= lr/(1−β1^step) · m / (sqrt(v)/sqrt(1−β2^step) + eps).
   */
  adamw(param: Storage, grad: Storage, expAvg: Storage, expAvgSq: Storage, n: number, p: AdamWParams): void;
}
