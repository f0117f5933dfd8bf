// Block quantization (ZeRO++: qwZ weights, qgZ gradients): symmetric INT8 or INT4, one f32 scale
// per block of `block` consecutive elements. For a block of largest magnitude a and T = 2^(bits−1) − 1
// (127 or 7),
//   scale = a / T,   q = clamp(round(v / scale), −T, T)
// (round: to nearest, ties to even), so that |v − q · scale| ≤ scale / 2 for every element: ±a are
// levels ±T and nothing clips (DeepSpeed's kernels divide by 2^(bits−1) and clip +a to T/(T+1) of
// itself). An all-zero block has scale 0 and q 0; a block holding NaN or ±Inf gets scale NaN (its q
// 0), which the host refuses by name.
//
// `tensors` tensors of n elements each are quantized at once, each with its own blocks (so that each
// can be sent on its own). Element i of tensor t has the value v:
//   without SUM   x[c · n + i], c = (t mod nodes) · (tensors / nodes) + ⌊t / nodes⌋: qgZ's swizzle,
//                 which puts chunk c = b · g + l (b < nodes, l < g) in slot l · nodes + b, so that the
//                 chunks bound for one rank of a node lie together (nodes 1: c = t)
//   with SUM      Σ over the `inputs` quantized sets k of tensor k · tensors + t's element i,
//                 dequantized (qgZ's middle hop: dequantize, sum and requantize in one program)
//
// BITS (8 or 4) is an override constant (lib/quant.wgsl).
// Bindings: 0 params (QuantParams); without SUM: 1 x (f32 [tensors · n]), 2 scales (f32 [tensors ·
// blocks], written), 3 q (tensors · words_per words, written); with SUM: 1 q_in (inputs · tensors
// quantized tensors), 2 scales_in, 3 scales, 4 q. Layout of quantized tensors: lib/quant.wgsl.
// Dispatch: entry `scales_of_blocks`: one workgroup of 64 per block (tensors · blocks workgroups,
// folded over x and y past 65,535), the lanes striding over the block and reducing its absmax
// (lib/row_reduce.wgsl); entry `pack`: one invocation per output word (no two share a word, whatever
// the block size), workgroups of 256, ceil(tensors · words_per / 256) of them, folded alike.

#include "lib/row_reduce.wgsl"
#include "lib/quant.wgsl"

@group(0) @binding(0) var<uniform> params: QuantParams;
// base_of(t): where tensor t's values start, computed once per invocation; value(t, base, i, block):
// element i of tensor t, which lies in block `block` (no integer division per element).
#if SUM
@group(0) @binding(1) var<storage, read> q_in: array<u32>;
@group(0) @binding(2) var<storage, read> scales_in: array<f32>;
@group(0) @binding(3) var<storage, read_write> scales: array<f32>;
@group(0) @binding(4) var<storage, read_write> q: array<u32>;

fn base_of(t: u32) -> u32 {
  return t;
}

fn value(t: u32, base: u32, i: u32, block: u32) -> f32 {
  var v = 0.0;
  for (var k = 0u; k < params.inputs; k++) {
    let j = k * params.tensors + t;
    let word = q_in[j * params.words_per + i / PER_WORD];
    v += f32(q_get(word, i)) * scales_in[j * params.blocks + block];
  }
  return v;
}
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> scales: array<f32>;
@group(0) @binding(3) var<storage, read_write> q: array<u32>;

fn base_of(t: u32) -> u32 {
  let chunk = (t % params.nodes) * (params.tensors / params.nodes) + t / params.nodes;
  return chunk * params.n;
}

fn value(t: u32, base: u32, i: u32, block: u32) -> f32 {
  return x[base + i];
}
#endif

@compute @workgroup_size(WORKGROUP)
fn scales_of_blocks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  let index = wid.x + wid.y * nwg.x;
  let t = index / params.blocks;
  let block = index - t * params.blocks;
  let first = block * params.block;
  let last = min(first + params.block, params.n);
  // .x: the largest magnitude; .y: 1 once a lane has met NaN or ±Inf.
  var seen = vec2<f32>(0.0, 0.0);
  if (t < params.tensors) {
    let base = base_of(t);
    for (var i = first + lid; i < last; i += WORKGROUP) {
      let v = value(t, base, i, block);
      if (is_finite(v)) { seen.x = max(seen.x, abs(v)); } else { seen.y = 1.0; }
    }
  }
  let total = reduce_row(seen, REDUCE_MAX, lid);
  if (lid == 0u && t < params.tensors) {
    let top = f32((1u << (BITS - 1u)) - 1u);
    scales[index] = select(total.x / top, bitcast<f32>(0x7fc00000u), total.y > 0.0);
  }
}

@compute @workgroup_size(256)
fn pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (w >= params.tensors * params.words_per) { return; }
  let t = w / params.words_per;
  let base = base_of(t);
  let first = (w - t * params.words_per) * PER_WORD;
  let top = i32((1u << (BITS - 1u)) - 1u);
  // Blocks change inside a word only when a block is shorter than a word.
  var block = first / params.block;
  var boundary = (block + 1u) * params.block;
  var word = 0u;
  for (var e = 0u; e < PER_WORD; e++) {
    let i = first + e;
    if (i == boundary) { block++; boundary += params.block; }
    if (i < params.n) {
      let scale = scales[t * params.blocks + block];
      var level = 0;
      if (is_finite(scale) && scale > 0.0) { level = clamp(i32(round(value(t, base, i, block) / scale)), -top, top); }
      word |= (u32(level) & ((1u << BITS) - 1u)) << q_shift(i);
    }
  }
  q[w] = word;
}
