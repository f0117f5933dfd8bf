// Embedding lookup into a table w [vocab, dim] and its backward, for n i32 ids.
//
// Layout: w, dw [vocab, dim], y, dy [n, dim], dense row-major f32; with VEC4 (dim % 4 == 0) rows
// are moved as vec4s and `dim_units` is dim in those units. ids outside [0, vocab) give a zero row
// (forward) and contribute nothing (backward).
//
// gather   0 params, 1 w, 2 ids, 3 y (write)
//   One invocation per unit of y: ceil(n · dim_units / 256) workgroups of 256, linear, folded over
//   x and y.
// scatter  0 scatter_params, 1 ids, 2 dy, 3 dw (read-write, zero-filled by the caller)
//   Workgroup g owns vocab rows [g · rows_per_group, (g + 1) · rows_per_group) and its
//   SCATTER_WORKGROUP invocations own units of dim (u = lid, lid + SCATTER_WORKGROUP, …):
//   ceil(vocab / rows_per_group) workgroups, linear, folded. Every invocation walks the ids
//   [first_token, end_token) in token order (the same id at the same time across the workgroup: a
//   uniform load and a uniform branch, no workgroup memory or barriers) and adds dy[t] into
//   dw[ids[t]] for the ids its workgroup owns. The program dispatches consecutive token ranges in
//   order, so each element of dw is 0 + dy[t1] + dy[t2] + … in token order, the same f32 rounding
//   sequence as the CPU reference. Cost: n id comparisons per workgroup, O(vocab / rows_per_group
//   · n) in all, plus the n · dim additions; no atomics.

struct Params {
  n: u32,
  dim_units: u32,
  vocab: u32,
}

struct ScatterParams {
  first_token: u32,
  end_token: u32,
  dim_units: u32,
  vocab: u32,
  rows_per_group: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(0) var<uniform> scatter_params: ScatterParams;

#if VEC4
alias Unit = vec4<f32>;
#else
alias Unit = f32;
#endif

@group(0) @binding(1) var<storage, read> w: array<Unit>;
@group(0) @binding(2) var<storage, read> ids: array<i32>;
@group(0) @binding(3) var<storage, read_write> y: array<Unit>;

@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i >= params.n * params.dim_units) { return; }
  let token = i / params.dim_units;
  let id = ids[token];
  if (id < 0 || u32(id) >= params.vocab) {
    y[i] = Unit(0.0);
    return;
  }
  y[i] = w[u32(id) * params.dim_units + i % params.dim_units];
}

@group(0) @binding(1) var<storage, read> scatter_ids: array<i32>;
@group(0) @binding(2) var<storage, read> dy: array<Unit>;
@group(0) @binding(3) var<storage, read_write> dw: array<Unit>;

// One 8-lane SIMD subgroup of a CPU adapter: there, each subgroup of a workgroup repeats the scan.
const SCATTER_WORKGROUP = 8u;

@compute @workgroup_size(SCATTER_WORKGROUP)
fn scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let first = (wid.x + wid.y * nwg.x) * scatter_params.rows_per_group;
  if (first >= scatter_params.vocab) { return; }
  let owned = min(scatter_params.rows_per_group, scatter_params.vocab - first);
  let dim_units = scatter_params.dim_units;
  for (var t = scatter_params.first_token; t < scatter_params.end_token; t++) {
    // Negative ids wrap to large u32 and fall outside the owned rows.
    let row = u32(scatter_ids[t]) - first;
    if (row >= owned) { continue; }
    let out_row = (first + row) * dim_units;
    let in_row = t * dim_units;
    for (var u = lid; u < dim_units; u += SCATTER_WORKGROUP) { dw[out_row + u] += dy[in_row + u]; }
  }
}
