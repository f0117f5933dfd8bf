// ops.adamwUpdate on both backends against the PyTorch AdamW formula evaluated here in doubles, step
// by step from the state the device holds.

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
