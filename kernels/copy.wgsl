// Strided copy, in place on dst: for every index i of an index space of rank ≤ 8,
// dst[dst_offset + Σ i_k·dst_strides_k] = src[src_offset + Σ i_k·src_strides_k].
//
// Bindings: 0 params, 1 src (read), 2 dst (read_write). Both hold 4-byte elements (f32 or i32),
// moved as raw u32 words. Only the dst words the copy names are written.
// Params: rows (index-space size over the last dimension's size), rank, the two offsets, then
// three 8-entry tables (shape, src strides, dst strides) as array<vec4<u32>, 2> each; the host
// packs them as consecutive u32s after the four leading scalars, which is exactly that layout.
// Strides are taken modulo 2³², so a negative stride works as long as every address lands in the
// buffer.
// Dispatch: the index space is `rows` rows of its last dimension; an invocation copies SEGMENT
// consecutive units of one row, decomposing the row index over the other dimensions (last fastest)
// once, which keeps integer divisions off the per-element path. With VEC4 (last dimension % 4 == 0,
// both last-dimension strides 1, every other stride and both offsets multiples of 4) units are
// vec4<u32>, otherwise single words. ceil(rows · ceil(units per row / SEGMENT) / 256) workgroups
// of 256, linear (folded over x and y past 65,535; index = wid.x + wid.y · nwg.x).

const WORKGROUP = 256u;
// Units of the last dimension per invocation.
const SEGMENT = 4u;

struct Params {
  rows: u32,
  rank: u32,
  src_offset: u32,
  dst_offset: u32,
  shape: array<vec4<u32>, 2>,
  src_strides: array<vec4<u32>, 2>,
  dst_strides: array<vec4<u32>, 2>,
}

#if VEC4
alias Unit = vec4<u32>;
const UNIT = 4u;
#else
alias Unit = u32;
const UNIT = 1u;
#endif

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<Unit>;
@group(0) @binding(2) var<storage, read_write> dst: array<Unit>;

fn shape_at(dim: u32) -> u32 { return params.shape[dim >> 2u][dim & 3u]; }
fn src_stride_at(dim: u32) -> u32 { return params.src_strides[dim >> 2u][dim & 3u]; }
fn dst_stride_at(dim: u32) -> u32 { return params.dst_strides[dim >> 2u][dim & 3u]; }

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let last = params.rank - 1u;
  let inner = shape_at(last);
  let segments = (inner / UNIT + SEGMENT - 1u) / SEGMENT;
  let u = (wid.x + wid.y * nwg.x) * WORKGROUP + lid;
  if (u >= params.rows * segments) { return; }
  let row = u / segments;
  let first = (u - row * segments) * SEGMENT * UNIT;
  var rest = row;
  var src_index = params.src_offset;
  var dst_index = params.dst_offset;
  for (var dim = last; dim > 0u; dim--) {
    let d = dim - 1u;
    var coord = rest;
    if (d > 0u) {
      let size = shape_at(d);
      rest = coord / size;
      coord -= rest * size;
    }
    src_index += coord * src_stride_at(d);
    dst_index += coord * dst_stride_at(d);
  }
  let src_step = src_stride_at(last);
  let dst_step = dst_stride_at(last);
  for (var s = 0u; s < SEGMENT; s++) {
    let j = first + s * UNIT;
    if (j < inner) { dst[(dst_index + j * dst_step) / UNIT] = src[(src_index + j * src_step) / UNIT]; }
  }
}
