// Wall-clock timing of GPU work for the benchmark suites: warm up, then time batches of reps that
// each end with a GPU sync, and report the median batch's time per rep.

/** Timed batches per measurement; the median is reported. */
const BATCHES = 3;
/** Without --reps, reps per batch are sized so one batch takes about this long. */
const TARGET_BATCH_MS = 400;
const MAX_AUTO_REPS = 50;

export interface Timing {
  /** Median over the batches of (batch time / reps). */
  msPerRep: number;
  reps: number;
  /** Time per rep of every batch, in order. */
  batchMs: number[];
}

/**
 * Times `run` (one rep of the op, enqueuing GPU work) with `sync` (waits for the GPU) after each
 * batch. The first rep compiles pipelines and is not timed; a second untimed rep sizes the batches
 * when `reps` is not given; then one untimed batch warms up, and BATCHES batches are timed.
 */
export async function timeGpu(run: () => void, sync: () => Promise<void>, reps?: number): Promise<Timing> {
  run();
  await sync();
  let repsPerBatch = reps;
  let warmUpBatches = 1;
  if (repsPerBatch === undefined) {
    const start = performance.now();
    run();
    await sync();
    const estimate = Math.max(performance.now() - start, 0.01);
    repsPerBatch = Math.min(MAX_AUTO_REPS, Math.max(1, Math.round(TARGET_BATCH_MS / estimate)));
    // A one-rep batch is what the estimate just ran: it was the warm-up batch.
    if (repsPerBatch === 1) warmUpBatches = 0;
  }
  // Untimed warm-up batch: buffer pools fill up to their steady-state size during it.
  const batchMs: number[] = [];
  for (let batch = -warmUpBatches; batch < BATCHES; batch++) {
    const start = performance.now();
    for (let rep = 0; rep < repsPerBatch; rep++) run();
    await sync();
    if (batch >= 0) batchMs.push((performance.now() - start) / repsPerBatch);
  }
  return { msPerRep: median(batchMs), reps: repsPerBatch, batchMs };
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}
