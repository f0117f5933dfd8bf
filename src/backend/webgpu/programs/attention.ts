// Fused attention, forward (kernels/attention.wgsl) and backward in two passes
// (kernels/attention_backward_dq.wgsl, kernels/attention_backward_dkv.wgsl, which both include
// kernels/lib/attention_backward.wgsl).

import type { AttentionParams } from "../../backend.ts";
import { type GpuContext, type GpuStorage, Params } from "../gpu_context.ts";
import forwardCode from "../../../../kernels/attention.wgsl" with { type: "text" };
import queryGradientsCode from "../../../../kernels/attention_backward_dq.wgsl" with { type: "text" };
import keyValueGradientsCode from "../../../../kernels/attention_backward_dkv.wgsl" with { type: "text" };

const forwardSource = { name: "attention", code: forwardCode };
const queryGradientsSource = { name: "attention_backward_dq", code: queryGradientsCode };
const keyValueGradientsSource = { name: "attention_backward_dkv", code: keyValueGradientsCode };

/** Rows per workgroup (4 for each of 16 invocations) and vec4 slots of workgroup memory, as fixed in the kernels. */
const WORKGROUP_ROWS = 64;
const TILE = 1024;

/**
 * How a head dimension maps onto the kernels (see the header of kernels/attention.wgsl): chunks of 4
 * elements per row, whether whole chunks move as vec4, and the override constants. A row is cut into
 * 4 segments of at most 8 chunks up to D = 128, so that each segment loop is unrolled; beyond that
 * one segment takes the whole row in a loop that stays rolled.
 */
function headLayout(D: number): { headVec4s: number; vec4: boolean; constants: Record<string, number> } {
  const headVec4s = Math.ceil(D / 4);
  const segment = headVec4s <= 32 ? Math.ceil(headVec4s / 4) : headVec4s;
  return { headVec4s, vec4: D % 4 === 0, constants: { HEAD_VEC4S: headVec4s, SEGMENT: segment } };
}

export function attention(
  ctx: GpuContext,
  q: GpuStorage,
  k: GpuStorage,
  v: GpuStorage,
  p: AttentionParams,
): { o: GpuStorage; lse: GpuStorage } {
  const { B, Hq, Hkv, T, D } = p;
  const o = ctx.allocate(B * Hq * T * D * 4, false);
  if (D === 0) {
    // Every score is 0, so each row's log-sum-exp is the log of how many keys it sees.
    const rows = Float32Array.from({ length: B * Hq * T }, (_, i) => Math.log(p.causal ? (i % T) + 1 : T));
    return { o, lse: ctx.upload(rows) };
  }
  const lse = ctx.allocate(B * Hq * T * 4, false);
  if (B * Hq * T === 0) return { o, lse };
  const { headVec4s, vec4, constants } = headLayout(D);
  const queryBlocks = Math.ceil(T / WORKGROUP_ROWS);
  const workgroups = B * Hq * queryBlocks;
  const params = new Params(7).u32(T).u32(D).u32(Hq / Hkv).u32(Number(p.causal)).f32(p.scale).u32(queryBlocks).u32(workgroups);
  const blockKeys = Math.floor(TILE / 2 / headVec4s);
  const pipeline = ctx.pipeline(forwardSource, "main", { VEC4: vec4 }, { ...constants, BLOCK_KEYS: blockKeys });
  ctx.dispatch(pipeline, params, [q, k, v, o, lse], workgroups);
  return { o, lse };
}

/**
 * Two passes: query_gradients (one workgroup per query block) also saves Δ = rowsum(dO ∘ O);
 * key_value_gradients (one per key block of a kv head) reads it while walking the query rows of
 * every head in the group.
 */
export function attentionGrad(
  ctx: GpuContext,
  q: GpuStorage,
  k: GpuStorage,
  v: GpuStorage,
  o: GpuStorage,
  lse: GpuStorage,
  dO: GpuStorage,
  p: AttentionParams,
): { dq: GpuStorage; dk: GpuStorage; dv: GpuStorage } {
  const { B, Hq, Hkv, T, D } = p;
  const dq = ctx.allocate(B * Hq * T * D * 4, false);
  const dk = ctx.allocate(B * Hkv * T * D * 4, false);
  const dv = ctx.allocate(B * Hkv * T * D * 4, false);
  if (B * Hq * T * D === 0) return { dq, dk, dv };
  const { headVec4s, vec4, constants } = headLayout(D);
  const blocks = Math.ceil(T / WORKGROUP_ROWS);
  const params = (heads: number) =>
    new Params(7).u32(T).u32(D).u32(Hq / Hkv).u32(Number(p.causal)).f32(p.scale).u32(blocks).u32(B * heads * blocks);

  const delta = ctx.allocate(B * Hq * T * 4, false);
  // query_gradients stages keys (first half of the tile) and values (second half); key_value_gradients
  // stages queries and dO the same way, plus one vec4 of lse and Δ per query row after the queries.
  const queryPipeline = ctx.pipeline(queryGradientsSource, "query_gradients", { VEC4: vec4 }, {
    ...constants,
    BLOCK_ROWS: Math.floor(TILE / 2 / headVec4s),
  });
  ctx.dispatch(queryPipeline, params(Hq), [q, k, v, o, lse, dO, dq, delta], B * Hq * blocks);
  const keyValuePipeline = ctx.pipeline(keyValueGradientsSource, "key_value_gradients", { VEC4: vec4 }, {
    ...constants,
    BLOCK_ROWS: Math.floor(TILE / 2 / (headVec4s + 1)),
  });
  ctx.dispatch(keyValuePipeline, params(Hkv), [q, k, v, delta, lse, dO, dk, dv], B * Hkv * blocks);
  ctx.release(delta);
  return { dq, dk, dv };
}
