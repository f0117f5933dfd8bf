// AdamW step, in place, one element per invocation (PyTorch semantics, decoupled weight decay).
//
// Bindings: 0 params (uniform), 1 param, 2 grad, 3 exp_avg, 4 exp_avg_sq — all f32 [n], dense;
// with DECAY_RUNS, 5 runs: params.runs (start u32, weight decay f32) pairs, starts ascending from 0,
// run r covering [start_r, start_{r+1}) (the last to n); each element decays by its run's rate
// (found by binary search) instead of params.weight_decay.
// Bias corrections are folded on the host: step_size = lr / (1 − β1^t), bias2_sqrt = sqrt(1 − β2^t).
// Dispatch: ceil(n / 256) workgroups of 256, linear (folded into x, y past 65,535).

struct Params {
  n: u32,
  lr: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  weight_decay: f32,
  step_size: f32,
  bias2_sqrt: f32,
  grad_scale: f32,
  runs: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> exp_avg: array<f32>;
@group(0) @binding(4) var<storage, read_write> exp_avg_sq: array<f32>;

#if DECAY_RUNS
struct DecayRun {
  start: u32,
  weight_decay: f32,
}

@group(0) @binding(5) var<storage, read> runs: array<DecayRun>;

// The weight decay of the last run that starts at or before element i.
fn weight_decay_of(i: u32) -> f32 {
  var lo = 0u;
  var hi = params.runs;
  while (hi - lo > 1u) {
    let mid = (lo + hi) / 2u;
    if (runs[mid].start <= i) { lo = mid; } else { hi = mid; }
  }
  return runs[lo].weight_decay;
}
#else
fn weight_decay_of(i: u32) -> f32 {
  return params.weight_decay;
}
#endif

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i >= params.n) { return; }
  let g = grad[i] * params.grad_scale;
  let m = params.beta1 * exp_avg[i] + (1.0 - params.beta1) * g;
  let v = params.beta2 * exp_avg_sq[i] + (1.0 - params.beta2) * g * g;
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  let decayed = param[i] * (1.0 - params.lr * weight_decay_of(i));
  param[i] = decayed - params.step_size * m / (sqrt(v) / params.bias2_sqrt + params.eps);
}
