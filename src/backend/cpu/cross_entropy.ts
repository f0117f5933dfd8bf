// Cross-entropy of logits [rows, vocab] against i32 targets, with a stable log-sum-exp, and its
// backward. A target outside [0, vocab) has no defined loss: its row gives NaN (loss and gradient)
// so the mistake cannot pass silently.

/** logsumexp of logits[start, start + vocab) in f64, the row max subtracted first. */
function logSumExp(logits: Float32Array, start: number, vocab: number): number {
  const end = start + vocab;
  let max = -Infinity;
  for (let i = start; i < end; i++) max = Math.max(max, logits[i]);
  let sum = 0;
  for (let i = start; i < end; i++) sum += Math.exp(logits[i] - max);
  return max + Math.log(sum);
}

/** loss[r] = logsumexp(logits[r]) − logits[r, targets[r]]. */
export function crossEntropy(logits: Float32Array, targets: Int32Array, rows: number, vocab: number): Float32Array {
  const loss = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const target = targets[r];
    const start = r * vocab;
    loss[r] = target < 0 || target >= vocab ? NaN : logSumExp(logits, start, vocab) - logits[start + target];
  }
  return loss;
}

/** dlogits = (softmax(logits) − onehot(targets))·dloss[0]·scale. */
export function crossEntropyGrad(
  logits: Float32Array,
  targets: Int32Array,
  dloss: Float32Array,
  rows: number,
  vocab: number,
  scale: number,
): Float32Array {
  const dlogits = new Float32Array(rows * vocab);
  const factor = dloss[0] * scale;
  for (let r = 0; r < rows; r++) {
    const target = targets[r];
    const start = r * vocab;
    const end = start + vocab;
    if (target < 0 || target >= vocab) {
      dlogits.fill(NaN, start, end);
      continue;
    }
    const lse = logSumExp(logits, start, vocab);
    for (let i = start; i < end; i++) dlogits[i] = Math.exp(logits[i] - lse) * factor;
    dlogits[start + target] -= factor;
  }
  return dlogits;
}
