// Block dequantization, summed over sets of quantized tensors (ZeRO++: qwZ's gathered weights, one
// set of one tensor per rank; qgZ's last hop, one set per sending node): element i of output tensor t
//   y[t · n + i] = factor · Σ over the `inputs` sets k of q_j[i] · scales[j · blocks + ⌊i / block⌋],
//                  j = k · tensors + t
// (quantize.wgsl defines the quantizer, lib/quant.wgsl the layout and BITS).
//
// Bindings: 0 params (QuantParams), 1 q (inputs · tensors quantized tensors of words_per words),
// 2 scales (f32 [inputs · tensors · blocks]), 3 y (f32 [tensors · n], written).
// Dispatch: one invocation per word of a tensor (its PER_WORD elements), workgroups of 256,
// ceil(tensors · words_per / 256) workgroups, linear (folded over x and y past 65,535).

#include "lib/quant.wgsl"

@group(0) @binding(0) var<uniform> params: QuantParams;
@group(0) @binding(1) var<storage, read> q: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (w >= params.tensors * params.words_per) { return; }
  let t = w / params.words_per;
  let first = (w - t * params.words_per) * PER_WORD;
  let first_block = first / params.block;
  var sums: array<f32, 8>;
  for (var k = 0u; k < params.inputs; k++) {
    let j = k * params.tensors + t;
    let word = q[j * params.words_per + first / PER_WORD];
    // Blocks change inside a word only when a block is shorter than a word.
    var block = first_block;
    var boundary = (block + 1u) * params.block;
    for (var e = 0u; e < PER_WORD; e++) {
      if (first + e == boundary) { block++; boundary += params.block; }
      sums[e] += f32(q_get(word, first + e)) * scales[j * params.blocks + min(block, params.blocks - 1u)];
    }
  }
  for (var e = 0u; e < PER_WORD; e++) {
    if (first + e < params.n) { y[t * params.n + first + e] = params.factor * sums[e]; }
  }
}
