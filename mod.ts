// shardlab's public API.

export { createDevice, Device, type BackendChoice, type DeviceStats, type TensorOptions } from "./src/tensor/device.ts";
export { Tensor } from "./src/tensor/tensor.ts";
export type { DType, HostArray } from "./src/tensor/dtype.ts";
export * as ops from "./src/tensor/ops/index.ts";
export { noGrad } from "./src/tensor/autograd.ts";
export { keep, tidy } from "./src/tensor/scope.ts";
export { DeviceLimitError, DisposedError, DTypeError, ShapeError, ShardlabError } from "./src/tensor/errors.ts";
export type { AdamWParams } from "./src/backend/backend.ts";
