// Where a block-quantized element lies and what it holds, for quantize.wgsl and dequantize.wgsl. No
// kernel on its own: included with `#include "lib/quant.wgsl"`.
//
// One quantized tensor of n elements, BITS 8 or 4 (an override constant: each width compiles its
// own pipeline, with the loops over a word's PER_WORD elements unrolled), is packed into u32 words
// in the byte order of a Uint8Array: INT8 element i is byte i, INT4 element i is in byte ⌊i/2⌋, the
// high nibble for even i and the low nibble for odd i; both two's complement. Its scales are one
// f32 per block of `block` elements (blocks = ⌈n / block⌉, the last block possibly short).
// Several quantized tensors lie one after another, each starting on a word: tensor j's words begin
// at j · words_per and its scales at j · blocks. A kernel that sums `inputs` sets of `tensors`
// tensors reads tensor t of input k as tensor k · tensors + t.
// Declares: BITS, PER_WORD, QuantParams (the params struct of both kernels), q_shift (the bit
// offset of element i in its word), q_get (its value, sign-extended, from that word) and is_finite
// (false for NaN and ±Inf, by the bits: WGSL lets a compiler assume floats never hold them).

override BITS: u32;
override PER_WORD: u32 = 32u / BITS;

struct QuantParams {
  n: u32,
  block: u32,
  blocks: u32,
  tensors: u32,
  inputs: u32,
  words_per: u32,
  factor: f32,
  nodes: u32,
}

fn q_shift(i: u32) -> u32 {
  if (BITS == 8u) { return 8u * (i % 4u); }
  return 8u * ((i / 2u) % 4u) + select(0u, 4u, i % 2u == 0u);
}

fn q_get(word: u32, i: u32) -> i32 {
  let raw = (word >> q_shift(i)) & ((1u << BITS) - 1u);
  return (i32(raw) << (32u - BITS)) >> (32u - BITS);
}

fn is_finite(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}
