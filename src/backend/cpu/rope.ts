// Rotary position embedding, rotate-half form, on x [rows, T, D] (rows = B·H).

/**
 * For j < D/2 and p = t + positionOffset, angle = p·theta^(−2j/D):
 * y[j] = x[j]·cos − x[j + D/2]·sin, y[j + D/2] = x[j + D/2]·cos + x[j]·sin.
 * inverse rotates by −angle, which is the backward. The cos/sin table [T, D/2] is built once per call.
 */
export function rope(
  x: Float32Array,
  rows: number,
  T: number,
  D: number,
  theta: number,
  positionOffset: number,
  inverse: boolean,
): Float32Array {
  const y = new Float32Array(rows * T * D);
  const half = D / 2;
  const cos = new Float64Array(T * half);
  const sin = new Float64Array(T * half);
  const direction = inverse ? -1 : 1;
  for (let j = 0; j < half; j++) {
    const frequency = theta ** (-2 * j / D);
    for (let t = 0; t < T; t++) {
      const angle = (t + positionOffset) * frequency;
      cos[t * half + j] = Math.cos(angle);
      sin[t * half + j] = direction * Math.sin(angle);
    }
  }
  for (let r = 0; r < rows; r++) {
    for (let t = 0; t < T; t++) {
      const base = (r * T + t) * D;
      const table = t * half;
      for (let j = 0; j < half; j++) {
        const first = x[base + j];
        const second = x[base + j + half];
        const c = cos[table + j];
        const s = sin[table + j];
        y[base + j] = first * c - second * s;
        y[base + j + half] = second * c + first * s;
      }
    }
  }
  return y;
}
