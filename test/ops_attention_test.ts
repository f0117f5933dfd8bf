// Forward values of ops.attention on both backends against a naive reference written here in plain
// JS doubles (never the CPU backend): causal and not, awkward T and D, grouped-query heads.

import assert from "node:assert/strict";
import { type Device, ops } from "../mod.ts";
import { assertClose } from "./assertions.ts";
import { disposeAll, randomValues, readF32, testBothBackends } from "./helpers.ts";

function attentionRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  B: number,
  Hq: number,
  Hkv: number,
  T: number,
  D: number,
  causal: boolean,
): Float64Array {
  const out = new Float64Array(B * Hq * T * D);
  const scale = 1 / Math.sqrt(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const kvHead = Math.floor(h / (Hq / Hkv));
      for (let i = 0; i < T; i++) {
        const qBase = ((b * Hq + h) * T + i) * D;
        const scores: number[] = [];
        const visible = causal ? i + 1 : T;
        for (let j = 0; j < visible; j++) {
          const kBase = ((b * Hkv + kvHead) * T + j) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[qBase + d] * k[kBase + d];
          scores.push(dot * scale);
        }
        const max = Math.max(...scores);
        const weights = scores.map((s) => Math.exp(s - max));
        const total = weights.reduce((x, y) => x + y, 0);
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j < visible; j++) acc += weights[j] * v[((b * Hkv + kvHead) * T + j) * D + d];
          out[qBase + d] = acc / total;
        }
      }
    }
  }
  return out;
}

async function checkAttention(
  device: Device,
  B: number,
  Hq: number,
  Hkv: number,
  T: number,
  D: number,
  causal: boolean,
  seed: number,
) {
  const qv = randomValues(B * Hq * T * D, seed);
  const kv = randomValues(B * Hkv * T * D, seed + 1);
  const vv = randomValues(B * Hkv * T * D, seed + 2);
  const q = device.tensor(qv, [B, Hq, T, D]);
  const k = device.tensor(kv, [B, Hkv, T, D]);
  const v = device.tensor(vv, [B, Hkv, T, D]);
  const o = ops.attention(q, k, v, { causal });
  assert.deepEqual(o.shape, [B, Hq, T, D]);
  const expected = attentionRef(qv, kv, vv, B, Hq, Hkv, T, D, causal);
  assertClose(
    await readF32(o),
    expected,
    1e-4,
    1e-5 * Math.sqrt(T),
    `attention B${B} Hq${Hq} Hkv${Hkv} T${T} D${D} causal ${causal}`,
  );
  disposeAll(q, k, v, o);
}

testBothBackends("attention: causal and not, awkward T and D", async (device) => {
  let seed = 1600;
  for (const causal of [false, true]) {
    await checkAttention(device, 1, 1, 1, 1, 1, causal, seed += 3);
    await checkAttention(device, 2, 3, 3, 7, 5, causal, seed += 3);
    await checkAttention(device, 1, 2, 2, 13, 8, causal, seed += 3);
    await checkAttention(device, 1, 1, 1, 33, 16, causal, seed += 3);
    await checkAttention(device, 1, 1, 1, 65, 4, causal, seed += 3);
  }
});

testBothBackends("attention: grouped-query Hq = 4, Hkv = 2 (and Hkv = 1)", async (device) => {
  let seed = 1700;
  for (const causal of [false, true]) {
    await checkAttention(device, 2, 4, 2, 7, 6, causal, seed += 3);
    await checkAttention(device, 1, 4, 1, 13, 3, causal, seed += 3);
  }
});

testBothBackends("attention: causal first query sees only itself (output = v row 0)", async (device) => {
  const [B, H, T, D] = [1, 1, 4, 3];
  const vv = randomValues(B * H * T * D, 1750);
  const q = device.tensor(randomValues(T * D, 1751, 5), [B, H, T, D]);
  const k = device.tensor(randomValues(T * D, 1752, 5), [B, H, T, D]);
  const v = device.tensor(vv, [B, H, T, D]);
  const o = ops.attention(q, k, v, { causal: true });
  const got = await readF32(o);
  assertClose(got.slice(0, D), vv.slice(0, D), 1e-6, 1e-7, "causal row 0");
  disposeAll(q, k, v, o);
});
