// Block gather-sum: the layout changes around a head exchange (packing rows for an all-to-all,
// unpacking them into heads) and their adjoints. Output block j is the sum of the input blocks
// indices[k], k in [offsets[j], offsets[j + 1]), added in k order; an empty range gives zeros. One
// index per block is a gather; the inverse table of a gather (every input block listed under the
// output block it went to) is its backward, a scatter-add without atomics.
//
// Layout: x [blocks, block] and y [n, block], dense row-major f32; offsets [n + 1] and indices are
// i32. With VEC4 (block % 4 == 0) blocks are moved as vec4s and `block_units` is block in those
// units.
//
// gather_sum  0 params, 1 x, 2 offsets, 3 indices, 4 y (read-write)
//   One invocation per unit of y: ceil(n · block_units / 256) workgroups of 256, linear, folded
//   over x and y past 65,535 (index = wid.x + wid.y · nwg.x). A dispatch adds the terms
//   [first_term, first_term + terms) of each range: the first dispatch (first_term 0) writes y,
//   later ones add to it, so a range longer than one invocation may loop is summed over several
//   dispatches in the same order and rounding as in one.

struct Params {
  n: u32,
  block_units: u32,
  first_term: u32,
  terms: u32,
}

#if VEC4
alias Unit = vec4<f32>;
#else
alias Unit = f32;
#endif

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<Unit>;
@group(0) @binding(2) var<storage, read> offsets: array<i32>;
@group(0) @binding(3) var<storage, read> indices: array<i32>;
@group(0) @binding(4) var<storage, read_write> y: array<Unit>;

@compute @workgroup_size(256)
fn gather_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let u = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (u >= params.n * params.block_units) { return; }
  let j = u / params.block_units;
  let unit = u - j * params.block_units;
  let begin = u32(offsets[j]) + params.first_term;
  let end = min(u32(offsets[j + 1u]), begin + params.terms);
  var sum = Unit(0.0);
  if (params.first_term > 0u) { sum = y[u]; }
  for (var k = begin; k < end; k++) {
    sum += x[u32(indices[k]) * params.block_units + unit];
  }
  y[u] = sum;
}
