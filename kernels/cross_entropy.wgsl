// Cross-entropy of logits [rows, vocab] against i32 targets [rows], and its backward.
//
// Bindings: forward   0 params, 1 logits, 2 targets, 3 loss [rows] (write)
//           backward  0 params, 1 logits, 2 targets, 3 dloss [1], 4 dlogits [rows, vocab] (write)
// Layout: dense row-major f32; with VEC4 (vocab % 4 == 0) rows are read and written as vec4s and
// `units` is the row length in those units. A target outside [0, vocab) makes its row NaN (loss,
// or every gradient of the row), as the CPU reference does.
// Dispatch: workgroups of 64 invocations; LANES (1, 8 or 64) invocations share a row, one
// workgroup covers 64 / LANES rows: ceil(rows / (64 / LANES)) workgroups, linear, folded over x
// and y. One read pass keeps the running max m and Σ exp(x − m) per invocation (the sum rescaled
// when m grows), merged per row in workgroup memory; forward then reads the target logit,
// backward makes a second pass writing (exp(x − m) / Σ − onehot) · dloss[0] · scale. The row
// layout (WORKGROUP, LANES) and the reduction come from lib/row_reduce.wgsl.

struct Params {
  rows: u32,
  units: u32,
  vocab: u32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;

#if VEC4
alias Unit = vec4<f32>;
const UNIT_SIZE = 4u;
fn unit_max(v: Unit) -> f32 { return max(max(v.x, v.y), max(v.z, v.w)); }
fn unit_sum(v: Unit) -> f32 { return (v.x + v.y) + (v.z + v.w); }
fn unit_component(v: Unit, i: u32) -> f32 { return v[i]; }
// 1 at the target's position within unit u, 0 elsewhere.
fn unit_onehot(u: u32, t: u32) -> Unit {
  return select(Unit(0.0), Unit(1.0), vec4<u32>(u * 4u) + vec4<u32>(0u, 1u, 2u, 3u) == vec4<u32>(t));
}
#else
alias Unit = f32;
const UNIT_SIZE = 1u;
fn unit_max(v: Unit) -> f32 { return v; }
fn unit_sum(v: Unit) -> f32 { return v; }
fn unit_component(v: Unit, i: u32) -> f32 { return v; }
fn unit_onehot(u: u32, t: u32) -> Unit { return select(0.0, 1.0, u == t); }
#endif

#include "lib/row_reduce.wgsl"

@group(0) @binding(1) var<storage, read> logits: array<Unit>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;

// (max, Σ exp(x − max)) of this invocation's share of the row, merged over the row.
fn row_stats(base: u32, units: u32, lane: u32, lid: u32) -> vec2<f32> {
  var m = LOWEST;
  var s = 0.0;
  for (var u = lane; u < units; u += LANES) {
    let v = logits[base + u];
    let v_max = unit_max(v);
    if (v_max > m) {
      s *= exp(m - v_max);
      m = v_max;
    }
    s += unit_sum(exp(v - m));
  }
  return reduce_max_sum(vec2<f32>(m, s), lid);
}

// The row's target, or params.vocab when the row is past the end or its target is out of range.
fn target_of(row: u32) -> u32 {
  if (row >= params.rows) { return params.vocab; }
  let t = targets[row];
  return select(params.vocab, u32(t), t >= 0 && u32(t) < params.vocab);
}

// A quiet NaN, made from a run-time value: a NaN constant expression does not compile.
fn nan() -> f32 {
  return bitcast<f32>(0x7fc00000u | (params.rows & 0u));
}

@group(0) @binding(3) var<storage, read_write> loss: array<f32>;

@compute @workgroup_size(WORKGROUP)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let row = (wid.x + wid.y * nwg.x) * (WORKGROUP / LANES) + lid / LANES;
  let lane = lid % LANES;
  let base = row * params.units;
  let stats = row_stats(base, select(0u, params.units, row < params.rows), lane, lid);
  if (lane != 0u || row >= params.rows) { return; }
  let t = target_of(row);
  if (t == params.vocab) {
    loss[row] = nan();
    return;
  }
  let target_logit = unit_component(logits[base + t / UNIT_SIZE], t % UNIT_SIZE);
  loss[row] = stats.x + log(stats.y) - target_logit;
}

@group(0) @binding(3) var<storage, read> dloss: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<Unit>;

@compute @workgroup_size(WORKGROUP)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let row = (wid.x + wid.y * nwg.x) * (WORKGROUP / LANES) + lid / LANES;
  let lane = lid % LANES;
  let base = row * params.units;
  let units = select(0u, params.units, row < params.rows);
  let stats = row_stats(base, units, lane, lid);
  let factor = dloss[0] * params.scale;
  let t = target_of(row);
  if (t == params.vocab) {
    for (var u = lane; u < units; u += LANES) { dlogits[base + u] = Unit(nan()); }
    return;
  }
  let probability_factor = factor / stats.y;
  for (var u = lane; u < units; u += LANES) {
    dlogits[base + u] = exp(logits[base + u] - stats.x) * probability_factor - unit_onehot(u, t) * factor;
  }
}
