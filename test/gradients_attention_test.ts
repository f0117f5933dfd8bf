// Gradients of ops.attention against central finite differences (see finite_differences.ts): causal
// and not, grouped-query heads, and a whole attention block built around it.

import { ops, type Tensor } from "../mod.ts";
import { type GradCase, gradTest, input, seededInputs } from "./finite_differences.ts";

const { normal } = seededInputs(5079);

const CASES: GradCase[] = [];
for (const causal of [false, true]) {
  CASES.push(
    {
      name: `attention [1,2,4,3] causal=${causal}`,
      inputs: [input([1, 2, 4, 3], normal()), input([1, 2, 4, 3], normal()), input([1, 2, 4, 3], normal())],
      fn: ([q, k, v]) => ops.attention(q, k, v, { causal }),
    },
    {
      name: `attention grouped-query Hq=4 Hkv=2 causal=${causal}`,
      inputs: [input([1, 4, 3, 2], normal(1.5)), input([1, 2, 3, 2], normal(1.5)), input([1, 2, 3, 2], normal())],
      fn: ([q, k, v]) => ops.attention(q, k, v, { causal }),
    },
    {
      name: `attention B=2 T=5 D=5 causal=${causal}`,
      inputs: [input([2, 1, 5, 5], normal()), input([2, 1, 5, 5], normal()), input([2, 1, 5, 5], normal())],
      fn: ([q, k, v]) => ops.attention(q, k, v, { causal }),
    },
  );
}

CASES.push({
  name: "attention block (rmsNorm → qkv → rope → grouped-query attention → o-proj → crossEntropy)",
  inputs: [input([5, 8], normal()), input([8], normal(0.5)), input([8, 16], normal(0.5)), input([8, 11], normal(0.5))],
  stride: 3,
  fn: ([x, gain, wqkv, wo]) => {
    const [T, heads, kvHeads, D] = [5, 2, 1, 4];
    const h = ops.rmsNorm(x, gain);
    const [q, k, v] = ops.split(ops.matmul(h, wqkv), [heads * D, kvHeads * D, kvHeads * D], 1);
    const toHeads = (t: Tensor, n: number) => ops.permute(ops.reshape(t, [1, T, n, D]), [0, 2, 1, 3]);
    const qh = ops.rope(toHeads(q, heads));
    const kh = ops.rope(toHeads(k, kvHeads));
    const o = ops.attention(qh, kh, toHeads(v, kvHeads), { causal: true });
    const merged = ops.reshape(ops.permute(o, [0, 2, 1, 3]), [T, heads * D]);
    return ops.crossEntropy(ops.matmul(merged, wo), new Int32Array([3, 10, 0, 7, 7]));
  },
});

for (const c of CASES) gradTest(c);
