// Gradients of the layout ops (reshape, transpose, permute, slice, concat, split, broadcastTo)
// against central finite differences (see finite_differences.ts).

import { ops } from "../mod.ts";
import { type GradCase, gradTest, input, seededInputs } from "./finite_differences.ts";

const { normal } = seededInputs(5099);

const CASES: GradCase[] = [
  { name: "reshape [3,4] → [2,-1]", inputs: [input([3, 4], normal())], fn: ([x]) => ops.reshape(x, [2, -1]) },
  { name: "transpose [3,4,2] last two", inputs: [input([3, 4, 2], normal())], fn: ([x]) => ops.transpose(x) },
  { name: "transpose [3,4,2] axes 0, 2", inputs: [input([3, 4, 2], normal())], fn: ([x]) => ops.transpose(x, 0, 2) },
  { name: "permute [2,3,4] by [2,0,1]", inputs: [input([2, 3, 4], normal())], fn: ([x]) => ops.permute(x, [2, 0, 1]) },
  { name: "slice [4,5] begin [1,1] size [2,-1]", inputs: [input([4, 5], normal())], fn: ([x]) => ops.slice(x, [1, 1], [2, -1]) },
  {
    name: "concat three inputs axis 0",
    inputs: [input([2, 3], normal()), input([1, 3], normal()), input([3, 3], normal())],
    fn: (xs) => ops.concat(xs, 0),
  },
  { name: "concat axis -1", inputs: [input([2, 3], normal()), input([2, 2], normal())], fn: (xs) => ops.concat(xs, -1) },
  {
    name: "split [3,7] into [2,4,1] along axis 1, reordered",
    inputs: [input([3, 7], normal())],
    fn: ([x]) => {
      const [a, b, c] = ops.split(x, [2, 4, 1], 1);
      return ops.concat([c, a, b], 1);
    },
  },
  { name: "split [6,2] into 3, one piece used", inputs: [input([6, 2], normal())], fn: ([x]) => ops.split(x, 3)[1] },
  { name: "broadcastTo [3,1] → [2,3,4]", inputs: [input([3, 1], normal())], fn: ([x]) => ops.broadcastTo(x, [2, 3, 4]) },
  { name: "broadcastTo [4] → [3,4]", inputs: [input([4], normal())], fn: ([x]) => ops.broadcastTo(x, [3, 4]) },
];

for (const c of CASES) gradTest(c);
