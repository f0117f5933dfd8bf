// Strided index spaces walked row by row: the odometer behind broadcasting binary ops and
// strided copies. Dimensions are coalesced first, so equal shapes, scalar operands and
// contiguous copies collapse into one flat row and the caller's inner loop does all the work.

/** An index space shared by several operands, each with its own element strides per dimension. */
export interface StridedSpace {
  /** Sizes after coalescing; at least one dimension (a scalar space is [1]). */
  shape: number[];
  /** strides[operand][dimension], aligned with shape. */
  strides: number[][];
}

/**
 * Drops size-1 dimensions and merges neighbours that every operand walks as one run
 * (stride[d] == stride[d + 1] · shape[d + 1], which includes two broadcast strides of 0).
 */
export function coalesce(shape: readonly number[], strides: readonly (readonly number[])[]): StridedSpace {
  const outShape: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = outShape.length - 1;
    const mergeable = last >= 0 && strides.every((s, k) => outStrides[k][last] === s[d] * shape[d]);
    if (mergeable) {
      outShape[last] *= shape[d];
      for (let k = 0; k < strides.length; k++) outStrides[k][last] = strides[k][d];
    } else {
      outShape.push(shape[d]);
      for (let k = 0; k < strides.length; k++) outStrides[k].push(strides[k][d]);
    }
  }
  if (outShape.length === 0) {
    outShape.push(1);
    for (const s of outStrides) s.push(0);
  }
  return { shape: outShape, strides: outStrides };
}

/**
 * Calls visitRow once per innermost row of space (rows of length shape[last]) with the offset
 * of the row's first element for each operand, starting from baseOffsets. The offsets array is
 * reused between calls. An empty space visits nothing.
 */
export function forEachRow(space: StridedSpace, baseOffsets: readonly number[], visitRow: (offsets: number[]) => void): void {
  const { shape, strides } = space;
  const rank = shape.length;
  for (const size of shape) if (size === 0) return;
  const operands = strides.length;
  const offsets = baseOffsets.slice();
  const counters = new Array<number>(rank).fill(0);
  for (;;) {
    visitRow(offsets);
    let d = rank - 2;
    for (; d >= 0; d--) {
      counters[d]++;
      if (counters[d] < shape[d]) {
        for (let k = 0; k < operands; k++) offsets[k] += strides[k][d];
        break;
      }
      counters[d] = 0;
      for (let k = 0; k < operands; k++) offsets[k] -= strides[k][d] * (shape[d] - 1);
    }
    if (d < 0) return;
  }
}

/** Row-major element strides of shape, right-aligned to rank, with 0 where shape broadcasts (size 1 or missing). */
export function broadcastStrides(shape: readonly number[], rank: number): number[] {
  const strides = new Array<number>(rank).fill(0);
  let stride = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const d = rank - shape.length + i;
    strides[d] = shape[i] === 1 ? 0 : stride;
    stride *= shape[i];
  }
  return strides;
}
