// Elementwise f32 kernels: unary ops, activation derivatives, and binary ops with numpy broadcasting.
//
// One section per kernel, chosen with #if (each declares its own bindings); all buffers dense f32:
//   UNARY              0 params, 1 x (read), 2 y (write)                y = op(x)
//   GRAD               0 params, 1 x (read), 2 dy (read), 3 dx (write)  dx = op'(x)·dy
//   BINARY             0 params, 1 a (read), 2 b (read), 3 out (write)  out = a op b, a and b of out's size
//   BINARY + SCALAR    as BINARY, b holding one element; the program swaps the operands when a is the
//                      single one and sets SWAP, so the op still sees them in order
//   BINARY + BROADCAST as BINARY, any broadcast
// The op is the override constant OP, so each op compiles to its own straight-line pipeline.
//
// Dense kernels (all but BROADCAST): with VEC4 (n % 4 == 0) every array but a SCALAR operand is
// array<vec4<f32>> and `units` counts vec4s, otherwise units are elements. Workgroups of 256, each
// invocation handling ITEMS units: workgroup w (= wid.x + wid.y · nwg.x, folded past 65,535)
// covers units [w·256·ITEMS, (w + 1)·256·ITEMS), invocation lid taking w·256·ITEMS + k·256 + lid for
// k < ITEMS, so each step k reads and writes 256 consecutive units. ceil(units / (256·ITEMS))
// workgroups.
// BROADCAST: the output space comes coalesced (rank ≤ 8) as `shape`, with a's and b's element
// strides per dimension (0 where they broadcast) and each operand's offset; the three 8-entry
// tables sit in the uniform as array<vec4<u32>, 2> each, which is the layout of consecutive u32s
// after the eight leading scalars. The output is `rows` rows of the last dimension; an invocation
// takes SEGMENT consecutive units of one row, decomposing the row index over the other dimensions
// once. With VEC4 (last dimension % 4 == 0) units are vec4s: out is vec4, and a (b) is read as vec4s
// with A_VEC4 (B_VEC4), its last-dimension stride being 1, or else as one element splatted (stride
// 0). ceil(rows · ceil(units per row / SEGMENT) / 256) workgroups of 256.
//
// gelu is the exact form x·Φ(x), Φ(x) = erfc(−x/√2)/2, with erfc from the Chebyshev fit of
// Numerical Recipes §6.2 (erfcc, fractional error < 1.2e-7), the same fit as the CPU backend.
// gelu'(x) = Φ(x) + x·φ(x); silu'(x) = s·(1 + x·(1 − s)) with s = sigmoid(x); relu'(x) = 1 for x > 0.

const WORKGROUP = 256u;
const SQRT1_2 = 0.70710678118654752;
const INV_SQRT_2PI = 0.39894228040143268;

override OP: u32;
override ITEMS: u32 = 1u;

#if VEC4
alias V = vec4<f32>;
#else
alias V = f32;
#endif

fn erfc_approx(x: V) -> V {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  let tail = t * exp(-z * z + poly);
  return select(2.0 - tail, tail, x >= V(0.0));
}

/** Standard normal CDF Φ(x). */
fn normal_cdf(x: V) -> V {
  return 0.5 * erfc_approx(-x * SQRT1_2);
}

fn workgroup_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}

#if UNARY
struct Params {
  units: u32,
  alpha: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read_write> y: array<V>;

// OP: 0 neg, 1 exp, 2 log, 3 sqrt, 4 relu, 5 silu, 6 gelu, 7 scale (alpha·x).
fn unary_op(v: V) -> V {
  var r: V;
  switch OP {
    case 0u: { r = -v; }
    case 1u: { r = exp(v); }
    case 2u: { r = log(v); }
    case 3u: { r = sqrt(v); }
    case 4u: { r = select(v, V(0.0), v < V(0.0)); }
    case 5u: { r = v / (1.0 + exp(-v)); }
    case 6u: { r = v * normal_cdf(v); }
    default: { r = params.alpha * v; }
  }
  return r;
}

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let base = workgroup_index(wid, nwg) * WORKGROUP * ITEMS + lid;
  for (var k = 0u; k < ITEMS; k++) {
    let i = base + k * WORKGROUP;
    if (i < params.units) { y[i] = unary_op(x[i]); }
  }
}
#endif

#if GRAD
struct Params {
  units: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read> dy: array<V>;
@group(0) @binding(3) var<storage, read_write> dx: array<V>;

// OP: 0 relu, 1 silu, 2 gelu.
fn activation_grad(v: V, g: V) -> V {
  var r: V;
  switch OP {
    case 0u: { r = select(V(0.0), g, v > V(0.0)); }
    case 1u: {
      let s = 1.0 / (1.0 + exp(-v));
      r = g * s * (1.0 + v * (1.0 - s));
    }
    default: { r = g * (normal_cdf(v) + v * INV_SQRT_2PI * exp(-0.5 * v * v)); }
  }
  return r;
}

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let base = workgroup_index(wid, nwg) * WORKGROUP * ITEMS + lid;
  for (var k = 0u; k < ITEMS; k++) {
    let i = base + k * WORKGROUP;
    if (i < params.units) { dx[i] = activation_grad(x[i], dy[i]); }
  }
}
#endif

#if BINARY
// OP: 0 add, 1 sub, 2 mul, 3 div, 4 eq (1.0 where equal, else 0.0).
fn binary_op(l: V, r: V) -> V {
  var out: V;
  switch OP {
    case 0u: { out = l + r; }
    case 1u: { out = l - r; }
    case 2u: { out = l * r; }
    case 3u: { out = l / r; }
    default: { out = select(V(0.0), V(1.0), l == r); }
  }
  return out;
}

#if BROADCAST
struct Params {
  rows: u32,
  rank: u32,
  a_offset: u32,
  b_offset: u32,
  out_offset: u32,
  pad0: u32,
  pad1: u32,
  pad2: u32,
  shape: array<vec4<u32>, 2>,
  a_strides: array<vec4<u32>, 2>,
  b_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> params: Params;
// load_a / load_b give the operand's unit at element j of the current row: a vec4 of its own
// (A_VEC4 / B_VEC4, a contiguous last dimension), or one element, splatted under VEC4 where the
// operand broadcasts along the last dimension (step 0).
#if A_VEC4
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
fn load_a(offset: u32, j: u32, step: u32) -> V { return a[(offset + j) >> 2u]; }
#else
@group(0) @binding(1) var<storage, read> a: array<f32>;
fn load_a(offset: u32, j: u32, step: u32) -> V { return V(a[offset + j * step]); }
#endif
#if B_VEC4
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
fn load_b(offset: u32, j: u32, step: u32) -> V { return b[(offset + j) >> 2u]; }
#else
@group(0) @binding(2) var<storage, read> b: array<f32>;
fn load_b(offset: u32, j: u32, step: u32) -> V { return V(b[offset + j * step]); }
#endif
@group(0) @binding(3) var<storage, read_write> out: array<V>;

#if VEC4
const UNIT = 4u;
#else
const UNIT = 1u;
#endif
// Units of the last dimension per invocation.
const SEGMENT = 4u;

fn shape_at(dim: u32) -> u32 { return params.shape[dim >> 2u][dim & 3u]; }
fn a_stride_at(dim: u32) -> u32 { return params.a_strides[dim >> 2u][dim & 3u]; }
fn b_stride_at(dim: u32) -> u32 { return params.b_strides[dim >> 2u][dim & 3u]; }

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let last = params.rank - 1u;
  let inner = shape_at(last);
  let row_units = inner / UNIT;
  let segments = (row_units + SEGMENT - 1u) / SEGMENT;
  let u = workgroup_index(wid, nwg) * WORKGROUP + lid;
  if (u >= params.rows * segments) { return; }
  let row = u / segments;
  let first = (u - row * segments) * SEGMENT;
  // Offsets of the row's first element: the row index decomposed over every dimension but the last.
  var rest = row;
  var a_offset = params.a_offset;
  var b_offset = params.b_offset;
  for (var dim = last; dim > 0u; dim--) {
    let d = dim - 1u;
    var coord = rest;
    if (d > 0u) {
      let size = shape_at(d);
      rest = coord / size;
      coord -= rest * size;
    }
    a_offset += coord * a_stride_at(d);
    b_offset += coord * b_stride_at(d);
  }
  let a_step = a_stride_at(last);
  let b_step = b_stride_at(last);
  let out_row = params.out_offset + row * inner;
  for (var s = 0u; s < SEGMENT; s++) {
    let j = (first + s) * UNIT;
    if (j < inner) { out[(out_row + j) / UNIT] = binary_op(load_a(a_offset, j, a_step), load_b(b_offset, j, b_step)); }
  }
}
#else
struct Params {
  units: u32,
}

override SWAP: bool = false;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<V>;
#if SCALAR
@group(0) @binding(2) var<storage, read> b: array<f32>;
#else
@group(0) @binding(2) var<storage, read> b: array<V>;
#endif
@group(0) @binding(3) var<storage, read_write> out: array<V>;

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let base = workgroup_index(wid, nwg) * WORKGROUP * ITEMS + lid;
#if SCALAR
  let s = V(b[0]);
#endif
  for (var k = 0u; k < ITEMS; k++) {
    let i = base + k * WORKGROUP;
    if (i < params.units) {
#if SCALAR
      if (SWAP) { out[i] = binary_op(s, a[i]); } else { out[i] = binary_op(a[i], s); }
#else
      out[i] = binary_op(a[i], b[i]);
#endif
    }
  }
}
#endif
#endif
