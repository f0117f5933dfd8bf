// Embedding lookup into a [vocab, dim] table and its backward (a scatter-add of gradient rows).

/** y[i] = w[ids[i]] for n ids; an id outside [0, vocab) gives a zero row. */
export function embedding(w: Float32Array, ids: Int32Array, n: number, vocab: number, dim: number): Float32Array {
  const y = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    const id = ids[i];
    if (id < 0 || id >= vocab) continue;
    const source = id * dim;
    const target = i * dim;
    for (let j = 0; j < dim; j++) y[target + j] = w[source + j];
  }
  return y;
}

/**
 * dW [vocab, dim]: each dy row added to the row of its id, in token order, straight into the f32
 * result (the rounding sequence the contract fixes); ids outside [0, vocab) contribute nothing.
 */
export function embeddingGrad(ids: Int32Array, dy: Float32Array, n: number, vocab: number, dim: number): Float32Array {
  const dw = new Float32Array(vocab * dim);
  for (let i = 0; i < n; i++) {
    const id = ids[i];
    if (id < 0 || id >= vocab) continue;
    const target = id * dim;
    const source = i * dim;
    for (let j = 0; j < dim; j++) dw[target + j] += dy[source + j];
  }
  return dw;
}
