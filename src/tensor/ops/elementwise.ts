// Elementwise ops: broadcasting arithmetic, activations, scaling and dtype casts.

import type { ActivationOp, BinaryOp, UnaryOp } from "../../backend/backend.ts";
import { recordOp } from "../autograd.ts";
import { type DType, isDType } from "../dtype.ts";
import { DTypeError } from "../errors.ts";
import { broadcastShapes, sizeOf } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { checkFloat } from "./checks.ts";
import { sumToShape, sumToShapeAndFree } from "./reduce.ts";

function binary(op: BinaryOp, a: Tensor, b: Tensor, name: string = op): Tensor {
  checkFloat(name, a, b);
  const shape = broadcastShapes(name, a.shape, b.shape);
  a.device.checkFits(name, sizeOf(shape), "f32");
  const storage = a.device.backend.binary(op, a.storageFor(name), a.shape, b.storageFor(name), b.shape, shape);
  return a.device.wrap(storage, shape);
}

export function add(a: Tensor, b: Tensor): Tensor {
  const out = binary("add", a, b);
  return recordOp("add", out, [a, b], [], (g) => [sumToShape(g, a.shape), sumToShape(g, b.shape)]);
}

export function sub(a: Tensor, b: Tensor): Tensor {
  const out = binary("sub", a, b);
  return recordOp("sub", out, [a, b], [], (g) => [sumToShape(g, a.shape), sumToShapeAndFree(neg(g), b.shape)]);
}

export function mul(a: Tensor, b: Tensor): Tensor {
  const out = binary("mul", a, b);
  return recordOp("mul", out, [a, b], [a, b], (g, [sa, sb]) => [
    a.requiresGrad ? sumToShapeAndFree(binary("mul", g, sb), a.shape) : null,
    b.requiresGrad ? sumToShapeAndFree(binary("mul", g, sa), b.shape) : null,
  ]);
}

export function div(a: Tensor, b: Tensor): Tensor {
  const out = binary("div", a, b);
  return recordOp("div", out, [a, b], [a, b], (g, [sa, sb]) => {
    const ga = a.requiresGrad ? sumToShapeAndFree(binary("div", g, sb), a.shape) : null;
    if (!b.requiresGrad) return [ga, null];
    // d(a/b)/db = −a/b²
    const quotient = binary("div", binary("mul", g, sa), sb);
    const gb = binary("div", quotient, sb);
    quotient.dispose();
    const negated = neg(gb);
    gb.dispose();
    return [ga, sumToShapeAndFree(negated, b.shape)];
  });
}

/** `1` where a == b, `0` elsewhere (not differentiable). */
export function equal(a: Tensor, b: Tensor): Tensor {
  return binary("eq", a, b, "equal");
}

function unary(op: UnaryOp, x: Tensor, alpha = 1): Tensor {
  checkFloat(op, x);
  return x.device.wrap(x.device.backend.unary(op, x.storageFor(op), x.size, alpha), x.shape);
}

export function scale(x: Tensor, alpha: number): Tensor {
  return recordOp("scale", unary("scale", x, alpha), [x], [], (g) => [unary("scale", g, alpha)]);
}

export function neg(x: Tensor): Tensor {
  return recordOp("neg", unary("neg", x), [x], [], (g) => [unary("neg", g)]);
}

export function exp(x: Tensor): Tensor {
  const y = unary("exp", x);
  return recordOp("exp", y, [x], [y], (g, [sy]) => [binary("mul", g, sy)]);
}

export function log(x: Tensor): Tensor {
  return recordOp("log", unary("log", x), [x], [x], (g, [sx]) => [binary("div", g, sx)]);
}

export function sqrt(x: Tensor): Tensor {
  const y = unary("sqrt", x);
  return recordOp("sqrt", y, [x], [y], (g, [sy]) => {
    const half = unary("scale", g, 0.5);
    const gx = binary("div", half, sy);
    half.dispose();
    return [gx];
  });
}

function activation(op: ActivationOp, x: Tensor): Tensor {
  return recordOp(op, unary(op, x), [x], [x], (g, [sx]) => [
    x.device.wrap(x.device.backend.activationGrad(op, sx.storageFor(op), g.storageFor(op), x.size), x.shape),
  ]);
}

export function relu(x: Tensor): Tensor {
  return activation("relu", x);
}

export function silu(x: Tensor): Tensor {
  return activation("silu", x);
}

/** GELU, exact erf form: 0.5·x·(1 + erf(x/√2)). */
export function gelu(x: Tensor): Tensor {
  return activation("gelu", x);
}

/** Converts to another dtype; differentiable between float types. */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (!isDType(dtype)) throw new DTypeError(`cast: unknown dtype "${dtype}" (valid: f32, f16, i32, u8, i8)`);
  x.storageFor("cast");
  x.device.checkFits("cast", x.size, dtype);
  const out = x.device.wrap(x.device.backend.cast(x.storageFor("cast"), x.size, x.dtype, dtype), x.shape, dtype);
  if (dtype === "f32" || dtype === "f16") {
    return recordOp("cast", out, [x], [], (g) => [cast(g, x.dtype)]);
  }
  return out;
}
