// Where a block-quantized element lies and what it holds, for quantize.wgsl and dequantize.wgsl. No
// kernel on its own: included with `#include "lib/quant.wgsl"`.
//
// One quantized tensor of n elements, `bits` 8 or 4, is packed into u32 words in the byte order of
// a Uint8Array: INT8 element i is byte i, INT4 element i is in byte ⌊i/2⌋, the high nibble for even
// i and the low nibble for odd i; both two's complement. Its scales are one f32 per block of `block`
// elements (blocks = ⌈n / block⌉, the last block possibly short).
// Several quantized tensors lie one after another, each starting on a word: tensor j's words begin
// at j · words_per and its scales at j · blocks. A kernel that sums `inputs` sets of `tensors`
// tensors reads tensor t of input k as tensor k · tensors + t.
// Declares: QuantParams (the params struct of both kernels), q_word (the word of element i), q_shift
// (its bit offset in that word), q_get (its value, sign-extended, from that word) and is_finite
// (false for NaN and ±Inf, by the bits: WGSL lets a compiler assume floats never hold them).

struct QuantParams {
  n: u32,
  block: u32,
  blocks: u32,
  bits: u32,
  tensors: u32,
  inputs: u32,
  words_per: u32,
  factor: f32,
  nodes: u32,
}

fn q_word(i: u32, bits: u32) -> u32 {
  return (i * bits) / 32u;
}

fn q_shift(i: u32, bits: u32) -> u32 {
  if (bits == 8u) { return 8u * (i % 4u); }
  let byte = (i / 2u) % 4u;
  return 8u * byte + select(0u, 4u, i % 2u == 0u);
}

fn q_get(word: u32, i: u32, bits: u32) -> i32 {
  let raw = (word >> q_shift(i, bits)) & ((1u << bits) - 1u);
  return (i32(raw) << (32u - bits)) >> (32u - bits);
}

fn is_finite(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}
