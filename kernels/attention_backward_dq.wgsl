// Fused attention backward, first pass: the query gradients, with the probabilities recomputed from
// q, k and the saved log-sum-exp:
//   P_ij = exp(scale·q_i·k_j − lse_i) (0 where the causal mask hides j > i), dP_ij = dO_i·v_j,
//   Δ_i = Σ_d dO_id·O_id, dS_ij = P_ij·(dP_ij − Δ_i), dq_i = scale·Σ_j dS_ij·k_j.
// Δ is computed on the way and saved for the second pass (attention_backward_dkv.wgsl).
// Deterministic, no atomics. Params, the register layout and the per-chunk steps used here come from
// lib/attention_backward.wgsl.
//
// Bindings: 0 params (uniform), 1 q [B, Hq, T, D], 2 k, 3 v [B, Hkv, T, D], 4 o [B, Hq, T, D],
// 5 lse [B, Hq, T], 6 dO [B, Hq, T, D] (read), 7 dq [B, Hq, T, D], 8 delta [B, Hq, T] (written).
// Query head h reads kv head floor(h / group).
// Variants: `#if VEC4` (D a multiple of 4) binds the [.., D] tensors as array<vec4<f32>>.
// Override constants: HEAD_VEC4S and SEGMENT (as in attention.wgsl); BLOCK_ROWS, the keys staged at
// a time.
//
// Layout: a workgroup owns a block of 4·LANES query rows of one query head, with q in reg_a and dO in
// reg_b, and accumulates dq in acc_a (see lib/attention_backward.wgsl). It walks the keys
// BLOCK_ROWS at a time, staging k in the first half of `tile` and v in the second. Causal: the walk
// stops at the block's last row.
// Dispatch: one workgroup per (query block, query head), B·Hq·blocks, as a linear count (folded over
// x, y by the host).

#include "lib/attention_backward.wgsl"

#if VEC4
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> o: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> d_out: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> dq: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> o: array<f32>;
@group(0) @binding(6) var<storage, read> d_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;
#endif
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(8) var<storage, read_write> delta: array<f32>;

// Which tensor a chunk is read from (dq is the only one written).
const SOURCE_Q = 0u;
const SOURCE_K = 1u;
const SOURCE_V = 2u;
const SOURCE_D_OUT = 3u;
const SOURCE_O = 4u;
const TARGET_DQ = 0u;

#if VEC4
fn load_chunk(source: u32, index: u32) -> vec4<f32> {
  switch source {
    case SOURCE_Q: { return q[index / 4u]; }
    case SOURCE_K: { return k[index / 4u]; }
    case SOURCE_V: { return v[index / 4u]; }
    case SOURCE_D_OUT: { return d_out[index / 4u]; }
    default: { return o[index / 4u]; }
  }
}

fn store_chunk(destination: u32, index: u32, chunk: vec4<f32>) {
  dq[index / 4u] = chunk;
}
#else
fn load_element(source: u32, index: u32) -> f32 {
  switch source {
    case SOURCE_Q: { return q[index]; }
    case SOURCE_K: { return k[index]; }
    case SOURCE_V: { return v[index]; }
    case SOURCE_D_OUT: { return d_out[index]; }
    default: { return o[index]; }
  }
}

fn store_element(destination: u32, index: u32, value: f32) {
  dq[index] = value;
}
#endif

/** dots_a += reg_b · O per element of the chunk: Δ of the four rows, reg_b holding dO. */
fn delta_step(segment: u32, base: u32, rows: vec4<u32>, c: u32) {
  let elements = read_rows(SOURCE_O, base, rows, c);
  let d = 4u * segment;
  dots_a[d] = fma(reg_b[0][c], elements[0], dots_a[d]);
  dots_a[d + 1u] = fma(reg_b[1][c], elements[1], dots_a[d + 1u]);
  dots_a[d + 2u] = fma(reg_b[2][c], elements[2], dots_a[d + 2u]);
  dots_a[d + 3u] = fma(reg_b[3][c], elements[3], dots_a[d + 3u]);
}

/** lse of the four rows (0 past T). */
fn read_lse(base: u32, rows: vec4<u32>) -> vec4<f32> {
  var values = vec4<f32>(0.0);
  if (rows.x < params.T) { values.x = lse[base + rows.x]; }
  if (rows.y < params.T) { values.y = lse[base + rows.y]; }
  if (rows.z < params.T) { values.z = lse[base + rows.z]; }
  if (rows.w < params.T) { values.w = lse[base + rows.w]; }
  return values;
}

fn write_delta(base: u32, rows: vec4<u32>, values: vec4<f32>) {
  if (rows.x < params.T) { delta[base + rows.x] = values.x; }
  if (rows.y < params.T) { delta[base + rows.y] = values.y; }
  if (rows.z < params.T) { delta[base + rows.z] = values.z; }
  if (rows.w < params.T) { delta[base + rows.w] = values.w; }
}

@compute @workgroup_size(LANES)
fn query_gradients(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lane: u32) {
  let workgroup = wid.x + wid.y * nwg.x;
  if (workgroup >= params.workgroups) {
    return;
  }
  let T = params.T;
  let head = workgroup / params.blocks;
  let first = (workgroup % params.blocks) * 4u * LANES;
  let q_base = head * T * params.D;
  let kv_base = (head / params.group) * T * params.D;
  let causal = params.causal != 0u;
  let rows = first + vec4<u32>(0u, 1u, 2u, 3u) * LANES + lane;

  for (var c = segment_begin(0u); c < segment_end(0u); c++) { load_a_step(SOURCE_Q, q_base, rows, c); }
  for (var c = segment_begin(1u); c < segment_end(1u); c++) { load_a_step(SOURCE_Q, q_base, rows, c); }
  for (var c = segment_begin(2u); c < segment_end(2u); c++) { load_a_step(SOURCE_Q, q_base, rows, c); }
  for (var c = segment_begin(3u); c < segment_end(3u); c++) { load_a_step(SOURCE_Q, q_base, rows, c); }
  for (var c = segment_begin(0u); c < segment_end(0u); c++) { load_b_step(SOURCE_D_OUT, q_base, rows, c); }
  for (var c = segment_begin(1u); c < segment_end(1u); c++) { load_b_step(SOURCE_D_OUT, q_base, rows, c); }
  for (var c = segment_begin(2u); c < segment_end(2u); c++) { load_b_step(SOURCE_D_OUT, q_base, rows, c); }
  for (var c = segment_begin(3u); c < segment_end(3u); c++) { load_b_step(SOURCE_D_OUT, q_base, rows, c); }
  dots_a = array<vec4<f32>, 16>();
  for (var c = segment_begin(0u); c < segment_end(0u); c++) { delta_step(0u, q_base, rows, c); }
  for (var c = segment_begin(1u); c < segment_end(1u); c++) { delta_step(1u, q_base, rows, c); }
  for (var c = segment_begin(2u); c < segment_end(2u); c++) { delta_step(2u, q_base, rows, c); }
  for (var c = segment_begin(3u); c < segment_end(3u); c++) { delta_step(3u, q_base, rows, c); }
  let row_delta = total(dots_a);
  let row_lse = read_lse(head * T, rows);
  write_delta(head * T, rows, row_delta);

  let key_end = select(T, min(T, first + 4u * LANES), causal);
  for (var key_first = 0u; key_first < key_end; key_first += BLOCK_ROWS) {
    let count = min(BLOCK_ROWS, key_end - key_first);
    workgroupBarrier();
    stage_rows(SOURCE_K, 0u, kv_base, key_first, count, lane);
    stage_rows(SOURCE_V, TILE / 2u, kv_base, key_first, count, lane);
    workgroupBarrier();

    for (var j = 0u; j < count; j++) {
      let offset = j * HEAD_VEC4S;
      dots_a = array<vec4<f32>, 16>();
      dots_b = array<vec4<f32>, 16>();
      for (var c = segment_begin(0u); c < segment_end(0u); c++) { dot_step(0u, offset, TILE / 2u + offset, c); }
      for (var c = segment_begin(1u); c < segment_end(1u); c++) { dot_step(1u, offset, TILE / 2u + offset, c); }
      for (var c = segment_begin(2u); c < segment_end(2u); c++) { dot_step(2u, offset, TILE / 2u + offset, c); }
      for (var c = segment_begin(3u); c < segment_end(3u); c++) { dot_step(3u, offset, TILE / 2u + offset, c); }

      let visible = (vec4<u32>(key_first + j) <= rows) | vec4<bool>(!causal);
      let g = gradients(total(dots_a), total(dots_b), row_lse, row_delta, visible);
      // dq_i += dS_ij·k_j, with buf_a holding k_j.
      for (var c = segment_begin(0u); c < segment_end(0u); c++) { accumulate_a_step(c, g.ds); }
      for (var c = segment_begin(1u); c < segment_end(1u); c++) { accumulate_a_step(c, g.ds); }
      for (var c = segment_begin(2u); c < segment_end(2u); c++) { accumulate_a_step(c, g.ds); }
      for (var c = segment_begin(3u); c < segment_end(3u); c++) { accumulate_a_step(c, g.ds); }
    }
  }

  for (var c = segment_begin(0u); c < segment_end(0u); c++) { store_a_step(TARGET_DQ, q_base, rows, c, params.scale); }
  for (var c = segment_begin(1u); c < segment_end(1u); c++) { store_a_step(TARGET_DQ, q_base, rows, c, params.scale); }
  for (var c = segment_begin(2u); c < segment_end(2u); c++) { store_a_step(TARGET_DQ, q_base, rows, c, params.scale); }
  for (var c = segment_begin(3u); c < segment_end(3u); c++) { store_a_step(TARGET_DQ, q_base, rows, c, params.scale); }
}
