// Tensor: a shape and dtype over reference-counted device memory, with autograd bookkeeping and
// the method forms of the ops.

import type { Storage } from "../backend/backend.ts";
import { GradNode, isGradEnabled, runBackward } from "./autograd.ts";
import type { Device } from "./device.ts";
import { type DType, f16BitsToF32, type HostArray, type RawArray } from "./dtype.ts";
import { DisposedError, ShapeError } from "./errors.ts";
import { formatShape, sameShape, type Shape, sizeOf } from "./shape.ts";
import { keep, trackTensor } from "./scope.ts";
import * as elementwise from "./ops/elementwise.ts";
import * as reduce from "./ops/reduce.ts";
import * as layout from "./ops/layout.ts";
import { matmul, type MatmulOptions } from "./ops/matmul.ts";
import * as nn from "./ops/nn.ts";

/** Device memory shared by a tensor and the views and saved handles made from it. */
export class DeviceMemory {
  private refs = 1;
  constructor(readonly device: Device, readonly storage: Storage) {}

  retain(): this {
    this.refs++;
    return this;
  }

  release(): void {
    if (--this.refs === 0) this.device.backend.release(this.storage);
  }
}

export class Tensor {
  readonly size: number;
  requiresGrad: boolean;
  /** The accumulated gradient of a leaf after backward(); dispose it or set it to null to reset. */
  grad: Tensor | null = null;
  private node: GradNode | null = null;
  private disposed = false;

  constructor(
    readonly device: Device,
    private memory: DeviceMemory,
    readonly shape: Shape,
    readonly dtype: DType,
    requiresGrad = false,
    tracked = true,
  ) {
    this.size = sizeOf(shape);
    this.requiresGrad = requiresGrad;
    device.tensorCreated();
    if (tracked) trackTensor(this);
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** The backing storage, for an op named `op`; throws if this tensor was disposed. */
  storageFor(op: string): Storage {
    if (this.disposed) {
      throw new DisposedError(`${op}: a ${this.dtype} tensor of shape ${formatShape(this.shape)} was used after dispose()`);
    }
    return this.memory.storage;
  }

  /** Copies the values to the host: f32 and f16 as Float32Array, integers in their own array. */
  async read(): Promise<HostArray> {
    const raw = await this.readRaw();
    if (this.dtype !== "f16") return raw as HostArray;
    const values = new Float32Array(raw.length);
    for (let i = 0; i < raw.length; i++) values[i] = f16BitsToF32(raw[i]);
    return values;
  }

  /** Copies the values to the host as stored: f16 as its bits (Uint16Array), every other dtype as read() gives it. */
  readRaw(): Promise<RawArray> {
    return this.device.backend.read(this.storageFor("read"), this.size, this.dtype);
  }

  /**
   * Backpropagates from this tensor; every leaf with requiresGrad gains (or adds to) its .grad. A
   * scalar seeds itself with 1; any other tensor needs `gradient`, the gradient of the final result
   * with respect to it (its shape, on its device), as PyTorch's tensor.backward(gradient).
   */
  backward(gradient?: Tensor): Promise<void> {
    this.storageFor("backward");
    if (!this.requiresGrad) throw new Error("backward: this tensor does not require grad (no input had requiresGrad: true)");
    if (!gradient) {
      if (this.size !== 1) {
        throw new ShapeError(`backward: needs a scalar or a gradient, got shape ${formatShape(this.shape)} and no gradient`);
      }
      return runBackward(this, this.device.tensor([1], this.shape));
    }
    if (!sameShape(gradient.shape, this.shape) || gradient.device !== this.device) {
      throw new ShapeError(
        `backward: the gradient ${formatShape(gradient.shape)} must match the tensor ${formatShape(this.shape)} on its device`,
      );
    }
    return runBackward(this, gradient.retainedHandle());
  }

  /** Frees this tensor's hold on its memory. Idempotent; any later use throws a DisposedError. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.memory.release();
    this.node?.release();
    this.node = null;
    this.device.tensorDisposed();
  }

  // ---- autograd plumbing (used by ops and autograd.ts) ----

  /** This tensor's node in the gradient graph; leaves get theirs on first use. */
  gradNode(): GradNode | null {
    if (!this.requiresGrad) return null;
    this.node ??= new GradNode("leaf", [], null, [], this);
    return this.node;
  }

  setGradNode(node: GradNode): void {
    this.node?.release();
    this.node = node;
    this.requiresGrad = true;
  }

  /**
   * A second tensor over the same memory that stays valid after this one is disposed. It is not
   * tracked by tidy(): its holder (a saved-tensor list, a gradient) frees it.
   */
  retainedHandle(shape: Shape = this.shape): Tensor {
    this.storageFor("retain");
    return new Tensor(this.device, this.memory.retain(), shape, this.dtype, false, false);
  }

  /** The same memory under another shape of equal size, tracked like any op output. */
  view(shape: Shape): Tensor {
    this.storageFor("view");
    return new Tensor(this.device, this.memory.retain(), shape, this.dtype);
  }

  /** Adds grad into .grad; gradients outlive any tidy() they were computed in. */
  accumulateGrad(grad: Tensor): void {
    if (this.disposed) {
      grad.dispose();
      return;
    }
    if (!this.grad || this.grad.isDisposed) {
      this.grad = keep(grad);
      return;
    }
    const sum = this.grad.add(grad);
    this.grad.dispose();
    grad.dispose();
    this.grad = keep(sum);
  }

  // ---- method forms of the ops ----

  add(other: Tensor): Tensor {
    return elementwise.add(this, other);
  }
  sub(other: Tensor): Tensor {
    return elementwise.sub(this, other);
  }
  mul(other: Tensor): Tensor {
    return elementwise.mul(this, other);
  }
  div(other: Tensor): Tensor {
    return elementwise.div(this, other);
  }
  scale(alpha: number): Tensor {
    return elementwise.scale(this, alpha);
  }
  neg(): Tensor {
    return elementwise.neg(this);
  }
  exp(): Tensor {
    return elementwise.exp(this);
  }
  log(): Tensor {
    return elementwise.log(this);
  }
  sqrt(): Tensor {
    return elementwise.sqrt(this);
  }
  relu(): Tensor {
    return elementwise.relu(this);
  }
  silu(): Tensor {
    return elementwise.silu(this);
  }
  gelu(): Tensor {
    return elementwise.gelu(this);
  }
  cast(dtype: DType): Tensor {
    return elementwise.cast(this, dtype);
  }
  matmul(other: Tensor, options?: MatmulOptions): Tensor {
    return matmul(this, other, options);
  }
  sum(axis?: number, keepDims?: boolean): Tensor {
    return reduce.sum(this, axis, keepDims);
  }
  mean(axis?: number, keepDims?: boolean): Tensor {
    return reduce.mean(this, axis, keepDims);
  }
  max(axis?: number, keepDims?: boolean): Tensor {
    return reduce.max(this, axis, keepDims);
  }
  softmax(): Tensor {
    return nn.softmax(this);
  }
  logSoftmax(): Tensor {
    return nn.logSoftmax(this);
  }
  reshape(shape: Shape): Tensor {
    return layout.reshape(this, shape);
  }
  transpose(axis0 = -2, axis1 = -1): Tensor {
    return layout.transpose(this, axis0, axis1);
  }
  permute(order: readonly number[]): Tensor {
    return layout.permute(this, order);
  }
  slice(begin: readonly number[], size: readonly number[]): Tensor {
    return layout.slice(this, begin, size);
  }

  toString(): string {
    return `Tensor(${formatShape(this.shape)}, ${this.dtype}, ${this.device.backend.name}${
      this.requiresGrad && isGradEnabled() ? ", requiresGrad" : ""
    })`;
  }
}
