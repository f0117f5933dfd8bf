// Row-wise softmax and log-softmax over the last axis of [rows, cols], and their backward.
// Row statistics are f64; the row max is subtracted before exponentiating.

/** softmax (or log-softmax when log) of each row. A row of length 0 yields nothing. */
export function softmax(x: Float32Array, rows: number, cols: number, log: boolean): Float32Array {
  const y = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const start = r * cols;
    const end = start + cols;
    let max = -Infinity;
    for (let i = start; i < end; i++) max = Math.max(max, x[i]);
    let sum = 0;
    for (let i = start; i < end; i++) sum += Math.exp(x[i] - max);
    if (log) {
      const shift = max + Math.log(sum);
      for (let i = start; i < end; i++) y[i] = x[i] - shift;
    } else {
      const inverse = 1 / sum;
      for (let i = start; i < end; i++) y[i] = Math.exp(x[i] - max) * inverse;
    }
  }
  return y;
}

/** softmax: dx = y·(dy − Σ dy·y); log-softmax: dx = dy − exp(y)·Σ dy. */
export function softmaxGrad(y: Float32Array, dy: Float32Array, rows: number, cols: number, log: boolean): Float32Array {
  const dx = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const start = r * cols;
    const end = start + cols;
    if (log) {
      let sum = 0;
      for (let i = start; i < end; i++) sum += dy[i];
      for (let i = start; i < end; i++) dx[i] = dy[i] - Math.exp(y[i]) * sum;
    } else {
      let dot = 0;
      for (let i = start; i < end; i++) dot += dy[i] * y[i];
      for (let i = start; i < end; i++) dx[i] = y[i] * (dy[i] - dot);
    }
  }
  return dx;
}
