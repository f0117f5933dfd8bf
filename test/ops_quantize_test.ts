// ops.quantize, ops.requantizeSum and ops.dequantize (ZeRO++'s block quantizer) on both backends,
// against a float64 model of the quantizer written here: per block of largest magnitude a,
// scale = a / (2^(bits−1) − 1) and q = round(v / scale), ties to even. Each level must be the
// model's (up to one step where v / scale lies within a hair of a half, which f32 may round either
// way), each scale the model's to f32 rounding, and every element must come back within the
// quantizer's own bound, scale / 2. Block sizes 1, a prime, one that is no multiple of the 64-wide
// workgroup, and one longer than the tensor; odd INT4 lengths (half a byte left over); all-zero
// blocks; NaN and ±Inf, whose blocks get a NaN scale that checkScales refuses by name; more blocks
// than one dispatch dimension holds; qgZ's swizzle against its formula. The WebGPU kernels are also
// compared with the CPU reference.

import assert from "node:assert/strict";
import { type Device, ops, ShapeError } from "../mod.ts";
import { cpuDevice, disposeAll, randomValues, readF32, skipWebGpu, testBothBackends, webgpuDevice } from "./helpers.ts";

type Bits = 4 | 8;

/** The levels of a packed tensor, decoded from the layout the contract fixes (INT4: even i in the high nibble). */
function decode(q: Uint8Array, n: number, bits: Bits): Int32Array {
  const levels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    if (bits === 8) levels[i] = q[i] >= 128 ? q[i] - 256 : q[i];
    else {
      const nibble = i % 2 === 0 ? q[i >> 1] >> 4 : q[i >> 1] & 15;
      levels[i] = nibble >= 8 ? nibble - 16 : nibble;
    }
  }
  return levels;
}

function bytesPerTensor(n: number, bits: Bits): number {
  return 4 * Math.ceil((n * bits) / 32);
}

/** The quantizer in float64 for one tensor: its scales and levels. */
function model(v: ArrayLike<number>, block: number, bits: Bits): { scales: number[]; levels: number[] } {
  const top = 2 ** (bits - 1) - 1;
  const scales: number[] = [];
  for (let first = 0; first < v.length; first += block) {
    let absmax = 0;
    for (let i = first; i < Math.min(first + block, v.length); i++) absmax = Math.max(absmax, Math.abs(v[i]));
    scales.push(absmax / top);
  }
  const levels = Array.from(v, (x, i) => {
    const scale = scales[Math.floor(i / block)];
    if (scale === 0) return 0;
    const r = x / scale;
    const rounded = Math.abs(r - Math.trunc(r)) === 0.5 ? 2 * Math.round(r / 2) : Math.round(r);
    return Math.max(-top, Math.min(top, rounded));
  });
  return { scales, levels };
}

/** Checks one quantized tensor (bytes q, scales) of the values v against the model and the bound. */
function checkAgainstModel(
  v: ArrayLike<number>,
  q: Uint8Array,
  scales: Float32Array,
  block: number,
  bits: Bits,
  what: string,
): void {
  const want = model(v, block, bits);
  assert.equal(scales.length, want.scales.length, `${what}: one scale per block`);
  scales.forEach((s, b) => {
    assert.ok(
      Math.abs(s - want.scales[b]) <= 1e-6 * want.scales[b],
      `${what}: scale ${b} is ${s}, the model's ${want.scales[b]}`,
    );
  });
  const levels = decode(q, v.length, bits);
  for (let i = 0; i < v.length; i++) {
    const scale = scales[Math.floor(i / block)];
    const ratio = scale > 0 ? v[i] / scale : 0;
    const nearHalf = Math.abs(Math.abs(ratio - Math.trunc(ratio)) - 0.5) < 1e-4;
    const step = Math.abs(levels[i] - want.levels[i]);
    assert.ok(
      step === 0 || (nearHalf && step === 1),
      `${what}: element ${i} (${v[i]}) got level ${levels[i]}, the model ${want.levels[i]}`,
    );
    const error = Math.abs(v[i] - levels[i] * scale);
    assert.ok(
      error <= 0.5 * scale * (1 + 1e-5),
      `${what}: element ${i} (${v[i]}) comes back ${error} off, over scale/2 = ${scale / 2}`,
    );
  }
}

async function quantizeAndCheck(device: Device, values: Float32Array, tensors: number, block: number, bits: Bits): Promise<void> {
  const n = values.length / tensors;
  const what = `${tensors} × ${n} elements, INT${bits}, blocks of ${block}`;
  const x = device.tensor(values, [values.length]);
  const { q, scales } = ops.quantize(x, { bits, block, tensors });
  const bytes = bytesPerTensor(n, bits);
  const blocks = Math.ceil(n / block);
  assert.deepEqual([q.dtype, q.size, scales.size], ["u8", tensors * bytes, tensors * blocks], `${what}: sizes`);
  const [qBytes, s] = [await q.read() as Uint8Array, await readF32(scales)];
  for (let t = 0; t < tensors; t++) {
    checkAgainstModel(
      values.subarray(t * n, (t + 1) * n),
      qBytes.subarray(t * bytes, (t + 1) * bytes),
      s.subarray(t * blocks, (t + 1) * blocks),
      block,
      bits,
      `${what}, tensor ${t}`,
    );
  }
  // Dequantized, each element is its level times its scale (the bound was checked above).
  const y = await readF32(ops.dequantize(q, scales, { bits, block }, { n, tensors }));
  for (let t = 0; t < tensors; t++) {
    const levels = decode(qBytes.subarray(t * bytes), n, bits);
    for (let i = 0; i < n; i++) {
      const want = Math.fround(levels[i] * s[t * blocks + Math.floor(i / block)]);
      if (y[t * n + i] !== want) assert.fail(`${what}: dequantized element ${t * n + i} is ${y[t * n + i]}, want ${want}`);
    }
  }
  disposeAll(x, q, scales);
}

for (const bits of [8, 4] as const) {
  testBothBackends(
    `quantize: INT${bits} against the float64 model, blocks 1, prime, unaligned, longer than n`,
    async (device) => {
      const values = randomValues(1000, bits, 3);
      for (const block of [1, 97, 100, 64, 4096]) await quantizeAndCheck(device, values, 1, block, bits);
      // Odd lengths leave half a byte (INT4) or part of a word; several tensors each with their own blocks.
      await quantizeAndCheck(device, randomValues(3 * 333, 5 + bits), 3, 50, bits);
      await quantizeAndCheck(device, randomValues(7, 9), 1, 3, bits);
    },
  );
}

testBothBackends("quantize: INT4 packs element i in the high nibble of byte i/2, two's complement", async (device) => {
  // One block of largest magnitude 7: scale 1, so the levels are the values themselves.
  const x = device.tensor(new Float32Array([7, -7, 1, 0, -1, 3]), [6]);
  const { q, scales } = ops.quantize(x, { bits: 4, block: 6 });
  assert.deepEqual(await readF32(scales), new Float32Array([1]));
  const bytes = await q.read() as Uint8Array;
  assert.deepEqual([...bytes], [(7 << 4) | (16 - 7), (1 << 4) | 0, ((16 - 1) << 4) | 3, 0]);
  disposeAll(x, q, scales);
});

testBothBackends("quantize: an all-zero block has scale 0 and comes back as exact zeros", async (device) => {
  const values = randomValues(300, 21);
  values.fill(0, 100, 200);
  const x = device.tensor(values, [300]);
  const { q, scales } = ops.quantize(x, { bits: 8, block: 100 });
  const s = await readF32(scales);
  assert.equal(s[1], 0);
  const y = await readF32(ops.dequantize(q, scales, { bits: 8, block: 100 }, { n: 300 }));
  assert.deepEqual(y.subarray(100, 200), new Float32Array(100));
  checkAgainstModel(values, await q.read() as Uint8Array, s, 100, 8, "zero block");
  disposeAll(x, q, scales);
});

testBothBackends("quantize: NaN and ±Inf give their blocks a NaN scale, which checkScales refuses by name", async (device) => {
  const values = randomValues(400, 22);
  values[150] = NaN;
  values[260] = Infinity;
  values[399] = -Infinity;
  const x = device.tensor(values, [400]);
  const { q, scales } = ops.quantize(x, { bits: 8, block: 100 });
  const s = await readF32(scales);
  assert.ok(Number.isFinite(s[0]) && s[0] > 0, "block 0 is finite");
  assert.ok(Number.isNaN(s[1]) && Number.isNaN(s[2]) && Number.isNaN(s[3]), `blocks 1–3 hold NaN or ±Inf: ${s}`);
  const levels = decode(await q.read() as Uint8Array, 400, 8);
  assert.ok(levels.subarray(100).every((l) => l === 0), "a block without a scale has level 0 throughout");
  checkAgainstModel(
    values.subarray(0, 100),
    (await q.read() as Uint8Array).subarray(0, 100),
    s.subarray(0, 1),
    100,
    8,
    "block 0",
  );
  assert.throws(
    () => ops.checkScales(s, 100, "zeropp.qwz.fwd.layer0"),
    /zeropp\.qwz\.fwd\.layer0: block 1 \(elements 100\.\.199\) holds NaN or ±Inf/,
  );
  ops.checkScales(s.subarray(0, 1), 100, "finite blocks pass");
  disposeAll(x, q, scales);
});

testBothBackends("quantize: more blocks than one dispatch dimension holds", async (device) => {
  await quantizeAndCheck(device, randomValues(70_000, 23), 1, 1, 8);
  await quantizeAndCheck(device, randomValues(140_000, 24), 2, 1, 4);
});

/** Quantizes `sets` sets of `tensors` tensors of n values each and joins them set after set. */
async function quantizedSets(device: Device, sets: number, tensors: number, n: number, block: number, bits: Bits, seed: number) {
  const [qs, scales, dequantized] = [[], [], []] as [Uint8Array[], Float32Array[], Float32Array[]];
  for (let k = 0; k < sets; k++) {
    const x = device.tensor(randomValues(tensors * n, seed + k, 1 + k), [tensors * n]);
    const part = ops.quantize(x, { bits, block, tensors });
    qs.push(await part.q.read() as Uint8Array);
    scales.push(await readF32(part.scales));
    dequantized.push(await readF32(ops.dequantize(part.q, part.scales, { bits, block }, { n, tensors })));
    disposeAll(x, part.q, part.scales);
  }
  const join = <T extends Uint8Array | Float32Array>(parts: T[], make: (n: number) => T): T => {
    const joined = make(parts.reduce((sum, p) => sum + p.length, 0));
    parts.reduce((offset, p) => (joined.set(p, offset), offset + p.length), 0);
    return joined;
  };
  const q = join(qs, (m) => new Uint8Array(m));
  const s = join(scales, (m) => new Float32Array(m));
  return { q: device.tensor(q, [q.length], { dtype: "u8" }), scales: device.tensor(s, [s.length]), dequantized };
}

for (const bits of [4, 8] as const) {
  testBothBackends(`requantizeSum: INT${bits}, the sum of the dequantized sets quantized again`, async (device) => {
    const [sets, tensors, n, block] = [3, 2, 301, 64];
    const input = await quantizedSets(device, sets, tensors, n, block, bits, 40);
    const { q, scales } = ops.requantizeSum(input.q, input.scales, { bits, block }, { n, tensors, inputs: sets });
    // The model's input: the f32 sum, in set order, of what each set dequantizes to.
    const sum = new Float32Array(tensors * n);
    for (const d of input.dequantized) for (let e = 0; e < sum.length; e++) sum[e] = Math.fround(sum[e] + d[e]);
    const [qBytes, s] = [await q.read() as Uint8Array, await readF32(scales)];
    const [bytes, blocks] = [bytesPerTensor(n, bits), Math.ceil(n / block)];
    for (let t = 0; t < tensors; t++) {
      checkAgainstModel(
        sum.subarray(t * n, (t + 1) * n),
        qBytes.subarray(t * bytes),
        s.subarray(t * blocks, (t + 1) * blocks),
        block,
        bits,
        `tensor ${t}`,
      );
    }
    disposeAll(input.q, input.scales, q, scales);
  });
}

testBothBackends("dequantize: sums the sets of each tensor and scales once by the factor", async (device) => {
  const [sets, tensors, n, block, bits] = [4, 3, 130, 50, 4 as const];
  const input = await quantizedSets(device, sets, tensors, n, block, bits, 60);
  const y = await readF32(ops.dequantize(input.q, input.scales, { bits, block }, { n, tensors, inputs: sets, factor: 1 / 8 }));
  for (let e = 0; e < tensors * n; e++) {
    let v = 0;
    for (const d of input.dequantized) v = Math.fround(v + d[e]);
    assert.ok(Math.abs(y[e] - v / 8) <= 1e-6 * Math.abs(v), `element ${e}: ${y[e]} vs ${v / 8}`);
  }
  disposeAll(input.q, input.scales);
});

testBothBackends("quantize: bad widths, blocks and sizes are refused by name", (device) => {
  const x = device.tensor(randomValues(10, 1), [10]);
  assert.throws(() => ops.quantize(x, { bits: 3 as Bits, block: 4 }), /quantize: bits must be 8 or 4, got 3/);
  assert.throws(() => ops.quantize(x, { bits: 8, block: 0 }), /quantize: block must be an integer ≥ 1, got 0/);
  assert.throws(() => ops.quantize(x, { bits: 8, block: 2.5 }), /block must be an integer ≥ 1, got 2\.5/);
  assert.throws(() => ops.quantize(x, { bits: 8, block: 4, tensors: 3 }), ShapeError);
  const { q, scales } = ops.quantize(x, { bits: 8, block: 4 });
  assert.throws(
    () => ops.dequantize(q, scales, { bits: 8, block: 4 }, { n: 13 }),
    /dequantize: 1 quantized tensors of 13 elements \(INT8, blocks of 4\) need 16 bytes and 4 scales, got 12 bytes and 3 scales/,
  );
  assert.throws(
    () => ops.dequantize(q, scales, { bits: 8, block: 4 }, { n: 10, inputs: 2 }),
    /need 24 bytes and 6 scales, got 12 bytes and 3 scales/,
  );
  assert.throws(() => ops.dequantize(scales, scales, { bits: 8, block: 4 }, { n: 10 }), /dequantize: expected u8, got f32/);
  disposeAll(x, q, scales);
  return Promise.resolve();
});

Deno.test({
  name: "quantize: the WebGPU kernels agree with the CPU reference",
  ignore: skipWebGpu,
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const [cpu, gpu] = [await cpuDevice(), await webgpuDevice()];
  assert.ok(gpu, "no WebGPU device");
  for (const bits of [8, 4] as const) {
    const values = randomValues(5000, 70 + bits, 2);
    const [a, b] = [cpu, gpu].map((d) => ops.quantize(d.tensor(values, [5000]), { bits, block: 300, tensors: 2 }));
    const [qa, qb] = [await a.q.read() as Uint8Array, await b.q.read() as Uint8Array];
    const [sa, sb] = [await readF32(a.scales), await readF32(b.scales)];
    sa.forEach((s, i) => assert.ok(Math.abs(s - sb[i]) <= 1e-6 * s, `INT${bits} scale ${i}: cpu ${s}, webgpu ${sb[i]}`));
    const [la, lb] = [decode(qa, qa.length * 8 / bits, bits), decode(qb, qb.length * 8 / bits, bits)];
    const differ = la.filter((l, i) => l !== lb[i]).length;
    assert.ok(la.every((l, i) => Math.abs(l - lb[i]) <= 1), `INT${bits}: levels differ by at most one step`);
    assert.ok(differ <= 5, `INT${bits}: ${differ} of ${la.length} levels differ (ties rounded apart)`);
    disposeAll(a.q, a.scales, b.q, b.scales);
  }
});

testBothBackends("quantize: qgZ's swizzle puts chunk p in slot (p mod g) · nodes + ⌊p / g⌋", async (device) => {
  for (const [nodes, g] of [[2, 2], [2, 4], [4, 2], [3, 1]]) {
    const [world, n] = [nodes * g, 37];
    const values = randomValues(world * n, 80 + world);
    // The chunks moved on the host by the formula, then quantized in order.
    const moved = new Float32Array(values.length);
    for (let p = 0; p < world; p++) moved.set(values.subarray(p * n, (p + 1) * n), ((p % g) * nodes + Math.floor(p / g)) * n);
    const [x, y] = [device.tensor(values, [values.length]), device.tensor(moved, [moved.length])];
    const swizzled = ops.quantize(x, { bits: 4, block: 16, tensors: world, nodes });
    const plain = ops.quantize(y, { bits: 4, block: 16, tensors: world });
    assert.deepEqual(await swizzled.q.read(), await plain.q.read(), `${nodes} nodes of ${g}: levels`);
    assert.deepEqual(await readF32(swizzled.scales), await readF32(plain.scales), `${nodes} nodes of ${g}: scales`);
    disposeAll(x, y, swizzled.q, swizzled.scales, plain.q, plain.scales);
  }
  const x = device.tensor(randomValues(12, 1), [12]);
  assert.throws(
    () => ops.quantize(x, { bits: 8, block: 4, tensors: 6, nodes: 4 }),
    /quantize: 6 tensors do not spread over 4 nodes/,
  );
  x.dispose();
});
