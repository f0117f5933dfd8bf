// RMSNorm and LayerNorm over the last axis of [rows, cols]: forward, backward (dx), and the
// weight/bias gradients summed over rows.
//
// Layout: x, y, dy, dx are dense row-major f32 [rows, cols]; w, b, dw, db are [cols]; rstd and mean
// are [rows]. With VEC4 (cols % 4 == 0) rows and weights are read and written as vec4s; `units`
// is the row length in those units.
//
// Row kernels (bindings in entry-point order):
//   rms_forward   0 params, 1 x, 2 w, 3 y (write), 4 rstd (write)
//   ln_forward    0 params, 1 x, 2 w, 3 y (write), 4 rstd (write), 5 b, 6 mean (write)
//   rms_backward  0 params, 1 x, 2 w, 3 dx (write), 4 rstd, 5 dy
//   ln_backward   0 params, 1 x, 2 w, 3 dx (write), 4 rstd, 5 dy, 6 mean
// Dispatch: workgroups of 64 invocations; LANES (1, 8 or 64) invocations share a row, one
// workgroup covers 64 / LANES rows: ceil(rows / (64 / LANES)) workgroups, linear, folded over x
// and y. Each row is read once for its statistics (LayerNorm: per-invocation Welford over units of
// x − x[row, 0], merged with Chan's formula in workgroup memory) and once more to write.
//
// Column kernels (dw, db: sums over rows, deterministic, no atomics):
//   rms_columns   0 column_params, 1 x, 2 rstd, 3 dy, 4 partial_w (write)
//   ln_columns    0 column_params, 1 x, 2 rstd, 3 dy, 4 partial_w (write), 5 mean, 6 partial_b (write)
//   column_sum    0 column_params, 1 partial, 2 total (write)
// The rows are cut into `blocks` blocks of `rows_per_block` (at most 4,096, so that no invocation
// runs past llvmpipe's 65,535 loop iterations); *_columns runs one invocation per
// (unit of columns, block), 64 units per workgroup, ceil(units / 64) · blocks workgroups (linear,
// folded; column group varies fastest), looping over the block's rows in order, and writes
// partial [blocks, cols]. column_sum adds the blocks in order, one invocation per unit,
// ceil(units / 64) workgroups. With one block the partials are the result.

struct Params {
  rows: u32,
  units: u32,
  cols: u32,
  eps: f32,
}

struct ColumnParams {
  rows: u32,
  units: u32,
  rows_per_block: u32,
  blocks: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(0) var<uniform> column_params: ColumnParams;

#if VEC4
alias Unit = vec4<f32>;
const UNIT_SIZE = 4.0;
fn unit_sum(v: Unit) -> f32 { return (v.x + v.y) + (v.z + v.w); }
fn unit_first(v: Unit) -> f32 { return v.x; }
#else
alias Unit = f32;
const UNIT_SIZE = 1.0;
fn unit_sum(v: Unit) -> f32 { return v; }
fn unit_first(v: Unit) -> f32 { return v; }
#endif

override LANES: u32 = 64u;

const WORKGROUP = 64u;

var<workgroup> red_a: array<f32, WORKGROUP>;
var<workgroup> red_b: array<f32, WORKGROUP>;
var<workgroup> red_c: array<f32, WORKGROUP>;
var<workgroup> part_a: array<f32, 8>;
var<workgroup> part_b: array<f32, 8>;
var<workgroup> part_c: array<f32, 8>;

// Σ of a pair over the LANES invocations that share a row, in a fixed order (fan-in 8 per level);
// each of them gets the sums. Called once per dispatch (workgroup memory is not reused).
fn reduce_sum2(v: vec2<f32>, lid: u32) -> vec2<f32> {
  if (LANES == 1u) { return v; }
  red_a[lid] = v.x;
  red_b[lid] = v.y;
  workgroupBarrier();
  if (LANES == 8u) {
    let first = lid & ~7u;
    var acc = vec2<f32>(red_a[first], red_b[first]);
    for (var i = first + 1u; i < first + 8u; i++) { acc += vec2<f32>(red_a[i], red_b[i]); }
    return acc;
  }
  if (lid < 8u) {
    var acc = vec2<f32>(red_a[lid], red_b[lid]);
    for (var i = lid + 8u; i < WORKGROUP; i += 8u) { acc += vec2<f32>(red_a[i], red_b[i]); }
    part_a[lid] = acc.x;
    part_b[lid] = acc.y;
  }
  workgroupBarrier();
  var acc = vec2<f32>(part_a[0], part_b[0]);
  for (var i = 1u; i < 8u; i++) { acc += vec2<f32>(part_a[i], part_b[i]); }
  return acc;
}

// (count, mean, Σ (x − mean)²) of two disjoint sets of elements, as one (Chan et al.).
fn merge_stats(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
  let n = a.x + b.x;
  let share = b.x / max(n, 1.0);
  let delta = b.y - a.y;
  return vec3<f32>(n, a.y + delta * share, a.z + b.z + delta * delta * a.x * share);
}

// merge_stats over the LANES invocations that share a row, like reduce_sum2.
fn reduce_stats(v: vec3<f32>, lid: u32) -> vec3<f32> {
  if (LANES == 1u) { return v; }
  red_a[lid] = v.x;
  red_b[lid] = v.y;
  red_c[lid] = v.z;
  workgroupBarrier();
  if (LANES == 8u) {
    let first = lid & ~7u;
    var acc = vec3<f32>(red_a[first], red_b[first], red_c[first]);
    for (var i = first + 1u; i < first + 8u; i++) { acc = merge_stats(acc, vec3<f32>(red_a[i], red_b[i], red_c[i])); }
    return acc;
  }
  if (lid < 8u) {
    var acc = vec3<f32>(red_a[lid], red_b[lid], red_c[lid]);
    for (var i = lid + 8u; i < WORKGROUP; i += 8u) { acc = merge_stats(acc, vec3<f32>(red_a[i], red_b[i], red_c[i])); }
    part_a[lid] = acc.x;
    part_b[lid] = acc.y;
    part_c[lid] = acc.z;
  }
  workgroupBarrier();
  var acc = vec3<f32>(part_a[0], part_b[0], part_c[0]);
  for (var i = 1u; i < 8u; i++) { acc = merge_stats(acc, vec3<f32>(part_a[i], part_b[i], part_c[i])); }
  return acc;
}

fn row_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * (WORKGROUP / LANES) + lid / LANES;
}

@group(0) @binding(1) var<storage, read> x: array<Unit>;
@group(0) @binding(2) var<storage, read> w: array<Unit>;
@group(0) @binding(3) var<storage, read_write> out: array<Unit>;
@group(0) @binding(4) var<storage, read_write> rstd_out: array<f32>;
@group(0) @binding(5) var<storage, read> b: array<Unit>;
@group(0) @binding(6) var<storage, read_write> mean_out: array<f32>;

@compute @workgroup_size(WORKGROUP)
fn rms_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg, lid);
  let units = select(0u, params.units, row < params.rows);
  let base = row * params.units;
  let lane = lid % LANES;
  var squares = Unit(0.0);
  for (var u = lane; u < units; u += LANES) {
    let v = x[base + u];
    squares += v * v;
  }
  let total = reduce_sum2(vec2<f32>(unit_sum(squares), 0.0), lid).x;
  let rstd = 1.0 / sqrt(total / f32(params.cols) + params.eps);
  if (lane == 0u && row < params.rows) { rstd_out[row] = rstd; }
  for (var u = lane; u < units; u += LANES) { out[base + u] = x[base + u] * rstd * w[u]; }
}

@compute @workgroup_size(WORKGROUP)
fn ln_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg, lid);
  let units = select(0u, params.units, row < params.rows);
  let base = row * params.units;
  let lane = lid % LANES;
  // Welford over units of x − shift, the shift being the row's first element: each unit's own
  // mean and spread merge into the running statistics, which stay of the order of the spread.
  let shift = unit_first(x[min(row, params.rows - 1u) * params.units]);
  var stats = vec3<f32>(0.0);
  for (var u = lane; u < units; u += LANES) {
    let v = x[base + u] - shift;
    let unit_mean = unit_sum(v) / UNIT_SIZE;
    let d = v - unit_mean;
    stats = merge_stats(stats, vec3<f32>(UNIT_SIZE, unit_mean, unit_sum(d * d)));
  }
  let row_stats = reduce_stats(stats, lid);
  let mean = shift + row_stats.y;
  let rstd = 1.0 / sqrt(row_stats.z / f32(params.cols) + params.eps);
  if (lane == 0u && row < params.rows) {
    rstd_out[row] = rstd;
    mean_out[row] = mean;
  }
  for (var u = lane; u < units; u += LANES) { out[base + u] = (x[base + u] - mean) * rstd * w[u] + b[u]; }
}

@group(0) @binding(4) var<storage, read> rstd_in: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<Unit>;
@group(0) @binding(6) var<storage, read> mean_in: array<f32>;

@compute @workgroup_size(WORKGROUP)
fn rms_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg, lid);
  let valid = row < params.rows;
  let units = select(0u, params.units, valid);
  let base = row * params.units;
  let lane = lid % LANES;
  let s = select(0.0, rstd_in[min(row, params.rows - 1u)], valid);
  var gx = Unit(0.0);
  for (var u = lane; u < units; u += LANES) { gx += dy[base + u] * w[u] * x[base + u]; }
  let total = reduce_sum2(vec2<f32>(unit_sum(gx), 0.0), lid).x;
  let correction = s * s * s * total / f32(params.cols);
  for (var u = lane; u < units; u += LANES) {
    out[base + u] = s * w[u] * dy[base + u] - x[base + u] * correction;
  }
}

@compute @workgroup_size(WORKGROUP)
fn ln_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg, lid);
  let valid = row < params.rows;
  let units = select(0u, params.units, valid);
  let base = row * params.units;
  let lane = lid % LANES;
  let clamped = min(row, params.rows - 1u);
  let s = select(0.0, rstd_in[clamped], valid);
  let mean = select(0.0, mean_in[clamped], valid);
  var g_sum = Unit(0.0);
  var gx_sum = Unit(0.0);
  for (var u = lane; u < units; u += LANES) {
    let g = dy[base + u] * w[u];
    g_sum += g;
    gx_sum += g * ((x[base + u] - mean) * s);
  }
  let sums = reduce_sum2(vec2<f32>(unit_sum(g_sum), unit_sum(gx_sum)), lid) / f32(params.cols);
  for (var u = lane; u < units; u += LANES) {
    let xhat = (x[base + u] - mean) * s;
    out[base + u] = s * (dy[base + u] * w[u] - sums.x - xhat * sums.y);
  }
}

@group(0) @binding(2) var<storage, read> column_rstd: array<f32>;
@group(0) @binding(3) var<storage, read> column_dy: array<Unit>;
@group(0) @binding(4) var<storage, read_write> partial_w: array<Unit>;
@group(0) @binding(5) var<storage, read> column_mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> partial_b: array<Unit>;

// This invocation's unit of columns (possibly past the end), its row block and the block's rows.
fn column_task(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> vec4<u32> {
  let groups = (column_params.units + WORKGROUP - 1u) / WORKGROUP;
  let linear = wid.x + wid.y * nwg.x;
  let block = linear / groups;
  let first = block * column_params.rows_per_block;
  let last = min(first + column_params.rows_per_block, column_params.rows);
  return vec4<u32>((linear % groups) * WORKGROUP + lid, block, first, last);
}

@compute @workgroup_size(WORKGROUP)
fn rms_columns(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let task = column_task(wid, nwg, lid);
  let units = column_params.units;
  if (task.x >= units || task.y >= column_params.blocks) { return; }
  var acc = Unit(0.0);
  for (var r = task.z; r < task.w; r++) {
    let i = r * units + task.x;
    acc += column_dy[i] * x[i] * column_rstd[r];
  }
  partial_w[task.y * units + task.x] = acc;
}

@compute @workgroup_size(WORKGROUP)
fn ln_columns(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let task = column_task(wid, nwg, lid);
  let units = column_params.units;
  if (task.x >= units || task.y >= column_params.blocks) { return; }
  var acc_w = Unit(0.0);
  var acc_b = Unit(0.0);
  for (var r = task.z; r < task.w; r++) {
    let i = r * units + task.x;
    let d = column_dy[i];
    acc_w += d * ((x[i] - column_mean[r]) * column_rstd[r]);
    acc_b += d;
  }
  partial_w[task.y * units + task.x] = acc_w;
  partial_b[task.y * units + task.x] = acc_b;
}

@group(0) @binding(1) var<storage, read> partial: array<Unit>;
@group(0) @binding(2) var<storage, read_write> total: array<Unit>;

@compute @workgroup_size(WORKGROUP)
fn column_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let u = (wid.x + wid.y * nwg.x) * WORKGROUP + lid;
  let units = column_params.units;
  if (u >= units) { return; }
  var acc = Unit(0.0);
  for (var block = 0u; block < column_params.blocks; block++) { acc += partial[block * units + u]; }
  total[u] = acc;
}
