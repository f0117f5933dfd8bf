// ops.adamwUpdate on both backends against the PyTorch AdamW formula evaluated here in doubles, step
// by step from the state the device holds; with decay runs, against one update per run.

import assert from "node:assert/strict";
import { ops } from "../mod.ts";
import { assertWithin } from "./assertions.ts";
import { disposeAll, randomValues, readF32, testBothBackends } from "./helpers.ts";

testBothBackends("adamwUpdate: three steps against the PyTorch formula", async (device) => {
  for (const n of [1, 91, 1031]) {
    const shape = n === 91 ? [7, 13] : [n];
    const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1, gradScale: 0.5 };
    // The device's state after the previous step: each step is checked from where the device is.
    let param: Float32Array = randomValues(n, 2700 + n);
    let m: Float32Array = new Float32Array(n);
    let v: Float32Array = new Float32Array(n);
    const p = device.tensor(param, shape);
    const mT = device.zeros(shape);
    const vT = device.zeros(shape);
    for (let step = 1; step <= 3; step++) {
      const gradValues = randomValues(n, 2750 + 10 * n + step, step === 2 ? 1e-3 : 2);
      const g = device.tensor(gradValues, shape);
      const hyper = { ...hp, step, lr: hp.lr * step };
      ops.adamwUpdate(p, g, mT, vT, hyper);
      g.dispose();
      // Reference in doubles; each bound is a few f32 roundings of the terms that are summed, since
      // m and the parameter are differences of terms that can nearly cancel.
      const expected = { m: new Float64Array(n), v: new Float64Array(n), param: new Float64Array(n) };
      const bound = { m: new Float64Array(n), v: new Float64Array(n), param: new Float64Array(n) };
      const stepSize = hyper.lr / (1 - hyper.beta1 ** step);
      const correction = Math.sqrt(1 - hyper.beta2 ** step);
      for (let i = 0; i < n; i++) {
        const gi = gradValues[i] * hyper.gradScale;
        const [mTerm, gTerm] = [hyper.beta1 * m[i], (1 - hyper.beta1) * gi];
        const [vTerm, g2Term] = [hyper.beta2 * v[i], (1 - hyper.beta2) * gi * gi];
        expected.m[i] = mTerm + gTerm;
        expected.v[i] = vTerm + g2Term;
        bound.m[i] = 2e-6 * (Math.abs(mTerm) + Math.abs(gTerm)) + 1e-30;
        bound.v[i] = 2e-6 * (vTerm + g2Term) + 1e-30;
        const decayed = param[i] * (1 - hyper.lr * hyper.weightDecay);
        const update = (stepSize * expected.m[i]) / (Math.sqrt(expected.v[i]) / correction + hyper.eps);
        expected.param[i] = decayed - update;
        bound.param[i] = 2e-6 * (Math.abs(decayed) + Math.abs(update)) + 1e-30;
      }
      const what = `adamw n=${n} step ${step}`;
      m = await readF32(mT);
      v = await readF32(vT);
      param = await readF32(p);
      assertWithin(m, expected.m, (i) => bound.m[i], `${what} expAvg`);
      assertWithin(v, expected.v, (i) => bound.v[i], `${what} expAvgSq`);
      assertWithin(param, expected.param, (i) => bound.param[i], `${what} param`);
    }
    disposeAll(p, mT, vT);
  }
});

testBothBackends("adamwUpdate: decay runs give each run its weight decay, as one update per run would", async (device) => {
  const n = 1031;
  const hp = { lr: 5e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.7, step: 2, gradScale: 0.5 };
  const param = randomValues(n, 3100);
  const grad = randomValues(n, 3101);
  const moment = randomValues(n, 3102, 0.1);
  const square = randomValues(n, 3103).map((x) => x * x);
  // One run, three runs cut off the workgroup boundaries, and 37 runs (the binary search's depth).
  const layouts = [[0], [0, 300, 301], Array.from({ length: 37 }, (_, r) => r * 27 + (r % 3))];
  for (const starts of layouts) {
    const runs = starts.map((start, r) => ({ start, weightDecay: (r % 4) * 0.25 }));
    const whole = [param, grad, moment, square].map((values) => device.tensor(values, [n]));
    ops.adamwUpdate(whole[0], whole[1], whole[2], whole[3], { ...hp, decayRuns: runs });
    const expected = [new Float32Array(n), new Float32Array(n), new Float32Array(n)];
    for (const [r, { start, weightDecay }] of runs.entries()) {
      const end = r + 1 < runs.length ? runs[r + 1].start : n;
      const part = [param, grad, moment, square].map((values) => device.tensor(values.slice(start, end), [end - start]));
      ops.adamwUpdate(part[0], part[1], part[2], part[3], { ...hp, weightDecay });
      for (const [k, i] of [[0, 0], [1, 2], [2, 3]]) expected[k].set(await readF32(part[i]), start);
      disposeAll(...part);
    }
    const what = `${runs.length} runs`;
    assert.deepEqual(await readF32(whole[0]), expected[0], `${what}: param`);
    assert.deepEqual(await readF32(whole[2]), expected[1], `${what}: exp_avg`);
    assert.deepEqual(await readF32(whole[3]), expected[2], `${what}: exp_avg_sq`);
    disposeAll(...whole);
  }
  const t = () => device.zeros([4]);
  const [p, g, m, v] = [t(), t(), t(), t()];
  const bad: [{ start: number; weightDecay: number }[], RegExp][] = [
    [[{ start: 1, weightDecay: 0 }], /decayRuns must start at element 0, got a first run at 1/],
    [[], /decayRuns must start at element 0, got no runs/],
    [
      [{ start: 0, weightDecay: 0 }, { start: 0, weightDecay: 1 }],
      /decay run 1 starts at 0; starts must ascend strictly within \[0, 4\)/,
    ],
    [[{ start: 0, weightDecay: 0 }, { start: 4, weightDecay: 1 }], /decay run 1 starts at 4/],
    [[{ start: 0, weightDecay: -1 }], /decay run 0 has weight decay -1; it must be a finite number ≥ 0/],
  ];
  for (const [decayRuns, pattern] of bad) assert.throws(() => ops.adamwUpdate(p, g, m, v, { ...hp, decayRuns }), pattern);
  disposeAll(p, g, m, v);
});
