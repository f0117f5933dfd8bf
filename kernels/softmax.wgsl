// Row-wise softmax and log-softmax over the last axis of [rows, cols], and their backward.
//
// Bindings: forward   0 params, 1 x (read), 2 y (write)
//           backward  0 params, 1 y (read), 2 dy (read), 3 dx (write)
// Every buffer is a dense row-major f32 [rows, cols]. With VEC4 (cols % 4 == 0) rows are read and
// written as cols / 4 vec4s; `units` is the row length in those units (cols or cols / 4).
// Dispatch: workgroups of 64 invocations; LANES (1, 8 or 64) invocations share a row, so one
// workgroup covers 64 / LANES consecutive rows: ceil(rows / (64 / LANES)) workgroups, linear,
// folded over x and y (index = wid.x + wid.y · nwg.x). Lanes stride over the row's units.
// Forward: one read pass keeps, per invocation, the running max m and Σ exp(x − m), rescaling the
// sum when m grows; the row's (m, sum) pairs merge in workgroup memory; a second pass writes
// exp(x − m) / sum, or x − m − log(sum) when LOG. Backward: one pass for Σ dy·y (softmax) or Σ dy
// (log-softmax), one pass to write dx. The row layout (WORKGROUP, LANES) and the reductions come
// from lib/row_reduce.wgsl.

struct Params {
  rows: u32,
  units: u32,
}

@group(0) @binding(0) var<uniform> params: Params;

#if VEC4
alias Unit = vec4<f32>;
fn unit_max(v: Unit) -> f32 { return max(max(v.x, v.y), max(v.z, v.w)); }
fn unit_sum(v: Unit) -> f32 { return (v.x + v.y) + (v.z + v.w); }
#else
alias Unit = f32;
fn unit_max(v: Unit) -> f32 { return v; }
fn unit_sum(v: Unit) -> f32 { return v; }
#endif

#include "lib/row_reduce.wgsl"

override LOG: bool = false;

// This invocation's row (possibly past the end) and its lane within the row.
fn row_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * (WORKGROUP / LANES) + lid / LANES;
}

@group(0) @binding(1) var<storage, read> x: array<Unit>;
@group(0) @binding(2) var<storage, read_write> y: array<Unit>;

@compute @workgroup_size(WORKGROUP)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg, lid);
  let units = select(0u, params.units, row < params.rows);
  let base = row * params.units;
  let lane = lid % LANES;
  var m = LOWEST;
  var s = 0.0;
  for (var u = lane; u < units; u += LANES) {
    let v = x[base + u];
    let v_max = unit_max(v);
    if (v_max > m) {
      s *= exp(m - v_max);
      m = v_max;
    }
    s += unit_sum(exp(v - m));
  }
  let stats = reduce_max_sum(vec2<f32>(m, s), lid);
  if (LOG) {
    let shift = stats.x + log(stats.y);
    for (var u = lane; u < units; u += LANES) { y[base + u] = x[base + u] - shift; }
  } else {
    let inverse = 1.0 / stats.y;
    for (var u = lane; u < units; u += LANES) { y[base + u] = exp(x[base + u] - stats.x) * inverse; }
  }
}

@group(0) @binding(1) var<storage, read> y_in: array<Unit>;
@group(0) @binding(2) var<storage, read> dy: array<Unit>;
@group(0) @binding(3) var<storage, read_write> dx: array<Unit>;

@compute @workgroup_size(WORKGROUP)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg, lid);
  let units = select(0u, params.units, row < params.rows);
  let base = row * params.units;
  let lane = lid % LANES;
  var acc = Unit(0.0);
  for (var u = lane; u < units; u += LANES) {
    if (LOG) {
      acc += dy[base + u];
    } else {
      acc += dy[base + u] * y_in[base + u];
    }
  }
  let total = reduce_sum(unit_sum(acc), lid);
  for (var u = lane; u < units; u += LANES) {
    if (LOG) {
      dx[base + u] = dy[base + u] - exp(y_in[base + u]) * total;
    } else {
      dx[base + u] = y_in[base + u] * (dy[base + u] - total);
    }
  }
}
