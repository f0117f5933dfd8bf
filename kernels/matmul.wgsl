// Batched matrix product: c[batch, M, N] = op(a)·op(b), op = transpose where TRANS_A / TRANS_B say,
// or its partial sums over slices of K.
//
// Bindings: 0 params (uniform), 1 a, 2 b (f32, read), 3 c (f32 [slices, batch, M, N], written).
// a holds [M, K] per batch entry ([K, M] when TRANS_A), b holds [K, N] ([N, K] when TRANS_B); entry e
// of a starts at e·a_batch_stride elements (0 broadcasts one matrix), likewise for b.
// Variants: `#if VEC4` binds a and b as array<vec4<f32>>; the program sets it only when the contiguous
// dimension of each operand (K or M for a, N or K for b) and both batch strides are multiples of 4.
// Without it every element is loaded on its own, which is correct for any M, N, K.
// Override constants: TRANS_A, TRANS_B.
//
// Tiling: a workgroup of 8×8 invocations computes a 128×128 tile of c. Each invocation owns 16 rows
// (4 groups of 4 consecutive rows, 32 rows apart) × 16 columns (likewise) and keeps them in registers
// as 16 4×4 blocks, acc_gj for row group g and column group j; column r of a block is output row r
// of the group. K is walked BK = 16 at a time: the workgroup stages the a and b tiles in workgroup
// memory exactly as they lie in memory (chunks of 4 consecutive elements along the contiguous
// dimension, zeros past the matrix edges); each invocation then takes 4 k at a time as 4×4 blocks
// of a (columns: its rows, over k) and of b (columns: k, over its columns) and accumulates
// acc_gj += b_j · a_g. The blocks are named variables rather than arrays so that they stay in
// registers on compilers that do not unroll loops.
// Split K: slice s sums k in [s·k_slice, min(K, (s + 1)·k_slice)) (k_slice a multiple of BK) into
// c[s]; c[s] starts at s·slice_stride elements. Unsplit, k_slice ≥ K and there is one slice.
// Dispatch: slices·batch·ceil(M/128)·ceil(N/128) workgroups as a linear count (folded over x, y by
// the host); the linear index enumerates column tiles fastest, then row tiles, then batch entries,
// then slices (slice_tiles = tiles per slice).

struct Params {
  M: u32,
  N: u32,
  K: u32,
  a_batch_stride: u32,
  b_batch_stride: u32,
  tiles_n: u32,
  tiles_m: u32,
  tile_count: u32,
  slice_tiles: u32,
  k_slice: u32,
  slice_stride: u32,
}

override TRANS_A: bool;
override TRANS_B: bool;

@group(0) @binding(0) var<uniform> params: Params;
#if VEC4
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
#endif
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const TX = 8u;
const TY = 8u;
const BM = 128u;
const BN = 128u;
const BK = 16u;
const BK4 = BK / 4u;
const BM4 = BM / 4u;
const BN4 = BN / 4u;
const INVOCATIONS = TX * TY;

// The staged tiles, in chunks of 4 along the operand's contiguous dimension:
// a_tile is [BM rows][BK4 chunks], or [BK rows][BM4 chunks] when TRANS_A;
// b_tile is [BK rows][BN4 chunks], or [BN rows][BK4 chunks] when TRANS_B.
var<workgroup> a_tile: array<vec4<f32>, BM * BK4>;
var<workgroup> b_tile: array<vec4<f32>, BN * BK4>;

/** Elements col..col+3 of row `row` of the row-major [rows, cols] matrix at `base` in a; zeros outside it. */
fn load_a(base: u32, row: u32, col: u32, rows: u32, cols: u32) -> vec4<f32> {
  var value = vec4<f32>(0.0);
  if (row < rows) {
    let index = base + row * cols + col;
#if VEC4
    if (col < cols) {
      value = a[index / 4u];
    }
#else
    if (col < cols) { value.x = a[index]; }
    if (col + 1u < cols) { value.y = a[index + 1u]; }
    if (col + 2u < cols) { value.z = a[index + 2u]; }
    if (col + 3u < cols) { value.w = a[index + 3u]; }
#endif
  }
  return value;
}

/** As load_a, from b. */
fn load_b(base: u32, row: u32, col: u32, rows: u32, cols: u32) -> vec4<f32> {
  var value = vec4<f32>(0.0);
  if (row < rows) {
    let index = base + row * cols + col;
#if VEC4
    if (col < cols) {
      value = b[index / 4u];
    }
#else
    if (col < cols) { value.x = b[index]; }
    if (col + 1u < cols) { value.y = b[index + 1u]; }
    if (col + 2u < cols) { value.z = b[index + 2u]; }
    if (col + 3u < cols) { value.w = b[index + 3u]; }
#endif
  }
  return value;
}

/** Rows 4·m4..4·m4+3 of the staged a over k = 4·kq..4·kq+3, one row per column. */
fn a_block(m4: u32, kq: u32) -> mat4x4<f32> {
  if (TRANS_A) {
    let k = kq * 4u;
    return transpose(mat4x4<f32>(a_tile[k * BM4 + m4], a_tile[(k + 1u) * BM4 + m4],
                                 a_tile[(k + 2u) * BM4 + m4], a_tile[(k + 3u) * BM4 + m4]));
  }
  let row = m4 * 4u;
  return mat4x4<f32>(a_tile[row * BK4 + kq], a_tile[(row + 1u) * BK4 + kq],
                     a_tile[(row + 2u) * BK4 + kq], a_tile[(row + 3u) * BK4 + kq]);
}

/** The staged b at k = 4·kq..4·kq+3, one k per column, over columns 4·n4..4·n4+3. */
fn b_block(n4: u32, kq: u32) -> mat4x4<f32> {
  if (TRANS_B) {
    let col = n4 * 4u;
    return transpose(mat4x4<f32>(b_tile[col * BK4 + kq], b_tile[(col + 1u) * BK4 + kq],
                                 b_tile[(col + 2u) * BK4 + kq], b_tile[(col + 3u) * BK4 + kq]));
  }
  let k = kq * 4u;
  return mat4x4<f32>(b_tile[k * BN4 + n4], b_tile[(k + 1u) * BN4 + n4],
                     b_tile[(k + 2u) * BN4 + n4], b_tile[(k + 3u) * BN4 + n4]);
}

/** Writes the 4×4 block whose column r is row row0 + r of c, from column col0, skipping what lies outside. */
fn store_block(base: u32, row0: u32, col0: u32, block: mat4x4<f32>) {
  let M = params.M;
  let N = params.N;
  for (var r = 0u; r < 4u; r++) {
    let row = row0 + r;
    let index = base + row * N + col0;
    let value = block[r];
    if (row < M) {
      if (col0 < N) { c[index] = value.x; }
      if (col0 + 1u < N) { c[index + 1u] = value.y; }
      if (col0 + 2u < N) { c[index + 2u] = value.z; }
      if (col0 + 3u < N) { c[index + 3u] = value.w; }
    }
  }
}

@compute @workgroup_size(TX, TY)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) flat: u32) {
  let tile = wid.x + wid.y * nwg.x;
  if (tile >= params.tile_count) {
    return;
  }
  let M = params.M;
  let N = params.N;
  let K = params.K;
  let slice = tile / params.slice_tiles;
  let tiles_per_entry = params.tiles_m * params.tiles_n;
  let entry = (tile % params.slice_tiles) / tiles_per_entry;
  let within = tile % tiles_per_entry;
  let k_begin = slice * params.k_slice;
  let k_end = min(K, k_begin + params.k_slice);
  let m0 = (within / params.tiles_n) * BM;
  let n0 = (within % params.tiles_n) * BN;
  let a_base = entry * params.a_batch_stride;
  let b_base = entry * params.b_batch_stride;
  // This invocation's row group g starts at row 4·(g·TY + ty) of the tile, its column group j at 4·(j·TX + tx).
  let tx = lid.x;
  let ty = lid.y;

  var acc00 = mat4x4<f32>();
  var acc01 = mat4x4<f32>();
  var acc02 = mat4x4<f32>();
  var acc03 = mat4x4<f32>();
  var acc10 = mat4x4<f32>();
  var acc11 = mat4x4<f32>();
  var acc12 = mat4x4<f32>();
  var acc13 = mat4x4<f32>();
  var acc20 = mat4x4<f32>();
  var acc21 = mat4x4<f32>();
  var acc22 = mat4x4<f32>();
  var acc23 = mat4x4<f32>();
  var acc30 = mat4x4<f32>();
  var acc31 = mat4x4<f32>();
  var acc32 = mat4x4<f32>();
  var acc33 = mat4x4<f32>();
  for (var k0 = k_begin; k0 < k_end; k0 += BK) {
    for (var i = 0u; i < BM * BK4 / INVOCATIONS; i++) {
      let chunk = flat + i * INVOCATIONS;
      if (TRANS_A) {
        a_tile[chunk] = load_a(a_base, k0 + chunk / BM4, m0 + (chunk % BM4) * 4u, K, M);
      } else {
        a_tile[chunk] = load_a(a_base, m0 + chunk / BK4, k0 + (chunk % BK4) * 4u, M, K);
      }
    }
    for (var i = 0u; i < BN * BK4 / INVOCATIONS; i++) {
      let chunk = flat + i * INVOCATIONS;
      if (TRANS_B) {
        b_tile[chunk] = load_b(b_base, n0 + chunk / BK4, k0 + (chunk % BK4) * 4u, N, K);
      } else {
        b_tile[chunk] = load_b(b_base, k0 + chunk / BN4, n0 + (chunk % BN4) * 4u, K, N);
      }
    }
    workgroupBarrier();

    for (var kq = 0u; kq < BK4; kq++) {
      let a0 = a_block(0u * TY + ty, kq);
      let a1 = a_block(1u * TY + ty, kq);
      let a2 = a_block(2u * TY + ty, kq);
      let a3 = a_block(3u * TY + ty, kq);
      let b0 = b_block(0u * TX + tx, kq);
      let b1 = b_block(1u * TX + tx, kq);
      let b2 = b_block(2u * TX + tx, kq);
      let b3 = b_block(3u * TX + tx, kq);
      acc00 += b0 * a0;
      acc01 += b1 * a0;
      acc02 += b2 * a0;
      acc03 += b3 * a0;
      acc10 += b0 * a1;
      acc11 += b1 * a1;
      acc12 += b2 * a1;
      acc13 += b3 * a1;
      acc20 += b0 * a2;
      acc21 += b1 * a2;
      acc22 += b2 * a2;
      acc23 += b3 * a2;
      acc30 += b0 * a3;
      acc31 += b1 * a3;
      acc32 += b2 * a3;
      acc33 += b3 * a3;
    }
    workgroupBarrier();
  }

  let c_base = slice * params.slice_stride + entry * M * N;
  store_block(c_base, m0 + (0u * TY + ty) * 4u, n0 + (0u * TX + tx) * 4u, acc00);
  store_block(c_base, m0 + (0u * TY + ty) * 4u, n0 + (1u * TX + tx) * 4u, acc01);
  store_block(c_base, m0 + (0u * TY + ty) * 4u, n0 + (2u * TX + tx) * 4u, acc02);
  store_block(c_base, m0 + (0u * TY + ty) * 4u, n0 + (3u * TX + tx) * 4u, acc03);
  store_block(c_base, m0 + (1u * TY + ty) * 4u, n0 + (0u * TX + tx) * 4u, acc10);
  store_block(c_base, m0 + (1u * TY + ty) * 4u, n0 + (1u * TX + tx) * 4u, acc11);
  store_block(c_base, m0 + (1u * TY + ty) * 4u, n0 + (2u * TX + tx) * 4u, acc12);
  store_block(c_base, m0 + (1u * TY + ty) * 4u, n0 + (3u * TX + tx) * 4u, acc13);
  store_block(c_base, m0 + (2u * TY + ty) * 4u, n0 + (0u * TX + tx) * 4u, acc20);
  store_block(c_base, m0 + (2u * TY + ty) * 4u, n0 + (1u * TX + tx) * 4u, acc21);
  store_block(c_base, m0 + (2u * TY + ty) * 4u, n0 + (2u * TX + tx) * 4u, acc22);
  store_block(c_base, m0 + (2u * TY + ty) * 4u, n0 + (3u * TX + tx) * 4u, acc23);
  store_block(c_base, m0 + (3u * TY + ty) * 4u, n0 + (0u * TX + tx) * 4u, acc30);
  store_block(c_base, m0 + (3u * TY + ty) * 4u, n0 + (1u * TX + tx) * 4u, acc31);
  store_block(c_base, m0 + (3u * TY + ty) * 4u, n0 + (2u * TX + tx) * 4u, acc32);
  store_block(c_base, m0 + (3u * TY + ty) * 4u, n0 + (3u * TX + tx) * 4u, acc33);
}
