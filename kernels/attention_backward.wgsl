// Fused attention backward, recomputing the probabilities from q, k and the saved log-sum-exp:
//   P_ij = exp(scale·q_i·k_j − lse_i) (0 where the causal mask hides j > i), dP_ij = dO_i·v_j,
//   Δ_i = Σ_d dO_id·O_id, dS_ij = P_ij·(dP_ij − Δ_i),
//   dq_i = scale·Σ_j dS_ij·k_j, dk_j = scale·Σ_i dS_ij·q_i, dv_j = Σ_i P_ij·dO_i,
// where dk and dv sum over every query head of the kv head's group. Two deterministic passes, no
// atomics: entry point `query_gradients` (the default variant) owns query rows, computes Δ on the way
// and saves it; `key_value_gradients` (`#if KEYS`) owns key rows and walks the query rows of every
// head of its group, in order.
//
// Bindings, query_gradients: 0 params (uniform), 1 q [B, Hq, T, D], 2 k, 3 v [B, Hkv, T, D],
// 4 o [B, Hq, T, D], 5 lse [B, Hq, T], 6 dO [B, Hq, T, D] (read), 7 dq [B, Hq, T, D], 8 delta [B, Hq, T]
// (written). Bindings, key_value_gradients: 0 params, 1 q, 2 k, 3 v, 4 delta, 5 lse, 6 dO (read),
// 7 dk, 8 dv [B, Hkv, T, D] (written).
// Variants: `#if VEC4` (D a multiple of 4) binds the [.., D] tensors as array<vec4<f32>>; `#if KEYS`
// selects key_value_gradients and its bindings.
// Override constants: HEAD_VEC4S = ceil(D / 4) and SEGMENT (as in attention.wgsl); BLOCK_ROWS, the
// rows staged at a time (keys and values for query_gradients; queries, dO and their lse and Δ for
// key_value_gradients).
//
// Layout (as in attention.wgsl): a workgroup of LANES invocations owns a block of 4·LANES rows
// (query rows or key rows) of one head; invocation `lane` owns rows first + r·LANES + lane,
// r < 4, and keeps their operands and gradient accumulators in registers laid out across the rows,
// element 4c + i of the four rows in reg[i][c]. The other side is staged in `tile` a block at a time
// and taken one row at a time, copied into registers (buf_a, buf_b) while the dot products are taken
// so that the accumulations reuse it. Register work runs as one loop per segment of the row (at most
// 8 chunks for D ≤ 128), unnested in the entry points, so that it gets unrolled (see attention.wgsl).
// Causal: query_gradients walks keys up to its block's last row; key_value_gradients starts at its
// block's first key.
// Dispatch: one workgroup per (row block, head) — B·Hq·blocks, or B·Hkv·blocks for key_value_gradients
// — as a linear count (folded over x, y by the host).

struct Params {
  T: u32,
  D: u32,
  /** Query heads per kv head. */
  group: u32,
  causal: u32,
  scale: f32,
  /** Row blocks per head. */
  blocks: u32,
  workgroups: u32,
}

override HEAD_VEC4S: u32;
override SEGMENT: u32;
override BLOCK_ROWS: u32;

@group(0) @binding(0) var<uniform> params: Params;
#if VEC4
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> d_out: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(6) var<storage, read> d_out: array<f32>;
#endif
@group(0) @binding(5) var<storage, read> lse: array<f32>;
#if KEYS
@group(0) @binding(4) var<storage, read> delta: array<f32>;
#if VEC4
@group(0) @binding(7) var<storage, read_write> dk: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> dv: array<vec4<f32>>;
#else
@group(0) @binding(7) var<storage, read_write> dk: array<f32>;
@group(0) @binding(8) var<storage, read_write> dv: array<f32>;
#endif
#else
@group(0) @binding(8) var<storage, read_write> delta: array<f32>;
#if VEC4
@group(0) @binding(4) var<storage, read> o: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> dq: array<vec4<f32>>;
#else
@group(0) @binding(4) var<storage, read> o: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;
#endif
#endif

const LANES = 16u;
const MAX_HEAD_VEC4S = 64u;
const TILE = 1024u;
// Which tensor a chunk is read from or written to.
const SOURCE_Q = 0u;
const SOURCE_K = 1u;
const SOURCE_V = 2u;
const SOURCE_D_OUT = 3u;
const SOURCE_O = 4u;
const TARGET_DQ = 0u;
const TARGET_DK = 1u;
const TARGET_DV = 2u;

var<workgroup> tile: array<vec4<f32>, TILE>;

// Registers: the operands held for this invocation's rows (reg_a, reg_b: q and dO, or k and v), the
// accumulators (acc_a: dq, or dk; acc_b: dv), the staged row taken at the moment
// (buf_a: k or q; buf_b: v or dO), and partial dot products per segment s and element i in [4s + i].
var<private> reg_a: array<array<vec4<f32>, MAX_HEAD_VEC4S>, 4>;
var<private> reg_b: array<array<vec4<f32>, MAX_HEAD_VEC4S>, 4>;
var<private> acc_a: array<array<vec4<f32>, MAX_HEAD_VEC4S>, 4>;
#if KEYS
var<private> acc_b: array<array<vec4<f32>, MAX_HEAD_VEC4S>, 4>;
#endif
var<private> buf_a: array<vec4<f32>, MAX_HEAD_VEC4S>;
var<private> buf_b: array<vec4<f32>, MAX_HEAD_VEC4S>;
var<private> dots_a: array<vec4<f32>, 16>;
var<private> dots_b: array<vec4<f32>, 16>;

fn segment_begin(segment: u32) -> u32 {
  return min(segment * SEGMENT, HEAD_VEC4S);
}

fn segment_end(segment: u32) -> u32 {
  return min((segment + 1u) * SEGMENT, HEAD_VEC4S);
}

#if VEC4
fn load_chunk(source: u32, index: u32) -> vec4<f32> {
  switch source {
    case SOURCE_Q: { return q[index / 4u]; }
    case SOURCE_K: { return k[index / 4u]; }
    case SOURCE_V: { return v[index / 4u]; }
#if KEYS
    default: { return d_out[index / 4u]; }
#else
    case SOURCE_D_OUT: { return d_out[index / 4u]; }
    default: { return o[index / 4u]; }
#endif
  }
}

fn store_chunk(destination: u32, index: u32, chunk: vec4<f32>) {
#if KEYS
  if (destination == TARGET_DK) {
    dk[index / 4u] = chunk;
  } else {
    dv[index / 4u] = chunk;
  }
#else
  dq[index / 4u] = chunk;
#endif
}
#else
fn load_element(source: u32, index: u32) -> f32 {
  switch source {
    case SOURCE_Q: { return q[index]; }
    case SOURCE_K: { return k[index]; }
    case SOURCE_V: { return v[index]; }
#if KEYS
    default: { return d_out[index]; }
#else
    case SOURCE_D_OUT: { return d_out[index]; }
    default: { return o[index]; }
#endif
  }
}

fn store_element(destination: u32, index: u32, value: f32) {
#if KEYS
  if (destination == TARGET_DK) {
    dk[index] = value;
  } else {
    dv[index] = value;
  }
#else
  dq[index] = value;
#endif
}
#endif

/** Chunk c of row `row` of the [T, D] matrix at `base` in `source`; zeros past T and past D. */
fn read_row(source: u32, base: u32, row: u32, c: u32) -> vec4<f32> {
  var chunk = vec4<f32>(0.0);
  if (row < params.T) {
    let index = base + row * params.D + c * 4u;
#if VEC4
    chunk = load_chunk(source, index);
#else
    let available = params.D - c * 4u;
    chunk.x = load_element(source, index);
    if (available > 1u) { chunk.y = load_element(source, index + 1u); }
    if (available > 2u) { chunk.z = load_element(source, index + 2u); }
    if (available > 3u) { chunk.w = load_element(source, index + 3u); }
#endif
  }
  return chunk;
}

/** Writes chunk c of row `row` of the [T, D] matrix at `base` in `destination` (nothing past T or D). */
fn write_row(destination: u32, base: u32, row: u32, c: u32, chunk: vec4<f32>) {
  if (row < params.T) {
    let index = base + row * params.D + c * 4u;
#if VEC4
    store_chunk(destination, index, chunk);
#else
    let available = params.D - c * 4u;
    store_element(destination, index, chunk.x);
    if (available > 1u) { store_element(destination, index + 1u, chunk.y); }
    if (available > 2u) { store_element(destination, index + 2u, chunk.z); }
    if (available > 3u) { store_element(destination, index + 3u, chunk.w); }
#endif
  }
}

/** Stages rows first..first+count−1 of `source` at `base` into tile[offset..], HEAD_VEC4S chunks a row. */
fn stage_rows(source: u32, offset: u32, base: u32, first: u32, count: u32, lane: u32) {
  for (var e = lane; e < count * HEAD_VEC4S; e += LANES) {
    tile[offset + e] = read_row(source, base, first + e / HEAD_VEC4S, e % HEAD_VEC4S);
  }
}

/** The four rows' chunk c of `source`, transposed: element i of the result is element 4c + i across the rows. */
fn read_rows(source: u32, base: u32, rows: vec4<u32>, c: u32) -> mat4x4<f32> {
  return transpose(mat4x4<f32>(read_row(source, base, rows.x, c), read_row(source, base, rows.y, c),
                               read_row(source, base, rows.z, c), read_row(source, base, rows.w, c)));
}

fn write_rows(destination: u32, base: u32, rows: vec4<u32>, c: u32, elements: mat4x4<f32>) {
  let chunks = transpose(elements);
  write_row(destination, base, rows.x, c, chunks[0]);
  write_row(destination, base, rows.y, c, chunks[1]);
  write_row(destination, base, rows.z, c, chunks[2]);
  write_row(destination, base, rows.w, c, chunks[3]);
}

// Per-chunk steps, called from the segment loops of the entry points.

fn load_a_step(source: u32, base: u32, rows: vec4<u32>, c: u32) {
  let elements = read_rows(source, base, rows, c);
  reg_a[0][c] = elements[0];
  reg_a[1][c] = elements[1];
  reg_a[2][c] = elements[2];
  reg_a[3][c] = elements[3];
}

fn load_b_step(source: u32, base: u32, rows: vec4<u32>, c: u32) {
  let elements = read_rows(source, base, rows, c);
  reg_b[0][c] = elements[0];
  reg_b[1][c] = elements[1];
  reg_b[2][c] = elements[2];
  reg_b[3][c] = elements[3];
}

/** Takes chunk c of the staged rows at offset_a and offset_b: dots_a += reg_a · buf_a, dots_b += reg_b · buf_b. */
fn dot_step(segment: u32, offset_a: u32, offset_b: u32, c: u32) {
  let a = tile[offset_a + c];
  let b = tile[offset_b + c];
  buf_a[c] = a;
  buf_b[c] = b;
  let d = 4u * segment;
  dots_a[d] = fma(reg_a[0][c], vec4<f32>(a.x), dots_a[d]);
  dots_a[d + 1u] = fma(reg_a[1][c], vec4<f32>(a.y), dots_a[d + 1u]);
  dots_a[d + 2u] = fma(reg_a[2][c], vec4<f32>(a.z), dots_a[d + 2u]);
  dots_a[d + 3u] = fma(reg_a[3][c], vec4<f32>(a.w), dots_a[d + 3u]);
  dots_b[d] = fma(reg_b[0][c], vec4<f32>(b.x), dots_b[d]);
  dots_b[d + 1u] = fma(reg_b[1][c], vec4<f32>(b.y), dots_b[d + 1u]);
  dots_b[d + 2u] = fma(reg_b[2][c], vec4<f32>(b.z), dots_b[d + 2u]);
  dots_b[d + 3u] = fma(reg_b[3][c], vec4<f32>(b.w), dots_b[d + 3u]);
}

/** The four rows' dot products from the partial sums. */
fn total(dots: array<vec4<f32>, 16>) -> vec4<f32> {
  return ((dots[0] + dots[1]) + (dots[2] + dots[3])) + ((dots[4] + dots[5]) + (dots[6] + dots[7]))
    + ((dots[8] + dots[9]) + (dots[10] + dots[11])) + ((dots[12] + dots[13]) + (dots[14] + dots[15]));
}

/** acc_a += weight ⊗ buf_a (each of the four rows scaled by its weight). */
fn accumulate_a_step(c: u32, weight: vec4<f32>) {
  let a = buf_a[c];
  acc_a[0][c] = fma(weight, vec4<f32>(a.x), acc_a[0][c]);
  acc_a[1][c] = fma(weight, vec4<f32>(a.y), acc_a[1][c]);
  acc_a[2][c] = fma(weight, vec4<f32>(a.z), acc_a[2][c]);
  acc_a[3][c] = fma(weight, vec4<f32>(a.w), acc_a[3][c]);
}

fn store_a_step(destination: u32, base: u32, rows: vec4<u32>, c: u32, factor: f32) {
  write_rows(destination, base, rows, c, mat4x4<f32>(acc_a[0][c], acc_a[1][c], acc_a[2][c], acc_a[3][c]) * factor);
}

/** The probabilities and score gradients of four rows against one row of the other side. */
struct Gradients {
  p: vec4<f32>,
  ds: vec4<f32>,
}

fn gradients(dot_qk: vec4<f32>, dot_dp: vec4<f32>, row_lse: vec4<f32>, row_delta: vec4<f32>, visible: vec4<bool>) -> Gradients {
  let p = select(vec4<f32>(0.0), exp(params.scale * dot_qk - row_lse), visible);
  return Gradients(p, p * (dot_dp - row_delta));
}

#if KEYS

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

#else

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

#endif
