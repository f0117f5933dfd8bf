// Fused attention forward (flash-attention style): o = softmax(scale·q·kᵀ, causal mask)·v and the
// natural log-sum-exp of each scaled score row; no [T, T] matrix ever reaches memory.
//
// Bindings: 0 params (uniform), 1 q [B, Hq, T, D], 2 k, 3 v [B, Hkv, T, D] (read), 4 o [B, Hq, T, D],
// 5 lse [B, Hq, T] (written). Query head h of a batch entry reads kv head floor(h / group).
// Variants: `#if VEC4` (D a multiple of 4) binds q, k, v, o as array<vec4<f32>>; otherwise every
// element is loaded and stored on its own.
// Override constants: HEAD_VEC4S = ceil(D / 4), the chunks of 4 elements in a row; SEGMENT, the
// chunks in each of the 4 segments of a row; BLOCK_KEYS, the keys staged at a time.
//
// One workgroup of LANES invocations owns a block of 4·LANES query rows of one (batch, head);
// invocation `lane` owns rows first + r·LANES + lane, r < 4, and keeps in registers their scaled
// queries and unnormalized outputs laid out across the rows: q_reg[i][c] holds element 4c + i of
// the four rows, so every vector operation advances the four rows at once. Keys are walked
// BLOCK_KEYS at a time: the workgroup stages that block of k (first half of `tile`) and v (second
// half); each invocation then takes the keys one by one with the online softmax update
//   m' = max(m, s), l = l·e^(m − m') + e^(s − m'), o = o·e^(m − m') + e^(s − m')·v_j.
// Causal: keys after a row are masked, and the walk stops at the block's last row.
// Register work runs as one loop per segment that indexes the register arrays by its counter. Each
// such loop sits directly in the entry point, unnested, and with D ≤ 128 covers at most 8 chunks:
// that is what llvmpipe's compiler unrolls (it leaves nested loops, loops inside helper functions and
// longer bodies rolled), and only unrolled loops keep the arrays in registers. Larger D is still
// correct, only slower to compile and run.
// Dispatch: B·Hq·ceil(T / (4·LANES)) workgroups as a linear count (folded over x, y by the host).

struct Params {
  T: u32,
  D: u32,
  /** Query heads per kv head. */
  group: u32,
  causal: u32,
  scale: f32,
  query_blocks: u32,
  workgroups: u32,
}

override HEAD_VEC4S: u32;
override SEGMENT: u32;
override BLOCK_KEYS: u32;

@group(0) @binding(0) var<uniform> params: Params;
#if VEC4
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> o: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
#endif
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;

const LANES = 16u;
const MAX_HEAD_VEC4S = 64u;
const TILE = 1024u;
/** Stands in for −∞: exp(NEG_BIG − m) is 0 for any finite m, and m − NEG_BIG never overflows to NaN. */
const NEG_BIG = -3.0e38;

var<workgroup> tile: array<vec4<f32>, TILE>;

var<private> q_reg: array<array<vec4<f32>, MAX_HEAD_VEC4S>, 4>;
var<private> o_acc: array<array<vec4<f32>, MAX_HEAD_VEC4S>, 4>;
/** Partial q·k per segment s and chunk element i, in dots[4s + i]: separate sums keep the additions independent. */
var<private> dots: array<vec4<f32>, 16>;

/** Segment s of a row: chunks [segment_begin(s), segment_end(s)). */
fn segment_begin(segment: u32) -> u32 {
  return min(segment * SEGMENT, HEAD_VEC4S);
}

fn segment_end(segment: u32) -> u32 {
  return min((segment + 1u) * SEGMENT, HEAD_VEC4S);
}

/** Elements index..index+3 of k (which = 0) or v (which = 1), zeros past the end of the row. */
fn read_kv(which: u32, index: u32) -> vec4<f32> {
#if VEC4
  if (which == 0u) {
    return k[index / 4u];
  }
  return v[index / 4u];
#else
  let available = params.D - index % params.D;
  var chunk = vec4<f32>(0.0);
  if (which == 0u) {
    chunk.x = k[index];
    if (available > 1u) { chunk.y = k[index + 1u]; }
    if (available > 2u) { chunk.z = k[index + 2u]; }
    if (available > 3u) { chunk.w = k[index + 3u]; }
  } else {
    chunk.x = v[index];
    if (available > 1u) { chunk.y = v[index + 1u]; }
    if (available > 2u) { chunk.z = v[index + 2u]; }
    if (available > 3u) { chunk.w = v[index + 3u]; }
  }
  return chunk;
#endif
}

/** Chunk c of query row `row` (zeros past T). */
fn read_q(base: u32, row: u32, c: u32) -> vec4<f32> {
  var chunk = vec4<f32>(0.0);
  if (row < params.T) {
    let index = base + row * params.D + c * 4u;
#if VEC4
    chunk = q[index / 4u];
#else
    let available = params.D - c * 4u;
    chunk.x = q[index];
    if (available > 1u) { chunk.y = q[index + 1u]; }
    if (available > 2u) { chunk.z = q[index + 2u]; }
    if (available > 3u) { chunk.w = q[index + 3u]; }
#endif
  }
  return chunk;
}

/** Writes chunk c of output row `row` (nothing past T or D). */
fn write_o(base: u32, row: u32, c: u32, chunk: vec4<f32>) {
  if (row < params.T) {
    let index = base + row * params.D + c * 4u;
#if VEC4
    o[index / 4u] = chunk;
#else
    let available = params.D - c * 4u;
    o[index] = chunk.x;
    if (available > 1u) { o[index + 1u] = chunk.y; }
    if (available > 2u) { o[index + 2u] = chunk.z; }
    if (available > 3u) { o[index + 3u] = chunk.w; }
#endif
  }
}

/** Copies rows first..first+count−1 of k and v at `base` into the two halves of `tile` (zeros past T). */
fn stage_keys(base: u32, first: u32, count: u32, lane: u32) {
  for (var e = lane; e < count * HEAD_VEC4S; e += LANES) {
    let row = first + e / HEAD_VEC4S;
    var key = vec4<f32>(0.0);
    var value = vec4<f32>(0.0);
    if (row < params.T) {
      let index = base + row * params.D + (e % HEAD_VEC4S) * 4u;
      key = read_kv(0u, index);
      value = read_kv(1u, index);
    }
    tile[e] = key;
    tile[TILE / 2u + e] = value;
  }
}

// Per-chunk steps, called from the segment loops of the entry point.

fn load_step(base: u32, rows: vec4<u32>, c: u32) {
  let chunks = transpose(mat4x4<f32>(read_q(base, rows.x, c), read_q(base, rows.y, c),
                                     read_q(base, rows.z, c), read_q(base, rows.w, c))) * params.scale;
  q_reg[0][c] = chunks[0];
  q_reg[1][c] = chunks[1];
  q_reg[2][c] = chunks[2];
  q_reg[3][c] = chunks[3];
}

fn dot_step(segment: u32, key: u32, c: u32) {
  let chunk = tile[key + c];
  let d = 4u * segment;
  dots[d] = fma(q_reg[0][c], vec4<f32>(chunk.x), dots[d]);
  dots[d + 1u] = fma(q_reg[1][c], vec4<f32>(chunk.y), dots[d + 1u]);
  dots[d + 2u] = fma(q_reg[2][c], vec4<f32>(chunk.z), dots[d + 2u]);
  dots[d + 3u] = fma(q_reg[3][c], vec4<f32>(chunk.w), dots[d + 3u]);
}

fn rescale_step(c: u32, factor: vec4<f32>) {
  o_acc[0][c] *= factor;
  o_acc[1][c] *= factor;
  o_acc[2][c] *= factor;
  o_acc[3][c] *= factor;
}

fn accumulate_step(value: u32, c: u32, p: vec4<f32>) {
  let chunk = tile[value + c];
  o_acc[0][c] = fma(p, vec4<f32>(chunk.x), o_acc[0][c]);
  o_acc[1][c] = fma(p, vec4<f32>(chunk.y), o_acc[1][c]);
  o_acc[2][c] = fma(p, vec4<f32>(chunk.z), o_acc[2][c]);
  o_acc[3][c] = fma(p, vec4<f32>(chunk.w), o_acc[3][c]);
}

fn store_step(base: u32, rows: vec4<u32>, c: u32, inverse_l: vec4<f32>) {
  let chunks = transpose(mat4x4<f32>(o_acc[0][c] * inverse_l, o_acc[1][c] * inverse_l,
                                     o_acc[2][c] * inverse_l, o_acc[3][c] * inverse_l));
  write_o(base, rows.x, c, chunks[0]);
  write_o(base, rows.y, c, chunks[1]);
  write_o(base, rows.z, c, chunks[2]);
  write_o(base, rows.w, c, chunks[3]);
}

/** The four rows' q·k from the partial sums. */
fn scores() -> vec4<f32> {
  return ((dots[0] + dots[1]) + (dots[2] + dots[3])) + ((dots[4] + dots[5]) + (dots[6] + dots[7]))
    + ((dots[8] + dots[9]) + (dots[10] + dots[11])) + ((dots[12] + dots[13]) + (dots[14] + dots[15]));
}

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
  let workgroup = wid.x + wid.y * nwg.x;
  if (workgroup >= params.workgroups) {
    return;
  }
  let T = params.T;
  let head = workgroup / params.query_blocks;
  let first = (workgroup % params.query_blocks) * 4u * LANES;
  let q_base = head * T * params.D;
  let kv_base = (head / params.group) * T * params.D;
  let causal = params.causal != 0u;
  let rows = first + vec4<u32>(0u, 1u, 2u, 3u) * LANES + lane;

  for (var c = segment_begin(0u); c < segment_end(0u); c++) { load_step(q_base, rows, c); }
  for (var c = segment_begin(1u); c < segment_end(1u); c++) { load_step(q_base, rows, c); }
  for (var c = segment_begin(2u); c < segment_end(2u); c++) { load_step(q_base, rows, c); }
  for (var c = segment_begin(3u); c < segment_end(3u); c++) { load_step(q_base, rows, c); }

  var m = vec4<f32>(NEG_BIG);
  var l = vec4<f32>(0.0);
  let key_end = select(T, min(T, first + 4u * LANES), causal);
  for (var key_first = 0u; key_first < key_end; key_first += BLOCK_KEYS) {
    let count = min(BLOCK_KEYS, key_end - key_first);
    workgroupBarrier();
    stage_keys(kv_base, key_first, count, lane);
    workgroupBarrier();

    for (var j = 0u; j < count; j++) {
      let key = j * HEAD_VEC4S;
      dots = array<vec4<f32>, 16>();
      for (var c = segment_begin(0u); c < segment_end(0u); c++) { dot_step(0u, key, c); }
      for (var c = segment_begin(1u); c < segment_end(1u); c++) { dot_step(1u, key, c); }
      for (var c = segment_begin(2u); c < segment_end(2u); c++) { dot_step(2u, key, c); }
      for (var c = segment_begin(3u); c < segment_end(3u); c++) { dot_step(3u, key, c); }

      let visible = (vec4<u32>(key_first + j) <= rows) | vec4<bool>(!causal);
      let score = select(vec4<f32>(NEG_BIG), scores(), visible);
      let m_new = max(m, score);
      let rescale = exp(m - m_new);
      let p = exp(score - m_new);
      l = l * rescale + p;
      m = m_new;

      for (var c = segment_begin(0u); c < segment_end(0u); c++) { rescale_step(c, rescale); }
      for (var c = segment_begin(1u); c < segment_end(1u); c++) { rescale_step(c, rescale); }
      for (var c = segment_begin(2u); c < segment_end(2u); c++) { rescale_step(c, rescale); }
      for (var c = segment_begin(3u); c < segment_end(3u); c++) { rescale_step(c, rescale); }
      let value = TILE / 2u + key;
      for (var c = segment_begin(0u); c < segment_end(0u); c++) { accumulate_step(value, c, p); }
      for (var c = segment_begin(1u); c < segment_end(1u); c++) { accumulate_step(value, c, p); }
      for (var c = segment_begin(2u); c < segment_end(2u); c++) { accumulate_step(value, c, p); }
      for (var c = segment_begin(3u); c < segment_end(3u); c++) { accumulate_step(value, c, p); }
    }
  }

  let inverse_l = 1.0 / l;
  for (var c = segment_begin(0u); c < segment_end(0u); c++) { store_step(q_base, rows, c, inverse_l); }
  for (var c = segment_begin(1u); c < segment_end(1u); c++) { store_step(q_base, rows, c, inverse_l); }
  for (var c = segment_begin(2u); c < segment_end(2u); c++) { store_step(q_base, rows, c, inverse_l); }
  for (var c = segment_begin(3u); c < segment_end(3u); c++) { store_step(q_base, rows, c, inverse_l); }
  let row_lse = m + log(l);
  for (var r = 0u; r < 4u; r++) {
    if (rows[r] < T) {
      lse[head * T + rows[r]] = row_lse[r];
    }
  }
}
