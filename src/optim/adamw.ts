// AdamW with per-parameter state, stepping each parameter with the fused kernel ops.adamwUpdate.
//
// Semantics are torch.optim.AdamW's (decoupled weight decay): for every parameter with a gradient,
//   step ← step + 1;  g ← grad·gradScale;  p ← p − lr·wd·p;
//   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
//   p ← p − lr/(1−β1^step) · m / (sqrt(v)/sqrt(1−β2^step) + eps).
// A parameter whose .grad is null in a step is skipped entirely: its values, moments and step
// count stay as they were, so each parameter keeps its own step (as PyTorch's per-parameter state).
//
// Weight decay applies only to parameters with two or more dimensions (matmul weights and the
// embedding); one-dimensional parameters (norm weights, biases) get weight decay 0. This is the
// usual split for LLM training (GPT-2/nanoGPT, Phi-3): decaying a norm gain towards zero only
// fights the normalization.
//
// fp32 master weights: shardlab's parameters are f32 tensors, so the parameters themselves are the
// master weights and the kernel updates them in place; no separate copy is kept.

import { DisposedError, DTypeError, ShapeError } from "../tensor/errors.ts";
import { adamwUpdate } from "../tensor/ops/adamw.ts";
import { keep } from "../tensor/scope.ts";
import { formatShape, sameShape } from "../tensor/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";

export interface AdamWOptions {
  /** Decay rate of the first moment; default 0.9. */
  beta1?: number;
  /** Decay rate of the second moment; default 0.95 (the usual choice for LLM pre-training). */
  beta2?: number;
  /** Added to the bias-corrected sqrt of the second moment; default 1e-8. */
  eps?: number;
  /** Decoupled weight decay for parameters with ≥ 2 dimensions; default 0.1. */
  weightDecay?: number;
}

export interface AdamWStepOptions {
  /** Learning rate for this step (≥ 0). */
  lr: number;
  /** Multiplies every gradient before use, e.g. clipScale(...) for clipping; default 1. */
  gradScale?: number;
}

/**
 * The optimizer state of one parameter: f32 moments of the parameter's shape on its device, and
 * the number of updates this parameter has received. The checkpoint module saves and restores
 * these records by parameter name; ZeRO keeps one per flat partition.
 */
export interface AdamWState {
  expAvg: Tensor;
  expAvgSq: Tensor;
  step: number;
}

interface Entry {
  name: string;
  param: Tensor;
  weightDecay: number;
  state: AdamWState;
}

/** AdamWOptions with every default filled in and every value checked. */
export type AdamWHyperparameters = Required<AdamWOptions>;

/** The hyperparameters with their defaults, checked: a bad value throws naming it. */
export function adamwHyperparameters(options: AdamWOptions = {}): AdamWHyperparameters {
  const eps = options.eps ?? 1e-8;
  if (!(Number.isFinite(eps) && eps > 0)) throw new RangeError(`AdamW: eps must be a finite number > 0, got ${eps}`);
  const weightDecay = options.weightDecay ?? 0.1;
  if (!(Number.isFinite(weightDecay) && weightDecay >= 0)) {
    throw new RangeError(`AdamW: weightDecay must be a finite number ≥ 0, got ${weightDecay}`);
  }
  return { beta1: checkBeta("beta1", options.beta1 ?? 0.9), beta2: checkBeta("beta2", options.beta2 ?? 0.95), eps, weightDecay };
}

/** The weight decay of a parameter of this shape: the run's on matrices (two or more dimensions), 0 on the rest. */
export function weightDecayOf(shape: readonly number[], weightDecay: number): number {
  return shape.length >= 2 ? weightDecay : 0;
}

/** Checks a step's learning rate and gradient scale, naming `where` and the bad value. */
export function checkStepOptions(where: string, { lr, gradScale = 1 }: AdamWStepOptions): void {
  if (!(Number.isFinite(lr) && lr >= 0)) throw new RangeError(`${where}: lr must be a finite number ≥ 0, got ${lr}`);
  if (!(Number.isFinite(gradScale) && gradScale >= 0)) {
    throw new RangeError(`${where}: gradScale must be a finite number ≥ 0, got ${gradScale}`);
  }
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private readonly entries: Entry[];
  private readonly byName = new Map<string, Entry>();
  private disposed = false;

  /** State is allocated here, as zeros with step 0 (equivalent to PyTorch's not-yet-created state). */
  constructor(namedParams: [string, Tensor][], options: AdamWOptions = {}) {
    ({ beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay } = adamwHyperparameters(options));
    checkParams(namedParams);
    for (const [name, param] of namedParams) {
      const zeros = () => keep(param.device.zeros(param.shape));
      this.byName.set(name, {
        name,
        param,
        weightDecay: weightDecayOf(param.shape, this.weightDecay),
        state: { expAvg: zeros(), expAvgSq: zeros(), step: 0 },
      });
    }
    this.entries = [...this.byName.values()];
  }

  /** Updates every parameter that has a .grad, in place on its device; the others are skipped. */
  step({ lr, gradScale = 1 }: AdamWStepOptions): void {
    this.checkAlive("step");
    checkStepOptions("AdamW.step", { lr, gradScale });
    // Every gradient is checked before any parameter moves, so a rejected step changes nothing.
    const updates = this.entries.filter(({ param }) => param.grad);
    for (const { name, param } of updates) checkGrad(name, param, param.grad!);
    for (const { param, weightDecay, state } of updates) {
      const step = state.step + 1;
      adamwUpdate(param, param.grad!, state.expAvg, state.expAvgSq, {
        lr,
        beta1: this.beta1,
        beta2: this.beta2,
        eps: this.eps,
        weightDecay,
        step,
        gradScale,
      });
      state.step = step;
    }
  }

  /** Disposes every parameter's gradient and sets .grad to null. */
  zeroGrad(): void {
    for (const { param } of this.entries) {
      param.grad?.dispose();
      param.grad = null;
    }
  }

  /** The live state record of the parameter called name (its fields may be read and restored). */
  state(name: string): AdamWState {
    this.checkAlive("state");
    const entry = this.byName.get(name);
    if (!entry) throw new RangeError(`AdamW.state: no parameter named "${name}"`);
    return entry.state;
  }

  /** Frees the moment tensors; the parameters and their gradients are left alone. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const { state } of this.entries) {
      state.expAvg.dispose();
      state.expAvgSq.dispose();
    }
  }

  private checkAlive(method: string): void {
    if (this.disposed) throw new DisposedError(`AdamW.${method}: the optimizer was disposed`);
  }
}

/** Checks every parameter before any state is allocated, so a rejected list leaks nothing. */
function checkParams(namedParams: [string, Tensor][]): void {
  if (namedParams.length === 0) throw new RangeError("AdamW: got an empty parameter list");
  const seen = new Set<string>();
  for (const [name, param] of namedParams) {
    if (seen.has(name)) throw new RangeError(`AdamW: parameter name "${name}" appears more than once`);
    seen.add(name);
    if (param.dtype !== "f32") {
      throw new DTypeError(`AdamW: parameter "${name}" must be f32 (it is its own master weight), got ${param.dtype}`);
    }
    param.storageFor(`AdamW parameter "${name}"`);
  }
}

function checkGrad(name: string, param: Tensor, grad: Tensor): void {
  if (grad.isDisposed) throw new DisposedError(`AdamW.step: the gradient of "${name}" was disposed but not cleared`);
  if (!sameShape(grad.shape, param.shape)) {
    throw new ShapeError(
      `AdamW.step: the gradient of "${name}" has shape ${formatShape(grad.shape)}, the parameter ${formatShape(param.shape)}`,
    );
  }
}

function checkBeta(what: string, value: number): number {
  if (!(Number.isFinite(value) && value >= 0 && value < 1)) {
    throw new RangeError(`AdamW: ${what} must be in [0, 1), got ${value}`);
  }
  return value;
}
