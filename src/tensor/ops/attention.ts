// Scaled dot-product attention, fused: softmax(q·kᵀ/√D)·v without a [T, T] matrix in memory.

import type { AttentionParams } from "../../backend/backend.ts";
import { recordOp } from "../autograd.ts";
import { ShapeError } from "../errors.ts";
import { formatShape } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { checkFloat } from "./checks.ts";

export interface AttentionOptions {
  /** Each query attends only to keys at its own position or before. */
  causal?: boolean;
}

/**
 * q [B, Hq, T, D], k and v [B, Hkv, T, D] → [B, Hq, T, D]. Grouped-query when Hkv < Hq: query
 * head h uses kv head ⌊h / (Hq / Hkv)⌋.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Tensor {
  checkFloat("attention", q, k, v);
  const shapes = `q ${formatShape(q.shape)}, k ${formatShape(k.shape)}, v ${formatShape(v.shape)}`;
  if (q.shape.length !== 4 || k.shape.length !== 4 || v.shape.length !== 4) {
    throw new ShapeError(`attention: expects 4-D [B, H, T, D] tensors, got ${shapes}`);
  }
  const [B, Hq, T, D] = q.shape;
  const Hkv = k.shape[1];
  const kvMatches = k.shape.every((d, i) => d === v.shape[i]) && k.shape[0] === B && k.shape[2] === T && k.shape[3] === D;
  if (!kvMatches) throw new ShapeError(`attention: k and v must be [${B}, Hkv, ${T}, ${D}] like q, got ${shapes}`);
  if (Hkv === 0 || Hq % Hkv !== 0) {
    throw new ShapeError(`attention: query heads (${Hq}) must be a multiple of kv heads (${Hkv}), got ${shapes}`);
  }
  const p: AttentionParams = { B, Hq, Hkv, T, D, causal: options.causal ?? false, scale: 1 / Math.sqrt(D) };
  const backend = q.device.backend;
  const s = (t: Tensor) => t.storageFor("attention");
  const { o, lse } = backend.attention(s(q), s(k), s(v), p);
  const out = q.device.wrap(o, q.shape);
  const savedLse = q.device.wrap(lse, [B, Hq, T]);
  const result = recordOp("attention", out, [q, k, v], [q, k, v, out, savedLse], (g, [sq, sk, sv, so, sl]) => {
    const { dq, dk, dv } = backend.attentionGrad(s(sq), s(sk), s(sv), s(so), s(sl), s(g), p);
    return [q.device.wrap(dq, q.shape), q.device.wrap(dk, k.shape), q.device.wrap(dv, v.shape)];
  });
  savedLse.dispose();
  return result;
}
