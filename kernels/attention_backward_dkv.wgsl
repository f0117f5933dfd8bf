// Fused attention backward, second pass: the key and value gradients, with the probabilities
// recomputed from q, k and the saved log-sum-exp, and Δ as saved by the first pass
// (attention_backward_dq.wgsl):
//   P_ij = exp(scale·q_i·k_j − lse_i) (0 where the causal mask hides j > i), dP_ij = dO_i·v_j,
//   dS_ij = P_ij·(dP_ij − Δ_i), dk_j = scale·Σ_i dS_ij·q_i, dv_j = Σ_i P_ij·dO_i,
// where dk and dv sum over every query head of the kv head's group, in order. Deterministic, no
// atomics. Params, the register layout and the per-chunk steps used here come from
// lib/attention_backward.wgsl.
//
// Bindings: 0 params (uniform), 1 q [B, Hq, T, D], 2 k, 3 v [B, Hkv, T, D], 4 delta [B, Hq, T],
// 5 lse [B, Hq, T], 6 dO [B, Hq, T, D] (read), 7 dk, 8 dv [B, Hkv, T, D] (written).
// Variants: `#if VEC4` (D a multiple of 4) binds the [.., D] tensors as array<vec4<f32>>.
// Override constants: HEAD_VEC4S and SEGMENT (as in attention.wgsl); BLOCK_ROWS, the query rows
// staged at a time.
//
// Layout: a workgroup owns a block of 4·LANES key rows of one kv head, with k in reg_a and v in
// reg_b, and accumulates dk in acc_a and dv in acc_b (see lib/attention_backward.wgsl). It walks
// the query rows of every head of its group BLOCK_ROWS at a time, staging q in the first half of
// `tile`, dO in the second, and lse and Δ (one vec4 per row) after the queries. Causal: the walk
// starts at the block's first key.
// Dispatch: one workgroup per (key block, kv head), B·Hkv·blocks, as a linear count (folded over
// x, y by the host).

#include "lib/attention_backward.wgsl"

#if VEC4
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> d_out: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> dk: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> dv: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(6) var<storage, read> d_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> dk: array<f32>;
@group(0) @binding(8) var<storage, read_write> dv: array<f32>;
#endif
@group(0) @binding(4) var<storage, read> delta: array<f32>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;

// Which tensor a chunk is read from or written to.
const SOURCE_Q = 0u;
const SOURCE_K = 1u;
const SOURCE_V = 2u;
const SOURCE_D_OUT = 3u;
const TARGET_DK = 0u;
const TARGET_DV = 1u;

var<private> acc_b: array<array<vec4<f32>, MAX_HEAD_VEC4S>, 4>;

#if VEC4
fn load_chunk(source: u32, index: u32) -> vec4<f32> {
  switch source {
    case SOURCE_Q: { return q[index / 4u]; }
    case SOURCE_K: { return k[index / 4u]; }
    case SOURCE_V: { return v[index / 4u]; }
    default: { return d_out[index / 4u]; }
  }
}

fn store_chunk(destination: u32, index: u32, chunk: vec4<f32>) {
  if (destination == TARGET_DK) {
    dk[index / 4u] = chunk;
  } else {
    dv[index / 4u] = chunk;
  }
}
#else
fn load_element(source: u32, index: u32) -> f32 {
  switch source {
    case SOURCE_Q: { return q[index]; }
    case SOURCE_K: { return k[index]; }
    case SOURCE_V: { return v[index]; }
    default: { return d_out[index]; }
  }
}

fn store_element(destination: u32, index: u32, value: f32) {
  if (destination == TARGET_DK) {
    dk[index] = value;
  } else {
    dv[index] = value;
  }
}
#endif

/** dk += ds ⊗ q (acc_a, buf_a) and dv += p ⊗ dO (acc_b, buf_b). */
fn accumulate_key_step(c: u32, ds: vec4<f32>, p: vec4<f32>) {
  accumulate_a_step(c, ds);
  let b = buf_b[c];
  acc_b[0][c] = fma(p, vec4<f32>(b.x), acc_b[0][c]);
  acc_b[1][c] = fma(p, vec4<f32>(b.y), acc_b[1][c]);
  acc_b[2][c] = fma(p, vec4<f32>(b.z), acc_b[2][c]);
  acc_b[3][c] = fma(p, vec4<f32>(b.w), acc_b[3][c]);
}

fn store_b_step(base: u32, rows: vec4<u32>, c: u32) {
  write_rows(TARGET_DV, base, rows, c, mat4x4<f32>(acc_b[0][c], acc_b[1][c], acc_b[2][c], acc_b[3][c]));
}

/** Stages query rows first..first+count−1 of head `head`: q, then lse and Δ (one vec4 per row), then dO. */
fn stage_queries(head: u32, first: u32, count: u32, lane: u32) {
  let T = params.T;
  let base = head * T * params.D;
  stage_rows(SOURCE_Q, 0u, base, first, count, lane);
  stage_rows(SOURCE_D_OUT, TILE / 2u, base, first, count, lane);
  for (var i = lane; i < count; i += LANES) {
    tile[BLOCK_ROWS * HEAD_VEC4S + i] = vec4<f32>(lse[head * T + first + i], delta[head * T + first + i], 0.0, 0.0);
  }
}

@compute @workgroup_size(LANES)
fn key_value_gradients(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lane: u32) {
  let workgroup = wid.x + wid.y * nwg.x;
  if (workgroup >= params.workgroups) {
    return;
  }
  let T = params.T;
  let kv_head = workgroup / params.blocks;
  let first = (workgroup % params.blocks) * 4u * LANES;
  let kv_base = kv_head * T * params.D;
  let causal = params.causal != 0u;
  let keys = first + vec4<u32>(0u, 1u, 2u, 3u) * LANES + lane;

  for (var c = segment_begin(0u); c < segment_end(0u); c++) { load_a_step(SOURCE_K, kv_base, keys, c); }
  for (var c = segment_begin(1u); c < segment_end(1u); c++) { load_a_step(SOURCE_K, kv_base, keys, c); }
  for (var c = segment_begin(2u); c < segment_end(2u); c++) { load_a_step(SOURCE_K, kv_base, keys, c); }
  for (var c = segment_begin(3u); c < segment_end(3u); c++) { load_a_step(SOURCE_K, kv_base, keys, c); }
  for (var c = segment_begin(0u); c < segment_end(0u); c++) { load_b_step(SOURCE_V, kv_base, keys, c); }
  for (var c = segment_begin(1u); c < segment_end(1u); c++) { load_b_step(SOURCE_V, kv_base, keys, c); }
  for (var c = segment_begin(2u); c < segment_end(2u); c++) { load_b_step(SOURCE_V, kv_base, keys, c); }
  for (var c = segment_begin(3u); c < segment_end(3u); c++) { load_b_step(SOURCE_V, kv_base, keys, c); }

  let query_start = select(0u, first, causal);
  for (var member = 0u; member < params.group; member++) {
    let head = kv_head * params.group + member;
    for (var query_first = query_start; query_first < T; query_first += BLOCK_ROWS) {
      let count = min(BLOCK_ROWS, T - query_first);
      workgroupBarrier();
      stage_queries(head, query_first, count, lane);
      workgroupBarrier();

      for (var i = 0u; i < count; i++) {
        let offset = i * HEAD_VEC4S;
        dots_a = array<vec4<f32>, 16>();
        dots_b = array<vec4<f32>, 16>();
        for (var c = segment_begin(0u); c < segment_end(0u); c++) { dot_step(0u, offset, TILE / 2u + offset, c); }
        for (var c = segment_begin(1u); c < segment_end(1u); c++) { dot_step(1u, offset, TILE / 2u + offset, c); }
        for (var c = segment_begin(2u); c < segment_end(2u); c++) { dot_step(2u, offset, TILE / 2u + offset, c); }
        for (var c = segment_begin(3u); c < segment_end(3u); c++) { dot_step(3u, offset, TILE / 2u + offset, c); }

        let stats = tile[BLOCK_ROWS * HEAD_VEC4S + i];
        let visible = (keys <= vec4<u32>(query_first + i)) | vec4<bool>(!causal);
        let g = gradients(total(dots_a), total(dots_b), vec4<f32>(stats.x), vec4<f32>(stats.y), visible);
        for (var c = segment_begin(0u); c < segment_end(0u); c++) { accumulate_key_step(c, g.ds, g.p); }
        for (var c = segment_begin(1u); c < segment_end(1u); c++) { accumulate_key_step(c, g.ds, g.p); }
        for (var c = segment_begin(2u); c < segment_end(2u); c++) { accumulate_key_step(c, g.ds, g.p); }
        for (var c = segment_begin(3u); c < segment_end(3u); c++) { accumulate_key_step(c, g.ds, g.p); }
      }
    }
  }

  for (var c = segment_begin(0u); c < segment_end(0u); c++) { store_a_step(TARGET_DK, kv_base, keys, c, params.scale); }
  for (var c = segment_begin(1u); c < segment_end(1u); c++) { store_a_step(TARGET_DK, kv_base, keys, c, params.scale); }
  for (var c = segment_begin(2u); c < segment_end(2u); c++) { store_a_step(TARGET_DK, kv_base, keys, c, params.scale); }
  for (var c = segment_begin(3u); c < segment_end(3u); c++) { store_a_step(TARGET_DK, kv_base, keys, c, params.scale); }
  for (var c = segment_begin(0u); c < segment_end(0u); c++) { store_b_step(kv_base, keys, c); }
  for (var c = segment_begin(1u); c < segment_end(1u); c++) { store_b_step(kv_base, keys, c); }
  for (var c = segment_begin(2u); c < segment_end(2u); c++) { store_b_step(kv_base, keys, c); }
  for (var c = segment_begin(3u); c < segment_end(3u); c++) { store_b_step(kv_base, keys, c); }
}
