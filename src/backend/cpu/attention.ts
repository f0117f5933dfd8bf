// Scaled dot-product attention, computed one query row at a time so no [T, T] matrix is ever
// held, and its backward recomputed from the saved log-sum-exp. q, o, dO are [B, Hq, T, D];
// k, v are [B, Hkv, T, D]; query head h reads kv head floor(h / (Hq / Hkv)). Scores, softmax
// statistics and every accumulator are f64.

import type { AttentionParams } from "../backend.ts";

/**
 * For each query row i: s_j = scale·q_i·k_j over the visible keys (j ≤ i when causal), the row
 * max m subtracted before exponentiating, o_i = Σ_j exp(s_j − m)·v_j / Σ_j exp(s_j − m) and
 * lse_i = m + log Σ_j exp(s_j − m).
 */
export function attention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  p: AttentionParams,
): { o: Float32Array; lse: Float32Array } {
  const { B, Hq, Hkv, T, D, causal, scale } = p;
  const group = Hq / Hkv;
  const o = new Float32Array(B * Hq * T * D);
  const lse = new Float32Array(B * Hq * T);
  const weights = new Float64Array(T);
  const acc = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      const row0 = (b * Hq + h) * T;
      const kvBase = (b * Hkv + Math.floor(h / group)) * T * D;
      for (let i = 0; i < T; i++) {
        const qRow = (row0 + i) * D;
        const keys = causal ? i + 1 : T;
        let max = -Infinity;
        for (let j = 0; j < keys; j++) {
          const kRow = kvBase + j * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[qRow + d] * k[kRow + d];
          const score = scale * dot;
          weights[j] = score;
          max = Math.max(max, score);
        }
        let sum = 0;
        for (let j = 0; j < keys; j++) {
          const weight = Math.exp(weights[j] - max);
          weights[j] = weight;
          sum += weight;
        }
        acc.fill(0);
        for (let j = 0; j < keys; j++) {
          const weight = weights[j];
          const vRow = kvBase + j * D;
          for (let d = 0; d < D; d++) acc[d] += weight * v[vRow + d];
        }
        for (let d = 0; d < D; d++) o[qRow + d] = acc[d] / sum;
        lse[row0 + i] = max + Math.log(sum);
      }
    }
  }
  return { o, lse };
}

/**
 * With P_ij = exp(scale·q_i·k_j − lse_i) recomputed per visible key and D_i = Σ_d dO_id·O_id:
 * dP_ij = dO_i·v_j, dS_ij = P_ij·(dP_ij − D_i), dq_i = scale·Σ_j dS_ij·k_j, dk_j = scale·Σ_i dS_ij·q_i,
 * dv_j = Σ_i P_ij·dO_i. dk and dv sum over every query head of the kv head's group; they build up
 * in f64 per (batch, kv head) and are stored once the group is done.
 */
export function attentionGrad(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  o: Float32Array,
  lse: Float32Array,
  dO: Float32Array,
  p: AttentionParams,
): { dq: Float32Array; dk: Float32Array; dv: Float32Array } {
  const { B, Hq, Hkv, T, D, causal, scale } = p;
  const group = Hq / Hkv;
  const dq = new Float32Array(B * Hq * T * D);
  const dk = new Float32Array(B * Hkv * T * D);
  const dv = new Float32Array(B * Hkv * T * D);
  const dkAcc = new Float64Array(T * D);
  const dvAcc = new Float64Array(T * D);
  const dqAcc = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let kvHead = 0; kvHead < Hkv; kvHead++) {
      const kvBase = (b * Hkv + kvHead) * T * D;
      dkAcc.fill(0);
      dvAcc.fill(0);
      for (let h = kvHead * group; h < (kvHead + 1) * group; h++) {
        const row0 = (b * Hq + h) * T;
        for (let i = 0; i < T; i++) {
          const qRow = (row0 + i) * D;
          const keys = causal ? i + 1 : T;
          const rowLse = lse[row0 + i];
          let rowDelta = 0;
          for (let d = 0; d < D; d++) rowDelta += dO[qRow + d] * o[qRow + d];
          dqAcc.fill(0);
          for (let j = 0; j < keys; j++) {
            const kvRow = kvBase + j * D;
            let dot = 0;
            let dP = 0;
            for (let d = 0; d < D; d++) {
              dot += q[qRow + d] * k[kvRow + d];
              dP += dO[qRow + d] * v[kvRow + d];
            }
            const prob = Math.exp(scale * dot - rowLse);
            const dS = prob * (dP - rowDelta);
            const accRow = j * D;
            for (let d = 0; d < D; d++) {
              dqAcc[d] += dS * k[kvRow + d];
              dkAcc[accRow + d] += dS * q[qRow + d];
              dvAcc[accRow + d] += prob * dO[qRow + d];
            }
          }
          for (let d = 0; d < D; d++) dq[qRow + d] = scale * dqAcc[d];
        }
      }
      for (let e = 0; e < T * D; e++) {
        dk[kvBase + e] = scale * dkAcc[e];
        dv[kvBase + e] = dvAcc[e];
      }
    }
  }
  return { dq, dk, dv };
}
