// warmupCosine against its closed form: warmup start and end, the start, quarter and midpoint of
// the cosine, the last step, after the end, the edge cases of no warmup and a one-step decay, and
// validation.

import assert from "node:assert/strict";
import { warmupCosine } from "../src/optim/schedule.ts";

const close = (actual: number, expected: number, what: string) =>
  assert.ok(Math.abs(actual - expected) <= 1e-15 * Math.abs(expected), `${what}: got ${actual}, expected ${expected}`);

Deno.test("warmupCosine: warmup, cosine decay to minLr at the last step, minLr after", () => {
  const [maxLr, minLr] = [6e-4, 6e-5];
  // 10 warmup steps, decay over steps 10..110 (100 intervals), last step 110.
  const lr = warmupCosine({ maxLr, minLr, warmupSteps: 10, totalSteps: 111 });
  close(lr(0), maxLr / 10, "warmup start");
  close(lr(4), maxLr * 5 / 10, "warmup middle");
  close(lr(9), maxLr, "warmup end");
  close(lr(10), maxLr, "decay start");
  close(lr(35), minLr + (maxLr - minLr) * (1 + Math.SQRT1_2) / 2, "cosine at a quarter");
  close(lr(60), (maxLr + minLr) / 2, "cosine midpoint");
  close(lr(110), minLr, "last step");
  close(lr(111), minLr, "one after the end");
  close(lr(10_000), minLr, "long after the end");
  for (let step = 10; step < 110; step++) assert.ok(lr(step + 1) < lr(step), `decay is strictly decreasing at ${step}`);
});

Deno.test("warmupCosine: no warmup starts at maxLr; a one-step decay lands on minLr", () => {
  const noWarmup = warmupCosine({ maxLr: 1, minLr: 0, warmupSteps: 0, totalSteps: 5 });
  assert.deepEqual([0, 1, 2, 3, 4].map(noWarmup).map((x) => +x.toFixed(12)), [1, 0.853553390593, 0.5, 0.146446609407, 0]);
  const shortDecay = warmupCosine({ maxLr: 2, minLr: 0.5, warmupSteps: 4, totalSteps: 5 });
  assert.deepEqual([0, 1, 2, 3, 4, 5].map(shortDecay), [0.5, 1, 1.5, 2, 0.5, 0.5]);
  const single = warmupCosine({ maxLr: 1, minLr: 0.1, warmupSteps: 0, totalSteps: 1 });
  assert.equal(single(0), 0.1);
});

Deno.test("warmupCosine: bad options and steps name the value", () => {
  const base = { maxLr: 1e-3, minLr: 1e-4, warmupSteps: 10, totalSteps: 100 };
  const rejects = (options: typeof base, message: RegExp) =>
    assert.throws(() => warmupCosine(options), { name: "RangeError", message });
  rejects({ ...base, maxLr: -1 }, /maxLr must be a finite number ≥ 0, got -1/);
  rejects({ ...base, minLr: 2e-3 }, /minLr must be in \[0, maxLr = 0.001\], got 0.002/);
  rejects({ ...base, minLr: NaN }, /minLr .* got NaN/);
  rejects({ ...base, totalSteps: 0 }, /totalSteps must be an integer ≥ 1, got 0/);
  rejects({ ...base, totalSteps: 10.5 }, /totalSteps .* got 10.5/);
  rejects({ ...base, warmupSteps: 100 }, /warmupSteps must be an integer in \[0, totalSteps = 100\), got 100/);
  rejects({ ...base, warmupSteps: -1 }, /warmupSteps .* got -1/);
  const lr = warmupCosine(base);
  assert.throws(() => lr(-1), { name: "RangeError", message: /step must be an integer ≥ 0, got -1/ });
  assert.throws(() => lr(2.5), { name: "RangeError", message: /got 2.5/ });
});
