// Bad input on both backends: each mistake throws the typed error, and its message names the op
// and the offending shapes, dtypes, ids or limits.

import assert from "node:assert/strict";
import {
  createDevice,
  type Device,
  DeviceLimitError,
  type DeviceStats,
  DisposedError,
  DTypeError,
  ops,
  ShapeError,
  ShardlabError,
  type Tensor,
} from "../mod.ts";
import { randomValues, testBothBackends } from "./helpers.ts";

type ErrorClass = new (...args: never[]) => Error;

/** fn must throw (synchronously or by rejecting) an instance of type whose message contains every fragment. */
async function assertFails(fn: () => unknown, type: ErrorClass, fragments: (string | RegExp)[], what: string): Promise<Error> {
  let error: unknown = null;
  try {
    await fn();
  } catch (e) {
    error = e;
  }
  assert.ok(error, `${what}: did not throw`);
  assert.ok(
    error instanceof type,
    `${what}: threw ${(error as Error).constructor?.name}: ${(error as Error).message}, expected ${type.name}`,
  );
  for (const fragment of fragments) {
    const found = typeof fragment === "string" ? error.message.includes(fragment) : fragment.test(error.message);
    assert.ok(found, `${what}: message "${error.message}" does not contain ${fragment}`);
  }
  return error;
}

function f32(device: Device, shape: number[], seed = 1): Tensor {
  return device.tensor(randomValues(shape.reduce((a, b) => a * b, 1), seed), shape);
}

function disposeAll(...tensors: Tensor[]): void {
  for (const t of tensors) t.dispose();
}

testBothBackends("errors: matmul shape mismatches name the op and both shapes", async (device) => {
  const a = f32(device, [2, 3]);
  const b = f32(device, [4, 5]);
  await assertFails(() => ops.matmul(a, b), ShapeError, ["matmul", "[2, 3]", "[4, 5]"], "matmul [2,3]×[4,5]");
  await assertFails(() => ops.matmul(a, a, { transB: false }), ShapeError, ["matmul", "[2, 3]"], "matmul [2,3]×[2,3]");
  await assertFails(() => ops.matmul(a, b, { transA: true }), ShapeError, ["matmul", "[2, 3]", "[4, 5]"], "matmul [2,3]ᵀ×[4,5]");
  await assertFails(() => ops.matmul(b, a, { transB: true }), ShapeError, ["matmul", "[4, 5]", "[2, 3]"], "matmul [4,5]×[2,3]ᵀ");
  const batchA = f32(device, [2, 3, 4]);
  const batchB = f32(device, [5, 4, 6]);
  await assertFails(() => ops.matmul(batchA, batchB), ShapeError, ["matmul", "[2]", "[5]"], "matmul batch [2] vs [5]");
  const vector = f32(device, [3]);
  await assertFails(() => ops.matmul(vector, b), ShapeError, ["matmul", "[3]"], "matmul of a vector");
  disposeAll(a, b, batchA, batchB, vector);
});

testBothBackends("errors: non-broadcastable elementwise shapes", async (device) => {
  const a = f32(device, [2, 3]);
  const b = f32(device, [4]);
  const c = f32(device, [3, 1, 2]);
  for (const op of ["add", "sub", "mul", "div", "equal"] as const) {
    await assertFails(() => ops[op](a, b), ShapeError, [op, "[2, 3]", "[4]"], `${op} [2,3] and [4]`);
    await assertFails(() => ops[op](c, a), ShapeError, [op, "[3, 1, 2]", "[2, 3]"], `${op} [3,1,2] and [2,3]`);
  }
  disposeAll(a, b, c);
});

testBothBackends("errors: dtype mismatches name the op and the dtypes", async (device) => {
  const ints = device.tensor(new Int32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
  const floats = f32(device, [3, 2]);
  const halves = ops.cast(floats, "f16");
  const bytes = device.tensor(new Uint8Array([1, 2, 3]), [1, 3]);
  await assertFails(() => ops.exp(ints), DTypeError, ["exp", "i32", "f32"], "exp(i32)");
  await assertFails(() => ops.matmul(floats, ints), DTypeError, ["matmul", "i32", "f32"], "matmul f32×i32");
  await assertFails(() => ops.add(halves, floats), DTypeError, ["add", "f16"], "add f16+f32");
  await assertFails(() => ops.softmax(bytes), DTypeError, ["softmax", "u8"], "softmax(u8)");
  await assertFails(() => ops.sum(ints), DTypeError, ["sum", "i32"], "sum(i32)");
  await assertFails(() => ops.rmsNorm(floats, ops.cast(floats, "i32")), DTypeError, ["rmsNorm", "i32"], "rmsNorm weight i32");
  await assertFails(() => ops.transpose(halves), DTypeError, ["permute", "f16"], "transpose(f16)");
  await assertFails(() => ops.embedding(floats, floats), DTypeError, ["embedding", "i32", "f32"], "embedding with f32 ids");
  await assertFails(() => ops.cast(floats, "f64" as never), DTypeError, ["cast", "f64"], "cast to f64");
  await assertFails(
    () => device.tensor([1, 2], [2], { dtype: "i32", requiresGrad: true }),
    DTypeError,
    ["requiresGrad", "i32"],
    "i32 requiresGrad",
  );
  await assertFails(() => device.tensor([1, 2], [2], { dtype: "bf16" as never }), DTypeError, ["bf16"], "unknown dtype");
  disposeAll(ints, floats, halves, bytes);
});

testBothBackends("errors: device.tensor with the wrong number of values or a bad shape", async (device) => {
  await assertFails(
    () => device.tensor([1, 2, 3, 4, 5], [2, 3]),
    ShapeError,
    ["tensor", "5 values", "[2, 3]"],
    "5 values for [2,3]",
  );
  await assertFails(
    () => device.tensor(new Float32Array(7), [7, 1, 0]),
    ShapeError,
    ["tensor", "7 values", "[7, 1, 0]"],
    "7 values for an empty shape",
  );
  await assertFails(() => device.tensor([1], [-1]), ShapeError, ["tensor", "[-1]"], "negative dimension");
  await assertFails(() => device.zeros([2.5]), ShapeError, ["zeros", "[2.5]"], "fractional dimension");
});

testBothBackends("errors: a disposed tensor used again", async (device) => {
  const x = f32(device, [2, 3]);
  const y = f32(device, [2, 3], 2);
  const before = device.stats().tensors;
  x.dispose();
  x.dispose(); // idempotent
  assert.equal(device.stats().tensors, before - 1, "a second dispose() must not count twice");
  assert.equal(x.isDisposed, true);
  await assertFails(() => ops.add(x, y), DisposedError, ["add", "dispose", "[2, 3]"], "add with a disposed tensor");
  await assertFails(() => ops.add(y, x), DisposedError, ["add", "dispose"], "add with a disposed second operand");
  await assertFails(() => ops.exp(x), DisposedError, ["exp", "dispose"], "exp of a disposed tensor");
  await assertFails(() => ops.reshape(x, [6]), DisposedError, ["reshape", "dispose"], "reshape of a disposed tensor");
  await assertFails(() => ops.slice(x, [0, 0], [1, 1]), DisposedError, ["slice", "dispose"], "slice of a disposed tensor");
  await assertFails(() => x.read(), DisposedError, ["read", "dispose"], "read() of a disposed tensor");
  const w = device.tensor(randomValues(6, 3), [2, 3], { requiresGrad: true });
  const loss = ops.sum(ops.exp(w));
  loss.dispose();
  await assertFails(() => loss.backward(), DisposedError, ["backward", "dispose"], "backward() of a disposed loss");
  assert.equal(w.grad, null);
  disposeAll(y, w);
});

testBothBackends("errors: backward on a non-scalar or on a tensor without a graph", async (device) => {
  const w = device.tensor(randomValues(6, 4), [2, 3], { requiresGrad: true });
  const y = ops.exp(w);
  await assertFails(() => y.backward(), ShapeError, ["backward", "scalar", "[2, 3]"], "backward on [2,3]");
  const constant = ops.sum(f32(device, [4]));
  const before = device.stats();
  await assertFails(() => constant.backward(), Error, ["backward", "require"], "backward without requiresGrad");
  assert.equal(device.stats().tensors, before.tensors, "tensors left behind by the rejected backward");
  disposeAll(w, y, constant);
});

testBothBackends("errors: backward twice through a freed graph", async (device) => {
  const w = device.tensor(randomValues(5, 5), [5], { requiresGrad: true });
  const loss = ops.sum(ops.mul(ops.exp(w), w));
  await loss.backward();
  assert.ok(w.grad);
  const first = Array.from(await w.grad.read());
  const before = device.stats();
  await assertFails(() => loss.backward(), DisposedError, ["backward", "freed"], "second backward");
  // The failed second pass must not have touched the gradient, nor left tensors behind.
  assert.deepEqual(Array.from(await w.grad.read()), first);
  const after = device.stats();
  assert.equal(after.tensors, before.tensors, "tensors left behind by the failed backward");
  assert.equal(after.bytes, before.bytes, "bytes left behind by the failed backward");
  w.grad.dispose();
  disposeAll(w, loss);
});

testBothBackends("errors: tensors past maxStorageBufferBindingSize throw DeviceLimitError without allocating", async (device) => {
  const limit = device.info.limits.maxStorageBufferBindingSize;
  const elements = Math.floor(limit / 4) + 1;
  const unchanged = (before: DeviceStats, what: string) => {
    const after = device.stats();
    for (const key of ["tensors", "buffers", "bytes", "pooledBytes"] as const) {
      assert.equal(after[key], before[key], `${what}: ${key} changed from ${before[key]} to ${after[key]}`);
    }
  };
  const before = device.stats();
  const error = await assertFails(() => device.zeros([elements]), DeviceLimitError, [
    "zeros",
    "maxStorageBufferBindingSize",
    String(limit),
  ], "zeros over the limit");
  assert.ok(error.message.includes(String(elements)), `message names the element count: ${error.message}`);
  await assertFails(() => device.zeros([Math.floor(limit / 2) + 1], { dtype: "f16" }), DeviceLimitError, [
    "maxStorageBufferBindingSize",
  ], "f16 zeros over the limit");
  await assertFails(
    () => device.zeros([limit + 1], { dtype: "u8" }),
    DeviceLimitError,
    ["maxStorageBufferBindingSize"],
    "u8 zeros over the limit",
  );
  unchanged(before, "rejected zeros()");
  // Outputs of ops are checked before they are allocated too.
  const side = Math.ceil(Math.sqrt(elements));
  const column = device.zeros([side, 1]);
  const row = device.zeros([1, side]);
  const inner = device.stats();
  await assertFails(
    () => ops.add(column, row),
    DeviceLimitError,
    ["add", "maxStorageBufferBindingSize"],
    "broadcast add over the limit",
  );
  await assertFails(
    () => ops.matmul(column, row),
    DeviceLimitError,
    ["matmul", "maxStorageBufferBindingSize"],
    "matmul over the limit",
  );
  await assertFails(
    () => ops.broadcastTo(row, [side, side]),
    DeviceLimitError,
    ["broadcastTo", "maxStorageBufferBindingSize"],
    "broadcastTo over the limit",
  );
  unchanged(inner, "rejected ops");
  disposeAll(column, row);
});

testBothBackends("errors: embedding and crossEntropy ids out of range name the id", async (device) => {
  const table = f32(device, [13, 4]);
  await assertFails(
    () => ops.embedding(table, new Int32Array([0, 12, 13])),
    RangeError,
    ["embedding", "13", "[0, 13)"],
    "embedding id 13",
  );
  await assertFails(() => ops.embedding(table, new Int32Array([-1])), RangeError, ["embedding", "-1"], "embedding id -1");
  const logits = f32(device, [3, 7]);
  await assertFails(
    () => ops.crossEntropy(logits, new Int32Array([0, 7, 1])),
    RangeError,
    ["crossEntropy", "7", "[0, 7)"],
    "target 7",
  );
  await assertFails(() => ops.crossEntropy(logits, new Int32Array([0, -2, 1])), RangeError, ["crossEntropy", "-2"], "target -2");
  await assertFails(
    () => ops.crossEntropy(logits, new Int32Array([0, 1])),
    ShapeError,
    ["crossEntropy", "2 targets", "[3, 7]"],
    "2 targets for 3 rows",
  );
  await assertFails(
    () => ops.crossEntropy(f32(device, [3]), new Int32Array([0, 1, 2])),
    ShapeError,
    ["crossEntropy", "[3]"],
    "1-D logits",
  );
  disposeAll(table, logits);
});

testBothBackends("errors: tensor values out of range for integer dtypes", async (device) => {
  await assertFails(() => device.tensor([0, 256], [2], { dtype: "u8" }), DTypeError, ["tensor", "256", "u8"], "u8 256");
  await assertFails(() => device.tensor([-1], [1], { dtype: "u8" }), DTypeError, ["tensor", "-1", "u8"], "u8 -1");
  await assertFails(() => device.tensor([127, 128], [2], { dtype: "i8" }), DTypeError, ["tensor", "128", "i8"], "i8 128");
  await assertFails(() => device.tensor([-129], [1], { dtype: "i8" }), DTypeError, ["tensor", "-129", "i8"], "i8 -129");
  await assertFails(
    () => device.tensor([2 ** 31], [1], { dtype: "i32" }),
    DTypeError,
    ["tensor", "2147483648", "i32"],
    "i32 2^31",
  );
  await assertFails(() => device.tensor([1.5], [1], { dtype: "i32" }), DTypeError, ["tensor", "1.5", "i32"], "i32 1.5");
  await assertFails(() => device.tensor([NaN], [1], { dtype: "u8" }), DTypeError, ["tensor", "NaN", "u8"], "u8 NaN");
});

testBothBackends("errors: layout ops reject bad shapes, axes and sizes", async (device) => {
  const x = f32(device, [2, 3]);
  await assertFails(() => ops.reshape(x, [4, 2]), ShapeError, ["reshape", "[2, 3]", "[4, 2]"], "reshape 6 → 8");
  await assertFails(() => ops.reshape(x, [-1, -1]), ShapeError, ["reshape", "[2, 3]"], "reshape two -1");
  await assertFails(() => ops.reshape(x, [4, -1]), ShapeError, ["reshape", "[4, -1]"], "reshape 6 into 4×?");
  await assertFails(() => ops.permute(x, [0, 0]), ShapeError, ["permute", "[0, 0]"], "permute repeated axis");
  await assertFails(() => ops.permute(x, [0]), ShapeError, ["permute"], "permute wrong length");
  await assertFails(() => ops.transpose(x, 0, 2), ShapeError, ["transpose", "axis 2"], "transpose axis 2");
  await assertFails(() => ops.slice(x, [1, 0], [2, 3]), ShapeError, ["slice", "[2, 3]"], "slice past the end");
  await assertFails(() => ops.slice(x, [0], [1]), ShapeError, ["slice", "[2, 3]"], "slice rank mismatch");
  await assertFails(() => ops.concat([x, f32(device, [3, 2])], 0), ShapeError, ["concat", "[2, 3]", "[3, 2]"], "concat mismatch");
  await assertFails(() => ops.concat([]), ShapeError, ["concat"], "concat nothing");
  await assertFails(
    () => ops.concat([x, device.tensor(new Int32Array(6), [2, 3])]),
    DTypeError,
    ["concat", "i32"],
    "concat dtypes",
  );
  await assertFails(() => ops.split(x, 4, 1), ShapeError, ["split", "[2, 3]"], "split 3 into 4");
  await assertFails(() => ops.split(x, [1, 1], 1), ShapeError, ["split", "[1, 1]"], "split sizes short");
  await assertFails(() => ops.broadcastTo(x, [3, 3]), ShapeError, ["broadcastTo", "[2, 3]", "[3, 3]"], "broadcastTo mismatch");
  await assertFails(() => ops.broadcastTo(x, [3]), ShapeError, ["broadcastTo", "[2, 3]", "[3]"], "broadcastTo lower rank");
  await assertFails(() => ops.sum(x, 2), ShapeError, ["sum", "axis 2"], "sum axis 2");
  await assertFails(() => ops.max(x, -3), ShapeError, ["max", "axis -3"], "max axis -3");
  x.dispose();
});

testBothBackends("errors: nn ops reject bad shapes", async (device) => {
  const x = f32(device, [2, 5]);
  await assertFails(() => ops.rmsNorm(x, f32(device, [4])), ShapeError, ["rmsNorm", "[4]", "[2, 5]"], "rmsNorm weight [4]");
  await assertFails(
    () => ops.layerNorm(x, f32(device, [5]), f32(device, [5, 1])),
    ShapeError,
    ["layerNorm", "bias", "[5, 1]"],
    "layerNorm bias",
  );
  await assertFails(
    () => ops.embedding(f32(device, [5]), new Int32Array([0])),
    ShapeError,
    ["embedding", "[5]"],
    "embedding 1-D table",
  );
  await assertFails(() => ops.rope(f32(device, [1, 1, 2, 3])), ShapeError, ["rope", "[1, 1, 2, 3]"], "rope odd D");
  await assertFails(() => ops.rope(x), ShapeError, ["rope", "[2, 5]"], "rope 2-D");
  const q = f32(device, [1, 3, 4, 2]);
  const kv = f32(device, [1, 2, 4, 2]);
  await assertFails(() => ops.attention(q, kv, kv), ShapeError, ["attention", "(3)", "(2)"], "attention Hq 3, Hkv 2");
  await assertFails(() => ops.attention(kv, f32(device, [1, 2, 5, 2]), f32(device, [1, 2, 5, 2])), ShapeError, [
    "attention",
    "[1, 2, 5, 2]",
  ], "attention T mismatch");
  await assertFails(() => ops.attention(x, x, x), ShapeError, ["attention", "4-D"], "attention 2-D");
  disposeAll(x, q, kv);
});

testBothBackends("errors: adamwUpdate shape mismatch and bad step", async (device) => {
  const p = f32(device, [3, 4]);
  const g = f32(device, [4, 3]);
  const m = device.zeros([3, 4]);
  const v = device.zeros([3, 4]);
  const hp = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1, gradScale: 1 };
  await assertFails(() => ops.adamwUpdate(p, g, m, v, hp), ShapeError, ["adamwUpdate", "[3, 4]", "[4, 3]"], "adamw grad shape");
  await assertFails(
    () => ops.adamwUpdate(p, m, m, v, { ...hp, step: 0 }),
    RangeError,
    ["adamwUpdate", "step", "0"],
    "adamw step 0",
  );
  disposeAll(p, g, m, v);
});

testBothBackends("errors: tensors from two devices, destroyed devices, overlapping async tidy", async (device) => {
  const other = await createDevice({ backend: "cpu" });
  const a = f32(device, [2]);
  const b = f32(other, [2]);
  await assertFails(() => ops.add(a, b), ShardlabError, ["add", "different devices"], "add across devices");
  other.destroy();
  await assertFails(() => other.zeros([2]), DisposedError, ["zeros", "destroyed"], "zeros on a destroyed device");
  await assertFails(() => other.tensor([1], [1]), DisposedError, ["tensor", "destroyed"], "tensor on a destroyed device");
  // Two async scopes open at once on one thread: the first to end while the other is open says so.
  let release = () => {};
  const first = ops.tidy(() => new Promise<void>((resolve) => (release = resolve)));
  const second = ops.tidy(async () => {
    await Promise.resolve();
    f32(device, [1]);
  });
  release();
  await assertFails(() => first, Error, ["tidy", "overlapped"], "overlapping async tidy");
  await second;
  await assertFails(() => createDevice({ backend: "tpu" as never }), Error, ["createDevice", "tpu"], "unknown backend");
  a.dispose();
});
