// The CPU reference backend: storages are host typed arrays and every kernel runs eagerly in
// plain TypeScript (one file per kernel family in this folder). It is the oracle the WebGPU
// kernels are tested against and the fallback when no GPU adapter exists.

import type {
  ActivationOp,
  AdamWParams,
  AttentionParams,
  Backend,
  BackendInfo,
  BackendStats,
  BinaryOp,
  MatmulParams,
  QuantLayout,
  ReduceOp,
  Storage,
  StridedCopy,
  UnaryOp,
} from "../backend.ts";
import { type DType, type RawArray, rawArray } from "../../tensor/dtype.ts";
import { DisposedError } from "../../tensor/errors.ts";
import * as elementwise from "./elementwise.ts";
import { cast } from "./cast.ts";
import { copyStrided } from "./copy.ts";
import { gatherBlocks } from "./head_exchange.ts";
import { dequantize, quantize } from "./quantize.ts";
import { reduce } from "./reduce.ts";
import { matmul } from "./matmul.ts";
import { softmax, softmaxGrad } from "./softmax.ts";
import { layerNorm, layerNormGrad, rmsNorm, rmsNormGrad } from "./norm.ts";
import { embedding, embeddingGrad } from "./embedding.ts";
import { rope } from "./rope.ts";
import { attention, attentionGrad } from "./attention.ts";
import { crossEntropy, crossEntropyGrad } from "./cross_entropy.ts";
import { adamw } from "./adamw.ts";

/** A host array owned by the CPU backend; f16 is held as raw bits in a Uint16Array. */
export class CpuStorage implements Storage {
  /** What the array occupied when it was handed out; kept after release() or destroy() drops the array. */
  readonly bytes: number;
  released = false;

  constructor(public data: RawArray) {
    this.bytes = data.byteLength;
  }
}

/** Empty stand-in for the data of released storages, so that a tensor object outliving its memory does not hold the array. */
const DROPPED = new Float32Array(0);

export class CpuBackend implements Backend {
  readonly name = "cpu";
  readonly info: BackendInfo = {
    adapter: "cpu",
    features: [],
    // Not device limits but the practical ceiling of one typed array (2³¹ − 1 bytes); the CPU has
    // no workgroup memory.
    limits: { maxStorageBufferBindingSize: 2 ** 31 - 1, maxBufferSize: 2 ** 31 - 1, maxComputeWorkgroupStorageSize: 0 },
  };

  private live = new Set<CpuStorage>();
  private liveBytes = 0;
  private destroyed = false;

  // ---- memory ----

  alloc(numel: number, dtype: DType): Storage {
    return this.adopt(rawArray(dtype, numel));
  }

  upload(data: RawArray, dtype: DType): Storage {
    const copy = rawArray(dtype, data.length);
    copy.set(data);
    return this.adopt(copy);
  }

  read(storage: Storage, numel: number, dtype: DType): Promise<RawArray> {
    const copy = rawArray(dtype, numel);
    copy.set(this.data(storage, "read").subarray(0, numel));
    return Promise.resolve(copy);
  }

  release(storage: Storage): void {
    const cpu = storage as CpuStorage;
    if (cpu.released) throw new DisposedError(`cpu release: a storage of ${cpu.bytes} bytes was already released`);
    cpu.released = true;
    cpu.data = DROPPED;
    if (this.live.delete(cpu)) this.liveBytes -= cpu.bytes;
  }

  stats(): BackendStats {
    return { buffers: this.live.size, bytes: this.liveBytes, pooledBytes: 0, pipelines: 0 };
  }

  destroy(): void {
    for (const storage of this.live) storage.data = DROPPED;
    this.live.clear();
    this.liveBytes = 0;
    this.destroyed = true;
  }

  // ---- elementwise ----

  unary(op: UnaryOp, x: Storage, n: number, alpha?: number): Storage {
    return this.adopt(elementwise.unary(op, this.f32(x, op), n, alpha));
  }

  activationGrad(op: ActivationOp, x: Storage, dy: Storage, n: number): Storage {
    return this.adopt(elementwise.activationGrad(op, this.f32(x, op), this.f32(dy, op), n));
  }

  binary(
    op: BinaryOp,
    a: Storage,
    aShape: readonly number[],
    b: Storage,
    bShape: readonly number[],
    outShape: readonly number[],
  ): Storage {
    return this.adopt(elementwise.binary(op, this.f32(a, op), aShape, this.f32(b, op), bShape, outShape));
  }

  cast(x: Storage, n: number, from: DType, to: DType): Storage {
    return this.adopt(cast(this.data(x, "cast"), n, from, to));
  }

  quantize(
    x: Storage,
    layout: QuantLayout,
    source: { nodes: number } | { sum: { scales: Storage; inputs: number } },
  ): { q: Storage; scales: Storage } {
    const op = "quantize";
    const { q, scales } = "sum" in source
      ? quantize({ sum: { q: this.u8(x, op), scales: this.f32(source.sum.scales, op), inputs: source.sum.inputs } }, layout)
      : quantize({ x: this.f32(x, op), nodes: source.nodes }, layout);
    return { q: this.adopt(q), scales: this.adopt(scales) };
  }

  dequantize(q: Storage, scales: Storage, layout: QuantLayout, inputs: number, factor: number): Storage {
    const op = "dequantize";
    return this.adopt(dequantize({ q: this.u8(q, op), scales: this.f32(scales, op), inputs }, layout, factor));
  }

  /** The typed arrays carry their element type, so dtype is not needed here. */
  copyStrided(src: Storage, dst: Storage, copy: StridedCopy, _dtype: DType): void {
    const source = this.data(src, "copyStrided") as Float32Array | Int32Array;
    copyStrided(source, this.data(dst, "copyStrided") as Float32Array | Int32Array, copy);
  }

  gatherBlocks(x: Storage, offsets: Storage, indices: Storage, n: number, block: number, _maxTerms: number): Storage {
    const op = "gatherBlocks";
    return this.adopt(gatherBlocks(this.f32(x, op), this.i32(offsets, op), this.i32(indices, op), n, block));
  }

  // ---- reductions ----

  reduce(op: ReduceOp, x: Storage, outer: number, length: number, inner: number): Storage {
    return this.adopt(reduce(op, this.f32(x, "reduce"), outer, length, inner));
  }

  // ---- linear algebra ----

  matmul(a: Storage, b: Storage, p: MatmulParams): Storage {
    return this.adopt(matmul(this.f32(a, "matmul"), this.f32(b, "matmul"), p));
  }

  // ---- row-wise normalizations ----

  softmax(x: Storage, rows: number, cols: number, log: boolean): Storage {
    return this.adopt(softmax(this.f32(x, "softmax"), rows, cols, log));
  }

  softmaxGrad(y: Storage, dy: Storage, rows: number, cols: number, log: boolean): Storage {
    return this.adopt(softmaxGrad(this.f32(y, "softmaxGrad"), this.f32(dy, "softmaxGrad"), rows, cols, log));
  }

  rmsNorm(x: Storage, w: Storage, rows: number, cols: number, eps: number): { y: Storage; rstd: Storage } {
    const { y, rstd } = rmsNorm(this.f32(x, "rmsNorm"), this.f32(w, "rmsNorm"), rows, cols, eps);
    return { y: this.adopt(y), rstd: this.adopt(rstd) };
  }

  rmsNormGrad(x: Storage, w: Storage, rstd: Storage, dy: Storage, rows: number, cols: number): { dx: Storage; dw: Storage } {
    const op = "rmsNormGrad";
    const { dx, dw } = rmsNormGrad(this.f32(x, op), this.f32(w, op), this.f32(rstd, op), this.f32(dy, op), rows, cols);
    return { dx: this.adopt(dx), dw: this.adopt(dw) };
  }

  layerNorm(
    x: Storage,
    w: Storage,
    b: Storage,
    rows: number,
    cols: number,
    eps: number,
  ): { y: Storage; mean: Storage; rstd: Storage } {
    const op = "layerNorm";
    const { y, mean, rstd } = layerNorm(this.f32(x, op), this.f32(w, op), this.f32(b, op), rows, cols, eps);
    return { y: this.adopt(y), mean: this.adopt(mean), rstd: this.adopt(rstd) };
  }

  layerNormGrad(
    x: Storage,
    w: Storage,
    mean: Storage,
    rstd: Storage,
    dy: Storage,
    rows: number,
    cols: number,
  ): { dx: Storage; dw: Storage; db: Storage } {
    const op = "layerNormGrad";
    const grads = layerNormGrad(
      this.f32(x, op),
      this.f32(w, op),
      this.f32(mean, op),
      this.f32(rstd, op),
      this.f32(dy, op),
      rows,
      cols,
    );
    return { dx: this.adopt(grads.dx), dw: this.adopt(grads.dw), db: this.adopt(grads.db) };
  }

  // ---- transformer pieces ----

  embedding(w: Storage, ids: Storage, n: number, vocab: number, dim: number): Storage {
    return this.adopt(embedding(this.f32(w, "embedding"), this.i32(ids, "embedding"), n, vocab, dim));
  }

  embeddingGrad(ids: Storage, dy: Storage, n: number, vocab: number, dim: number): Storage {
    return this.adopt(embeddingGrad(this.i32(ids, "embeddingGrad"), this.f32(dy, "embeddingGrad"), n, vocab, dim));
  }

  rope(x: Storage, rows: number, T: number, D: number, theta: number, positionOffset: number, inverse: boolean): Storage {
    return this.adopt(rope(this.f32(x, "rope"), rows, T, D, theta, positionOffset, inverse));
  }

  attention(q: Storage, k: Storage, v: Storage, p: AttentionParams): { o: Storage; lse: Storage } {
    const { o, lse } = attention(this.f32(q, "attention"), this.f32(k, "attention"), this.f32(v, "attention"), p);
    return { o: this.adopt(o), lse: this.adopt(lse) };
  }

  attentionGrad(
    q: Storage,
    k: Storage,
    v: Storage,
    o: Storage,
    lse: Storage,
    dO: Storage,
    p: AttentionParams,
  ): { dq: Storage; dk: Storage; dv: Storage } {
    const op = "attentionGrad";
    const grads = attentionGrad(
      this.f32(q, op),
      this.f32(k, op),
      this.f32(v, op),
      this.f32(o, op),
      this.f32(lse, op),
      this.f32(dO, op),
      p,
    );
    return { dq: this.adopt(grads.dq), dk: this.adopt(grads.dk), dv: this.adopt(grads.dv) };
  }

  crossEntropy(logits: Storage, targets: Storage, rows: number, vocab: number): Storage {
    return this.adopt(crossEntropy(this.f32(logits, "crossEntropy"), this.i32(targets, "crossEntropy"), rows, vocab));
  }

  crossEntropyGrad(logits: Storage, targets: Storage, dloss: Storage, rows: number, vocab: number, scale: number): Storage {
    const op = "crossEntropyGrad";
    return this.adopt(crossEntropyGrad(this.f32(logits, op), this.i32(targets, op), this.f32(dloss, op), rows, vocab, scale));
  }

  // ---- optimizer ----

  adamw(param: Storage, grad: Storage, expAvg: Storage, expAvgSq: Storage, n: number, p: AdamWParams): void {
    adamw(this.f32(param, "adamw"), this.f32(grad, "adamw"), this.f32(expAvg, "adamw"), this.f32(expAvgSq, "adamw"), n, p);
  }

  // ---- helpers ----

  /** Wraps a freshly computed array as a live storage. */
  private adopt(data: RawArray): CpuStorage {
    this.checkAlive("alloc");
    const storage = new CpuStorage(data);
    this.live.add(storage);
    this.liveBytes += storage.bytes;
    return storage;
  }

  /** The array behind a live storage; using a released storage or a destroyed backend throws. */
  private data(storage: Storage, op: string): RawArray {
    this.checkAlive(op);
    const cpu = storage as CpuStorage;
    if (cpu.released) throw new DisposedError(`cpu ${op}: a storage of ${cpu.bytes} bytes was used after release`);
    return cpu.data;
  }

  private f32(storage: Storage, op: string): Float32Array {
    return this.data(storage, op) as Float32Array;
  }

  private i32(storage: Storage, op: string): Int32Array {
    return this.data(storage, op) as Int32Array;
  }

  private u8(storage: Storage, op: string): Uint8Array {
    return this.data(storage, op) as Uint8Array;
  }

  private checkAlive(op: string): void {
    if (this.destroyed) throw new DisposedError(`cpu ${op}: the CPU backend was destroyed`);
  }
}
