// Comparisons of numeric arrays that name the offending element: within a tolerance, within a bound
// per element, or exactly. Free of devices, so that backend tests can use them without WebGPU.

import assert from "node:assert/strict";

/** Asserts |actual − expected| ≤ atol + rtol·|expected| everywhere, naming the worst index. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol = 1e-5,
  atol = 1e-6,
  what = "values",
): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} vs ${expected.length}`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const [a, e] = [actual[i], expected[i]];
    // NaN and ±Infinity must match exactly (NaN equals NaN); finite values within the tolerance.
    const excess = Number.isFinite(a) && Number.isFinite(e)
      ? Math.abs(a - e) - (atol + rtol * Math.abs(e))
      : a === e || (Number.isNaN(a) && Number.isNaN(e))
      ? 0
      : Infinity;
    if (excess > worstExcess) {
      worstExcess = excess;
      worst = i;
    }
  }
  if (worst >= 0) {
    assert.fail(`${what}: index ${worst}: got ${actual[worst]}, expected ${expected[worst]} (rtol ${rtol}, atol ${atol})`);
  }
}

/** |actual − expected| ≤ bound(i) everywhere (a bound per element), naming the worst index. */
export function assertWithin(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  bound: (i: number) => number,
  what: string,
): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} vs ${expected.length}`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const error = Math.abs(actual[i] - expected[i]);
    const excess = Number.isNaN(error) ? Infinity : error - bound(i);
    if (excess > worstExcess) [worst, worstExcess] = [i, excess];
  }
  if (worst >= 0) {
    assert.fail(`${what}: index ${worst}: got ${actual[worst]}, expected ${expected[worst]} (allowed error ${bound(worst)})`);
  }
}

/** Exact equality element by element (NaN equals NaN; infinities must match), naming the first difference. */
export function assertExact(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} vs ${expected.length}`);
  for (let i = 0; i < actual.length; i++) {
    const same = actual[i] === expected[i] || (Number.isNaN(actual[i]) && Number.isNaN(expected[i]));
    if (!same) assert.fail(`${what}: index ${i}: got ${actual[i]}, expected ${expected[i]}`);
  }
}
