// RMSNorm and LayerNorm over the last axis of [rows, cols], forward and backward. Row statistics
// and the weight/bias gradients (sums over rows) accumulate in f64; the variance is two-pass.

/** y = x·rstd·w with rstd = 1 / sqrt(mean(x²) + eps) per row. */
export function rmsNorm(
  x: Float32Array,
  w: Float32Array,
  rows: number,
  cols: number,
  eps: number,
): { y: Float32Array; rstd: Float32Array } {
  const y = new Float32Array(rows * cols);
  const rstd = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const start = r * cols;
    let squares = 0;
    for (let j = 0; j < cols; j++) squares += x[start + j] * x[start + j];
    const s = 1 / Math.sqrt(squares / cols + eps);
    rstd[r] = s;
    for (let j = 0; j < cols; j++) y[start + j] = x[start + j] * s * w[j];
  }
  return { y, rstd };
}

/**
 * With s = rstd and g = dy·w: dx = s·g − x·s³·Σ(g·x)/cols; dw = Σ_rows dy·x·s.
 * (From d s / d x_j = −s³·x_j / cols.)
 */
export function rmsNormGrad(
  x: Float32Array,
  w: Float32Array,
  rstd: Float32Array,
  dy: Float32Array,
  rows: number,
  cols: number,
): { dx: Float32Array; dw: Float32Array } {
  const dx = new Float32Array(rows * cols);
  const dwSum = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const start = r * cols;
    const s = rstd[r];
    let gx = 0;
    for (let j = 0; j < cols; j++) {
      gx += dy[start + j] * w[j] * x[start + j];
      dwSum[j] += dy[start + j] * x[start + j] * s;
    }
    const correction = s * s * s * gx / cols;
    for (let j = 0; j < cols; j++) dx[start + j] = s * w[j] * dy[start + j] - x[start + j] * correction;
  }
  return { dx, dw: new Float32Array(dwSum) };
}

/** y = (x − mean)·rstd·w + b with the biased variance: rstd = 1 / sqrt(mean((x − mean)²) + eps). */
export function layerNorm(
  x: Float32Array,
  w: Float32Array,
  b: Float32Array,
  rows: number,
  cols: number,
  eps: number,
): { y: Float32Array; mean: Float32Array; rstd: Float32Array } {
  const y = new Float32Array(rows * cols);
  const mean = new Float32Array(rows);
  const rstd = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const start = r * cols;
    let sum = 0;
    for (let j = 0; j < cols; j++) sum += x[start + j];
    const mu = sum / cols;
    let squares = 0;
    for (let j = 0; j < cols; j++) squares += (x[start + j] - mu) * (x[start + j] - mu);
    const s = 1 / Math.sqrt(squares / cols + eps);
    mean[r] = mu;
    rstd[r] = s;
    for (let j = 0; j < cols; j++) y[start + j] = (x[start + j] - mu) * s * w[j] + b[j];
  }
  return { y, mean, rstd };
}

/**
 * With x̂ = (x − mean)·rstd and g = dy·w: dx = rstd·(g − mean(g) − x̂·mean(g·x̂));
 * dw = Σ_rows dy·x̂; db = Σ_rows dy.
 */
export function layerNormGrad(
  x: Float32Array,
  w: Float32Array,
  mean: Float32Array,
  rstd: Float32Array,
  dy: Float32Array,
  rows: number,
  cols: number,
): { dx: Float32Array; dw: Float32Array; db: Float32Array } {
  const dx = new Float32Array(rows * cols);
  const dwSum = new Float64Array(cols);
  const dbSum = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const start = r * cols;
    const mu = mean[r];
    const s = rstd[r];
    let gSum = 0;
    let gxSum = 0;
    for (let j = 0; j < cols; j++) {
      const d = dy[start + j];
      const xhat = (x[start + j] - mu) * s;
      const g = d * w[j];
      gSum += g;
      gxSum += g * xhat;
      dwSum[j] += d * xhat;
      dbSum[j] += d;
    }
    const gMean = gSum / cols;
    const gxMean = gxSum / cols;
    for (let j = 0; j < cols; j++) {
      const xhat = (x[start + j] - mu) * s;
      dx[start + j] = s * (dy[start + j] * w[j] - gMean - xhat * gxMean);
    }
  }
  return { dx, dw: new Float32Array(dwSum), db: new Float32Array(dbSum) };
}
