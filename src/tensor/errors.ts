// Typed errors. Every message names the operation and the values that were wrong.

export class ShardlabError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Shapes that do not fit the operation: `matmul: inner dimensions differ, a [2, 3] × b [4, 5]`. */
export class ShapeError extends ShardlabError {}

/** A dtype the operation does not accept: `exp: expected f32, got i32`. */
export class DTypeError extends ShardlabError {}

/** A tensor used after dispose(), or a device used after destroy(). */
export class DisposedError extends ShardlabError {}

/** A request beyond what the device can hold or bind, naming the limit. */
export class DeviceLimitError extends ShardlabError {}

/** Values that must be finite are not: `zeropp.qgz.intra.layer1: … block 2 (elements 4096..6143) holds NaN or ±Inf`. */
export class NonFiniteError extends ShardlabError {}
