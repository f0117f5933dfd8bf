// No leaks: a training-like loop (forward, backward, optimizer step) that disposes what it made
// returns the device to exactly the tensors, buffers and bytes it started with; so does a forward
// whose graph is dropped without a backward; and noGrad keeps nothing for a backward.

import assert from "node:assert/strict";
import { type Device, type DeviceStats, ops, type Tensor } from "../mod.ts";
import { randomValues, testBothBackends } from "./helpers.ts";

const [T, C, HEADS, KV_HEADS, D, VOCAB] = [6, 8, 2, 1, 4, 11];

interface Model {
  embed: Tensor;
  gain: Tensor;
  wqkv: Tensor;
  wo: Tensor;
  all: Tensor[];
}

function createModel(device: Device): Model {
  const param = (shape: number[], seed: number, scale: number) =>
    device.tensor(randomValues(shape.reduce((a, b) => a * b, 1), seed, scale), shape, { requiresGrad: true });
  const embed = param([VOCAB, C], 1, 1);
  const gain = param([C], 2, 0.5);
  const wqkv = param([C, (HEADS + 2 * KV_HEADS) * D], 3, 0.4);
  const wo = param([HEADS * D, VOCAB], 4, 0.4);
  return { embed, gain, wqkv, wo, all: [embed, gain, wqkv, wo] };
}

/** A small transformer-ish step: embedding, rmsNorm, qkv matmul, rope, attention, softmax, slice/concat, crossEntropy. */
function forward(m: Model, step: number): Tensor {
  return ops.tidy(() => {
    const ids = Int32Array.from({ length: T }, (_, i) => (i * 3 + step) % VOCAB);
    const targets = Int32Array.from({ length: T }, (_, i) => (i * 5 + step + 1) % VOCAB);
    const x = ops.rmsNorm(ops.embedding(m.embed, ids), m.gain);
    const [q, k, v] = ops.split(ops.matmul(x, m.wqkv), [HEADS * D, KV_HEADS * D, KV_HEADS * D], 1);
    const heads = (t: Tensor, n: number) => ops.permute(ops.reshape(t, [1, T, n, D]), [0, 2, 1, 3]);
    const o = ops.attention(ops.rope(heads(q, HEADS)), ops.rope(heads(k, KV_HEADS)), heads(v, KV_HEADS), { causal: true });
    const merged = ops.reshape(ops.transpose(o, 1, 2), [T, HEADS * D]);
    const logits = ops.matmul(merged, m.wo);
    const mixed = ops.add(logits, ops.scale(ops.softmax(logits), 0.5));
    const reordered = ops.concat([ops.slice(mixed, [T / 2, 0], [T / 2, -1]), ops.slice(mixed, [0, 0], [T / 2, -1])], 0);
    return ops.crossEntropy(reordered, targets);
  });
}

function assertSameMemory(now: DeviceStats, start: DeviceStats, what: string): void {
  assert.equal(now.tensors, start.tensors, `${what}: live tensors ${now.tensors}, started with ${start.tensors}`);
  assert.equal(now.buffers, start.buffers, `${what}: live buffers ${now.buffers}, started with ${start.buffers}`);
  assert.equal(now.bytes, start.bytes, `${what}: live bytes ${now.bytes}, started with ${start.bytes}`);
}

async function scalar(t: Tensor): Promise<number> {
  return (await t.read())[0];
}

testBothBackends("memory: 5 steps of forward + backward + AdamW, disposed, leak nothing", async (device) => {
  const model = createModel(device);
  const moments = model.all.map((p) => [device.zeros(p.shape), device.zeros(p.shape)]);
  const start = device.stats();
  const losses: number[] = [];
  for (let step = 1; step <= 5; step++) {
    // One fixed batch, so that the optimizer steps must lower its loss.
    const loss = forward(model, 1);
    await loss.backward();
    const during = device.stats();
    // The gradients exist now: four more tensors at least.
    assert.ok(during.tensors >= start.tensors + model.all.length + 1, `step ${step}: gradients missing from stats`);
    model.all.forEach((p, i) => {
      assert.ok(p.grad, `step ${step}: no gradient for parameter ${i}`);
      ops.adamwUpdate(p, p.grad, moments[i][0], moments[i][1], {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weightDecay: 0,
        step,
        gradScale: 1,
      });
    });
    losses.push(await scalar(loss));
    loss.dispose();
    for (const p of model.all) {
      p.grad?.dispose();
      p.grad = null;
    }
    assertSameMemory(device.stats(), start, `after step ${step}`);
  }
  assert.ok(losses.every(Number.isFinite), `losses ${losses}`);
  assert.ok(losses[4] < losses[0], `five AdamW steps on one batch should lower its loss: ${losses}`);
  for (const t of [...model.all, ...moments.flat()]) t.dispose();
});

testBothBackends("memory: forward without backward drops its graph when the loss is disposed", async (device) => {
  const model = createModel(device);
  const start = device.stats();
  for (let step = 1; step <= 5; step++) {
    const loss = forward(model, step);
    assert.ok(loss.requiresGrad);
    // The graph holds saved tensors until the loss goes.
    assert.ok(device.stats().tensors > start.tensors + 1, `step ${step}: the graph saved nothing`);
    assert.ok(Number.isFinite(await scalar(loss)));
    loss.dispose();
    assertSameMemory(device.stats(), start, `after dropping step ${step}`);
  }
  for (const p of model.all) assert.equal(p.grad, null);
  for (const t of model.all) t.dispose();
});

testBothBackends("memory: noGrad records nothing", async (device) => {
  const model = createModel(device);
  const start = device.stats();
  const loss = ops.noGrad(() => forward(model, 3));
  assert.equal(loss.requiresGrad, false);
  // Only the result itself is alive: no tensors were saved for a backward.
  const after = device.stats();
  assert.equal(after.tensors, start.tensors + 1, "tensors alive besides the result");
  assert.equal(after.buffers, start.buffers + 1, "buffers alive besides the result");
  assert.throws(() => loss.backward(), /does not require grad/);
  const withGrad = forward(model, 3);
  assert.equal(await scalar(withGrad), await scalar(loss), "noGrad changes no values");
  withGrad.dispose();
  loss.dispose();
  assertSameMemory(device.stats(), start, "after noGrad");
  for (const t of model.all) t.dispose();
});

testBothBackends("memory: async tidy and noGrad span awaits: temporaries freed, the result kept, no graph", async (device) => {
  const model = createModel(device);
  const start = device.stats();
  const loss = await ops.tidy(() =>
    ops.noGrad(async () => {
      const first = forward(model, 1);
      await new Promise((resolve) => setTimeout(resolve, 1));
      assert.equal(ops.add(first, first).requiresGrad, false, "still no graph after an await");
      return ops.add(first, forward(model, 2));
    })
  );
  const after = device.stats();
  assert.equal(after.tensors, start.tensors + 1, "tensors alive besides the result");
  assert.equal(after.buffers, start.buffers + 1, "buffers alive besides the result");
  const withGrad = ops.tidy(() => ops.add(forward(model, 1), forward(model, 2)));
  assert.equal(withGrad.requiresGrad, true, "gradients are recorded again once it settles");
  assert.equal(await scalar(withGrad), await scalar(loss));
  withGrad.dispose();
  loss.dispose();
  assertSameMemory(device.stats(), start, "after the async scope");
  // A rejected async scope frees what it made, too.
  await assert.rejects(
    ops.tidy(async () => {
      forward(model, 1);
      await Promise.resolve();
      throw new Error("midway");
    }),
    /midway/,
  );
  assertSameMemory(device.stats(), start, "after a rejected async scope");
  for (const t of model.all) t.dispose();
});

testBothBackends("memory: a leaf disposed before backward still leaves nothing behind", async (device) => {
  const model = createModel(device);
  const start = device.stats();
  const loss = forward(model, 2);
  // Freeing a parameter mid-graph: the saved handles keep its memory until backward frees them.
  const extra = device.tensor(randomValues(VOCAB * C, 9), [VOCAB, C], { requiresGrad: true });
  const total = ops.tidy(() => ops.add(loss, ops.mean(ops.mul(extra, extra))));
  extra.dispose();
  await total.backward();
  assert.equal(extra.grad, null, "a disposed leaf gets no gradient");
  for (const t of [loss, total]) t.dispose();
  for (const p of model.all) {
    assert.ok(p.grad);
    p.grad.dispose();
    p.grad = null;
  }
  assertSameMemory(device.stats(), start, "after backward with a disposed leaf");
  for (const t of model.all) t.dispose();
});
