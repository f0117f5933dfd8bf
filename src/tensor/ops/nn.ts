// Neural-network ops over the last axis or over token sequences: softmax, norms, embedding, RoPE,
// cross-entropy.

import { recordOp } from "../autograd.ts";
import { ShapeError } from "../errors.ts";
import { formatShape } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { checkDtype, checkFloat } from "./checks.ts";

/** [rows, cols] view of x's last axis. */
function rowsOf(x: Tensor): [number, number] {
  const cols = x.shape.at(-1) ?? 1;
  return [cols === 0 ? 0 : x.size / cols, cols];
}

function softmaxLike(op: "softmax" | "logSoftmax", x: Tensor): Tensor {
  checkFloat(op, x);
  const log = op === "logSoftmax";
  const [rows, cols] = rowsOf(x);
  const backend = x.device.backend;
  const y = x.device.wrap(backend.softmax(x.storageFor(op), rows, cols, log), x.shape);
  return recordOp(op, y, [x], [y], (g, [sy]) => [
    x.device.wrap(backend.softmaxGrad(sy.storageFor(op), g.storageFor(op), rows, cols, log), x.shape),
  ]);
}

/** Softmax over the last axis. */
export function softmax(x: Tensor): Tensor {
  return softmaxLike("softmax", x);
}

/** log(softmax(x)) over the last axis, computed stably. */
export function logSoftmax(x: Tensor): Tensor {
  return softmaxLike("logSoftmax", x);
}

function checkWeight(op: string, x: Tensor, weight: Tensor, name = "weight"): void {
  const cols = x.shape.at(-1);
  if (weight.shape.length !== 1 || weight.shape[0] !== cols) {
    throw new ShapeError(`${op}: ${name} ${formatShape(weight.shape)} must be [${cols}] for input ${formatShape(x.shape)}`);
  }
}

/** x / sqrt(mean(x²) + eps) · weight over the last axis. */
export function rmsNorm(x: Tensor, weight: Tensor, eps = 1e-5): Tensor {
  checkFloat("rmsNorm", x, weight);
  checkWeight("rmsNorm", x, weight);
  const [rows, cols] = rowsOf(x);
  const backend = x.device.backend;
  const { y, rstd } = backend.rmsNorm(x.storageFor("rmsNorm"), weight.storageFor("rmsNorm"), rows, cols, eps);
  const out = x.device.wrap(y, x.shape);
  const saved = x.device.wrap(rstd, [rows]);
  const result = recordOp("rmsNorm", out, [x, weight], [x, weight, saved], (g, [sx, sw, sr]) => {
    const { dx, dw } = backend.rmsNormGrad(
      sx.storageFor("rmsNorm"),
      sw.storageFor("rmsNorm"),
      sr.storageFor("rmsNorm"),
      g.storageFor("rmsNorm"),
      rows,
      cols,
    );
    return [x.device.wrap(dx, x.shape), x.device.wrap(dw, weight.shape)];
  });
  saved.dispose();
  return result;
}

/** (x − mean) / sqrt(var + eps) · weight + bias over the last axis. */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  checkFloat("layerNorm", x, weight, bias);
  checkWeight("layerNorm", x, weight);
  checkWeight("layerNorm", x, bias, "bias");
  const [rows, cols] = rowsOf(x);
  const backend = x.device.backend;
  const s = (t: Tensor) => t.storageFor("layerNorm");
  const { y, mean, rstd } = backend.layerNorm(s(x), s(weight), s(bias), rows, cols, eps);
  const out = x.device.wrap(y, x.shape);
  const savedMean = x.device.wrap(mean, [rows]);
  const savedRstd = x.device.wrap(rstd, [rows]);
  const result = recordOp("layerNorm", out, [x, weight, bias], [x, weight, savedMean, savedRstd], (g, [sx, sw, sm, sr]) => {
    const { dx, dw, db } = backend.layerNormGrad(s(sx), s(sw), s(sm), s(sr), s(g), rows, cols);
    return [x.device.wrap(dx, x.shape), x.device.wrap(dw, weight.shape), x.device.wrap(db, bias.shape)];
  });
  savedMean.dispose();
  savedRstd.dispose();
  return result;
}

/** An i32 tensor from host ids (checked against an exclusive bound) or the tensor itself. */
function indexTensor(
  op: string,
  like: Tensor,
  ids: Int32Array | Tensor,
  bound: number,
  what: string,
): { ids: Tensor; owned: boolean } {
  if (!(ids instanceof Int32Array)) {
    checkDtype(op, "i32", ids);
    return { ids, owned: false };
  }
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < 0 || ids[i] >= bound) throw new RangeError(`${op}: ${what} ${ids[i]} at index ${i} is outside [0, ${bound})`);
  }
  return { ids: like.device.tensor(ids, [ids.length]), owned: true };
}

/** Rows of weight [vocab, dim] picked by ids; output is [...ids.shape, dim]. */
export function embedding(weight: Tensor, ids: Int32Array | Tensor): Tensor {
  checkFloat("embedding", weight);
  if (weight.shape.length !== 2) throw new ShapeError(`embedding: weight must be [vocab, dim], got ${formatShape(weight.shape)}`);
  const [vocab, dim] = weight.shape;
  const index = indexTensor("embedding", weight, ids, vocab, "id");
  const n = index.ids.size;
  const backend = weight.device.backend;
  const out = weight.device.wrap(
    backend.embedding(weight.storageFor("embedding"), index.ids.storageFor("embedding"), n, vocab, dim),
    [...index.ids.shape, dim],
  );
  const result = recordOp("embedding", out, [weight], [index.ids], (g, [sIds]) => [
    weight.device.wrap(
      backend.embeddingGrad(sIds.storageFor("embedding"), g.storageFor("embedding"), n, vocab, dim),
      weight.shape,
    ),
  ]);
  if (index.owned) index.ids.dispose();
  return result;
}

export interface RopeOptions {
  /** Base of the rotary frequencies (10000 in most models). */
  theta?: number;
  /** Position of the first token (for a KV cache or a sequence shard). */
  positionOffset?: number;
}

/** Rotary position embedding (rotate-half form) on x [B, H, T, D]. */
export function rope(x: Tensor, options: RopeOptions = {}): Tensor {
  checkFloat("rope", x);
  if (x.shape.length !== 4 || x.shape[3] % 2 !== 0) {
    throw new ShapeError(`rope: expects [B, H, T, D] with an even D, got ${formatShape(x.shape)}`);
  }
  const theta = options.theta ?? 10000;
  const offset = options.positionOffset ?? 0;
  const [B, H, T, D] = x.shape;
  const backend = x.device.backend;
  const out = x.device.wrap(backend.rope(x.storageFor("rope"), B * H, T, D, theta, offset, false), x.shape);
  return recordOp("rope", out, [x], [], (g) => [
    x.device.wrap(backend.rope(g.storageFor("rope"), B * H, T, D, theta, offset, true), x.shape),
  ]);
}

/** Mean negative log-likelihood of targets under softmax(logits); logits [N, V], targets [N]. */
export function crossEntropy(logits: Tensor, targets: Int32Array | Tensor): Tensor {
  checkFloat("crossEntropy", logits);
  if (logits.shape.length !== 2) throw new ShapeError(`crossEntropy: logits must be [N, V], got ${formatShape(logits.shape)}`);
  const [rows, vocab] = logits.shape;
  const index = indexTensor("crossEntropy", logits, targets, vocab, "target");
  if (index.ids.size !== rows) {
    if (index.owned) index.ids.dispose();
    throw new ShapeError(`crossEntropy: ${index.ids.size} targets for logits ${formatShape(logits.shape)} (need ${rows})`);
  }
  if (rows === 0) throw new ShapeError("crossEntropy: the mean over zero rows is undefined");
  const backend = logits.device.backend;
  const perRow = backend.crossEntropy(logits.storageFor("crossEntropy"), index.ids.storageFor("crossEntropy"), rows, vocab);
  const loss = logits.device.wrap(backend.reduce("mean", perRow, 1, rows, 1), []);
  backend.release(perRow);
  const result = recordOp("crossEntropy", loss, [logits], [logits, index.ids], (g, [sl, sIds]) => [
    logits.device.wrap(
      backend.crossEntropyGrad(
        sl.storageFor("crossEntropy"),
        sIds.storageFor("crossEntropy"),
        g.storageFor("crossEntropy"),
        rows,
        vocab,
        1 / rows,
      ),
      logits.shape,
    ),
  ]);
  if (index.owned) index.ids.dispose();
  return result;
}
