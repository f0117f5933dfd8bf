// The part of the fused attention backward that its two passes share: params, the register layout
// and the per-chunk steps. No kernel on its own: attention_backward_dq.wgsl (query gradients) and
// attention_backward_dkv.wgsl (key and value gradients) include it with
// `#include "lib/attention_backward.wgsl"`.
//
// Declares: Params and binding 0 (params, uniform), the constants below, the workgroup `tile`, the
// private registers, the row helpers and the per-chunk steps.
// The includer provides: its storage bindings (1 and up) and the memory access the row helpers go
// through: load_chunk(source, index) and store_chunk(destination, index, chunk) on vec4s under
// `#if VEC4`, load_element and store_element on single elements otherwise, with `source` and
// `destination` ids of its own.
//
// Override constants: HEAD_VEC4S = ceil(D / 4) and SEGMENT (as in attention.wgsl); BLOCK_ROWS, the
// rows of the other side staged at a time.
//
// Layout (as in attention.wgsl): a workgroup of LANES invocations owns a block of 4·LANES rows
// (query rows or key rows) of one head; invocation `lane` owns rows first + r·LANES + lane,
// r < 4, and keeps their operands and gradient accumulators in registers laid out across the rows,
// element 4c + i of the four rows in reg[i][c]. The other side is staged in `tile` a block at a time
// and taken one row at a time, copied into registers (buf_a, buf_b) while the dot products are taken
// so that the accumulations reuse it. Register work runs as one loop per segment of the row (at most
// 8 chunks for D ≤ 128), unnested in the entry points, so that it gets unrolled (see attention.wgsl).

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

const LANES = 16u;
const MAX_HEAD_VEC4S = 64u;
const TILE = 1024u;

var<workgroup> tile: array<vec4<f32>, TILE>;

// Registers: the operands held for this invocation's rows (reg_a, reg_b: q and dO, or k and v), the
// accumulator (acc_a: dq, or dk; the key/value pass adds acc_b for dv), the staged row taken at the
// moment (buf_a: k or q; buf_b: v or dO), and partial dot products per segment s and element i in
// [4s + i].
var<private> reg_a: array<array<vec4<f32>, MAX_HEAD_VEC4S>, 4>;
var<private> reg_b: array<array<vec4<f32>, MAX_HEAD_VEC4S>, 4>;
var<private> acc_a: array<array<vec4<f32>, MAX_HEAD_VEC4S>, 4>;
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
