// Block dequantization, summed over sets of quantized tensors (ZeRO++: qwZ's gathered weights, one
// set of one tensor per rank; qgZ's last hop, one set per sending node): element i of output tensor t
//   y[t · n + i] = factor · Σ over the `inputs` sets k of q_j[i] · scales[j · blocks + ⌊i / block⌋],
//                  j = k · tensors + t
// (quantize.wgsl defines the quantizer, lib/quant.wgsl the layout).
//
// Bindings: 0 params (QuantParams), 1 q (inputs · tensors quantized tensors of words_per words),
// 2 scales (f32 [inputs · tensors · blocks]), 3 y (f32 [tensors · n], written).
// Dispatch: one output element per invocation, workgroups of 256, ceil(tensors · n / 256)
// workgroups, linear (folded over x and y past 65,535).

#include "lib/quant.wgsl"

@group(0) @binding(0) var<uniform> params: QuantParams;
@group(0) @binding(1) var<storage, read> q: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let e = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (e >= params.tensors * params.n) { return; }
  let t = e / params.n;
  let i = e % params.n;
  var v = 0.0;
  for (var k = 0u; k < params.inputs; k++) {
    let j = k * params.tensors + t;
    let word = q[j * params.words_per + q_word(i, params.bits)];
    v += f32(q_get(word, i, params.bits)) * scales[j * params.blocks + i / params.block];
  }
  y[e] = params.factor * v;
}
