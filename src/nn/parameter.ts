// Parameters: named, shaped slots for tensors, filled by a factory when a model is built.
//
// A model declares its parameters by Hugging Face name and shape; the factory decides what backs
// each one. The seeded factory allocates the initial values, which depend only on (seed, name);
// the shape-only factory allocates nothing, so that the layout of a model too large for the device
// can still be walked and counted. A strategy that keeps parameters elsewhere (a ZeRO-3 partition)
// builds with its own factory and sets `value` to the gathered tensor around a layer's forward.

import type { Device } from "../tensor/device.ts";
import { ShapeError } from "../tensor/errors.ts";
import { randnValues } from "../tensor/random.ts";
import { keep } from "../tensor/scope.ts";
import { formatShape, sameShape, type Shape, sizeOf } from "../tensor/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { deriveSeed } from "./seed.ts";

/** "normal": N(0, INIT_STD²) as Hugging Face's initializer_range; "ones": norm gains. */
export type ParameterInit = "normal" | "ones";

/** Standard deviation of the "normal" init (Hugging Face Phi-3's initializer_range). */
export const INIT_STD = 0.02;

/** Makes the tensor for a new parameter, or null to leave it unallocated. */
export type ParameterFactory = (name: string, shape: Shape, init: ParameterInit) => Tensor | null;

export class Parameter {
  readonly size: number;
  /** The tensor the forward reads, or null while the parameter is not held on this device. */
  value: Tensor | null;

  constructor(readonly name: string, readonly shape: Shape, readonly init: ParameterInit, factory: ParameterFactory) {
    this.size = sizeOf(shape);
    const value = factory(name, shape, init);
    if (value && !sameShape(value.shape, shape)) {
      throw new ShapeError(
        `parameter ${name}: the factory made a tensor of shape ${formatShape(value.shape)}, expected ${formatShape(shape)}`,
      );
    }
    this.value = value;
  }

  /** The value, or an error naming the parameter when it holds none. */
  get tensor(): Tensor {
    if (!this.value) {
      throw new Error(`parameter ${this.name} ${formatShape(this.shape)} holds no tensor (it was built unallocated)`);
    }
    return this.value;
  }
}

/**
 * Allocates each parameter as a leaf with requiresGrad. "normal" values are those of
 * device.randn(shape, deriveSeed(seed, name)) times INIT_STD, scaled on the host so that every
 * backend holds the same f32 bits. The tensors belong to the model, outside any tidy().
 */
export function seededParameters(device: Device, seed: number): ParameterFactory {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seededParameters: seed must be a safe integer, got ${seed}`);
  return (name, shape, init) => keep(device.tensor(seededValues(seed, name, sizeOf(shape), init), shape, { requiresGrad: true }));
}

/** The initial values of parameter `name` with `size` elements: a function of (seed, name) only. */
export function seededValues(seed: number, name: string, size: number, init: ParameterInit): Float32Array {
  if (init === "ones") return new Float32Array(size).fill(1);
  const values = randnValues(size, deriveSeed(seed, name));
  for (let i = 0; i < size; i++) values[i] *= INIT_STD;
  return values;
}

/** Records names and shapes and allocates nothing. */
export const shapeOnly: ParameterFactory = () => null;
